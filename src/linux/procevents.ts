/**
 * The kernel's process connector (NETLINK_CONNECTOR, CN_IDX_PROC): an event for every fork, exec
 * and exit on the machine. The agent learns of a new program the moment it starts, reads its
 * executable while it is still alive, and hears of every exit, so a process that connects and exits
 * at once is still known by its path. Encoded by hand as the other netlink protocols (netlink.ts).
 *
 * The kernel sends these events only to sockets in the initial network namespace, so when the agent
 * runs in another one the socket is made there (setns: needs CAP_SYS_ADMIN). Which namespace is the
 * initial one cannot always be read (pid 1's may be closed to us, as in a VM's init here), so
 * EventSocket.open() tries pid 1's, the agent's own and its ancestors' and keeps the first that hears an event.
 */
import { spawnSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { NETLINK_CONNECTOR, NLMSG_DONE, NetlinkSocket, Waker, inNetns, writeHeader } from './netlink.js';
import { statFields, type SeenProcess } from './procs.js';

const CN_IDX_PROC = 1;
const CN_VAL_PROC = 1;
const PROC_CN_MCAST_LISTEN = 1;
const PROC_EVENT_FORK = 0x1;
const PROC_EVENT_EXEC = 0x2;
const PROC_EVENT_EXIT = 0x80000000;
/** nlmsghdr (16) + cn_msg (20): where struct proc_event starts; its event data is 16 bytes further. */
const EVENT = 36;
const DATA = EVENT + 16;

/** `at`: when the kernel saw it, CLOCK_MONOTONIC in ms (as nfqueue.ts's monotonicMs()). */
export type ProcEvent =
  | { type: 'fork'; pid: number; parent: number; at: number; seen?: SeenProcess }
  | { type: 'exec'; pid: number; at: number; seen?: SeenProcess }
  | { type: 'exit'; pid: number; at: number };

/**
 * The subscription, read on a worker thread of its own (procevents-worker.ts): a program that
 * lives a millisecond must be read from /proc within that millisecond, which the agent's busy
 * main thread cannot promise. The worker reads each new process at once and posts the events.
 */
export class ProcEvents {
  /** Every event the kernel sent before this time (CLOCK_MONOTONIC ms) has been handed over. */
  private upTo = 0;
  private waiters: { t: number; resolve: () => void; timer: NodeJS.Timeout }[] = [];

  private constructor(private readonly worker: Worker, private readonly stopFlag: Int32Array, private readonly want: BigInt64Array, private readonly waker: Waker) {}

  /**
   * Starts the worker; rejects with every reason why no namespace delivered events. `onFailure`
   * hears of a failure after the start (the events then stop; attribution falls back to /proc scans).
   */
  static start(onEvents: (events: ProcEvent[]) => void, onFailure: (e: Error) => void): Promise<ProcEvents> {
    const stopFlag = new Int32Array(new SharedArrayBuffer(4));
    const want = new BigInt64Array(new SharedArrayBuffer(8));
    const waker = new Waker();
    const worker = new Worker(new URL('./procevents-worker.js', import.meta.url), { workerData: { stopFlag, want, wakeFd: waker.fd } });
    return new Promise((resolve, reject) => {
      let self: ProcEvents | undefined;
      const failed = (e: Error): void => (self ? onFailure(e) : reject(e));
      worker.on('error', failed);
      worker.on('message', (m: { ready?: true; failed?: string; events?: ProcEvent[]; upTo?: number }) => {
        if (m.events) {
          if (m.events.length) onEvents(m.events);
          if (m.upTo) self?.caughtUpTo(m.upTo);
        } else if (m.ready) resolve((self = new ProcEvents(worker, stopFlag, want, waker)));
        else if (m.failed) reject(new Error(m.failed));
      });
      worker.once('exit', () => {
        waker.close();
        self?.caughtUpTo(Infinity); // no event will come: nobody waits for one
        if (!Atomics.load(stopFlag, 0)) failed(new Error('the process events thread exited'));
      });
    });
  }

  /**
   * Resolves once every event the kernel sent before `t` (CLOCK_MONOTONIC ms) has been handed to
   * onEvents, or after `capMs` if the thread lags that far behind or has stopped: a packet whose
   * socket is gone waits here for its sender's exit, however loaded the machine.
   */
  caughtUp(t: number, capMs: number): Promise<void> {
    if (t <= this.upTo) return Promise.resolve();
    const us = BigInt(Math.ceil(t * 1000));
    if (Atomics.load(this.want, 0) < us) {
      Atomics.store(this.want, 0, us);
      this.waker.wake(); // it may be asleep until its next event: it then sleeps until `t` only
    }
    return new Promise((resolve) => {
      const w = { t, resolve, timer: setTimeout(() => { this.waiters = this.waiters.filter((x) => x !== w); resolve(); }, capMs) };
      this.waiters.push(w);
    });
  }

  private caughtUpTo(upTo: number): void {
    if (upTo <= this.upTo) return;
    this.upTo = upTo;
    this.waiters = this.waiters.filter((w) => {
      if (w.t > upTo) return true;
      clearTimeout(w.timer);
      w.resolve();
      return false;
    });
  }

  /** Stops the worker; whoever waits is let go. */
  async stop(): Promise<void> {
    this.caughtUpTo(Infinity);
    if (Atomics.exchange(this.stopFlag, 0, 1)) return;
    this.waker.wake();
    if (this.worker.threadId < 0) return; // exited already
    await new Promise((r) => { this.worker.once('exit', r); });
  }
}

/** The netlink subscription itself; used on the worker thread. */
export class EventSocket {
  private readonly sock: NetlinkSocket;
  private readonly rx = Buffer.alloc(64 * 1024);

  /**
   * Subscribes in the first namespace where the events arrive (checked by starting `true` and
   * waiting for its events); throws with every reason where none does.
   */
  static open(): EventSocket {
    const why: string[] = [];
    const tried = new Set<string>();
    for (const ns of candidateNamespaces()) {
      let id: string;
      try { id = readlinkSync(ns); } catch (e) { why.push(`${ns}: ${(e as Error).message}`); continue; }
      if (tried.has(id)) continue;
      tried.add(id);
      let ev: EventSocket | undefined;
      try {
        ev = new EventSocket(ns);
        if (ev.hears()) return ev;
        why.push(`${ns} (${id}): no events`);
      } catch (e) {
        why.push(`${ns} (${id}): ${(e as Error).message}`);
      }
      ev?.close();
    }
    throw new Error(`no process events: ${why.join('; ')}`);
  }

  private constructor(netns: string) {
    const open = (): NetlinkSocket => new NetlinkSocket(NETLINK_CONNECTOR, { groups: CN_IDX_PROC, rcvbuf: 4 * 1024 * 1024 });
    this.sock = netns === OWN ? open() : inNetns(netns, open);
    try {
      const b = Buffer.alloc(16 + 20 + 4);
      writeHeader(b, 0, b.length, NLMSG_DONE, 0, 0);
      b.writeUInt32LE(CN_IDX_PROC, 16);
      b.writeUInt32LE(CN_VAL_PROC, 20);
      b.writeUInt16LE(4, 32); // cn_msg.len: the payload below
      b.writeUInt32LE(PROC_CN_MCAST_LISTEN, 36);
      this.sock.send(b);
    } catch (e) {
      this.sock.close();
      throw e;
    }
  }

  /** Starts a short process and reports whether its events arrive (a socket in the wrong namespace hears none). */
  private hears(): boolean {
    const child = spawnSync('true', { stdio: 'ignore' });
    if (child.error) throw child.error;
    let heard = false;
    for (let n = this.receive(100); n > 0 && !heard; n = this.receive(0)) this.parse(n, () => { heard = true; });
    return heard;
  }

  get fd(): number {
    return this.sock.fd;
  }

  /** Waits up to `waitMs` (0: not at all) for a message; its byte count, 0 if none. */
  receive(waitMs: number): number {
    return waitMs > 0 ? this.sock.recvWait(this.rx, waitMs) : this.sock.recvNow(this.rx);
  }

  /** Hands each event of interest in the `n` bytes received to `onEvent`: processes only, not threads. */
  parse(n: number, onEvent: (e: ProcEvent) => void): void {
    for (let off = 0; off + DATA + 16 <= n;) {
      const len = this.rx.readUInt32LE(off);
      if (len < DATA - EVENT || off + len > n) break;
      const e = parseEvent(this.rx, off);
      if (e) onEvent(e);
      off += (len + 3) & ~3;
    }
  }

  close(): void {
    this.sock.close();
  }
}

const OWN = '/proc/thread-self/ns/net';

/** pid 1's namespace, then our own, then each ancestor's, nearest first. */
function candidateNamespaces(): string[] {
  const out = ['/proc/1/ns/net', OWN];
  for (let pid = process.ppid, hops = 0; pid > 1 && hops < 32; hops++) {
    out.push(`/proc/${pid}/ns/net`);
    const f = statFields(pid);
    if (!f) break;
    pid = Number(f[1]); // field 4, the parent
  }
  return out;
}

/** The event of the netlink message at `off`, or null for one of no interest (threads, uid changes...). */
export function parseEvent(b: Buffer, off: number): ProcEvent | null {
  const what = b.readUInt32LE(off + EVENT);
  const pid = b.readUInt32LE(off + DATA);
  const tgid = b.readUInt32LE(off + DATA + 4);
  const at = b.readUInt32LE(off + EVENT + 12) * 4294.967296 + b.readUInt32LE(off + EVENT + 8) / 1e6; // u64 ns
  if (what === PROC_EVENT_FORK) {
    const child = b.readUInt32LE(off + DATA + 8);
    const childTgid = b.readUInt32LE(off + DATA + 12);
    return child === childTgid ? { type: 'fork', pid: child, parent: tgid, at } : null;
  }
  if (pid !== tgid) return null;
  if (what === PROC_EVENT_EXEC) return { type: 'exec', pid, at };
  if (what === PROC_EVENT_EXIT) return { type: 'exit', pid, at };
  return null;
}
