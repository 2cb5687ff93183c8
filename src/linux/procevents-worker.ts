/**
 * The process events thread (see ProcEvents): blocks in recv on the connector socket, reads every
 * new process from /proc the moment its fork or exec is heard, and posts the events in batches.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EventSocket, type ProcEvent } from './procevents.js';
import { readSeen } from './procs.js';

/** How often the blocked receive wakes to see the stop flag. */
export const RECV_WAIT_MS = 200;
const BATCH = 256;

const port = parentPort!;
const stopFlag = (workerData as { stopFlag: Int32Array }).stopFlag;

let sock: EventSocket | undefined;
try {
  sock = EventSocket.open();
  port.postMessage({ ready: true });
} catch (e) {
  port.postMessage({ failed: (e as Error).message });
}

while (sock && Atomics.load(stopFlag, 0) === 0) {
  let n = sock.receive(RECV_WAIT_MS);
  if (n === 0) continue;
  const events: ProcEvent[] = [];
  for (; n > 0; n = events.length < BATCH ? sock.receive(0) : 0) sock.parse(n, (e) => events.push(e));
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
  port.postMessage({ events });
}
sock?.close();
