/** The catalog reader's thread (offthread.ts): reads, hashes and decodes one catalog, then hands the rules over a chunk per request. */
import { parentPort, workerData } from 'node:worker_threads';
import { CatalogError } from './errors.js';
import { readCatalogHashed } from './file.js';

const CHUNK = 1024; // rules a message: a few ms of decoding on the receiving thread
const port = parentPort!;

try {
  const { rules, ...head } = readCatalogHashed((workerData as { path: string }).path);
  let next = 0;
  const send = (): void => {
    if (next >= rules.length) return port.postMessage({ done: true });
    port.postMessage({ rules: rules.slice(next, next + CHUNK) });
    next += CHUNK;
  };
  port.on('message', send); // the reader asks for the next chunk when it has taken the last one
  port.postMessage({ head });
} catch (e) {
  port.postMessage({ error: (e as Error).message, catalogError: e instanceof CatalogError });
}
