/**
 * The audit writer's thread: commits each batch it receives in one transaction, and deletes rows
 * older than `keepMs` at its start and then at most once a minute.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AuditStore, type DecisionRow } from './audit.js';

const PRUNE_EVERY_MS = 60_000;
const { file, keepMs } = workerData as { file: string; keepMs: number };
let store: AuditStore;
let pruned = -Infinity;
function prune(): void {
  if (keepMs === Infinity || Date.now() - pruned < PRUNE_EVERY_MS) return;
  pruned = Date.now();
  store.prune(pruned - keepMs);
}
try {
  store = new AuditStore(file, Infinity);
  prune();
} catch (e) {
  parentPort!.postMessage({ failed: (e as Error).message });
  process.exit(1);
}
parentPort!.postMessage({ written: 0 });
parentPort!.on('message', (m: { rows?: DecisionRow[]; close?: boolean }) => {
  if (m.rows) {
    for (const r of m.rows) store.add(r);
    store.flush();
    prune();
    parentPort!.postMessage({ written: store.written });
  }
  if (m.close) {
    store.close();
    parentPort!.postMessage({ written: store.written, closed: true });
  }
});
