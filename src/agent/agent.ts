/**
 * The daemon: packet -> 5-tuple -> socket (sock_diag) -> process -> DNS names -> decide -> verdict
 * to the kernel -> audit row. Every queued packet gets exactly one verdict, even when something
 * fails on the way (then the fail mode answers and the error is reported).
 */
import { statSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { CatalogError, loadPolicy as loadCompiledPolicy, reloadPolicy, untrustedCatalog, type ImageJob } from '../catalog/index.js';
import { Policy, decideWithAsk, type Action, type AppIdentity, type Flow, type Mode, type Verdict } from '../policy/index.js';
import { DnsNames } from '../linux/dns.js';
import { MAX_STREAMS, TcpDnsStreams } from '../linux/dns-tcp.js';
import { installRules, removeRules } from '../linux/netfilter.js';
import { NF_ACCEPT, NF_DROP, NF_REPEAT, NfQueue, monotonicMs, type QueuedPacket } from '../linux/nfqueue.js';
import { parsePacket, tupleKey, type Tuple } from '../linux/packet.js';
import { ReadLoop } from '../linux/readloop.js';
import { ProcEvents } from '../linux/procevents.js';
import { ProcessResolver, processKey, type ExitedProcess, type ProcessInfo } from '../linux/procs.js';
import { SockDiag, type SocketOwner, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_SENT, UDP_CONNECTED } from '../linux/sockdiag.js';
import type { DecisionRow } from '../store/audit.js';
import { catalogIdentity, watchCatalog, type CatalogWatch } from './catalog-watch.js';
import { AuditWriter } from '../store/writer.js';

export interface AgentOptions {
  catalog: string;
  /**
   * Measure how late the event loop runs (loopLag). Off by default: its timer wakes the agent every
   * 5 ms, 200 times a second on an idle laptop, where the agent otherwise wakes a few times.
   */
  loopStats?: boolean;
  /** Overrides the catalog's mode. */
  mode?: Mode;
  failMode: 'open' | 'closed';
  db: string;
  /** Days the audit store keeps a row, and rows it keeps at most (0 or absent: no such bound). */
  keepDays?: number;
  keepRows?: number;
  queue: number;
  includeLoopback: boolean;
  askTimeoutMs: number;
  askDefault: Action;
  rejectMark: number;
  /** Seconds a verdict is reused for the same 5-tuple (SYN retransmits, later UDP datagrams). */
  verdictCacheS: number;
  /** The connection queue's socket buffer, bytes (default 8 MiB, nfqueue.ts). */
  queueBuffer?: number;
  log: (line: string) => void;
  /** The agent cannot go on (its packet reader died): the caller should stop it. */
  onFatal?: (e: Error) => void;
  /** Print every decision. */
  verbose: boolean;
  /** Observe connections (sock_diag polling) and record would-be verdicts; no queue, no rules. */
  monitor?: boolean;
  /** The compiled-policy cache's folder (catalog/policy-cache.ts); null: none. Default: defaultCacheDir(). */
  cacheDir?: string | null;
}

/** The addresses and ports of a connection, from a packet or a socket dump. */
type Conn = Pick<Tuple, 'protocol' | 'src' | 'sport' | 'dst' | 'dport'>;

const MONITOR_POLL_MS = 100;
/**
 * A packet whose process is gone (its socket closed, or no process holding it) waits until the
 * process events thread has handed over every event the kernel sent up to this long after that was
 * found: the sender's exit event comes before (a process whose other threads close its sockets as
 * they exit) or microseconds after (a single thread's close, then its exit), unless the exiting
 * process is preempted in between. Not "until some exit of that uid is heard": an earlier exit could
 * then be taken for the sender's. (A fixed 50 ms wait was not enough: with the CPUs busy the events
 * thread lagged further.)
 */
const EXIT_AFTER_CLOSE_MS = 20;
/** The longest such a packet waits, should the events thread lag further still or stop. */
const EXIT_EVENT_CAP_MS = 1000;
/** How long a uid's list of live programs serves connections whose process was gone (judgeGone). */
const PROGRAMS_MS = 1000;
const GONE = 'gone '; // key prefix of a packet whose socket was gone: judged alone, never cached (onPacket)
const LOOP_TICK_MS = 5; // the event-loop delay histogram's timer
const isLoopback = (ip: string): boolean => ip.startsWith('127.') || ip === '::1';

/** A process as the policy sees it. */
function appOf(p: ProcessInfo): AppIdentity {
  // a program whose executable is not the file its path names here is of unknown program (its app id, from its cgroup, still counts)
  const app: AppIdentity = { path: p.pathUnverified ? UNKNOWN_PROCESS : p.path, cmdline: p.cmdline, pid: p.pid, uid: p.uid };
  if (p.appId || p.pathUnverified) app.id = p.appId ?? UNKNOWN_PROCESS;
  if (p.script) app.script = p.script;
  if (p.preloads) app.preloads = p.preloads;
  if (p.user) app.user = p.user;
  if (p.groups.length) app.groups = p.groups;
  return app;
}

/** The identity of a connection whose process could not be found; rules can name it. */
export const UNKNOWN_PROCESS = 'unknown-process';

export interface AgentStats {
  packets: number;
  decisions: number;
  cached: number;
  /** Packets whose socket was already gone when looked up (judged as their process's exit allows). */
  gone: number;
  unparsed: number;
  errors: number;
  dnsAnswers: number;
  /** New connections' packets the kernel could not hand over (the agent fell behind): passed unjudged (fail-open) or dropped (fail-closed); no verdict, no row. */
  unasked: number;
  /** DNS answers the kernel could not hand over: passed, their names not learnt. */
  dnsUnasked: number;
  /** Names from DNS answers not kept: the agent's name tables were full (dns.ts LIMITS). */
  dnsDropped: number;
  /** DNS-over-TCP connections not followed: as many as it follows at once were open (dns-tcp.ts MAX_STREAMS). */
  dnsTcpUnfollowed: number;
}

export class Agent {
  policy!: Policy;
  private mode: Mode = 'passive-allow';
  private queue?: NfQueue;
  private dnsQueue?: NfQueue;
  private events?: ProcEvents;
  private loop?: ReadLoop;
  private diag?: SockDiag;
  private readonly procs = new ProcessResolver();
  private readonly uidPrograms = new Map<number, { at: number; list: Promise<ProcessInfo[]> }>();
  private readonly dns = new DnsNames();
  private readonly dnsTcp = new TcpDnsStreams();
  private store?: AuditWriter;
  private storeFailureReported = false;
  /** 5-tuple + socket inode -> verdict, for later packets of a flow already judged. */
  private readonly verdicts = new Map<string, { allow: boolean; until: number }>();
  /** Same key -> packet ids waiting for the first packet's verdict (monitor mode: none). */
  private readonly pending = new Map<string, number[]>();
  private watcher?: CatalogWatch;
  private reloads: Promise<unknown> = Promise.resolve();
  private loadedHow = '';
  private imageJob?: ImageJob;
  private imageWrite?: AbortController;
  private readonly stopping = new AbortController(); // ends a reload under way when the agent stops
  private sweeper?: NodeJS.Timeout;
  private poller?: NodeJS.Timeout;
  /** Monitor mode: inodes of the connections already recorded. */
  private observed = new Set<number>();
  /** When the previous socket dump began: a socket first seen now was opened or connected after it. */
  private lastDumpAt = 0;
  /** Event-loop delay: a stall here delays every verdict. */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_TICK_MS });
  readonly stats: AgentStats = { packets: 0, decisions: 0, cached: 0, gone: 0, unparsed: 0, errors: 0, dnsAnswers: 0, unasked: 0, dnsUnasked: 0, dnsDropped: 0, dnsTcpUnfollowed: 0 };

  constructor(readonly opts: AgentOptions) {}

  /**
   * How late the event loop ran, in ms: p99 and worst. The histogram holds the time between its
   * timer's runs, tick included (an idle loop reads 5.1 ms); what delays verdicts is the excess.
   */
  get loopLag(): { p99Ms: number; maxMs: number } | null {
    if (!this.opts.loopStats) return null;
    const late = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_TICK_MS);
    return { p99Ms: late(this.loopDelay.percentile(99)), maxMs: late(this.loopDelay.max) };
  }

  /**
   * At start nothing waits for a verdict yet: the policy comes from the compiled-policy cache when the
   * catalog was loaded before (a restart, a boot), else it is compiled. A reload reads on a worker
   * thread, which also reads the image when the cache has one of the same bytes (a SIGHUP with the
   * catalog unchanged), else compiles in slices while the old rules decide. Either way a compiled
   * policy's image is then written in slices while the agent decides (keepImage), for the next start.
   */
  private async loadPolicy(sliced: boolean): Promise<void> {
    const untrusted = untrustedCatalog(this.opts.catalog);
    if (untrusted) throw new CatalogError(untrusted);
    const cache = { dir: this.opts.cacheDir, warn: this.opts.log };
    if (!sliced) {
      const t = performance.now();
      const { policy, from, job } = loadCompiledPolicy(this.opts.catalog, this.opts.mode, { ...cache, write: 'later' });
      this.policy = policy;
      this.mode = policy.mode;
      this.imageJob = job;
      this.loadedHow = `${from === 'image' ? 'from its compiled image' : 'compiled'} in ${(performance.now() - t).toFixed(0)} ms`;
      return;
    }
    const t = performance.now();
    const { policy, from, job } = await reloadPolicy(this.opts.catalog, this.opts.mode, { ...cache, signal: this.stopping.signal });
    this.policy = policy;
    this.mode = policy.mode;
    this.imageJob = job;
    this.loadedHow = `${from === 'image' ? 'from its compiled image' : 'compiled in slices'} in ${(performance.now() - t).toFixed(0)} ms`;
  }

  /** Writes the image of the policy just loaded, if it needs one, in slices; a newer load or stop() abandons it. */
  private keepImage(): void {
    this.imageWrite?.abort();
    const job = this.imageJob;
    this.imageJob = undefined;
    if (!job) return;
    const ctl = (this.imageWrite = new AbortController());
    const t = performance.now();
    void job.write(4, ctl.signal).then((ok) => {
      if (ok) this.opts.log(`tollgate agent: compiled image kept for the next start (${job.file}, written in ${(performance.now() - t).toFixed(0)} ms while deciding)`);
    });
  }

  /** Loads the catalog, opens the store and queues, then installs the netfilter rules. */
  async start(): Promise<void> {
    const loaded = catalogIdentity(this.opts.catalog); // before the read: a change while the agent starts is then seen
    await this.loadPolicy(false);
    // The store's and the process events' threads start together (~50-100 ms each to boot)
    const [store, events] = await Promise.allSettled([
      AuditWriter.open(this.opts.db, undefined, { ...(this.opts.keepDays ? { ms: this.opts.keepDays * 86_400_000 } : {}), ...(this.opts.keepRows ? { rows: this.opts.keepRows } : {}) }),
      ProcEvents.start(
        (events) => { for (const e of events) this.procs.onEvent(e); },
        (e) => this.opts.log(`tollgate agent: WARNING: process events stopped: ${e.message}`),
      ),
    ]);
    if (events.status === 'fulfilled') this.events = events.value;
    if (store.status === 'rejected') {
      await this.events?.stop();
      throw store.reason;
    }
    this.store = store.value;
    const dbMode = statSync(this.opts.db).mode;
    if ((dbMode & 0o044) !== 0) this.opts.log(`tollgate agent: WARNING: audit store ${this.opts.db} can be read by other users (mode ${(dbMode & 0o777).toString(8)}): it records command lines and every host reached; chmod 600 it`);
    if (events.status === 'rejected') {
      this.opts.log(`tollgate agent: WARNING: ${(events.reason as Error).message}; a program that connects and exits at once may be recorded as ${UNKNOWN_PROCESS} without its path`);
    }
    if (this.opts.monitor) {
      this.diag = new SockDiag();
      this.poller = setInterval(() => this.poll(), MONITOR_POLL_MS);
      this.poll();
    } else try {
      const failOpen = this.opts.failMode === 'open';
      this.queue = new NfQueue(this.opts.queue, { copyRange: 128, failOpen, ...(this.opts.queueBuffer ? { rcvbuf: this.opts.queueBuffer } : {}) });
      this.dnsQueue = new NfQueue(this.opts.queue + 1, { copyRange: 0xffff, failOpen: true });
      this.diag = new SockDiag();
      const conns = this.queue;
      const dns = this.dnsQueue;
      // DNS answers first: a program connects only after its answer came, and when both wait in one
      // turn the names (and whose they are) must be known before the connection is judged.
      this.loop = new ReadLoop(
        [
          { fd: dns.fd, drain: (max) => dns.drain(max, (b) => this.onDns(b)) },
          { fd: conns.fd, drain: (max) => conns.drain(max, (b) => this.onPackets(b)) },
        ],
        (e) => {
          // Nothing reads the queues any more: better stopped (rules removed) than holding every connection.
          this.opts.log(`tollgate agent: FATAL: ${e.message}`);
          this.opts.onFatal?.(e);
        },
      );
      await this.loop.start(); // reading before any packet is sent to the queues
      installRules({
        queue: this.opts.queue, dnsQueue: this.opts.queue + 1, failMode: this.opts.failMode,
        includeLoopback: this.opts.includeLoopback, rejectMark: this.opts.rejectMark,
      });
    } catch (e) {
      await this.stop();
      throw e;
    }
    this.watcher = watchCatalog(
      this.opts.catalog,
      () => void this.reload('catalog file changed'),
      (e) => this.opts.log(`tollgate agent: WARNING: catalog changes are no longer followed: ${e.message}; SIGHUP still reloads`),
      loaded,
    );
    this.sweeper = setInterval(() => this.sweep(), 5000);
    if (this.opts.loopStats) this.loopDelay.enable();
    const s = this.policy.stats();
    const how = this.opts.monitor ? 'MONITOR ONLY (nothing is blocked)' : `fail ${this.opts.failMode}, queue ${this.opts.queue}`;
    this.opts.log(`tollgate agent: ${s.rules} rules from ${this.opts.catalog} (${this.loadedHow}), mode ${this.mode}, ${how}, audit ${this.opts.db}`);
    this.keepImage();
  }

  /**
   * Swaps in the catalog as it is now; a bad catalog leaves the running policy in place. Reloads run
   * one after another: two compiles at once would finish in either order.
   */
  reload(why: string): Promise<boolean> {
    const next = this.reloads.then(() => this.reloadNow(why));
    this.reloads = next;
    return next;
  }

  private async reloadNow(why: string): Promise<boolean> {
    try {
      await this.loadPolicy(true);
      this.verdicts.clear();
      this.opts.log(`tollgate agent: reloaded (${why}): ${this.policy.stats().rules} rules, mode ${this.mode}, ${this.loadedHow}`);
      this.keepImage();
      return true;
    } catch (e) {
      if (this.stopping.signal.aborted) return false; // stop() came first: no reload to report
      this.opts.log(`tollgate agent: reload failed (${why}), keeping the previous rules: ${(e as Error).message}`);
      return false;
    }
  }

  /** Removes the netfilter rules first (traffic flows again), then drains and closes everything. */
  async stop(): Promise<void> {
    this.stopping.abort(new Error('the agent is stopping'));
    this.imageWrite?.abort();
    this.watcher?.close();
    clearInterval(this.sweeper);
    clearInterval(this.poller);
    this.loopDelay.disable();
    if (!this.opts.monitor) removeRules();
    await this.loop?.stop();
    await this.events?.stop(); // judges the packets that waited for an exit, while the queue is open
    this.checkUnasked();
    this.queue?.close();
    this.dnsQueue?.close();
    this.diag?.close();
    await this.store?.close();
  }

  /** Full /proc scans so far (a miss the hot processes did not answer). */
  get procScans(): number {
    return this.procs.scans;
  }

  get auditCounts(): { received: number; written: number } {
    return { received: this.store?.received ?? 0, written: this.store?.written ?? 0 };
  }

  /** Says so when packets went by unasked since the last look: the audit store has no row for them. */
  private checkUnasked(): void {
    const conns = this.queue?.unasked ?? 0;
    const dns = this.dnsQueue?.unasked ?? 0;
    if (conns > this.stats.unasked) {
      const what = this.opts.failMode === 'open' ? 'went through unjudged and unrecorded (fail-open)' : 'were dropped (fail-closed; the programs retry)';
      this.opts.log(`tollgate agent: WARNING: ${conns - this.stats.unasked} packets of new connections ${what}: the agent fell behind and the kernel's queue buffer overflowed`);
    }
    if (dns > this.stats.dnsUnasked) this.opts.log(`tollgate agent: WARNING: ${dns - this.stats.dnsUnasked} DNS answers went by unread: their names are not known to host rules`);
    this.stats.unasked = conns;
    this.stats.dnsUnasked = dns;
  }

  private sweep(): void {
    this.checkUnasked();
    const now = Date.now();
    if (this.store?.error && !this.storeFailureReported) {
      this.storeFailureReported = true;
      this.opts.log(`tollgate agent: AUDIT STORE FAILED, decisions are no longer recorded: ${this.store.error.message}`);
    }
    for (const [k, v] of this.verdicts) if (v.until < now) this.verdicts.delete(k);
    this.dns.sweep(now, (asker) => !this.procs.alive(asker));
    this.dnsTcp.sweep(now);
    this.sayMore('dnsDropped', this.dns.dropped, (n) => `${n} names from DNS answers not kept: the agent's name tables are full (a program flooding DNS answers?); host rules do not see them`);
    this.sayMore('dnsTcpUnfollowed', this.dnsTcp.unfollowed, (n) => `${n} DNS-over-TCP connections not followed: ${MAX_STREAMS} were open at once (a program opening many?); host rules do not see their names`);
  }

  /** A count that only grows, kept in the stats: a WARNING with what it grew by since the last sweep. */
  private sayMore(stat: 'dnsDropped' | 'dnsTcpUnfollowed', count: number, what: (n: number) => string): void {
    if (count > this.stats[stat]) this.opts.log(`tollgate agent: WARNING: ${what(count - this.stats[stat])}`);
    this.stats[stat] = count;
  }

  /**
   * DNS answers: the receiving socket is looked up (~10 us) and its program sought among the known,
   * hot and young ones (microseconds) *before* the answer is let through, while the socket surely
   * exists: a resolver closes it right after the answer. Everything else (decoding, a /proc scan
   * if needed) happens after the accept, so an answer is never held back by more than that.
   */
  private onDns(batch: QueuedPacket[]): void {
    const tuples = batch.map((p) => parsePacket(p.payload));
    // Only packets that carry data can hold an answer (not a TCP handshake or ACK).
    const askers = tuples.map((t, i) => (t && t.dataOffset < batch[i]!.payload.length ? this.askerOf(t) : undefined));
    for (const p of batch) this.dnsQueue!.verdict(p.id, NF_ACCEPT);
    batch.forEach((p, i) => {
      const t = tuples[i];
      if (!t) return;
      const learn = (m: Buffer): void => {
        const learnt = this.dns.learn(m);
        if (!learnt.length) return;
        this.stats.dnsAnswers++;
        const asker = askers[i];
        if (asker?.now) this.dns.assign(processKey(asker.now), learnt);
        else if (asker) {
          // Only now that the answer taught something is a /proc scan worth it.
          this.procs.resolve(asker.inode, asker.uid).then((k) => { if (k) this.dns.assign(processKey(k), learnt); }, () => { /* everyone's names still hold them */ });
        }
      };
      if (t.protocol === 'udp') learn(p.payload.subarray(t.dataOffset));
      else this.dnsTcp.add(tupleKey(t), p.payload.subarray(t.l4), learn);
    });
  }

  /** The socket receiving a DNS answer (the local end of its tuple), and its program if found without a scan. */
  private askerOf(t: Tuple): (SocketOwner & { now?: ProcessInfo }) | undefined {
    const local: Tuple = { ...t, src: t.dst, sport: t.dport, dst: t.src, dport: t.sport, srcRaw: t.dstRaw, dstRaw: t.srcRaw };
    const owner = this.diag!.lookup(local);
    if (!owner) return undefined;
    const now = this.procs.resolveNow(owner.inode, owner.uid);
    return now ? { ...owner, now } : owner;
  }

  private onPackets(batch: QueuedPacket[]): void {
    for (const p of batch) {
      this.stats.packets++;
      try {
        this.onPacket(p);
      } catch (e) {
        this.fail(p.id, e);
      }
    }
  }

  private fail(id: number, e: unknown): void {
    this.stats.errors++;
    this.opts.log(`tollgate agent: error judging a packet, fail ${this.opts.failMode}: ${(e as Error).stack ?? String(e)}`);
    try {
      this.queue!.verdict(id, this.opts.failMode === 'open' ? NF_ACCEPT : NF_DROP);
    } catch { /* queue closed */ }
  }

  private answer(id: number, allow: boolean): void {
    if (allow) this.queue!.verdict(id, NF_ACCEPT);
    else this.queue!.verdict(id, NF_REPEAT, this.opts.rejectMark);
  }

  private onPacket(p: QueuedPacket): void {
    const t = parsePacket(p.payload);
    if (!t) {
      // Only TCP SYNs and UDP reach the queue; what does not parse (a fragment) is not a new flow.
      this.stats.unparsed++;
      return this.queue!.verdict(p.id, NF_ACCEPT);
    }
    // The cache is keyed by 5-tuple *and* socket: a SYN retransmit or the next datagram of the same
    // socket reuses the verdict, but a new socket that reuses the tuple (ports are reused at once
    // after a reset) is a new connection, maybe of another program, and is judged afresh.
    const owner = this.diag!.lookup(t);
    // The socket is gone already: its process closed it and is likely exiting. Nothing tells it from
    // another gone socket that had the same tuple (a one-shot sender's next run on the same port, as
    // another user maybe): its packet is judged and recorded on its own, neither cached nor joined.
    if (!owner) {
      this.stats.gone++;
      const gone = `${GONE}${p.id}`;
      this.pending.set(gone, [p.id]);
      return this.judgeGone(gone, t, p.uid, p.sentAfter);
    }
    const key = `${tupleKey(t)} ${owner.inode}`;
    const cached = this.verdicts.get(key);
    if (cached && cached.until > Date.now()) {
      this.stats.cached++;
      return this.answer(p.id, cached.allow);
    }
    const waiting = this.pending.get(key);
    if (waiting) return void waiting.push(p.id);
    this.pending.set(key, [p.id]);
    const known = this.procs.known(owner.inode);
    if (known) return this.judge(key, t, known, owner.uid);
    this.procs.resolve(owner.inode, owner.uid).then(
      // No process holds the socket: it is exiting (its other threads or a child still hold it).
      (info) => (info ? this.judge(key, t, info, owner.uid) : this.judgeGone(key, t, owner.uid, p.sentAfter)),
      (e: unknown) => this.failPending(key, e),
    );
  }

  /**
   * A connection whose process is gone or going: waits for the process events up to a moment after
   * now, so the record can name the program by its exit (only these connections wait).
   * `aliveAfter` (CLOCK_MONOTONIC ms): a time at which the process surely lived. Not a time its
   * socket was seen: a process's exit event can come before its socket closes (the socket is
   * closed by its last thread, the event is sent by the first).
   */
  private judgeGone(key: string, t: Conn, uid: number | undefined, aliveAfter: number): void {
    if (uid === undefined) return this.judge(key, t, null, uid, aliveAfter);
    const exits = this.events ? this.events.caughtUp(monotonicMs() + EXIT_AFTER_CLOSE_MS, EXIT_EVENT_CAP_MS) : Promise.resolve();
    void Promise.all([this.programsOf(uid), exits]).then(
      ([programs]) => this.judge(key, t, null, uid, aliveAfter, programs),
      (e: unknown) => this.failPending(key, e),
    );
  }

  /** The live programs of a uid, listed at most once a second (a flood of gone packets must not list /proc for each). */
  private programsOf(uid: number): Promise<ProcessInfo[]> {
    const now = Date.now();
    const c = this.uidPrograms.get(uid);
    if (c && now - c.at < PROGRAMS_MS) return c.list;
    const list = this.procs.programsOf(uid);
    this.uidPrograms.set(uid, { at: now, list });
    return list;
  }

  /**
   * Monitor mode: lists outbound TCP (connecting or connected) and connected UDP sockets, and
   * judges each one not seen before. Inbound TCP is told apart by its local port being listened on.
   * A connection shorter than the poll interval can be missed: that is the price of no root.
   */
  private poll(): void {
    const diag = this.diag!;
    const aliveAfter = this.lastDumpAt;
    this.lastDumpAt = monotonicMs();
    const seen = new Set<number>();
    for (const family of [4, 6] as const) {
      const listening = new Set(diag.dump(family, 'tcp', 1 << TCP_LISTEN).map((s) => s.sport));
      const socks = [
        ...diag.dump(family, 'tcp', (1 << TCP_SYN_SENT) | (1 << TCP_ESTABLISHED)).filter((s) => !listening.has(s.sport)),
        ...diag.dump(family, 'udp', 1 << UDP_CONNECTED),
        ...diag.dump(family, 'udplite', 1 << UDP_CONNECTED),
      ];
      for (const s of socks) {
        if (!s.inode) continue;
        seen.add(s.inode);
        if (this.observed.has(s.inode) || (!this.opts.includeLoopback && isLoopback(s.dst))) continue;
        this.observed.add(s.inode);
        const key = `monitor ${s.inode}`;
        this.pending.set(key, []);
        this.procs.resolve(s.inode, s.uid).then(
          (info) => (info ? this.judge(key, s, info, s.uid) : this.judgeGone(key, s, s.uid, aliveAfter)),
          (e: unknown) => this.failPending(key, e),
        );
      }
    }
    for (const i of this.observed) if (!seen.has(i)) this.observed.delete(i);
  }

  private failPending(key: string, e: unknown): void {
    const ids = this.pending.get(key) ?? [];
    if (!ids.length) {
      this.stats.errors++;
      this.opts.log(`tollgate agent: error judging a connection: ${(e as Error).stack ?? String(e)}`);
    }
    for (const id of ids) this.fail(id, e);
    this.pending.delete(key);
  }

  /**
   * `aliveAfter` (CLOCK_MONOTONIC ms): a time at which the connection's process surely lived (the
   * packet was sent after it, or its socket was seen after it), to name a process that exited
   * before it was found.
   */
  private judge(key: string, t: Conn, proc: ProcessInfo | null, uid: number | undefined, aliveAfter = 0, programs: ProcessInfo[] = []): void {
    try {
      // Gone before found: decided as unknown-process (a guess must not pick an allowing rule; the
      // strictest of its uid's programs may block it: strictest()), and the record says which
      // processes of that uid exited meanwhile, as the process events saw them.
      const exited = proc ? undefined : uid === undefined ? [] : this.procs.exitedOwners(uid, aliveAfter);
      const app: AppIdentity = proc ? appOf(proc) : { id: UNKNOWN_PROCESS, path: UNKNOWN_PROCESS };
      if (!proc && uid !== undefined) app.uid = uid;
      const hostnames = this.dns.namesOf(t.dst, Date.now(), proc ? processKey(proc) : undefined);
      const flow: Flow = { app, remote: { ip: t.dst, hostnames }, port: t.dport, protocol: t.protocol };
      let v = this.decideScript(flow);
      if (!proc && v.level === 'default' && v.action !== 'block') v = this.strictest(flow, v, programs, exited ?? []);
      if (proc?.pathUnverified) v = { ...v, reason: `${v.reason}; its executable is not ${proc.path} as this system has it (another mount namespace)` };
      if (v.action !== 'ask') return this.apply(key, t, flow, v, exited);
      void decideWithAsk(this.policy, flow, {
        // No dashboard yet: nobody answers, so the flow waits the timeout and gets the default.
        ask: () => new Promise<Action>(() => {}),
        timeoutMs: this.opts.askTimeoutMs,
        defaultAction: this.opts.askDefault,
      }).then((av) => this.apply(key, t, flow, av, exited), (e: unknown) => this.failPending(key, e));
    } catch (e) {
      this.failPending(key, e);
    }
  }

  /**
   * For an interpreter running a script, a rule naming the script (its path or a prefix of it) is
   * more specific than one naming the interpreter: `node` may be allowed out while
   * `/srv/app/node_modules/` is not. App-id rules still come first.
   */
  private decideScript(flow: Flow): Verdict {
    const v = this.policy.decide(flow);
    const { script, preloads = [] } = flow.app;
    if ((!script && preloads.length === 0) || v.level === 'app-id') return v;
    const { id: _id, ...app } = flow.app;
    // the script and what is loaded before it run as one program: a rule blocking any of them blocks
    // it; their rules allow it only if every one has an allowing rule, else the interpreter's decides
    let allow: Verdict | undefined;
    let everyOne = true;
    for (const [file, role] of [...(script ? [[script, 'script'] as const] : []), ...preloads.map((p) => [p, 'loaded by'] as const)]) {
      const s = this.policy.decide({ ...flow, app: { ...app, path: file } });
      if (s.level !== 'path' && s.level !== 'prefix') {
        everyOne = false;
        continue;
      }
      const named = { ...s, reason: `${s.reason} (${role === 'script' ? `script of ${flow.app.path}` : `loaded by ${flow.app.path} before ${script ?? 'inline code'}`})` };
      if (s.action === 'block') return named;
      allow ??= named;
    }
    return everyOne && allow ? allow : v;
  }

  /**
   * A connection whose process was gone before it was found, which no rule for unknown-process
   * decided: blocked if the rules block it for any program its uid runs, or ran and quit meanwhile.
   * The sender is among them, and may have closed its socket at once to go unnamed (a datagram
   * needs no socket once sent): the mode's default must not let it past its own rules.
   */
  private strictest(flow: Flow, v: Verdict, programs: ProcessInfo[], exited: ExitedProcess[]): Verdict {
    const uid = flow.app.uid;
    const apps = [
      ...programs.map(appOf),
      // exited meanwhile, or started since the uid's list was made (it serves a second)
      ...[...exited, ...(uid === undefined ? [] : this.procs.youngOf(uid))].filter((x) => x.path).map((x) => ({ path: x.path!, ...(x.cmdline ? { cmdline: x.cmdline } : {}), pid: x.pid, uid: x.uid })),
    ];
    for (const app of apps) {
      const b = this.decideScript({ ...flow, app });
      if (b.action === 'block') return { ...b, reason: `${b.reason}; gone before it was found, blocked as ${app.path} (a program of uid ${uid}) would be` };
    }
    return v;
  }

  private apply(key: string, t: Conn, flow: Flow, v: Verdict, exited?: ExitedProcess[]): void {
    const allow = v.action === 'allow';
    const ids = this.pending.get(key) ?? [];
    this.pending.delete(key);
    if (!this.opts.monitor && !key.startsWith(GONE)) this.verdicts.set(key, { allow, until: Date.now() + this.opts.verdictCacheS * 1000 });
    for (const id of ids) this.answer(id, allow);
    const observed = this.opts.monitor ? ' (monitor: not enforced)' : '';
    this.stats.decisions++;
    const row: DecisionRow = {
      time: Date.now(), path: flow.app.path, remoteIp: t.dst, hostnames: flow.remote.hostnames,
      localIp: t.src, localPort: t.sport, port: t.dport, protocol: t.protocol,
      action: allow ? 'allow' : 'block', level: v.level, reason: v.reason, enforced: !this.opts.monitor,
    };
    const a = flow.app;
    if (a.pid !== undefined) row.pid = a.pid;
    if (a.cmdline) row.cmdline = a.cmdline;
    if (a.script) row.script = a.script;
    if (a.uid !== undefined) row.uid = a.uid;
    if (a.id !== undefined) row.appId = a.id;
    if (exited) {
      row.exited = true;
      const paths = [...new Set(exited.map((x) => x.path ?? '?'))];
      const [only] = exited;
      if (paths.length === 1 && paths[0] !== '?') {
        // Every process of that uid that exited meanwhile ran one program: that is the program.
        row.path = paths[0]!;
        if (only?.cmdline) row.cmdline = only.cmdline;
      }
      if (exited.length === 1 && only) row.pid = only.pid;
      row.reason += exited.length
        ? `; gone before it was found: ${exited.length} process(es) of uid ${a.uid} exited meanwhile, running ${paths.join(', ')}`
        : '; gone before it was found';
    }
    if (v.rule) row.ruleId = v.rule.id;
    this.store!.add(row);
    if (this.opts.verbose) {
      this.opts.log(`${row.action} ${t.protocol} ${a.path}${a.pid ? `[${a.pid}]` : ''} -> ${flow.remote.hostnames[0] ?? t.dst}:${t.dport} (${v.reason})${observed}`);
    }
  }
}
