/**
 * The audit writer's thread: commits each batch it receives in one transaction, and deletes rows
 * older than `keepMs` and beyond the newest `keepRows`: from its start, a slice at a time between
 * batches until none is left (a store kept for ever before may hold months of rows), then once a minute.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AuditStore, type DecisionRow } from './audit.js';

const PRUNE_EVERY_MS = 60_000;
const SLICE = 50_000; // rows deleted at most before the next batch is written (~0.2-0.5 s)
const { file, keepMs, keepRows } = workerData as { file: string; keepMs: number; keepRows: number };
let store: AuditStore;
try {
  store = new AuditStore(file, Infinity);
} catch (e) {
  parentPort!.postMessage({ failed: (e as Error).message });
  process.exit(1);
}
let closed = false;
function prune(): void {
  if (closed) return;
  let n = keepMs === Infinity ? 0 : store.prune(Date.now() - keepMs, 10_000, SLICE);
  if (keepRows !== Infinity) n += store.pruneRows(keepRows, 10_000, SLICE - n);
  const more = n === SLICE;
  setTimeout(prune, more ? 0 : PRUNE_EVERY_MS).unref();
}
if (keepMs !== Infinity || keepRows !== Infinity) setTimeout(prune, 0).unref();
parentPort!.postMessage({ written: 0 });
parentPort!.on('message', (m: { rows?: DecisionRow[]; close?: boolean }) => {
  if (m.rows) {
    for (const r of m.rows) store.add(r);
    store.flush();
    parentPort!.postMessage({ written: store.written });
  }
  if (m.close) {
    closed = true;
    store.close();
    parentPort!.postMessage({ written: store.written, closed: true });
  }
});
