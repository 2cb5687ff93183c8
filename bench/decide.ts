/**
 * bench/decide: load + compile time, memory, and decide() throughput and latency on
 * (1) NuAppFirewall's real legacy catalog (153,128 endpoints) and (2) a generated 250,000-rule
 * catalog of realistic shape, each on three workloads (uniform, skewed, one machine's traffic).
 * The generated catalog's file lists its rules grouped by application, as `tollgate catalog build`
 * and NuAppFirewall's format write them; the same rules in random order are loaded too (a first
 * load's worst case: each rule's application is then looked up afresh).
 * Each catalog is measured in a fresh child process so that peak RSS is that catalog's own; its load
 * is repeated in more fresh processes to show how much load time and peak RSS vary between runs.
 * Each is loaded two ways: compiled from the catalog (a first start), and restored from the image
 * the compiled-policy cache kept of it (every later start of the same catalog). Each workload is also
 * run through a one-probe stand-in (bench/one-probe.ts) in the same process: a yardstick for the
 * machine's speed at that moment.
 * Prints figures; asserts nothing.
 *
 *   npm run bench:decide            (or: node dist/bench/decide.js [--seconds 2])
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicy, readCatalog, readCatalogToCompile, reloadPolicy, serializeCatalog } from '../src/catalog/index.js';
import { Policy, type Flow, type Rule } from '../src/policy/index.js';
import { oneProbe } from './one-probe.js';
import { flowsFor, generateCatalog, prng } from './gen.js';
import { COMMAND_ENV, COMMAND_NODE_FLAGS } from './node-flags.js';

const REAL = join(fileURLToPath(import.meta.url), '../../../../shared/data/nuappfirewall/catalog_legacy-catalog_2024-09.json');
const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 2;
const LOADS = 5; // fresh processes per catalog for the load figures' spread

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function range(xs: number[], unit: string): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${median(xs).toFixed(0)} ${unit} (${s[0]!.toFixed(0)}-${s[s.length - 1]!.toFixed(0)})`;
}

const TARGET = { perSec: 2_000_000, p99ns: 5_000, loadMs: 500, peakRssMB: 150, heapMB: 100 };
const mark = (ok: boolean): string => (ok ? 'met' : 'NOT met');

/** One line per catalog and way of loading: each target met or not (loads: the median over fresh processes). */
function againstTargets(results: Result[], loads: Map<string, { loadMs: number; peakRssMB: number }>): string[] {
  return [...loads].map(([name, l]) => {
    const rows = results.filter((r) => r.name === name);
    const rates = rows.map((r) => `${r.workload} ${(r.perSec / 1e6).toFixed(2)} M ${mark(r.perSec >= TARGET.perSec)}${r.perSec >= TARGET.perSec ? '' : ` (1-probe stand-in ${(r.oneProbe / 1e6).toFixed(2)} M)`}`).join(', ');
    const p99 = Math.max(...rows.map((r) => r.p99ns));
    return `  ${name.padEnd(36)} load ${l.loadMs.toFixed(0)} ms ${mark(l.loadMs < TARGET.loadMs)}, peak RSS ${l.peakRssMB.toFixed(0)} MB ${mark(l.peakRssMB < TARGET.peakRssMB)}, heap ${rows[0]!.heapMB.toFixed(0)} MB ${mark(rows[0]!.heapMB < TARGET.heapMB)}; ${rates}; p99 at most ${p99} ns ${mark(p99 < TARGET.p99ns)}`;
  });
}

interface Load {
  loadMs: number;
  readMs: number;
  peakRssMB: number;
}

interface Result {
  name: string;
  workload: string;
  rules: number;
  fileMB: number;
  loadMs: number;
  readMs: number; // of loadMs, reading the file (a first load)
  heapMB: number;
  peakRssMB: number;
  perSec: number;
  p50ns: number;
  p99ns: number;
  p999ns: number;
  hits: number;
  floorNs: number;
  hotNs: number;
  oneProbe: number; // decisions/s of bench/one-probe.ts's stand-in on the same flows
  reloadMs: number;
  reloadStallMs: number;
}

/**
 * The agent's reload of a changed catalog: the file read and scanned on a worker thread and compiled in slices
 * (reloadPolicy), while a loop of setImmediate measures the longest time the event loop did not turn.
 */
async function reload(file: string): Promise<{ reloadMs: number; reloadStallMs: number }> {
  let last = performance.now();
  let stall = 0;
  let on = true;
  const turn = (): void => {
    const now = performance.now();
    stall = Math.max(stall, now - last);
    last = now;
    if (on) setImmediate(turn);
  };
  setImmediate(turn);
  const t = performance.now();
  await reloadPolicy(file, 'passive-allow', { dir: null }); // a changed catalog: compiled
  const reloadMs = performance.now() - t;
  on = false;
  return { reloadMs, reloadStallMs: stall };
}

/**
 * A load as the agent's start does it: compiled from the catalog (no cache: a first start, the image
 * not written), or from the image in `cacheDir` (which must be there).
 */
function load(file: string, cacheDir?: string): { policy: Policy; loadMs: number; readMs: number; peakRssMB: number } {
  const t0 = performance.now();
  if (cacheDir) {
    const l = loadPolicy(file, 'passive-allow', { dir: cacheDir, warn: (m) => { throw new Error(m); } });
    if (l.from !== 'image') throw new Error(`${file}: no image in ${cacheDir}`);
    return { policy: l.policy, loadMs: performance.now() - t0, readMs: NaN, peakRssMB: process.resourceUsage().maxRSS / 1024 };
  }
  // loadPolicy's steps without a cache, timed apart: reading (and hashing, scanning) the file, then the compile
  const c = readCatalogToCompile(file);
  const readMs = performance.now() - t0;
  const policy = Policy.compile(c.rules, 'passive-allow');
  return { policy, loadMs: performance.now() - t0, readMs, peakRssMB: process.resourceUsage().maxRSS / 1024 };
}

/** Child: load one catalog file, then time decide() on each workload, then a sliced recompile. */
async function run(file: string, name: string, cacheDir?: string, byId = false): Promise<Result[]> {
  const { policy, loadMs, readMs, peakRssMB } = load(file, cacheDir);
  (globalThis as { gc?: () => void }).gc?.();
  const heapMB = process.memoryUsage().heapUsed / 2 ** 20;
  // before the workloads: their 600,000 flows would make the agent-sized heap a bench-sized one
  // a reload always compiles (the image only serves starts): measured once, in the compiled child
  const reloaded = cacheDir ? { reloadMs: NaN, reloadStallMs: NaN } : await reload(file);
  (globalThis as { gc?: () => void }).gc?.();
  // Flows from a second read of the catalog, in both children: their strings must not be the very
  // objects the index was built from (the agent's come from packets and /proc), or every lookup is a
  // pointer compare. policy.rules, used before, made the compiled policy look ~1.3x faster than a restored one.
  // `byId`: a generated catalog's rules as generateCatalog() made them (ids g1, g2, ...), whatever the
  // file's order: the skewed workload favours the first ones, so its flows stay the same however the file lists them
  const read = (await readCatalog(file)).rules;
  const rules = byId ? [...read].sort((x, y) => Number(x.id.slice(1)) - Number(y.id.slice(1))) : read;
  const base = { name, rules: rules.length, fileMB: statSync(file).size / 2 ** 20, loadMs, readMs, heapMB, peakRssMB, ...reloaded };
  const workloads = { uniform: () => flowsFor(rules, 200_000, 42, 1), skewed: () => flowsFor(rules, 200_000, 43, 6), machine: () => machineFlows(rules, 5_000, 200_000) };
  const results: Result[] = [];
  for (const [workload, make] of Object.entries(workloads)) {
    const flows = make();
    const r = { ...base, workload, ...time(policy, flows) };
    const hit = Uint8Array.from(flows, (f) => (policy.decide(f).rule ? 1 : 0));
    results.push({ ...r, oneProbe: oneProbe(rules, flows, hit, seconds) });
  }
  return results;
}

/**
 * One machine's traffic: a few thousand distinct (program, destination) flows, the popular ones
 * often. Like the agent, each decision gets a flow whose strings are reused (process and DNS caches).
 */
function machineFlows(rules: readonly Rule[], distinct: number, count: number): Flow[] {
  const pool = flowsFor(rules, distinct, 44, 6);
  const pick = prng(45);
  return Array.from({ length: count }, () => pool[Math.floor(pool.length * (pick(1_000_000) / 1_000_000) ** 3)]!);
}

/** What reading each flow's strings costs without deciding: the part of a decision the index cannot remove. */
function floor(flows: Flow[]): number {
  let acc = 0;
  const read = (s: string): void => {
    for (let i = 0; i < s.length; i++) acc = (acc + s.charCodeAt(i)) | 0;
  };
  const start = performance.now();
  for (const f of flows) {
    read(f.app.path);
    read(f.remote.ip);
    for (const h of f.remote.hostnames) read(h);
  }
  return ((performance.now() - start) * 1e6) / flows.length + (acc & 0);
}

/**
 * A decision's cost with its flow and the index entries it reads in cache: each of a sample of flows
 * decided once, then 8 more times timed. The rest of a workload's ns a decision is memory.
 */
function hot(policy: Policy, flows: Flow[], now: number): number {
  let ns = 0;
  let n = 0;
  for (let i = 0; i < flows.length; i += 10) {
    const f = flows[i]!;
    policy.decide(f, now);
    const t = process.hrtime.bigint();
    for (let k = 0; k < 8; k++) policy.decide(f, now);
    ns += Number(process.hrtime.bigint() - t);
    n += 8;
  }
  return ns / n;
}

/** Throughput over a loop, then each call timed alone for percentiles. */
function time(policy: Policy, flows: Flow[]): Pick<Result, 'perSec' | 'p50ns' | 'p99ns' | 'p999ns' | 'hits' | 'floorNs' | 'hotNs'> {
  floor(flows); // warm-up
  const floorNs = floor(flows);
  // throughput: tight loop over pre-built flows, after one untimed pass (JIT warm-up, and each rule's
  // verdict object is made on its first use: an agent runs for days, its steady state is what counts)
  const now = Date.now();
  for (let i = 0; i < flows.length; i += 1) policy.decide(flows[i]!, now);
  // timed in passes over the flows, and the median pass reported: this machine's speed drifts from
  // second to second (a neighbour's load), and a median is not moved by a few slow passes
  let n = 0;
  let allowed = 0;
  const rates: number[] = [];
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const t = performance.now();
    for (let i = 0; i < flows.length; i += 1) if (policy.decide(flows[i]!, now).rule) allowed++;
    rates.push(flows.length / ((performance.now() - t) / 1000));
    n += flows.length;
  }
  const perSec = median(rates);
  // latency: each call timed on its own (includes ~40 ns of clock reads)
  const samples = new Float64Array(flows.length);
  for (let i = 0; i < flows.length; i++) {
    const a = process.hrtime.bigint();
    policy.decide(flows[i]!, now);
    samples[i] = Number(process.hrtime.bigint() - a);
  }
  samples.sort();
  const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(samples.length * p))]!;
  return { perSec, p50ns: q(0.5), p99ns: q(0.99), p999ns: q(0.999), hits: allowed / n, floorNs, hotNs: hot(policy, flows, now) };
}

async function main(): Promise<void> {
  const cacheArg = process.argv[process.argv.indexOf('--cache') + 1];
  const cacheDir = process.argv.includes('--cache') ? cacheArg : undefined;
  if (process.argv[2] === '--child') {
    process.stdout.write(JSON.stringify(await run(process.argv[3]!, process.argv[4]!, cacheDir, process.argv.includes('--by-id'))));
    return;
  }
  if (process.argv[2] === '--load-only') {
    const { loadMs, readMs, peakRssMB } = load(process.argv[3]!, cacheDir);
    process.stdout.write(JSON.stringify({ loadMs, readMs, peakRssMB }));
    return;
  }
  if (process.argv[2] === '--write-image') {
    const t0 = performance.now();
    const l = loadPolicy(process.argv[3]!, 'passive-allow', { dir: cacheDir!, minBytes: 0, warn: (m) => { throw new Error(m); } });
    if (!l.written) throw new Error('no image written');
    process.stdout.write(JSON.stringify({ loadMs: performance.now() - t0, peakRssMB: process.resourceUsage().maxRSS / 1024 }));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true })); // ~150 MB of catalogs and images a run
  const images = join(dir, 'images');
  const generated = join(dir, 'generated-250k.json');
  const shuffled = join(dir, 'generated-250k-random-order.json');
  const t = performance.now();
  const rules: Rule[] = generateCatalog(250_000, 1); // in random order of application
  const grouped = rules.map((r, i) => [r, i] as const).sort(([x, i], [y, j]) => (x.application < y.application ? -1 : x.application > y.application ? 1 : i - j)).map(([r]) => r);
  writeFileSync(generated, serializeCatalog(grouped, { format: 'tollgate', encoding: 'json' }));
  writeFileSync(shuffled, serializeCatalog(rules, { format: 'tollgate', encoding: 'json' }));
  console.log(`generated ${rules.length} rules in ${((performance.now() - t) / 1000).toFixed(1)} s -> ${generated} (grouped by application), ${shuffled}`);
  const results: Result[] = [];
  const spread: string[] = [];
  const loadMedians = new Map<string, { loadMs: number; peakRssMB: number }>();
  const randomLoads: Load[] = [];
  const node = (args: string[], gc = false): string => {
    const c = spawnSync(process.execPath, [...COMMAND_NODE_FLAGS, ...(gc ? ['--expose-gc'] : []), fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', env: { ...process.env, ...COMMAND_ENV } });
    if (c.status !== 0) throw new Error(`${args.join(' ')}: ${c.stderr}`);
    return c.stdout;
  };
  for (const [file, catalogName] of [[REAL, 'NuAppFirewall legacy catalog'], [generated, 'generated 250k catalog']] as const) {
    // the first start (compile, then keep an image), then the later ones (restore the image)
    const first = JSON.parse(node(['--write-image', file, '--cache', images])) as { loadMs: number; peakRssMB: number };
    spread.push(`  ${catalogName.padEnd(30)} first start, compile and write its image: ${first.loadMs.toFixed(0)} ms, peak RSS ${first.peakRssMB.toFixed(0)} MB`);
    for (const how of ['catalog', 'image'] as const) {
      const name = `${catalogName.replace(' catalog', '')}, ${how === 'catalog' ? 'compiled' : 'from image'}`;
      const cache = how === 'image' ? ['--cache', images] : [];
      const r = JSON.parse(node(['--child', file, name, '--seconds', String(seconds), ...cache, ...(file === generated ? ['--by-id'] : [])], true)) as Result[];
      results.push(...r);
      // A load's time and peak RSS vary from process to process (GC threads' timing): more fresh processes give their spread
      const loads: Load[] = [{ loadMs: r[0]!.loadMs, readMs: r[0]!.readMs, peakRssMB: r[0]!.peakRssMB }];
      const interleave = file === generated && how === 'catalog'; // the random order's loads between these: the machine's speed drifts
      for (let i = 1; i < LOADS; i++) {
        loads.push(JSON.parse(node(['--load-only', file, ...cache])) as Load);
        if (interleave) randomLoads.push(JSON.parse(node(['--load-only', shuffled])) as Load);
      }
      if (interleave) randomLoads.push(JSON.parse(node(['--load-only', shuffled])) as Load);
      // a first load's two parts: reading (hashing, scanning) the file, and the compile
      const parts = how === 'catalog' ? `: read ${range(loads.map((x) => x.readMs), 'ms')} + compile ${range(loads.map((x) => x.loadMs - x.readMs), 'ms')}` : '';
      spread.push(`  ${name.padEnd(40)} load ${range(loads.map((x) => x.loadMs), 'ms')}${parts}, peak RSS ${range(loads.map((x) => x.peakRssMB), 'MB')}`);
      loadMedians.set(name, { loadMs: median(loads.map((x) => x.loadMs)), peakRssMB: median(loads.map((x) => x.peakRssMB)) });
    }
  }
  // the generated rules in random order: a first load only (decisions do not depend on the file's order)
  const randomName = 'generated 250k in random order, compiled';
  spread.push(`  ${randomName.padEnd(40)} load ${range(randomLoads.map((x) => x.loadMs), 'ms')}: read ${range(randomLoads.map((x) => x.readMs), 'ms')} + compile ${range(randomLoads.map((x) => x.loadMs - x.readMs), 'ms')}, peak RSS ${range(randomLoads.map((x) => x.peakRssMB), 'MB')}`);
  const random = { loadMs: median(randomLoads.map((x) => x.loadMs)), peakRssMB: median(randomLoads.map((x) => x.peakRssMB)) };
  console.log('\nworkload: uniform = flows spread evenly over every rule (cache-cold, worst case); skewed = the first rules (a few apps/hosts) take most flows; in both, each of 200,000 flows has strings of its own (unknown paths, hosts), cold as uniform\'s');
  console.log('machine = one machine\'s traffic: 5,000 distinct flows (programs x destinations), popular ones often, strings reused as the agent\'s caches do');
  console.log('each workload: 1/4 unknown app, 1/4 known app to an unknown host, 1/2 to a destination its rule names; timed after one untimed pass over its flows; decisions/s = the median pass over them');
  console.log('read ns = reading each flow\'s strings without deciding (on 200,000 distinct pre-built flows they are cache-cold: a floor no index removes)');
  console.log('hot ns = a decision with its flow and index entries in cache (the same flow decided again): the CPU\'s part; 1e9 / decisions/s - hot ns is waiting for memory');
  console.log('1-probe = decisions/s of a stand-in that implements no policy (bench/one-probe.ts): per flow its strings read, one probe of a pair-table-sized table, one rule record, a rule\'s verdict object where decide() found a rule; what this machine\'s memory allows a one-probe index now');
  console.log(`\n${'catalog, loaded'.padEnd(36)} workload    rules    file MB    load ms  heap MB  peak RSS MB  decisions/s   p50 ns  p99 ns  p99.9 ns  rule hits  read ns  hot ns  1-probe`);
  for (const r of results) {
    console.log(
      `${r.name.padEnd(36)} ${r.workload.padEnd(8)} ${String(r.rules).padStart(7)} ${r.fileMB.toFixed(1).padStart(9)} ${r.loadMs.toFixed(0).padStart(10)} ${r.heapMB.toFixed(0).padStart(8)} ${r.peakRssMB.toFixed(0).padStart(12)} ${Math.round(r.perSec).toLocaleString('en-US').padStart(12)} ${String(r.p50ns).padStart(8)} ${String(r.p99ns).padStart(7)} ${String(r.p999ns).padStart(9)} ${(r.hits * 100).toFixed(0).padStart(9)}% ${r.floorNs.toFixed(0).padStart(8)} ${r.hotNs.toFixed(0).padStart(7)} ${(r.oneProbe / 1e6).toFixed(2).padStart(6)} M`,
    );
  }
  console.log('\nreload, as the agent does it while the old rules decide (file read on a worker thread, compiled in 4 ms slices):');
  for (const r of results.filter((x) => x.workload === 'uniform' && x.name.endsWith('compiled'))) {
    console.log(`  ${r.name.padEnd(36)} ${r.reloadMs.toFixed(0)} ms, longest event-loop stall ${r.reloadStallMs.toFixed(1)} ms (a load: ${r.loadMs.toFixed(0)} ms in one piece)`);
  }
  console.log(`\nloads and peak RSS over ${LOADS} fresh processes (median, min-max):`);
  for (const line of spread) console.log(line);
  console.log('\ntargets: >= 2,000,000 decisions/s, p99 < 5,000 ns, load+compile < 500 ms, peak RSS < 150 MB, heap < 100 MB');
  console.log('("from image" = a start after the first: the compiled-policy cache restores the index; "compiled" = a first start)');
  for (const line of againstTargets(results, loadMedians)) console.log(line);
  console.log(`  ${randomName.padEnd(36)} load ${random.loadMs.toFixed(0)} ms ${mark(random.loadMs < TARGET.loadMs)}, peak RSS ${random.peakRssMB.toFixed(0)} MB ${mark(random.peakRssMB < TARGET.peakRssMB)}`);
}

await main();
