/** `tollgate catalog build | diff | stats`. */
import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { catalogStats, diffCatalogs, encodingFor, readCatalog, writeCatalog } from '../catalog/index.js';
import { FIELDS, type Field, type Mapping } from '../catalog/build/columns.js';
import { describeRule, MODES, type Mode } from '../policy/index.js';
import { UsageError, int, mode, oneOf, sameFile, when } from './usage.js';

interface BuildFlags {
  logs: string[];
  blocked?: string;
  blockedPorts?: string;
  out: string;
  format: 'tollgate' | 'nuapp';
  preset: string;
  columns?: string;
  col?: string[];
  minCount: number;
  minDevices: number;
  minUsers: number;
  since?: number;
  until?: number;
  keepIps?: boolean;
  keepPrivate?: boolean;
  stripUrls?: boolean;
  maxPorts: number;
  wildcardAfter?: number;
  workers?: number;
  strict?: boolean;
  mode?: Mode;
  progress: boolean;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

async function mappingOf(o: BuildFlags, preset: Mapping): Promise<Mapping> {
  const m: Mapping = { ...preset };
  if (o.columns) {
    let doc: unknown;
    try {
      doc = JSON.parse(await readFile(o.columns, 'utf8'));
    } catch (e) {
      throw new UsageError(`--columns ${o.columns}: ${(e as Error).message}`);
    }
    if (typeof doc !== 'object' || doc === null) throw new UsageError(`--columns ${o.columns}: expected {"app": "column", ...}`);
    for (const [k, v] of Object.entries(doc)) {
      if (!(FIELDS as readonly string[]).includes(k)) throw new UsageError(`--columns ${o.columns}: unknown field "${k}" (${FIELDS.join(', ')})`);
      if (typeof v !== 'string' && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) throw new UsageError(`--columns ${o.columns}: "${k}" must name a column`);
      m[k as Field] = v as string | string[];
    }
  }
  for (const c of o.col ?? []) {
    const [k, ...rest] = c.split('=');
    if (!k || !rest.length || !(FIELDS as readonly string[]).includes(k)) throw new UsageError(`--col ${c}: expected field=column, field one of ${FIELDS.join(', ')}`);
    m[k as Field] = rest.join('=');
  }
  return m;
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')).join('\n');
}

export function catalogCommands(program: Command): void {
  const catalog = program.command('catalog').description('build catalogs from access logs, review them');

  catalog
    .command('build')
    .description('build a catalog from endpoint (EDR) access logs: CSV, TSV, JSON Lines, gzip, or a Tollgate audit store')
    .requiredOption('--logs <files...>', 'access logs (.csv, .tsv, .jsonl, any of them .gz; or an audit store .db)')
    .requiredOption('--out <file>', 'the catalog to write (.json or .plist)')
    .option('--blocked <apps.csv>', 'applications to block whole: app,identifier (empty identifier: path only)')
    .option('--blocked-ports <file>', 'ports to block for every application, one per line')
    .option('--format <tollgate|nuapp>', 'catalog format', oneOf('tollgate', 'nuapp'), 'tollgate')
    .option('--preset <name>', 'column names of a known export: cortex-xdr, tollgate', 'cortex-xdr')
    .option('--columns <mapping.json>', 'column names per field: {"app": "...", "host": "...", "ip": "...", "port": "...", ...}')
    .option('--col <field=column>', `one column name (fields: ${FIELDS.join(', ')}); repeatable`, collect)
    .option('--min-count <n>', 'drop accesses seen fewer times', int(1, 1e9), 1)
    .option('--min-devices <n>', 'drop accesses seen on fewer distinct devices', int(1, 1e6), 1)
    .option('--min-users <n>', 'drop accesses made by fewer distinct users', int(1, 1e6), 1)
    .option('--since <time>', 'only accesses at or after this time (ISO or age: 30d)', when)
    .option('--until <time>', 'only accesses at or before this time', when)
    .option('--keep-ips', 'also make IP rules for accesses that name a host (by default the host rule alone: an IP may later serve someone else)')
    .option('--keep-private', 'keep private, loopback and link-local destinations')
    .option('--strip-urls', 'turn URL destinations into host rules')
    .option('--max-ports <n>', 'an application seen on more ports of one destination gets a rule for any port; 0: never', int(0, 65535), 10)
    .option('--wildcard-after <n>', 'an application seen on more subdomains of one domain gets *.domain; 0: never (default 10; 0 for --format nuapp)', int(0, 1e6))
    .option('--workers <n>', 'worker threads (default: one per core)', int(1, 256))
    .option('--strict', 'fail on the first malformed lines instead of counting and skipping them')
    .option('--mode <mode>', `mode written into the catalog (${MODES.join(', ')})`, mode)
    .option('--no-progress', 'no progress bar')
    .action(async (o: BuildFlags) => {
      if (o.format === 'nuapp' && o.wildcardAfter) throw new UsageError('--wildcard-after: NuAppFirewall catalogs cannot hold *.domain rules; use --format tollgate or --wildcard-after 0');
      // the catalog replaces --out at the end: an input there (a slip of the shell) would be lost
      const input = [...o.logs, o.blocked, o.blockedPorts].find((f) => f !== undefined && sameFile(f, o.out));
      if (input !== undefined) throw new UsageError(`--out ${o.out} is the input ${input}: the catalog would replace it; write it elsewhere`);
      const t0 = performance.now();
      // here, not at the top: the builder (csv-parse, worker threads) and the progress bar are for this command only
      const [{ BuildError, buildCatalog, presetMapping }, { SingleBar }] = await Promise.all([import('../catalog/build/index.js'), import('cli-progress')]);
      const bar = o.progress && process.stderr.isTTY
        ? new SingleBar({ format: 'reading |{bar}| {percentage}% {done}/{size} MB, {lines} lines, {rate} MB/s, ETA {eta_formatted}', stream: process.stderr, hideCursor: true })
        : undefined;
      let lines = 0;
      let done = 0;
      const total = (await Promise.all(o.logs.map((f) => stat(f).then((s) => s.size, () => 0)))).reduce((a, b) => a + b, 0);
      bar?.start(Math.max(1, Math.round(total / 1e6)), 0, { done: 0, size: Math.round(total / 1e6), lines: 0, rate: 0 });
      try {
        const result = await buildCatalog({
          logs: o.logs, mapping: await mappingOf(o, presetMapping(o.preset)), keepIps: !!o.keepIps, keepPrivate: !!o.keepPrivate, stripUrls: !!o.stripUrls,
          minCount: o.minCount, minDevices: o.minDevices, minUsers: o.minUsers, maxPorts: o.maxPorts,
          wildcardAfter: o.wildcardAfter ?? (o.format === 'nuapp' ? 0 : 10), strict: !!o.strict,
          ...(o.blocked ? { blockedAppsFile: o.blocked } : {}), ...(o.blockedPorts ? { blockedPortsFile: o.blockedPorts } : {}),
          ...(o.since !== undefined ? { since: o.since } : {}), ...(o.until !== undefined ? { until: o.until } : {}),
          ...(o.workers ? { workers: o.workers } : {}),
          onProgress: (bytes, l) => {
            done += bytes;
            lines += l;
            const s = (performance.now() - t0) / 1000;
            bar?.update(Math.round(done / 1e6), { done: Math.round(done / 1e6), size: Math.round(total / 1e6), lines: lines.toLocaleString('en'), rate: (done / 1e6 / s).toFixed(0) });
          },
        });
        bar?.stop();
        await writeCatalog(o.out, result.rules, { format: o.format, encoding: encodingFor(o.out), ...(o.mode ? { mode: o.mode } : {}) });
        const secs = (performance.now() - t0) / 1000;
        const read = result.files.reduce((a, f) => a + f.lines, 0);
        console.error(table([
          ['file', 'format', 'lines', 'accesses', 'malformed', 'outside window', 'IPs not kept'],
          ...result.files.map((f) => [f.file, f.format, String(f.lines), String(f.accesses), String(f.malformed), String(f.outsideWindow), String(f.ipsDropped)]),
        ]));
        for (const f of result.files) for (const b of f.firstBad) console.error(`  malformed: ${f.file}:${b.line}: ${b.reason}`);
        console.error('');
        console.error(table([['step', 'entries', 'what it did'], ...result.steps.map((s) => [s.step, String(s.entries), s.detail])]));
        console.error(`\n${o.out}: ${result.rules.length} rules (${o.format}), ${read.toLocaleString('en')} lines in ${secs.toFixed(1)} s (${Math.round(read / secs).toLocaleString('en')} lines/s)`);
      } catch (e) {
        bar?.stop();
        if (e instanceof BuildError) throw new UsageError(e.message);
        if (e instanceof Error && !(e.name === 'InvalidRulesError' || e.name === 'CatalogError')) throw new UsageError(e.message);
        throw e;
      }
    });

  catalog
    .command('diff')
    .description('added, removed and changed rules per application between two catalogs (ids are not compared)')
    .argument('<before>')
    .argument('<after>')
    .option('--json', 'print JSON')
    .action(async (a: string, b: string, o: { json?: boolean }) => {
      const [ca, cb] = await Promise.all([readCatalog(a), readCatalog(b)]);
      const d = diffCatalogs(ca.rules, cb.rules);
      if (o.json) return console.log(JSON.stringify(d, null, 2));
      if (!d.length) return console.log('no differences');
      for (const app of d) {
        console.log(`${app.application}: +${app.added.length} -${app.removed.length} ~${app.changed.length}`);
        for (const r of app.added) console.log(`  + ${describeRule(r)}`);
        for (const r of app.removed) console.log(`  - ${describeRule(r)}`);
        for (const c of app.changed) console.log(`  ~ ${describeRule(c.from)}  =>  ${describeRule(c.to)}`);
      }
      const sum = (k: 'added' | 'removed' | 'changed'): number => d.reduce((n, x) => n + x[k].length, 0);
      console.log(`${d.length} applications: ${sum('added')} added, ${sum('removed')} removed, ${sum('changed')} changed`);
    });

  catalog
    .command('stats')
    .description('rules per action, level and endpoint kind; top applications; wildcard share')
    .argument('<catalog>')
    .option('--top <n>', 'how many applications', int(1, 1000), 10)
    .option('--json', 'print JSON')
    .action(async (file: string, o: { top: number; json?: boolean }) => {
      const s = catalogStats((await readCatalog(file)).rules, o.top);
      if (o.json) return console.log(JSON.stringify(s, null, 2));
      const kv = (r: Record<string, number>): string => Object.entries(r).map(([k, v]) => `${k} ${v}`).join(', ');
      console.log(`${file}: ${s.rules} rules`);
      console.log(`  by action    ${kv(s.byAction)}`);
      console.log(`  by level     ${kv(s.byLevel)}`);
      console.log(`  by endpoint  ${kv(s.byEndpoint)}`);
      console.log(`  wildcards    ${(s.wildcardShare * 100).toFixed(1)}% of rules`);
      console.log('  top applications');
      for (const a of s.topApplications) console.log(`    ${String(a.rules).padStart(7)}  ${a.application}`);
    });
}
