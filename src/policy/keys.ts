/**
 * The index's string keys (application keys, host names and wildcard suffixes, sub-path first
 * components, IPv6 keys) in one open-addressing hash table over typed arrays.
 *
 * Written by hand because it is the hot path and a Map cannot do what decide() needs: look up a
 * *part* of a string (a path's prefix, a host's suffix, a path component) without slicing it into a
 * new string, and with the part's hash already known from one pass over the string (prefix hashes
 * fall out of a left-to-right pass over the path, suffix hashes out of a right-to-left pass over the
 * host). Slicing cost an allocation and a fresh hash per probe; a 180,000-entry Map cost a chain of
 * cache misses (bucket, entry, key string) per lookup, and ~200 ns per insert while compiling.
 */

/** Key spaces: the same text in two spaces is two keys. */
export const NS = { app: 1, name: 2, sub: 3, v6: 4, id: 5 } as const;

const FNV_OFFSET = 0x811c9dc5 | 0;

/** One character into a running FNV-1a hash. */
export function step(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193);
}

export const START = FNV_OFFSET;

/** The table's hash of a running hash in a key space (murmur3's finaliser: spreads the low bits). */
export function fin(h: number, ns: number): number {
  h ^= Math.imul(ns, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Hash of s[start, end) read left to right: application keys, sub-path components, IPv6 keys, rule ids. */
export function hashFwd(s: string, start: number, end: number, ns: number): number {
  let h = START;
  for (let i = start; i < end; i++) h = step(h, s.charCodeAt(i));
  return fin(h, ns);
}

/** Hash of s[start, end) read right to left: host names, so every suffix's hash is on the way. */
export function hashRev(s: string, start: number, end: number, ns: number): number {
  let h = START;
  for (let i = end - 1; i >= start; i--) h = step(h, s.charCodeAt(i));
  return fin(h, ns);
}

export class KeyTable {
  /** Four ints a slot: hash, offset of the key in `chars`, length << 3 | key space (0 = empty slot), value. */
  private slots: Int32Array;
  private mask: number;
  private count = 0;
  private chars: Uint16Array; // every key's UTF-16 code units, back to back
  private used = 0;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.slots = new Int32Array(cap * 4);
    this.mask = cap - 1;
    this.chars = new Uint16Array(Math.max(64, expected * 8));
  }

  get size(): number {
    return this.count;
  }

  /** The value stored for s[start, end) in key space `ns` (whose hash is `h`), or -1. */
  find(ns: number, h: number, s: string, start: number, end: number): number {
    const slots = this.slots;
    const tag = ((end - start) << 3) | ns;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      const t = slots[o + 2]!;
      if (t === 0) return -1;
      if (t === tag && slots[o] === h && this.same(slots[o + 1]!, s, start, end)) return slots[o + 3]!;
    }
  }

  /** Stores `value` for the key unless it is there: returns the value already stored, or -1 when it stored. */
  add(ns: number, h: number, s: string, start: number, end: number, value: number): number {
    const found = this.find(ns, h, s, start, end);
    if (found !== -1) return found;
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    const len = end - start;
    if (this.used + len > this.chars.length) {
      const c = new Uint16Array(Math.max(this.chars.length * 2, this.used + len));
      c.set(this.chars.subarray(0, this.used));
      this.chars = c;
    }
    const off = this.used;
    for (let k = 0; k < len; k++) this.chars[off + k] = s.charCodeAt(start + k);
    this.used += len;
    this.count++;
    this.place(h, off, (len << 3) | ns, value);
    return -1;
  }

  private same(off: number, s: string, start: number, end: number): boolean {
    const c = this.chars;
    for (let i = start; i < end; i++) if (c[off++] !== s.charCodeAt(i)) return false;
    return true;
  }

  private place(h: number, off: number, tag: number, value: number): void {
    const slots = this.slots;
    let i = h & this.mask;
    while (slots[i * 4 + 2] !== 0) i = (i + 1) & this.mask;
    const o = i * 4;
    slots[o] = h;
    slots[o + 1] = off;
    slots[o + 2] = tag;
    slots[o + 3] = value;
  }

  /** Double the slots; keys keep their stored hash and characters. */
  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2);
    this.mask = this.mask * 2 + 1;
    for (let o = 0; o < old.length; o += 4) if (old[o + 2] !== 0) this.place(old[o]!, old[o + 1]!, old[o + 2]!, old[o + 3]!);
  }
}
