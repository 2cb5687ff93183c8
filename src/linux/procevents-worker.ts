/**
 * The process events thread (see ProcEvents): blocks in poll() on the connector socket, reads every
 * new process from /proc the moment its fork or exec is heard, and posts the events in batches.
 * Each batch says up to when it is complete (`upTo`: every event the kernel sent before that time
 * is in it or an earlier batch). When the agent waits for a time (`want`, with a byte on the wake
 * pipe), the thread sleeps until then at most, and an empty batch says once that time is passed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { drainPipe, pollSync } from './netlink.js';
import { monotonicMs } from './nfqueue.js';
import { EventSocket, type ProcEvent } from './procevents.js';
import { readSeen } from './procs.js';

/** The longest sleep when nothing is waited for: a few wake-ups a second on an idle machine. */
const IDLE_MS = 200;
const BATCH = 256;

const port = parentPort!;
const { stopFlag, want, wakeFd } = workerData as { stopFlag: Int32Array; want: BigInt64Array; wakeFd: number };

let sock: EventSocket | undefined;
try {
  sock = EventSocket.open();
  port.postMessage({ ready: true });
} catch (e) {
  port.postMessage({ failed: (e as Error).message });
}

let events: ProcEvent[] = [];
const push = (e: ProcEvent): void => { events.push(e); };
let posted = 0; // the latest upTo posted, µs
while (sock && Atomics.load(stopFlag, 0) === 0) {
  // What waits, without blocking. The time is read before each receive: an empty one then proves
  // that everything sent before that time has been taken in.
  let upTo = 0;
  while (events.length < BATCH) {
    const t = Math.floor(monotonicMs() * 1000);
    const n = sock.receive(0);
    if (n === 0) { upTo = t; break; }
    sock.parse(n, push);
  }
  const wanted = Number(Atomics.load(want, 0));
  if (events.length || (upTo >= wanted && wanted > posted)) {
    // Each process is read once, as its last event left it (a fork is mostly followed by an exec),
    // and not at all if it has exited already.
    const last = new Map<number, ProcEvent>();
    for (const e of events) last.set(e.pid, e);
    const now = Date.now();
    for (const e of last.values()) {
      if (e.type === 'exit') continue;
      const seen = readSeen(e.pid, now);
      if (seen) e.seen = seen;
    }
    port.postMessage({ events, upTo: upTo / 1000 });
    if (upTo) posted = upTo;
    events = [];
  }
  if (upTo) {
    // Asleep until an event, a wake-up (a new time waited for, or stop), or the time waited for.
    const until = wanted > posted ? Math.ceil((wanted - upTo) / 1000) : IDLE_MS;
    pollSync([sock.fd, wakeFd], Math.max(0, Math.min(IDLE_MS, until)));
    drainPipe(wakeFd);
  }
}
sock?.close();
