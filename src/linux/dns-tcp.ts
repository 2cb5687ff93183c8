/**
 * DNS answers over TCP (large answers, resolvers set to `use-vc`): each message is framed by a
 * 2-byte length and may span segments, so the answer side of each connection is put back in order
 * before the messages are handed on. Segments arrive as copies (the agent accepts them at once),
 * so a gap waits for its retransmission; a stream that cannot be framed is dropped, never guessed at.
 */
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
/** A DNS message is at most 65,535 bytes; anything buffered beyond that and a frame is broken. */
const MAX_BUFFERED = 2 + 65_535 + 65_535;
const IDLE_MS = 30_000;
/**
 * Connections followed at once. Each may buffer MAX_BUFFERED bytes, and any program can open
 * connections to a DNS server of its own: without a bound they could grow the agent until it runs
 * out of memory. Resolvers open one connection a query and close it: a machine has a few at once.
 * At most ~34 MB buffered; a connection beyond them is not followed (`unfollowed`), the agent says so.
 */
export const MAX_STREAMS = 256;

interface Stream {
  /** Sequence number of the next byte in order. */
  next: number;
  buf: Buffer;
  /** Segments that came before a gap, by sequence number. */
  early: Map<number, Buffer>;
  earlyBytes: number;
  seen: number;
}

/** Serial-number difference a - b in 32-bit sequence space (RFC 1982). */
const seqDiff = (a: number, b: number): number => (a - b) | 0;

export class TcpDnsStreams {
  private readonly streams = new Map<string, Stream>();
  /** Streams given up on (a gap too big, an impossible frame). */
  dropped = 0;
  /** Connections not followed: MAX_STREAMS were being followed. */
  unfollowed = 0;

  /**
   * Takes one segment from a DNS server: `segment` is the TCP header and payload, `key` names the
   * connection. Calls `onMessage` for every DNS message completed by it.
   */
  add(key: string, segment: Buffer, onMessage: (m: Buffer) => void, now = Date.now()): void {
    if (segment.length < 20) return;
    const flags = segment[13]!;
    const seq = segment.readUInt32BE(4);
    const payload = segment.subarray((segment[12]! >> 4) * 4);
    let s = this.streams.get(key);
    if (flags & SYN) {
      if (!s && this.streams.size >= MAX_STREAMS) this.sweep(now);
      if (!s && this.streams.size >= MAX_STREAMS) {
        this.unfollowed++;
        return;
      }
      // The server's SYN-ACK: its data starts one past its initial sequence number.
      s = { next: (seq + 1) >>> 0, buf: Buffer.alloc(0), early: new Map(), earlyBytes: 0, seen: now };
      this.streams.set(key, s);
    }
    // No SYN-ACK seen (the agent started mid-connection): the frames cannot be found; ignored.
    if (s && payload.length) {
      s.seen = now;
      this.place(key, s, seq, payload, onMessage);
    }
    if (flags & (FIN | RST)) this.streams.delete(key);
  }

  private place(key: string, s: Stream, seq: number, payload: Buffer, onMessage: (m: Buffer) => void): void {
    const d = seqDiff(seq, s.next);
    if (d > 0) {
      // After a gap: keep it until the gap is filled (by a retransmission).
      if (!s.early.has(seq)) {
        s.early.set(seq, Buffer.from(payload));
        s.earlyBytes += payload.length;
      }
      if (s.earlyBytes > MAX_BUFFERED) this.drop(key);
      return;
    }
    if (-d >= payload.length) return; // all seen already (a retransmission)
    let fresh = payload.subarray(-d);
    for (;;) {
      s.buf = s.buf.length ? Buffer.concat([s.buf, fresh]) : Buffer.from(fresh);
      s.next = (s.next + fresh.length) >>> 0;
      const later = s.early.get(s.next);
      if (!later) break;
      s.early.delete(s.next);
      s.earlyBytes -= later.length;
      fresh = later;
    }
    while (s.buf.length >= 2) {
      const len = s.buf.readUInt16BE(0);
      if (len < 12) return this.drop(key); // shorter than a DNS header: not a frame boundary
      if (s.buf.length < 2 + len) break;
      onMessage(s.buf.subarray(2, 2 + len));
      s.buf = s.buf.subarray(2 + len);
    }
    if (s.buf.length > MAX_BUFFERED) this.drop(key);
  }

  private drop(key: string): void {
    this.streams.delete(key);
    this.dropped++;
  }

  /** Forgets connections idle for long (their FIN was never seen). */
  sweep(now = Date.now()): void {
    for (const [k, s] of this.streams) if (s.seen < now - IDLE_MS) this.streams.delete(k);
  }

  get size(): number {
    return this.streams.size;
  }
}
