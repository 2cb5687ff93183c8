/** Synthetic catalogs and flows for the benchmarks: deterministic for a seed, shaped like a fleet's catalog. */
import { parseApplication, parseEndpoint, parsePort, type Flow, type Rule } from '../src/policy/index.js';

export function prng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    // xorshift32: fast, and its low bits are as good as its high bits
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 2 ** 32) * n | 0;
  };
}

const TLDS = ['com', 'net', 'io', 'org', 'co.uk', 'com.br'];
const SUBS = ['api', 'cdn', 'www', 'updates', 'telemetry', 'static', 'auth', 'ws', 'edge', 'media'];

/**
 * `count` rules over ~30,000 applications (app ids, full paths, path prefixes, sub-paths and
 * system-wide rules), hosts drawn Zipf-like from 20,000 domains, wildcards, IPv4/IPv6, CIDRs,
 * ports and ranges, and 1,000 whole-application blocks.
 */
export function generateCatalog(count: number, seed: number): Rule[] {
  const r = prng(seed);
  const domain = () => {
    const k = Math.floor(20_000 * (r(1_000_000) / 1_000_000) ** 3); // popular domains recur
    return `d${k}.${TLDS[k % TLDS.length]}`;
  };
  const apps: string[] = [];
  for (let i = 0; i < 8_000; i++) apps.push(`com.vendor${i % 900}.app${i}`);
  for (let i = 0; i < 18_000; i++) {
    apps.push(i % 3 === 0 ? `/Applications/App${i}.app/Contents/MacOS/App${i}` : i % 3 === 1 ? `/usr/bin/tool${i}` : `/opt/vendor${i % 700}/bin/svc${i}`);
  }
  for (let i = 0; i < 3_000; i++) apps.push(`/opt/suite${i}/`);
  for (let i = 0; i < 500; i++) apps.push(`*/Plugin${i}.bundle`);
  const rules: Rule[] = [];
  const add = (x: Omit<Rule, 'id'>) => rules.push({ id: `g${rules.length + 1}`, ...x });
  for (const port of [445, 139, 23, 2049]) add({ action: 'block', application: 'any', port });
  for (let i = 0; i < 1_000; i++) add({ action: 'block', application: apps[(i * 29) % apps.length]!, note: 'blocked application' });
  while (rules.length < count) {
    const application = apps[Math.floor(apps.length * (r(1_000_000) / 1_000_000) ** 1.5)]!;
    const e = r(100);
    const endpoint =
      e < 65 ? `${SUBS[r(SUBS.length)]}${r(4) || ''}.${domain()}`
      : e < 77 ? `*.${domain()}`
      : e < 92 ? `${1 + r(223)}.${r(256)}.${r(256)}.${1 + r(254)}`
      : e < 95 ? `2001:db8:${r(65536).toString(16)}::${(1 + r(65535)).toString(16)}`
      : e < 98 ? `${10 + r(100)}.${r(256)}.${r(16) * 16}.0/20`
      : 'any';
    const p = r(100);
    const port = p < 80 ? 443 : p < 90 ? 80 : p < 95 ? 'any' : p < 98 ? 5000 + r(1000) : '8000-8100';
    add({ action: r(100) < 92 ? 'allow' : 'block', application, endpoint, port, ...(r(10) === 0 ? { protocol: 'tcp' } : {}) });
  }
  return rules;
}

/** A process path that the rule's application matches. */
function pathFor(app: string, n: number): { id?: string; path: string } {
  const a = parseApplication(app);
  if (typeof a === 'string' || a.kind === 'any') return { path: `/usr/bin/other${n}` };
  if (a.kind === 'id') return { id: a.key, path: `/usr/bin/other${n}` };
  if (a.kind === 'path') return { path: a.key };
  if (a.kind === 'prefix') return { path: `${a.key}bin/worker` };
  return { path: `/Applications/Host.app/Contents/PlugIns${a.key}/Contents/MacOS/p` };
}

/** `count` flows: half match a random rule's application and destination, half miss (unknown host or app). */
export function flowsFor(rules: readonly Rule[], count: number, seed: number, skew = 1): Flow[] {
  const r = prng(seed);
  const flows: Flow[] = [];
  for (let i = 0; i < count; i++) {
    // skew > 1: a few rules (apps and hosts) take most of the traffic, as on a real machine
    const rule = rules[Math.floor(rules.length * (r(1_000_000) / 1_000_000) ** skew)]!;
    const app = pathFor(rule.application, i);
    const kind = r(4);
    if (kind === 0) {
      flows.push({ app: { path: `/home/u/.local/bin/unknown${i}` }, remote: { ip: `198.51.100.${r(255)}`, hostnames: [`x${i}.unknown.net`] }, port: 443, protocol: 'tcp' });
      continue;
    }
    if (kind === 1) {
      flows.push({ app, remote: { ip: `203.0.113.${r(255)}`, hostnames: [`miss${i}.example.net`] }, port: 443, protocol: 'tcp' });
      continue;
    }
    const e = parseEndpoint(rule.endpoint);
    const p = parsePort(rule.port);
    const port = typeof p === 'string' || p[0] === 0 ? 443 : p[0];
    let remote: Flow['remote'] = { ip: '192.0.2.1', hostnames: [`h${i}.example.org`] };
    if (typeof e !== 'string') {
      if (e.kind === 'host') remote = { ip: '192.0.2.1', hostnames: [e.host] };
      else if (e.kind === 'wildcard') remote = { ip: '192.0.2.1', hostnames: [`n${i % 50}.${e.suffix}`] };
      else if (e.kind === 'ip') remote = { ip: rule.endpoint!, hostnames: [] };
      else if (e.kind === 'cidr') remote = { ip: rule.endpoint!.replace(/\.0\/\d+$/, '.7'), hostnames: [] };
    }
    flows.push({ app, remote, port, protocol: 'tcp' });
  }
  // Flat strings, as the agent's flows carry (read from packets and /proc): template literals make
  // cons strings, whose every comparison and character read walks the concatenation.
  return JSON.parse(JSON.stringify(flows)) as Flow[];
}
