/**
 * What the builder remembers of the log: one entry per distinct (application, destination, port,
 * protocol), so memory grows with distinct accesses, never with lines. An entry is a key string
 * and numbers in typed arrays (no object per entry: millions of entries must fit well under a
 * gigabyte). Distinct devices and users are kept as 32-bit hashes, and only up to the threshold the
 * filters need.
 */

/** Key: app \t destination \t port \t protocol ('' = any). Destination is a host name or an IP. */
export function keyOf(app: string, dest: string, port: number | string, proto: string): string {
  return `${app}\t${dest}\t${port}\t${proto}`;
}

export function splitKey(key: string): { app: string; dest: string; port: number; proto: string } {
  const t1 = key.indexOf('\t');
  const t2 = key.indexOf('\t', t1 + 1);
  const t3 = key.indexOf('\t', t2 + 1);
  return { app: key.slice(0, t1), dest: key.slice(t1 + 1, t2), port: Number(key.slice(t2 + 1, t3)), proto: key.slice(t3 + 1) };
}

export class Aggregate {
  private readonly index = new Map<string, number>();
  keys: string[] = [];
  private counts = new Float64Array(1024);
  /** `devCap` (`userCap`) slots per entry of distinct hashes, 0 = empty. */
  private devs: Int32Array;
  private users: Int32Array;

  constructor(readonly devCap: number, readonly userCap: number) {
    this.devs = new Int32Array(devCap > 1 ? 1024 * devCap : 0);
    this.users = new Int32Array(userCap > 1 ? 1024 * userCap : 0);
  }

  get size(): number {
    return this.keys.length;
  }

  private grow(): void {
    const n = this.counts.length * 2;
    const g = <T extends Float64Array | Int32Array>(a: T, per: number): T => {
      const b = new (a.constructor as new (n: number) => T)(n * per);
      b.set(a);
      return b;
    };
    this.counts = g(this.counts, 1);
    if (this.devCap > 1) this.devs = g(this.devs, this.devCap);
    if (this.userCap > 1) this.users = g(this.users, this.userCap);
  }

  /** The entry of `key`, made if new. */
  slot(key: string): number {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.keys.length;
      if (i === this.counts.length) this.grow();
      // A key built from slices of a decoded chunk may keep the whole chunk alive; a fresh flat
      // copy (made once per distinct key) lets every chunk go (without it: GiBs held on 21M lines).
      const own = JSON.parse(JSON.stringify(key)) as string;
      this.index.set(own, i);
      this.keys.push(own);
    }
    return i;
  }

  /** Adds entry j of `src` to `key` here (how normalisation merges variants). */
  addFrom(key: string, src: Aggregate, j: number): void {
    const i = this.slot(key);
    this.counts[i]! += src.count(j);
    for (const h of src.deviceHashes(j)) if (h) addHash(this.devs, i * this.devCap, this.devCap, h);
    for (const h of src.userHashes(j)) if (h) addHash(this.users, i * this.userCap, this.userCap, h);
  }

  /** Distinct devices (users) seen for entry i, up to the cap. */
  deviceCount(i: number): number {
    let n = 0;
    for (const h of this.deviceHashes(i)) if (h) n++;
    return n;
  }

  userCount(i: number): number {
    let n = 0;
    for (const h of this.userHashes(i)) if (h) n++;
    return n;
  }

  add(key: string, count: number, device: string, user: string): void {
    const i = this.slot(key);
    this.counts[i]! += count;
    if (this.devCap > 1 && device) addHash(this.devs, i * this.devCap, this.devCap, hash(device));
    if (this.userCap > 1 && user) addHash(this.users, i * this.userCap, this.userCap, hash(user));
  }

  count(i: number): number {
    return this.counts[i]!;
  }

  /** Distinct device (user) hashes of entry i. */
  deviceHashes(i: number): Int32Array {
    return this.devs.subarray(i * this.devCap, this.devCap > 1 ? (i + 1) * this.devCap : 0);
  }

  userHashes(i: number): Int32Array {
    return this.users.subarray(i * this.userCap, this.userCap > 1 ? (i + 1) * this.userCap : 0);
  }

  /** Adds every entry of `from` (results of parallel workers). */
  merge(from: Aggregate | PackedAggregate): void {
    const src = from instanceof Aggregate ? from : unpack(from, this.devCap, this.userCap);
    for (let j = 0; j < src.size; j++) if (src.count(j) >= 0) this.addFrom(src.keys[j]!, src, j);
  }

  /** Drops the key -> entry index once no entry will be added (frees ~100 bytes per entry). */
  freeIndex(): void {
    this.index.clear();
  }

  /** Removes entry i (its count becomes -1; pack() and merge() skip it). */
  drop(i: number): void {
    this.counts[i] = -1;
  }

  /** A few flat values for the trip between threads: far cheaper to clone than a Map. */
  pack(): PackedAggregate {
    const live: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.counts[i]! >= 0) live.push(i);
    const dc = this.devCap > 1 ? this.devCap : 0;
    const uc = this.userCap > 1 ? this.userCap : 0;
    const p: PackedAggregate = { keys: live.map((i) => this.keys[i]).join('\n'), counts: new Float64Array(live.length), devs: new Int32Array(live.length * dc), users: new Int32Array(live.length * uc) };
    live.forEach((i, j) => {
      p.counts[j] = this.counts[i]!;
      if (dc) p.devs.set(this.devs.subarray(i * dc, (i + 1) * dc), j * dc);
      if (uc) p.users.set(this.users.subarray(i * uc, (i + 1) * uc), j * uc);
    });
    return p;
  }
}

export interface PackedAggregate {
  keys: string;
  counts: Float64Array;
  devs: Int32Array;
  users: Int32Array;
}

function unpack(p: PackedAggregate, devCap: number, userCap: number): Aggregate {
  const a = new Aggregate(devCap, userCap);
  if (!p.counts.length) return a;
  // Adopt the arrays as they are (same layout); only read from, so no index is needed.
  const self = a as unknown as { keys: string[]; counts: Float64Array; devs: Int32Array; users: Int32Array };
  self.keys = p.keys.split('\n');
  self.counts = p.counts;
  self.devs = p.devs;
  self.users = p.users;
  return a;
}

/** FNV-1a, never 0 (0 marks an empty slot). Two devices may share a hash: at worst one is undercounted. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0 || 1;
}

function addHash(slots: Int32Array, at: number, cap: number, h: number): void {
  for (let k = at; k < at + cap; k++) {
    if (slots[k] === h) return;
    if (slots[k] === 0) { slots[k] = h; return; }
  }
}
