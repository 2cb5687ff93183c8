/**
 * Writes audit rows from a worker thread: a transaction of a few thousand rows takes 10-20 ms,
 * which on the agent's event loop would delay every verdict waiting behind it.
 */
import { Worker } from 'node:worker_threads';
import type { DecisionRow } from './audit.js';

export class AuditWriter {
  private readonly worker: Worker;
  private queue: DecisionRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;
  /** Rows handed to the writer, and rows the worker has committed. */
  received = 0;
  written = 0;

  private constructor(private readonly flushMs: number, file: string, keepMs: number) {
    this.worker = new Worker(new URL('./audit-worker.js', import.meta.url), { workerData: { file, keepMs } });
    this.worker.on('message', (m: { written: number }) => { this.written = m.written; });
    this.worker.on('error', (e) => { this.failure = e; });
  }

  /**
   * Opens the store in the worker; rejects with the store's error (bad path, not a database, ...).
   * `keepMs`: rows older than this are deleted (at the start, then once a minute); Infinity keeps all.
   */
  static async open(file: string, flushMs = 100, keepMs = Infinity): Promise<AuditWriter> {
    const w = new AuditWriter(flushMs, file, keepMs);
    await new Promise<void>((resolve, reject) => {
      w.worker.once('message', (m: { failed?: string }) => (m.failed ? reject(new Error(`audit store ${file}: ${m.failed}`)) : resolve()));
      w.worker.once('error', (e) => reject(new Error(`audit store ${file}: ${String(e.message ?? e)}`)));
    });
    return w;
  }

  /** An error of the worker (disk full, ...), once it happened. */
  get error(): Error | undefined {
    return this.failure;
  }

  add(row: DecisionRow): void {
    this.queue.push(row);
    this.received++;
    this.timer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.queue.length) return;
    this.worker.postMessage({ rows: this.queue });
    this.queue = [];
  }

  /** Sends what is queued, waits until the worker has committed everything, and stops it. */
  async close(): Promise<void> {
    this.flush();
    if (this.failure) return void (await this.worker.terminate());
    await new Promise<void>((resolve) => {
      this.worker.on('message', (m: { closed?: boolean }) => { if (m.closed) resolve(); });
      this.worker.once('exit', () => resolve());
      this.worker.postMessage({ close: true });
    });
    await this.worker.terminate();
  }
}
