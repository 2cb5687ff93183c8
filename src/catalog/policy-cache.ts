/**
 * The compiled-policy cache: a catalog's compiled index kept on disk, keyed by the SHA-256 of the
 * catalog's bytes, so that the next load of the same catalog (an agent's restart, a boot, a
 * `tollgate decide`) skips JSON parsing, validation and the compile. Measured on the generated
 * 250,000-rule catalog: ~0.8-1.1 s and ~200 MB peak RSS from the catalog, ~70-90 ms and ~100 MB from
 * its image (bench/decide prints both).
 *
 * An image is used only when all of these hold, else the catalog is compiled as if there were no cache:
 * - its name is the catalog's content hash and length (so an edited catalog never meets an old image);
 * - its header names this build's compiler: a hash of the policy/ and catalog/ code, so a Tollgate
 *   whose rules mean something else never reads an image an older one wrote;
 * - its head and sections are in place (a short write is seen; writes are atomic anyway), and the
 *   sections match the SHA-256 in its head (a flipped bit in the index would change verdicts);
 * - the cache folder is the user's own and nobody else may write to it (an image is a policy: a
 *   folder others can write would let them choose root's firewall rules).
 * An image that cannot be read or does not agree is said (warn) and replaced.
 *
 * Writing an image of 250,000 rules costs ~0.2-0.4 s (a rule read from a catalog's bytes is copied as
 * it is; others are encoded from their objects). The CLI writes it
 * before it exits; the agent writes it after its start, and after each reload, in 4 ms slices while
 * it decides (ImageJob), so neither a start nor a verdict waits for it. The file format: image-file.ts.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Policy, runSliced, type Mode, type PolicyImage } from '../policy/index.js';
import { readOrSay, type Catalog } from './file.js';
import { readCatalogToCompile } from './fast-reader.js';
import { readCatalogOffThread, type FileIdentity } from './offthread.js';
import { imageRules, readHead, readIndex, writeSteps, type ImageHead } from './image-file.js';
import { openFolder } from './trust.js';

const KEEP = 8; // images kept in the folder, most recently used first
/** Smaller catalogs compile in a few ms: an image would cost more to check than it saves. */
export const CACHE_MIN_BYTES = 1 << 20;

export interface CacheOptions {
  /** The folder; null: no cache. Default: defaultCacheDir(). */
  dir?: string | null;
  /** Catalogs smaller than this are compiled every time. */
  minBytes?: number;
  /** Where warnings go (an image that could not be used or written). */
  warn?: (message: string) => void;
  /** After a compile: write the image before returning (default), or hand the caller an ImageJob. */
  write?: 'now' | 'later';
}

type CatalogHead = Omit<Catalog, 'rules'>;

export interface LoadedPolicy {
  catalog: CatalogHead;
  policy: Policy;
  /** `image`: restored from the cache; `catalog`: compiled. */
  from: 'image' | 'catalog';
  /** With write 'now': whether an image was kept. */
  written: boolean;
  /** With write 'later': the image to write, when the cache is on and the policy was compiled. */
  job?: ImageJob;
}

/** root: /var/cache/tollgate; a user: $XDG_CACHE_HOME/tollgate or ~/.cache/tollgate; TOLLGATE_CACHE_DIR overrides ("" = none). */
export function defaultCacheDir(): string | null {
  const env = process.env.TOLLGATE_CACHE_DIR;
  if (env !== undefined) return env === '' ? null : env;
  if (process.getuid?.() === 0) return '/var/cache/tollgate';
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tollgate');
}

let compilerHash: string | undefined;
/** What this build's compile is: its policy/ and catalog/ code (the builder's excluded: it makes catalogs, not policies). */
export function compilerFingerprint(): string {
  if (compilerHash) return compilerHash;
  const h = createHash('sha256');
  for (const part of ['../policy', '.']) {
    const dir = fileURLToPath(new URL(part, import.meta.url));
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.js')).sort()) h.update(f).update(readFileSync(join(dir, f)));
  }
  return (compilerHash = h.digest('hex').slice(0, 32));
}

/** SHA-256 of a file, read a MiB at a time: the whole file is never in memory for a cache hit. */
export function hashFile(path: string): string {
  return hashAndSize(path).sha256;
}

/** hashFile(), and how many bytes it hashed. */
function hashAndSize(path: string): { sha256: string; size: number } {
  const fd = openSync(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    let size = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; size += n) h.update(buf.subarray(0, n));
    return { sha256: h.digest('hex'), size };
  } finally {
    closeSync(fd);
  }
}

/**
 * The image of a catalog whose bytes have this SHA-256 and length. The length is in the name so that
 * a load can tell, from the folder's names alone, that no image can be of a catalog this long: it then
 * reads the catalog once, hashing what it compiles, where it hashed it a first time to look (~20-30 ms
 * of a first start of a 250,000-rule catalog).
 */
export function imageName(sha256: string, size: number): string {
  return sha256 + nameEnd(size);
}

/** How the name of an image of a catalog of `size` bytes ends. */
const nameEnd = (size: number): string => `-${size}.policy`;

/** Whether `dir` may hold an image of a catalog of `size` bytes (on doubt, yes: the lookup then says). */
function mayHoldImage(dir: string, size: number): boolean {
  try {
    return readdirSync(dir).some((f) => f.endsWith(nameEnd(size)));
  } catch {
    return true;
  }
}

/**
 * Reads a catalog and compiles its policy, through the cache when the catalog is big enough. Throws
 * CatalogError / InvalidRulesError as readCatalog() and Policy.compile() do: a catalog with bad rules
 * never gets an image, so an image always stands for a valid catalog.
 */
export function loadPolicy(path: string, mode: Mode | undefined, opts: CacheOptions = {}): LoadedPolicy {
  const warn = opts.warn ?? defaultWarn;
  const { dir, size } = cacheDirFor(path, opts, warn);
  if (dir !== null && mayHoldImage(dir, size)) {
    const h = readOrSay(path, () => hashAndSize(path));
    const hit = readImage(join(dir, imageName(h.sha256, h.size)), mode, warn);
    if (hit) return { ...hit, from: 'image', written: false };
  }
  // the image is named by the bytes compiled: the file may have been edited since it was hashed above
  const { rules, sha256, size: compiled, ...catalog } = readCatalogToCompile(path);
  const policy = Policy.compile(rules, mode ?? catalog.mode ?? 'passive-allow');
  const job = dir === null ? undefined : new ImageJob(join(dir, imageName(sha256, compiled)), catalog, policy, warn);
  if (opts.write === 'later') return { catalog, policy, from: 'catalog', written: false, ...(job ? { job } : {}) };
  return { catalog, policy, from: 'catalog', written: job?.writeNow() ?? false };
}

const defaultWarn = (m: string): void => console.error(m);

/**
 * The folder for the image of the catalog at `path` (null when the cache is off, the catalog small, or
 * the folder unsafe: said through `warn`), and the catalog's size as it was looked at.
 */
function cacheDirFor(path: string, opts: CacheOptions, warn: (m: string) => void): { dir: string | null; size: number } {
  const dir = opts.dir === undefined ? defaultCacheDir() : opts.dir;
  if (dir === null) return { dir, size: -1 };
  let size = -1;
  try {
    size = statSync(path).size;
  } catch {
    // reading the catalog says what is wrong with it
  }
  return { dir: size >= (opts.minBytes ?? CACHE_MIN_BYTES) && safeDir(dir, warn) ? dir : null, size };
}

/** The folder exists (made if not), is ours and is writable by nobody else. */
function safeDir(dir: string, warn: (m: string) => void): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    const uid = process.getuid?.() ?? st.uid;
    if (st.uid !== uid || (st.mode & 0o022) !== 0) {
      warn(`tollgate: WARNING: policy cache ${dir} is not private to this user (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}): not used`);
      return false;
    }
    // an image is restored as it is: whoever can swap the folder from above could hand root a policy
    const open = openFolder(dirname(resolve(dir)));
    if (open) {
      warn(`tollgate: WARNING: policy cache ${dir} is under ${open.dir}, which ${open.by} can write (mode ${(open.mode & 0o7777).toString(8)}): not used`);
      return false;
    }
    return true;
  } catch (e) {
    warn(`tollgate: WARNING: policy cache ${dir} cannot be used (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): compiling every time`);
    return false;
  }
}

/** An image read and checked (readImageIndex), with the file open: what restoreImage() makes a policy of. */
export interface ReadImage {
  file: string;
  head: ImageHead<CatalogHead>;
  image: PolicyImage;
  fd: number;
}

/**
 * The image `file`, read and checked against its checksum (the caller owns the returned fd); 'none'
 * when there is none; 'unusable' when another build wrote it, or it is unreadable or damaged (said
 * through `warn`): a compile then replaces it.
 */
export function readImageIndex(file: string, compiler: string, warn: (m: string) => void): ReadImage | 'none' | 'unusable' {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    warn(`tollgate: WARNING: policy image ${file} cannot be read (${(e as NodeJS.ErrnoException).code}): compiling the catalog`);
    return 'unusable';
  }
  try {
    const head = readHead<CatalogHead>(fd);
    if (head.compiler !== compiler) { // another build's: replaced, as after any recompile
      closeSync(fd);
      return 'unusable';
    }
    return { file, head, image: readIndex(fd, head), fd };
  } catch (e) {
    closeSync(fd);
    warn(damaged(file, e));
    return 'unusable';
  }
}

/** The policy of an image readImageIndex() gave, under `mode` (else the catalog's), or null when it does not restore (said). */
export function restoreImage(r: ReadImage, mode: Mode | undefined, warn: (m: string) => void): Omit<LoadedPolicy, 'from' | 'written'> | null {
  // The rules own the fd from here: it is closed when they are collected, never here (a second close
  // could hit another file that got the same number meanwhile).
  const rules = imageRules(r.fd, r.image.ruleEnds);
  try {
    const policy = Policy.restore(r.image, mode ?? r.head.catalog.mode ?? 'passive-allow', rules);
    touch(r.file);
    return { catalog: r.head.catalog, policy };
  } catch (e) {
    warn(damaged(r.file, e));
    return null;
  }
}

function readImage(file: string, mode: Mode | undefined, warn: (m: string) => void): Omit<LoadedPolicy, 'from' | 'written'> | null {
  const r = readImageIndex(file, compilerFingerprint(), warn);
  return typeof r === 'string' ? null : restoreImage(r, mode, warn);
}

/**
 * A reload's load (the agent's), off the event loop where it can be: the catalog is read, hashed and
 * scanned on a worker thread, which also reads and checks the image of those bytes when the cache
 * has one; the policy is then restored from it (a SIGHUP with the catalog unchanged, an edit
 * reverted), else compiled in slices of `sliceMs`, and `job` is the image to write. Rejects as
 * readCatalog() and Policy.compile() do, or with `signal`'s reason once it is aborted.
 */
export async function reloadPolicy(path: string, mode: Mode | undefined, opts: CacheOptions & { signal?: AbortSignal; sliceMs?: number } = {}): Promise<Omit<LoadedPolicy, 'written'>> {
  const warn = opts.warn ?? defaultWarn;
  const { dir } = cacheDirFor(path, opts, warn);
  const r = await readCatalogOffThread(path, opts.signal, dir === null ? undefined : { dir, compiler: compilerFingerprint(), warn });
  if ('image' in r) {
    const fd = openAgain(r.image.file, r.identity);
    const hit = fd >= 0 ? restoreImage({ ...r.image, fd }, mode, warn) : null;
    if (hit) return { ...hit, from: 'image' };
    // replaced meanwhile, or it does not restore: compiled, and its image written again
    const l = await reloadPolicy(path, mode, { ...opts, dir: null });
    return { ...l, job: new ImageJob(r.image.file, l.catalog, l.policy, warn) };
  }
  const { rules, sha256, size, imageUnusable, ...catalog } = r;
  const policy = await Policy.compileSliced(rules, mode ?? catalog.mode ?? 'passive-allow', opts.sliceMs ?? 4, opts.signal);
  const file = dir === null ? null : join(dir, imageName(sha256, size));
  // an image another process wrote meanwhile is left alone; one that could not be used is replaced
  const job = file !== null && (imageUnusable || !existsSync(file)) ? new ImageJob(file, catalog, policy, warn) : undefined;
  return { catalog, policy, from: 'catalog', ...(job ? { job } : {}) };
}

/** `file` opened again, if it is still the file a worker read (same device, inode, size and time), else -1. */
function openAgain(file: string, id: FileIdentity): number {
  let fd = -1;
  try {
    fd = openSync(file, 'r');
    const st = fstatSync(fd);
    if (st.dev === id.dev && st.ino === id.ino && st.size === id.size && st.mtimeMs === id.mtimeMs) return fd;
  } catch {
    // gone: compiled instead
  }
  if (fd >= 0) closeSync(fd);
  return -1;
}

const damaged = (file: string, e: unknown): string => `tollgate: WARNING: policy image ${file} is damaged (${(e as Error).message}): compiling the catalog`;

let tmpCount = 0;

/** Writing one policy's image: to a temporary file renamed over the name, then the oldest images beyond KEEP go. */
export class ImageJob {
  constructor(readonly file: string, private readonly catalog: CatalogHead, private readonly policy: Policy, private readonly warn: (m: string) => void) {}

  /** All at once. */
  writeNow(): boolean {
    return this.run((steps) => {
      while (!steps.next().done);
    }) as boolean;
  }

  /** In slices of `sliceMs`, with the event loop let run between them; `signal` abandons it (no file is left). */
  async write(sliceMs = 4, signal?: AbortSignal): Promise<boolean> {
    return this.run((steps) => runSliced(steps, sliceMs, signal));
  }

  private run(drive: (steps: Generator<void, void>) => void | Promise<void>): boolean | Promise<boolean> {
    const tmp = `${this.file}.${process.pid}.${++tmpCount}.tmp`;
    let fd = -1;
    const fail = (e: unknown): false => {
      if (fd >= 0) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // not made
      }
      if (!(e instanceof Error && e.name === 'AbortError')) {
        this.warn(`tollgate: WARNING: policy image ${this.file} not written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): the next load compiles again`);
      }
      return false;
    };
    let ends: Int32Array | undefined;
    const done = (): true => {
      closeSync(fd);
      fd = -1;
      // the policy's rules from the image from now on: the catalog's bytes (~30 MB for 250,000
      // rules) were kept only to make rule objects from; the image holds the same JSON
      const rules = openSync(tmp, 'r'); // before the rename: the very file written
      try {
        renameSync(tmp, this.file);
      } catch (e) {
        closeSync(rules);
        throw e;
      }
      this.policy.readRulesFrom(imageRules(rules, ends!));
      prune(dirname(this.file));
      return true;
    };
    try {
      fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      const r = drive(writeSteps(fd, { compiler: compilerFingerprint(), catalog: this.catalog }, this.policy, (e) => (ends = e)));
      if (r instanceof Promise) return r.then(done).catch(fail);
      return done();
    } catch (e) {
      return fail(e);
    }
  }
}

function touch(file: string): void {
  const now = new Date();
  try {
    utimesSync(file, now, now);
  } catch {
    // only the pruning order suffers
  }
}

/** Keeps the KEEP most recently used images, and removes temporary files a killed writer left (older than an hour). */
function prune(dir: string): void {
  const files = readdirSync(dir).map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }));
  const images = files.filter((x) => x.f.endsWith('.policy')).sort((a, b) => b.t - a.t);
  for (const { f } of images.slice(KEEP)) unlinkSync(join(dir, f));
  for (const { f, t } of files) if (f.endsWith('.tmp') && t < Date.now() - 3_600_000) unlinkSync(join(dir, f));
}
