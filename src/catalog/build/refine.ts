/**
 * From the aggregate of logged accesses to catalog rules, in documented steps, each reporting what
 * it removed or merged: normalise destinations, drop private ones, collapse many ports, generalise
 * many subdomains to `*.domain` (never a public suffix), filter noise, drop allows of blocked apps.
 * Same input, same rules, same order.
 */
import { createHash } from 'node:crypto';
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';
import { getDomain } from 'tldts';
import { Policy, parseEndpoint, parseIp, type Rule } from '../../policy/index.js';
import type { Access, Aggregate } from './aggregate.js';
import { blockRules, type BlockedApp } from './blocked.js';

export interface RefineOptions {
  minCount: number;
  minDevices: number;
  minUsers: number;
  keepPrivate: boolean;
  stripUrls: boolean;
  /** An (app, destination) seen on more ports than this gets one rule for any port; 0: never. */
  maxPorts: number;
  /** An app seen on more subdomains of one registrable domain than this gets `*.domain`; 0: never. */
  wildcardAfter: number;
  blockedApps: BlockedApp[];
  blockedPorts: number[];
}

export interface StepReport {
  step: string;
  entries: number;
  detail: string;
}

interface Entry {
  app: string;
  dest: string;
  port: number;
  proto: string;
  a: Access;
  copied?: boolean;
}

const PRIVATE_RANGES = new Set(['private', 'loopback', 'linkLocal', 'uniqueLocal', 'unspecified', 'carrierGradeNat', 'broadcast', 'multicast']);

// Our own IP parser first: ipaddr.isValid() throws and catches inside for every host name (~12 µs each).
const isIp = (s: string): boolean => parseIp(s) !== null;

function isPrivate(dest: string): boolean {
  if (isIp(dest)) {
    let ip = ipaddr.parse(dest);
    if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
    return PRIVATE_RANGES.has(ip.range());
  }
  return dest === 'localhost' || dest.endsWith('.localhost') || dest.endsWith('.local') || dest.endsWith('.internal') || dest.endsWith('.lan');
}

/** The canonical destination, or why there is none. */
function normalise(dest: string, stripUrls: boolean): string | { invalid: string } {
  let d = dest.trim();
  if (d.includes('://')) {
    let u: URL;
    try { u = new URL(d); } catch { return { invalid: 'malformed URL' }; }
    if (stripUrls) d = u.hostname.replace(/^\[|\]$/g, '');
    else return typeof parseEndpoint(u.href) === 'string' ? { invalid: 'unsupported URL' } : u.href;
  }
  if (isIp(d)) {
    const ip = ipaddr.parse(d);
    return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() ? (ip as ipaddr.IPv6).toIPv4Address().toString() : ip.toString();
  }
  const ascii = domainToASCII(d.toLowerCase().replace(/\.$/, ''));
  if (!ascii || typeof parseEndpoint(ascii) === 'string') return { invalid: 'malformed host name' };
  return ascii;
}

const keyOf = (e: Omit<Entry, 'a'>): string => `${e.app}\t${e.dest}\t${e.port}\t${e.proto}`;

function merge(into: Map<string, Entry>, e: Entry): void {
  const k = keyOf(e);
  const old = into.get(k);
  if (!old) return void into.set(k, e);
  // Entries may share an Access with the aggregate: copy before changing it.
  if (!old.copied) { old.a = { ...old.a }; old.copied = true; }
  old.a.count += e.a.count;
  for (const kind of ['devices', 'users'] as const) {
    if (!e.a[kind]) continue;
    old.a[kind] = [...new Set([...(old.a[kind] ?? []), ...e.a[kind]])];
  }
}

export function refine(agg: Aggregate, o: RefineOptions): { rules: Rule[]; steps: StepReport[] } {
  const steps: StepReport[] = [];
  const note = (step: string, entries: number, detail: string): void => void steps.push({ step, entries, detail });
  note('read', agg.size, 'distinct (application, destination, port, protocol)');

  // 1. Normalise destinations (each distinct one once: they repeat across applications) and
  //    drop private ones; merge what becomes equal.
  let m = new Map<string, Entry>();
  const invalid = new Map<string, number>();
  const bad = (why: string): void => void invalid.set(why, (invalid.get(why) ?? 0) + 1);
  const norm = new Map<string, string | { invalid: string } | null>(); // null: private
  let privateDropped = 0;
  for (const [key, a] of agg) {
    const t1 = key.indexOf('\t');
    const t2 = key.indexOf('\t', t1 + 1);
    const t3 = key.indexOf('\t', t2 + 1);
    const app = key.slice(0, t1);
    if (app.charCodeAt(0) !== 47 /* / */) { bad('application not an absolute path'); continue; }
    const dest = key.slice(t1 + 1, t2);
    let d = norm.get(dest);
    if (d === undefined) {
      d = normalise(dest, o.stripUrls);
      if (typeof d === 'string' && !o.keepPrivate && isPrivate(d)) d = null;
      norm.set(dest, d);
    }
    if (d === null) { privateDropped++; continue; }
    if (typeof d !== 'string') { bad(d.invalid); continue; }
    const e = { app, dest: d, port: Number(key.slice(t2 + 1, t3)), proto: key.slice(t3 + 1), a };
    if (d === dest && !m.has(key)) m.set(key, e); // canonical already: the key is keyOf(e)
    else merge(m, e);
  }
  note('normalise', m.size + privateDropped, `hosts lower-cased, IDN to punycode, IPs canonical${o.stripUrls ? ', URLs to hosts' : ''}; ${[...invalid].map(([r, n]) => `${n} ${r}`).join(', ') || 'nothing invalid'}`);
  note('private', m.size, o.keepPrivate ? 'kept (--keep-private)' : `${privateDropped} private/loopback/link-local destinations dropped`);

  // 2. Noise: too rare, or seen on too few devices / by too few users.
  const before = m.size;
  let rare = 0;
  let fewDevices = 0;
  let fewUsers = 0;
  for (const [k, e] of m) {
    if (e.a.count < o.minCount) { rare++; m.delete(k); } else if (o.minDevices > 1 && (e.a.devices?.length ?? 0) < o.minDevices) { fewDevices++; m.delete(k); } else if (o.minUsers > 1 && (e.a.users?.length ?? 0) < o.minUsers) { fewUsers++; m.delete(k); }
  }
  note('noise', m.size, `${before - m.size} removed: ${rare} seen fewer than ${o.minCount} times, ${fewDevices} on fewer than ${o.minDevices} devices, ${fewUsers} by fewer than ${o.minUsers} users`);

  // 3. Many ports on one (app, destination): one rule for any port.
  if (o.maxPorts > 0) {
    const ports = new Map<string, Set<number>>();
    for (const e of m.values()) {
      const k = `${e.app}\t${e.dest}\t${e.proto}`;
      let s = ports.get(k);
      if (!s) ports.set(k, (s = new Set()));
      s.add(e.port);
    }
    const next = new Map<string, Entry>();
    let collapsed = 0;
    for (const e of m.values()) {
      const many = ports.get(`${e.app}\t${e.dest}\t${e.proto}`)!.size > o.maxPorts;
      merge(next, many ? { ...e, port: 0 } : e);
    }
    for (const s of ports.values()) if (s.size > o.maxPorts) collapsed++;
    m = next;
    note('ports', m.size, `${collapsed} (application, destination) pairs on more than ${o.maxPorts} ports now allow any port`);
  }

  // 4. Many subdomains of one registrable domain for one app: `*.domain` (the Public Suffix List,
  //    private suffixes included, decides what is registrable, so *.co.uk or *.github.io never appear).
  if (o.wildcardAfter > 0) {
    const subs = new Map<string, Set<string>>();
    const domainOf = new Map<string, string | null>();
    for (const e of m.values()) {
      if (isIp(e.dest) || e.dest.includes('/')) continue;
      let dom = domainOf.get(e.dest);
      if (dom === undefined) domainOf.set(e.dest, (dom = getDomain(e.dest, { allowPrivateDomains: true })));
      if (!dom || dom === e.dest) continue;
      const k = `${e.app}\t${dom}`;
      let s = subs.get(k);
      if (!s) subs.set(k, (s = new Set()));
      s.add(e.dest);
    }
    const next = new Map<string, Entry>();
    let domains = 0;
    let hosts = 0;
    for (const [k, s] of subs) if (s.size > o.wildcardAfter) { domains++; hosts += s.size; } else subs.delete(k);
    for (const e of m.values()) {
      const dom = domainOf.get(e.dest);
      merge(next, dom && dom !== e.dest && subs.has(`${e.app}\t${dom}`) ? { ...e, dest: `*.${dom}` } : e);
    }
    m = next;
    note('wildcards', m.size, `${hosts} host names under ${domains} domains became *.domain (more than ${o.wildcardAfter} subdomains per application)`);
  }

  // 5. Applications blocked whole: their allow rules go (a block rule would win anyway, but the
  //    catalog should not say both).
  const blocks = blockRules(o.blockedApps, o.blockedPorts);
  const blocked = Policy.compile(blocks.filter((r) => r.application.startsWith('/') || r.application.startsWith('*')), 'passive-allow');
  const isBlocked = new Map<string, boolean>();
  const droppedApps = new Set<string>();
  let dropped = 0;
  for (const [k, e] of m) {
    let b = isBlocked.get(e.app);
    if (b === undefined) isBlocked.set(e.app, (b = blocked.decide({ app: { path: e.app }, remote: { ip: '', hostnames: [] }, port: 1, protocol: 'tcp' }).level !== 'default'));
    if (b) { m.delete(k); dropped++; droppedApps.add(e.app); }
  }
  note('blocked apps', m.size, `${blocks.length} block rules; ${dropped} allow rules of ${droppedApps.size} blocked applications dropped${droppedApps.size ? `: ${[...droppedApps].sort().slice(0, 5).join(', ')}${droppedApps.size > 5 ? ', ...' : ''}` : ''}`);

  // 6. Rules, in a fixed order with ids derived from their content (stable across builds, for diffs).
  // Map keys are keyOf(entry): sorting the keys orders by application, destination, port, protocol.
  const allows: Rule[] = [...m.keys()].sort().map((k) => {
    const e = m.get(k)!;
    const r: Rule = { id: `allow-${createHash('sha1').update(k).digest('hex').slice(0, 16)}`, action: 'allow', application: e.app, endpoint: e.dest };
    if (e.port) r.port = e.port;
    if (e.proto) r.protocol = e.proto as 'tcp' | 'udp';
    return r;
  });
  const rules = [...blocks.sort((a, b) => (a.id < b.id ? -1 : 1)), ...allows];
  note('rules', rules.length, `${allows.length} allow, ${blocks.length} block`);
  return { rules, steps };
}
