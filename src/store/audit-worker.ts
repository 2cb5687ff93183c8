/** The audit writer's thread: commits each batch it receives in one transaction. */
import { parentPort, workerData } from 'node:worker_threads';
import { AuditStore, type DecisionRow } from './audit.js';

let store: AuditStore;
try {
  store = new AuditStore((workerData as { file: string }).file, Infinity);
} catch (e) {
  parentPort!.postMessage({ failed: (e as Error).message });
  process.exit(1);
}
parentPort!.postMessage({ written: 0 });
parentPort!.on('message', (m: { rows?: DecisionRow[]; close?: boolean }) => {
  if (m.rows) {
    for (const r of m.rows) store.add(r);
    store.flush();
    parentPort!.postMessage({ written: store.written });
  }
  if (m.close) {
    store.close();
    parentPort!.postMessage({ written: store.written, closed: true });
  }
});
