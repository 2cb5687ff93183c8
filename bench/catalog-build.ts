/**
 * bench/catalog-build: a synthetic Cortex XDR access log shaped like NuAppFirewall's input
 * (21,000,000 lines, ~5,000 applications, Zipf-like applications and hosts, IP-only accesses,
 * ephemeral ports, devices and users, 0.01% malformed lines), then `tollgate catalog build` on it
 * in a child process. Reports lines/s, peak RSS and catalog size. Asserts nothing.
 *
 *   npm run bench:catalog-build   (or: node dist/bench/catalog-build.js [--lines 21000000])
 * The log is written once to $TMPDIR/tollgate-bench/ and reused.
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { prng } from './gen.js';
import { COMMAND_ENV, COMMAND_NODE_FLAGS, MAIN } from './node-flags.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const LINES = arg('lines', 21_000_000);
const APPS = 5000;
const DOMAINS = 40_000;
const ROOT = join(import.meta.dirname, '../..');

const HEADER = ['causality_actor_process_image_path', 'os_actor_process_image_path', 'os_actor_process_image_name', 'action_local_port',
  'action_remote_ip', 'dst_action_external_hostname', 'action_remote_port', 'count_endpoints', 'agent_hostname', 'actor_effective_username', '_time'];
const TLDS = ['com', 'net', 'io', 'org', 'co.uk', 'com.br', 'de', 'cloud'];
const SUBS = ['api', 'cdn', 'www', 'updates', 'telemetry', 'static', 'auth', 'ws', 'edge', 'media', 'eu', 'us'];

/** Log-uniform rank in [0, n): Zipf with exponent ~1, without a table. */
const zipf = (r: (n: number) => number, n: number): number => Math.min(n - 1, Math.floor(Math.exp((r(1_000_000) / 1_000_000) * Math.log(n + 1))) - 1);

async function generate(file: string): Promise<void> {
  const r = prng(2024);
  const apps = Array.from({ length: APPS }, (_, i) => {
    const name = `App${i}`;
    const kind = i % 5;
    const path = kind === 0 ? `/usr/local/bin/${name.toLowerCase()}` : kind === 1 ? `/Library/Application Support/${name}/bin/${name}d`
      : `/Applications/${name}.app/Contents/MacOS/${name}`;
    return { path, name: path.slice(path.lastIndexOf('/') + 1) };
  });
  const domain = (d: number): string => `site${d}.${TLDS[d % TLDS.length]}`;
  const out = createWriteStream(`${file}.part`, { highWaterMark: 4 * 1024 * 1024 });
  let chunk = `${HEADER.join('\t')}\n`;
  const t0 = Date.parse('2026-10-01T00:00:00Z');
  for (let i = 0; i < LINES; i++) {
    const a = zipf(r, APPS);
    const app = apps[a]!;
    // Each application talks to its own Zipf-ranked handful of domains and hosts, as real software does.
    // Real software talks to a handful of its own domains and a few shared ones (CDNs, clouds):
    // NuAppFirewall's 21M log lines made a catalog of about 250,000 rules.
    const d = r(10) < 2 ? zipf(r, 15) : (zipf(r, 5) * 7919 + a * 104_729) % DOMAINS;
    const host = r(4) === 0 ? domain(d) : `${SUBS[(d + zipf(r, 3)) % SUBS.length]}${r(500) === 0 ? r(20) : ''}.${domain(d)}`;
    const ip = `${(d >> 8) % 200 + 20}.${d & 255}.${d % 7}.${(d * 31) % 250 + 1}`;
    const ipOnly = r(10) < 3;
    const p = r(100);
    // Ephemeral remote ports belong to the few peer-to-peer and media applications.
    const port = a % 50 === 7 && p < 30 ? 1024 + r(3000) : p < 85 ? 443 : p < 97 ? 80 : 53;
    const line = `${app.path}\t${app.path}\t${app.name}\t${49152 + r(16_000)}\t${ip}\t${ipOnly ? '' : host}\t${port}\t1\tmac-${r(3000)}\tuser${r(2500)}\t${new Date(t0 + r(33 * 86_400) * 1000).toISOString()}\n`;
    chunk += r(10_000) === 0 ? `${app.path}\tbroken line\n` : line;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
  renameSync(`${file}.part`, file);
}

const dir = join(tmpdir(), 'tollgate-bench');
mkdirSync(dir, { recursive: true });
const log = join(dir, `edr-${LINES}.tsv`);
if (!existsSync(log)) {
  const t = performance.now();
  process.stdout.write(`generating ${LINES.toLocaleString('en')} log lines into ${log} ... `);
  await generate(log);
  console.log(`${((performance.now() - t) / 1000).toFixed(0)} s`);
}
const out = join(dir, 'catalog.json');
const t = performance.now();
const res = spawnSync('/usr/bin/time', ['-f', '%M %e %U %S', process.execPath, ...COMMAND_NODE_FLAGS, MAIN, 'catalog', 'build', '--logs', log, '--out', out, '--no-progress', '--min-devices', '2'], { encoding: 'utf8', env: { ...process.env, ...COMMAND_ENV } });
const secs = (performance.now() - t) / 1000;
if (res.status !== 0) {
  console.error(res.stderr);
  process.exit(1);
}
const [rssKb, , user, sys] = res.stderr.trim().split('\n').pop()!.split(' ').map(Number);
console.log(res.stderr.trim().split('\n').slice(0, -1).join('\n'));
const size = statSync(log).size;
console.log(`\nbench/catalog-build: ${LINES.toLocaleString('en')} lines, ${(size / 2 ** 30).toFixed(2)} GiB of TSV`);
console.log(`  wall ${secs.toFixed(1)} s = ${Math.round(LINES / secs).toLocaleString('en')} lines/s, ${(size / 2 ** 20 / secs).toFixed(0)} MiB/s; CPU user ${user} s + sys ${sys} s`);
console.log(`  peak RSS ${(rssKb! / 1024).toFixed(0)} MB; catalog ${(statSync(out).size / 2 ** 20).toFixed(1)} MB`);
