/**
 * NuAppFirewall's catalog format, current and legacy, to and from Tollgate rules.
 *
 * Current: { "<full path | sub-path | any>": [ { action, identifier, destinations: [[dest, port]] } ] }
 * Legacy (2024): { "<path>": [ { key, action, appLocation, endpoints: "['h1', 'h2']", direction } ] }
 *
 * Mapping (README "NuAppFirewall catalogs"):
 * - identifier other than "unknown" -> an app-id rule; its key is not kept (written back under the id).
 * - key "any" -> application `any`; a key ending in "/" -> path prefix; a key that is one component
 *   ("/Arc.app") or does not start at a root directory -> sub-path `*\/Arc.app`; otherwise a full path.
 * NuAppFirewall matches keys as plain substrings of the path; Tollgate matches sub-paths on component
 * boundaries only, so "/Arc.app" does not match "/Arcade.app" here.
 */
import type * as Zod from 'zod';
import { compileRule, parseApplication, parseEndpoint, parsePort, type AppCache, type ParsedRule, type Rule, type RuleError, type RuleInput, type RuleSource } from '../policy/index.js';
import { CatalogError } from './errors.js';
import { zod } from './lazy.js';

const ROOT_DIRS = new Set([
  'Applications', 'System', 'Library', 'Users', 'Volumes', 'private', 'opt', 'usr', 'bin', 'sbin', 'etc',
  'var', 'tmp', 'home', 'root', 'snap', 'nix', 'srv', 'lib', 'lib64', 'app',
]);

/** The schemas of NuAppFirewall's two formats, made on first use (lazy.ts). */
export function nuSchemas() {
  return (schemas ??= makeSchemas());
}

function makeSchemas() {
  const z = zod();
  const NuEntry = z.object({
    action: z.string(),
    identifier: z.string(),
    destinations: z.array(z.tuple([z.string(), z.string()])),
  });
  const NuLegacyEntry = z.object({
    key: z.string().optional(),
    action: z.string(),
    appLocation: z.string().optional(),
    endpoints: z.string(),
    direction: z.string(),
  });
  return { NuCatalog: z.record(z.string(), z.array(NuEntry)), NuLegacyCatalog: z.record(z.string(), z.array(NuLegacyEntry)) };
}

let schemas: ReturnType<typeof makeSchemas> | undefined;

/**
 * `doc` is one the schema (legacy or current) surely takes, checked without it: zod loads in ~140 ms
 * (lazy.ts), which a start with a well-formed NuAppFirewall catalog then does not pay. It checks
 * what the schema does, no less (tests compare the two on damaged documents); false: ask the schema,
 * which says what is wrong, if anything.
 */
export function plainNuApp(doc: object, legacy: boolean): boolean {
  const str = (v: unknown): boolean => typeof v === 'string';
  for (const entries of Object.values(doc)) {
    if (!Array.isArray(entries)) return false;
    for (const e of entries as Record<string, unknown>[]) {
      if (typeof e !== 'object' || e === null || Array.isArray(e) || !str(e.action)) return false;
      if (legacy) {
        if (!str(e.endpoints) || !str(e.direction) || (e.key !== undefined && !str(e.key)) || (e.appLocation !== undefined && !str(e.appLocation))) return false;
      } else {
        if (!str(e.identifier) || !Array.isArray(e.destinations)) return false;
        for (const d of e.destinations as unknown[]) if (!Array.isArray(d) || d.length !== 2 || !str(d[0]) || !str(d[1])) return false;
      }
    }
  }
  return true;
}
export type NuCatalogDoc = Zod.infer<ReturnType<typeof makeSchemas>['NuCatalog']>;
export type NuLegacyDoc = Zod.infer<ReturnType<typeof makeSchemas>['NuLegacyCatalog']>;

export function keyToApplication(key: string): string {
  if (key === 'any' || key.endsWith('/') || !key.startsWith('/')) return key;
  const parts = key.split('/');
  return parts.length === 2 || !ROOT_DIRS.has(parts[1]!) ? '*' + key : key;
}

/**
 * NuAppFirewall's rules as columns: an action and an application per catalog entry, an endpoint
 * (and, in the current format, a port) per rule. Rule objects are made from them on demand: the
 * 153,128 rule objects of the legacy catalog, each with its own id string, held for a whole load,
 * were ~15% of that load in GC (they outlive the young generation), for objects the compile reads
 * once and a verdict rarely asks for again.
 */
export class NuAppRows {
  private readonly actions: string[] = [];
  private readonly apps: string[] = [];
  private readonly lists: string[] = []; // legacy: an entry's endpoints as the file has them, "['h1', 'h2']"
  private n = 0;
  private entryOf: Int32Array = new Int32Array(1024);
  private readonly endpoints: string[] = []; // current format
  private readonly ports: string[] = [];
  private at: Int32Array = new Int32Array(2048); // legacy: where rule i's endpoint lies in its entry's list, start and end

  constructor(private readonly legacy: boolean) {}

  /** The rows as plain data, for another thread (its typed arrays its own, to be moved); fromParts() makes them rows again. */
  parts(): NuAppParts {
    const { legacy, actions, apps, lists, n, endpoints, ports } = this;
    return { legacy, actions, apps, lists, n, endpoints, ports, entryOf: this.entryOf.slice(0, n), at: this.at.slice(0, legacy ? 2 * n : 0) };
  }

  static fromParts(p: NuAppParts): NuAppRows {
    return Object.assign(Object.create(NuAppRows.prototype) as NuAppRows, p);
  }

  get length(): number {
    return this.n;
  }

  entry(action: string, application: string, list = ''): void {
    this.actions.push(action);
    this.apps.push(application);
    this.lists.push(list);
  }

  /** A rule of the last entry (current format). */
  push(endpoint: string, port: string): void {
    this.add();
    this.endpoints.push(endpoint);
    this.ports.push(port);
  }

  /**
   * A rule of the last entry (legacy): its endpoint is list[start .. end). Offsets, not the item
   * itself: 153,128 endpoint strings kept for the load were most of what each young-generation GC
   * had to copy.
   */
  pushItem(start: number, end: number): void {
    const i = this.add();
    if (2 * i + 1 >= this.at.length) this.at = grown(this.at);
    this.at[2 * i] = start;
    this.at[2 * i + 1] = end;
  }

  /** A rule of the last entry: its number. Typed arrays, as pushes onto a number[] of this size were ~50 ms of a legacy load. */
  private add(): number {
    if (this.n === this.entryOf.length) this.entryOf = grown(this.entryOf);
    this.entryOf[this.n] = this.actions.length - 1;
    return this.n++;
  }

  /** Rule i as a Tollgate rule, its id `nuapp-<i + 1>`: unique, so a compile has no duplicate to look for. */
  rule(i: number): Rule {
    const e = this.entryOf[i]!;
    const action = this.actions[e] as Rule['action'];
    const application = this.apps[e]!;
    const id = `nuapp-${i + 1}`;
    if (this.legacy) return { id, action, application, endpoint: this.lists[e]!.slice(this.at[2 * i], this.at[2 * i + 1]) };
    return { id, action, application, endpoint: this.endpoints[i]!, port: this.ports[i]! };
  }

  rules(): Rule[] {
    return Array.from({ length: this.length }, (_, i) => this.rule(i));
  }
}

export interface NuAppParts {
  legacy: boolean;
  actions: string[];
  apps: string[];
  lists: string[];
  n: number;
  entryOf: Int32Array;
  endpoints: string[];
  ports: string[];
  at: Int32Array;
}

function grown(a: Int32Array): Int32Array {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** NuAppRows as a compile's input: each rule object made, compiled and dropped while still young. */
export class NuAppInput implements RuleInput {
  constructor(private readonly rows: NuAppRows) {}

  get length(): number {
    return this.rows.length;
  }

  compile(i: number, cache: AppCache): ParsedRule | RuleError[] {
    return compileRule(this.rows.rule(i), i, cache);
  }

  idHash(): undefined {
    return undefined; // ids are made unique (rule()): nothing to look for
  }

  sameId(i: number, j: number): boolean {
    return i === j;
  }

  id(i: number): string {
    return `nuapp-${i + 1}`;
  }

  get source(): RuleSource {
    const made = new Map<number, Rule>(); // a rule is one object however often a verdict asks for it
    return {
      length: this.rows.length,
      get: (i) => {
        let r = made.get(i);
        if (r === undefined) made.set(i, (r = this.rows.rule(i)));
        return r;
      },
      // an image's writer reads every rule once: none kept for it
      text: (i) => JSON.stringify(made.get(i) ?? this.rows.rule(i)),
    };
  }
}

export function nuAppRows(doc: NuCatalogDoc): NuAppRows {
  const rows = new NuAppRows(false);
  for (const [key, entries] of Object.entries(doc)) {
    for (const e of entries) {
      rows.entry(e.action, e.identifier !== 'unknown' ? e.identifier : keyToApplication(key));
      for (const [endpoint, port] of e.destinations) rows.push(endpoint, port);
    }
  }
  return rows;
}

export function fromNuApp(doc: NuCatalogDoc): Rule[] {
  return nuAppRows(doc).rules();
}

/** Python list repr of quoted strings, as the legacy generator wrote it: "['a', 'b']". Each item's start and end to `item`. */
function pyListItems(s: string, where: string, item: (start: number, end: number) => void): void {
  if (!/^\[\s*(?:'[^'\\]*'\s*(?:,\s*'[^'\\]*'\s*)*)?\]$/.test(s)) {
    throw new CatalogError(`${where}: endpoints is not a list of quoted strings: ${s.slice(0, 60)}`);
  }
  // checked above: quotes only delimit items
  for (let q = s.indexOf("'"); q >= 0; ) {
    const end = s.indexOf("'", q + 1);
    item(q + 1, end);
    q = s.indexOf("'", end + 1);
  }
}

export function nuAppLegacyRows(doc: NuLegacyDoc): NuAppRows {
  const rows = new NuAppRows(true);
  const item = (start: number, end: number): void => rows.pushItem(start, end);
  for (const [key, entries] of Object.entries(doc)) {
    entries.forEach((e, i) => {
      const where = `"${key}" entry ${i + 1}`;
      if (e.direction !== 'outgoing') throw new CatalogError(`${where}: direction "${e.direction}" is not supported (only outgoing)`);
      rows.entry(e.action, keyToApplication(e.appLocation ?? key), e.endpoints);
      pyListItems(e.endpoints, where, item);
    });
  }
  return rows;
}

export function fromNuAppLegacy(doc: NuLegacyDoc): Rule[] {
  return nuAppLegacyRows(doc).rules();
}

/** Why a rule cannot be written in NuAppFirewall's format, or null if it can. */
export function nuAppUnsupported(r: Rule): string | null {
  const app = parseApplication(r.application);
  if (typeof app !== 'string' && app.kind !== 'id') {
    const back = keyToApplication(app.kind === 'any' ? 'any' : app.key);
    if (JSON.stringify(parseApplication(back)) !== JSON.stringify(app)) return `application "${r.application}" would read back as "${back}"`;
  }
  const e = parseEndpoint(r.endpoint);
  if (typeof e !== 'string' && (e.kind === 'wildcard' || e.kind === 'cidr')) return `${e.kind} endpoint`;
  const p = parsePort(r.port);
  if (typeof p !== 'string' && p[0] !== p[1]) return 'port range';
  if (r.protocol !== undefined && r.protocol.toLowerCase() !== 'any') return 'protocol';
  if (r.users || r.groups) return 'user/group scope';
  if (r.expires) return 'expiry';
  return null;
}

/** Rules to the current NuAppFirewall format. Callers must drop or refuse what nuAppUnsupported() names. */
export function toNuApp(rules: readonly Rule[]): NuCatalogDoc {
  const doc: NuCatalogDoc = {};
  for (const r of rules) {
    const app = parseApplication(r.application);
    if (typeof app === 'string') throw new CatalogError(`rule "${r.id}": ${app}`);
    const key = app.kind === 'any' ? 'any' : app.key;
    const identifier = app.kind === 'id' ? app.key : 'unknown';
    const list = (doc[key] ??= []);
    let entry = list.find((x) => x.action === r.action && x.identifier === identifier);
    if (!entry) list.push((entry = { action: r.action, identifier, destinations: [] }));
    entry.destinations.push([r.endpoint ?? 'any', String(r.port ?? 'any')]);
  }
  return doc;
}
