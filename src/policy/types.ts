/** The policy vocabulary shared by every part of Tollgate (see ARCHITECTURE.md). */

export type Action = 'allow' | 'block';
export type Mode = 'passive-allow' | 'passive-block' | 'ask';
/** A flow's transport. UDP-Lite is its own: only rules for any protocol apply to it. */
export type Protocol = 'tcp' | 'udp' | 'udplite';
export const MODES: readonly Mode[] = ['passive-allow', 'passive-block', 'ask'];

/**
 * A rule as written in a catalog. Field syntax (README "Rules"):
 * - application: `any` | app id (`org.mozilla.firefox`, `sshd.service`) | `/abs/path/exe` |
 *   `/path/prefix/` (trailing slash) | `*\/Sub.app` (sub-path anywhere, on component boundaries)
 * - endpoint: `any` | URL | host | `*.domain` | IPv4/IPv6 | CIDR (default `any`)
 * - port: `any` | 1..65535 | `lo-hi` (default `any`); protocol: `any` | `tcp` | `udp` (default `any`)
 */
export interface Rule {
  id: string;
  action: Action;
  application: string;
  endpoint?: string;
  port?: string | number;
  protocol?: string;
  /** The rule applies only to these user names or numeric uids (as strings) ... */
  users?: string[];
  /** ... or to members of these groups. Without either it applies to everyone. */
  groups?: string[];
  /** ISO 8601 time after which the rule stops applying. */
  expires?: string;
  note?: string;
}

/** The rule objects a policy's verdicts name: kept as parsed, or (restored from an image) made on first use. */
export interface RuleSource {
  readonly length: number;
  get(i: number): Rule;
  /**
   * Rule i's JSON, where the source has it without get(i): as UTF-8 (an image then copies it) or as a
   * string (a source that makes its rules, and would keep one made by get()); null or absent: JSON.stringify(get(i)).
   */
  text?(i: number): Uint8Array | string | null;
}

/**
 * Rules to compile, one at a time: rule objects, or a catalog's bytes (catalog/fast-reader.ts), whose
 * rules compile without an object made for each.
 */
export interface RuleInput {
  readonly length: number;
  /** Rule i validated and parsed, its application numbered by `cache`; or its errors. */
  compile(i: number, cache: import('./rules.js').AppCache): import('./rules.js').ParsedRule | RuleError[];
  /** Rule i's id hashed (ids.ts: idHash), or undefined when it has no valid id (compile says so). */
  idHash(i: number): number | undefined;
  /** Rules i and j have the same id (both have one). */
  sameId(i: number, j: number): boolean;
  /** Rule i's id, for messages. */
  id(i: number): string | undefined;
  /** The rules as objects, for verdicts (made on demand); asked for once, when the compile is done. */
  readonly source: RuleSource;
}

export const RULE_FIELDS: ReadonlySet<string> = new Set([
  'id', 'action', 'application', 'endpoint', 'port', 'protocol', 'users', 'groups', 'expires', 'note',
]);

/** Who is connecting. `path` is the executable; `id` an app id where the platform has one. */
export interface AppIdentity {
  id?: string;
  path: string;
  cmdline?: string[];
  /** For an interpreter (node, python3, java, ...), the script it runs: a compromised package runs as `node`. */
  script?: string;
  /** Files an interpreter loads before its script (node --require, java -javaagent:): judged with it, the strictest deciding. */
  preloads?: string[];
  pid?: number;
  uid?: number;
  user?: string;
  groups?: string[];
}

/** One new outbound connection, as the filter sees it. */
export interface Flow {
  app: AppIdentity;
  /** `hostnames` are the names the program resolved to `ip`, lower case; `url` where known. */
  remote: { ip: string; hostnames: string[]; url?: string };
  port: number;
  protocol: Protocol;
}

/** Where a verdict came from, most specific first. */
export type Level = 'app-id' | 'path' | 'prefix' | 'any' | 'default';

export interface Verdict {
  action: Action | 'ask';
  /** The deciding rule; absent when the mode decided. */
  rule?: Rule;
  level: Level;
  reason: string;
}

/** A rule that failed validation: which rule (id and position) and which field. */
export interface RuleError {
  index: number;
  id?: string;
  field: string;
  message: string;
}

export function formatRuleError(e: RuleError): string {
  const who = e.id !== undefined ? `rule "${e.id}" (#${e.index + 1})` : `rule #${e.index + 1}`;
  return `${who}: ${e.field}: ${e.message}`;
}

/** Errors the message lists: `errors` holds every one (`tollgate check` prints them all). */
const MESSAGE_ERRORS = 20;

export class InvalidRulesError extends Error {
  /**
   * The message lists the first MESSAGE_ERRORS errors: it goes into logs (the agent's failed
   * reload), where a catalog of 250,000 bad rules made a line of ~20 MB.
   */
  constructor(readonly errors: RuleError[]) {
    const more = errors.length - MESSAGE_ERRORS;
    super(
      `${errors.length} invalid rule${errors.length === 1 ? '' : 's'}:\n` +
        errors.slice(0, MESSAGE_ERRORS).map((e) => '  ' + formatRuleError(e)).join('\n') +
        (more > 0 ? `\n  ... and ${more} more (tollgate check lists them all)` : ''),
    );
    this.name = 'InvalidRulesError';
  }
}
