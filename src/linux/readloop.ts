/**
 * The agent's receive loop. A thread of its own (poll-worker.ts) blocks in poll() on every queue's
 * socket and posts when one is readable; the event loop then drains each queue with non-blocking
 * reads (without draining, throughput caps near 10k packets/s), at most `batch` packets per queue
 * per event-loop turn so timers and I/O keep running, and asks for the next poll only after a pass
 * that found nothing: under load packets keep arriving while a batch is handled, and a non-blocking
 * read in the next turn finds them without waking the other thread.
 *
 * Why a worker_thread and not koffi's async call: an async poll() cost this thread 24 us to issue at
 * the median, 2 ms at p99 and up to 10 ms (koffi sets up a call context per call), stalling every
 * verdict behind it; asking the waiting thread is one Atomics.notify.
 */
import { Worker } from 'node:worker_threads';

export interface Drainable {
  readonly fd: number;
  /** Handles up to `max` waiting packets; how many it handled. */
  drain(max: number): number;
}

export class ReadLoop {
  private running = false;
  private worker?: Worker;
  private readonly flags = new Int32Array(new SharedArrayBuffer(8)); // [stop, poll asked]

  /** `onFailure`: the waiting thread died or a drain threw: no packet will be read any more. */
  constructor(
    private readonly sources: Drainable[],
    private readonly onFailure: (e: Error) => void,
    private readonly batch = 32,
    private readonly pollMs = 200,
  ) {}

  /**
   * Resolves once the waiting thread runs (~50-100 ms to start it): a caller that sends packets to
   * the queues only then (the agent installs its netfilter rules after this) has them read from the
   * first, where a burst that came while the thread was still starting filled the socket unread.
   */
  start(): Promise<void> {
    this.running = true;
    const w = new Worker(new URL('./poll-worker.js', import.meta.url), {
      workerData: { fds: this.sources.map((s) => s.fd), pollMs: this.pollMs, flags: this.flags },
    });
    this.worker = w;
    const started = new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`the packet reader thread exited (code ${code})`)));
    });
    // A timeout posts too: a drain then records that the queues were empty (nfqueue.ts's sentAfter).
    w.on('message', () => this.drainAll().catch((e: Error) => this.running && this.onFailure(e)));
    w.on('error', (e) => this.running && this.onFailure(e));
    w.on('exit', (code) => this.running && this.onFailure(new Error(`the packet reader thread exited (code ${code})`)));
    this.askPoll();
    return started;
  }

  private async drainAll(): Promise<void> {
    for (let got = true; got && this.running;) {
      got = false;
      for (const s of this.sources) if (s.drain(this.batch) > 0) got = true;
      if (got) await new Promise((r) => setImmediate(r));
    }
    if (this.running) this.askPoll();
  }

  private askPoll(): void {
    Atomics.store(this.flags, 1, 1);
    Atomics.notify(this.flags, 1);
  }

  /** Stops; resolves once the waiting thread has left its poll (within `pollMs`), so sockets can close. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    Atomics.store(this.flags, 0, 1);
    Atomics.notify(this.flags, 1);
    const w = this.worker!;
    await new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      if (w.threadId < 0) resolve(); // already gone
    });
  }
}
