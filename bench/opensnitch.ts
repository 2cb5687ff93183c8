/**
 * The same load through opensnitchd (Debian package `opensnitch`), for a side-by-side figure:
 * iptables mode, default action allow, no UI, /proc process lookup, in namespaces of its own.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestNet } from '../test/agent/netns.js';
import { cpuSeconds, peakRssMB, type LoadResult } from './agent.js';

export interface OpenSnitchResult { load: LoadResult; cpu: number; rssMB: number; version: string }

/** Runs `load` against a fresh namespace pair with opensnitchd in the client one; a string says why not. */
export async function runOpenSnitch(sink: string, load: (net: TestNet) => LoadResult): Promise<string | OpenSnitchResult> {
  let version: string;
  try {
    version = `opensnitchd ${execFileSync('opensnitchd', ['-version'], { encoding: 'utf8' }).trim()}`;
  } catch {
    return 'opensnitchd is not installed (Debian: apt-get install opensnitch)';
  }
  const net = new TestNet('osn');
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-osn-'));
  try {
    net.up();
    await net.start(net.server, [process.execPath, '-e', sink], 'ready');
    mkdirSync(join(dir, 'rules'));
    const d = await net.start(net.client, [
      'opensnitchd', '-rules-path', join(dir, 'rules'), '-queue-num', '7300', '-process-monitor-method', 'proc',
      '-ui-socket', `unix://${join(dir, 'ui.sock')}`, '-important',
    ], /Starting opensnitch/);
    // Wait until its netfilter rules are in place before loading.
    for (let i = 0; i < 100; i++) {
      if (execFileSync('ip', ['netns', 'exec', net.client, 'iptables-nft-save'], { encoding: 'utf8' }).includes('NFQUEUE')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const cpu0 = cpuSeconds(d.pid!);
    const t0 = performance.now();
    const result = load(net);
    const cpu = (cpuSeconds(d.pid!) - cpu0) / ((performance.now() - t0) / 1000);
    const rssMB = peakRssMB(d.pid!);
    d.kill('SIGTERM');
    return { load: result, cpu, rssMB, version };
  } finally {
    net.down();
    rmSync(dir, { recursive: true, force: true });
  }
}
