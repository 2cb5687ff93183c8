/**
 * nfnetlink_queue: bind a queue number, read queued packets without blocking, answer verdicts.
 * Waiting for packets is the ReadLoop's job (readloop.ts).
 */
import { NETLINK_NETFILTER, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST, NetlinkSocket, checkAck, eachAttr, writeAttr, writeHeader } from './netlink.js';

const NFNL_SUBSYS_QUEUE = 3;
const NFQNL_MSG_PACKET = 0;
const NFQNL_MSG_VERDICT = 1;
const NFQNL_MSG_CONFIG = 2;
const NFQA_CFG_CMD = 1;
const NFQA_CFG_PARAMS = 2;
const NFQA_CFG_QUEUE_MAXLEN = 3;
const NFQA_CFG_MASK = 4;
const NFQA_CFG_FLAGS = 5;
const NFQNL_CFG_CMD_BIND = 1;
const NFQNL_COPY_PACKET = 2;
const NFQA_CFG_F_FAIL_OPEN = 1;
const NFQA_CFG_F_UID_GID = 8;
const NFQA_PACKET_HDR = 1;
const NFQA_VERDICT_HDR = 2;
const NFQA_MARK = 3;
const NFQA_PAYLOAD = 10;
const NFQA_UID = 16;
const NFQA_GID = 17;

export const NF_DROP = 0;
export const NF_ACCEPT = 1;
export const NF_REPEAT = 4;

export interface QueuedPacket {
  id: number;
  /** The IP packet from its first byte, up to the queue's copy range; a copy the caller may keep. */
  payload: Buffer;
  /** Owner of the sending socket, where the kernel knows it (locally generated packets). */
  uid?: number;
  gid?: number;
  /**
   * CLOCK_MONOTONIC ms at which the queue was last found empty before this packet was read: the
   * packet was sent after it, so whoever sent it was alive then (see monotonicMs()).
   */
  sentAfter: number;
}

/** CLOCK_MONOTONIC in ms, the clock of the kernel's own event timestamps (libuv's hrtime reads it). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface QueueOptions {
  /** Bytes of each packet to copy to user space. */
  copyRange: number;
  /** Kernel accepts packets instead of dropping them when the queue is full. */
  failOpen: boolean;
  /**
   * Packets waiting for a verdict. Default 65,536: far more than the socket buffer holds, so that
   * when the agent falls behind it is the buffer that overflows, where the lost packets leave gaps
   * in the packet ids (`unasked`); a full queue passes (fail-open) or drops packets unseen and
   * uncounted. What waits in the queue is bounded by the buffer plus the packets read and not yet answered.
   */
  maxLen?: number;
  /** The socket's receive buffer, bytes (default 8 MiB). */
  rcvbuf?: number;
}

const AF_UNSPEC = 0;

export class NfQueue {
  private readonly sock: NetlinkSocket;
  private readonly rx = Buffer.alloc(256 * 1024);
  private readonly tx = Buffer.alloc(64);
  private seq = 1;
  private emptyAt = monotonicMs();
  private lastId = 0; // the kernel numbers a queue's packets from 1
  /**
   * Packets the kernel numbered but could not hand over (the socket buffer was full): with
   * fail-open they went through without a verdict, with fail-closed they were dropped. Seen as gaps
   * in the ids; the kernel itself counts only the fail-closed ones.
   */
  unasked = 0;

  constructor(readonly num: number, private readonly opts: QueueOptions) {
    this.sock = new NetlinkSocket(NETLINK_NETFILTER, { rcvbuf: opts.rcvbuf ?? 8 * 1024 * 1024 });
    try {
      this.config((b, o) => writeAttr(b, o, NFQA_CFG_CMD, Buffer.from([NFQNL_CFG_CMD_BIND, 0, 0, 0])), 'bind queue');
      const params = Buffer.alloc(5);
      params.writeUInt32BE(opts.copyRange, 0);
      params[4] = NFQNL_COPY_PACKET;
      this.config((b, o) => writeAttr(b, o, NFQA_CFG_PARAMS, params), 'set copy mode');
      const be = (n: number): Buffer => { const x = Buffer.alloc(4); x.writeUInt32BE(n >>> 0); return x; };
      this.config((b, o) => writeAttr(b, o, NFQA_CFG_QUEUE_MAXLEN, be(opts.maxLen ?? 65_536)), 'set queue length');
      const flags = NFQA_CFG_F_UID_GID | (opts.failOpen ? NFQA_CFG_F_FAIL_OPEN : 0);
      this.config((b, o) => writeAttr(b, writeAttr(b, o, NFQA_CFG_FLAGS, be(flags)), NFQA_CFG_MASK, be(flags)), 'set flags');
    } catch (e) {
      this.sock.close();
      throw e;
    }
  }

  /** Sends one config message with the given attributes and waits for the kernel's ACK. */
  private config(attrs: (b: Buffer, off: number) => number, what: string): void {
    const b = Buffer.alloc(128);
    let off = writeHeader(b, 0, 0, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, this.seq++);
    b[off] = AF_UNSPEC; b[off + 1] = 0; b.writeUInt16BE(this.num, off + 2);
    off = attrs(b, off + 4);
    b.writeUInt32LE(off, 0);
    this.sock.send(b, off);
    // The kernel handles netlink requests inside send(), so the ACK is already waiting.
    const r = Buffer.alloc(256);
    for (let n = this.sock.recvNow(r); n > 0; n = this.sock.recvNow(r)) {
      if (r.readUInt16LE(4) === NLMSG_ERROR) return checkAck(r, 0, `nfqueue ${this.num}: ${what}`);
    }
    throw new Error(`nfqueue ${this.num}: ${what}: no answer from the kernel`);
  }

  get fd(): number {
    return this.sock.fd;
  }

  /**
   * Reads what is waiting, without blocking, up to `max` packets, and hands them to `onPackets`.
   * Returns how many it read: `max` means more may be waiting. Every packet must get a verdict.
   */
  drain(max: number, onPackets: (batch: QueuedPacket[]) => void): number {
    const batch: QueuedPacket[] = [];
    const sentAfter = this.emptyAt;
    while (batch.length < max) {
      // The time is read before the receive: read after an empty one, it could postdate a packet
      // that came in between, whose sender may have exited before that time (seen on a loaded machine).
      const before = monotonicMs();
      const n = this.sock.recvNow(this.rx);
      if (n === 0) { this.emptyAt = before; break; }
      this.parse(this.rx, n, batch, sentAfter);
    }
    if (batch.length) onPackets(batch);
    return batch.length;
  }

  private parse(b: Buffer, n: number, out: QueuedPacket[], sentAfter: number): void {
    let off = 0;
    while (off + 16 <= n) {
      const len = b.readUInt32LE(off);
      if (len < 16 || off + len > n) break;
      const type = b.readUInt16LE(off + 4);
      if (type === ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
        const p: QueuedPacket = { id: -1, payload: Buffer.alloc(0), sentAfter };
        eachAttr(b, off + 20, off + len, (t, s, e) => {
          if (t === NFQA_PACKET_HDR) p.id = b.readUInt32BE(s);
          else if (t === NFQA_PAYLOAD) p.payload = Buffer.from(b.subarray(s, e));
          else if (t === NFQA_UID) p.uid = b.readUInt32BE(s);
          else if (t === NFQA_GID) p.gid = b.readUInt32BE(s);
        });
        if (p.id >= 0) {
          if (p.id > this.lastId + 1) this.unasked += p.id - this.lastId - 1; // (after 2^32 packets the ids wrap: no gap counted)
          this.lastId = p.id;
          out.push(p);
        }
      }
      off += (len + 3) & ~3;
    }
  }

  /** Answers one packet; `mark` sets the packet mark (used with NF_REPEAT to reach a REJECT rule). */
  verdict(id: number, verdict: number, mark?: number): void {
    const b = this.tx;
    let off = writeHeader(b, 0, 0, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0);
    b[off] = AF_UNSPEC; b[off + 1] = 0; b.writeUInt16BE(this.num, off + 2);
    off += 4;
    b.writeUInt16LE(12, off); b.writeUInt16LE(NFQA_VERDICT_HDR, off + 2);
    b.writeUInt32BE(verdict, off + 4); b.writeUInt32BE(id, off + 8);
    off += 12;
    if (mark !== undefined) {
      b.writeUInt16LE(8, off); b.writeUInt16LE(NFQA_MARK, off + 2);
      b.writeUInt32BE(mark >>> 0, off + 4);
      off += 8;
    }
    b.writeUInt32LE(off, 0);
    this.sock.send(b, off);
  }

  close(): void {
    this.sock.close();
  }
}
