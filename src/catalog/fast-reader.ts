/**
 * A Tollgate JSON catalog read for a compile as its bytes: json-spans.ts finds where each rule and
 * each of its fields lie, policy/rule-bytes.ts compiles a plain rule from that, with no JSON.parse of
 * the whole file and no object made per rule. On the generated 250,000-rule catalog JSON.parse alone
 * took 250-580 ms here, and the rule objects' validation and garbage most of the rest of a ~1.4 s
 * first load. Rules that are not plain go through JSON.parse and compileRule(); a file the scanner
 * gives up on is read the usual way (parseCatalog), whose errors say what is wrong.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SPAN, compileRule, compileRuleBytes, parsedRuleSlot, equalBytes, hashBytes, idHash, type AppCache, type ParsedRule, type Rule, type RuleError, type RuleInput, type RuleSource } from '../policy/index.js';
import { parseCatalogRows, readOrSay, type Catalog } from './file.js';
import { NuAppInput } from './nuapp-rows.js';
import { scanCatalog, type Spans } from './json-spans.js';

/** A catalog to compile: its head, its rules (objects, or bytes for a compile), the SHA-256 and the length of its bytes. */
export type CompilableCatalog = Omit<Catalog, 'rules'> & { rules: readonly unknown[] | RuleInput; sha256: string; size: number };

/**
 * Reads a catalog to compile it, with the SHA-256 of exactly the bytes it parsed (the key of its
 * compiled-policy image: a hash of a second read could be of an edited file). A Tollgate JSON catalog
 * comes as CatalogRules, a NuAppFirewall one as NuAppInput; other formats, and JSON this reader gives
 * up on, as parseCatalog() reads them.
 */
export function readCatalogToCompile(path: string): CompilableCatalog {
  let bytes: Buffer | null = readOrSay(path, () => readFileSync(path));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const size = bytes.length;
  const fast = scanCatalog(bytes, path);
  if (fast) return { ...fast.head, rules: new CatalogRules(bytes, fast.spans, fast.count, fast.parsed), sha256, size };
  if (bytes.subarray(0, 6).toString('latin1') === 'bplist') return toCompile(parseCatalogRows(bytes, path), sha256, size);
  const text = bytes.toString('utf8');
  bytes = null; // garbage while the text is parsed (~30 MB less at the peak of a big catalog), as in readCatalog
  return toCompile(parseCatalogRows(text, path), sha256, size);
}

function toCompile({ rules, ...head }: ReturnType<typeof parseCatalogRows>, sha256: string, size: number): CompilableCatalog {
  return { ...head, rules: Array.isArray(rules) ? rules : new NuAppInput(rules), sha256, size };
}

/** A catalog's rules as its bytes and their spans: compiled by policy/rule-bytes.ts, or parsed and compiled by compileRule(). */
export class CatalogRules implements RuleInput {

  private readonly u: Uint8Array; // the bytes as a plain Uint8Array: the index's own keys are one, and V8 then sees one kind of array
  private readonly latin1 = (s: number, e: number): string => this.b.toString('latin1', s, e);
  private readonly out = parsedRuleSlot();

  /**
   * The bytes and spans scanCatalog() found. `parsed`: rules that are not plain, as it parsed them
   * (an empty map: each is parsed when compiled; they were found to be JSON on another thread).
   */
  constructor(private readonly b: Buffer, private readonly spans: Spans, readonly length: number, private readonly parsed = new Map<number, unknown>()) {
    this.u = new Uint8Array(b.buffer, b.byteOffset, b.length);
  }

  /**
   * The rule objects, asked for at the end of a compile: where each rule's JSON lies, 8 bytes a rule
   * (the spans of every field, 48 a rule, then go with this input: ~12 MB of a 250,000-rule policy).
   */
  get source(): RuleSource {
    const at = new Int32Array(this.length * 2);
    for (let i = 0; i < this.length; i++) {
      const f = this.spans.chunk(i);
      const o = this.spans.off(i);
      at[2 * i] = f[o + SPAN.start]!;
      at[2 * i + 1] = f[o + SPAN.plain] === 1 ? f[o + SPAN.end]! : -f[o + SPAN.end]!; // negative: not plain
    }
    return new SpanRules(this.b, at);
  }

  compile(i: number, cache: AppCache): ParsedRule | RuleError[] {
    const f = this.spans.chunk(i);
    const o = this.spans.off(i);
    if (f[o + SPAN.plain] === 1) {
      const c = compileRuleBytes(this.u, f, o, cache, this.latin1, this.out);
      if (c) return c;
    }
    return compileRule(this.object(i), i, cache);
  }

  idHash(i: number): number | undefined {
    const f = this.spans.chunk(i);
    const o = this.spans.off(i);
    const s = f[o + SPAN.id]!;
    const e = f[o + SPAN.id + 1]!;
    // a plain rule's id is ASCII without escapes: its bytes hash as its string does
    if (f[o + SPAN.plain] === 1 && s >= 0) return e > s ? hashBytes(this.u, s, e) : undefined;
    const id = (this.object(i) as { id?: unknown } | null)?.id;
    return typeof id === 'string' && id !== '' ? idHash(id) : undefined;
  }

  sameId(i: number, j: number): boolean {
    const [fi, oi, fj, oj] = [this.spans.chunk(i), this.spans.off(i), this.spans.chunk(j), this.spans.off(j)];
    if (fi[oi + SPAN.plain] === 1 && fj[oj + SPAN.plain] === 1) {
      const [s, e, s2, e2] = [fi[oi + SPAN.id]!, fi[oi + SPAN.id + 1]!, fj[oj + SPAN.id]!, fj[oj + SPAN.id + 1]!];
      return e - s === e2 - s2 && equalBytes(this.u, s, this.u, s2, e - s);
    }
    return this.id(i) === this.id(j);
  }

  id(i: number): string | undefined {
    const f = this.spans.chunk(i);
    const o = this.spans.off(i);
    if (f[o + SPAN.plain] === 1 && f[o + SPAN.id]! >= 0) return this.b.toString('latin1', f[o + SPAN.id], f[o + SPAN.id + 1]);
    return (this.object(i) as { id?: string } | null)?.id;
  }

  private object(i: number): unknown {
    if (!this.parsed.has(i)) this.parsed.set(i, this.spans.parse(this.b, i));
    return this.parsed.get(i);
  }
}

/** The rule objects of a catalog read as bytes: a rule's JSON is parsed when a verdict first names it. */
class SpanRules implements RuleSource {
  private readonly made = new Map<number, Rule>(); // a rule is one object however often it is asked for

  /** `at`: rule i's JSON is b[at[2i] .. |at[2i + 1]|), the end negative when the rule is not plain. */
  constructor(private readonly b: Buffer, private readonly at: Int32Array) {}

  get length(): number {
    return this.at.length / 2;
  }

  get(i: number): Rule {
    let r = this.made.get(i);
    if (r === undefined) this.made.set(i, (r = JSON.parse(this.b.toString('utf8', this.at[2 * i], Math.abs(this.at[2 * i + 1]!))) as Rule));
    return r;
  }

  /** A plain rule's JSON as it is in the file (ASCII), for an image; null for others (their bytes may not be UTF-8). */
  text(i: number): Uint8Array | null {
    const end = this.at[2 * i + 1]!;
    return end > 0 ? this.b.subarray(this.at[2 * i], end) : null;
  }
}
