/**
 * String -> number for decide()'s whole-string lookups (application keys, host names, suffixes).
 *
 * A null-prototype object in dictionary mode rather than a Map, measured: V8 turns a string it has
 * looked up as a property key into a reference to the interned key, so the next lookup of the same
 * string (the agent reuses each program's path and each DNS name) compares one pointer. Over
 * 180,000 host names: ~33 ns a repeated lookup against ~90 ns for a Map, ~105 against ~150 ns for
 * one-off strings. Integer-like keys ("123") work too: they land in the object's elements.
 * Not for keys looked up by fresh slices (path prefixes, name suffixes): a string seen for the
 * first time is first sought in V8's table of all interned strings, which cost more than a Map.
 */
export class StringIndex {
  private readonly o: Record<string, number> = Object.create(null) as Record<string, number>;
  private n = 0;
  private readonly interned: string[] = []; // intern()'s keys in number order: an image lists them (enumerating a big dictionary object took ~50 ms)

  get size(): number {
    return this.n;
  }

  /** The number stored for `k`, or -1. */
  get(k: string): number {
    const v = this.o[k];
    return v === undefined ? -1 : v;
  }

  set(k: string, v: number): void {
    if (this.o[k] === undefined) this.n++;
    this.o[k] = v;
  }

  /** The keys, each at the index of its number (for an index made by intern() only). */
  keysByNumber(): readonly string[] {
    return this.interned;
  }

  /** The number of `k`, given in order of first use. */
  intern(k: string): number {
    const v = this.o[k];
    if (v !== undefined) return v;
    this.o[k] = this.n;
    this.interned.push(k);
    return this.n++;
  }
}
