/**
 * The receive loop's waiting thread (readloop.ts): when asked, blocks in poll() on the queues'
 * sockets and tells the event loop they are readable (or that the wait timed out), then waits to be
 * asked again. flags[0] = stop, flags[1] = asked.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pollSync } from './netlink.js';

const { fds, pollMs, flags } = workerData as { fds: number[]; pollMs: number; flags: Int32Array };
const port = parentPort!;
port.postMessage('ready'); // ReadLoop.start() resolves on it: packets are read from here on

while (Atomics.load(flags, 0) === 0) {
  if (Atomics.load(flags, 1) === 0) {
    Atomics.wait(flags, 1, 0, pollMs);
    continue;
  }
  const n = pollSync(fds, pollMs);
  if (n < 0) continue; // interrupted: wait again
  Atomics.store(flags, 1, 0);
  port.postMessage(n);
}
