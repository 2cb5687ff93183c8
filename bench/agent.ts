/**
 * bench/agent: new TCP connections per second through the full agent pipeline (queue, sock_diag,
 * process attribution, DNS names, decide, verdict, audit row), against the same load with no queue,
 * in network namespaces made for the run. If opensnitchd is installed, the same load through it.
 * Prints figures; asserts nothing.
 *
 *   sudo npm run bench:agent   (or: node dist/bench/agent.js [--seconds 5] [--concurrency 32] [--catalog FILE])
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { statFields } from '../src/linux/procs.js';
import { TestNet, missingCapability } from '../test/agent/netns.js';
import { COMMAND_ENV_ARGS, COMMAND_NODE_FLAGS, MAIN } from './node-flags.js';
import { runOpenSnitch } from './opensnitch.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] ?? def : def;
};
const SECONDS = arg('seconds', '5');
const CONC = arg('concurrency', '32');
const ROOT = join(import.meta.dirname, '../..');
const CATALOG = arg('catalog', join(ROOT, 'examples/workstation.json'));
const LOAD = join(ROOT, 'dist/bench/agent-load.js');
const SINK = "require('net').createServer((s)=>s.on('error',()=>{})).listen({port:9000,host:'::',backlog:4096},()=>console.log('ready'))";

export interface LoadResult { connections: number; errors: number; errorKinds: Record<string, number>; perSec: number; p50us: number; p99us: number }

function load(net: TestNet, concurrency = CONC, seconds = SECONDS): LoadResult {
  const r = net.run([process.execPath, LOAD, '10.77.0.2', '9000', seconds, concurrency]);
  if (r.code !== 0) throw new Error(`load generator failed (${r.code}): ${r.out}`);
  return JSON.parse(r.out) as LoadResult;
}

/** CPU seconds (user + system) of a process so far. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  if (!f) throw new Error(`process ${pid} is gone`);
  return (Number(f[11]) + Number(f[12])) / 100;
}

export function peakRssMB(pid: number): number {
  return Number(/VmHWM:\s+([0-9]+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

async function main(): Promise<void> {
  const skip = missingCapability();
  if (skip) {
    console.log(`SKIP bench/agent: ${skip}`);
    return;
  }
  const net = new TestNet('bench');
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'));
  try {
    net.up();
    await net.start(net.server, [process.execPath, '-e', SINK], 'ready');
    console.log(`bench/agent: ${SECONDS} s of short TCP connections, ${CONC} at a time, client and server in two namespaces over veth`);
    const base = load(net);
    const baseLight = load(net, '1', '2');
    console.log(`  no queue        ${fmt(base)}`);

    const agent = await net.start(net.client, ['env', ...COMMAND_ENV_ARGS, process.execPath, ...COMMAND_NODE_FLAGS, ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROF] : []), MAIN, 'agent', '--loop-stats', '--catalog', CATALOG, '--db', join(dir, 'audit.db')], /tollgate agent: \d+ rules/, 'stderr');
    let log = '';
    agent.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    const cpu0 = cpuSeconds(agent.pid!);
    const t0 = performance.now();
    const withAgent = load(net);
    const cpu = (cpuSeconds(agent.pid!) - cpu0) / ((performance.now() - t0) / 1000);
    // One connection at a time: the latency the pipeline adds when the CPUs are not saturated.
    const light = load(net, '1', '2');
    const rss = peakRssMB(agent.pid!);
    const exited = new Promise((r) => agent.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
    if (process.env.BENCH_DEBUG) console.log(log);
    const stats = JSON.parse(/stats (\{.*\})/.exec(log)?.[1] ?? '{}') as { decisions?: number; auditWritten?: number; errors?: number; unasked?: number; cached?: number; gone?: number; loopP99Ms?: number; loopMaxMs?: number };
    console.log(`  tollgate agent  ${fmt(withAgent)}`);
    console.log(`                  added latency p50 ${withAgent.p50us - base.p50us} us, p99 ${withAgent.p99us - base.p99us} us; agent CPU ${(cpu * 100).toFixed(0)}% = ${((cpu * 1e6) / withAgent.perSec).toFixed(0)} us per connection (kernel re-injection included), peak RSS ${rss.toFixed(0)} MB`);
    const made = withAgent.connections + withAgent.errors + light.connections + light.errors;
    const same = stats.decisions === stats.auditWritten && stats.decisions === made;
    console.log(`                  verdicts ${stats.decisions}, audit rows ${stats.auditWritten}, connections made ${made} (${same ? 'every connection recorded' : 'MISMATCH'}), errors ${stats.errors}, packets gone by unasked ${stats.unasked}`);
    if (!same) console.log(`                  load generator errors: ${JSON.stringify({ ...withAgent.errorKinds, ...light.errorKinds })}; packets answered from the verdict cache ${stats.cached}, whose socket was gone ${stats.gone}`);
    console.log(`  one at a time   no queue connect p50 ${baseLight.p50us} us, p99 ${baseLight.p99us} us; agent p50 ${light.p50us} us, p99 ${light.p99us} us: added p50 ${light.p50us - baseLight.p50us} us, p99 ${light.p99us - baseLight.p99us} us`);
    console.log(`                  event loop late p99 ${stats.loopP99Ms?.toFixed(1)} ms, longest stall ${stats.loopMaxMs?.toFixed(1)} ms`);

    const osn = await runOpenSnitch(SINK, load);
    if (typeof osn === 'string') console.log(`  opensnitchd     not measured: ${osn}`);
    else {
      console.log(`  opensnitchd     ${fmt(osn.load)}; CPU ${(osn.cpu * 100).toFixed(0)}% = ${((osn.cpu * 1e6) / osn.load.perSec).toFixed(0)} us per connection, peak RSS ${osn.rssMB.toFixed(0)} MB (${osn.version})`);
      console.log(`  ratio           tollgate/opensnitch throughput ${(withAgent.perSec / Math.max(1, osn.load.perSec)).toFixed(2)}x`);
    }
  } finally {
    net.down();
    rmSync(dir, { recursive: true, force: true });
  }
}

function fmt(r: LoadResult): string {
  const errs = r.errors ? `, ${r.errors} errors ${JSON.stringify(r.errorKinds)}` : '';
  return `${r.perSec.toLocaleString('en')} conn/s, connect p50 ${r.p50us} us, p99 ${r.p99us} us (${r.connections} connections${errs})`;
}

await main();
