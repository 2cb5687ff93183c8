/**
 * The agent's netfilter rules, through iptables-nft (the native nft `queue` statement is missing
 * from some kernels; `-j NFQUEUE` works everywhere iptables-nft does). Everything lives in chains of
 * our own plus one jump each from OUTPUT and INPUT, so removal takes exactly what was installed,
 * and a start after a crash first removes what the dead agent left.
 */
import { execFileSync } from 'node:child_process';

export const OUT_CHAIN = 'TOLLGATE-OUT';
export const DNS_CHAIN = 'TOLLGATE-DNS';

export interface NetfilterOptions {
  /** Queue for new outbound connections. */
  queue: number;
  /** Queue for DNS answers coming in (snooped and accepted at once). */
  dnsQueue: number;
  /** open: traffic flows when no agent listens; closed: it stops. */
  failMode: 'open' | 'closed';
  /** Also judge connections to loopback (tests, local services). */
  includeLoopback: boolean;
  /** Packet mark that sends a packet repeated by the agent to REJECT. */
  rejectMark: number;
}

const TOOLS = ['iptables-nft', 'ip6tables-nft'] as const;

function tryRun(tool: string, args: string[]): boolean {
  try {
    execFileSync(tool, ['-w', ...args], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The rules for one address family, as iptables argument lists. */
export function ruleSpecs(o: NetfilterOptions, v6: boolean): { out: string[][]; dns: string[][] } {
  const mark = `0x${o.rejectMark.toString(16)}`;
  const bypass = o.failMode === 'open' ? ['--queue-bypass'] : [];
  const unreachable = v6 ? 'icmp6-port-unreachable' : 'icmp-port-unreachable';
  const out: string[][] = [
    // Packets the agent answered NF_REPEAT + mark come back here and are refused, so the program fails fast.
    ['-p', 'tcp', '-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'REJECT', '--reject-with', 'tcp-reset'],
    ['-m', 'mark', '--mark', `${mark}/${mark}`, '-j', 'REJECT', '--reject-with', unreachable],
  ];
  if (!o.includeLoopback) out.push(['-o', 'lo', '-j', 'RETURN']);
  out.push(
    // Every TCP SYN, whatever conntrack's state: a SYN that reuses the ports of a connection conntrack
    // still holds (one the server reset, for 10 s) is "ignored" by it and filed as ESTABLISHED, and a
    // rule on state NEW let such a new connection through unjudged, by any program.
    ['-p', 'tcp', '--syn', '-j', 'NFQUEUE', '--queue-num', String(o.queue), ...bypass],
    ['-p', 'udp', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-num', String(o.queue), ...bypass],
    // UDP-Lite: any program may open such a socket, and it went by unjudged, in passive-block mode too
    ['-p', 'udplite', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-num', String(o.queue), ...bypass],
  );
  // DNS answers are always bypassed: a dead agent must not take name resolution down with it.
  // Over TCP (large answers, `use-vc` resolvers) every segment is copied, handshake included.
  const dns = ['udp', 'tcp'].map((p) => ['-p', p, '--sport', '53', '-j', 'NFQUEUE', '--queue-num', String(o.dnsQueue), '--queue-bypass']);
  return { out, dns };
}

/**
 * `lines` (iptables commands, e.g. `-A CHAIN ...`) applied to the filter table in one transaction
 * of `<tool>-restore --noflush`: all or none, and one process where one per command took ~25-30 ms
 * each (~0.9 s of an agent's start, ~0.4 s of its stop).
 */
function restore(tool: string, lines: string[][]): void {
  const input = `*filter\n${lines.map((l) => l.join(' ')).join('\n')}\nCOMMIT\n`;
  try {
    execFileSync(`${tool}-restore`, ['--noflush'], { input, stdio: ['pipe', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as { code?: string; stderr?: Buffer };
    if (err.code === 'ENOENT') throw new Error(`${tool}-restore not found: install the iptables package (Debian: apt-get install iptables)`);
    throw new Error(`${tool}-restore: ${err.stderr?.toString().trim() || String(e)}`);
  }
}

/** What of Tollgate's is in `tool`'s filter table: the jumps to its chains, and which chains exist. */
function installedBy(tool: string): string[][] {
  const saved = execFileSync(`${tool}-save`, ['-t', 'filter'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const lines: string[][] = [];
  for (const [from, chain] of [['OUTPUT', OUT_CHAIN], ['INPUT', DNS_CHAIN]] as const) {
    for (const l of saved.split('\n')) if (l === `-A ${from} -j ${chain}`) lines.push(['-D', from, '-j', chain]);
  }
  for (const chain of [OUT_CHAIN, DNS_CHAIN]) if (saved.includes(`\n:${chain} `)) lines.push(['-F', chain], ['-X', chain]);
  return lines;
}

/** Removes every Tollgate chain and jump, whoever installed them. Safe when there are none. */
export function removeRules(): void {
  for (const tool of TOOLS) {
    try {
      const lines = installedBy(tool);
      if (lines.length > 0) restore(tool, lines);
      continue;
    } catch {
      // changed meanwhile, or another rule jumps to a chain: one command at a time, each allowed to fail
    }
    while (tryRun(tool, ['-D', 'OUTPUT', '-j', OUT_CHAIN]));
    while (tryRun(tool, ['-D', 'INPUT', '-j', DNS_CHAIN]));
    for (const chain of [OUT_CHAIN, DNS_CHAIN]) {
      tryRun(tool, ['-F', chain]);
      tryRun(tool, ['-X', chain]);
    }
  }
}

/** Installs the rules (after removing leftovers of a crashed run), one transaction per family. On failure, nothing stays installed. */
export function installRules(o: NetfilterOptions): void {
  removeRules();
  try {
    for (const tool of TOOLS) {
      const { out, dns } = ruleSpecs(o, tool === 'ip6tables-nft');
      restore(tool, [
        [`:${OUT_CHAIN}`, '-', '[0:0]'],
        [`:${DNS_CHAIN}`, '-', '[0:0]'],
        ...out.map((r) => ['-A', OUT_CHAIN, ...r]),
        ...dns.map((r) => ['-A', DNS_CHAIN, ...r]),
        ['-I', 'INPUT', '1', '-j', DNS_CHAIN],
        ['-I', 'OUTPUT', '1', '-j', OUT_CHAIN],
      ]);
    }
  } catch (e) {
    removeRules();
    throw e;
  }
}
