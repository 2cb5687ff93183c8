/**
 * The catalog reader's thread (offthread.ts): reads and hashes one catalog. A Tollgate JSON catalog
 * is scanned here (fast-reader.ts) and its bytes and spans handed over whole, moved rather than
 * copied; any other is decoded here and its rules handed over a chunk per request.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { CatalogError } from './errors.js';
import { parseCatalogRows, readOrSay } from './file.js';
import { scanCatalog } from './json-spans.js';
import { imageName, readImageIndex } from './policy-cache.js';

const CHUNK = 1024; // rules a message: a few ms of decoding on the receiving thread
const port = parentPort!;

function run(): void {
  const { path, image } = workerData as { path: string; image?: { dir: string; compiler: string } };
  const bytes = readOrSay(path, () => readFileSync(path));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let imageUnusable = false;
  if (image) {
    const r = readImageIndex(join(image.dir, imageName(sha256, bytes.length)), image.compiler, (warning) => port.postMessage({ warning }));
    if (typeof r !== 'string') {
      // a worker's fds close with it: the reader opens the file again, and checks it is this one
      const { dev, ino, size, mtimeMs } = fstatSync(r.fd);
      closeSync(r.fd);
      return port.postMessage({ image: { ...r, fd: -1 }, identity: { dev, ino, size, mtimeMs }, sha256 }, buffersOf(r.image));
    }
    imageUnusable = r === 'unusable';
  }
  const fast = scanCatalog(bytes, path);
  if (fast) {
    // the bytes must own their memory to be moved (a small file's may share Node's pool)
    const own = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    const spans = fast.spans.chunks;
    port.postMessage({ head: { ...fast.head, sha256, size: bytes.length, ...(imageUnusable ? { imageUnusable } : {}) }, bytes: own, spans, count: fast.count }, [own as ArrayBuffer, ...spans.map((c) => c.buffer as ArrayBuffer)]);
  } else {
    const { rules, ...head } = parseCatalogRows(bytes.subarray(0, 6).toString('latin1') === 'bplist' ? bytes : bytes.toString('utf8'), path);
    const full = { ...head, sha256, size: bytes.length, ...(imageUnusable ? { imageUnusable } : {}) };
    if (!Array.isArray(rules)) {
      // NuAppFirewall's: its columns in one message, the typed arrays moved (a few strings a rule fewer to copy than objects)
      const rows = rules.parts();
      return port.postMessage({ head: full, rows }, [rows.entryOf.buffer as ArrayBuffer, rows.at.buffer as ArrayBuffer]);
    }
    let next = 0;
    const send = (): void => {
      if (next >= rules.length) return port.postMessage({ done: true });
      port.postMessage({ rules: rules.slice(next, next + CHUNK) });
      next += CHUNK;
    };
    port.on('message', send); // the reader asks for the next chunk when it has taken the last one
    port.postMessage({ head: full });
  }
}

/** The buffers under an image's typed arrays: moved to the reader, not copied. */
function buffersOf(o: object, out = new Set<ArrayBuffer>()): ArrayBuffer[] {
  for (const v of Object.values(o)) {
    if (ArrayBuffer.isView(v)) out.add(v.buffer as ArrayBuffer);
    else if (v !== null && typeof v === 'object') buffersOf(v as object, out);
  }
  return [...out];
}

try {
  run();
} catch (e) {
  port.postMessage({ error: (e as Error).message, catalogError: e instanceof CatalogError });
}
