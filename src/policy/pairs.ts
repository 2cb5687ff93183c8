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

  /** Stores `value` for the key, replacing any value there. */
  set(app: number, tag: number, dest: number, value: number): void {
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
        s[o + 3] = value;
        return;
      }
      if (a === app + 1 && s[o + 1] === tag && s[o + 2] === dest) {
        s[o + 3] = value;
        return;
      }
    }
  }
}

function hash(app: number, tag: number, dest: number): number {
  let h = Math.imul(app, 0x9e3779b1) ^ Math.imul(dest, 0x85ebca77) ^ Math.imul(tag, 0xc2b2ae3d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}
