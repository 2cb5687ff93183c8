/**
 * The few bytes of an IP packet the agent needs: addresses, protocol, ports, and where the
 * transport payload starts (for DNS answers). Hand-written: it runs once per queued packet and a
 * general packet library would decode far more than this.
 */
import ipaddr from 'ipaddr.js';
import type { Protocol } from '../policy/index.js';

export interface Tuple {
  family: 4 | 6;
  protocol: Protocol;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** Raw 4 or 16 address bytes, for sock_diag. */
  srcRaw: Buffer;
  dstRaw: Buffer;
  /** Offset of the TCP/UDP header, and of its payload, in the packet. */
  l4: number;
  dataOffset: number;
}

const TCP = 6;
const UDP = 17;
const UDPLITE = 136; // UDP's header; any program may send it, so it is judged too
// IPv6 extension headers that may stand before TCP/UDP in an outbound packet.
const EXT = new Set([0, 43, 60]);

export function formatIp(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  // IPv4-mapped (a dual-stack socket talking IPv4): show the IPv4 address, as the policy sees it.
  if (b.readUInt32BE(0) === 0 && b.readUInt32BE(4) === 0 && b.readUInt32BE(8) === 0xffff) return formatIp(b.subarray(12));
  return ipaddr.fromByteArray([...b]).toString();
}

/** Parses an IPv4/IPv6 TCP, UDP or UDP-Lite packet; null for anything else (fragments, other protocols, truncation). */
export function parsePacket(p: Buffer): Tuple | null {
  if (p.length < 20) return null;
  const version = p[0]! >> 4;
  let proto: number;
  let l4: number;
  let srcRaw: Buffer;
  let dstRaw: Buffer;
  if (version === 4) {
    l4 = (p[0]! & 0x0f) * 4;
    if ((p.readUInt16BE(6) & 0x1fff) !== 0) return null; // a non-first fragment has no ports
    proto = p[9]!;
    srcRaw = p.subarray(12, 16);
    dstRaw = p.subarray(16, 20);
  } else if (version === 6) {
    if (p.length < 40) return null;
    proto = p[6]!;
    l4 = 40;
    while (EXT.has(proto) && l4 + 8 <= p.length) {
      proto = p[l4]!;
      l4 += (p[l4 + 1]! + 1) * 8;
    }
    srcRaw = p.subarray(8, 24);
    dstRaw = p.subarray(24, 40);
  } else return null;
  if ((proto !== TCP && proto !== UDP && proto !== UDPLITE) || l4 + 8 > p.length) return null;
  const dataOffset = proto === TCP ? l4 + (p[l4 + 12]! >> 4) * 4 : l4 + 8;
  return {
    family: version === 4 ? 4 : 6,
    protocol: proto === TCP ? 'tcp' : proto === UDP ? 'udp' : 'udplite',
    src: formatIp(srcRaw),
    sport: p.readUInt16BE(l4),
    dst: formatIp(dstRaw),
    dport: p.readUInt16BE(l4 + 2),
    srcRaw: Buffer.from(srcRaw),
    dstRaw: Buffer.from(dstRaw),
    l4,
    dataOffset,
  };
}

export function tupleKey(t: Tuple): string {
  return `${t.protocol} ${t.src} ${t.sport} ${t.dst} ${t.dport}`;
}
