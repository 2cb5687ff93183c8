/**
 * The compiled-policy cache: a catalog's compiled index kept on disk, keyed by the SHA-256 of the
 * catalog's bytes, so that the next load of the same catalog (an agent's restart, a boot, a
 * `tollgate decide`) skips JSON parsing, validation and the compile. Measured on the generated
 * 250,000-rule catalog: ~1.8 s and ~225 MB peak RSS from the catalog, a fraction of both from its
 * image (bench/decide prints both).
 *
 * An image is used only when all of these hold, else the catalog is compiled as if there were no cache:
 * - its name is the catalog's content hash (so an edited catalog never meets an old image);
 * - its header names this build's compiler: a hash of the policy/ and catalog/ code, so a Tollgate
 *   whose rules mean something else never reads an image an older one wrote;
 * - its size is what its header says (a short write is seen; writes are atomic anyway);
 * - the cache folder is the user's own and nobody else may write to it (an image is a policy: a
 *   folder others can write would let them choose root's firewall rules).
 * An image that cannot be read or does not agree is said (warn) and replaced.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import { Policy, ruleFromBytes, type Mode, type PolicyImage, type Rule, type RuleSource } from '../policy/index.js';
import { readCatalogSync, readOrSay, type Catalog } from './file.js';

const MAGIC = 'TOLLGATE-POLICY1\n';
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
}

export interface LoadedPolicy {
  catalog: Omit<Catalog, 'rules'>;
  policy: Policy;
  /** `image`: restored from the cache; `catalog`: compiled (and `written` says if an image was kept). */
  from: 'image' | 'catalog';
  written: boolean;
}

/**
 * The file: MAGIC, the rule text's length (u32 LE), the rule text (each rule's JSON, see
 * policy/image.ts), the header's length (u32 LE), the header (JSON), and the index (v8.serialize of
 * the PolicyImage without its rule text, `index` bytes). The text comes first so that it is written
 * as it is made; it stays on disk: a rule is read (pread) when a verdict first names it, so a
 * 250,000-rule policy does not hold ~28 MB of rule JSON that most verdicts never name.
 */
interface Header {
  compiler: string;
  catalog: Omit<Catalog, 'rules'>;
  index: number;
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
  const h = createHash('sha256').update(process.versions.v8);
  for (const part of ['../policy', '.']) {
    const dir = fileURLToPath(new URL(part, import.meta.url));
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.js')).sort()) h.update(f).update(readFileSync(join(dir, f)));
  }
  return (compilerHash = h.digest('hex').slice(0, 32));
}

/** SHA-256 of a file, read a MiB at a time: the whole file is never in memory for a cache hit. */
function hashFile(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a catalog and compiles its policy, through the cache when the catalog is big enough. Throws
 * CatalogError / InvalidRulesError as readCatalog() and Policy.compile() do: a catalog with bad rules
 * never gets an image, so an image always stands for a valid catalog.
 */
export function loadPolicy(path: string, mode: Mode | undefined, opts: CacheOptions = {}): LoadedPolicy {
  const dir = opts.dir === undefined ? defaultCacheDir() : opts.dir;
  const warn = opts.warn ?? ((m: string) => console.error(m));
  let file = '';
  if (dir !== null && readOrSay(path, () => statSync(path)).size >= (opts.minBytes ?? CACHE_MIN_BYTES) && safeDir(dir, warn)) {
    file = join(dir, readOrSay(path, () => hashFile(path)) + '.policy');
    const hit = readImage(file, mode, warn);
    if (hit) return { ...hit, from: 'image', written: false };
  }
  const { rules, ...catalog } = readCatalogSync(path);
  const policy = Policy.compile(rules, mode ?? catalog.mode ?? 'passive-allow');
  const written = file !== '' && writeImage(file, catalog, policy, warn);
  return { catalog, policy, from: 'catalog', written };
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
    return true;
  } catch (e) {
    warn(`tollgate: WARNING: policy cache ${dir} cannot be used (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): compiling every time`);
    return false;
  }
}

function readImage(file: string, mode: Mode | undefined, warn: (m: string) => void): Omit<LoadedPolicy, 'from' | 'written'> | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`tollgate: WARNING: policy image ${file} cannot be read (${(e as NodeJS.ErrnoException).code}): compiling the catalog`);
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    const u32 = (at: number): number => readFully(fd, Buffer.alloc(4), at).readUInt32LE(0);
    if (readFully(fd, Buffer.alloc(MAGIC.length), 0).toString('latin1') !== MAGIC) throw new Error('not a policy image');
    const textAt = MAGIC.length + 4;
    const headAt = textAt + u32(MAGIC.length) + 4;
    const headLen = u32(headAt - 4);
    const head = JSON.parse(readFully(fd, Buffer.alloc(headLen), headAt).toString('utf8')) as Header;
    if (head.compiler !== compilerFingerprint()) { // another build's: replaced, as after any recompile
      closeSync(fd);
      return null;
    }
    const indexAt = headAt + headLen;
    if (size !== indexAt + head.index) throw new Error(`${size} bytes, its header says ${indexAt + head.index}`);
    const image = deserialize(readFully(fd, Buffer.allocUnsafe(head.index), indexAt)) as PolicyImage;
    const rules = new FileRules(fd, textAt, image.ruleEnds);
    const policy = Policy.restore(image, mode ?? head.catalog.mode ?? 'passive-allow', rules);
    touch(file);
    return { catalog: head.catalog, policy };
  } catch (e) {
    closeSync(fd);
    warn(`tollgate: WARNING: policy image ${file} is damaged (${(e as Error).message}): compiling the catalog`);
    return null;
  }
}

function readFully(fd: number, b: Buffer, at: number): Buffer {
  for (let n = 0; n < b.length; ) {
    const got = readSync(fd, b, n, b.length - n, at + n);
    if (got === 0) throw new Error('ends early');
    n += got;
  }
  return b;
}

/** Closes an image's file once the policy reading it is gone (an agent's reload drops the old one). */
const closeOnCollect = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
});

/** A restored policy's rules, read from the image file when a verdict first names them (each once: the verdict keeps it). */
class FileRules implements RuleSource {
  constructor(private readonly fd: number, private readonly base: number, private readonly ends: Int32Array) {
    closeOnCollect.register(this, fd);
  }

  get length(): number {
    return this.ends.length;
  }

  get(i: number): Rule {
    const from = i === 0 ? 0 : this.ends[i - 1]!;
    return ruleFromBytes(readFully(this.fd, Buffer.allocUnsafe(this.ends[i]! - from), this.base + from));
  }
}

/** Atomic (a temporary file renamed over the name); then the oldest images beyond KEEP go. */
function writeImage(file: string, catalog: Header['catalog'], policy: Policy, warn: (m: string) => void): boolean {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
    try {
      const u32 = (n: number): Buffer => {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(n);
        return b;
      };
      writeFully(fd, Buffer.concat([Buffer.from(MAGIC, 'latin1'), u32(0)]));
      let text = 0;
      const image = policy.image((chunk) => {
        writeFully(fd, chunk);
        text += chunk.length;
      });
      const index = serialize(image);
      const head = Buffer.from(JSON.stringify({ compiler: compilerFingerprint(), catalog, index: index.length } satisfies Header));
      for (const part of [u32(head.length), head, index]) writeFully(fd, part);
      writeSync(fd, u32(text), 0, 4, MAGIC.length);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    prune(dirname(file));
    return true;
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // not written
    }
    warn(`tollgate: WARNING: policy image ${file} not written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): the next load compiles again`);
    return false;
  }
}

function writeFully(fd: number, b: Uint8Array): void {
  for (let n = 0; n < b.length; ) n += writeSync(fd, b, n);
}

function touch(file: string): void {
  const now = new Date();
  try {
    utimesSync(file, now, now);
  } catch {
    // only the pruning order suffers
  }
}

function prune(dir: string): void {
  const images = readdirSync(dir)
    .filter((f) => f.endsWith('.policy'))
    .map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const { f } of images.slice(KEEP)) unlinkSync(join(dir, f));
}
