/**
 * Which rules repeat an earlier rule's id. Written by hand instead of a Map<string, number> or a
 * ByteDict: one typed array sized once, two ints a slot (the id's hash, the first rule's index + 1),
 * and ids compared (by their input) only when two hashes are equal. A Map's growth put ~12 MB on the
 * legacy catalog's peak RSS; a ByteDict, which keeps a copy of every key, ~10 MB on 250,000 rules.
 */
import { HASH_SEED, mix, step } from './bytedict.js';

/** Rule ids as the compile's input has them. */
export interface IdSource {
  /** Rules i and j have the same id (both have one). */
  sameId(i: number, j: number): boolean;
}

export class IdSet {
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2; // at most half full: short probe runs
    this.slots = new Int32Array(cap * 2);
    this.mask = cap - 1;
  }

  /** The first rule with rule i's id, whose hash is `h` (idHash): i itself when no earlier rule has it. */
  firstUse(h: number, i: number, ids: IdSource): number {
    const s = this.slots;
    for (let k = h & this.mask; ; k = (k + 1) & this.mask) {
      const j = s[2 * k + 1]! - 1;
      if (j < 0) {
        s[2 * k] = h;
        s[2 * k + 1] = i + 1;
        return i;
      }
      if (s[2 * k] === h && ids.sameId(i, j)) return j;
    }
  }
}

/** An id's hash over its UTF-16 units: for an ASCII id, the same as bytedict.ts's hashBytes() of its bytes. */
export function idHash(id: string): number {
  let h = HASH_SEED;
  for (let i = 0; i < id.length; i++) h = step(h, id.charCodeAt(i));
  return mix(h);
}
