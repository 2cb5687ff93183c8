/**
 * A bounded memo for decide()'s per-string lookups (a path's applications, a host name's numbers),
 * that turns itself off while it does not pay.
 *
 * On one machine's traffic (a few programs, a few hundred names, strings reused) nearly every
 * lookup hits, and a hit in this small Map beats the work it saves (measured +50% decisions/s on the
 * generated 250,000-rule catalog). On traffic that never repeats, every lookup misses and pays a
 * probe and an insert for nothing (measured -33%). So it counts its hits: after a window in which
 * fewer than a quarter hit, it is emptied and skipped for the next OFF_WINDOWS windows, then tried again.
 *
 * The same holds for one kind of entry: "nothing found" (`none`). Where known strings repeat and
 * unknown ones do not (a catalog's programs among one-off paths), the memo pays while each unknown
 * string costs an insert (and, once the memo is full, an emptying) for nothing. Repeating unknown
 * strings hit after their first put, so a window that puts more than 1 in 16 of its lookups as
 * "nothing found" meets new ones all the time: the next NONES_OFF such entries are not put. (Counting
 * the hits on such entries instead cost every hit: -3% decisions/s on one machine's traffic.)
 */
const WINDOW = 4096; // lookups between checks of the hit rate
const OFF_WINDOWS = 16;
const MAX = 8192; // entries; emptied when full
const NONES_OFF = 4096;

export class Memo<V> {
  private readonly map = new Map<string, V>();
  private lookups = 0;
  private hits = 0;
  private off = 0; // lookups left to skip
  private noneSets = 0; // in this window
  private nonesOff = 0; // "nothing found" entries left not to put

  /** `none`: the value that means "nothing found" (a miss of the memoised lookup), if there is one. */
  constructor(private readonly none?: V) {}

  /** The value remembered for `k`, or undefined (also while the memo is off: then set() does nothing). */
  get(k: string): V | undefined {
    if (this.off > 0) {
      this.off--;
      return undefined;
    }
    const v = this.map.get(k);
    if (v !== undefined) this.hits++;
    if (++this.lookups === WINDOW) this.endWindow();
    return v;
  }

  /** Once a window (apart from get(), which decide() inlines: small is fast). */
  private endWindow(): void {
    if (this.hits < WINDOW / 4) {
      this.map.clear();
      this.off = WINDOW * OFF_WINDOWS;
    } else if (this.noneSets > WINDOW / 16) {
      this.nonesOff = NONES_OFF;
    }
    this.lookups = 0;
    this.hits = 0;
    this.noneSets = 0;
  }

  /** Forgets every entry (what a decision whose lookups did not hold may have put). */
  clear(): void {
    this.map.clear();
  }

  set(k: string, v: V): void {
    if (this.off > 0) return;
    if (v === this.none) {
      if (this.nonesOff > 0) {
        this.nonesOff--;
        return;
      }
      this.noneSets++;
    }
    if (this.map.size >= MAX) this.map.clear();
    this.map.set(k, v);
  }
}
