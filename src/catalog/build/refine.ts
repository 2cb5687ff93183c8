/**
 * From the aggregate of logged accesses to catalog rules, in documented steps, each reporting what
 * it removed or merged: drop invalid and private destinations, filter noise, collapse many ports,
 * generalise many subdomains to `*.domain` (never a public suffix), drop allows of blocked apps.
 * Same input, same rules, same order.
 */
import { createHash } from 'node:crypto';
import { getDomain } from 'tldts';
import { Policy, type Rule } from '../../policy/index.js';
import { keyOf, splitKey, type Aggregate } from './aggregate.js';
import { blockRules, type BlockedApp } from './blocked.js';
import { isIp, isPrivate } from './normalise.js';

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
  count: number;
}

function merge(into: Map<string, Entry>, e: Entry): void {
  const k = keyOf(e.app, e.dest, e.port, e.proto);
  const old = into.get(k);
  if (old) old.count += e.count;
  else into.set(k, e);
}

/**
 * `agg` has canonical keys already (normalised in the workers); invalid entries are under "!reason" keys.
 * Order: noise filters, then ports, then wildcards, so a rare access never widens into a wildcard.
 */
export function refine(holder: { agg?: Aggregate }, o: RefineOptions): { rules: Rule[]; steps: StepReport[] } {
  const steps: StepReport[] = [];
  const m = filter(holder.agg!, o, note(steps));
  holder.agg = undefined; // from here on, only the entries that passed are kept
  return { rules: generalise(m, o, note(steps)), steps };
}

type Note = (step: string, entries: number, detail: string) => void;
const note = (steps: StepReport[]): Note => (step, entries, detail) => void steps.push({ step, entries, detail });

/** Invalid, private and noise entries out; only the entries that pass become objects. */
function filter(agg: Aggregate, o: RefineOptions, note: Note): Map<string, Entry> {
  // Invalid and private entries out first, counted once each (workers saw overlapping sets).
  const invalid = new Map<string, number>();
  const privateDests = new Map<string, boolean>();
  let privateDropped = 0;
  const live: number[] = [];
  for (let i = 0; i < agg.size; i++) {
    if (agg.count(i) < 0) continue;
    const key = agg.keys[i]!;
    if (key.charCodeAt(0) === 33 /* ! */) {
      const why = key.slice(1, key.indexOf('\t'));
      invalid.set(why, (invalid.get(why) ?? 0) + 1);
      continue;
    }
    if (!o.keepPrivate) {
      const t1 = key.indexOf('\t');
      const dest = key.slice(t1 + 1, key.indexOf('\t', t1 + 1));
      let p = privateDests.get(dest);
      if (p === undefined) privateDests.set(dest, (p = isPrivate(dest)));
      if (p) { privateDropped++; continue; }
    }
    live.push(i);
  }
  const bad = [...invalid].map(([r, n]) => `${n} ${r}`).join(', ') || 'nothing invalid';
  note('normalise', live.length + privateDropped, `distinct (application, destination, port, protocol) after lower-casing hosts, IDN to punycode, canonical IPs${o.stripUrls ? ', URLs to hosts' : ''}; ${bad}`);
  note('private', live.length, o.keepPrivate ? 'kept (--keep-private)' : `${privateDropped} private/loopback/link-local destinations dropped`);

  // 1. Noise: too rare, or seen on too few devices / by too few users. A pass of its own: folding
  //    it into the loop above raised bench/catalog-build's peak RSS by ~130 MB.
  const m = new Map<string, Entry>();
  let rare = 0;
  let fewDevices = 0;
  let fewUsers = 0;
  for (const i of live) {
    const count = agg.count(i);
    if (count < o.minCount) { rare++; continue; }
    if (o.minDevices > 1 && agg.deviceCount(i) < o.minDevices) { fewDevices++; continue; }
    if (o.minUsers > 1 && agg.userCount(i) < o.minUsers) { fewUsers++; continue; }
    const e = splitKey(agg.keys[i]!) as Entry;
    e.count = count;
    m.set(agg.keys[i]!, e);
  }
  note('noise', m.size, `${live.length - m.size} removed: ${rare} seen fewer than ${o.minCount} times, ${fewDevices} on fewer than ${o.minDevices} devices, ${fewUsers} by fewer than ${o.minUsers} users`);
  return m;
}

/** Ports, wildcards, blocked applications, then the rules. */
function generalise(m: Map<string, Entry>, o: RefineOptions, note: Note): Rule[] {
  // 2. Many ports on one (app, destination): one rule for any port.
  if (o.maxPorts > 0) {
    const ports = new Map<string, Set<number>>();
    for (const e of m.values()) {
      const k = `${e.app}\t${e.dest}\t${e.proto}`;
      let s = ports.get(k);
      if (!s) ports.set(k, (s = new Set()));
      s.add(e.port);
    }
    // Changed in place: only the entries that move are taken out and merged back.
    const moving: [string, Entry][] = [];
    for (const [k, e] of m) if (e.port && ports.get(`${e.app}\t${e.dest}\t${e.proto}`)!.size > o.maxPorts) moving.push([k, e]);
    for (const [k] of moving) m.delete(k);
    for (const [, e] of moving) merge(m, { ...e, port: 0 });
    let collapsed = 0;
    for (const s of ports.values()) if (s.size > o.maxPorts) collapsed++;
    note('ports', m.size, `${collapsed} (application, destination) pairs on more than ${o.maxPorts} ports now allow any port`);
  }

  // 3. Many subdomains of one registrable domain for one app: `*.domain` (the Public Suffix List,
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
    let domains = 0;
    let hosts = 0;
    for (const [k, s] of subs) if (s.size > o.wildcardAfter) { domains++; hosts += s.size; } else subs.delete(k);
    const moving: [string, Entry, string][] = [];
    for (const [k, e] of m) {
      const dom = domainOf.get(e.dest);
      if (dom && dom !== e.dest && subs.has(`${e.app}\t${dom}`)) moving.push([k, e, dom]);
    }
    for (const [k] of moving) m.delete(k);
    for (const [, e, dom] of moving) merge(m, { ...e, dest: `*.${dom}` });
    note('wildcards', m.size, `${hosts} host names under ${domains} domains became *.domain (more than ${o.wildcardAfter} subdomains per application)`);
  }

  // 4. Applications blocked whole: their allow rules go (a block rule would win anyway, but the
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

  // 5. Rules, in a fixed order with ids derived from their content (stable across builds, for diffs).
  // Map keys are keyOf(entry): sorting the keys orders by application, destination, port, protocol.
  const allows: Rule[] = [...m.keys()].sort().map((k) => {
    const e = m.get(k)!;
    const r: Rule = { id: `allow-${createHash('sha1').update(k).digest('hex').slice(0, 16)}`, action: 'allow', application: e.app, endpoint: e.dest };
    if (e.port) r.port = e.port;
    if (e.proto) r.protocol = e.proto as 'tcp' | 'udp';
    return r;
  });
  m.clear(); // the entries are rules now
  const rules = [...blocks.sort((a, b) => (a.id < b.id ? -1 : 1)), ...allows];
  note('rules', rules.length, `${allows.length} allow, ${blocks.length} block`);
  return rules;
}
