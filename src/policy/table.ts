/**
 * The rules as decide() reads them: a rule is a number, its index, and what decide() checks of it
 * lives in typed-array columns. A 250,000-rule catalog then costs its original rule objects plus a
 * few bytes a rule, instead of a compiled object (and an endpoint object) per rule.
 */
import { levelOf, verdictFor, type ParsedRule } from './rules.js';
import type { Flow, Level, Rule, RuleSource, Verdict } from './types.js';

export const NONE = -1;
const PROTO_MASK = 3; // flags bits 0-1: 0 any, 1 tcp, 2 udp
const SCOPED = 4;
const EXPIRES = 8;
const LEVELS: readonly Level[] = ['app-id', 'path', 'prefix', 'any'];

interface Scope {
  users: ReadonlySet<string> | null;
  groups: ReadonlySet<string> | null;
}

/** What a RuleTable is made of, in plain data (part of a PolicyImage). */
export interface TableImage {
  info: Int32Array;
  expires: Float64Array; // rule, time, rule, time, ...
  scopes: { rule: number; users: string[] | null; groups: string[] | null }[];
  hrefs: { rule: number; href: string }[];
  listData: Int32Array;
}

/**
 * Rule references as stored in the index: a rule index (>= 0), or several rules sharing one key as
 * -2 - k, each list sorted by precedence so its first applicable rule is its best. While compiling, k
 * is the list's position in `lists`; finish() lays the lists out in `listData` and returns where each
 * went, and the compile then writes -2 - (that offset) wherever it kept the list's reference.
 */
export class RuleTable {
  private count = 0; // rules added while compiling
  private rules: RuleSource | null = null; // set once compiled or restored
  /**
   * Two ints a rule, side by side so that checking a candidate costs one cache line:
   * [2i] the port range as lo | hi << 16 (0 = any port);
   * [2i+1] rank << 8 | flags, where rank = score * 2 + (block ? 1 : 0) (higher wins, so block beats
   * allow at equal score) and flags = PROTO_MASK, SCOPED, EXPIRES bits and the level's index in LEVELS from bit 4.
   */
  private readonly info: Int32Array;
  private readonly expires = new Map<number, number>();
  private readonly scopes = new Map<number, Scope>();
  readonly hrefs = new Map<number, string>();
  private lists: number[][] = []; // while compiling; then flat, in precedence order:
  // a list at offset o is its length, then its rules: listData[o + 1 .. o + 1 + listData[o]). A list's
  // reference leads to its rules with one read: through a table of starts it took a second, a cache
  // miss of its own (nearly half of the generated catalog's decisions meet a list)
  private listData: Int32Array = new Int32Array(0);
  /** Made on first use, then returned as is: no allocation per decision, no memory for unused rules. */
  private readonly verdicts: (Verdict | undefined)[];

  constructor(size: number, info?: Int32Array) {
    this.info = info ?? new Int32Array(size * 2);
    this.verdicts = new Array<Verdict | undefined>(size).fill(undefined); // filled: a sparse array would fall back to a dictionary
  }

  add(c: ParsedRule): number {
    const i = this.count++;
    this.info[2 * i] = c.portLo === 0 ? 0 : c.portLo | (c.portHi << 16);
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
    this.info[2 * i + 1] = ((c.score * 2 + (c.action === 'block' ? 1 : 0)) << 8) | f;
    return i;
  }

  /** The reference that adds rule `i` to `ref` (NONE for no rule yet). */
  join(ref: number, i: number): number {
    if (ref === NONE) return i;
    if (ref >= 0) {
      this.lists.push([ref, i]);
      return -1 - this.lists.length;
    }
    this.lists[-2 - ref]!.push(i);
    return ref;
  }

  /** The rules of a reference, best first (allocates: for the rare URL rules only). */
  members(ref: number): Iterable<number> {
    if (ref === NONE) return [];
    if (ref >= 0) return [ref];
    const o = -2 - ref;
    return this.listData.subarray(o + 1, o + 1 + this.listData[o]!);
  }

  /**
   * The end of a compile: each list sorted by precedence and laid out in one typed array, so that
   * reading a list costs no pointer chase to an array object of its own. Returns the reference each
   * list has from now on (list k's: refs[k]), which the caller writes where it kept the list's.
   */
  finish(source: RuleSource): Int32Array {
    if (source.length !== this.count) throw new Error(`RuleTable: ${this.count} rules compiled, ${source.length} given`);
    const lists = this.lists;
    let n = 0;
    for (const l of lists) n += 1 + l.length;
    const d = (this.listData = new Int32Array(n));
    const refs = new Int32Array(lists.length);
    for (let k = 0, o = 0; k < lists.length; k++) {
      const l = lists[k]!.sort((x, y) => this.rank(y) - this.rank(x));
      refs[k] = -2 - o;
      d[o] = l.length;
      d.set(l, o + 1);
      o += 1 + l.length;
    }
    this.lists = [];
    this.rules = source;
    return refs;
  }

  /** The same rules from another source (which must give equal ones) from now on. */
  replaceSource(source: RuleSource): void {
    if (source.length !== this.rules!.length) throw new Error(`RuleTable: ${this.rules!.length} rules, ${source.length} given`);
    this.rules = source;
  }

  /** The rule objects, as compiled or restored. */
  get source(): RuleSource {
    return this.rules!;
  }

  get length(): number {
    return this.rules!.length;
  }

  rule(i: number): Rule {
    return this.rules!.get(i);
  }

  action(i: number): 'allow' | 'block' {
    return (this.rank(i) & 1) === 1 ? 'block' : 'allow';
  }

  toImage(): TableImage {
    const expires = new Float64Array(this.expires.size * 2);
    let k = 0;
    for (const [i, t] of this.expires) {
      expires[k++] = i;
      expires[k++] = t;
    }
    return {
      info: this.info,
      expires,
      scopes: [...this.scopes].map(([rule, s]) => ({ rule, users: s.users && [...s.users], groups: s.groups && [...s.groups] })),
      hrefs: [...this.hrefs].map(([rule, href]) => ({ rule, href })),
      listData: this.listData,
    };
  }

  /** A compiled table from its image; `rules` gives the rule objects. The image is trusted to be one toImage() made. */
  static fromImage(img: TableImage, rules: RuleSource): RuleTable {
    const t = new RuleTable(rules.length, img.info);
    for (let k = 0; k < img.expires.length; k += 2) t.expires.set(img.expires[k]!, img.expires[k + 1]!);
    for (const s of img.scopes) t.scopes.set(s.rule, { users: s.users && new Set(s.users), groups: s.groups && new Set(s.groups) });
    for (const h of img.hrefs) t.hrefs.set(h.rule, h.href);
    t.listData = img.listData;
    t.rules = rules;
    return t;
  }

  private rank(i: number): number {
    return this.info[2 * i + 1]! >> 8;
  }

  level(i: number): Level {
    return LEVELS[(this.info[2 * i + 1]! >> 4) & 15]!;
  }

  verdict(i: number): Verdict {
    return this.verdicts[i] ?? (this.verdicts[i] = verdictFor(this.rule(i), this.level(i)));
  }

  /** Better of two candidates: higher rank (score, then block over allow). */
  better(a: number, b: number): number {
    if (a === NONE) return b;
    if (b === NONE) return a;
    return this.rank(b) > this.rank(a) ? b : a;
  }

  /** The first applicable rule of a reference, which is its best. */
  first(ref: number, flow: Flow, now: number): number {
    if (ref >= 0) return this.applies(ref, flow, now) ? ref : NONE;
    if (ref === NONE) return NONE;
    const d = this.listData;
    const o = -2 - ref;
    for (let k = o + 1, end = o + 1 + d[o]!; k < end; k++) if (this.applies(d[k]!, flow, now)) return d[k]!;
    return NONE;
  }

  applies(i: number, flow: Flow, now: number): boolean {
    const ports = this.info[2 * i]!;
    if (ports !== 0 && (flow.port < (ports & 0xffff) || flow.port > ports >>> 16)) return false;
    const f = this.info[2 * i + 1]!;
    const proto = f & PROTO_MASK;
    if (proto !== 0 && proto !== (flow.protocol === 'tcp' ? 1 : flow.protocol === 'udp' ? 2 : 3)) return false; // 3: no rule's
    if ((f & EXPIRES) !== 0 && this.expires.get(i)! <= now) return false;
    if ((f & SCOPED) !== 0) return inScope(this.scopes.get(i)!, flow);
    return true;
  }
}

function inScope(s: Scope, flow: Flow): boolean {
  const a = flow.app;
  if (s.users && ((a.user !== undefined && s.users.has(a.user)) || (a.uid !== undefined && s.users.has(String(a.uid))))) return true;
  if (s.groups && a.groups) for (const g of a.groups) if (s.groups.has(g)) return true;
  return false;
}
