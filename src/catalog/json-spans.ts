/**
 * Where a Tollgate JSON catalog's rules and their fields lie in its bytes (SPAN, policy/rule-bytes.ts),
 * found without building a value for them: fast-reader.ts compiles from that.
 *
 * Written by hand because no JSON library reports byte spans without building values. It follows
 * JSON strictly where it reads (structure, keys, plain strings, port digits) and leaves the rest to
 * JSON.parse: the top level without its rules goes through parseCatalog(), any rule that is not plain
 * through JSON.parse. A leading byte-order mark is skipped, as parseCatalog() skips it. Whatever it
 * cannot follow (a comma too many, a file cut short) makes it give up (null).
 */
import { ACTION_WORDS, CODES, PLAIN_FIELDS, PROTOCOL_WORDS, SPAN, STRIDE, wordCode } from '../policy/index.js';
import { bomLength, parseCatalog, plainTollgateHead, type Catalog } from './file.js';

/** 1 for the bytes a plain JSON string holds as they are: printable ASCII but '"' and '\\'. */
const ORDINARY = new Uint8Array(256).map((_, c) => (c >= 32 && c <= 126 && c !== 34 && c !== 92 ? 1 : 0));

/**
 * Rules a chunk of spans: 131,072 (6 MiB). Memory that glibc gets from the kernel in pieces of 4 MiB
 * or more is backed by 2 MiB pages (the command's GLIBC_TUNABLES, README "Huge pages"), and a page
 * fault costs ~10 us on this project's VM: the spans of 250,000 rules in 1.5 MiB chunks took ~3,000
 * faults (~30 ms of a ~160 ms read), in 6 MiB chunks a few. A chunk is set to -1 a block of rules
 * at a time, as the scan reaches it, so a small catalog touches no more of it than it uses.
 */
const CHUNK_BITS = 17;
const CHUNK = 1 << CHUNK_BITS;
const BLOCK = 1024; // rules set to -1 at once: a fill() per rule was ~40% of a scan (a builtin call for a few ints)

/**
 * Rules' spans (SPAN, STRIDE ints a rule) in chunks: added to without copying, where one array grown
 * by doubling left ~16 MB of garbage at the peak of a 250,000-rule load.
 */
export class Spans {
  constructor(readonly chunks: Int32Array[] = []) {}

  /** The chunk holding rule i's spans, at off(i). */
  chunk(i: number): Int32Array {
    return this.chunks[i >>> CHUNK_BITS]!;
  }

  off(i: number): number {
    return (i & (CHUNK - 1)) * STRIDE;
  }

  /** Room for rule i, the next one: its spans -1 (absent) until found. */
  make(i: number): void {
    if ((i & (BLOCK - 1)) !== 0) return;
    if (i >>> CHUNK_BITS === this.chunks.length) this.chunks.push(new Int32Array(CHUNK * STRIDE));
    const o = this.off(i);
    this.chunk(i).fill(-1, o, o + BLOCK * STRIDE);
  }

  /** Rule i's JSON as JSON.parse reads it. */
  parse(b: Buffer, i: number): unknown {
    const f = this.chunk(i);
    const o = this.off(i);
    return JSON.parse(b.toString('utf8', f[o + SPAN.start], f[o + SPAN.end]));
  }
}

/** What scanCatalog() found: the head, `count` rules' spans, the rules that are not plain as JSON.parse read them. */
export interface ScannedCatalog {
  head: Omit<Catalog, 'rules'>;
  spans: Spans;
  count: number;
  parsed: Map<number, unknown>;
}

/**
 * A Tollgate JSON catalog's head and its rules' spans, or null when this reader gives up (also for any
 * error in the file: the usual read says it). new CatalogRules() makes them a compile's input.
 */
export function scanCatalog(b: Buffer, name: string): ScannedCatalog | null {
  const s = new Scanner(b);
  const start = (s.i = bomLength(b));
  s.ws();
  if (b[s.i] !== 123) return null;
  s.i++;
  s.ws();
  let rulesAt = -1;
  let rulesEnd = -1;
  const spans = new Spans();
  let n = 0;
  for (;;) {
    const ks = s.i + 1;
    if (b[s.i] !== 34 || s.string() !== 1) return null;
    const isRules = s.i - 1 - ks === 5 && b.toString('latin1', ks, s.i - 1) === 'rules';
    if (!s.colon()) return null;
    if (isRules) {
      if (rulesAt >= 0 || b[s.i] !== 91) return null;
      rulesAt = s.i++;
      s.ws();
      if (b[s.i] === 93) s.i++;
      else {
        for (;;) {
          spans.make(n);
          if (!s.rule(spans.chunk(n), spans.off(n))) return null;
          n++;
          const end = s.next(93);
          if (end < 0) return null;
          if (end === 1) break;
        }
      }
      rulesEnd = s.i;
    } else if (!s.skipValue()) return null;
    const end = s.next(125);
    if (end < 0) return null;
    if (end === 1) break;
  }
  s.ws();
  if (s.i !== b.length || rulesAt < 0) return null;
  // the head as parseCatalog() checks it, with an empty rule list; its errors come from the usual
  // read of the whole file (a JSON error's position would be the head's here)
  let head: Omit<Catalog, 'rules'>;
  try {
    const text = Buffer.concat([b.subarray(start, rulesAt), Buffer.from('[]'), b.subarray(rulesEnd)]);
    const plain = plainTollgateHead(JSON.parse(text.toString('utf8')));
    if (plain) head = plain;
    else {
      const { rules: none, ...h } = parseCatalog(text, name);
      if (h.format !== 'tollgate' || none.length !== 0) return null;
      head = h;
    }
  } catch {
    return null;
  }
  // a rule that is not plain must be JSON as the whole file's JSON.parse would have found it
  const parsed = new Map<number, unknown>();
  try {
    for (let i = 0; i < n; i++) if (spans.chunk(i)[spans.off(i) + SPAN.plain] !== 1) parsed.set(i, spans.parse(b, i));
  } catch {
    return null;
  }
  return { head, spans, count: n, parsed };
}

// SPAN offset of each of PLAIN_FIELDS' values (-1: not kept: the action and protocol are coded, a
// note is only checked to be a plain string)
const FIELD_SPAN = PLAIN_FIELDS.map((k) => (k === 'note' || k === 'action' || k === 'protocol' ? -1 : SPAN[k]));
const PORT = PLAIN_FIELDS.indexOf('port');
const ACTION = PLAIN_FIELDS.indexOf('action');
const PROTOCOL = PLAIN_FIELDS.indexOf('protocol');

class Scanner {
  i = 0;

  constructor(private readonly b: Uint8Array) {}

  ws(): void {
    const b = this.b;
    let i = this.i;
    for (let c = b[i]; c === 32 || c === 10 || c === 13 || c === 9; c = b[++i]);
    this.i = i;
  }

  /** Past ':' and the blanks around it. */
  colon(): boolean {
    this.ws();
    if (this.b[this.i] !== 58) return false;
    this.i++;
    this.ws();
    return true;
  }

  /** After a member or element: past ',' (0) or `close` (1), with blanks; -1 for anything else. */
  next(close: number): number {
    this.ws();
    const c = this.b[this.i];
    this.i++;
    if (c === close) return 1;
    if (c !== 44) return -1;
    this.ws();
    return 0;
  }

  /** At '"': past the string. 1: plain (printable ASCII, no escape), 0: not, -1: the text ends inside it. */
  string(): number {
    const b = this.b;
    const n = b.length;
    let plain = 1;
    let i = this.i + 1;
    for (;;) {
      // a printable byte other than '"' and '\\' (nearly all of a catalog's) costs one table read
      while (i < n && ORDINARY[b[i]!] === 1) i++;
      if (i >= n) return -1;
      const c = b[i]!;
      if (c === 34) break;
      if (c === 92) {
        plain = 0;
        i += 2;
        continue;
      }
      if (c < 32 || c > 126) plain = 0;
      i++;
    }
    this.i = i + 1;
    return plain;
  }

  /** Past one value, not checked (JSON.parse checks what is kept of it); false when the text ends first. */
  skipValue(): boolean {
    const b = this.b;
    const c = b[this.i];
    if (c === 34) return this.string() >= 0;
    if (c === 123 || c === 91) {
      let depth = 0;
      while (this.i < b.length) {
        const d = b[this.i]!;
        if (d === 34) {
          if (this.string() < 0) return false;
          continue;
        }
        this.i++;
        if (d === 123 || d === 91) depth++;
        else if ((d === 125 || d === 93) && --depth === 0) return true;
      }
      return false;
    }
    const start = this.i;
    for (let d = b[this.i]; d !== undefined && d !== 44 && d !== 93 && d !== 125 && d !== 32 && d !== 10 && d !== 13 && d !== 9; d = b[++this.i]);
    return this.i > start;
  }

  /** One element of the rules: its spans at `o` in `f` (SPAN); false when the text is not JSON this reader follows. */
  rule(f: Int32Array, o: number): boolean {
    const b = this.b;
    f[o + SPAN.start] = this.i;
    f[o + SPAN.codes] = 0;
    let plain = b[this.i] === 123 ? 1 : 0;
    if (plain === 0) {
      if (!this.skipValue()) return false; // not an object: compileRule says so
    } else {
      this.i++;
      this.ws();
      if (b[this.i] === 125) {
        this.i++;
        plain = 0; // {}: compileRule says what it lacks
      } else if (!this.members(f, o)) return false;
      else plain = f[o + SPAN.plain] === -1 ? 1 : 0;
    }
    f[o + SPAN.end] = this.i;
    f[o + SPAN.plain] = plain;
    return true;
  }

  /** The members of a rule object, up to and past its '}'. Marks f[o + SPAN.plain] 0 when the rule is not plain. */
  private members(f: Int32Array, o: number): boolean {
    const b = this.b;
    let seen = 0;
    for (;;) {
      const ks = this.i + 1;
      if (b[this.i] !== 34) return false;
      const keyPlain = this.string();
      if (keyPlain < 0) return false;
      const k = keyPlain === 1 ? wordCode(b, ks, this.i - 1, PLAIN_FIELDS) - 1 : -1; // its position in PLAIN_FIELDS
      // unknown (compileRule refuses it) or twice (JSON.parse keeps the last): not plain
      if (k < 0 || (seen & (1 << k)) !== 0) f[o + SPAN.plain] = 0;
      else seen |= 1 << k;
      if (!this.colon()) return false;
      const vs = this.i;
      const c = b[vs]!;
      if (c === 34) {
        const p = this.string();
        if (p < 0) return false;
        if (p === 0) f[o + SPAN.plain] = 0;
        else if (k === ACTION || k === PROTOCOL) {
          const code = wordCode(b, vs + 1, this.i - 1, k === ACTION ? ACTION_WORDS : PROTOCOL_WORDS);
          if (code === 0) f[o + SPAN.plain] = 0; // compileRule says what is wrong with it
          else f[o + SPAN.codes] = f[o + SPAN.codes]! | (code << (k === ACTION ? CODES.action : CODES.protocol)); // a field twice is not plain: no old code to clear
        } else if (k >= 0 && FIELD_SPAN[k]! >= 0) {
          f[o + FIELD_SPAN[k]!] = vs + 1;
          f[o + FIELD_SPAN[k]! + 1] = this.i - 1;
        }
      } else if (k === PORT && c >= 49 && c <= 57 && this.digits()) {
        f[o + SPAN.port] = vs;
        f[o + SPAN.port + 1] = this.i;
        f[o + SPAN.codes] = f[o + SPAN.codes]! | CODES.portNumber;
      } else {
        this.i = vs;
        f[o + SPAN.plain] = 0; // another type, or a number other than plain digits: JSON.parse reads it
        if (!this.skipValue()) return false;
      }
      const end = this.next(125);
      if (end < 0) return false;
      if (end === 1) return true;
    }
  }

  /** Past a run of digits that a member's end follows. */
  private digits(): boolean {
    const b = this.b;
    let i = this.i;
    while (b[i]! >= 48 && b[i]! <= 57) i++;
    const d = b[i];
    if (d !== 44 && d !== 125 && d !== 32 && d !== 10 && d !== 13 && d !== 9) return false;
    this.i = i;
    return true;
  }
}

