/**
 * Rule validation: each field is parsed into the form the index needs, so parsing is the validation
 * and a 250,000-rule catalog is read once. Every problem names the rule and the field.
 */
import { domainToASCII } from 'node:url';
import { equalBytes } from './bytedict.js';
import { parseIPv4, parseIp, maskV4, maskV6, type ParsedIp } from './ip.js';
import { RULE_FIELDS, type Action, type Level, type Rule, type RuleError, type Verdict } from './types.js';

export type AppMatch =
  | { kind: 'any' }
  | { kind: 'id'; key: string }
  | { kind: 'path'; key: string }
  | { kind: 'prefix'; key: string } // ends with '/'
  | { kind: 'subpath'; key: string }; // '/a/b', no trailing slash

export type EndpointMatch =
  | { kind: 'any' }
  | { kind: 'url'; host: string; href: string }
  | { kind: 'host'; host: string }
  | { kind: 'wildcard'; suffix: string }
  | { kind: 'ip'; ip: ParsedIp; key: Uint8Array | number } // IPv6: maskV6() bytes
  | { kind: 'cidr'; v: 4 | 6; len: number; key: Uint8Array | number };

/** Endpoint classes from least to most specific; the index visits them in reverse. */
export const ENDPOINT_RANK = { any: 0, cidr: 1, ip: 2, wildcard: 3, host: 4, url: 5 } as const;

/**
 * One rule as parsed and validated: a short-lived value. The policy copies what decide() needs into
 * its columns (table.ts) and index (policy.ts) and keeps only the original rule object, so 250,000
 * rules cost no extra object each.
 */
export interface ParsedRule {
  readonly action: Action;
  readonly app: AppMatch;
  /** The application's number from the AppCache; -1 without one. */
  readonly appNo: number;
  readonly endpoint: EndpointMatch;
  readonly portLo: number; // 0 = any port
  readonly portHi: number;
  readonly proto: 0 | 1 | 2; // any, tcp, udp
  readonly users: ReadonlySet<string> | null;
  readonly groups: ReadonlySet<string> | null;
  readonly expiresAt: number; // ms since epoch; Infinity = never
  /** Specificity: endpoint class and length, then port, protocol, scope (higher wins). */
  readonly score: number;
  /**
   * A host or wildcard endpoint compiled from a catalog's bytes (rule-bytes.ts): its name or suffix
   * is keyBytes[keyStart .. keyEnd) and the endpoint's own string is empty.
   */
  readonly keyBytes: Uint8Array | null;
  readonly keyStart: number;
  readonly keyEnd: number;
}

/** A rule's specificity (ParsedRule.score) from its parts. */
export function scoreOf(kind: EndpointMatch['kind'], endpointLen: number, portLo: number, portHi: number, proto: number, scoped: boolean): number {
  const portRank = portLo === 0 ? 0 : portLo === portHi ? 2 : 1;
  return (((ENDPOINT_RANK[kind] * 256 + endpointLen) * 3 + portRank) * 2 + (proto ? 1 : 0)) * 2 + (scoped ? 1 : 0);
}

export function verdictFor(rule: Rule, level: Level): Verdict {
  return Object.freeze({ action: rule.action, rule, level, reason: `rule "${rule.id}" (${describeRule(rule)}) at the ${level} level` });
}

const APP_ID = /^[A-Za-z0-9][A-Za-z0-9._@:+~-]*$/;
/**
 * An expiry is one instant on every machine of a fleet: a date (UTC midnight, as JavaScript reads
 * it) or a time with its zone. A time without one would be each machine's local time, and
 * Date.parse() also takes forms ("Jan 1 2027", "2027/01/01") whose reading depends on the engine.
 */
const EXPIRES = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

/** The date part names a real day: Date.parse() takes 2027-02-30 for March 2. */
function isCalendarDate(s: string): boolean {
  const [y, m, d] = [Number(s.slice(0, 4)), Number(s.slice(5, 7)), Number(s.slice(8, 10))];
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}
const HOST = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;
const NUMERIC_TLD = /(?:^|\.)[0-9]+$/;
const NON_ASCII = /[^\x00-\x7f]/;

export function parseApplication(s: unknown): AppMatch | string {
  if (typeof s !== 'string') return 'must be a string';
  if (s === '') return 'empty application';
  if (s === 'any') return { kind: 'any' };
  if (s.startsWith('*/')) {
    const rest = s.slice(1).replace(/\/$/, '');
    const bad = checkPath(rest);
    // "*/" and "*//" name no component: the second would have been kept and matched nothing, silently
    if (bad || rest === '' || rest === '/') return `malformed sub-path "${s}"${bad ? ': ' + bad : ''}`;
    return { kind: 'subpath', key: rest };
  }
  if (s.startsWith('/')) {
    const bad = checkPath(s === '/' ? '' : s.replace(/\/$/, ''));
    if (bad) return `malformed path "${s}": ${bad}`;
    return s.endsWith('/') ? { kind: 'prefix', key: s } : { kind: 'path', key: s };
  }
  if (s.includes('/')) return `relative path "${s}": paths must be absolute (start with /), sub-paths start with */`;
  if (!APP_ID.test(s)) return `malformed app id "${s}"`;
  return { kind: 'id', key: s };
}

function checkPath(p: string): string | null {
  if (p.includes('\0')) return 'contains a NUL byte';
  if (p.includes('//')) return 'empty component (//)';
  if (/\/\.\.?(?:\/|$)/.test(p)) return '"." or ".." component';
  return null;
}

/**
 * A host name as the index keys it and DNS carries it: lower case, one trailing dot dropped, an
 * internationalised name (IDN) as punycode (bücher.de -> xn--bcher-kva.de); null if it is not a
 * valid DNS name.
 */
export function normalizeHost(s: string): string | null {
  const h = hostKey(s);
  if (h.length === 0 || h.length > 253 || !HOST.test(h)) return null;
  if (NUMERIC_TLD.test(h)) return null; // looks like a broken IP
  return h;
}

/** normalizeHost() without its checks: how decide() reads a flow's name that is not as the index keys it. */
export function hostKey(s: string): string {
  const h = s.toLowerCase();
  const k = h.endsWith('.') ? h.slice(0, -1) : h;
  return NON_ASCII.test(k) ? domainToASCII(k) : k; // '' where IDNA refuses the name
}

export function parseEndpoint(s: unknown): EndpointMatch | string {
  if (s === undefined || s === 'any') return { kind: 'any' };
  if (typeof s !== 'string') return 'must be a string';
  if (s === '') return 'empty endpoint (use "any")';
  if (s.includes('://')) {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return `malformed URL "${s}"`;
    }
    // WHATWG URL already lower-cases, punycodes and compresses the host; flows' URLs go through it too
    const bare = u.hostname.replace(/^\[|\]$/g, '');
    if (!strictIp(bare) && !normalizeHost(bare)) return `malformed URL host in "${s}"`;
    return { kind: 'url', host: u.hostname, href: canonicalUrl(u) };
  }
  if (s.startsWith('*.')) {
    const suffix = normalizeHost(s.slice(2));
    if (!suffix) return `malformed wildcard "${s}" (expected *.domain)`;
    return { kind: 'wildcard', suffix };
  }
  if (s.includes('/')) {
    const [addr = '', bits = ''] = s.split('/');
    const ip = strictIp(addr);
    const len = /^[0-9]{1,3}$/.test(bits) ? Number(bits) : -1;
    if (!ip || len < 0 || len > (ip.v === 4 ? 32 : 128)) return `malformed CIDR "${s}"`;
    const key = ip.v === 4 ? maskV4(ip.n, len) : maskV6(ip.w, len, new Uint8Array(16));
    const hostBits = ip.v === 4 ? key !== ip.n : !equalBytes(key as Uint8Array, 0, maskV6(ip.w, 128, new Uint8Array(16)), 0, 16);
    if (hostBits) return `CIDR "${s}" has host bits set`;
    return { kind: 'cidr', v: ip.v, len, key };
  }
  const ip = strictIp(s);
  if (ip) return { kind: 'ip', ip, key: ip.v === 4 ? ip.n : maskV6(ip.w, 128, new Uint8Array(16)) };
  if (/^[0-9.]+$/.test(s) || s.includes(':')) return `malformed IP address "${s}"`;
  const host = normalizeHost(s);
  if (!host) return `malformed host "${s}"`;
  return { kind: 'host', host };
}

/**
 * ip.ts's parsers: a strict dotted quad, and IPv6 without a zone. They accept exactly what
 * ipaddr.js's validation does (test/policy/ip.test.ts) at a fraction of its cost: ipaddr.js took
 * ~6 us an IPv6 endpoint, 45 ms of a 250,000-rule catalog's compile.
 */
function strictIp(s: string): ParsedIp | null {
  if (!s.includes(':')) {
    const n = parseIPv4(s);
    return n >= 0 ? { v: 4, n } : null;
  }
  return parseIp(s);
}

/** URL rules and flow URLs are compared in this form: scheme://host[:port]/path, no query or hash. */
export function canonicalUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}

export function parsePort(p: unknown): [number, number] | string {
  if (p === undefined || p === 'any') return [0, 0];
  const one = (s: string | number): number => {
    const n = typeof s === 'number' ? s : /^[0-9]{1,5}$/.test(s) ? Number(s) : NaN;
    return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : -1;
  };
  if (typeof p === 'number') return one(p) > 0 ? [p, p] : `port ${p} out of range 1-65535`;
  if (typeof p !== 'string') return 'must be a number, "lo-hi" or "any"';
  const m = /^([0-9]+)-([0-9]+)$/.exec(p);
  if (m) {
    const lo = one(m[1]!);
    const hi = one(m[2]!);
    if (lo < 0 || hi < 0 || lo > hi) return `malformed port range "${p}"`;
    return [lo, hi];
  }
  const n = one(p);
  return n > 0 ? [n, n] : `malformed port "${p}"`;
}

function parseNames(v: unknown): ReadonlySet<string> | null | string {
  if (v === undefined) return null;
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string' && x !== '')) {
    return 'must be a non-empty list of names';
  }
  return new Set(v as string[]);
}

const LEVEL_OF: Record<AppMatch['kind'], Level> = { id: 'app-id', path: 'path', prefix: 'prefix', subpath: 'prefix', any: 'any' };

export function levelOf(app: AppMatch): Level {
  return LEVEL_OF[app.kind];
}

export function endpointLength(e: EndpointMatch): number {
  if (e.kind === 'wildcard') return e.suffix.length;
  if (e.kind === 'cidr') return e.len;
  if (e.kind === 'url') return Math.min(e.href.length, 255);
  return 0;
}

/**
 * Applications parsed once per distinct text, as the compiling policy numbers them: catalogs repeat
 * each application for many rules. (Endpoints are mostly distinct in big catalogs; caching them
 * cost more than it saved.)
 */
export interface AppCache {
  /** The number of an application text parsed before, or -1; `text` then holds it as first seen. */
  find(text: string): number;
  /** find() of a text's UTF-8 bytes b[s..e) (`text` is not set). */
  findBytes(b: Uint8Array, s: number, e: number): number;
  /** The text `find` last found, as first seen: a rule's own copy of it can be dropped. */
  readonly text: string;
  /** The application of a number `find` or `store` gave. */
  get(n: number): AppMatch;
  /** Remember a valid application text just parsed: its number. */
  store(text: string, app: AppMatch): number;
}

/**
 * Validate one raw rule (as parsed from a file) and compile it, or return its errors.
 * Unknown fields are errors: a typo such as "acton" must not silently mean "no action".
 */
export function compileRule(raw: unknown, index: number, cache?: AppCache): ParsedRule | RuleError[] {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return [{ index, field: 'rule', message: 'must be an object' }];
  }
  const r = raw as Record<string, unknown>;
  const id = typeof r.id === 'string' && r.id !== '' ? r.id : undefined;
  const errors: RuleError[] = [];
  const fail = (field: string, message: string): void => void errors.push({ index, id, field, message });
  if (id === undefined) fail('id', 'missing or empty id');
  for (const k in r) if (!RULE_FIELDS.has(k)) fail(k, 'unknown field');
  if (r.action !== 'allow' && r.action !== 'block') fail('action', `unknown action ${JSON.stringify(r.action)} (allow or block)`);
  const text = r.application;
  let appNo = cache && typeof text === 'string' ? cache.find(text) : -1;
  // Parsed from a file, every rule has its own copy of its application's text: sharing the first
  // one saves ~10 MB of heap on the generated 250,000-rule catalog. Same value; a frozen rule keeps its own.
  if (appNo >= 0) Reflect.set(r, 'application', cache!.text);
  const app = appNo >= 0 ? cache!.get(appNo) : parseApplication(text);
  if (typeof app === 'string') fail('application', app);
  else if (appNo < 0 && cache && typeof text === 'string') appNo = cache.store(text, app);
  const endpoint = parseEndpoint(r.endpoint);
  if (typeof endpoint === 'string') fail('endpoint', endpoint);
  const port = parsePort(r.port);
  if (typeof port === 'string') fail('port', port);
  const protoText = r.protocol === undefined ? 'any' : typeof r.protocol === 'string' ? r.protocol.toLowerCase() : '';
  const proto = protoText === 'any' ? 0 : protoText === 'tcp' ? 1 : protoText === 'udp' ? 2 : -1;
  if (proto < 0) fail('protocol', `unknown protocol ${JSON.stringify(r.protocol)} (any, tcp or udp)`);
  const users = parseNames(r.users);
  if (typeof users === 'string') fail('users', users);
  const groups = parseNames(r.groups);
  if (typeof groups === 'string') fail('groups', groups);
  let expiresAt = Infinity;
  if (r.expires !== undefined) {
    expiresAt = typeof r.expires === 'string' && EXPIRES.test(r.expires) && isCalendarDate(r.expires) ? Date.parse(r.expires) : NaN;
    if (Number.isNaN(expiresAt)) fail('expires', `malformed time ${JSON.stringify(r.expires)} (ISO 8601 with its zone, such as 2027-01-01T00:00:00Z or 2027-01-01T09:00:00+09:00, or a date, taken as UTC)`);
  }
  if (r.note !== undefined && typeof r.note !== 'string') fail('note', 'must be a string');
  if (errors.length > 0) return errors;

  const a = app as AppMatch;
  const e = endpoint as EndpointMatch;
  const [portLo, portHi] = port as [number, number];
  const score = scoreOf(e.kind, endpointLength(e), portLo, portHi, proto, users !== null || groups !== null);
  return {
    action: r.action as Action, app: a, appNo, endpoint: e, portLo, portHi, proto: proto as 0 | 1 | 2,
    users: users as ReadonlySet<string> | null, groups: groups as ReadonlySet<string> | null, expiresAt, score,
    keyBytes: null, keyStart: -1, keyEnd: -1,
  };
}

/** One line a person can read: "block firefox -> *.example.com:443/tcp". */
export function describeRule(r: Rule): string {
  const scope = [r.users ? `users ${r.users.join(',')}` : '', r.groups ? `groups ${r.groups.join(',')}` : '']
    .filter(Boolean)
    .join(' ');
  return `${r.action} ${r.application} -> ${r.endpoint ?? 'any'}:${r.port ?? 'any'}/${r.protocol ?? 'any'}` +
    (scope ? ` for ${scope}` : '') + (r.expires ? ` until ${r.expires}` : '');
}
