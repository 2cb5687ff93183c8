/**
 * Writes audit rows from a worker thread: a transaction of a few thousand rows takes 10-20 ms,
 * which on the agent's event loop would delay every verdict waiting behind it.
 */
import { Worker } from 'node:worker_threads';
import type { DecisionRow } from './audit.js';

/** What the store keeps: rows at most `ms` old, the newest `rows` rows. */
export interface Keep {
  ms?: number;
  rows?: number;
}

export class AuditWriter {
  private readonly worker: Worker;
  private queue: DecisionRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;
  /** Rows handed to the writer, and rows the worker has committed. */
  received = 0;
  written = 0;

  private constructor(private readonly flushMs: number, file: string, keep: Keep) {
    this.worker = new Worker(new URL('./audit-worker.js', import.meta.url), { workerData: { file, keepMs: keep.ms ?? Infinity, keepRows: keep.rows ?? Infinity } });
    this.worker.on('message', (m: { written: number }) => { this.written = m.written; });
    this.worker.on('error', (e) => { this.failure = e; });
  }

  /**
   * Opens the store in the worker; rejects with the store's error (bad path, not a database, ...).
   * `keep`: rows older than `ms` and beyond the newest `rows` are deleted (from the start, then once
   * a minute); absent, every row is kept.
   */
  static async open(file: string, flushMs = 100, keep: Keep = {}): Promise<AuditWriter> {
    const w = new AuditWriter(flushMs, file, keep);
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
