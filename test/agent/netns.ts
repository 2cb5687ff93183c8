/**
 * Two network namespaces joined by a veth pair, made and deleted by the test itself: a client side
 * (where the agent and the programs under test run) and a server side (HTTP, UDP echo, DNS).
 * The host's own network and firewall are never touched.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Why these tests cannot run here, or null when they can. */
export function missingCapability(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, netfilter, NFQUEUE)';
  for (const tool of ['ip', 'iptables-nft', 'ip6tables-nft', 'curl']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch { return `${tool} not installed`; }
  }
  const probe = `tg-probe-${process.pid}`;
  try {
    sh('ip', ['netns', 'add', probe]);
    sh('ip', ['netns', 'exec', probe, 'iptables-nft', '-w', '-L', 'OUTPUT']);
  } catch (e) {
    return `cannot create a network namespace with netfilter: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    try { sh('ip', ['netns', 'del', probe]); } catch { /* never made */ }
  }
  return null;
}

export class TestNet {
  readonly client: string;
  readonly server: string;
  private readonly procs: ChildProcess[] = [];

  constructor(tag: string) {
    this.client = `tg-${tag}-c-${process.pid}`;
    this.server = `tg-${tag}-s-${process.pid}`;
  }

  /** Server 10.77.0.2-6 + 10.77.0.200 and fd77::2; client 10.77.0.1 and fd77::1, resolving through the server. */
  up(): void {
    const { client: c, server: s } = this;
    sh('ip', ['netns', 'add', c]);
    sh('ip', ['netns', 'add', s]);
    sh('ip', ['-n', c, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', s]);
    for (const [ns, dev, addrs] of [[c, 'v0', ['10.77.0.1/24', 'fd77::1/64']], [s, 'v1', ['10.77.0.2/24', '10.77.0.3/24', '10.77.0.4/24', '10.77.0.5/24', '10.77.0.6/24', '10.77.0.200/24', 'fd77::2/64']]] as const) {
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      for (const a of addrs) sh('ip', ['-n', ns, 'addr', 'add', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : [])]);
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    }
    // `ip netns exec` shows /etc/netns/<ns>/resolv.conf as /etc/resolv.conf inside the namespace.
    mkdirSync(`/etc/netns/${c}`, { recursive: true });
    writeFileSync(`/etc/netns/${c}/resolv.conf`, 'nameserver 10.77.0.2\noptions timeout:1 attempts:1\n');
    writeFileSync(`/etc/netns/${c}/hosts`, '127.0.0.1 localhost\n');
  }

  /** Starts a long-running program in a namespace; resolves once its output contains `ready`. */
  start(ns: string, cmd: string[], ready: string | RegExp, stream: 'stdout' | 'stderr' = 'stdout'): Promise<ChildProcess> {
    const p = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(p);
    let out = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cmd.join(' ')}: not ready after 15 s; output:\n${out}`)), 15_000);
      const onData = (d: Buffer): void => {
        out += d.toString();
        if (typeof ready === 'string' ? out.includes(ready) : ready.test(out)) { clearTimeout(timer); resolve(p); }
      };
      p[stream]!.on('data', onData);
      p[stream === 'stdout' ? 'stderr' : 'stdout']!.on('data', (d: Buffer) => { out += d.toString(); });
      p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${cmd.join(' ')} exited (${code}):\n${out}`)); });
    });
  }

  /** Runs a program in the client namespace: exit code, stdout and how long it took. */
  run(cmd: string[]): { code: number; out: string; ms: number } {
    const t0 = performance.now();
    try {
      const out = execFileSync('ip', ['netns', 'exec', this.client, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
      return { code: 0, out, ms: performance.now() - t0 };
    } catch (e) {
      const err = e as { status?: number; stdout?: string };
      return { code: err.status ?? -1, out: err.stdout ?? '', ms: performance.now() - t0 };
    }
  }

  down(): void {
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL');
    for (const ns of [this.client, this.server]) {
      try { sh('ip', ['netns', 'del', ns]); } catch { /* already gone */ }
    }
    rmSync(`/etc/netns/${this.client}`, { recursive: true, force: true });
  }
}
