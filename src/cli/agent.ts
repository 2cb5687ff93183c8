/** `tollgate agent` (the Linux daemon) and `tollgate log` (its audit store). */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { CatalogError } from '../catalog/index.js';
import { InvalidRulesError, MODES, type Action, type Mode } from '../policy/index.js';
import type { DecisionRow, LogQuery } from '../store/audit.js';
import { UsageError, cacheDir, cacheOptions, int, mode, oneOf, when, type CacheFlags } from './usage.js';

const isRoot = process.getuid?.() === 0;
/** Root's store is the system's; a user's (monitor mode) lives in their home. */
const DEFAULT_DB = isRoot ? '/var/lib/tollgate/audit.db' : join(homedir(), '.local/state/tollgate/audit.db');

interface AgentFlags extends CacheFlags {
  catalog: string;
  mode?: Mode;
  failMode: 'open' | 'closed';
  db: string;
  keepDays: number;
  keepRows: number;
  queue: number;
  includeLoopback?: boolean;
  askTimeout: number;
  askDefault: Action;
  verbose?: boolean;
  loopStats?: boolean;
  monitor?: boolean;
  queueBuffer?: number;
}

export function agentCommands(program: Command): void {
  cacheOptions(program
    .command('agent')
    .description('intercept new outbound connections (NFQUEUE), decide them by the catalog, record every decision; needs root')
    .requiredOption('--catalog <file>', 'rules (any catalog format tollgate reads); reloaded on SIGHUP and when the file changes')
    .option('--mode <mode>', `when no rule applies (${MODES.join(', ')}); default: the catalog's, else passive-allow`, mode)
    .option('--fail-mode <open|closed>', 'while the agent is down or its queue is full: open lets traffic flow, closed stops it', oneOf('open', 'closed'), 'open')
    .option('--db <file>', 'audit store (SQLite)', DEFAULT_DB)
    .option('--keep-days <n>', 'days the audit store keeps a decision; 0: no bound by age', int(0, 36_500), 30)
    .option('--keep-rows <n>', 'decisions the audit store keeps at most, the newest (~360 bytes each); 0: no bound by number', int(0, 1e12), 10_000_000)
    .option('--queue <n>', 'NFQUEUE number for connections; the next number carries DNS answers', int(0, 65534), 7100)
    .option('--queue-buffer <bytes>', 'socket buffer of the connection queue: how far the agent may fall behind before packets go by unasked (default 8388608)', int(4096, 1 << 30))
    .option('--include-loopback', 'also judge connections to loopback addresses')
    .option('--ask-timeout <ms>', 'ask mode: how long a connection waits for an answer', int(1, 3_600_000), 30_000)
    .option('--ask-default <allow|block>', 'ask mode: the action when nobody answers', oneOf('allow', 'block'), 'block')
    .option('--monitor', 'observe connections and record what the verdict would be; block nothing (the default without root)')
    .option('--verbose', 'print every decision')
    .option('--loop-stats', 'measure how late the event loop runs (a 5 ms timer) and print it at stop'))
    .action(async (o: AgentFlags) => {
      if (!isRoot && !o.monitor) {
        console.error('tollgate agent: not root, so nothing can be blocked: running in monitor mode (observe and record only). Run with sudo to enforce.');
        o.monitor = true;
      }
      try {
        mkdirSync(dirname(o.db), { recursive: true, mode: 0o700 }); // folders it makes are private, as the store is
      } catch (e) {
        throw new UsageError(`cannot create ${dirname(o.db)} for the audit store (${(e as NodeJS.ErrnoException).code}): choose another place with --db`);
      }
      let fatal: ((e: Error) => void) | undefined;
      const { Agent } = await import('../agent/agent.js'); // here, not at the top: other commands start without it (~100 ms)
      const agent = new Agent({
        catalog: o.catalog, failMode: o.failMode, db: o.db, keepDays: o.keepDays, keepRows: o.keepRows, queue: o.queue, includeLoopback: !!o.includeLoopback,
        askTimeoutMs: o.askTimeout, askDefault: o.askDefault, rejectMark: 0x7a110000, verdictCacheS: 5,
        log: (l) => console.error(l), verbose: !!o.verbose, loopStats: !!o.loopStats, monitor: !!o.monitor, ...(o.mode ? { mode: o.mode } : {}),
        onFatal: (e) => fatal?.(e), cacheDir: cacheDir(o),
        ...(o.queueBuffer ? { queueBuffer: o.queueBuffer } : {}),
      });
      try {
        await agent.start();
      } catch (e) {
        if (e instanceof InvalidRulesError || e instanceof CatalogError) throw e;
        throw new UsageError(`the agent could not start: ${(e as Error).message}`);
      }
      process.on('SIGHUP', () => void agent.reload('SIGHUP'));
      await new Promise<void>((resolve) => {
        const stop = (sig: string): void => {
          console.error(`tollgate agent: ${sig}: stopping${o.monitor ? '' : ' and removing its netfilter rules'}`);
          resolve();
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
        fatal = (e) => {
          process.exitCode = 1;
          stop(`cannot go on (${e.message})`);
        };
      });
      await agent.stop();
      const { received, written } = agent.auditCounts;
      const lag = agent.loopLag;
      const late = lag ? `; event loop late p99 ${lag.p99Ms.toFixed(1)} ms, max ${lag.maxMs.toFixed(1)} ms` : '';
      console.error(`tollgate agent: stopped; ${agent.stats.decisions} decisions, ${written}/${received} audit rows written, ${agent.stats.errors} errors${late}`);
      console.error(`tollgate agent: stats ${JSON.stringify({ ...agent.stats, procScans: agent.procScans, auditWritten: written, ...(lag ? { loopP99Ms: lag.p99Ms, loopMaxMs: lag.maxMs } : {}) })}`);
    });

  program
    .command('log')
    .description("query the agent's audit store, newest first")
    .option('--db <file>', 'audit store (SQLite)', DEFAULT_DB)
    .option('--app <id|path>', 'app id, executable path or script path')
    .option('--action <allow|block>', 'only this action', oneOf('allow', 'block'))
    .option('--host <name|ip>', 'remote host name or IP address')
    .option('--since <time>', 'ISO time or age (10m, 2h, 7d)', when)
    .option('--until <time>', 'ISO time or age', when)
    .option('--limit <n>', 'most rows', int(1, 10_000_000), 100)
    .option('--json', 'one JSON object per line')
    .action(async (o: LogQuery & { db: string; json?: boolean }) => {
      try {
        accessSync(o.db, constants.R_OK);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${o.db}: no audit store (has the agent run with --db ${o.db}?)`);
        // EACCES on the store or on its folder (0700: its very existence is hidden from others)
        throw new UsageError(`${o.db}: not readable by this user: the agent's store is private (it holds command lines); read it as its owner, e.g. with sudo`);
      }
      const { AuditStore } = await import('../store/audit.js');
      let rows: DecisionRow[];
      try {
        const store = new AuditStore(o.db, undefined, true);
        try {
          rows = store.query(o);
        } finally {
          store.close();
        }
      } catch (e) {
        throw new UsageError(`${o.db}: not an audit store that can be read (${(e as Error).message})`);
      }
      for (const r of rows) {
        if (o.json) console.log(JSON.stringify(r));
        else {
          const dest = `${r.hostnames[0] ?? r.remoteIp}:${r.port}/${r.protocol}`;
          const who = `${r.appId ? `${r.appId} ` : ''}${r.path}${r.pid !== undefined ? `[${r.pid}]` : ''}`;
          console.log(`${new Date(r.time).toISOString()}  ${r.action.padEnd(5)}  ${who} -> ${dest}  ${r.ruleId ? `rule ${r.ruleId}` : r.level}`);
        }
      }
    });
}
