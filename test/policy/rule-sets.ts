/** The rule and flow sets of the permutation tests, shared with the tests that compare two ways of compiling or loading them. */
import type { Flow, Rule } from '../../src/policy/index.js';

export const NOW = Date.parse('2026-06-01T00:00:00Z');

export const APPS = ['org.mozilla.firefox', 'com.other', '/usr/lib/firefox/firefox', '/usr/bin/curl', '/usr/lib/firefox/', '/usr/', '*/firefox', '*/lib/firefox', 'any'];
export const ENDPOINTS = ['any', 'a.example.com', 'example.com', '*.example.com', '*.a.example.com', '192.0.2.10', '192.0.2.0/24', '2001:db8::10', '2001:db8::/32', 'https://a.example.com/x'];
const PORTS: (string | number)[] = ['any', 443, 80, '400-500'];
const PROTOS = ['any', 'tcp', 'udp'];
const ACTIONS = ['allow', 'block'] as const;
const EXTRAS: Partial<Rule>[] = [{}, { users: ['alice'] }, { groups: ['dev'] }, { expires: '2020-01-01T00:00:00Z' }, { expires: '2030-01-01T00:00:00Z' }];

export function allRules(): Rule[] {
  const out: Rule[] = [];
  for (const application of APPS) for (const endpoint of ENDPOINTS) for (const port of PORTS) for (const protocol of PROTOS)
    for (const action of ACTIONS) for (const extra of EXTRAS) out.push({ id: `r${out.length}`, action, application, endpoint, port, protocol, ...extra });
  return out;
}

export function allFlows(): Flow[] {
  const apps: Flow['app'][] = [
    { id: 'org.mozilla.firefox', path: '/usr/lib/firefox/firefox' },
    { path: '/usr/lib/firefox/firefox' },
    { path: '/usr/bin/curl' },
    { path: '/opt/lib/firefox/firefox' },
    { id: 'com.other', path: '/usr/lib/firefox-esr/firefox' },
  ];
  const remotes: Flow['remote'][] = [
    { ip: '192.0.2.10', hostnames: ['a.example.com'] },
    { ip: '192.0.2.99', hostnames: ['b.a.example.com', 'example.com'] },
    { ip: '192.0.2.10', hostnames: ['example.com', 'a.example.com'] },
    { ip: '198.51.100.1', hostnames: [] },
    { ip: '2001:db8::10', hostnames: [] },
    { ip: '2001:db8:1::1', hostnames: ['x.com'], url: 'https://a.example.com/x/y' },
    { ip: '::ffff:192.0.2.10', hostnames: ['example.com'], url: 'https://a.example.com/xy' },
  ];
  const users = [{ user: 'alice', groups: ['dev'] }, { user: 'bob', uid: 1002 }];
  const out: Flow[] = [];
  for (const app of apps) for (const remote of remotes) for (const port of [443, 450, 22]) for (const protocol of ['tcp', 'udp', 'udplite'] as const)
    for (const u of users) out.push({ app: { ...app, ...u }, remote, port, protocol });
  return out;
}

/** A deterministic random integer in [0, n) per call, from `seed`. */
export function seeded(seed: number): (n: number) => number {
  // high bits: the low bits of this generator repeat with a short period
  return (n) => Math.floor(((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * n);
}

/** The random rule sets: many rules share an application and a destination, so lists and ties happen. */
export function randomSets(each: (set: Rule[]) => void): void {
  const rules = allRules();
  const rand = seeded(7);
  for (let i = 0; i < 1500; i++) {
    const set: Rule[] = [];
    const base = rules[rand(rules.length)]!;
    set.push(base);
    const size = 2 + rand(10);
    // draw around one rule now and then so that ties really happen
    for (let k = 0; k < size; k++) {
      const r = rules[rand(rules.length)]!;
      const flip = base.action === 'allow' ? 'block' : 'allow';
      const pick = rand(4);
      // 0: same application; 1: same endpoint; 2: same everything but action and endpoint (ties across host names)
      set.push(pick === 0 ? { ...r, application: base.application } : pick === 1 ? { ...r, endpoint: base.endpoint } : pick === 2 ? { ...base, action: flip, endpoint: r.endpoint } : r);
    }
    each(set.map((r, k) => ({ ...r, id: `s${k}` })));
  }
}

