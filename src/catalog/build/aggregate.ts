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
