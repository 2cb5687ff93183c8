/**
 * The compiled policy: an index of hash maps over the rules and decide(flow).
 *
 * How a verdict is found (README "How a verdict is decided" says the same for users):
 * 1. Application levels, first that has an applicable rule wins:
 *    app id -> full path -> prefixes and sub-paths (the match that reaches deepest into the path
 *    first; on equal depth the longer pattern, then prefix before sub-path) -> `any` -> the mode.
 *    A rule is applicable when its endpoint, port, protocol, user/group scope match and it has not expired.
 * 2. Within that level the most specific rule wins: endpoint first (URL > exact host > longest
 *    `*.` suffix > exact IP > longest CIDR prefix > any), then port (exact > range > any), then
 *    protocol (tcp/udp > any), then scope (users/groups > everyone).
 * 3. At equal specificity block beats allow.
 *
 * Every lookup is a Map hit keyed by application, then by host / domain suffix / IP / CIDR network;
 * the lists under a key hold the few rules for that exact destination, sorted so that the first
 * applicable one is the answer. Nothing here scans the rule list.
 *
 * Memory layout (why it is not one object per rule): a rule is a number, its index. What decide()
 * reads of it lives in typed-array columns (RuleTable), and a destination key maps to that number
 * or, when several rules share the key, to an array of numbers. A 250,000-rule catalog then costs
 * its original rule objects plus a few bytes a rule, and decide() touches one column slot per
 * candidate instead of chasing a rule object.
 */
import { maskV4, maskV6Key, parseIPv4, parseIp } from './ip.js';
import { canonicalUrl, compileRule, levelOf, verdictFor, type ParsedRule, type ParseCache } from './rules.js';
import { InvalidRulesError, type Flow, type Level, type Mode, type Rule, type RuleError, type Verdict } from './types.js';

/** A rule index, or several sorted by precedence (first applicable wins). */
type Ref = number | number[];

/** The rules of one application key, indexed by destination. */
interface Bucket {
  level: Level;
  urls: Map<string, Ref> | null;
  hosts: Map<string, Ref> | null;
  wild: Map<string, Ref> | null; // key: the suffix after "*."
  wildLens: Int32Array | null; // bit set of suffix lengths present: skip slicing names at other lengths
  ip4: Map<number, Ref> | null;
  ip6: Map<string, Ref> | null;
  cidr4: { len: number; map: Map<number, Ref> }[] | null; // longest prefix first
  cidr6: { len: number; map: Map<string, Ref> }[] | null;
  any: Ref | null;
}

interface SubPath {
  key: string;
  bucket: Bucket;
}

const NONE = -1;
const PATH_MAX = 4096; // Linux's; longer keys still match: hasBit() says "maybe" beyond the set
const PROTO_MASK = 3; // flags bits 0-1: 0 any, 1 tcp, 2 udp
const SCOPED = 4;
const EXPIRES = 8;
const LEVELS: readonly Level[] = ['app-id', 'path', 'prefix', 'any'];

/** Per-rule columns that decide() reads; index = position among the compiled rules. */
class RuleTable {
  readonly raw: Rule[] = [];
  /** Precedence: score * 2 + (block ? 1 : 0); higher wins, so block beats allow at equal score. */
  readonly rank: Int32Array;
  /** Port range as lo | hi << 16; 0 = any port. */
  readonly ports: Int32Array;
  /** PROTO_MASK, SCOPED, EXPIRES bits; the level's index in LEVELS from bit 4. */
  readonly flags: Uint8Array;
  readonly expires = new Map<number, number>();
  readonly scopes = new Map<number, { users: ReadonlySet<string> | null; groups: ReadonlySet<string> | null }>();
  readonly hrefs = new Map<number, string>();
  /** Made on first use, then returned as is: no allocation per decision, no memory for unused rules. */
  readonly verdicts: (Verdict | undefined)[];

  constructor(size: number) {
    this.verdicts = new Array<Verdict | undefined>(size).fill(undefined); // filled: a sparse array would fall back to a dictionary
    this.rank = new Int32Array(size);
    this.ports = new Int32Array(size);
    this.flags = new Uint8Array(size);
  }

  add(c: ParsedRule): number {
    const i = this.raw.length;
    this.raw.push(c.rule);
    this.rank[i] = c.score * 2 + (c.action === 'block' ? 1 : 0);
    this.ports[i] = c.portLo === 0 ? 0 : c.portLo | (c.portHi << 16);
    let f = c.proto | (LEVELS.indexOf(levelOf(c.app)) << 4);
    if (c.expiresAt !== Infinity) {
      f |= EXPIRES;
      this.expires.set(i, c.expiresAt);
    }
    if (c.users !== null || c.groups !== null) {
      f |= SCOPED;
      this.scopes.set(i, { users: c.users, groups: c.groups });
    }
    if (c.endpoint.kind === 'url') this.hrefs.set(i, c.endpoint.href);
    this.flags[i] = f;
    return i;
  }

  level(i: number): Level {
    return LEVELS[this.flags[i]! >> 4]!;
  }
}

function newBucket(level: Level): Bucket {
  return { level, urls: null, hosts: null, wild: null, wildLens: null, ip4: null, ip6: null, cidr4: null, cidr6: null, any: null };
}

// Length sets as bit sets: a Set<number>.has() cost ~13 ns, a bit test ~3 ns, and decide() asks per path component and per domain label.
function setBit(bits: Int32Array, n: number): void {
  bits[n >> 5]! |= 1 << (n & 31);
}

/** Beyond the set's range the answer is "maybe": the caller then does the real lookup. */
function hasBit(bits: Int32Array, n: number): boolean {
  return n >> 5 >= bits.length || ((bits[n >> 5]! >>> (n & 31)) & 1) === 1;
}

function join(ref: Ref | null | undefined, i: number): Ref {
  if (ref === null || ref === undefined) return i;
  if (typeof ref === 'number') return [ref, i];
  ref.push(i);
  return ref;
}

function push<K>(map: Map<K, Ref>, key: K, i: number): void {
  const ref = map.get(key);
  if (typeof ref === 'object') ref.push(i);
  else map.set(key, join(ref, i));
}

function addToBucket(b: Bucket, c: ParsedRule, i: number): void {
  const e = c.endpoint;
  switch (e.kind) {
    case 'any': b.any = join(b.any, i); break;
    case 'url': push((b.urls ??= new Map()), e.host, i); break;
    case 'host': push((b.hosts ??= new Map()), e.host, i); break;
    case 'wildcard':
      push((b.wild ??= new Map()), e.suffix, i);
      setBit((b.wildLens ??= new Int32Array(8)), e.suffix.length); // names are at most 253 characters
      break;
    case 'ip':
      if (typeof e.key === 'number') push((b.ip4 ??= new Map()), e.key, i);
      else push((b.ip6 ??= new Map()), e.key, i);
      break;
    case 'cidr': {
      const tables: { len: number; map: Map<unknown, Ref> }[] = e.v === 4 ? (b.cidr4 ??= []) : (b.cidr6 ??= []);
      let t = tables.find((x) => x.len === e.len);
      if (!t) {
        t = { len: e.len, map: new Map() };
        tables.push(t);
        tables.sort((x, y) => y.len - x.len);
      }
      push(t.map, e.key, i);
      break;
    }
  }
}

/** Sort every multi-rule list by precedence, highest first. */
function sortBucket(b: Bucket, rank: Int32Array): void {
  const byRank = (x: number, y: number): number => rank[y]! - rank[x]!;
  const sort = (ref: Ref | null | undefined): void => void (typeof ref === 'object' && ref?.sort(byRank));
  sort(b.any);
  for (const m of [b.urls, b.hosts, b.wild, b.ip4, b.ip6]) if (m) for (const l of m.values()) sort(l);
  for (const t of [...(b.cidr4 ?? []), ...(b.cidr6 ?? [])]) for (const l of t.map.values()) sort(l);
}

export interface PolicyStats {
  rules: number;
  byAction: Record<'allow' | 'block', number>;
  byLevel: Record<Exclude<Level, 'default'>, number>;
  applications: number;
}

export class Policy {
  private readonly byId = new Map<string, Bucket>();
  private readonly byPath = new Map<string, Bucket>();
  private readonly byPrefix = new Map<string, Bucket>();
  private readonly prefixLens = new Int32Array(PATH_MAX / 32);
  private readonly subByFirst = new Map<string, SubPath[]>();
  private readonly subFirstLens = new Int32Array(PATH_MAX / 32); // first-component lengths present: skip slicing others
  private anyApp: Bucket | null = null;
  private defaultVerdict: Verdict;
  private table: RuleTable;
  // The flow IP, parsed at most once per decide() (decide is synchronous, so instance state is safe).
  private ipDone = false;
  private ip4 = -1;
  private ip6: readonly number[] | null = null;
  private names: readonly string[] = []; // the flow's host names as index keys, made once per decide()

  private constructor(readonly mode: Mode, size: number) {
    this.defaultVerdict = defaultVerdict(mode);
    this.table = new RuleTable(size);
  }

  /** Validate and compile. Throws InvalidRulesError listing every bad rule: never a partial policy. */
  static compile(rules: readonly unknown[], mode: Mode = 'passive-allow'): Policy {
    const errors: RuleError[] = [];
    const seen = new Map<string, number>();
    const cache: ParseCache = { apps: new Map() };
    const p = new Policy(mode, rules.length);
    for (let index = 0; index < rules.length; index++) {
      const raw = rules[index];
      const id = (raw as { id?: unknown } | null)?.id;
      if (typeof id === 'string' && id !== '') {
        const firstUse = seen.get(id);
        if (firstUse !== undefined) errors.push({ index, id, field: 'id', message: `duplicate id (first used by rule #${firstUse + 1})` });
        else seen.set(id, index);
      }
      const c = compileRule(raw, index, cache);
      if (Array.isArray(c)) errors.push(...c);
      else if (errors.length === 0) addToBucket(p.bucketFor(c), c, p.table.add(c)); // after an error the policy is thrown away: only validate
    }
    if (errors.length > 0) throw new InvalidRulesError(errors);
    for (const b of p.buckets()) sortBucket(b, p.table.rank);
    return p;
  }

  /** Errors of every bad rule, or [] when the rules compile. */
  static validate(rules: readonly unknown[]): RuleError[] {
    try {
      Policy.compile(rules);
      return [];
    } catch (e) {
      if (e instanceof InvalidRulesError) return e.errors;
      throw e;
    }
  }

  /** The same index under another mode (no recompile). */
  withMode(mode: Mode): Policy {
    const p = Object.create(Policy.prototype) as Policy;
    Object.assign(p, this, { mode, defaultVerdict: defaultVerdict(mode) });
    return p;
  }

  get rules(): Rule[] {
    return this.table.raw.slice();
  }

  stats(): PolicyStats {
    const t = this.table;
    const s: PolicyStats = {
      rules: t.raw.length,
      byAction: { allow: 0, block: 0 },
      byLevel: { 'app-id': 0, path: 0, prefix: 0, any: 0 },
      applications: this.byId.size + this.byPath.size + this.byPrefix.size + this.subByFirst.size + (this.anyApp ? 1 : 0),
    };
    for (let i = 0; i < t.raw.length; i++) {
      s.byAction[t.raw[i]!.action]++;
      s.byLevel[t.level(i) as Exclude<Level, 'default'>]++;
    }
    return s;
  }

  /** The verdict for one flow, with the deciding rule and why. `now` decides rule expiry. */
  decide(flow: Flow, now: number = Date.now()): Verdict {
    this.ipDone = false;
    this.names = hostKeys(flow.remote.hostnames);
    const app = flow.app;
    let b: Bucket | undefined;
    let r = NONE;
    if (app.id !== undefined && (b = this.byId.get(app.id)) && (r = this.match(b, flow, now)) !== NONE) return this.verdictOf(r);
    if ((b = this.byPath.get(app.path)) && (r = this.match(b, flow, now)) !== NONE) return this.verdictOf(r);
    if ((this.byPrefix.size > 0 || this.subByFirst.size > 0) && (r = this.matchPrefixes(flow, now)) !== NONE) return this.verdictOf(r);
    if (this.anyApp && (r = this.match(this.anyApp, flow, now)) !== NONE) return this.verdictOf(r);
    return this.defaultVerdict;
  }

  private verdictOf(i: number): Verdict {
    const t = this.table;
    return t.verdicts[i] ?? (t.verdicts[i] = verdictFor(t.raw[i]!, t.level(i)));
  }

  private bucketFor(c: ParsedRule): Bucket {
    const a = c.app;
    const get = (m: Map<string, Bucket>, k: string, level: Level): Bucket => {
      let b = m.get(k);
      if (!b) m.set(k, (b = newBucket(level)));
      return b;
    };
    switch (a.kind) {
      case 'any': return (this.anyApp ??= newBucket('any'));
      case 'id': return get(this.byId, a.key, 'app-id');
      case 'path': return get(this.byPath, a.key, 'path');
      case 'prefix':
        if (a.key.length < PATH_MAX) setBit(this.prefixLens, a.key.length);
        return get(this.byPrefix, a.key, 'prefix');
      case 'subpath': {
        const first = a.key.slice(1).split('/')[0]!;
        if (first.length < PATH_MAX) setBit(this.subFirstLens, first.length);
        const list = this.subByFirst.get(first) ?? [];
        this.subByFirst.set(first, list);
        let s = list.find((x) => x.key === a.key);
        if (!s) list.push((s = { key: a.key, bucket: newBucket('prefix') }));
        return s.bucket;
      }
    }
  }

  private *buckets(): Iterable<Bucket> {
    yield* this.byId.values();
    yield* this.byPath.values();
    yield* this.byPrefix.values();
    for (const l of this.subByFirst.values()) for (const s of l) yield s.bucket;
    if (this.anyApp) yield this.anyApp;
  }

  /** Prefix and sub-path level: candidates ordered by how deep into the path their match reaches. */
  private matchPrefixes(flow: Flow, now: number): number {
    const path = flow.app.path;
    if (this.subByFirst.size === 0) {
      // fast path: prefixes only, longest first
      for (let i = path.lastIndexOf('/'); i >= 0; i = i === 0 ? -1 : path.lastIndexOf('/', i - 1)) {
        if (!hasBit(this.prefixLens, i + 1)) continue;
        const b = this.byPrefix.get(path.slice(0, i + 1));
        const r = b ? this.match(b, flow, now) : NONE;
        if (r !== NONE) return r;
      }
      return NONE;
    }
    // [end of match, length, prefix?, bucket]; allocated only when something matches
    let cands: [number, number, number, Bucket][] | null = null;
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      if (hasBit(this.prefixLens, i + 1)) {
        const b = this.byPrefix.get(path.slice(0, i + 1));
        if (b) (cands ??= []).push([i, i + 1, 1, b]);
      }
      const next = path.indexOf('/', i + 1);
      const end = next < 0 ? path.length : next;
      if (!hasBit(this.subFirstLens, end - i - 1)) continue;
      const subs = this.subByFirst.get(path.slice(i + 1, end));
      if (!subs) continue;
      for (const s of subs) {
        const e = i + s.key.length;
        if (path.startsWith(s.key, i) && (e === path.length || path.charCodeAt(e) === 47)) (cands ??= []).push([e, s.key.length, 0, s.bucket]);
      }
    }
    if (!cands) return NONE;
    cands.sort((x, y) => y[0] - x[0] || y[1] - x[1] || y[2] - x[2]);
    for (const c of cands) {
      const r = this.match(c[3], flow, now);
      if (r !== NONE) return r;
    }
    return NONE;
  }

  /** The best applicable rule of one application's bucket, visiting endpoint classes most specific first. */
  private match(b: Bucket, flow: Flow, now: number): number {
    const remote = flow.remote;
    let best = NONE;
    if (b.urls && remote.url !== undefined) {
      best = this.matchUrl(b.urls, flow, now);
      if (best !== NONE) return best;
    }
    const names = this.names;
    if (b.hosts) {
      for (let i = 0; i < names.length; i++) best = this.better(best, this.first(b.hosts.get(names[i]!), flow, now));
      if (best !== NONE) return best;
    }
    if (b.wild) {
      for (let i = 0; i < names.length; i++) {
        const h = names[i]!;
        for (let d = h.indexOf('.'); d >= 0; d = h.indexOf('.', d + 1)) {
          if (hasBit(b.wildLens!, h.length - d - 1)) best = this.better(best, this.first(b.wild.get(h.slice(d + 1)), flow, now));
        }
      }
      if (best !== NONE) return best;
    }
    if (b.ip4 || b.ip6 || b.cidr4 || b.cidr6) {
      best = this.matchIp(b, flow, now);
      if (best !== NONE) return best;
    }
    return b.any === null ? NONE : this.first(b.any, flow, now);
  }

  /** Better of two candidates: higher rank (score, then block over allow). */
  private better(a: number, b: number): number {
    if (a === NONE) return b;
    if (b === NONE) return a;
    return this.table.rank[b]! > this.table.rank[a]! ? b : a;
  }

  private matchUrl(urls: Map<string, Ref>, flow: Flow, now: number): number {
    let u: URL;
    try {
      u = new URL(flow.remote.url!);
    } catch {
      return NONE; // a flow URL we cannot parse matches no URL rule; host/IP rules still apply
    }
    const ref = urls.get(u.hostname);
    if (ref === undefined) return NONE;
    const c = canonicalUrl(u);
    for (const i of typeof ref === 'number' ? [ref] : ref) {
      const h = this.table.hrefs.get(i)!;
      const hit = c === h || (c.startsWith(h) && (h.endsWith('/') || c.charCodeAt(h.length) === 47));
      if (hit && this.applies(i, flow, now)) return i;
    }
    return NONE;
  }

  private matchIp(b: Bucket, flow: Flow, now: number): number {
    if (!this.ipDone) {
      this.ipDone = true;
      this.ip4 = parseIPv4(flow.remote.ip);
      this.ip6 = null;
      if (this.ip4 < 0) {
        const p = parseIp(flow.remote.ip); // IPv6, or IPv4-mapped IPv6
        if (p?.v === 4) this.ip4 = p.n;
        else if (p) this.ip6 = p.w;
      }
    }
    const n = this.ip4;
    let r = NONE;
    if (n >= 0) {
      if (b.ip4 && (r = this.first(b.ip4.get(n), flow, now)) !== NONE) return r;
      if (b.cidr4) for (const t of b.cidr4) if ((r = this.first(t.map.get(maskV4(n, t.len)), flow, now)) !== NONE) return r;
    } else if (this.ip6) {
      const w = this.ip6;
      if (b.ip6 && (r = this.first(b.ip6.get(maskV6Key(w, 128)), flow, now)) !== NONE) return r;
      if (b.cidr6) for (const t of b.cidr6) if ((r = this.first(t.map.get(maskV6Key(w, t.len)), flow, now)) !== NONE) return r;
    }
    return NONE;
  }

  /** Lists are sorted by precedence, so the first applicable rule is the list's best. */
  private first(ref: Ref | undefined, flow: Flow, now: number): number {
    if (ref === undefined) return NONE;
    if (typeof ref === 'number') return this.applies(ref, flow, now) ? ref : NONE;
    for (let k = 0; k < ref.length; k++) if (this.applies(ref[k]!, flow, now)) return ref[k]!;
    return NONE;
  }

  private applies(i: number, flow: Flow, now: number): boolean {
    const t = this.table;
    const ports = t.ports[i]!;
    if (ports !== 0 && (flow.port < (ports & 0xffff) || flow.port > ports >>> 16)) return false;
    const f = t.flags[i]!;
    const proto = f & PROTO_MASK;
    if (proto !== 0 && proto !== (flow.protocol === 'tcp' ? 1 : 2)) return false;
    if ((f & EXPIRES) !== 0 && t.expires.get(i)! <= now) return false;
    if ((f & SCOPED) !== 0) return inScope(t.scopes.get(i)!, flow);
    return true;
  }
}

/**
 * Host names as the index keys them: lower case, no trailing dot. Flows normally carry them so
 * already; checking costs ~1 ns a character, while toLowerCase() always made a new string to hash.
 */
function hostKeys(names: readonly string[]): readonly string[] {
  for (let i = 0; i < names.length; i++) if (!isHostKey(names[i]!)) return names.map(hostKey);
  return names;
}

function isHostKey(h: string): boolean {
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if ((c >= 65 && c <= 90) || c > 127) return false;
  }
  return h.charCodeAt(h.length - 1) !== 46;
}

function hostKey(h: string): string {
  const l = h.toLowerCase();
  return l.charCodeAt(l.length - 1) === 46 ? l.slice(0, -1) : l;
}

function inScope(s: { users: ReadonlySet<string> | null; groups: ReadonlySet<string> | null }, flow: Flow): boolean {
  const a = flow.app;
  if (s.users && ((a.user !== undefined && s.users.has(a.user)) || (a.uid !== undefined && s.users.has(String(a.uid))))) return true;
  if (s.groups && a.groups) for (const g of a.groups) if (s.groups.has(g)) return true;
  return false;
}

function defaultVerdict(mode: Mode): Verdict {
  const action = mode === 'passive-allow' ? 'allow' : mode === 'passive-block' ? 'block' : 'ask';
  return Object.freeze({ action, level: 'default', reason: `no rule applies; mode ${mode} -> ${action}` });
}
