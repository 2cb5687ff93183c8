/**
 * What the builder remembers of the log: one entry per distinct (application, destination, port,
 * protocol), so memory grows with distinct accesses, never with lines. Distinct devices and users are
 * counted only up to the threshold the filters need.
 */
export interface Access {
  count: number;
  /** Distinct devices / users seen, kept only up to the `min-devices` / `min-users` thresholds. */
  devices?: string[];
  users?: string[];
}

/** Key: app \t destination \t port \t protocol ('' = any). Destination is a host name or an IP. */
export type Aggregate = Map<string, Access>;

export function addAccess(agg: Aggregate, key: string, count: number, device: string, user: string, keepDevices: number, keepUsers: number): void {
  let a = agg.get(key);
  if (!a) agg.set(key, (a = { count: 0 }));
  a.count += count;
  if (keepDevices > 1 && device) addCapped(a, 'devices', device, keepDevices);
  if (keepUsers > 1 && user) addCapped(a, 'users', user, keepUsers);
}

function addCapped(a: Access, k: 'devices' | 'users', v: string, cap: number): void {
  const list = (a[k] ??= []);
  if (list.length < cap && !list.includes(v)) list.push(v);
}

/** Merges `from` into `into` (results of parallel workers). */
export function mergeAggregates(into: Aggregate, from: Iterable<[string, Access]>, keepDevices: number, keepUsers: number): void {
  for (const [key, a] of from) {
    const b = into.get(key);
    if (!b) { into.set(key, a); continue; }
    b.count += a.count;
    for (const d of a.devices ?? []) addCapped(b, 'devices', d, keepDevices);
    for (const u of a.users ?? []) addCapped(b, 'users', u, keepUsers);
  }
}

/**
 * An aggregate as a few flat values, for the trip from a worker thread to the main thread:
 * cloning a Map of objects entry by entry costs far more than one string and one typed array.
 */
export interface PackedAggregate {
  keys: string;
  counts: Float64Array;
  /** Per entry, devices (users) joined by \x1f; entries joined by \n. Empty when not kept. */
  devices: string;
  users: string;
}

export function packAggregate(agg: Aggregate): PackedAggregate {
  const keys: string[] = [];
  const counts = new Float64Array(agg.size);
  const devices: string[] = [];
  const users: string[] = [];
  let i = 0;
  let anyDevices = false;
  let anyUsers = false;
  for (const [k, a] of agg) {
    keys.push(k);
    counts[i++] = a.count;
    devices.push(a.devices ? a.devices.join('\x1f') : '');
    users.push(a.users ? a.users.join('\x1f') : '');
    anyDevices ||= !!a.devices;
    anyUsers ||= !!a.users;
  }
  return { keys: keys.join('\n'), counts, devices: anyDevices ? devices.join('\n') : '', users: anyUsers ? users.join('\n') : '' };
}

export function* unpackAggregate(p: PackedAggregate): Generator<[string, Access]> {
  if (!p.counts.length) return;
  const keys = p.keys.split('\n');
  const devices = p.devices ? p.devices.split('\n') : [];
  const users = p.users ? p.users.split('\n') : [];
  for (let i = 0; i < keys.length; i++) {
    const a: Access = { count: p.counts[i]! };
    if (devices[i]) a.devices = devices[i]!.split('\x1f');
    if (users[i]) a.users = users[i]!.split('\x1f');
    yield [keys[i]!, a];
  }
}
