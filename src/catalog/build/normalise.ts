/**
 * Destinations in one form: host names lower-cased, without the trailing dot, IDN as punycode; IPs
 * canonical (IPv4-mapped IPv6 as IPv4); URLs kept or cut to their host. Runs in each worker
 * before results are merged.
 */
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';
import { parseEndpoint, parseIp } from '../../policy/index.js';
import { keyOf, splitKey, type Aggregate } from './aggregate.js';

export interface NormaliseOptions {
  stripUrls: boolean;
}

const PRIVATE_RANGES = new Set(['private', 'loopback', 'linkLocal', 'uniqueLocal', 'unspecified', 'carrierGradeNat', 'broadcast', 'multicast']);

// Our own IP parser first: ipaddr.isValid() throws and catches inside for every host name (~12 µs each).
export const isIp = (s: string): boolean => parseIp(s) !== null;

export function isPrivate(dest: string): boolean {
  if (isIp(dest)) {
    let ip = ipaddr.parse(dest);
    if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
    return PRIVATE_RANGES.has(ip.range());
  }
  return dest === 'localhost' || dest.endsWith('.localhost') || dest.endsWith('.local') || dest.endsWith('.internal') || dest.endsWith('.lan');
}

/** The canonical destination, or why there is none. */
export function normalise(dest: string, stripUrls: boolean): string | { invalid: string } {
  let d = dest.trim();
  if (d.includes('://')) {
    let u: URL;
    try { u = new URL(d); } catch { return { invalid: 'malformed URL' }; }
    if (stripUrls) d = u.hostname.replace(/^\[|\]$/g, '');
    else return typeof parseEndpoint(u.href) === 'string' ? { invalid: 'unsupported URL' } : u.href;
  }
  if (isIp(d)) {
    const ip = ipaddr.parse(d);
    return ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() ? (ip as ipaddr.IPv6).toIPv4Address().toString() : ip.toString();
  }
  const ascii = domainToASCII(d.toLowerCase().replace(/\.$/, ''));
  if (!ascii || typeof parseEndpoint(ascii) === 'string') return { invalid: 'malformed host name' };
  return ascii;
}

/**
 * Gives every entry its canonical key, in place (variants merge; each distinct destination is
 * normalised once). An entry whose destination is invalid moves to the key "!<reason>\t<key>", so
 * the main thread counts distinct invalid entries across workers; private destinations are dropped
 * by the refinement on the main thread, for the same reason.
 */
export function normaliseAggregate(agg: Aggregate, o: NormaliseOptions): void {
  const norm = new Map<string, string | { invalid: string }>();
  const n = agg.size;
  for (let j = 0; j < n; j++) {
    const key = agg.keys[j]!;
    let to: string;
    if (key.charCodeAt(0) !== 47 /* / */) to = `!application not an absolute path\t${key}`;
    else {
      const k = splitKey(key);
      let d = norm.get(k.dest);
      if (d === undefined) norm.set(k.dest, (d = normalise(k.dest, o.stripUrls)));
      if (typeof d !== 'string') to = `!${d.invalid}\t${key}`;
      else if (d === k.dest) continue;
      else to = keyOf(k.app, d, k.port, k.proto);
    }
    agg.addFrom(to, agg, j);
    agg.drop(j);
  }
}
