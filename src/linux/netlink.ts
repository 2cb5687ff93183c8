/**
 * Raw netlink sockets from Node through koffi (FFI to libc): Node has no AF_NETLINK socket, and a C
 * addon around libnetfilter_queue blocked the event loop (50-60 ms at p99) where this does not.
 * The protocols themselves (nfnetlink_queue, sock_diag) are encoded by hand in TypeScript: there
 * is no maintained JS codec for them, and they are the agent's hot path.
 *
 * Netlink headers are host byte order; this file assumes a little-endian host (x86-64, arm64).
 */
import { closeSync, openSync } from 'node:fs';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int, int, int)'),
  bind: libc.func('int bind(int, void *, uint32_t)'),
  send: libc.func('intptr_t send(int, void *, size_t, int)'),
  recv: libc.func('intptr_t recv(int, void *, size_t, int)'),
  setsockopt: libc.func('int setsockopt(int, int, int, void *, uint32_t)'),
  close: libc.func('int close(int)'),
  poll: libc.func('int poll(void *, unsigned long, int)'),
  strerror: libc.func('const char *strerror(int)'),
  setns: libc.func('int setns(int, int)'),
  pipe2: libc.func('int pipe2(void *fds, int flags)'),
  write: libc.func('intptr_t write(int, void *, size_t)'),
  read: libc.func('intptr_t read(int, void *, size_t)'),
};

export const AF_NETLINK = 16;
export const NETLINK_SOCK_DIAG = 4;
export const NETLINK_NETFILTER = 12;
export const NETLINK_CONNECTOR = 11;
const CLONE_NEWNET = 0x40000000;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_NO_ENOBUFS = 5;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const EINTR = 4;
const ENOBUFS = 105;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 1;
export const NLM_F_ACK = 4;

export class NetlinkError extends Error {
  constructor(what: string, readonly errno: number) {
    super(`${what}: ${c.strerror(errno) as string} (errno ${errno})`);
  }
}

function check(what: string, r: number): number {
  if (r < 0) throw new NetlinkError(what, koffi.errno());
  return r;
}

export const align4 = (n: number): number => (n + 3) & ~3;

/** Writes a netlink message header at `off`; returns the offset of the payload. */
export function writeHeader(b: Buffer, off: number, len: number, type: number, flags: number, seq: number): number {
  b.writeUInt32LE(len, off);
  b.writeUInt16LE(type, off + 4);
  b.writeUInt16LE(flags, off + 6);
  b.writeUInt32LE(seq, off + 8);
  b.writeUInt32LE(0, off + 12);
  return off + 16;
}

/** Appends one attribute (type, payload) at `off`; returns the offset after its padding. */
export function writeAttr(b: Buffer, off: number, type: number, payload: Buffer): number {
  b.writeUInt16LE(4 + payload.length, off);
  b.writeUInt16LE(type, off + 2);
  payload.copy(b, off + 4);
  const end = align4(off + 4 + payload.length);
  b.fill(0, off + 4 + payload.length, end);
  return end;
}

/** Calls `fn(type, start, end)` for each attribute in b[off, end). */
export function eachAttr(b: Buffer, off: number, end: number, fn: (type: number, start: number, end: number) => void): void {
  while (off + 4 <= end) {
    const len = b.readUInt16LE(off);
    if (len < 4 || off + len > end) return;
    fn(b.readUInt16LE(off + 2) & 0x3fff, off + 4, off + len);
    off += align4(len);
  }
}

export class NetlinkSocket {
  readonly fd: number;
  private closed = false;
  private timeoutMs = 0;

  /** `groups`: the multicast groups to join (a bit mask, as sockaddr_nl.nl_groups). */
  constructor(protocol: number, opts: { rcvbuf?: number; groups?: number } = {}) {
    this.fd = check('socket(AF_NETLINK)', c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol) as number);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    addr.writeUInt32LE(opts.groups ?? 0, 8);
    try {
      check('bind(AF_NETLINK)', c.bind(this.fd, addr, 12) as number);
    } catch (e) {
      c.close(this.fd);
      throw e;
    }
    if (opts.rcvbuf) {
      const v = Buffer.alloc(4);
      v.writeInt32LE(opts.rcvbuf);
      // FORCE needs CAP_NET_ADMIN (the agent has it); fall back to the capped variant.
      if ((c.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUFFORCE, v, 4) as number) < 0) c.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUF, v, 4);
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      c.setsockopt(this.fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, one, 4);
    }
  }

  send(b: Buffer, len = b.length): void {
    check('netlink send', c.send(this.fd, b, len, 0) as number);
  }

  /**
   * Blocking receive for a thread of its own (a worker): waits up to `timeoutMs` for a message;
   * 0 if none came. Never call it on the main thread.
   */
  recvWait(b: Buffer, timeoutMs: number): number {
    if (this.timeoutMs !== timeoutMs) {
      const tv = Buffer.alloc(16);
      tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
      tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
      check('setsockopt(SO_RCVTIMEO)', c.setsockopt(this.fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) as number);
      this.timeoutMs = timeoutMs;
    }
    return this.recvNow(b, 0);
  }

  /** Non-blocking receive: the byte count, or 0 when nothing is waiting. */
  recvNow(b: Buffer, flags = MSG_DONTWAIT): number {
    for (;;) {
      const n = c.recv(this.fd, b, b.length, flags) as number;
      if (n >= 0) return n;
      const e = koffi.errno();
      if (e === EAGAIN) return 0;
      if (e === EINTR) continue;
      if (e === ENOBUFS) return 0; // the kernel dropped messages for us; fail-open covers them
      throw new NetlinkError('netlink recv', e);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    c.close(this.fd);
  }
}

/**
 * Runs `fn` with the calling thread in the network namespace of `nsPath` (e.g. /proc/1/ns/net),
 * then moves the thread back. A socket made meanwhile stays in that namespace. setns() changes only
 * the calling thread, and koffi's synchronous calls run on the calling thread, where `fn` runs too.
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const own = openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = openSync(nsPath, 'r');
    try {
      check(`setns(${nsPath})`, c.setns(target, CLONE_NEWNET) as number);
    } finally {
      closeSync(target);
    }
    try {
      return fn();
    } finally {
      // Failing to come back would leave the agent's main thread in the wrong namespace: fatal.
      if ((c.setns(own, CLONE_NEWNET) as number) < 0) throw new NetlinkError('setns back to the agent\'s namespace', koffi.errno());
    }
  } finally {
    closeSync(own);
  }
}

/** Throws if an NLMSG_ERROR at `off` carries a non-zero error (an ACK carries 0). */
export function checkAck(b: Buffer, off: number, what: string): void {
  const err = -b.readInt32LE(off + 16);
  if (err !== 0) throw new NetlinkError(what, err);
}

const POLLIN = 1;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/**
 * A pipe that wakes a thread blocked in pollSync() on its `fd` (with its other fds): a byte written
 * by wake(), read by the woken thread with drainPipe(fd). Both ends non-blocking: a full pipe wakes already.
 */
export class Waker {
  readonly fd: number; // the end to poll
  private readonly writeFd: number;
  private readonly one = Buffer.alloc(1);
  private closed = false;

  constructor() {
    const fds = new Int32Array(2);
    check('pipe2', c.pipe2(fds, O_NONBLOCK | O_CLOEXEC) as number);
    this.fd = fds[0]!;
    this.writeFd = fds[1]!;
  }

  wake(): void {
    if (!this.closed) c.write(this.writeFd, this.one, 1); // EAGAIN: full, so the poll wakes anyway
  }

  /** Closes both ends (once the polling thread is gone); wake() then does nothing, not write to a reused fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    c.close(this.fd);
    c.close(this.writeFd);
  }
}

const drained = Buffer.alloc(64);

/** Reads whatever Waker.wake() wrote to the pipe end `fd` (the polling thread does, each time it wakes). */
export function drainPipe(fd: number): void {
  while ((c.read(fd, drained, drained.length) as number) > 0);
}

/**
 * Blocks until one of `fds` is readable or `timeoutMs` passes: the number readable, 0 on timeout,
 * -1 on error (EINTR). For a thread of its own (poll-worker.ts), never the event loop's.
 */
export function pollSync(fds: readonly number[], timeoutMs: number): number {
  const b = Buffer.alloc(8 * fds.length);
  fds.forEach((fd, i) => { b.writeInt32LE(fd, i * 8); b.writeInt16LE(POLLIN, i * 8 + 4); });
  return c.poll(b, fds.length, timeoutMs) as number;
}
