/**
 * Catalog files: Tollgate's own format and NuAppFirewall's, each as JSON or Apple PLIST (XML or
 * binary). The format is recognised from the content, the encoding from the content on read and
 * from the file extension on write.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, readFileSync, type Stats } from 'node:fs';
import { access, open, readFile, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type * as Plist from 'plist';
import type * as Zod from 'zod';
import { MODES, type Mode, type Rule } from '../policy/index.js';
import { CatalogError } from './errors.js';
import { plist, zod } from './lazy.js';
import type { NuAppRows } from './nuapp-rows.js';
import { nuAppLegacyRows, nuAppRows, nuAppUnsupported, nuSchemas, plainNuApp, toNuApp, type NuCatalogDoc, type NuLegacyDoc } from './nuapp.js';

export type CatalogFormat = 'tollgate' | 'nuapp' | 'nuapp-legacy';
export type Encoding = 'json' | 'plist';

export interface Catalog {
  format: CatalogFormat;
  encoding: Encoding;
  /** Default mode the catalog asks for, if it names one (Tollgate format only). */
  mode?: Mode;
  /** Raw rules: Policy.compile() validates them. */
  rules: Rule[];
}

export const TOLLGATE_FORMAT = 'tollgate-catalog';
export const TOLLGATE_VERSION = 1;

let tollgateDoc: ReturnType<typeof makeTollgateDoc> | undefined;

function makeTollgateDoc() {
  const z = zod();
  return z.strictObject({
    format: z.literal(TOLLGATE_FORMAT),
    version: z.number().int(),
    mode: z.enum(MODES as [Mode, ...Mode[]]).optional(),
    rules: z.array(z.unknown()),
  });
}

/**
 * A Tollgate catalog's head without its schema (zod, lazy.ts) when it is the plainest one, which that
 * schema takes: the format, this version, a known mode or none, the rules, nothing else. null: ask
 * parseCatalog(), which says what is wrong, if anything.
 */
export function plainTollgateHead(doc: unknown): Omit<Catalog, 'rules'> | null {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return null;
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (k !== 'format' && k !== 'version' && k !== 'mode' && k !== 'rules') return null;
  if (d.format !== TOLLGATE_FORMAT || d.version !== TOLLGATE_VERSION || !Array.isArray(d.rules)) return null;
  if (d.mode !== undefined && !MODES.includes(d.mode as Mode)) return null;
  return { format: 'tollgate', encoding: 'json', mode: d.mode as Mode | undefined };
}

function zodProblem(e: Zod.ZodError): string {
  const i = e.issues[0]!;
  const at = i.path.length ? i.path.map(String).join('.') : '(top level)';
  return `${at}: ${i.message}`;
}

/** Decode a catalog from text or bytes; `name` is used in error messages. A binary PLIST must come as bytes. */
export function parseCatalog(data: Buffer | string, name: string): Catalog {
  const { rules, ...head } = parseCatalogRows(data, name);
  return { ...head, rules: Array.isArray(rules) ? rules : rules.rules() };
}

/** parseCatalog(), with a NuAppFirewall catalog's rules as columns (NuAppRows), for a compile. */
export function parseCatalogRows(data: Buffer | string, name: string): Omit<Catalog, 'rules'> & { rules: Rule[] | NuAppRows } {
  data = withoutBom(data);
  if (isUtf16(data)) throw new CatalogError(`${name}: the file is UTF-16 text (as Windows PowerShell 5 writes with >): save it as UTF-8`);
  let doc: unknown;
  let encoding: Encoding;
  const text = (): string => (typeof data === 'string' ? data : data.toString('utf8'));
  const head = (typeof data === 'string' ? data.slice(0, 64) : data.subarray(0, 64).toString('latin1')).trimStart();
  if (head.startsWith('bplist')) {
    if (typeof data === 'string') throw new CatalogError(`${name}: a binary PLIST must be read as bytes, not text`);
    encoding = 'plist';
    doc = decode(() => plist().parseBinary(data), name, 'binary PLIST');
  } else if (head.startsWith('<')) {
    encoding = 'plist';
    doc = decode(() => plist().parse(text()), name, 'PLIST');
  } else {
    encoding = 'json';
    doc = decode(() => JSON.parse(text()), name, 'JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new CatalogError(`${name}: not a catalog: expected an object at the top level`);
  }
  if ('format' in doc) {
    const r = (tollgateDoc ??= makeTollgateDoc()).safeParse(doc);
    if (!r.success) throw new CatalogError(`${name}: not a valid Tollgate catalog: ${zodProblem(r.error)}`);
    if (r.data.version !== TOLLGATE_VERSION) {
      throw new CatalogError(`${name}: catalog version ${r.data.version} is not supported (this Tollgate reads version ${TOLLGATE_VERSION})`);
    }
    return { format: 'tollgate', encoding, mode: r.data.mode, rules: r.data.rules as Rule[] };
  }
  const firstEntry: unknown = Object.values(doc).find((v) => Array.isArray(v) && v.length > 0)?.[0];
  if (typeof firstEntry === 'object' && firstEntry !== null && 'endpoints' in firstEntry) {
    if (plainNuApp(doc, true)) return { format: 'nuapp-legacy', encoding, rules: nuAppLegacyRows(doc as NuLegacyDoc) };
    const r = nuSchemas().NuLegacyCatalog.safeParse(doc);
    if (!r.success) throw new CatalogError(`${name}: not a valid NuAppFirewall (legacy) catalog: ${zodProblem(r.error)}`);
    return { format: 'nuapp-legacy', encoding, rules: nuAppLegacyRows(r.data) };
  }
  if (plainNuApp(doc, false)) return { format: 'nuapp', encoding, rules: nuAppRows(doc as NuCatalogDoc) };
  const r = nuSchemas().NuCatalog.safeParse(doc);
  if (!r.success) {
    throw new CatalogError(`${name}: neither a Tollgate catalog ("format": "${TOLLGATE_FORMAT}") nor a NuAppFirewall catalog: ${zodProblem(r.error)}`);
  }
  return { format: 'nuapp', encoding, rules: nuAppRows(r.data) };
}

/**
 * Without a leading UTF-8 byte-order mark: editors and tools on Windows (PowerShell's Out-File among
 * them) write one, and RFC 8259 lets a reader ignore it. JSON.parse and the PLIST parser refuse it.
 */
function withoutBom(data: Buffer | string): Buffer | string {
  if (typeof data === 'string') return data.charCodeAt(0) === 0xfeff ? data.slice(1) : data;
  return bomLength(data) > 0 ? data.subarray(3) : data;
}

/** Starts with a UTF-16 byte-order mark (FF FE or FE FF; read as UTF-8 text, each is U+FFFD). */
function isUtf16(data: Buffer | string): boolean {
  if (typeof data === 'string') return data.startsWith('\ufffd\ufffd');
  return (data[0] === 0xff && data[1] === 0xfe) || (data[0] === 0xfe && data[1] === 0xff);
}

/** 3 when b starts with the UTF-8 byte-order mark, else 0. */
export function bomLength(b: Uint8Array): number {
  return b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0;
}

function decode(fn: () => unknown, name: string, what: string): unknown {
  try {
    return fn();
  } catch (e) {
    const msg = String((e as Error).message ?? e).split('\n')[0]!.replace(/\[xmldom [a-zA-Z]+\]\s*/g, '').trim();
    throw new CatalogError(`${name}: invalid ${what}: ${msg}`);
  }
}

/**
 * Reads a catalog file. Read as text: Node then decodes the file straight into one string, where a
 * Buffer and its decoded copy would both be alive at the peak (~30 MB more on a 250,000-rule
 * catalog). A binary PLIST, recognised by its magic, is read again as bytes.
 */
export async function readCatalog(path: string): Promise<Catalog> {
  const text = await readOrSay(path, () => readFile(path, 'utf8'));
  if (!text.startsWith('bplist')) return parseCatalog(text, path);
  return parseCatalog(await readOrSay(path, () => readFile(path)), path);
}

/** `how`'s result; a failure as a CatalogError that says what is wrong with the file. */
export function readOrSay<T>(path: string, how: () => T): T {
  const say = (e: unknown): never => {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CatalogError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read (${code ?? (e as Error).message})`);
  };
  try {
    const r = how();
    return r instanceof Promise ? (r.catch(say) as T) : r;
  } catch (e) {
    return say(e);
  }
}

export interface WriteOptions {
  format: Exclude<CatalogFormat, 'nuapp-legacy'>;
  encoding: Encoding;
  mode?: Mode;
}

/** Encode rules. NuAppFirewall's format cannot hold every rule: refuse rather than drop silently. */
export function serializeCatalog(rules: readonly Rule[], opts: WriteOptions): string {
  if (opts.format === 'nuapp') {
    const bad = rules.map((r) => [r, nuAppUnsupported(r)] as const).filter(([, why]) => why !== null);
    if (bad.length > 0) {
      const list = bad.slice(0, 10).map(([r, why]) => `  rule "${r.id}": ${why}`).join('\n');
      throw new CatalogError(
        `${bad.length} rule(s) cannot be expressed in NuAppFirewall's format:\n${list}` +
          (bad.length > 10 ? `\n  ... and ${bad.length - 10} more` : ''),
      );
    }
    const doc = toNuApp(rules);
    return opts.encoding === 'plist' ? plist().build(doc) + '\n' : JSON.stringify(doc, null, 2) + '\n';
  }
  const doc = { format: TOLLGATE_FORMAT, version: TOLLGATE_VERSION, ...(opts.mode ? { mode: opts.mode } : {}), rules: rules.map(clean) };
  return opts.encoding === 'plist' ? plist().build(doc as unknown as Plist.PlistValue) + '\n' : tollgateJson(doc);
}

/** One rule per line: readable, diff-friendly, and half the size of fully indented JSON on big catalogs. */
function tollgateJson(doc: { rules: Rule[] }): string {
  const { rules, ...head } = doc;
  const top = JSON.stringify(head, null, 2).slice(0, -2);
  const body = rules.map((r) => '    ' + JSON.stringify(r)).join(',\n');
  return `${top},\n  "rules": [\n${body}${rules.length ? '\n' : ''}  ]\n}\n`;
}

/** Drop absent optional fields (PLIST has no null/undefined). */
function clean(r: Rule): Rule {
  if (!Object.values(r).includes(undefined)) return r;
  return Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as unknown as Rule;
}

export function encodingFor(path: string): Encoding {
  return /\.plist$/i.test(path) ? 'plist' : 'json';
}

/**
 * Writes a catalog to a new file beside `path`, flushed to disk, then renamed over it: a reader (the
 * agent follows its catalog file) never sees half a catalog, and a write that fails (a full disk)
 * or a crash leaves the previous catalog as it was. A symlink at `path` keeps pointing to the file
 * it names, which is the one replaced; a file that was there keeps its permissions, owner and group.
 * Where a new file could not be the same file (another user's that the writer may not give back to
 * them, one with other hard links, a folder the writer may not add to), it is rewritten in place, as
 * editors do (vim's backupcopy=auto): not whole, but as it was, where a rename would change whose it is.
 */
export async function writeCatalog(path: string, rules: readonly Rule[], opts: WriteOptions): Promise<void> {
  const target = await realpath(path).catch(() => path); // not there yet: made
  const was = await stat(target).catch(() => null);
  let write: (fh: FileHandle) => Promise<void>;
  try {
    write = body(rules, opts); // a catalog the format cannot hold is refused before a file is touched
    if (was && !(await replaceable(target, was))) return await writeInPlace(target, was, write);
  } catch (e) {
    throw cannotWrite(path, e);
  }
  const mode = was ? was.mode & 0o7777 : 0o644;
  const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx', mode);
    if (was && (was.uid !== process.getuid?.() || was.gid !== process.getgid?.())) await fh.chown(was.uid, was.gid); // root writing a user's file: still theirs
    await fh.chmod(mode); // as it was, whatever the umask (after chown, which clears set-id bits)
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, target);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw cannotWrite(path, e);
  }
}

function cannotWrite(path: string, e: unknown): Error {
  if (e instanceof CatalogError) return e;
  return new CatalogError(`${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
}

/** A new file renamed over `target` would be it as it was: same owner and group, its one name, and its folder lets the writer add one. */
async function replaceable(target: string, was: Stats): Promise<boolean> {
  if (!was.isFile() || was.nlink > 1) return false;
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && (was.uid !== uid || (was.gid !== process.getgid?.() && !process.getgroups?.().includes(was.gid)))) return false;
  return access(dirname(target), constants.W_OK | constants.X_OK).then(() => true, () => false);
}

/** The file truncated and written again: its inode, owner, group, permissions and other names stay. */
async function writeInPlace(target: string, was: Stats, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const fh = await open(target, 'r+');
  try {
    if (was.isFile()) await fh.truncate(0); // not a pipe or a terminal (convert to /dev/stdout)
    await write(fh);
    if (was.isFile()) await fh.sync();
  } finally {
    await fh.close();
  }
}

/** What writes the catalog's bytes, made before any file is opened. */
function body(rules: readonly Rule[], opts: WriteOptions): (fh: FileHandle) => Promise<void> {
  if (opts.format !== 'tollgate' || opts.encoding !== 'json' || rules.length < 10_000) {
    const text = serializeCatalog(rules, opts);
    return async (fh) => void (await fh.write(text));
  }
  return (fh) => writeLarge(fh, rules, opts);
}

async function writeLarge(fh: FileHandle, rules: readonly Rule[], opts: WriteOptions): Promise<void> {
  // Large Tollgate JSON: the same bytes as serializeCatalog(), written in pieces, so a catalog of a
  // million rules never exists as one string (and again as one buffer) in memory.
  const head = JSON.stringify({ format: TOLLGATE_FORMAT, version: TOLLGATE_VERSION, ...(opts.mode ? { mode: opts.mode } : {}) }, null, 2).slice(0, -2);
  await fh.write(`${head},\n  "rules": [\n`);
  for (let i = 0; i < rules.length; i += 10_000) {
    const part = rules.slice(i, i + 10_000).map((r) => '    ' + JSON.stringify(clean(r))).join(',\n');
    await fh.write(part + (i + 10_000 < rules.length ? ',\n' : '\n'));
  }
  await fh.write('  ]\n}\n');
}
