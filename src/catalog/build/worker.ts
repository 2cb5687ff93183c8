/** One builder worker: scans a byte range of a plain log, or a whole gzip log, into an aggregate. */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { parentPort, workerData } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';
import { Aggregate, type PackedAggregate } from './aggregate.js';
import { normaliseAggregate, type NormaliseOptions } from './normalise.js';
import { LineScanner, type ScanOptions } from './scan.js';

export interface Task {
  file: string;
  start: number;
  end: number;
  gzip: boolean;
  /** Skip the first line (the header) of a gzip file. */
  skipHeader: boolean;
  scan: ScanOptions;
  norm: NormaliseOptions;
  /** Distinct devices / users to remember per entry (the filters' thresholds). */
  devCap: number;
  userCap: number;
}

export interface TaskResult {
  agg: PackedAggregate;
  counts: LineScanner['counts'];
  /** Newlines in the range: where the next range's line numbers start. */
  newlines: number;
}

const CHUNK = 8 * 1024 * 1024;
const SLICE = 64 * 1024;
let reported = 0;
let lastReport = 0;
function progress(bytes: number, scanner: LineScanner, force = false): void {
  const now = Date.now();
  if (!force && now - lastReport < 100) return;
  lastReport = now;
  parentPort!.postMessage({ progress: bytes - reported, lines: scanner.counts.lines });
  reported = bytes;
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

async function plain(t: Task, scanner: LineScanner): Promise<number> {
  const fh = await open(t.file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  let carry = 0;
  let pos = t.start;
  let line = 1;
  let newlines = 0;
  try {
    while (pos < t.end || carry > 0) {
      const want = Math.min(CHUNK - carry, t.end - pos);
      const { bytesRead } = want > 0 ? await fh.read(buf, carry, want, pos) : { bytesRead: 0 };
      pos += bytesRead;
      const filled = carry + bytesRead;
      const last = pos >= t.end ? filled - 1 : buf.lastIndexOf(10, filled - 1);
      if (last < 0) {
        if (filled === CHUNK) throw new Error(`${t.file}: a line longer than ${CHUNK} bytes at byte ${pos - filled}`);
        carry = filled;
        continue;
      }
      // Decode in slices of at most 64 KiB, each cut after a newline (so no UTF-8 character is
      // split): strings that small live in V8's young generation and die cheaply, where one 8 MiB
      // string per read goes to large-object space and piles up until a full GC (GiBs of RSS).
      for (let from = 0; from <= last;) {
        let to = from + SLICE >= last ? last : buf.lastIndexOf(10, from + SLICE);
        if (to < from) to = buf.indexOf(10, from + SLICE) < 0 || buf.indexOf(10, from + SLICE) > last ? last : buf.indexOf(10, from + SLICE);
        const text = buf.toString('utf8', from, to + 1);
        scanner.feed(text, line);
        const nl = countNewlines(text);
        line += nl;
        newlines += nl;
        from = to + 1;
      }
      carry = filled - (last + 1);
      buf.copy(buf, 0, last + 1, filled);
      progress(pos - t.start - carry, scanner);
      if (pos >= t.end && carry === 0) break;
    }
  } finally {
    await fh.close();
  }
  progress(t.end - t.start, scanner, true);
  return newlines;
}

async function gzip(t: Task, scanner: LineScanner): Promise<number> {
  const raw = createReadStream(t.file);
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let line = 1;
  let skip = t.skipHeader;
  raw.on('data', () => progress(raw.bytesRead, scanner));
  for await (const chunk of raw.pipe(createGunzip())) {
    let text = rest + decoder.write(chunk as Buffer);
    const last = text.lastIndexOf('\n');
    if (last < 0) { rest = text; continue; }
    rest = text.slice(last + 1);
    text = text.slice(0, last + 1);
    if (skip) {
      const nl = text.indexOf('\n');
      text = text.slice(nl + 1);
      skip = false;
    }
    scanner.feed(text, line);
    line += countNewlines(text);
  }
  rest += decoder.end();
  if (rest) scanner.feed(rest, line);
  progress(raw.bytesRead, scanner, true);
  return line;
}

const task = workerData as Task;
const scanner = new LineScanner(new Aggregate(task.devCap, task.userCap), task.scan);
try {
  const newlines = task.gzip ? await gzip(task, scanner) : await plain(task, scanner);
  normaliseAggregate(scanner.agg, task.norm);
  const agg = scanner.agg.pack();
  const result: TaskResult = { agg, counts: scanner.counts, newlines };
  parentPort!.postMessage({ result }, [agg.counts.buffer, agg.devs.buffer, agg.users.buffer] as ArrayBuffer[]);
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message });
}
