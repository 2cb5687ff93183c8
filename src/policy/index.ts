export * from './types.js';
export { Policy, firstUseOf, type IndexImage, type PolicyImage, type PolicyStats } from './policy.js';
export { RuleEncoder, ruleFromBytes } from './image.js';
export { runSliced } from './sliced.js';
export { decideWithAsk, type AskOptions } from './ask.js';
export { compileRule, describeRule, normalizeHost, parseApplication, parseEndpoint, parsePort, type AppCache, type ParsedRule } from './rules.js';
export { PLAIN_FIELDS, SPAN, STRIDE, compileRuleBytes, isPlainHost } from './rule-bytes.js';
export { ByteDict } from './bytedict.js';
export { parseIp, type ParsedIp } from './ip.js';
