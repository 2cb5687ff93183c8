/**
 * Which names a program resolved to an IP: DNS answers seen on their way in are kept as
 * IP -> {hostname -> expiry} for the answer's TTL, so host and `*.domain` rules apply to
 * connections that carry only an address. A CNAME chain maps the address to every name on it,
 * the one the program asked for included.
 */
import dnsPacket from 'dns-packet';
import ipaddr from 'ipaddr.js';

/** TTLs are honoured between these bounds: 0-second answers still connect a moment later. */
const MIN_TTL_S = 30;
const MAX_TTL_S = 24 * 3600;

export class DnsNames {
  private readonly byIp = new Map<string, Map<string, number>>();
  /** Answers that could not be decoded (reported, never fatal). */
  malformed = 0;

  /** Records the A/AAAA answers of one DNS message (the UDP payload). Returns the names learnt. */
  learn(message: Buffer, now = Date.now()): number {
    let msg: dnsPacket.Packet;
    try {
      msg = dnsPacket.decode(message);
    } catch {
      this.malformed++;
      return 0;
    }
    if (msg.type !== 'response' || !msg.answers?.length) return 0;
    // name -> names that point to it by CNAME, so an address can be traced back to the question.
    const aliasesOf = new Map<string, string[]>();
    for (const a of msg.answers) {
      if (a.type === 'CNAME') {
        const to = String(a.data).toLowerCase();
        aliasesOf.set(to, [...(aliasesOf.get(to) ?? []), a.name.toLowerCase()]);
      }
    }
    let learnt = 0;
    for (const a of msg.answers) {
      if (a.type !== 'A' && a.type !== 'AAAA') continue;
      const ttl = Math.min(MAX_TTL_S, Math.max(MIN_TTL_S, a.ttl ?? 0));
      const names = new Set<string>();
      const todo = [a.name.toLowerCase()];
      while (todo.length) {
        const n = todo.pop()!;
        if (names.has(n)) continue;
        names.add(n);
        todo.push(...(aliasesOf.get(n) ?? []));
      }
      // The same text as the packet parser gives for an address (RFC 5952 for IPv6).
      const ip = a.type === 'A' ? String(a.data) : ipaddr.parse(String(a.data)).toString();
      let m = this.byIp.get(ip);
      if (!m) this.byIp.set(ip, (m = new Map()));
      for (const n of names) {
        m.set(n.replace(/\.$/, ''), now + ttl * 1000);
        learnt++;
      }
    }
    return learnt;
  }

  /** Names resolved to `ip` whose answer has not expired. */
  namesOf(ip: string, now = Date.now()): string[] {
    const m = this.byIp.get(ip);
    if (!m) return [];
    const out: string[] = [];
    for (const [n, exp] of m) {
      if (exp > now) out.push(n);
      else m.delete(n);
    }
    if (!m.size) this.byIp.delete(ip);
    return out;
  }

  /** Drops expired entries; called periodically so the map stays bounded. */
  sweep(now = Date.now()): void {
    for (const ip of [...this.byIp.keys()]) this.namesOf(ip, now);
  }
}
