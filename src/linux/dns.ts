/**
 * Which names a program resolved to an IP: DNS answers seen on their way in are kept as
 * IP -> {hostname -> expiry} for the answer's TTL, so host and `*.domain` rules apply to
 * connections that carry only an address. A CNAME chain maps the address to every name on it,
 * the one the program asked for included.
 *
 * Kept twice: for every program, and per program that received the answer (the asker), because
 * one address often serves many names (CDNs, shared hosting): a program is judged by the names it
 * asked for itself, and by what anyone asked for only when it asked for none of that address's
 * (it may resolve through a cache or a daemon that the agent cannot see behind).
 */
import dnsPacket from 'dns-packet';
import ipaddr from 'ipaddr.js';

/** TTLs are honoured between these bounds: 0-second answers still connect a moment later. */
const MIN_TTL_S = 30;
const MAX_TTL_S = 24 * 3600;

/** One address and its names from one answer, until `expires` (ms). */
export interface Learnt {
  ip: string;
  names: string[];
  expires: number;
}

type NamesByIp = Map<string, Map<string, number>>;

function add(byIp: NamesByIp, l: Learnt): void {
  let m = byIp.get(l.ip);
  if (!m) byIp.set(l.ip, (m = new Map()));
  for (const n of l.names) m.set(n, Math.max(m.get(n) ?? 0, l.expires));
}

/** Live names of `ip` in `byIp`, dropping expired ones on the way. */
function live(byIp: NamesByIp, ip: string, now: number): string[] {
  const m = byIp.get(ip);
  if (!m) return [];
  const out: string[] = [];
  for (const [n, exp] of m) {
    if (exp > now) out.push(n);
    else m.delete(n);
  }
  if (!m.size) byIp.delete(ip);
  return out;
}

export class DnsNames {
  private readonly byIp: NamesByIp = new Map();
  /** Asker (a process key) -> its own names by address. */
  private readonly byAsker = new Map<string, NamesByIp>();
  /** Answers that could not be decoded (reported, never fatal). */
  malformed = 0;

  /** Records the A/AAAA answers of one DNS message (the UDP payload) for everyone; returns what was learnt. */
  learn(message: Buffer, now = Date.now()): Learnt[] {
    let msg: dnsPacket.Packet;
    try {
      msg = dnsPacket.decode(message);
    } catch {
      this.malformed++;
      return [];
    }
    if (msg.type !== 'response' || !msg.answers?.length) return [];
    // name -> names that point to it by CNAME, so an address can be traced back to the question.
    const aliasesOf = new Map<string, string[]>();
    for (const a of msg.answers) {
      if (a.type === 'CNAME') {
        const to = String(a.data).toLowerCase();
        aliasesOf.set(to, [...(aliasesOf.get(to) ?? []), a.name.toLowerCase()]);
      }
    }
    const learnt: Learnt[] = [];
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
      const l = { ip, names: [...names].map((n) => n.replace(/\.$/, '')), expires: now + ttl * 1000 };
      add(this.byIp, l);
      learnt.push(l);
    }
    return learnt;
  }

  /** Records what `asker` (a process key) learnt from an answer it received. */
  assign(asker: string, learnt: Learnt[]): void {
    if (!learnt.length) return;
    let mine = this.byAsker.get(asker);
    if (!mine) this.byAsker.set(asker, (mine = new Map()));
    for (const l of learnt) add(mine, l);
  }

  /** Names of `ip` for a connection of `asker`: its own if it resolved the address, else everyone's. */
  namesOf(ip: string, now = Date.now(), asker?: string): string[] {
    const mine = asker === undefined ? undefined : this.byAsker.get(asker);
    if (mine) {
      const own = live(mine, ip, now);
      if (!mine.size) this.byAsker.delete(asker!);
      if (own.length) return own;
    }
    return live(this.byIp, ip, now);
  }

  /** Drops expired entries, and the askers `gone` says have exited; called periodically so the maps stay bounded. */
  sweep(now = Date.now(), gone: (asker: string) => boolean = () => false): void {
    for (const ip of [...this.byIp.keys()]) live(this.byIp, ip, now);
    for (const [asker, mine] of this.byAsker) {
      if (gone(asker)) { this.byAsker.delete(asker); continue; }
      for (const ip of [...mine.keys()]) live(mine, ip, now);
      if (!mine.size) this.byAsker.delete(asker);
    }
  }
}
