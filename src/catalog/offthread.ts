/**
 * readCatalogToCompile() on a worker thread, for a process whose event loop must keep turning while
 * it reads (the agent's reload): scanning a 29 MB catalog is one ~150 ms call, JSON.parse of one
 * ~300 ms. A Tollgate JSON catalog comes back as its bytes and spans, moved in one message, a
 * NuAppFirewall one as its columns (NuAppRows); another format's rules a chunk at a time, each a few
 * ms of decoding here, the next asked for only once the last is taken, so other events run between chunks.
 */
import { Worker } from 'node:worker_threads';
import type { Rule } from '../policy/index.js';
import { CatalogError } from './errors.js';
import { CatalogRules, type CompilableCatalog } from './fast-reader.js';
import { Spans } from './json-spans.js';
import { NuAppInput, NuAppRows, type NuAppParts } from './nuapp-rows.js';
import type { ReadImage } from './policy-cache.js';

type Head = Omit<CompilableCatalog, 'rules'> & { imageUnusable?: boolean };
type Message =
  | { warning: string }
  | { image: ReadImage; identity: FileIdentity; sha256: string }
  | { head: Head; bytes: ArrayBuffer; spans: Int32Array[]; count: number }
  | { head: Head; rows: NuAppParts }
  | { head: Head }
  | { rules: Rule[] }
  | { done: true }
  | { error: string; catalogError: boolean };

/** Where the worker looks for an image of the bytes it read (policy-cache.ts decides), and where its warnings go. */
export interface ImageLookup {
  dir: string;
  compiler: string;
  warn: (m: string) => void;
}

/** Which file the worker read an image from: its fd closed with the worker. */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

/**
 * What a read off thread gives: the catalog to compile (`imageUnusable`: an image of it is there but
 * could not be used), or the image of its bytes, read and checked, whose file the caller opens again
 * (and finds to be `identity`) for its rules.
 */
export type OffThreadRead = (CompilableCatalog & { imageUnusable?: boolean }) | { image: ReadImage; identity: FileIdentity; sha256: string };

/**
 * `signal` stops the read: the worker ends and the promise rejects with the signal's reason. With
 * `image`, the worker also reads and checks the image of the bytes it read, if there is one.
 */
export function readCatalogOffThread(path: string, signal?: AbortSignal): Promise<CompilableCatalog>;
export function readCatalogOffThread(path: string, signal: AbortSignal | undefined, image: ImageLookup | undefined): Promise<OffThreadRead>;
export function readCatalogOffThread(path: string, signal?: AbortSignal, image?: ImageLookup): Promise<OffThreadRead> {
  signal?.throwIfAborted();
  const worker = new Worker(new URL('./read-worker.js', import.meta.url), { workerData: { path, image: image && { dir: image.dir, compiler: image.compiler } } });
  return new Promise<OffThreadRead>((resolve, reject) => {
    let head: Head | undefined;
    const rules: Rule[] = [];
    let settled = false;
    const onAbort = (): void => settle(() => reject(signal!.reason));
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort); // one long-lived signal serves every reload
      fn();
      void worker.terminate();
    };
    worker.on('message', (m: Message) => {
      if ('warning' in m) image?.warn(m.warning);
      else if ('image' in m) settle(() => resolve(m));
      else if ('error' in m) settle(() => reject(m.catalogError ? new CatalogError(m.error) : new Error(`${path}: ${m.error}`)));
      else if ('done' in m) settle(() => resolve({ ...head!, rules }));
      else if ('rows' in m) settle(() => resolve({ ...m.head, rules: new NuAppInput(NuAppRows.fromParts(m.rows)) }));
      else if ('bytes' in m) settle(() => resolve({ ...m.head, rules: new CatalogRules(Buffer.from(m.bytes), new Spans(m.spans), m.count) }));
      else {
        if ('head' in m) head = m.head;
        else for (const r of m.rules) rules.push(r);
        setImmediate(() => worker.postMessage('next')); // after this turn's other events
      }
    });
    worker.on('error', (e) => settle(() => reject(new Error(`${path}: catalog reader failed: ${e.message}`))));
    worker.on('exit', (code) => settle(() => reject(new Error(`${path}: catalog reader stopped (exit code ${code})`))));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
