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
import { parseApplication, parseEndpoint, parsePort, type Rule } from '../policy/index.js';
import { CatalogError } from './errors.js';
import { zod } from './lazy.js';
import { NuAppRows } from './nuapp-rows.js';

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
export type NuCatalogDoc = Zod.infer<ReturnType<typeof makeSchemas>['NuCatalog']>;
export type NuLegacyDoc = Zod.infer<ReturnType<typeof makeSchemas>['NuLegacyCatalog']>;

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

export function keyToApplication(key: string): string {
  if (key === 'any' || key.endsWith('/')) return key;
  // NuAppFirewall matches a key anywhere in the path: one without a '/' first is a sub-path too
  // (as an application it would be an app id, which their key never is: a rule that matches nothing)
  if (!key.startsWith('/')) return '*/' + key;
  const parts = key.split('/');
  return parts.length === 2 || !ROOT_DIRS.has(parts[1]!) ? '*' + key : key;
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
