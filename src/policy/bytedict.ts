/**
 * String -> number over the strings' UTF-8 bytes: the index's dictionaries (application keys, host
 * names, wildcard suffixes, IPv6 keys). Keys live in one byte arena; slots in one Int32Array, four
 * ints a slot: hash, key start, key length + 1 (0 = empty), value.
 *
 * Written by hand, in place of V8 dictionaries, because no library has it and it is the hot path:
 * - the index is then typed arrays only, so a policy image is restored without one string made or
 *   hashed (a dictionary object of 167,000 names took ~100-150 ms to rebuild);
 * - a catalog read as bytes (catalog/fast-reader.ts) indexes its keys with no string made per key;
 * - a path's prefixes and a name's suffixes are looked up with a hash carried along the walk, where
 *   a dictionary needed a fresh slice of the string for each, hashed and interned.
 * A JS string is looked up by its UTF-8 bytes: an ASCII one as it is, any other through a copy of
 * its bytes (get()) or its byteString() (decide()'s walks, which read units).
 * A lone surrogate, which UTF-8 cannot hold, becomes U+FFFD in both a rule's key and a flow's string.
 */

const SEED = 0x811c9dc5;

/** FNV-1a, one byte: a hash grows by step() along a walk, then mix() makes it a slot hash. */
export function step(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193);
}

/** The final mix, so that the low bits (the slot) depend on every byte. */
export function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return h ^ (h >>> 13);
}

export const HASH_SEED = SEED;

/** Hash of b[s..e), first byte to last (`reversed`: last to first, for suffix walks). */
export function hashBytes(b: Uint8Array, s: number, e: number, reversed = false): number {
  let h = SEED;
  if (reversed) for (let i = e - 1; i >= s; i--) h = step(h, b[i]!);
  else for (let i = s; i < e; i++) h = step(h, b[i]!);
  return mix(h);
}

/** a[ai ..] and b[bi ..] hold the same `len` bytes. */
export function equalBytes(a: Uint8Array, ai: number, b: Uint8Array, bi: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (a[ai + k] !== b[bi + k]) return false;
  return true;
}

let scratch = new Uint8Array(4096);
const encoder = new TextEncoder();

/**
 * A string's UTF-8 bytes in a shared scratch buffer, valid until the next call: the bytes and their
 * length. ASCII is copied by a loop (a call to TextEncoder costs more than a short name's loop).
 */
export function utf8(s: string): { bytes: Uint8Array; length: number } {
  if (scratch.length < s.length * 3) scratch = new Uint8Array(s.length * 3);
  const b = scratch;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return { bytes: b, length: encoder.encodeInto(s, b).written };
    b[i] = c;
  }
  return { bytes: b, length: s.length };
}

/**
 * A string whose UTF-16 units are the UTF-8 bytes of `s`: a non-ASCII string is walked as one
 * (decide()'s walks read units with charCodeAt), so that an ASCII one needs no copy at all.
 */
export function byteString(s: string): string {
  const { bytes, length } = utf8(s);
  let out = '';
  for (let i = 0; i < length; i += 4096) out += String.fromCharCode(...bytes.subarray(i, Math.min(length, i + 4096)));
  return out;
}

/** hashBytes() (first byte to last) of the bytes held as units k[s..e) (below 256 each). */
export function hashChars(k: string, s: number, e: number): number {
  let h = SEED;
  for (let i = s; i < e; i++) h = step(h, k.charCodeAt(i));
  return mix(h);
}

/**
 * Key comparisons put off until a decision has its answer: decide()'s lookups, given one of these,
 * take the first slot whose hash and length match the string's and note the comparison here instead
 * of making it. Reading the key's bytes then no longer stands between a lookup and the next one (on
 * the generated 250,000-rule catalog, making no comparison at all took ~20% off a decision). allHold()
 * makes them all: if one fails (two keys of one hash and length, ~1 in 2^32 per lookup unless someone
 * makes one on purpose), the caller throws the answer away and decides again comparing every key.
 */
export class KeyChecks {
  n = 0;
  private arenas: Uint8Array[] = [];
  private keys: string[] = [];
  private at = new Int32Array(32); // arena offset, start and end in the string: three ints a check
  private readonly first = new Uint8Array(32);

  add(arena: Uint8Array, from: number, k: string, s: number, e: number): void {
    const n = this.n++;
    if (3 * n + 3 > this.at.length) {
      const more = new Int32Array(this.at.length * 2);
      more.set(this.at);
      this.at = more;
    }
    this.arenas[n] = arena;
    this.keys[n] = k;
    this.at[3 * n] = from;
    this.first[n & 31] = arena[from]!; // the key's first byte read now: its cache miss overlaps the decision's next lookups
    this.at[3 * n + 1] = s;
    this.at[3 * n + 2] = e;
  }

  /** Every noted key equals the units of its string's range: the lookups answered right. */
  allHold(): boolean {
    for (let c = 0; c < this.n; c++) {
      const a = this.arenas[c]!;
      const k = this.keys[c]!;
      let at = this.at[3 * c]!;
      for (let j = this.at[3 * c + 1]!, e = this.at[3 * c + 2]!; j < e; j++, at++) if (a[at] !== k.charCodeAt(j)) return false;
    }
    return true;
  }
}

/** A ByteDict in plain data: what an image stores. */
export interface ByteDictImage {
  slots: Int32Array;
  arena: Uint8Array;
  size: Int32Array; // [count, reversed ? 1 : 0]
}

export class ByteDict {
  private slots: Int32Array;
  private mask: number;
  /**
   * One bit per hash (its low bits), set for every key: a lookup of a key that is not here, most of
   * decide()'s (unknown names, paths, the suffixes and prefixes a walk probes), ends at this bit, in
   * a set 1/16 the size of the slots that stays in cache, instead of at a cache miss in the slots
   * (measured ~5% less time a decision on the generated 250,000-rule catalog, 8-10% on NuAppFirewall's).
   * At 8 bits a slot, at least 16 a key (slots are at most half full): a false "maybe" at most ~1
   * time in 16. Made from the slots: an image need not hold it.
   */
  private filter!: Int32Array;
  private filterMask = 0;
  private arena: Uint8Array;
  private used = 0;
  private n = 0;
  private readonly frozen: boolean;

  /**
   * `reversed`: keys are hashed last byte first (looked up by suffix walks). `expected`: keys it is
   * likely to hold, made room for at once (each doubling on the way there rehashes every key).
   */
  constructor(readonly reversed = false, img?: ByteDictImage, expected = 0) {
    if (img) {
      // at most half full, as put() keeps it: a probe then always meets an empty slot and ends
      let used = 0;
      for (let o = 2; o < img.slots.length; o += 4) if (img.slots[o] !== 0) used++;
      if ((img.slots.length & (img.slots.length - 1)) !== 0 || img.slots.length < 64 || img.size.length !== 2 || used !== img.size[0] || used * 2 > img.slots.length / 4) {
        throw new Error('ByteDict: a malformed image');
      }
      this.slots = img.slots;
      this.arena = img.arena;
      this.used = img.arena.length;
      this.n = img.size[0]!;
      this.reversed = img.size[1] === 1;
      this.frozen = true;
    } else {
      let slots = 16;
      while (slots < expected * 2) slots *= 2; // at most half full, as put() keeps it
      this.slots = new Int32Array(slots * 4);
      this.arena = new Uint8Array(1024);
      this.frozen = false;
    }
    this.mask = this.slots.length / 4 - 1;
    this.refilter();
  }

  /** The filter of the keys in the slots (none for a grow(), which marks each key as it moves it). */
  private refilter(mark = true): void {
    const t = this.slots;
    this.filter = new Int32Array(t.length / 16); // 8 bits a slot, 32 bits an int: slots (4 ints each) / 16 ints
    this.filterMask = this.filter.length * 32 - 1;
    if (mark) for (let o = 0; o < t.length; o += 4) if (t[o + 2] !== 0) this.mark(t[o]!);
  }

  private mark(h: number): void {
    const x = h & this.filterMask;
    this.filter[x >>> 5]! |= 1 << (x & 31);
  }

  /** false: no key has hash h; true: maybe one does. */
  private maybe(h: number): boolean {
    const x = h & this.filterMask;
    return ((this.filter[x >>> 5]! >>> (x & 31)) & 1) === 1;
  }

  get size(): number {
    return this.n;
  }

  image(): ByteDictImage {
    return { slots: this.slots, arena: this.arena.subarray(0, this.used), size: Int32Array.of(this.n, this.reversed ? 1 : 0) };
  }

  /** The hash this dictionary gives b[s..e). */
  hash(b: Uint8Array, s: number, e: number): number {
    return hashBytes(b, s, e, this.reversed);
  }

  /** The value of key b[s..e), whose hash (this.hash) is `h`, or -1. */
  find(b: Uint8Array, s: number, e: number, h: number): number {
    if (!this.maybe(h)) return -1;
    const t = this.slots;
    const len1 = e - s + 1;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      const l = t[o + 2]!;
      if (l === 0) return -1;
      if (l === len1 && t[o] === h && equalBytes(this.arena, t[o + 1]!, b, s, len1 - 1)) return t[o + 3]!;
    }
  }

  /** The value of key b[s..e), or, when it is new, `value` (stored for it). */
  put(b: Uint8Array, s: number, e: number, h: number, value: number, replace = false): number {
    if (this.frozen) throw new Error('ByteDict: an image is read-only');
    const t = this.slots;
    const len = e - s;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      const l = t[o + 2]!;
      if (l === 0) {
        t[o] = h;
        t[o + 1] = this.store(b, s, len);
        t[o + 2] = len + 1;
        t[o + 3] = value;
        this.mark(h);
        if (++this.n * 2 > this.mask + 1) this.grow(); // at most half full: short probe runs
        return value;
      }
      if (l === len + 1 && t[o] === h && equalBytes(this.arena, t[o + 1]!, b, s, len)) {
        if (replace) t[o + 3] = value;
        return replace ? value : t[o + 3]!;
      }
    }
  }

  /** The number of `k`, numbered in order of first use. */
  intern(k: string): number {
    const { bytes, length } = utf8(k);
    return this.put(bytes, 0, length, this.hash(bytes, 0, length), this.n);
  }

  /** intern() of bytes b[s..e). */
  internBytes(b: Uint8Array, s: number, e: number): number {
    return this.put(b, s, e, this.hash(b, s, e), this.n);
  }

  set(k: string, v: number): void {
    const { bytes, length } = utf8(k);
    this.put(bytes, 0, length, this.hash(bytes, 0, length), v, true);
  }

  /**
   * The value of `k`, or -1. An ASCII string is hashed and compared as it is: reading a flow's
   * string costs ~1.4 ns a character here, copying it to bytes first cost as much again.
   */
  get(k: string, checks?: KeyChecks): number {
    let h = SEED;
    let any = 0; // every unit OR-ed: > 127 when the string is not ASCII
    const len = k.length;
    if (this.reversed) {
      for (let i = len - 1; i >= 0; i--) {
        const c = k.charCodeAt(i);
        any |= c;
        h = step(h, c);
      }
    } else {
      for (let i = 0; i < len; i++) {
        const c = k.charCodeAt(i);
        any |= c;
        h = step(h, c);
      }
    }
    if (any > 127) {
      const { bytes, length } = utf8(k);
      return this.find(bytes, 0, length, this.hash(bytes, 0, length));
    }
    return this.findChars(k, 0, len, mix(h), checks);
  }

  /**
   * find() of the key whose bytes are the units of k[s..e), each below 256 (an ASCII string, or a
   * byteString()), hashed as this dictionary hashes. With `checks`, the first slot whose hash and
   * length match answers, and the comparison of its bytes is noted there (KeyChecks).
   */
  findChars(k: string, s: number, e: number, h: number, checks?: KeyChecks): number {
    if (!this.maybe(h)) return -1;
    const t = this.slots;
    const a = this.arena;
    const len1 = e - s + 1;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      const l = t[o + 2]!;
      if (l === 0) return -1;
      if (l === len1 && t[o] === h) {
        if (checks !== undefined) {
          checks.add(a, t[o + 1]!, k, s, e);
          return t[o + 3]!;
        }
        let at = t[o + 1]!;
        let j = s;
        while (j < e && a[at] === k.charCodeAt(j)) {
          at++;
          j++;
        }
        if (j === e) return t[o + 3]!;
      }
    }
  }

  private store(b: Uint8Array, s: number, len: number): number {
    if (this.used + len > this.arena.length) {
      const bigger = new Uint8Array(Math.max(this.arena.length * 2, this.used + len));
      bigger.set(this.arena.subarray(0, this.used));
      this.arena = bigger;
    }
    const a = this.arena;
    const at = this.used;
    for (let k = 0; k < len; k++) a[at + k] = b[s + k]!; // keys are short: a loop beats a subarray and set()
    this.used += len;
    return at;
  }

  private grow(): void {
    const old = this.slots;
    const t = (this.slots = new Int32Array(old.length * 2));
    const mask = t.length / 4 - 1;
    this.refilter(false);
    for (let o = 0; o < old.length; o += 4) {
      if (old[o + 2] === 0) continue;
      this.mark(old[o]!);
      let i = old[o]! & mask;
      while (t[i * 4 + 2] !== 0) i = (i + 1) & mask;
      t[i * 4] = old[o]!;
      t[i * 4 + 1] = old[o + 1]!;
      t[i * 4 + 2] = old[o + 2]!;
      t[i * 4 + 3] = old[o + 3]!;
    }
    this.mask = mask;
  }
}
