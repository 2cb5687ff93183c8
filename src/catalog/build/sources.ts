/**
 * Reads access logs into one aggregate: plain CSV/TSV/JSON Lines files are cut into byte ranges at
 * line boundaries and scanned by worker threads in parallel; a gzip file is streamed by one worker;
 * Tollgate's audit store (SQLite) is read directly, its allowed connections only.
 */
import { availableParallelism } from 'node:os';
import { open, stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { Aggregate } from './aggregate.js';
import { normaliseAggregate, type NormaliseOptions } from './normalise.js';
import { resolveColumns, type Mapping } from './columns.js';
import type { LogFormat, ScanCounts, ScanOptions } from './scan.js';
import type { Task, TaskResult } from './worker.js';

export interface ReadOptions extends NormaliseOptions {
  keepPrivate: boolean;
  mapping: Mapping;
  keepIps: boolean;
  /** Distinct devices / users to remember per access (the filters' thresholds). */
  keepDevices: number;
  keepUsers: number;
  since?: number;
  until?: number;
  workers?: number;
  /** Smallest byte range given to one worker (tests lower it to split small files). */
  minRangeBytes?: number;
  onProgress?: (bytes: number, lines: number) => void;
}

export interface FileReport extends Omit<ScanCounts, 'firstBad'> {
  file: string;
  format: LogFormat | 'sqlite';
  bytes: number;
  firstBad: { line: number; reason: string }[];
}

const MIN_RANGE = 16 * 1024 * 1024;

async function head(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function formatOf(file: string, firstLine: string): LogFormat | 'sqlite' {
  const name = file.toLowerCase().replace(/\.gz$/, '');
  if (/\.(db|sqlite|sqlite3)$/.test(name)) return 'sqlite';
  if (/\.(jsonl|ndjson)$/.test(name)) return 'jsonl';
  if (name.endsWith('.tsv')) return 'tsv';
  if (name.endsWith('.csv')) return 'csv';
  if (firstLine.trimStart().startsWith('{')) return 'jsonl';
  return firstLine.includes('\t') ? 'tsv' : 'csv';
}

/** The header line of a (maybe gzip) file, and the byte offset after it in the plain file. */
async function headerOf(file: string, gz: boolean): Promise<{ line: string; end: number }> {
  let b = await head(file, 1024 * 1024);
  if (gz) {
    // Enough of the stream to hold a header: gunzip what the first megabyte holds.
    try { b = gunzipSync(b, { finishFlush: 2 /* Z_SYNC_FLUSH */ }); } catch (e) { throw new Error(`${file}: not a readable gzip file (${(e as Error).message})`); }
  }
  const nl = b.indexOf(10);
  if (nl < 0 && b.length >= 1024 * 1024) throw new Error(`${file}: no line break in the first megabyte`);
  const end = nl < 0 ? b.length : nl + 1;
  return { line: b.toString('utf8', 0, end).replace(/\r?\n$/, ''), end };
}

/** Byte offsets after the first newline at or past each cut point, so ranges hold whole lines. */
async function cuts(file: string, from: number, size: number, parts: number): Promise<number[]> {
  const out = [from];
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(64 * 1024);
    for (let i = 1; i < parts; i++) {
      let p = from + Math.floor(((size - from) * i) / parts);
      for (;;) {
        const { bytesRead } = await fh.read(b, 0, b.length, p);
        if (bytesRead === 0) { p = size; break; }
        const nl = b.subarray(0, bytesRead).indexOf(10);
        if (nl >= 0) { p += nl + 1; break; }
        p += bytesRead;
      }
      if (p > out[out.length - 1]! && p < size) out.push(p);
    }
  } finally {
    await fh.close();
  }
  out.push(size);
  return out;
}

function runTask(task: Task, onProgress: (bytes: number, lines: number) => void): Promise<TaskResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: task });
    let lines = 0;
    w.on('message', (m: { progress?: number; lines?: number; result?: TaskResult; error?: string }) => {
      if (m.progress !== undefined) {
        onProgress(m.progress, m.lines! - lines);
        lines = m.lines!;
      }
      if (m.result) resolve(m.result);
      if (m.error) reject(new Error(m.error));
    });
    w.on('error', reject);
    w.on('exit', (code) => { if (code !== 0) reject(new Error(`${task.file}: worker stopped (exit ${code})`)); });
  });
}

/** Runs tasks with at most `n` at a time, keeping results in task order. */
async function pool<T>(jobs: (() => Promise<T>)[], n: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, jobs.length) }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  }));
  return out;
}

function readAuditStore(file: string, agg: Aggregate, o: ReadOptions, report: FileReport): void {
  const raw = new Aggregate(agg.devCap, agg.userCap);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new Error(`${file}: not an audit store (${(e as Error).message})`);
  }
  try {
    const where = ["action = 'allow'"];
    if (o.since !== undefined) where.push(`time >= ${Math.floor(o.since)}`);
    if (o.until !== undefined) where.push(`time <= ${Math.floor(o.until)}`);
    const rows = db.prepare(`SELECT path, remote_ip, hostnames, port, protocol, uid FROM decisions WHERE ${where.join(' AND ')}`)
      .iterate() as Iterable<{ path: string; remote_ip: string; hostnames: string; port: number; protocol: string; uid: number | null }>;
    for (const r of rows) {
      report.lines++;
      report.accesses++;
      const names = JSON.parse(r.hostnames) as string[];
      const user = r.uid === null ? '' : String(r.uid);
      for (const dest of names.length ? names : [r.remote_ip]) raw.add(`${r.path}\t${dest}\t${r.port}\t${r.protocol}`, 1, '', user);
      if (names.length && o.keepIps) raw.add(`${r.path}\t${r.remote_ip}\t${r.port}\t${r.protocol}`, 1, '', user);
      else if (names.length) report.ipsDropped++;
    }
  } catch (e) {
    throw new Error(`${file}: not an audit store (${(e as Error).message})`);
  } finally {
    db.close();
  }
  normaliseAggregate(raw, o);
  agg.merge(raw);
}

/** Reads every file into one aggregate; a report per file. Throws on a file that cannot be read at all. */
export async function readLogs(files: string[], o: ReadOptions): Promise<{ agg: Aggregate; reports: FileReport[] }> {
  const agg = new Aggregate(o.keepDevices, o.keepUsers);
  const reports: FileReport[] = [];
  const workers = Math.max(1, o.workers ?? availableParallelism());
  const progress = o.onProgress ?? (() => {});
  for (const file of files) {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (e) {
      throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const magic = await head(file, 16);
    const gz = magic[0] === 0x1f && magic[1] === 0x8b;
    const sqlite = magic.toString('latin1').startsWith('SQLite format 3');
    const hdr = sqlite ? { line: '', end: 0 } : await headerOf(file, gz);
    const format = sqlite ? 'sqlite' : formatOf(file, hdr.line);
    const report: FileReport = { file, format, bytes: size, lines: 0, accesses: 0, malformed: 0, outsideWindow: 0, ipsDropped: 0, firstBad: [] };
    reports.push(report);
    if (format === 'sqlite') {
      readAuditStore(file, agg, o, report);
      progress(size, report.lines);
      continue;
    }
    const scan: ScanOptions = { format, keepIps: o.keepIps };
    if (o.since !== undefined) scan.since = o.since;
    if (o.until !== undefined) scan.until = o.until;
    // A CSV/TSV file names its columns in its first line; JSON Lines carry names in every line.
    let dataStart = 0;
    if (format === 'jsonl') scan.mapping = o.mapping;
    else {
      scan.columns = resolveColumns(hdr.line.split(format === 'tsv' ? '\t' : ','), o.mapping, file);
      dataStart = hdr.end;
    }
    const firstDataLine = format === 'jsonl' ? 1 : 2;
    const common = { norm: { stripUrls: o.stripUrls }, devCap: o.keepDevices, userCap: o.keepUsers };
    const tasks: Task[] = gz
      ? [{ file, start: 0, end: size, gzip: true, skipHeader: format !== 'jsonl', scan, ...common }]
      : (await cuts(file, dataStart, size, Math.max(1, Math.min(workers, Math.ceil((size - dataStart) / (o.minRangeBytes ?? MIN_RANGE))))))
          .slice(0, -1)
          .map((start, i, all) => ({ file, start, end: i + 1 < all.length ? all[i + 1]! : size, gzip: false, skipHeader: false, scan, ...common }));
    const results = await pool(tasks.map((t) => () => runTask(t, progress)), workers);
    let line = firstDataLine;
    for (const r of results) {
      agg.merge(r.agg);
      for (const k of ['lines', 'accesses', 'malformed', 'outsideWindow', 'ipsDropped'] as const) report[k] += r.counts[k];
      // Worker line numbers count from 1 in their range: shift them to the file's numbering.
      for (const b of r.counts.firstBad) if (report.firstBad.length < 10) report.firstBad.push({ line: b.line + line - 1, reason: b.reason });
      line += r.newlines;
    }
  }
  return { agg, reports };
}
