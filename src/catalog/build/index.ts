/** `tollgate catalog build`: access logs (+ blocked apps and ports) -> a refined, validated catalog. */
import { parseApplication, parseEndpoint, parsePort, type Rule } from '../../policy/index.js';
import type { Aggregate } from './aggregate.js';
import type { BlockedApp } from './blocked.js';
import { readBlockedApps, readBlockedPorts } from './blocked.js';
import { PRESETS, type Mapping } from './columns.js';
import { refine, type RefineOptions, type StepReport } from './refine.js';
import { readLogs, type FileReport } from './sources.js';

export { FIELDS, PRESETS, type Field, type Mapping } from './columns.js';
export type { StepReport } from './refine.js';
export type { FileReport } from './sources.js';

export interface BuildOptions extends Omit<RefineOptions, 'blockedApps' | 'blockedPorts'> {
  logs: string[];
  mapping: Mapping;
  blockedAppsFile?: string;
  blockedPortsFile?: string;
  keepIps: boolean;
  since?: number;
  until?: number;
  workers?: number;
  minRangeBytes?: number;
  /** Malformed lines make the build fail instead of being counted and skipped. */
  strict: boolean;
  onProgress?: (bytes: number, lines: number) => void;
}

export interface BuildResult {
  rules: Rule[];
  files: FileReport[];
  steps: StepReport[];
}

export class BuildError extends Error {}

export async function buildCatalog(o: BuildOptions): Promise<BuildResult> {
  const blockedApps = o.blockedAppsFile ? await readBlockedApps(o.blockedAppsFile) : [];
  const blockedPorts = o.blockedPortsFile ? await readBlockedPorts(o.blockedPortsFile) : [];
  const read = {
    mapping: o.mapping, keepIps: o.keepIps, keepDevices: o.minDevices, keepUsers: o.minUsers, keepPrivate: o.keepPrivate, stripUrls: o.stripUrls,
  } as Parameters<typeof readLogs>[1];
  if (o.since !== undefined) read.since = o.since;
  if (o.until !== undefined) read.until = o.until;
  if (o.workers !== undefined) read.workers = o.workers;
  if (o.minRangeBytes !== undefined) read.minRangeBytes = o.minRangeBytes;
  if (o.onProgress) read.onProgress = o.onProgress;
  const holder: { agg?: Aggregate } = {};
  const { agg, reports } = await readLogs(o.logs, read);
  holder.agg = agg;
  const bad = reports.filter((r) => r.malformed > 0);
  if (o.strict && bad.length) {
    throw new BuildError(`--strict: malformed lines:\n${bad.map((r) => r.firstBad.map((b) => `  ${r.file}:${b.line}: ${b.reason}`).join('\n') + (r.malformed > r.firstBad.length ? `\n  ${r.file}: ... ${r.malformed} in all` : '')).join('\n')}`);
  }
  const any = (f: (i: number) => number): boolean => { for (let i = 0; i < agg.size; i++) if (f(i)) return true; return false; };
  if (o.minDevices > 1 && agg.size && !any((i) => agg.deviceCount(i))) throw new BuildError(`--min-devices ${o.minDevices}: the logs have no device column`);
  if (o.minUsers > 1 && agg.size && !any((i) => agg.userCount(i))) throw new BuildError(`--min-users ${o.minUsers}: the logs have no user column`);
  agg.freeIndex();
  return finish(holder, o, reports, blockedApps, blockedPorts);
}

/** Refines and checks; `holder` lets the refinement drop the aggregate as soon as it is done with it. */
function finish(holder: { agg?: Aggregate }, o: BuildOptions, reports: FileReport[], blockedApps: BlockedApp[], blockedPorts: number[]): BuildResult {
  const { rules, steps } = refine(holder, { ...o, blockedApps, blockedPorts });
  // The catalog must load: every rule valid (a failure here is a builder bug). Rule by rule, without
  // building the lookup index, which would double the memory of a large build.
  const bad = rules.map((r) => [r, parseApplication(r.application), parseEndpoint(r.endpoint ?? 'any'), parsePort(r.port ?? 'any')] as const)
    .filter(([, a, e, p]) => typeof a === 'string' || typeof e === 'string' || typeof p === 'string');
  if (bad.length) throw new BuildError(`internal error: ${bad.length} generated rules are invalid, first: ${JSON.stringify(bad[0]![0])}`);
  return { rules, files: reports, steps };
}

export function presetMapping(name: string): Mapping {
  const m = PRESETS[name];
  if (!m) throw new BuildError(`unknown preset "${name}" (${Object.keys(PRESETS).join(', ')})`);
  return m;
}
