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

/**
 * Live (address, name) pairs kept at most, for everyone and per program, and for all programs
 * together: answers come from servers any program can choose, with TTLs of up to a day, so a program
 * flooding DNS answers must not grow the agent without bound (an agent that runs out of memory
 * fails open, or takes the network with it). A full table keeps what it has and takes no new pairs
 * until some expire: `dropped` counts them, the agent says so. ~250 bytes a pair (its name's string
 * included): ~50 MB at most.
 */
export const LIMITS = { everyone: 100_000, perProgram: 10_000, allPrograms: 100_000 };

/** Addresses -> names -> expiry (ms), with a count of its pairs. */
class NameTable {
  readonly byIp = new Map<string, Map<string, number>>();
  size = 0;
  private swept = -Infinity; // when a full table last looked for expired pairs

  /** Records the pairs of `l` while the table holds fewer than `room` pairs; returns how many it could not. */
  add(l: Learnt, room: number, now: number): number {
    let m = this.byIp.get(l.ip);
    let dropped = 0;
    for (const n of l.names) {
      const had = m?.get(n);
      if (had === undefined) {
        if (this.size >= room && now - this.swept >= 1000) {
          this.swept = now; // at most once a second: a flood must not make every answer a walk over the table
          this.sweep(now);
        }
        if (this.size >= room) {
          dropped++;
          continue;
        }
        this.size++;
      }
      if (!m) this.byIp.set(l.ip, (m = new Map()));
      m.set(n, Math.max(had ?? 0, l.expires));
    }
    return dropped;
  }

  /** Live names of `ip`, dropping expired ones on the way. */
  live(ip: string, now: number): string[] {
    const m = this.byIp.get(ip);
    if (!m) return [];
    const out: string[] = [];
    for (const [n, exp] of m) {
      if (exp > now) out.push(n);
      else {
        m.delete(n);
        this.size--;
      }
    }
    if (!m.size) this.byIp.delete(ip);
    return out;
  }

  sweep(now: number): void {
    for (const ip of [...this.byIp.keys()]) this.live(ip, now);
  }
}

export class DnsNames {
  private readonly everyone = new NameTable();
  /** Asker (a process key) -> its own names by address. */
  private readonly byAsker = new Map<string, NameTable>();
  private askersSize = 0; // pairs in byAsker's tables, all together
  /** Answers that could not be decoded (reported, never fatal). */
  malformed = 0;
  /** Pairs not kept because a table was full (LIMITS). */
  dropped = 0;

  constructor(private readonly limits = LIMITS) {}

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
      this.dropped += this.everyone.add(l, this.limits.everyone, now);
      learnt.push(l);
    }
    return learnt;
  }

  /** Records what `asker` (a process key) learnt from an answer it received. */
  assign(asker: string, learnt: Learnt[], now = Date.now()): void {
    if (!learnt.length) return;
    let mine = this.byAsker.get(asker);
    if (!mine) this.byAsker.set(asker, (mine = new NameTable()));
    for (const l of learnt) {
      const before = mine.size;
      // its own room, and what all programs together have left
      this.dropped += mine.add(l, Math.min(this.limits.perProgram, before + this.limits.allPrograms - this.askersSize), now);
      this.askersSize += mine.size - before;
    }
  }

  /** Names of `ip` for a connection of `asker`: its own if it resolved the address, else everyone's. */
  namesOf(ip: string, now = Date.now(), asker?: string): string[] {
    const mine = asker === undefined ? undefined : this.byAsker.get(asker);
    if (mine) {
      const before = mine.size;
      const own = mine.live(ip, now);
      this.askersSize += mine.size - before;
      if (!mine.byIp.size) this.byAsker.delete(asker!);
      if (own.length) return own;
    }
    return this.everyone.live(ip, now);
  }

  /** Drops expired entries, and the askers `gone` says have exited; called periodically so the maps stay bounded. */
  sweep(now = Date.now(), gone: (asker: string) => boolean = () => false): void {
    this.everyone.sweep(now);
    for (const [asker, mine] of this.byAsker) {
      const before = mine.size;
      if (gone(asker)) {
        this.askersSize -= before;
        this.byAsker.delete(asker);
        continue;
      }
      mine.sweep(now);
      this.askersSize -= before - mine.size;
      if (!mine.byIp.size) this.byAsker.delete(asker);
    }
  }
}
