/** Reviewing catalogs before rollout: what changed between two, and what one holds. */
import { parseEndpoint, Policy, type Rule } from '../policy/index.js';

/** A rule's identity for review: who, where, which port/protocol, for whom. Action and notes may change. */
function identity(r: Rule): string {
  return JSON.stringify([r.application, r.endpoint ?? 'any', String(r.port ?? 'any'), r.protocol ?? 'any', r.users ?? [], r.groups ?? []]);
}

function substance(r: Rule): string {
  return JSON.stringify([r.action, r.expires ?? null, r.note ?? null]);
}

export interface AppDiff {
  application: string;
  added: Rule[];
  removed: Rule[];
  changed: { from: Rule; to: Rule }[];
}

/** Added, removed and changed rules per application, applications in order. Ids are not compared. */
export function diffCatalogs(a: Rule[], b: Rule[]): AppDiff[] {
  const before = new Map(a.map((r) => [identity(r), r]));
  const after = new Map(b.map((r) => [identity(r), r]));
  const apps = new Map<string, AppDiff>();
  const of = (app: string): AppDiff => {
    let d = apps.get(app);
    if (!d) apps.set(app, (d = { application: app, added: [], removed: [], changed: [] }));
    return d;
  };
  for (const [k, r] of before) {
    const n = after.get(k);
    if (!n) of(r.application).removed.push(r);
    else if (substance(n) !== substance(r)) of(r.application).changed.push({ from: r, to: n });
  }
  for (const [k, r] of after) if (!before.has(k)) of(r.application).added.push(r);
  return [...apps.values()].sort((x, y) => (x.application < y.application ? -1 : 1));
}

export interface CatalogStats {
  rules: number;
  byAction: Record<string, number>;
  byLevel: Record<string, number>;
  byEndpoint: Record<string, number>;
  wildcardShare: number;
  topApplications: { application: string; rules: number }[];
}

export function catalogStats(rules: Rule[], top = 10): CatalogStats {
  const policy = Policy.compile(rules, 'passive-allow');
  const s = policy.stats();
  const byEndpoint: Record<string, number> = {};
  const perApp = new Map<string, number>();
  for (const r of rules) {
    const e = parseEndpoint(r.endpoint ?? 'any');
    const kind = typeof e === 'string' ? 'invalid' : e.kind;
    byEndpoint[kind] = (byEndpoint[kind] ?? 0) + 1;
    perApp.set(r.application, (perApp.get(r.application) ?? 0) + 1);
  }
  return {
    rules: rules.length,
    byAction: s.byAction,
    byLevel: s.byLevel,
    byEndpoint,
    wildcardShare: rules.length ? (byEndpoint.wildcard ?? 0) / rules.length : 0,
    topApplications: [...perApp].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).slice(0, top).map(([application, n]) => ({ application, rules: n })),
  };
}
