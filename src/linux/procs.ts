/**
 * From a socket inode to the process that owns it, and what the policy needs to know about it.
 *
 * A full /proc/<pid>/fd scan costs ~20 ms with 600 processes, so it never runs per packet on the
 * event loop: lookups are answered from a live inode -> pid map; the misses of one event-loop turn
 * first re-read the fds of the few processes that owned the latest sockets, and what is left waits
 * for one asynchronous scan that serves every miss queued meanwhile. A scan reads new processes
 * first (a fresh `curl` is found at once), then those of the socket's uid, then the rest.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { ProcEvent } from './procevents.js';
import { scriptsOf } from './scripts.js';

/** The environment a process started with (empty if it is not ours to read). */
function environOf(pid: number): Map<string, string> {
  const env = new Map<string, string>();
  try {
    for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
  } catch {
    // gone, or another user's without root
  }
  return env;
}

/** A path with its symlinks followed, or as it is when it cannot be (gone, or not ours to read). */
function realOrAsIs(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

export interface ProcessInfo {
  pid: number;
  /** Clock ticks since boot at which the process started: with pid, a name no other process gets. */
  start: number;
  path: string;
  cmdline: string[];
  uid: number;
  user?: string;
  /** Names of the process's groups (primary and supplementary), for group-scoped rules. */
  groups: string[];
  /** systemd unit, Flatpak or snap app, from /proc/pid/cgroup. */
  appId?: string;
  /** For interpreters (node, python, java, ...), the absolute path of the script it runs (scripts.ts). */
  script?: string;
  /** Files an interpreter loads before its script (node --require, java -javaagent:), judged with it. */
  preloads?: string[];
  /**
   * Set when the executable is not the file at `path` on this system (exeVerified): `path` is then only
   * what the process's own mount namespace calls it, where any user can bind-mount a program over
   * /usr/bin/curl (unshare -Urm). Such a process is judged as a process of unknown program.
   */
  pathUnverified?: true;
}

/** The real uid or gid in the text of /proc/pid/status, -1 if absent. */
const ID_LINE = { Uid: /^Uid:\s+([0-9]+)/m, Gid: /^Gid:\s+([0-9]+)/m };
const idIn = (status: string, field: 'Uid' | 'Gid'): number => Number(ID_LINE[field].exec(status)?.[1] ?? -1);

/**
 * The fields of /proc/<pid>/stat after the command name, field 3 (state) first; null if the process
 * is gone. The command name (field 2) may hold spaces and parentheses, so they start after the last ')'.
 */
export function statFields(pid: number): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

function startTime(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[19]) : null; // field 22
}

/** The app id of a process from its cgroup: a system service, a Flatpak or a snap. */
export function appIdFromCgroup(cgroup: string): string | undefined {
  const path = cgroup.split('\n').find((l) => l.startsWith('0::'))?.slice(3) ?? '';
  const leaf = path.split('/').filter(Boolean);
  const last = leaf[leaf.length - 1] ?? '';
  const flatpak = /^app-flatpak-(.+)-[0-9]+\.scope$/.exec(last);
  if (flatpak) return flatpak[1];
  const snap = /^snap\.([^.]+)\.[^.]+(?:-[0-9a-f-]+)?\.(?:scope|service)$/.exec(last);
  if (snap) return `snap.${snap[1]}`;
  if (leaf[0] === 'system.slice' && last.endsWith('.service')) return last;
  return undefined;
}

const userNames = new Map<number, string | undefined>();
function userName(uid: number): string | undefined {
  if (!userNames.has(uid)) {
    let name: string | undefined;
    try {
      const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid));
      name = line?.split(':')[0];
    } catch { /* no passwd: no name */ }
    if (name === undefined && uid === process.getuid?.()) name = userInfo().username;
    userNames.set(uid, name);
  }
  return userNames.get(uid);
}

let groupNames: Map<number, string> | undefined;
/** Group names by gid from /etc/group, read once (numbers stand for groups it does not name). */
function groupsOf(gids: number[]): string[] {
  if (!groupNames) {
    groupNames = new Map();
    try {
      for (const l of readFileSync('/etc/group', 'utf8').split('\n')) {
        const [name, , gid] = l.split(':');
        if (name && gid) groupNames.set(Number(gid), name);
      }
    } catch { /* no /etc/group: numbers only */ }
  }
  return [...new Set(gids)].map((g) => groupNames!.get(g) ?? String(g));
}

/** The executable of a process; throws if it is gone (a zombie has none either). */
const exeOf = (pid: number): string => readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');

/** The arguments of a process; throws if it is gone. */
function cmdlineOf(pid: number): string[] {
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  if (cmdline[cmdline.length - 1] === '') cmdline.pop();
  return cmdline;
}

/** The inode of the socket an fd holds; -1 for anything else. Throws if the fd is closed meanwhile. */
function socketInode(pid: number, fd: string): number {
  const l = readlinkSync(`/proc/${pid}/fd/${fd}`);
  return l.startsWith('socket:[') ? Number(l.slice(8, -1)) : -1;
}

/**
 * Whether the file a process executes is the file at `path` here: /proc/PID/exe names it as the
 * process's mount namespace does, and in a namespace of its own (unprivileged with user namespaces)
 * a process can mount any program over /usr/bin/curl. The same device and inode says it is; a
 * program replaced on disk while it runs (an upgrade: "(deleted)") is taken at its path only in
 * this mount namespace, where nobody but root can delete what is at a root-owned path.
 */
function exeVerified(pid: number, path: string): boolean {
  const ran = statSync(`/proc/${pid}/exe`); // throws once the process is gone (or a zombie): as exeOf() does
  try {
    const here = statSync(path);
    if (ran.dev === here.dev && ran.ino === here.ino) return true;
  } catch {
    // nothing at that path here
  }
  try {
    return readlinkSync(`/proc/${pid}/exe`).endsWith(' (deleted)') && readlinkSync(`/proc/${pid}/ns/mnt`) === readlinkSync('/proc/self/ns/mnt');
  } catch {
    return false;
  }
}

/** How a process is named in maps: pid plus start time, so a recycled pid is another process. */
export const processKey = (p: { pid: number; start: number }): string => `${p.pid}:${p.start}`;

/** Reads what the policy needs about a live process, or null if it is gone or recycled. */
export function readProcess(pid: number, expectStart?: number): ProcessInfo | null {
  try {
    const start = startTime(pid);
    if (start === null || (expectStart !== undefined && start !== expectStart)) return null;
    const path = exeOf(pid);
    const verified = exeVerified(pid, path);
    const cmdline = cmdlineOf(pid);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uid = idIn(status, 'Uid');
    let cgroup = '';
    try { cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8'); } catch { /* no cgroup v2 */ }
    let cwd = '/';
    try { cwd = readlinkSync(`/proc/${pid}/cwd`); } catch { /* gone */ }
    // Read start again: if the pid was recycled while we read, the answer mixes two processes.
    if (startTime(pid) !== start) return null;
    const gid = idIn(status, 'Gid');
    const supplementary = (/^Groups:\s*([0-9 ]*)$/m.exec(status)?.[1] ?? '').split(' ').filter(Boolean).map(Number);
    const info: ProcessInfo = { pid, start, path, cmdline, uid, user: userName(uid), groups: groupsOf(gid >= 0 ? [gid, ...supplementary] : supplementary) };
    const appId = appIdFromCgroup(cgroup);
    if (appId) info.appId = appId;
    if (!verified) {
      info.pathUnverified = true;
      return info; // its scripts' paths are its namespace's too
    }
    const code = scriptsOf(path, cmdline, cwd, realOrAsIs, () => environOf(pid));
    if (code?.script) info.script = code.script;
    if (code?.preloads.length) info.preloads = code.preloads;
    return info;
  } catch {
    return null;
  }
}

/** The pids in /proc now. */
function livePids(): number[] {
  return readdirSync('/proc').filter((d) => d.charCodeAt(0) <= 57).map(Number).filter((n) => n > 0);
}

function procUid(pid: number): number {
  try {
    return idIn(readFileSync(`/proc/${pid}/status`, 'utf8'), 'Uid');
  } catch {
    return -1;
  }
}

/** A process the process events told of, read at its exec or fork while it was alive. */
export interface SeenProcess {
  pid: number;
  start: number;
  uid: number;
  /** Unknown for a fork of a process we never read. */
  path?: string;
  cmdline?: string[];
  /** When its exec or fork event came (ms). */
  at: number;
}

export interface ExitedProcess extends SeenProcess {
  /** CLOCK_MONOTONIC ms, from the kernel's exit event. */
  exitedAt: number;
}

/** Processes started this recently are checked first, synchronously, when a socket's owner is unknown. */
const YOUNG_MS = 5000;
const YOUNG_MAX = 1024;
/** At most this many young processes of the socket's uid are read synchronously per miss (each ~20-50 us). */
const YOUNG_SYNC = 8;
/** Socket inodes remembered at most (the oldest are dropped first). */
const MAX_INODES = 16_384;
/** Exits are remembered this long, to name a connection whose process was gone before it was found. */
const EXITS_MS = 10_000;
const EXITS_MAX = 4096;

/**
 * Reads a process as its start event found it (on the process events thread). The executable comes
 * first: a short-lived program may be gone a millisecond later, and its path is what matters most.
 */
export function readSeen(pid: number, now: number): SeenProcess | null {
  let path: string | undefined;
  try {
    path = exeOf(pid);
    if (!exeVerified(pid, path)) path = undefined; // its mount namespace's name for another program (readProcess)
  } catch { /* gone, or a zombie */ }
  const start = startTime(pid);
  if (start === null) return null;
  const seen: SeenProcess = { pid, start, uid: procUid(pid), at: now };
  if (path) seen.path = path;
  try {
    seen.cmdline = cmdlineOf(pid);
  } catch { /* exited meanwhile */ }
  return seen;
}

/** Time slices for long synchronous work on the event loop: yield() lets it run once a slice is used up. */
const SLICE_MS = 1;
const ALIVE_BUF = Buffer.alloc(16); // an aliveFd's read lands here: only whether it fails matters
class Slicer {
  private start = performance.now();
  async yield(): Promise<void> {
    if (performance.now() - this.start < SLICE_MS) return;
    await new Promise((r) => setImmediate(r));
    this.start = performance.now();
  }
}

type Waiter = { inode: number; uid: number; resolve: (p: ProcessInfo | null) => void };

/** Keeps the inode -> (pid, start) map and answers lookups, scanning /proc on a miss. */
export class ProcessResolver {
  private readonly inodes = new Map<number, { pid: number; start: number }>();
  private readonly byPid = new Map<string, ProcessInfo>();
  /** Every pid seen by the last scan, with its start time and uid (read once per process). */
  private procs = new Map<number, { start: number; uid: number }>();
  /** Pids that owned the latest resolved sockets, most recent first: the likeliest owners of the next. */
  private hot: number[] = [];
  /** Per hot pid, its fds at the last read and which of them held sockets. */
  private readonly fdsOf = new Map<number, { all: Set<string>; sockets: Set<string> }>();
  /**
   * Per hot pid, an open file of its /proc directory and the start time of the process it was opened
   * on: a read of it fails (ESRCH) once that process is gone, even if another has taken its pid. A
   * read after a process's fds then says they were that process's, for ~0.6 us where reading its start
   * time again costs ~15 us (most of a hot lookup).
   */
  private readonly aliveFd = new Map<number, { fd: number; start: number }>();
  /** Processes started in the last YOUNG_MS, by pid, oldest first (from process events). */
  private readonly young = new Map<number, SeenProcess>();
  /** Recent exits of processes we knew something of, oldest first. */
  private exits: ExitedProcess[] = [];
  private waiting: Waiter[] = [];
  private flushQueued = false;
  private scanning = false;
  /** Full scans run so far (reported by the benchmark). */
  scans = 0;

  /** Whether the process of a processKey() still runs. */
  alive(key: string): boolean {
    const [pid, start] = key.split(':').map(Number);
    return startTime(pid!) === start;
  }

  /** The owner of `inode` right now if it is known, without I/O beyond a first read of the process. */
  known(inode: number): ProcessInfo | null | undefined {
    const e = this.inodes.get(inode);
    if (!e) return undefined;
    const key = processKey(e);
    let info = this.byPid.get(key);
    if (!info) {
      const fresh = readProcess(e.pid, e.start);
      if (!fresh) { this.inodes.delete(inode); return undefined; }
      this.byPid.set(key, (info = fresh));
    }
    return info;
  }

  /**
   * Finds the owner of `inode` (a socket of `uid`); null if no process has it. Misses of one
   * event-loop turn are served together: first by re-reading the fds of the few hot processes
   * (synchronously: ~2 µs per fd), then by one asynchronous scan of /proc for what is left.
   */
  resolve(inode: number, uid: number): Promise<ProcessInfo | null> {
    const k = this.known(inode);
    if (k !== undefined) return Promise.resolve(k);
    return new Promise((resolve) => {
      this.waiting.push({ inode, uid, resolve });
      if (!this.flushQueued) {
        this.flushQueued = true;
        process.nextTick(() => this.flush());
      }
    });
  }

  /**
   * Takes in one process event: a new program as the events thread read it (path, command line,
   * uid) while it lived; an exit drops what was cached of the pid (it may be reused) and is
   * remembered for exitedOwners().
   */
  onEvent(e: ProcEvent): void {
    if (e.type === 'exit') return this.exited(e.pid, e.at);
    const seen = e.seen;
    if (!seen) {
      // Gone before it could be read: what a fork read of it is no longer what it runs.
      const old = this.young.get(e.pid);
      if (old && e.type === 'exec') { delete old.path; delete old.cmdline; }
      return;
    }
    const now = seen.at;
    this.young.delete(e.pid);
    this.young.set(e.pid, seen);
    this.procs.set(e.pid, { start: seen.start, uid: seen.uid });
    for (const [pid, y] of this.young) {
      if (y.at >= now - YOUNG_MS && this.young.size <= YOUNG_MAX) break;
      this.young.delete(pid);
    }
  }

  private exited(pid: number, at: number): void {
    const p = this.procs.get(pid);
    const key = p && processKey({ pid, start: p.start });
    const info = key && this.byPid.get(key);
    const seen = this.young.get(pid) ?? (info && { ...info, at: 0 });
    if (seen) this.exits.push({ ...seen, exitedAt: at });
    this.young.delete(pid);
    this.procs.delete(pid);
    this.forgetFds(pid);
    this.hot = this.hot.filter((x) => x !== pid);
    if (key) this.byPid.delete(key);
    let drop = 0;
    while (drop < this.exits.length && (this.exits[drop]!.exitedAt < at - EXITS_MS || this.exits.length - drop > EXITS_MAX)) drop++;
    if (drop) this.exits = this.exits.slice(drop);
  }

  /**
   * For a connection whose process was gone before it was found: the processes of `uid` that exited
   * after `since` (CLOCK_MONOTONIC ms). The owner is very likely among them, but not surely (a process whose start
   * we never saw may have exited too), so callers record them and do not decide by them.
   */
  exitedOwners(uid: number, since: number): ExitedProcess[] {
    return this.exits.filter((x) => x.uid === uid && x.exitedAt > since);
  }

  /** Processes of `uid` that started (exec or fork) in the last few seconds, as the process events saw them. */
  youngOf(uid: number): SeenProcess[] {
    return [...this.young.values()].filter((y) => y.uid === uid);
  }

  /**
   * The processes of `uid` alive now: the programs that may have sent a packet whose socket was gone
   * before it was found (a program may close its socket right after sending). Reads /proc (a start
   * time per process, ~5 us; the rest once per process), in slices as scan() does.
   */
  async programsOf(uid: number): Promise<ProcessInfo[]> {
    const slice = new Slicer();
    const out: ProcessInfo[] = [];
    for (const pid of livePids()) {
      await slice.yield();
      const p = this.current(pid); // a pid taken over unseen: its old process's fds are forgotten, as on every read
      if (p === null || p.uid !== uid) continue;
      const key = processKey({ pid, start: p.start });
      let info = this.byPid.get(key);
      if (!info) {
        const fresh = readProcess(pid, p.start);
        if (!fresh) continue;
        this.byPid.set(key, (info = fresh));
      }
      out.push(info);
    }
    return out;
  }

  /**
   * Synchronously, without a /proc scan: the owner of `inode` if it is known or among the hot and
   * young processes (microseconds to a few tens of them). For callers that must ask while the
   * socket surely still exists (a DNS answer not yet delivered).
   */
  resolveNow(inode: number, uid: number): ProcessInfo | undefined {
    if (this.known(inode) === undefined) this.readLikely(new Set([inode]), new Set([uid]));
    const k = this.known(inode) ?? undefined;
    if (k) this.touch(k.pid);
    return k;
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.scanning) return; // the running scan picks the waiters up when it ends
    this.readLikely(new Set(this.waiting.map((w) => w.inode)), new Set(this.waiting.map((w) => w.uid)));
    this.waiting = this.waiting.filter((w) => {
      const k = this.known(w.inode);
      if (k === undefined) return true;
      if (k) this.touch(k.pid);
      w.resolve(k);
      return false;
    });
    if (this.waiting.length) void this.scan();
  }

  /** Reads the fds of the hot processes, then of the newest young ones of `uids`, until every wanted socket is known. */
  private readLikely(wanted: Set<number>, uids: Set<number>): void {
    for (const pid of this.hot) {
      this.scanPidSync(pid, wanted);
      if (this.knowsAll(wanted)) return;
    }
    // A program that started moments ago (curl, a build step) is the likeliest owner of an unknown
    // socket: read the newest few of the sockets' uids now, before they can exit.
    const young = [...this.young.values()].filter((y) => uids.has(y.uid)).slice(-YOUNG_SYNC).reverse();
    for (const y of young) {
      this.scanPidSync(y.pid, wanted);
      if (this.knowsAll(wanted)) return;
    }
  }

  private knowsAll(inodes: Set<number>): boolean {
    for (const i of inodes) if (!this.inodes.has(i)) return false;
    return true;
  }

  private touch(pid: number): void {
    if (this.hot[0] === pid) return;
    this.hot = [pid, ...this.hot.filter((p) => p !== pid)].slice(0, 4);
    for (const p of [...this.fdsOf.keys(), ...this.aliveFd.keys()]) if (!this.hot.includes(p)) this.forgetFds(p);
  }

  /**
   * Reads the fds of a hot process until every wanted socket is known. Each readlink costs ~7 us in
   * the kernel and the fd listing ~10 us, and a busy process has far more files, pipes and event fds
   * than sockets; a new socket takes the lowest free fd, often one a closed socket held. So the fds
   * that held sockets are read first, without listing; then, if a wanted socket is still unknown,
   * the fds that are new since the last listing, then all the others.
   */
  private scanPidSync(pid: number, wanted: Set<number>, again = false): void {
    const p = this.procs.get(pid);
    if (!p) return;
    const prev = this.fdsOf.get(pid);
    const found: number[] = []; // recorded once the pid is known to still be this process
    let missing = 0;
    for (const i of wanted) if (!this.inodes.has(i)) missing++;
    // Socket fds, the one whose socket was learnt longest ago first: a new socket takes the lowest free
    // fd, most often one a finished connection freed, and connections mostly finish oldest first.
    // Read in that order, the wanted socket is found after a few readlinks, not half the process's sockets.
    const sockets = new Set<string>();
    const fresh: string[] = [];
    const tried = new Set<string>();
    const read = (fd: string): void => {
      tried.add(fd);
      try {
        const inode = socketInode(pid, fd);
        if (inode < 0) return;
        if (this.inodes.has(inode)) sockets.add(fd);
        else {
          fresh.push(fd);
          if (wanted.has(inode)) missing--;
        }
        found.push(inode);
      } catch { /* closed meanwhile */ }
    };
    if (prev) for (const fd of prev.sockets) if (missing > 0) read(fd);
    let all = prev?.all ?? new Set<string>();
    if (missing > 0) {
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        return this.gone(pid);
      }
      for (const fd of fds) if (missing > 0 && !tried.has(fd) && !all.has(fd)) read(fd);
      for (const fd of fds) if (missing > 0 && !tried.has(fd)) read(fd);
      all = new Set(fds);
    }
    const now = this.stillIs(pid, p);
    if (now === null) return this.gone(pid);
    if (now !== p) {
      // another process has the pid now: what was read may be its sockets, or the old one's (read again, once)
      if (!again) this.scanPidSync(pid, wanted, true);
      return;
    }
    for (const inode of found) this.record(inode, pid, p.start, wanted);
    for (const fd of prev?.sockets ?? []) if (!tried.has(fd)) sockets.add(fd); // not read: keep what they were
    for (const fd of fresh) {
      sockets.delete(fd);
      sockets.add(fd);
    }
    this.fdsOf.set(pid, { all, sockets });
  }

  private record(inode: number, pid: number, start: number, wanted: Set<number>): void {
    // Every socket seen is kept: the next connection of that process is then found at once. Closed
    // sockets are only pruned after a scan, and a busy hot process never causes one: past
    // MAX_INODES the oldest go (a live one dropped costs one re-read of its process's fds).
    if (this.inodes.has(inode) && !wanted.has(inode)) return;
    this.inodes.set(inode, { pid, start });
    if (this.inodes.size > MAX_INODES) {
      for (const old of this.inodes.keys()) {
        if (this.inodes.size <= MAX_INODES * 0.75) break;
        this.inodes.delete(old);
      }
    }
  }

  /**
   * One scan of /proc: new processes first, then those of the sockets' uids, then the rest. Reads are
   * synchronous (a readlink is ~7 us in the kernel; through the thread pool each also cost a
   * callback here, and thousands of them completing at once stalled the event loop ~17 ms with
   * only 80 processes), in slices of SLICE_MS with the event loop let run between them.
   */
  private async scan(): Promise<void> {
    this.scanning = true;
    this.scans++;
    try {
      const batch = this.waiting;
      this.waiting = [];
      const uids = new Set(batch.map((w) => w.uid));
      const wanted = new Set(batch.map((w) => w.inode));
      const slice = new Slicer();
      const pids = livePids();
      const procs = new Map<number, { start: number; uid: number }>();
      const fresh: number[] = [];
      for (const pid of pids) {
        const old = this.procs.get(pid);
        if (old) { procs.set(pid, old); continue; }
        await slice.yield();
        const start = startTime(pid);
        if (start === null) continue;
        procs.set(pid, { start, uid: procUid(pid) });
        fresh.push(pid);
      }
      this.procs = procs;
      const isFresh = new Set(fresh);
      const older = pids.filter((p) => procs.has(p) && !isFresh.has(p));
      const sameUid = older.filter((p) => uids.has(procs.get(p)!.uid));
      const others = older.filter((p) => !uids.has(procs.get(p)!.uid));
      scanning: for (const group of [fresh, sameUid, others]) {
        for (const pid of group) {
          const p = procs.get(pid);
          if (p) await this.readFds(pid, p.start, wanted, slice);
          if (this.knowsAll(wanted)) break scanning;
        }
      }
      for (const w of batch) {
        const k = this.known(w.inode) ?? null;
        if (k) this.touch(k.pid);
        w.resolve(k);
      }
      this.prune();
    } finally {
      this.scanning = false;
      if (this.waiting.length) this.flush();
    }
  }

  private async readFds(pid: number, start: number, wanted: Set<number>, slice: Slicer, again = false): Promise<void> {
    await slice.yield();
    let fds: string[];
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { return; }
    const found: number[] = [];
    for (const fd of fds) {
      await slice.yield();
      try {
        const inode = socketInode(pid, fd);
        if (inode >= 0) found.push(inode);
      } catch { /* fd closed meanwhile */ }
    }
    if (found.length === 0) return;
    const now = this.current(pid);
    if (now === null) return;
    // another process has the pid now (its start differs): read it again, once, as that process
    if (now.start !== start) return again ? undefined : this.readFds(pid, now.start, wanted, slice, true);
    for (const inode of found) this.record(inode, pid, start, wanted);
  }

  /**
   * The process that has `pid` now, as this.procs then holds it: null when none has. The same start
   * time as held: the same object; another: a process that took the pid after the one held exited
   * unseen (no exit event: process events off or lost), and what was kept of the old one's fds goes.
   * Read after a process's fds: a socket read is then surely this process's (a pid taken over while
   * they were read shows as a new start).
   */
  private current(pid: number): { start: number; uid: number } | null {
    const start = startTime(pid);
    if (start === null) return null;
    const held = this.procs.get(pid);
    if (held?.start === start) return held;
    const now = { start, uid: procUid(pid) };
    this.procs.set(pid, now);
    this.forgetFds(pid);
    return now;
  }

  /**
   * current() for a hot process `p` whose fds were just read: p itself while the process it names
   * still runs, known by a read of its aliveFd; else as current() finds it, and for `p` an aliveFd
   * opened first (so that it is surely on the process whose start time is then read).
   */
  private stillIs(pid: number, p: { start: number; uid: number }): { start: number; uid: number } | null {
    const held = this.aliveFd.get(pid);
    if (held?.start === p.start) {
      try {
        readSync(held.fd, ALIVE_BUF, 0, ALIVE_BUF.length, 0);
        return p;
      } catch {
        // gone, or its pid taken by another process: current() says which
      }
    }
    let fd = -1;
    try {
      fd = openSync(`/proc/${pid}/oom_score_adj`, 'r');
    } catch {
      // gone: current() says so
    }
    const now = this.current(pid);
    if (now === p && fd >= 0) {
      this.forgetAlive(pid);
      this.aliveFd.set(pid, { fd, start: p.start });
    } else if (fd >= 0) closeSync(fd);
    return now;
  }

  /** A hot process found gone: no longer hot, and nothing kept of its fds. */
  private gone(pid: number): void {
    this.hot = this.hot.filter((x) => x !== pid);
    this.forgetFds(pid);
  }

  /** What is kept of a pid's fds, and its aliveFd closed. */
  private forgetFds(pid: number): void {
    this.fdsOf.delete(pid);
    this.forgetAlive(pid);
  }

  private forgetAlive(pid: number): void {
    const held = this.aliveFd.get(pid);
    if (!held) return;
    this.aliveFd.delete(pid);
    try {
      closeSync(held.fd);
    } catch {
      // closed already
    }
  }

  /** Forgets processes that have exited, so the maps do not grow without bound. */
  private prune(): void {
    for (const [inode, e] of this.inodes) if (this.procs.get(e.pid)?.start !== e.start) this.inodes.delete(inode);
    for (const [key, info] of this.byPid) if (this.procs.get(info.pid)?.start !== info.start) this.byPid.delete(key);
  }
}
