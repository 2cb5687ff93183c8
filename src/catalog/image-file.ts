/**
 * The policy image file (policy-cache.ts decides when one is written and read):
 *
 *   MAGIC | rule text | sections, each at a multiple of 8 | head (JSON) | head length (u32 LE)
 *
 * The rule text is each rule's JSON, one after another (policy/image.ts); it stays on disk and a
 * rule is read (pread) when a verdict first names it. A section is one field of the policy's
 * IndexImage: a typed array as its bytes (read back as a view of the read buffer, no copy), a list of
 * strings as UTF-8 joined by NUL (no key of the index can hold a NUL: validation refuses it in paths,
 * and names, app ids and IPv6 keys have no room for one), anything else as JSON. The head, last,
 * says where each section is, so the file is written front to back in pieces, with other work let
 * run between them (writeSteps() is a generator), and carries a SHA-256 of the sections, checked
 * on every read (a damaged rule text shows at the latest when its JSON is parsed).
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, fstatSync, readSync, writeSync } from 'node:fs';
import { RuleEncoder, ruleFromBytes, type Policy, type PolicyImage, type Rule, type RuleSource } from '../policy/index.js';

const MAGIC = Buffer.from('TOLLGATE-POLICY2\n', 'latin1');
const RULES_PER_PIECE = 2048; // ~2-4 ms of encoding
const STRINGS_PER_PIECE = 20_000;
const TYPED = { Int32Array, Uint8Array, Float64Array } as const;
type SectionType = keyof typeof TYPED | 'strings' | 'json';

export interface ImageHead<C> {
  compiler: string;
  catalog: C;
  text: number; // bytes of rule text, after MAGIC
  sections: Record<string, { at: number; bytes: number; type: SectionType }>;
  /** SHA-256 of the bytes from the first section's start to the last one's end: what decides verdicts. */
  sha256: string;
}

/** Writes an image to `fd`, a piece per step; `ends` are where its rules end in its rule text (imageRules() reads them with them). */
export function* writeSteps<C>(fd: number, head: Pick<ImageHead<C>, 'compiler' | 'catalog'>, policy: Policy, ends?: (e: Int32Array) => void): Generator<void, void> {
  let at = 0;
  let sum: Hash | null = null; // over the sections
  const put = (b: Uint8Array): void => {
    for (let n = 0; n < b.length; ) n += writeSync(fd, b, n, b.length - n, at + n);
    at += b.length;
    sum?.update(b);
  };
  const align = (): void => put(new Uint8Array((8 - (at % 8)) % 8));
  put(MAGIC);
  const rules = new RuleEncoder(policy.ruleSource);
  while (!rules.done) {
    put(rules.piece(RULES_PER_PIECE));
    yield;
  }
  const text = at - MAGIC.length;
  ends?.(rules.ends);
  const sections: ImageHead<C>['sections'] = {};
  for (const [name, value] of fields({ ...policy.indexImage(), ruleEnds: rules.ends })) {
    align();
    sum ??= createHash('sha256');
    const start = at;
    let type: SectionType;
    if (ArrayBuffer.isView(value)) {
      type = value.constructor.name as SectionType;
      if (!(type in TYPED)) throw new Error(`policy image: ${name} is a ${type}`);
      put(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    } else if (Array.isArray(value) && value.every((x) => typeof x === 'string')) {
      type = 'strings';
      for (let i = 0; i < value.length; i += STRINGS_PER_PIECE) {
        put(Buffer.from((i > 0 ? '\0' : '') + (value as string[]).slice(i, i + STRINGS_PER_PIECE).join('\0')));
        yield;
      }
    } else {
      type = 'json';
      put(Buffer.from(JSON.stringify(value)));
    }
    sections[name] = { at: start, bytes: at - start, type };
    yield;
  }
  const json = Buffer.from(JSON.stringify({ ...head, text, sections, sha256: sum!.digest('hex') } satisfies ImageHead<C>));
  sum = null;
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  put(json);
  put(len);
}

/** The image's head, or throws why the file is not one. */
export function readHead<C>(fd: number): ImageHead<C> {
  const size = fstatSync(fd).size;
  if (size < MAGIC.length + 4 || !readAt(fd, Buffer.alloc(MAGIC.length), 0).equals(MAGIC)) throw new Error('not a policy image');
  const len = readAt(fd, Buffer.alloc(4), size - 4).readUInt32LE(0);
  if (len > size - 4 - MAGIC.length) throw new Error('its head is cut off');
  const head = JSON.parse(readAt(fd, Buffer.alloc(len), size - 4 - len).toString('utf8')) as ImageHead<C>;
  const from = MAGIC.length + head.text;
  for (const [name, s] of Object.entries(head.sections)) {
    if (s.at < from || s.at + s.bytes > size - 4 - len || !(s.type in TYPED || s.type === 'strings' || s.type === 'json')) throw new Error(`section ${name} is out of place`);
  }
  return head;
}

/** The index the head describes, checked against its checksum: typed arrays are views of one buffer (a worker can move it whole). */
export function readIndex(fd: number, head: ImageHead<unknown>): PolicyImage {
  const list = Object.values(head.sections);
  const start = Math.min(...list.map((s) => s.at));
  const buf = readAt(fd, Buffer.allocUnsafeSlow(Math.max(...list.map((s) => s.at + s.bytes)) - start), start);
  // a flipped bit in the pair table would change verdicts and nothing else would notice (~15 ms for 250,000 rules)
  if (createHash('sha256').update(buf).digest('hex') !== head.sha256) throw new Error('its sections do not match their checksum');
  const out = Object.create(null) as Record<string, unknown>; // null prototypes: a head naming "__proto__" makes a field, not a change to Object.prototype
  for (const [name, s] of Object.entries(head.sections)) {
    const off = s.at - start;
    let value: unknown;
    if (s.type === 'strings') value = s.bytes === 0 ? [] : buf.toString('utf8', off, off + s.bytes).split('\0');
    else if (s.type === 'json') value = JSON.parse(buf.toString('utf8', off, off + s.bytes));
    else {
      const T = TYPED[s.type];
      if (s.bytes % T.BYTES_PER_ELEMENT !== 0) throw new Error(`section ${name} is not whole ${s.type} elements`);
      value = new T(buf.buffer as ArrayBuffer, buf.byteOffset + off, s.bytes / T.BYTES_PER_ELEMENT);
    }
    const path = name.split('.');
    let o = out;
    for (const p of path.slice(0, -1)) o = (o[p] ??= Object.create(null)) as Record<string, unknown>;
    o[path[path.length - 1]!] = value;
  }
  const image = { ...out, ruleText: new Uint8Array(0) } as unknown as PolicyImage;
  if (!(image.ruleEnds instanceof Int32Array) || (image.ruleEnds.length > 0 && image.ruleEnds[image.ruleEnds.length - 1]! > head.text)) {
    throw new Error('its rule text does not agree with its index');
  }
  return image;
}

/** A source of an image's rules that reads them from `fd`, which it then owns (closed once the source is collected). */
export function imageRules(fd: number, ruleEnds: Int32Array): RuleSource {
  return new FileRules(fd, MAGIC.length, ruleEnds);
}

/** The fields of an IndexImage, nested objects flattened ("table.info"). */
function* fields(o: object, prefix = ''): Generator<[string, unknown]> {
  for (const [k, v] of Object.entries(o)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v)) yield* fields(v, `${prefix}${k}.`);
    else yield [prefix + k, v];
  }
}

export function readAt(fd: number, b: Buffer, at: number): Buffer {
  for (let n = 0; n < b.length; ) {
    const got = readSync(fd, b, n, b.length - n, at + n);
    if (got === 0) throw new Error('it ends early');
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

/** A restored policy's rules, read from the image file when a verdict first names them (the verdict then keeps it). */
class FileRules implements RuleSource {
  constructor(private readonly fd: number, private readonly base: number, private readonly ends: Int32Array) {
    closeOnCollect.register(this, fd);
  }

  get length(): number {
    return this.ends.length;
  }

  get(i: number): Rule {
    const from = i === 0 ? 0 : this.ends[i - 1]!;
    return ruleFromBytes(readAt(this.fd, Buffer.allocUnsafe(this.ends[i]! - from), this.base + from));
  }
}
