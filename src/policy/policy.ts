/**
 * The compiled policy: an index over the rules and decide(flow).
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
 * The index: each application key (app id, path, prefix, sub-path, `any`) gets a number, each
 * destination string (host, wildcard suffix, URL host, IPv6 key) a number, and one PairTable maps
 * (application, destination class, destination) to the rules of that pair. decide() looks up the
 * flow's application keys and its destination numbers once, then probes the table for each level:
 * a handful of hash lookups, never a scan over the rule list.
 */
import { maskV4, maskV6, parseIPv4, parseIp } from './ip.js';
import { ByteDict, HASH_SEED, KeyChecks, byteString, hashChars, mix, step, utf8, type ByteDictImage } from './bytedict.js';
import { IdSet } from './ids.js';
import { Memo } from './memo.js';
import { runSliced } from './sliced.js';
import { KeyFilter, PairTable, TAG } from './pairs.js';
import { AppNumbers, ObjectInput, isInput } from './inputs.js';
import { canonicalUrl, hostKey, type AppMatch, type ParsedRule } from './rules.js';
import { NONE, RuleTable, type TableImage } from './table.js';
import { ImageRules, encodeRules } from './image.js';
import { InvalidRulesError, type Flow, type RuleInput, type RuleSource, type Level, type Mode, type Rule, type RuleError, type Verdict } from './types.js';

// Which destination classes an application has rules for: decide() probes only those.
const HAS = { url: 1, host: 2, wildcard: 4, ip4: 8, ip6: 16, cidr4: 32, cidr6: 64, any: 128 } as const;
const HAS_IP = HAS.ip4 | HAS.ip6 | HAS.cidr4 | HAS.cidr6;
const STEP = 256; // rules between a sliced compile's checks of the clock
/** Numbers found for one string: one (NONE for none) or a list, so that most lookups allocate nothing. */
type Apps = number | readonly number[];

function add(apps: Apps, a: number): Apps {
  return apps === NONE ? a : typeof apps === 'number' ? [apps, a] : [...apps, a];
}
const PATH_MAX = 4096; // Linux's; longer keys still match: hasBit() says "maybe" beyond the set

// Length sets as bit sets: a Set<number>.has() cost ~13 ns, a bit test ~3 ns, and decide() asks per path component and per domain label.
function setBit(bits: Int32Array, n: number): void {
  bits[n >> 5]! |= 1 << (n & 31);
}

/** Beyond the set's range the answer is "maybe": the caller then does the real lookup. */
function hasBit(bits: Int32Array, n: number): boolean {
  return n >> 5 >= bits.length || ((bits[n >> 5]! >>> (n & 31)) & 1) === 1;
}

/** `a`, or a copy of it with room for `need` ints: decide()'s scratch arrays grow, never shrink. */
function room(a: Int32Array<ArrayBuffer>, need: number): Int32Array<ArrayBuffer> {
  if (need <= a.length) return a;
  const more = new Int32Array(Math.max(need, a.length * 2));
  more.set(a);
  return more;
}

interface SubPath {
  key: Uint8Array; // UTF-8 of the sub-path, '/a/b'
  app: number;
}

const DICTS = ['byId', 'byPath', 'byPrefix', 'names', 'suffixes', 'keys6'] as const;

/**
 * A compiled policy as plain data (strings, numbers, typed arrays): what Policy.restore() needs to
 * answer exactly as the policy that made it, without parsing or validating a rule again. The
 * compiled-policy cache (catalog/policy-cache.ts) stores it; policy/ itself does no I/O.
 */
export interface PolicyImage {
  dicts: Record<(typeof DICTS)[number], ByteDictImage>;
  subpaths: { key: string; app: number }[];
  apps: Int32Array; // [application count, number of `any` or NONE]
  lens: { prefix: Int32Array; subFirst: Int32Array; wild: Int32Array };
  cidrLens: { app: number; v: 4 | 6; lens: number[] }[];
  appHas: Uint8Array;
  appAny: Int32Array;
  pairs: Int32Array;
  ip4Keys: Int32Array;
  table: TableImage;
  /** Each rule as JSON, UTF-8, one after another; rule i ends at ruleEnds[i]. */
  ruleText: Uint8Array;
  ruleEnds: Int32Array;
}

export type IndexImage = Omit<PolicyImage, 'ruleText' | 'ruleEnds'>;

export interface PolicyStats {
  rules: number;
  byAction: Record<'allow' | 'block', number>;
  byLevel: Record<Exclude<Level, 'default'>, number>;
  applications: number;
}

export class Policy {
  private readonly table: RuleTable;
  private readonly pairs: PairTable;
  // application keys -> application numbers (byte lengths in the bit sets: UTF-8, as the dictionaries key)
  private readonly byId: ByteDict;
  private readonly byPath: ByteDict;
  private readonly byPrefix: ByteDict;
  private readonly prefixLens: Int32Array;
  private readonly subFirst: ByteDict; // a sub-path's first component -> its list in subLists
  private readonly subLists: SubPath[][] = [];
  private listHomes: number[] = []; // while compiling: where list k's reference is kept (see keepRef)
  private readonly subFirstLens: Int32Array; // first-component lengths present: skip hashing others
  private anyApp = NONE;
  private appCount = 0;
  private readonly appHas: Uint8Array; // HAS bits per application
  private readonly appAny: Int32Array; // rules with endpoint `any`, per application
  private readonly ip4Keys: KeyFilter; // IPv4 addresses and networks some rule names
  /**
   * The IPv4 prefix lengths an application's CIDR rules have, as bits: [2a] lengths 0-31, [2a + 1]
   * length 32. Read in place, where a Map of length lists cost a chase through a Map and an array for
   * each IPv4 flow of an application with CIDR rules (measured -6% time a decision, generated catalog).
   */
  private readonly cidr4Bits: Int32Array;
  private readonly cidr6Lens = new Map<number, number[]>(); // per application, longest first
  // destination strings -> destination numbers
  private readonly names: ByteDict; // hosts, URL hosts
  private readonly suffixes: ByteDict; // wildcard suffixes, hashed last byte first: looked up by a walk from the name's end
  private readonly wildLens: Int32Array; // suffix lengths present (names are at most 253 characters)
  private readonly keys6: ByteDict; // IPv6 addresses and networks
  private defaultVerdict: Verdict;

  // The flow's destination, resolved at most once per decide() (decide is synchronous, so instance state is safe).
  private rawNames: readonly string[] = []; // as the flow has them: the memos are keyed by these strings
  private nameIds: number[] = []; // per host name: its number, or NONE
  private nameCount = -1; // how many of nameIds are this flow's; -1: not yet looked up
  private suffixIds = new Int32Array(16); // numbers of the wildcard suffixes of the names, longest first per name: [0 .. suffixCount)
  private suffixCount = -1; // -1: not yet looked up
  private cands = new Int32Array(32); // prefixApps()'s candidates, four ints each (reused: no allocation per decision)

  /**
   * decide()'s lookups by a flow's strings, memoised (memo.ts): a path's application, a path's prefix
   * and sub-path candidates, a host name's number and its suffixes that wildcard rules name. A
   * machine's connections come from a few programs to a few hundred names, and the agent reuses each
   * path's and each DNS name's string, whose hash V8 keeps: one lookup in these small, hot Maps then
   * replaces a lookup in a dictionary of every name in the catalog, or a slice and a lookup per path
   * component or label. Each is consulted where its lookup would be, so a verdict found early costs
   * none of the later ones. App ids are not memoised: a catalog names far fewer of them than paths or
   * names, their dictionary stays in cache, and a memo in front of it cost more than it saved
   * (in-process A/B on the generated catalog: +1-8% decisions/s without it on the cold workloads,
   * +2-13% on one machine's traffic; NuAppFirewall's catalog within +-3%).
   */
  private readonly pathMemo = new Memo<number>(NONE);
  private readonly prefixMemo = new Memo<Apps>(NONE);
  private readonly nameMemo = new Memo<number>(NONE);
  private readonly wildMemo = new Memo<Apps>(NONE);
  /**
   * An IPv6 address's words (or its IPv4 number if it is IPv4-mapped, null if it does not parse):
   * its parse costs ~10x an IPv4 parse, which a memo lookup would not beat.
   */
  private readonly ip6Memo = new Memo<number | readonly number[] | null>();
  /** decide()'s put-off key comparisons (KeyChecks); undefined while it decides again comparing every key. */
  private checks: KeyChecks | undefined = new KeyChecks();
  private ipDone = false;
  private ip4 = -1;
  private ip6: readonly number[] | null = null;
  private readonly v6key = new Uint8Array(16); // the key probed: maskV6() of ip6

  private constructor(readonly mode: Mode, size: number, table?: RuleTable, img?: IndexImage) {
    this.defaultVerdict = defaultVerdict(mode);
    this.table = table ?? new RuleTable(size);
    this.pairs = new PairTable(size, img?.pairs);
    this.ip4Keys = new KeyFilter(size, img?.ip4Keys);
    this.appHas = img?.appHas ?? new Uint8Array(size + 1);
    this.appAny = img?.appAny ?? new Int32Array(size + 1).fill(NONE);
    this.cidr4Bits = new Int32Array(2 * (size + 1));
    const d = img?.dicts;
    this.byId = new ByteDict(false, d?.byId);
    this.byPath = new ByteDict(false, d?.byPath);
    this.byPrefix = new ByteDict(false, d?.byPrefix);
    this.subFirst = new ByteDict();
    // host names: most rules of a big catalog name one, many the same one. Room for a quarter of the
    // rules: the generated catalog's 250,000 (117,768 names) then grow once instead of 14 times;
    // NuAppFirewall's 153,128 (23,321 names) get a table one size bigger than they need
    this.names = new ByteDict(false, d?.names, size >> 2);
    this.suffixes = new ByteDict(true, d?.suffixes);
    this.keys6 = new ByteDict(false, d?.keys6);
    this.prefixLens = img?.lens.prefix ?? new Int32Array(PATH_MAX / 32);
    this.subFirstLens = img?.lens.subFirst ?? new Int32Array(PATH_MAX / 32);
    this.wildLens = img?.lens.wild ?? new Int32Array(8);
    if (img) {
      this.appCount = img.apps[0]!;
      this.anyApp = img.apps[1]!;
      for (const sp of img.subpaths) this.addSubPath(sp.key, sp.app);
    }
  }

  /** The policy as plain data, for Policy.restore(). */
  image(): PolicyImage {
    const { text, ends } = encodeRules(this.ruleSource);
    return { ...this.indexImage(), ruleText: text, ruleEnds: ends };
  }

  /** image() without the rules' bytes: a writer that streams them makes them with a RuleEncoder over `ruleSource`. */
  indexImage(): IndexImage {
    const cidrLens: PolicyImage['cidrLens'] = [];
    for (let app = 0; app < this.appCount; app++) {
      const lens = this.cidr4LensOf(app);
      if (lens.length > 0) cidrLens.push({ app, v: 4, lens });
    }
    for (const [app, lens] of this.cidr6Lens) cidrLens.push({ app, v: 6, lens });
    const dicts = Object.fromEntries(DICTS.map((k) => [k, this[k].image()])) as PolicyImage['dicts'];
    const decoder = new TextDecoder();
    const subpaths = this.subLists.flat().map((sp) => ({ key: decoder.decode(sp.key), app: sp.app }));
    return {
      dicts,
      subpaths,
      apps: Int32Array.of(this.appCount, this.anyApp),
      lens: { prefix: this.prefixLens, subFirst: this.subFirstLens, wild: this.wildLens },
      cidrLens,
      appHas: this.appHas,
      appAny: this.appAny,
      ip4Keys: this.ip4Keys.bits,
      pairs: this.pairs.image,
      table: this.table.toImage(),
    };
  }

  /**
   * The policy an image() was made of, under `mode`: it decides exactly as that policy did. The
   * image is trusted to be one image() made (catalog/policy-cache.ts checks where it came from): only its
   * sizes are checked here. Rule objects are made from their JSON when a verdict first names them:
   * from `img.ruleText`, or from `rules` where the caller keeps that text elsewhere (a file).
   */
  static restore(img: PolicyImage, mode: Mode, rules: RuleSource = new ImageRules(img.ruleText, img.ruleEnds)): Policy {
    const size = img.ruleEnds.length;
    if (rules.length !== size || img.table.info.length !== size * 2 || img.appHas.length !== size + 1 || img.appAny.length !== size + 1 || img.apps.length !== 2 || img.apps[0]! > size + 1) {
      throw new Error('policy image: sizes do not agree');
    }
    const table = RuleTable.fromImage(img.table, rules);
    const p = new Policy(mode, size, table, img);
    for (const c of img.cidrLens) {
      if (c.v === 6) p.cidr6Lens.set(c.app, c.lens);
      else for (const len of c.lens) p.markCidr4(c.app, len);
    }
    return p;
  }

  /**
   * Validate and compile: rule objects as parsed from a file, or a RuleInput (a catalog's bytes).
   * Throws InvalidRulesError listing every bad rule: never a partial policy.
   */
  static compile(rules: readonly unknown[] | RuleInput, mode: Mode = 'passive-allow'): Policy {
    const steps = Policy.steps(rules, mode);
    for (;;) {
      const s = steps.next();
      if (s.done) return s.value;
    }
  }

  /**
   * compile() in slices of `sliceMs` with the event loop let run between them: the agent reloads a
   * catalog while it keeps deciding with the rules it has (a 250,000-rule catalog is ~1 s of compile).
   * Rejects with InvalidRulesError as compile() throws, or with `signal`'s reason once it is aborted.
   */
  static compileSliced(rules: readonly unknown[] | RuleInput, mode: Mode = 'passive-allow', sliceMs = 4, signal?: AbortSignal): Promise<Policy> {
    return runSliced(Policy.steps(rules, mode), sliceMs, signal);
  }

  /** The compile, pausing (yield) after every STEP rules of each pass. */
  private static *steps(rules: readonly unknown[] | RuleInput, mode: Mode): Generator<void, Policy> {
    const input = isInput(rules) ? rules : new ObjectInput(rules);
    const errors: RuleError[] = [];
    const p = new Policy(mode, input.length);
    const cache = new AppNumbers((a) => p.newApp(a), input.length);
    for (let index = 0; index < input.length; index++) {
      const c = input.compile(index, cache);
      if (Array.isArray(c)) errors.push(...c);
      else if (errors.length === 0) p.add(c.appNo, c, p.table.add(c)); // after an error the policy is thrown away: only validate
      if (index % STEP === STEP - 1) yield;
    }
    // Duplicate ids in a pass of their own: interleaved with the compile above, the lookups' cache
    // misses cost ~3x as much (measured with a Map on the generated 250,000-rule catalog).
    const ids = new IdSet(input.length);
    const dups: RuleError[] = [];
    for (let index = 0; index < input.length; index++) {
      const h = input.idHash(index);
      const firstUse = h === undefined ? index : ids.firstUse(h, index, input);
      if (firstUse !== index) dups.push({ index, id: input.id(index), field: 'id', message: `duplicate id (first used by rule #${firstUse + 1})` });
      if (index % STEP === STEP - 1) yield;
    }
    if (dups.length > 0) {
      // in rule order, a rule's duplicate id before its other errors (the sort is stable)
      const all = [...dups, ...errors].sort((x, y) => x.index - y.index);
      throw new InvalidRulesError(all);
    }
    if (errors.length > 0) throw new InvalidRulesError(errors);
    p.finish(input.source);
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

  /**
   * Its rules read from `source` from now on, which gives the same ones (an image just written of
   * them): what held them before, a catalog's bytes, can be let go.
   */
  readRulesFrom(source: RuleSource): void {
    this.table.replaceSource(source);
  }

  /** The rules one at a time, without making the list `rules` makes. */
  get ruleSource(): RuleSource {
    return this.table.source;
  }

  get rules(): Rule[] {
    return Array.from({ length: this.table.length }, (_, i) => this.table.rule(i));
  }

  stats(): PolicyStats {
    const t = this.table;
    const s: PolicyStats = {
      rules: t.length,
      byAction: { allow: 0, block: 0 },
      byLevel: { 'app-id': 0, path: 0, prefix: 0, any: 0 },
      applications: this.appCount,
    };
    for (let i = 0; i < t.length; i++) {
      s.byAction[t.action(i)]++;
      s.byLevel[t.level(i) as Exclude<Level, 'default'>]++;
    }
    return s;
  }

  /** The verdict for one flow, with the deciding rule and why. `now` decides rule expiry. */
  decide(flow: Flow, now: number = Date.now()): Verdict {
    const c = this.checks!;
    c.n = 0;
    const v = this.decideOnce(flow, now);
    if (c.n === 0 || c.allHold()) return v;
    // a lookup took another key of the same hash and length: its answer, and whatever the memos took
    // from this decision, may be wrong. Decide again, comparing every key (rare unless made on purpose)
    for (const m of [this.pathMemo, this.prefixMemo, this.nameMemo, this.wildMemo] as Memo<unknown>[]) m.clear();
    this.checks = undefined;
    try {
      return this.decideOnce(flow, now);
    } finally {
      this.checks = c;
    }
  }

  private decideOnce(flow: Flow, now: number): Verdict {
    this.rawNames = flow.remote.hostnames;
    this.nameCount = -1;
    this.suffixCount = -1;
    this.ipDone = false;
    const app = flow.app;
    let a: number | undefined;
    let r = NONE;
    const id = app.id;
    if (id !== undefined) {
      a = this.byId.get(id, this.checks);
      if (a !== NONE && (r = this.match(a, flow, now)) !== NONE) return this.table.verdict(r);
    }
    const path = app.path;
    a = this.pathMemo.get(path);
    if (a === undefined) this.pathMemo.set(path, (a = this.byPath.get(path, this.checks)));
    if (a !== NONE && (r = this.match(a, flow, now)) !== NONE) return this.table.verdict(r);
    if (this.byPrefix.size > 0 || this.subLists.length > 0) {
      let p = this.prefixMemo.get(path);
      if (p === undefined) this.prefixMemo.set(path, (p = this.prefixApps(path)));
      if (typeof p === 'number') {
        if (p !== NONE && (r = this.match(p, flow, now)) !== NONE) return this.table.verdict(r);
      } else for (let k = 0; k < p.length; k++) if ((r = this.match(p[k]!, flow, now)) !== NONE) return this.table.verdict(r);
    }
    if (this.anyApp !== NONE && (r = this.match(this.anyApp, flow, now)) !== NONE) return this.table.verdict(r);
    return this.defaultVerdict;
  }

  /** Numbers a new application and indexes its key. */
  private newApp(a: AppMatch): number {
    const n = this.appCount++;
    switch (a.kind) {
      case 'any': this.anyApp = n; break;
      case 'id': this.byId.set(a.key, n); break;
      case 'path': this.byPath.set(a.key, n); break;
      case 'prefix': {
        const len = utf8(a.key).length;
        if (len < PATH_MAX) setBit(this.prefixLens, len);
        this.byPrefix.set(a.key, n);
        break;
      }
      case 'subpath': this.addSubPath(a.key, n); break;
    }
    return n;
  }

  private addSubPath(key: string, app: number): void {
    const first = key.slice(1).split('/')[0]!;
    const len = utf8(first).length;
    if (len < PATH_MAX) setBit(this.subFirstLens, len);
    const k = this.subFirst.get(first);
    if (k < 0) this.subFirst.set(first, this.subLists.length);
    const { bytes, length } = utf8(key);
    (k < 0 ? this.subLists[this.subLists.push([]) - 1]! : this.subLists[k]!).push({ key: bytes.slice(0, length), app });
  }

  private add(app: number, c: ParsedRule, i: number): void {
    const e = c.endpoint;
    switch (e.kind) {
      case 'any': {
        this.appHas[app]! |= HAS.any;
        const before = this.appAny[app]!;
        this.appAny[app] = this.table.join(before, i);
        this.keepRef(-1 - app, before);
        break;
      }
      case 'url': this.put(app, i, HAS.url, TAG.url, this.names.intern(e.host)); break;
      case 'host': this.put(app, i, HAS.host, TAG.host, c.keyBytes ? this.names.internBytes(c.keyBytes, c.keyStart, c.keyEnd) : this.names.intern(e.host)); break;
      case 'wildcard':
        setBit(this.wildLens, c.keyBytes ? c.keyEnd - c.keyStart : utf8(e.suffix).length);
        this.put(app, i, HAS.wildcard, TAG.wild, c.keyBytes ? this.suffixes.internBytes(c.keyBytes, c.keyStart, c.keyEnd) : this.suffixes.intern(e.suffix));
        break;
      case 'ip':
        if (typeof e.key === 'number') this.put(app, i, HAS.ip4, TAG.ip4, e.key | 0);
        else this.put(app, i, HAS.ip6, TAG.ip6, this.keys6.internBytes(e.key, 0, 16));
        break;
      case 'cidr': {
        if (e.v === 4) {
          this.markCidr4(app, e.len);
          this.put(app, i, HAS.cidr4, TAG.cidr4 + e.len, (e.key as number) | 0);
          break;
        }
        const l = this.cidr6Lens.get(app) ?? [];
        if (!l.includes(e.len)) this.cidr6Lens.set(app, [...l, e.len].sort((x, y) => y - x));
        this.put(app, i, HAS.cidr6, TAG.cidr6 + e.len, this.keys6.internBytes(e.key as Uint8Array, 0, 16));
        break;
      }
    }
  }

  private markCidr4(app: number, len: number): void {
    if (len === 32) this.cidr4Bits[2 * app + 1]! |= 1;
    else this.cidr4Bits[2 * app]! |= 1 << len;
  }

  /** The IPv4 prefix lengths of an application's CIDR rules, longest first. */
  private cidr4LensOf(app: number): number[] {
    const lens = (this.cidr4Bits[2 * app + 1]! & 1) !== 0 ? [32] : [];
    for (let w = this.cidr4Bits[2 * app]!; w !== 0; w &= ~(1 << (31 - Math.clz32(w)))) lens.push(31 - Math.clz32(w));
    return lens;
  }

  /** The best applicable rule of `app` for IPv4 address n in its network of prefix length len. */
  private probe4(app: number, len: number, n: number, flow: Flow, now: number): number {
    const key = maskV4(n, len) | 0;
    return this.ip4Keys.has(TAG.cidr4 + len, key) ? this.table.first(this.pairs.get(app, TAG.cidr4 + len, key), flow, now) : NONE;
  }

  /** Rule i joins the rules of (app, tag, dest), found and updated in one probe of the pair table. */
  private put(app: number, i: number, has: number, tag: number, dest: number): void {
    this.appHas[app]! |= has;
    if ((has & (HAS.ip4 | HAS.cidr4)) !== 0) this.ip4Keys.add(tag, dest); // every IPv4 key in the pair table
    const o = this.pairs.slot(app, tag, dest);
    const before = this.pairs.at(o);
    this.pairs.setAt(o, this.table.join(before, i));
    this.keepRef(o, before);
  }

  /**
   * Where a reference is kept (a pair table slot, or -1 - app for appAny), for finish(), when joining a
   * rule to what it held (`before`) made a new list: a single rule (>= 0) and a second one always do.
   * Lists are made in order, so list k's home is listHomes[k].
   */
  private keepRef(home: number, before: number): void {
    if (before >= 0) this.listHomes.push(home);
  }

  /** The compile's end: the rule lists laid out, and each list's reference written where it is kept. */
  private finish(source: RuleSource): void {
    const refs = this.table.finish(source);
    const homes = this.listHomes;
    for (let k = 0; k < homes.length; k++) {
      const h = homes[k]!;
      if (h >= 0) this.pairs.setAt(h, refs[k]!);
      else this.appAny[-1 - h] = refs[k]!;
    }
    this.listHomes = [];
  }

  /**
   * Prefix and sub-path level: the candidates, ordered by how deep into the path their match reaches
   * (on equal depth the longer pattern, then prefix before sub-path). One walk over the path carries
   * the hash of the prefix so far: a prefix is probed at each '/' with no slice made. The walk reads
   * the path's bytes as units: an ASCII path as it is; at its first other unit it starts again over
   * the path's byteString() (`asBytes`), dropping what it found so far.
   */
  private prefixApps(path: string, asBytes = false): Apps {
    const n = path.length;
    let n4 = 0; // ints used in cands: end of match, length, prefix?, application
    const subs = this.subLists.length > 0;
    let h = HASH_SEED;
    for (let i = 0; i < n; i++) {
      const c = path.charCodeAt(i);
      if (c > 127 && !asBytes) return this.prefixApps(byteString(path), true);
      h = step(h, c);
      if (c !== 47) continue;
      if (hasBit(this.prefixLens, i + 1)) {
        const a = this.byPrefix.findChars(path, 0, i + 1, mix(h), this.checks);
        if (a >= 0) n4 = this.addCand(n4, i, i + 1, 1, a);
      }
      if (!subs) continue;
      let end = i + 1;
      while (end < n && path.charCodeAt(end) !== 47) end++;
      if (!hasBit(this.subFirstLens, end - i - 1)) continue;
      const k = this.subFirst.findChars(path, i + 1, end, hashChars(path, i + 1, end), this.checks);
      if (k < 0) continue;
      for (const sp of this.subLists[k]!) {
        const e = i + sp.key.length;
        if (e <= n && (e === n || path.charCodeAt(e) === 47) && sameUnits(path, i, sp.key)) n4 = this.addCand(n4, e, sp.key.length, 0, sp.app);
      }
    }
    if (n4 === 0) return NONE;
    if (n4 === 4) return this.cands[3]!;
    const c = this.cands;
    const order = Array.from({ length: n4 / 4 }, (_, k) => 4 * k);
    order.sort((x, y) => c[y]! - c[x]! || c[y + 1]! - c[x + 1]! || c[y + 2]! - c[x + 2]!);
    return order.map((x) => c[x + 3]!);
  }

  private addCand(n4: number, end: number, len: number, prefix: number, app: number): number {
    const c = (this.cands = room(this.cands, n4 + 4));
    c[n4] = end;
    c[n4 + 1] = len;
    c[n4 + 2] = prefix;
    c[n4 + 3] = app;
    return n4 + 4;
  }

  /** The best applicable rule of one application, visiting endpoint classes most specific first. */
  private match(app: number, flow: Flow, now: number): number {
    const has = this.appHas[app]!;
    const t = this.table;
    let best = NONE;
    if ((has & HAS.url) !== 0 && flow.remote.url !== undefined && (best = this.matchUrl(app, flow, now)) !== NONE) return best;
    if ((has & HAS.host) !== 0) {
      const n = this.hostIds();
      for (let k = 0; k < n; k++) if (this.nameIds[k] !== NONE) best = t.better(best, t.first(this.pairs.get(app, TAG.host, this.nameIds[k]!), flow, now));
      if (best !== NONE) return best;
    }
    if ((has & HAS.wildcard) !== 0) {
      const n = this.wildIds();
      for (let k = 0; k < n; k++) best = t.better(best, t.first(this.pairs.get(app, TAG.wild, this.suffixIds[k]!), flow, now));
      if (best !== NONE) return best;
    }
    if ((has & HAS_IP) !== 0 && (best = this.matchIp(app, has, flow, now)) !== NONE) return best;
    return (has & HAS.any) !== 0 ? t.first(this.appAny[app]!, flow, now) : NONE;
  }

  /** Looks up the numbers of the flow's host names, once per decision: nameIds[0 .. count). */
  private hostIds(): number {
    if (this.nameCount >= 0) return this.nameCount;
    const names = this.rawNames;
    for (let k = 0; k < names.length; k++) {
      let id = this.nameMemo.get(names[k]!);
      if (id === undefined) this.nameMemo.set(names[k]!, (id = this.nameOf(names[k]!)));
      this.nameIds[k] = id;
    }
    return (this.nameCount = names.length);
  }

  /** Looks up the numbers of the names' suffixes that some wildcard rule names, longest first per name, once per decision: suffixIds[0 .. count). */
  private wildIds(): number {
    if (this.suffixCount >= 0) return this.suffixCount;
    const names = this.rawNames;
    let n = 0;
    for (let k = 0; k < names.length; k++) {
      let w = this.wildMemo.get(names[k]!);
      if (w === undefined) this.wildMemo.set(names[k]!, (w = this.wildOf(names[k]!)));
      if (typeof w !== 'number') for (let j = 0; j < w.length; j++) n = this.pushSuffix(n, w[j]!);
      else if (w !== NONE) n = this.pushSuffix(n, w);
    }
    return (this.suffixCount = n);
  }

  private pushSuffix(n: number, id: number): number {
    (this.suffixIds = room(this.suffixIds, n + 1))[n] = id;
    return n + 1;
  }

  /**
   * The number of a host name as the index keys it (lower case, no trailing dot): one walk hashes a
   * name that is so already, most are, and finds it with no copy made.
   */
  private nameOf(h: string): number {
    const n = h.length;
    let x = HASH_SEED;
    for (let i = 0; i < n; i++) {
      const c = h.charCodeAt(i);
      if (c > 127 || (c >= 65 && c <= 90)) return this.names.get(hostKey(h), this.checks);
      x = step(x, c);
    }
    return h.charCodeAt(n - 1) === 46 ? this.names.get(hostKey(h), this.checks) : this.names.findChars(h, 0, n, mix(x), this.checks);
  }

  /**
   * The numbers of a host name's suffixes that wildcard rules name, longest first. A walk from the
   * name's end carries the suffix's hash (the suffix dictionary hashes last byte first): each '.'
   * probes the suffix after it, with no slice made. A name not as the index keys it (upper case,
   * non-ASCII, a trailing dot) is walked again as the byteString() of its key (`asBytes`).
   */
  private wildOf(h: string, asBytes = false): Apps {
    const n = h.length;
    if (!asBytes && h.charCodeAt(n - 1) === 46) return this.wildOf(byteString(hostKey(h)), true);
    let ids: Apps = NONE; // shortest first, reversed at the end
    let x = HASH_SEED;
    for (let i = n - 1; i >= 0; i--) {
      const c = h.charCodeAt(i);
      if (!asBytes && (c > 127 || (c >= 65 && c <= 90))) return this.wildOf(byteString(hostKey(h)), true);
      if (c === 46 && hasBit(this.wildLens, n - i - 1)) {
        const id = this.suffixes.findChars(h, i + 1, n, mix(x), this.checks);
        if (id >= 0) ids = add(ids, id);
      }
      x = step(x, c);
    }
    return typeof ids === 'number' ? ids : [...ids].reverse();
  }

  private matchUrl(app: number, flow: Flow, now: number): number {
    let u: URL;
    try {
      u = new URL(flow.remote.url!);
    } catch {
      return NONE; // a flow URL we cannot parse matches no URL rule; host/IP rules still apply
    }
    const id = this.names.get(u.hostname);
    if (id === NONE) return NONE;
    const c = canonicalUrl(u);
    for (const i of this.table.members(this.pairs.get(app, TAG.url, id))) {
      const h = this.table.hrefs.get(i)!;
      const hit = c === h || (c.startsWith(h) && (h.endsWith('/') || c.charCodeAt(h.length) === 47));
      if (hit && this.table.applies(i, flow, now)) return i;
    }
    return NONE;
  }

  private matchIp(app: number, has: number, flow: Flow, now: number): number {
    if (!this.ipDone) {
      this.ipDone = true;
      const ip = flow.remote.ip;
      this.ip4 = parseIPv4(ip);
      this.ip6 = null;
      if (this.ip4 < 0) {
        let f = this.ip6Memo.get(ip);
        if (f === undefined) {
          const p = parseIp(ip); // IPv6, or IPv4-mapped IPv6
          this.ip6Memo.set(ip, (f = p?.v === 4 ? p.n : p ? p.w : null));
        }
        if (typeof f === 'number') this.ip4 = f;
        else this.ip6 = f;
      }
    }
    const t = this.table;
    const n = this.ip4;
    let r = NONE;
    if (n >= 0) {
      const keys = this.ip4Keys;
      if ((has & HAS.ip4) !== 0 && keys.has(TAG.ip4, n | 0) && (r = t.first(this.pairs.get(app, TAG.ip4, n | 0), flow, now)) !== NONE) return r;
      if ((has & HAS.cidr4) !== 0) {
        const b = this.cidr4Bits;
        if ((b[2 * app + 1]! & 1) !== 0 && (r = this.probe4(app, 32, n, flow, now)) !== NONE) return r;
        for (let w = b[2 * app]!; w !== 0; ) {
          const len = 31 - Math.clz32(w); // longest first
          w &= ~(1 << len);
          if ((r = this.probe4(app, len, n, flow, now)) !== NONE) return r;
        }
      }
    } else if (this.ip6) {
      const w = this.ip6;
      if ((has & HAS.ip6) !== 0 && (r = this.probe6(app, TAG.ip6, w, 128, flow, now)) !== NONE) return r;
      if ((has & HAS.cidr6) !== 0) for (const len of this.cidr6Lens.get(app)!) if ((r = this.probe6(app, TAG.cidr6 + len, w, len, flow, now)) !== NONE) return r;
    }
    return NONE;
  }

  /** The best applicable rule of `app` for the first `len` bits of IPv6 words `w`. */
  private probe6(app: number, tag: number, w: readonly number[], len: number, flow: Flow, now: number): number {
    const k = maskV6(w, len, this.v6key);
    const id = this.keys6.find(k, 0, 16, this.keys6.hash(k, 0, 16));
    return id < 0 ? NONE : this.table.first(this.pairs.get(app, tag, id), flow, now);
  }
}

/** sp (UTF-8) equals the units of s from `at` (bytes as units, as the walks read them). */
function sameUnits(s: string, at: number, sp: Uint8Array): boolean {
  for (let k = 0; k < sp.length; k++) if (s.charCodeAt(at + k) !== sp[k]) return false;
  return true;
}

function defaultVerdict(mode: Mode): Verdict {
  const action = mode === 'passive-allow' ? 'allow' : mode === 'passive-block' ? 'block' : 'ask';
  return Object.freeze({ action, level: 'default', reason: `no rule applies; mode ${mode} -> ${action}` });
}
