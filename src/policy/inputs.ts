/**
 * What a compile reads rules through: the application cache that numbers each distinct application
 * text once, and rule objects as a RuleInput (a catalog read as bytes is the other one:
 * catalog/fast-reader.ts).
 */
import { ByteDict, equalBytes } from './bytedict.js';
import { idHash } from './ids.js';
import { compileRule, type AppCache, type AppMatch, type ParsedRule } from './rules.js';
import type { Rule, RuleError, RuleInput, RuleSource } from './types.js';

/** The compile's application cache: each distinct application text parsed once and numbered. */
export class AppNumbers implements AppCache {
  text = '';
  private readonly apps: AppMatch[] = [];
  private readonly keys: ByteDict; // application texts -> entry: its number and its text as first seen
  private readonly nums: number[] = [];
  private readonly texts: string[] = [];

  /** `rules`: how many the compile reads; room is made at once for one application in 8 of them (it lives only as long as the compile). */
  constructor(private readonly newApp: (a: AppMatch) => number, rules = 0) {
    this.keys = new ByteDict(false, undefined, rules >> 3);
  }

  // The last text found: catalogs list an application's rules together (NuAppFirewall's by format),
  // and comparing with the last one costs less than hashing a long path again.
  private lastText: string | null = null;
  private lastBytes: Uint8Array | null = null;
  private lastStart = 0;
  private lastEnd = 0;
  private lastEntry = -1;

  find(text: string): number {
    const k = text === this.lastText ? this.lastEntry : this.keys.get(text);
    if (k < 0) return -1;
    this.lastText = text;
    this.lastBytes = null;
    this.lastEntry = k;
    this.text = this.texts[k]!;
    return this.nums[k]!;
  }

  findBytes(b: Uint8Array, s: number, e: number): number {
    let k = this.lastEntry;
    if (b !== this.lastBytes || e - s !== this.lastEnd - this.lastStart || !equalBytes(b, s, b, this.lastStart, e - s)) {
      k = this.keys.find(b, s, e, this.keys.hash(b, s, e));
      if (k < 0) return -1;
      this.lastText = null;
      this.lastBytes = b;
      this.lastStart = s;
      this.lastEnd = e;
      this.lastEntry = k;
    }
    return this.nums[k]!;
  }

  get(n: number): AppMatch {
    return this.apps[n]!;
  }

  store(text: string, app: AppMatch): number {
    // `*/X` and `*/X/` are one sub-path: one application, so their rules compete with each other
    const canon = app.kind === 'subpath' ? '*' + app.key : text;
    let n = canon === text ? -1 : this.find(canon);
    if (n < 0) {
      n = this.newApp(app);
      this.apps[n] = app;
      this.entry(canon, n);
    }
    if (canon !== text) this.entry(text, n);
    return n;
  }

  private entry(text: string, n: number): void {
    this.keys.set(text, this.nums.length);
    this.nums.push(n);
    this.texts.push(text);
  }
}

/** Rule objects as parsed from a file, as a RuleInput. */
export class ObjectInput implements RuleInput {
  readonly source: RuleSource;

  constructor(private readonly rules: readonly unknown[]) {
    this.source = { length: rules.length, get: (i) => rules[i] as Rule };
  }

  get length(): number {
    return this.rules.length;
  }

  compile(i: number, cache: AppCache): ParsedRule | RuleError[] {
    return compileRule(this.rules[i], i, cache);
  }

  idHash(i: number): number | undefined {
    const id = (this.rules[i] as { id?: unknown } | null)?.id;
    return typeof id === 'string' && id !== '' ? idHash(id) : undefined; // else compileRule reported it
  }

  sameId(i: number, j: number): boolean {
    return (this.rules[i] as Rule).id === (this.rules[j] as Rule).id;
  }

  id(i: number): string | undefined {
    return (this.rules[i] as { id?: string }).id;
  }
}

export function isInput(r: readonly unknown[] | RuleInput): r is RuleInput {
  return !Array.isArray(r);
}

