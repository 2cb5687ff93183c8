export * from './types.js';
export { Policy, type IndexImage, type PolicyImage, type PolicyStats } from './policy.js';
export { RuleEncoder, ruleFromBytes } from './image.js';
export { runSliced } from './sliced.js';
export { decideWithAsk, type AskOptions } from './ask.js';
export { describeRule, normalizeHost, parseApplication, parseEndpoint, parsePort } from './rules.js';
export { parseIp, type ParsedIp } from './ip.js';
