/**
 * A rule compiled from where its fields' values lie in a catalog's bytes, with no string or object
 * made for the rule: a catalog reader (catalog/fast-reader.ts) records the spans, this does what
 * compileRule() does for the plain rules that make up nearly all of a big catalog. Whatever it is not
 * sure of (a value compileRule would normalise, such as an upper-case host, or refuse) it declines
 * (null): the rule then goes through JSON.parse and compileRule(), which say what is wrong with it.
 *
 * Written by hand because it is the load's hot path: JSON.parse of the generated 250,000-rule catalog
 * took 250-580 ms here and its rule objects' validation and GC most of the rest of a ~1.4 s compile.
 * What it accepts is checked against compileRule() in test/policy/rule-bytes.test.ts.
 */
import { maskV4, parseIPv4 } from './ip.js';
import { parseApplication, parseEndpoint, parsePort, scoreOf, endpointLength, type AppCache, type EndpointMatch, type ParsedRule } from './rules.js';

/**
 * One rule's spans, STRIDE ints a rule: its JSON object [start, end), then whether the reader found it
 * plain (1: every field one this module knows, every string printable ASCII without escapes, no field
 * twice), then `codes` (CODES), then [start, end) of each other field's value, inside the quotes of a
 * string (-1: absent). 12 ints a rule, where spans of the action and protocol too took 16: ~4 MB
 * less at the peak of a 250,000-rule load.
 */
export const SPAN = { start: 0, end: 1, plain: 2, codes: 3, id: 4, application: 6, endpoint: 8, port: 10 } as const;
export const STRIDE = 12;
/**
 * `codes`: bit 0 set when the port is a JSON number (its digits; a string's otherwise); the action's
 * position in ACTION_WORDS + 1 from bit 1 (0: absent); the protocol's in PROTOCOL_WORDS + 1 from
 * bit 3 (0: absent). A reader that finds another action or protocol marks the rule not plain.
 */
export const CODES = { portNumber: 1, action: 1, protocol: 3 } as const;
export const ACTION_WORDS = ['allow', 'block'] as const;
export const PROTOCOL_WORDS = ['any', 'tcp', 'udp'] as const;
/** The fields a plain rule may have. */
export const PLAIN_FIELDS = ['id', 'action', 'application', 'endpoint', 'port', 'protocol', 'note'] as const;

const ANY: EndpointMatch = { kind: 'any' };
const HOST: EndpointMatch = { kind: 'host', host: '' };
const WILDCARD: EndpointMatch = { kind: 'wildcard', suffix: '' };

export type ParsedRuleSlot = { -readonly [K in keyof ParsedRule]: ParsedRule[K] };

/**
 * The one object compileRuleBytes() returns for an input, refilled by each call: the compile copies
 * what it needs at once, and 250,000 short-lived objects cost ~50 ms of allocation and garbage
 * collection. One per input, not one for the module: it points into the input's bytes, which a
 * module-wide one kept alive after the compile (a whole catalog, until the next one).
 */
export function parsedRuleSlot(): ParsedRuleSlot {
  return {
    action: 'allow', app: { kind: 'any' }, appNo: 0, endpoint: ANY, portLo: 0, portHi: 0, proto: 0, users: null, groups: null, expiresAt: Infinity, score: 0,
    keyBytes: null, keyStart: -1, keyEnd: -1,
  };
}

/**
 * Rule at `o` in `f` (a plain one, all its strings ASCII) compiled, or null when compileRule() must
 * see it. The result is `out` (parsedRuleSlot()), valid until the next call with it. `latin1` makes the few strings it needs (IPs,
 * CIDRs, port ranges, each application once): the caller's Buffer.toString() makes a short one
 * ~2.5x faster than String.fromCharCode.apply() (~20 ms of a 250,000-rule compile).
 */
export function compileRuleBytes(b: Uint8Array, f: Int32Array, o: number, cache: AppCache, latin1: TextOf, out: ParsedRuleSlot): ParsedRule | null {
  const idS = f[o + SPAN.id]!;
  if (idS < 0 || f[o + SPAN.id + 1] === idS) return null;
  const codes = f[o + SPAN.codes]!;
  const action = ACTION_WORDS[((codes >> CODES.action) & 3) - 1];
  if (action === undefined) return null;

  const appS = f[o + SPAN.application]!;
  const appE = f[o + SPAN.application + 1]!;
  if (appS < 0) return null;
  let appNo = cache.findBytes(b, appS, appE);
  if (appNo < 0) {
    const text = latin1(appS, appE); // once per distinct application
    const app = parseApplication(text);
    if (typeof app === 'string') return null;
    appNo = cache.store(text, app);
  }

  let endpoint = ANY;
  let keyStart = -1;
  let keyEnd = -1;
  let len = 0;
  const epS = f[o + SPAN.endpoint]!;
  const epE = f[o + SPAN.endpoint + 1]!;
  if (epS >= 0 && !isAny(b, epS, epE)) {
    if (epE - epS > 2 && b[epS] === 42 && b[epS + 1] === 46 && isPlainHost(b, epS + 2, epE)) {
      endpoint = WILDCARD; // *.name
      keyStart = epS + 2;
      keyEnd = epE;
      len = epE - keyStart;
    } else if (isPlainHost(b, epS, epE)) {
      endpoint = HOST;
      keyStart = epS;
      keyEnd = epE;
    } else {
      const text = latin1(epS, epE); // IPs, CIDRs, URLs: ~a fifth of a catalog
      const e = ipv4(text) ?? parseEndpoint(text);
      if (typeof e === 'string') return null;
      endpoint = e;
      len = endpointLength(e);
    }
  }

  let portLo = 0;
  let portHi = 0;
  const pS = f[o + SPAN.port]!;
  const pE = f[o + SPAN.port + 1]!;
  if (pS >= 0) {
    if ((codes & CODES.portNumber) !== 0) {
      if (pE - pS > 5) return null;
      for (let k = pS; k < pE; k++) portLo = portLo * 10 + b[k]! - 48;
      if (portLo < 1 || portLo > 65535) return null;
      portHi = portLo;
    } else if (!isAny(b, pS, pE)) {
      const p = parsePort(latin1(pS, pE));
      if (typeof p === 'string') return null;
      [portLo, portHi] = p;
    }
  }

  const protocol = (codes >> CODES.protocol) & 3; // 0 absent, 1 any, 2 tcp, 3 udp
  const proto = protocol <= 1 ? 0 : protocol - 1;

  out.action = action;
  out.app = cache.get(appNo);
  out.appNo = appNo;
  out.endpoint = endpoint;
  out.portLo = portLo;
  out.portHi = portHi;
  out.proto = proto as 0 | 1 | 2;
  out.score = scoreOf(endpoint.kind, len, portLo, portHi, proto, false);
  out.keyBytes = keyStart >= 0 ? b : null;
  out.keyStart = keyStart;
  out.keyEnd = keyEnd;
  return out;
}

/**
 * An IPv4 address or network as parseEndpoint() returns it, or null for anything else (which then
 * goes to parseEndpoint()): the common IP endpoints without its general checks and ipaddr.js.
 */
function ipv4(s: string): EndpointMatch | null {
  const slash = s.indexOf('/');
  const n = parseIPv4(s, 0, slash < 0 ? s.length : slash);
  if (n < 0) return null;
  if (slash < 0) return { kind: 'ip', ip: { v: 4, n }, key: n };
  const bits = s.length - slash - 1;
  if (bits < 1 || bits > 2) return null;
  let len = 0;
  for (let i = slash + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return null;
    len = len * 10 + c - 48;
  }
  return len <= 32 && maskV4(n, len) === n ? { kind: 'cidr', v: 4, len, key: n } : null;
}

/** The position + 1 of the word of `words` that b[s..e) spells, or 0. */
export function wordCode(b: Uint8Array, s: number, e: number, words: readonly string[]): number {
  if (s < 0) return 0;
  next: for (let w = 0; w < words.length; w++) {
    const word = words[w]!;
    if (word.length !== e - s) continue;
    for (let k = 0; k < word.length; k++) if (b[s + k] !== word.charCodeAt(k)) continue next;
    return w + 1;
  }
  return 0;
}

const ANY_WORD = ['any'];
const isAny = (b: Uint8Array, s: number, e: number): boolean => wordCode(b, s, e, ANY_WORD) === 1;

/** b[s..e) as a string (ASCII). */
export type TextOf = (s: number, e: number) => string;

/**
 * b[s..e) is a host name exactly as normalizeHost() would return it: lower case, labels of 1-63 of
 * [a-z0-9_-] neither starting nor ending with '-', at most 253 bytes, no trailing dot, a last label
 * that is not all digits (that looks like a broken IP).
 */
export function isPlainHost(b: Uint8Array, s: number, e: number): boolean {
  if (e - s === 0 || e - s > 253) return false;
  let label = 0;
  let digits = true; // the label so far is all digits
  let prev = 46;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c === 46) {
      if (label === 0 || prev === 45) return false;
      label = 0;
      digits = true;
    } else {
      const digit = c >= 48 && c <= 57;
      if (!digit && !(c >= 97 && c <= 122) && c !== 95 && !(c === 45 && label > 0)) return false;
      if (!digit) digits = false;
      if (++label > 63) return false;
    }
    prev = c;
  }
  return label > 0 && prev !== 45 && !digits;
}
