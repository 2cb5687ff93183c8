import { Policy, type Flow, type Mode, type Rule } from '../../src/policy/index.js';

export const FIREFOX = { id: 'org.mozilla.firefox', path: '/usr/lib/firefox/firefox' };

/** A flow with defaults; `to` is a host name or an IP. */
export function flow(app: Flow['app'], to: string, port = 443, protocol: Flow['protocol'] = 'tcp', extra: Partial<Flow['remote']> = {}): Flow {
  const isIp = /^[0-9.]+$/.test(to) || to.includes(':');
  return { app, remote: { ip: isIp ? to : '203.0.113.9', hostnames: isIp ? [] : [to], ...extra }, port, protocol };
}

let n = 0;
/** Rule with a generated id unless given. */
export function rule(r: Partial<Rule> & Pick<Rule, 'action' | 'application'>): Rule {
  return { id: `r${++n}`, ...r };
}

export function decide(rules: Rule[], f: Flow, mode: Mode = 'passive-allow', now?: number) {
  return Policy.compile(rules, mode).decide(f, now);
}
