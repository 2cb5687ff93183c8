/**
 * The catalog reader's thread (offthread.ts): reads and hashes one catalog. A Tollgate JSON catalog
 * is scanned here (fast-reader.ts) and its bytes and spans handed over whole, moved rather than
 * copied; any other is decoded here and its rules handed over a chunk per request.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { CatalogError } from './errors.js';
import { parseCatalog, readOrSay } from './file.js';
import { scanCatalog } from './json-spans.js';

const CHUNK = 1024; // rules a message: a few ms of decoding on the receiving thread
const port = parentPort!;

try {
  const path = (workerData as { path: string }).path;
  const bytes = readOrSay(path, () => readFileSync(path));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const fast = scanCatalog(bytes, path);
  if (fast) {
    // the bytes must own their memory to be moved (a small file's may share Node's pool)
    const own = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    const spans = fast.spans.chunks;
    port.postMessage({ head: { ...fast.head, sha256 }, bytes: own, spans, count: fast.count }, [own as ArrayBuffer, ...spans.map((c) => c.buffer as ArrayBuffer)]);
  } else {
    const { rules, ...head } = parseCatalog(bytes.subarray(0, 6).toString('latin1') === 'bplist' ? bytes : bytes.toString('utf8'), path);
    let next = 0;
    const send = (): void => {
      if (next >= rules.length) return port.postMessage({ done: true });
      port.postMessage({ rules: rules.slice(next, next + CHUNK) });
      next += CHUNK;
    };
    port.on('message', send); // the reader asks for the next chunk when it has taken the last one
    port.postMessage({ head: { ...head, sha256 } });
  }
} catch (e) {
  port.postMessage({ error: (e as Error).message, catalogError: e instanceof CatalogError });
}
