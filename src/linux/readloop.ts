/**
 * The agent's receive loop: one poll() parked on a koffi worker thread for all queues; after each
 * wake-up every queue is drained with non-blocking reads (without draining, throughput caps near
 * 10k packets/s), at most `batch` packets per queue per event-loop turn so timers and I/O keep running.
 */
import { pollReadable } from './netlink.js';

export interface Drainable {
  readonly fd: number;
  /** Handles up to `max` waiting packets; true if more may be waiting. */
  drain(max: number): boolean;
}

export class ReadLoop {
  private running = false;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly sources: Drainable[], private readonly batch = 32, private readonly pollMs = 200) {}

  start(): void {
    this.running = true;
    const fds = this.sources.map((s) => s.fd);
    this.done = (async () => {
      while (this.running) {
        const n = await pollReadable(fds, this.pollMs);
        if (!this.running) break;
        // A timeout drains too: the queues then record that they were empty (nfqueue.ts's sentAfter).
        if (n < 0) continue;
        for (let more = true; more && this.running;) {
          more = false;
          for (const s of this.sources) if (s.drain(this.batch)) more = true;
          if (more) await new Promise((r) => setImmediate(r));
        }
      }
    })();
  }

  /** Stops; resolves once the parked poll has returned (within `pollMs`), so sockets can close. */
  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}
