/**
 * Destinations in one form: host names lower-cased, without the trailing dot, IDN as punycode; IPs
 * canonical (IPv4-mapped IPv6 as IPv4); URLs kept or cut to their host. Private, loopback and
 * link-local destinations are dropped unless kept. Runs in each worker before results are merged.
 */
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';
import { parseEndpoint, parseIp } from '../../policy/index.js';
import { Aggregate } from './aggregate.js';

export interface NormaliseOptions {
  keepPrivate: boolean;
  stripUrls: boolean;
}

export interface NormaliseReport {
  entries: number;
  privateDropped: number;
  /** Reason -> entries dropped for it. */
  invalid: Record<string, number>;
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

/** The aggregate with canonical keys (variants merged); each distinct destination is normalised once. */
export function normaliseAggregate(agg: Aggregate, o: NormaliseOptions): { agg: Aggregate; report: NormaliseReport } {
  const out = new Aggregate(agg.devCap, agg.userCap);
  const report: NormaliseReport = { entries: agg.size, privateDropped: 0, invalid: {} };
  const norm = new Map<string, string | { invalid: string } | null>(); // null: private
  for (let j = 0; j < agg.size; j++) {
    const key = agg.keys[j]!;
    const t1 = key.indexOf('\t');
    const t2 = key.indexOf('\t', t1 + 1);
    if (key.charCodeAt(0) !== 47 /* / */) {
      report.invalid['application not an absolute path'] = (report.invalid['application not an absolute path'] ?? 0) + 1;
      continue;
    }
    const dest = key.slice(t1 + 1, t2);
    let d = norm.get(dest);
    if (d === undefined) {
      d = normalise(dest, o.stripUrls);
      if (typeof d === 'string' && !o.keepPrivate && isPrivate(d)) d = null;
      norm.set(dest, d);
    }
    if (d === null) { report.privateDropped++; continue; }
    if (typeof d !== 'string') { report.invalid[d.invalid] = (report.invalid[d.invalid] ?? 0) + 1; continue; }
    // A port read as "0443" is the number 443: the key carries the number as written by Number().
    const t3 = key.indexOf('\t', t2 + 1);
    const port = String(Number(key.slice(t2 + 1, t3)));
    out.addFrom(d === dest && port === key.slice(t2 + 1, t3) ? key : `${key.slice(0, t1)}\t${d}\t${port}${key.slice(t3)}`, agg, j);
  }
  return { agg: out, report };
}

export function mergeReports(into: NormaliseReport, from: NormaliseReport): void {
  into.entries += from.entries;
  into.privateDropped += from.privateDropped;
  for (const [k, v] of Object.entries(from.invalid)) into.invalid[k] = (into.invalid[k] ?? 0) + v;
}
