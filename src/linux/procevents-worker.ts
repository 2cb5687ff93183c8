/**
 * The process events thread (see ProcEvents): blocks in recv on the connector socket, reads every
 * new process from /proc the moment its fork or exec is heard, and posts the events in batches.
 * Each batch says up to when it is complete (`upTo`: every event the kernel sent before that time
 * is in it or an earlier batch), and when the agent waits for a time (`want`) an empty batch says
 * once that time is passed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { monotonicMs } from './nfqueue.js';
import { EventSocket, type ProcEvent } from './procevents.js';
import { readSeen } from './procs.js';

/** How often the blocked receive wakes to see the stop flag and the time the agent waits for. */
export const RECV_WAIT_MS = 10;
const BATCH = 256;

const port = parentPort!;
const { stopFlag, want } = workerData as { stopFlag: Int32Array; want: BigInt64Array };

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
    const n = sock.receive(RECV_WAIT_MS);
    if (n) sock.parse(n, push);
  }
}
sock?.close();
