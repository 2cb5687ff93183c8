/**
 * IP address parsing for the decision hot path.
 *
 * Written by hand on purpose: decide() parses the flow's remote IP on every call and a general
 * library (ipaddr.js) allocates objects and arrays per parse; validating a catalog's rules, it cost ~6 us an IPv6 address.
 * These parsers return a number (IPv4) or a fixed 4-word array (IPv6) and are checked against
 * ipaddr.js in test/policy/ip.test.ts.
 */

/** A parsed address: IPv4 as an unsigned 32-bit number, IPv6 as four unsigned 32-bit words. */
export type ParsedIp = { v: 4; n: number } | { v: 6; w: [number, number, number, number] };

/** Dotted-quad IPv4 to an unsigned 32-bit number, or -1 if not exactly four decimal parts. */
export function parseIPv4(s: string, start = 0, end = s.length): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      // no leading zeros ("010" is octal to some parsers and decimal to others)
      if (digits === 1 && part === 0) return -1;
      part = part * 10 + (c - 48);
      if (part > 255 || ++digits > 3) return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + part;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** IPv6 text (with optional embedded IPv4 tail, no zone id) to 8 16-bit groups, or null. */
export function parseIPv6Groups(s: string): number[] | null {
  const groups: number[] = [];
  let gap = -1; // index in groups where "::" stands
  let i = 0;
  const len = s.length;
  if (len < 2) return null;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return null;
    gap = 0;
    i = 2;
    if (i === len) return [0, 0, 0, 0, 0, 0, 0, 0];
  }
  while (i < len) {
    // an embedded IPv4 tail takes the last two groups
    let j = i;
    let value = 0;
    let hexDigits = 0;
    while (j < len) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      value = value * 16 + h;
      if (++hexDigits > 4) return null;
      j++;
    }
    if (j < len && s.charCodeAt(j) === 46) {
      const v4 = parseIPv4(s, i, len);
      if (v4 < 0) return null;
      groups.push(v4 >>> 16, v4 & 0xffff);
      i = len;
      break;
    }
    if (hexDigits === 0) return null;
    groups.push(value);
    if (j === len) {
      i = j;
      break;
    }
    if (s.charCodeAt(j) !== 58) return null;
    if (j + 1 < len && s.charCodeAt(j + 1) === 58) {
      if (gap >= 0) return null;
      gap = groups.length;
      i = j + 2;
      if (i === len) break;
    } else {
      i = j + 1;
      if (i === len) return null; // trailing single ':'
    }
  }
  if (gap < 0) return groups.length === 8 ? groups : null;
  if (groups.length > 7) return null;
  const zeros = new Array<number>(8 - groups.length).fill(0);
  groups.splice(gap, 0, ...zeros);
  return groups;
}

/** Parse an IPv4 or IPv6 address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is returned as IPv4. */
export function parseIp(s: string): ParsedIp | null {
  const v4 = parseIPv4(s);
  if (v4 >= 0) return { v: 4, n: v4 };
  const g = parseIPv6Groups(s);
  if (!g) return null;
  const w: [number, number, number, number] = [
    ((g[0]! << 16) | g[1]!) >>> 0,
    ((g[2]! << 16) | g[3]!) >>> 0,
    ((g[4]! << 16) | g[5]!) >>> 0,
    ((g[6]! << 16) | g[7]!) >>> 0,
  ];
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return { v: 4, n: w[3] };
  return { v: 6, w };
}

/** The network part of an IPv4 number for a prefix length, as an unsigned number. */
export function maskV4(n: number, len: number): number {
  return len === 0 ? 0 : (n & (~0 << (32 - len))) >>> 0;
}

/**
 * The index's key for the first `len` bits of an IPv6 address: 16 bytes, big-endian, the other bits
 * zero, written into `out`. Bytes, not text: decide() makes one per probe, with no allocation.
 */
export function maskV6(w: readonly number[], len: number, out: Uint8Array): Uint8Array {
  for (let i = 0; i < 4; i++) {
    const bits = len - i * 32;
    const word = bits >= 32 ? w[i]! : bits <= 0 ? 0 : w[i]! & (~0 << (32 - bits));
    out[4 * i] = word >>> 24;
    out[4 * i + 1] = word >>> 16; // a Uint8Array keeps the low 8 bits
    out[4 * i + 2] = word >>> 8;
    out[4 * i + 3] = word;
  }
  return out;
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
