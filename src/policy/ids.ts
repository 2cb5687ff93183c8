/**
 * Which rules repeat an earlier rule's id. Written by hand instead of a Map<string, number>: on the
 * legacy NuAppFirewall catalog (153,128 rules) the Map's growth put ~12 MB on the compile's peak RSS
 * and cost 50-85 ms; this is one typed array sized once, two ints a slot (the id's hash, the first
 * rule's index + 1), and it compares strings only when two hashes are equal.
 */
export class IdTable {
  private readonly slots: Int32Array;
  private readonly mask: number;

  /** `idOf(i)`: the id of rule `i` recorded before. */
  constructor(expected: number, private readonly idOf: (i: number) => string) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2; // at most half full: short probe runs
    this.slots = new Int32Array(cap * 2);
    this.mask = cap - 1;
  }

  /** The index of the first rule with `id`, or -1 when it is new (then rule `index` is recorded for it). */
  firstUse(id: string, index: number): number {
    const h = hash(id);
    const s = this.slots;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const j = s[2 * i + 1]! - 1;
      if (j < 0) {
        s[2 * i] = h;
        s[2 * i + 1] = index + 1;
        return -1;
      }
      if (s[2 * i] === h && this.idOf(j) === id) return j;
    }
  }
}

/** FNV-1a over UTF-16 code units, then a final mix so that the low bits (the slot) depend on every unit. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return h ^ (h >>> 13);
}
