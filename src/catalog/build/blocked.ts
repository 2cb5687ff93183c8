/** The builder's block inputs: a CSV of applications to block whole, and a list of ports to block for everyone. */
import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import type { Rule } from '../../policy/index.js';
import { keyToApplication } from '../nuapp.js';

export interface BlockedApp {
  /** As written: a path, a sub-path such as /Arc.app, or a prefix ending in /. */
  app: string;
  /** App id (bundle id, ...); absent when the CSV leaves it empty (path only). */
  identifier?: string;
}

async function text(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Reads `app,identifier` rows (header required). */
export async function readBlockedApps(file: string): Promise<BlockedApp[]> {
  const content = await text(file);
  let rows: Record<string, string>[];
  try {
    rows = parse(content, { columns: true, skip_empty_lines: true, trim: true }) as Record<string, string>[];
  } catch (e) {
    throw new Error(`${file}: not a CSV file (${(e as Error).message})`);
  }
  return rows.map((r, i) => {
    if (!r.app || !r.app.startsWith('/')) throw new Error(`${file}:${i + 2}: app must be a path such as /Arc.app, got "${r.app ?? ''}"`);
    return r.identifier ? { app: r.app, identifier: r.identifier } : { app: r.app };
  });
}

/** Reads one port per line (blank lines and # comments allowed). */
export async function readBlockedPorts(file: string): Promise<number[]> {
  return (await text(file)).split('\n').map((l, i) => [l.replace(/#.*/, '').trim(), i + 1] as const).filter(([l]) => l).map(([l, n]) => {
    const p = Number(l);
    if (!/^[0-9]+$/.test(l) || p < 1 || p > 65535) throw new Error(`${file}:${n}: not a port: "${l}"`);
    return p;
  });
}

/** Whole-application block rules: by path pattern (NuAppFirewall's key rules) and by app id where given. */
export function blockRules(apps: BlockedApp[], ports: number[]): Rule[] {
  const rules = new Map<string, Rule>();
  for (const a of apps) {
    const application = keyToApplication(a.app);
    rules.set(`block-app:${application}`, { id: `block-app:${application}`, action: 'block', application, note: 'blocked application' });
    if (a.identifier) rules.set(`block-app:${a.identifier}`, { id: `block-app:${a.identifier}`, action: 'block', application: a.identifier, note: `blocked application (${a.app})` });
  }
  for (const p of new Set(ports)) rules.set(`block-port:${p}`, { id: `block-port:${p}`, action: 'block', application: 'any', port: p, note: 'blocked port' });
  return [...rules.values()];
}
