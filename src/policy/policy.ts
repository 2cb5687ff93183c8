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
 */
import { maskV4, maskV6Key, parseIPv4, parseIp } from './ip.js';
import { canonicalUrl, compileRule, levelOf, verdictOf, type CompiledRule, type ParseCache } from './rules.js';
import { InvalidRulesError, type Flow, type Level, type Mode, type Rule, type RuleError, type Verdict } from './types.js';

type List = CompiledRule[];

/** The rules of one application key, indexed by destination. */
interface Bucket {
  urls: Map<string, List> | null;
  hosts: Map<string, List> | null;
  wild: Map<string, List> | null; // key: the suffix after "*."
  wildLens: Set<number> | null; // suffix lengths present: skip slicing names at other lengths
  ip4: Map<number, List> | null;
  ip6: Map<string, List> | null;
  cidr4: { len: number; map: Map<number, List> }[] | null; // longest prefix first
  cidr6: { len: number; map: Map<string, List> }[] | null;
  any: List | null;
}

interface SubPath {
  key: string;
  bucket: Bucket;
}

/** Better of two candidates: higher score, or block over allow at equal score. */
function better(a: CompiledRule | undefined, b: CompiledRule | undefined): CompiledRule | undefined {
  if (!a) return b;
  if (!b) return a;
  if (b.score !== a.score) return b.score > a.score ? b : a;
  return b.action === 'block' && a.action === 'allow' ? b : a;
}

function byPrecedence(a: CompiledRule, b: CompiledRule): number {
  if (a.score !== b.score) return b.score - a.score;
  return a.action === b.action ? 0 : a.action === 'block' ? -1 : 1;
}

function newBucket(): Bucket {
  return { urls: null, hosts: null, wild: null, wildLens: null, ip4: null, ip6: null, cidr4: null, cidr6: null, any: null };
}

function push<K>(map: Map<K, List>, key: K, r: CompiledRule): void {
  const list = map.get(key);
  if (list) list.push(r);
  else map.set(key, [r]);
}

function addToBucket(b: Bucket, r: CompiledRule): void {
  const e = r.endpoint;
  switch (e.kind) {
    case 'any': (b.any ??= []).push(r); break;
    case 'url': push((b.urls ??= new Map()), e.host, r); break;
    case 'host': push((b.hosts ??= new Map()), e.host, r); break;
    case 'wildcard':
      push((b.wild ??= new Map()), e.suffix, r);
      (b.wildLens ??= new Set()).add(e.suffix.length);
      break;
    case 'ip':
      if (typeof e.key === 'number') push((b.ip4 ??= new Map()), e.key, r);
      else push((b.ip6 ??= new Map()), e.key, r);
      break;
    case 'cidr': {
      const tables: { len: number; map: Map<unknown, List> }[] = e.v === 4 ? (b.cidr4 ??= []) : (b.cidr6 ??= []);
      let t = tables.find((x) => x.len === e.len);
      if (!t) {
        t = { len: e.len, map: new Map() };
        tables.push(t);
        tables.sort((x, y) => y.len - x.len);
      }
      push(t.map, e.key, r);
      break;
    }
  }
}

function sortBucket(b: Bucket): void {
  const lists: (List | null)[] = [b.any];
  for (const m of [b.urls, b.hosts, b.wild, b.ip4, b.ip6]) if (m) for (const l of m.values()) lists.push(l);
  for (const t of [...(b.cidr4 ?? []), ...(b.cidr6 ?? [])]) for (const l of t.map.values()) lists.push(l as List);
  for (const l of lists) if (l && l.length > 1) l.sort(byPrecedence);
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
  private readonly prefixLens = new Set<number>();
  private readonly subByFirst = new Map<string, SubPath[]>();
  private readonly subFirstLens = new Set<number>(); // first-component lengths present: skip slicing others
  private anyApp: Bucket | null = null;
  private defaultVerdict!: Verdict;
  private compiled: CompiledRule[] = [];
  // The flow IP, parsed at most once per decide() (decide is synchronous, so instance state is safe).
  private ipDone = false;
  private ip4 = -1;
  private ip6: readonly number[] | null = null;

  private constructor(readonly mode: Mode) {
    this.defaultVerdict = defaultVerdict(mode);
  }

  /** Validate and compile. Throws InvalidRulesError listing every bad rule: never a partial policy. */
  static compile(rules: readonly unknown[], mode: Mode = 'passive-allow'): Policy {
    const errors: RuleError[] = [];
    const compiled: CompiledRule[] = [];
    const seen = new Map<string, number>();
    const cache: ParseCache = { apps: new Map() };
    rules.forEach((raw, index) => {
      const id = (raw as { id?: unknown } | null)?.id;
      if (typeof id === 'string' && id !== '') {
        const firstUse = seen.get(id);
        if (firstUse !== undefined) errors.push({ index, id, field: 'id', message: `duplicate id (first used by rule #${firstUse + 1})` });
        else seen.set(id, index);
      }
      const c = compileRule(raw, index, cache);
      if (Array.isArray(c)) errors.push(...c);
      else compiled.push(c);
    });
    if (errors.length > 0) throw new InvalidRulesError(errors);
    const p = new Policy(mode);
    p.compiled = compiled;
    for (const c of compiled) addToBucket(p.bucketFor(c), c);
    for (const b of p.buckets()) sortBucket(b);
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
    return this.compiled.map((c) => c.rule);
  }

  stats(): PolicyStats {
    const s: PolicyStats = {
      rules: this.compiled.length,
      byAction: { allow: 0, block: 0 },
      byLevel: { 'app-id': 0, path: 0, prefix: 0, any: 0 },
      applications: this.byId.size + this.byPath.size + this.byPrefix.size + this.subByFirst.size + (this.anyApp ? 1 : 0),
    };
    for (const c of this.compiled) {
      s.byAction[c.action]++;
      s.byLevel[levelOf(c.app) as Exclude<Level, 'default'>]++;
    }
    return s;
  }

  /** The verdict for one flow, with the deciding rule and why. `now` decides rule expiry. */
  decide(flow: Flow, now: number = Date.now()): Verdict {
    this.ipDone = false;
    const app = flow.app;
    let b: Bucket | undefined;
    let r: CompiledRule | undefined;
    if (app.id !== undefined && (b = this.byId.get(app.id)) && (r = this.match(b, flow, now))) return verdictOf(r);
    if ((b = this.byPath.get(app.path)) && (r = this.match(b, flow, now))) return verdictOf(r);
    if ((this.byPrefix.size > 0 || this.subByFirst.size > 0) && (r = this.matchPrefixes(flow, now))) return verdictOf(r);
    if (this.anyApp && (r = this.match(this.anyApp, flow, now))) return verdictOf(r);
    return this.defaultVerdict;
  }

  private bucketFor(c: CompiledRule): Bucket {
    const a = c.app;
    const get = (m: Map<string, Bucket>, k: string): Bucket => {
      let b = m.get(k);
      if (!b) m.set(k, (b = newBucket()));
      return b;
    };
    switch (a.kind) {
      case 'any': return (this.anyApp ??= newBucket());
      case 'id': return get(this.byId, a.key);
      case 'path': return get(this.byPath, a.key);
      case 'prefix':
        this.prefixLens.add(a.key.length);
        return get(this.byPrefix, a.key);
      case 'subpath': {
        const first = a.key.slice(1).split('/')[0]!;
        this.subFirstLens.add(first.length);
        const list = this.subByFirst.get(first) ?? [];
        this.subByFirst.set(first, list);
        let s = list.find((x) => x.key === a.key);
        if (!s) list.push((s = { key: a.key, bucket: newBucket() }));
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
  private matchPrefixes(flow: Flow, now: number): CompiledRule | undefined {
    const path = flow.app.path;
    if (this.subByFirst.size === 0) {
      // fast path: prefixes only, longest first
      for (let i = path.lastIndexOf('/'); i >= 0; i = i === 0 ? -1 : path.lastIndexOf('/', i - 1)) {
        if (!this.prefixLens.has(i + 1)) continue;
        const b = this.byPrefix.get(path.slice(0, i + 1));
        const r = b && this.match(b, flow, now);
        if (r) return r;
      }
      return undefined;
    }
    // [end of match, length, prefix?, bucket]; allocated only when something matches
    let cands: [number, number, number, Bucket][] | null = null;
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      if (this.prefixLens.has(i + 1)) {
        const b = this.byPrefix.get(path.slice(0, i + 1));
        if (b) (cands ??= []).push([i, i + 1, 1, b]);
      }
      const next = path.indexOf('/', i + 1);
      const end = next < 0 ? path.length : next;
      if (!this.subFirstLens.has(end - i - 1)) continue;
      const subs = this.subByFirst.get(path.slice(i + 1, end));
      if (!subs) continue;
      for (const s of subs) {
        const e = i + s.key.length;
        if (path.startsWith(s.key, i) && (e === path.length || path.charCodeAt(e) === 47)) (cands ??= []).push([e, s.key.length, 0, s.bucket]);
      }
    }
    if (!cands) return undefined;
    cands.sort((x, y) => y[0] - x[0] || y[1] - x[1] || y[2] - x[2]);
    for (const c of cands) {
      const r = this.match(c[3], flow, now);
      if (r) return r;
    }
    return undefined;
  }

  /** The best applicable rule of one application's bucket, visiting endpoint classes most specific first. */
  private match(b: Bucket, flow: Flow, now: number): CompiledRule | undefined {
    let best: CompiledRule | undefined;
    const remote = flow.remote;
    if (b.urls && remote.url !== undefined) {
      best = this.matchUrl(b.urls, flow, now);
      if (best) return best;
    }
    const names = remote.hostnames;
    if (b.hosts) {
      for (let i = 0; i < names.length; i++) best = better(best, first(b.hosts.get(hostKey(names[i]!)), flow, now));
      if (best) return best;
    }
    if (b.wild) {
      for (let i = 0; i < names.length; i++) {
        const h = hostKey(names[i]!);
        for (let d = h.indexOf('.'); d >= 0; d = h.indexOf('.', d + 1)) {
          if (b.wildLens!.has(h.length - d - 1)) best = better(best, first(b.wild.get(h.slice(d + 1)), flow, now));
        }
      }
      if (best) return best;
    }
    if (b.ip4 || b.ip6 || b.cidr4 || b.cidr6) {
      best = this.matchIp(b, flow, now);
      if (best) return best;
    }
    return b.any ? first(b.any, flow, now) : undefined;
  }

  private matchUrl(urls: Map<string, List>, flow: Flow, now: number): CompiledRule | undefined {
    let u: URL;
    try {
      u = new URL(flow.remote.url!);
    } catch {
      return undefined; // a flow URL we cannot parse matches no URL rule; host/IP rules still apply
    }
    const list = urls.get(u.hostname);
    if (!list) return undefined;
    const c = canonicalUrl(u);
    for (const r of list) {
      const h = (r.endpoint as { href: string }).href;
      const hit = c === h || (c.startsWith(h) && (h.endsWith('/') || c.charCodeAt(h.length) === 47));
      if (hit && applies(r, flow, now)) return r;
    }
    return undefined;
  }

  private matchIp(b: Bucket, flow: Flow, now: number): CompiledRule | undefined {
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
    let r: CompiledRule | undefined;
    if (n >= 0) {
      if (b.ip4 && (r = first(b.ip4.get(n), flow, now))) return r;
      if (b.cidr4) for (const t of b.cidr4) if ((r = first(t.map.get(maskV4(n, t.len)), flow, now))) return r;
    } else if (this.ip6) {
      const w = this.ip6;
      if (b.ip6 && (r = first(b.ip6.get(maskV6Key(w, 128)), flow, now))) return r;
      if (b.cidr6) for (const t of b.cidr6) if ((r = first(t.map.get(maskV6Key(w, t.len)), flow, now))) return r;
    }
    return undefined;
  }
}

/** Host names as the index keys them: lower case, no trailing dot (cheap when already so). */
function hostKey(h: string): string {
  const l = h.toLowerCase();
  return l.charCodeAt(l.length - 1) === 46 ? l.slice(0, -1) : l;
}

/** Lists are sorted by precedence, so the first applicable rule is the list's best. */
function first(list: List | undefined, flow: Flow, now: number): CompiledRule | undefined {
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i++) if (applies(list[i]!, flow, now)) return list[i];
  return undefined;
}

function applies(r: CompiledRule, flow: Flow, now: number): boolean {
  if (r.portLo !== 0 && (flow.port < r.portLo || flow.port > r.portHi)) return false;
  if (r.proto !== 0 && r.proto !== (flow.protocol === 'tcp' ? 1 : 2)) return false;
  if (r.expiresAt <= now) return false;
  if (r.users !== null || r.groups !== null) return inScope(r, flow);
  return true;
}

function inScope(r: CompiledRule, flow: Flow): boolean {
  const a = flow.app;
  if (r.users && ((a.user !== undefined && r.users.has(a.user)) || (a.uid !== undefined && r.users.has(String(a.uid))))) return true;
  if (r.groups && a.groups) for (const g of a.groups) if (r.groups.has(g)) return true;
  return false;
}

function defaultVerdict(mode: Mode): Verdict {
  const action = mode === 'passive-allow' ? 'allow' : mode === 'passive-block' ? 'block' : 'ask';
  return Object.freeze({ action, level: 'default', reason: `no rule applies; mode ${mode} -> ${action}` });
}
