/**
 * The index's one big table: (application number, destination tag, destination number) -> rules.
 *
 * Written by hand because it is the hot path and no library has it: an open-addressing hash table
 * over one Int32Array, four ints a slot. A probe reads one cache line; a Map per application (the
 * first design) cost a pointer chase through a small, cold Map object for every lookup, ~100-150 ns
 * each on a 250,000-rule catalog.
 */

/** Destination tags; a CIDR's tag carries its prefix length. */
export const TAG = { url: 1, host: 2, wild: 3, ip4: 4, ip6: 5, cidr4: 8, cidr6: 64 } as const;

const EMPTY = 0; // app slots hold app + 1, so a zeroed table is empty

/**
 * Sized once: every rule adds at most one pair, so a table made for the rule count stays at most
 * half full and needs no growing.
 */
export class PairTable {
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly capacity: number;
  private count = 0;

  /** `slots`: a table's own, from an image (read-only from then on). */
  constructor(expected: number, slots?: Int32Array) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2; // load <= 1/2: short probe runs
    if (slots && slots.length !== cap * 4) throw new Error(`PairTable: an image of ${slots.length / 4} slots for ${expected} pairs`);
    if (slots) {
      // no fuller than set() lets it get: a probe then always meets an empty slot and ends
      for (let o = 0; o < slots.length; o += 4) if (slots[o] !== EMPTY) this.count++;
      if (this.count > expected) throw new Error(`PairTable: an image with ${this.count} pairs for ${expected}`);
    }
    this.slots = slots ?? new Int32Array(cap * 4);
    this.mask = cap - 1;
    this.capacity = expected;
  }

  /** The slots, for an image; a table made with them and the same `expected` answers the same. */
  get image(): Int32Array {
    return this.slots;
  }

  /** The value stored for the key, or -1. */
  get(app: number, tag: number, dest: number): number {
    const s = this.slots;
    for (let i = hash(app, tag, dest) & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      const a = s[o]!;
      if (a === EMPTY) return -1;
      if (a === app + 1 && s[o + 1] === tag && s[o + 2] === dest) return s[o + 3]!;
    }
  }

  /**
   * Where the key's value is (at() reads it, setAt() writes it): its slot, taken for it with the value
   * -1 when it has none. A compile then finds and updates a pair with one probe.
   */
  slot(app: number, tag: number, dest: number): number {
    const s = this.slots;
    for (let i = hash(app, tag, dest) & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      const a = s[o]!;
      if (a === EMPTY) {
        // a full table would make every later miss probe forever
        if (++this.count > this.capacity) throw new Error(`PairTable: more than the ${this.capacity} pairs it was made for`);
        s[o] = app + 1;
        s[o + 1] = tag;
        s[o + 2] = dest;
        s[o + 3] = -1;
        return o + 3;
      }
      if (a === app + 1 && s[o + 1] === tag && s[o + 2] === dest) return o + 3;
    }
  }

  at(slot: number): number {
    return this.slots[slot]!;
  }

  setAt(slot: number, value: number): void {
    this.slots[slot] = value;
  }
}

function hash(app: number, tag: number, dest: number): number {
  let h = Math.imul(app, 0x9e3779b1) ^ Math.imul(dest, 0x85ebca77) ^ Math.imul(tag, 0xc2b2ae3d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}

/**
 * Which IPv4 keys (an address, or a network as its masked address and prefix length) some rule
 * names, as a bit set of their hashes: decide() tests a flow's address here before probing the pair
 * table for it. An address no rule names, most of them, then costs no probe at each application
 * level that has IP rules, each a cache miss in a table of megabytes, where this one is 1 bit a rule
 * in 4 (128 KB for 250,000 rules) and stays in cache. A false "maybe" (~1 in 10 when every rule names
 * an address) only costs the probe.
 */
export class KeyFilter {
  readonly bits: Int32Array;
  private readonly mask: number;

  /** `bits`: a filter's own, from an image (its length a power of two). */
  constructor(expected: number, bits?: Int32Array) {
    let words = 2;
    while (words * 32 < expected * 4 && words < 1 << 16) words *= 2; // at most 2^21 bits (256 KB)
    if (bits && (bits.length < 2 || (bits.length & (bits.length - 1)) !== 0)) throw new Error(`KeyFilter: an image of ${bits.length} words`);
    this.bits = bits ?? new Int32Array(words);
    this.mask = this.bits.length * 32 - 1;
  }

  add(tag: number, key: number): void {
    const h = hash(0, tag, key) & this.mask;
    this.bits[h >>> 5]! |= 1 << (h & 31);
  }

  /** false: no rule names the key; true: maybe one does. */
  has(tag: number, key: number): boolean {
    const h = hash(0, tag, key) & this.mask;
    return ((this.bits[h >>> 5]! >>> (h & 31)) & 1) === 1;
  }
}
