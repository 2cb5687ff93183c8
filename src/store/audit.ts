/**
 * The audit store: one row per decided connection, in SQLite (better-sqlite3). Rows are queued in
 * memory and written in one transaction per batch from a timer, never per packet on the hot path.
 */
import { closeSync, constants, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Protocol } from '../policy/index.js';

export interface DecisionRow {
  time: number;
  pid?: number;
  path: string;
  cmdline?: string[];
  script?: string;
  uid?: number;
  appId?: string;
  /** The process was gone before it could be read fully (what is known is kept). */
  exited?: boolean;
  localIp?: string;
  localPort?: number;
  remoteIp: string;
  hostnames: string[];
  port: number;
  protocol: Protocol;
  action: 'allow' | 'block';
  ruleId?: string;
  level: string;
  reason: string;
  /** monitor: the verdict was recorded, not enforced. */
  enforced: boolean;
}

export interface LogQuery {
  app?: string;
  action?: 'allow' | 'block';
  host?: string;
  since?: number;
  until?: number;
  limit?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS decisions (
  id INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  pid INTEGER, path TEXT NOT NULL, cmdline TEXT, script TEXT, uid INTEGER, app_id TEXT, exited INTEGER NOT NULL,
  local_ip TEXT, local_port INTEGER, remote_ip TEXT NOT NULL, hostnames TEXT NOT NULL, port INTEGER NOT NULL,
  protocol TEXT NOT NULL, action TEXT NOT NULL, rule_id TEXT, level TEXT NOT NULL, reason TEXT NOT NULL,
  enforced INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time);
`;

export class AuditStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement | null; // null: opened to read
  private queue: DecisionRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Rows handed to the store and rows committed: equal once flushed. */
  received = 0;
  written = 0;

  /**
   * `read`: open an existing store to query it, and write nothing to it (`tollgate log`): a file
   * that is not a store, or another program's database, is refused, not given this schema.
   */
  constructor(readonly file: string, private readonly flushMs = 250, read = false) {
    if (read) {
      this.db = new Database(file, { readonly: true, fileMustExist: true });
      const t = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'").get();
      if (t === undefined) {
        this.db.close();
        throw new Error('a SQLite database without the decisions table: not a Tollgate audit store');
      }
      this.insert = null;
      return;
    }
    // Made private: rows hold command lines (secrets passed as arguments) and every host each user
    // reached. SQLite gives its -wal and -shm files the database's permissions.
    try {
      closeSync(openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
    } catch {
      // there already (its permissions are the owner's choice), or not possible: SQLite says why below
    }
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare(`INSERT INTO decisions
      (time, pid, path, cmdline, script, uid, app_id, exited, local_ip, local_port, remote_ip, hostnames, port, protocol, action, rule_id, level, reason, enforced)
      VALUES (@time, @pid, @path, @cmdline, @script, @uid, @appId, @exited, @localIp, @localPort, @remoteIp, @hostnames, @port, @protocol, @action, @ruleId, @level, @reason, @enforced)`);
  }

  add(row: DecisionRow): void {
    if (this.insert === null) throw new Error(`audit store ${this.file}: opened to read`);
    this.queue.push(row);
    this.received++;
    if (this.queue.length >= 5000) this.flush();
    else if (this.flushMs !== Infinity) this.timer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  /** Writes every queued row in one transaction. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.queue.length) return;
    const rows = this.queue;
    this.queue = [];
    this.db.transaction(() => {
      for (const r of rows) {
        this.insert!.run({
          time: r.time, pid: r.pid ?? null, path: r.path, cmdline: r.cmdline ? JSON.stringify(r.cmdline) : null,
          script: r.script ?? null, uid: r.uid ?? null, appId: r.appId ?? null, exited: r.exited ? 1 : 0,
          localIp: r.localIp ?? null, localPort: r.localPort ?? null, remoteIp: r.remoteIp,
          hostnames: JSON.stringify(r.hostnames), port: r.port, protocol: r.protocol, action: r.action,
          ruleId: r.ruleId ?? null, level: r.level, reason: r.reason, enforced: r.enforced ? 1 : 0,
        });
      }
    })();
    this.written += rows.length;
  }

  /** Rows matching every given filter, newest first. `app` matches the app id, the path or the script. */
  query(q: LogQuery = {}): DecisionRow[] {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    if (q.app) { where.push('(app_id = @app OR path = @app OR script = @app)'); args.app = q.app; }
    if (q.action) { where.push('action = @action'); args.action = q.action; }
    if (q.host) {
      where.push("(remote_ip = @host OR EXISTS (SELECT 1 FROM json_each(hostnames) WHERE value = @host))");
      args.host = q.host.toLowerCase();
    }
    if (q.since !== undefined) { where.push('time >= @since'); args.since = q.since; }
    if (q.until !== undefined) { where.push('time <= @until'); args.until = q.until; }
    const sql = `SELECT * FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, id DESC LIMIT ${Math.max(1, Math.floor(q.limit ?? 100))}`;
    return (this.db.prepare(sql).all(args) as Record<string, unknown>[]).map(fromRow);
  }

  /**
   * Deletes rows older than `before` (ms), oldest first, `chunk` rows a transaction so that no one
   * transaction holds the store long, until none is left or `most` are gone; returns how many. The
   * file keeps its size and reuses the freed pages: a store kept for N days stays as big as N days of rows.
   */
  prune(before: number, chunk = 10_000, most = Infinity): number {
    return this.deleteOldest('time < ? ORDER BY time', before, chunk, most);
  }

  /**
   * Deletes the oldest rows beyond the newest `keep`, as prune() does. Rows are numbered in the order
   * they are written and only the oldest are ever deleted, so the newest `keep` are those numbered
   * above the highest number less `keep`: no count of the table (a scan) is needed.
   */
  pruneRows(keep: number, chunk = 10_000, most = Infinity): number {
    const top = (this.db.prepare('SELECT max(id) AS top FROM decisions').get() as { top: number | null }).top;
    return top === null ? 0 : this.deleteOldest('id <= ? ORDER BY id', top - keep, chunk, most);
  }

  /** prune()'s and pruneRows()'s deletion: rows `where` (with `bound` for its ?), `chunk` a transaction, `most` in all. */
  private deleteOldest(where: string, bound: number, chunk: number, most: number): number {
    if (this.insert === null) throw new Error(`audit store ${this.file}: opened to read`);
    const del = this.db.prepare(`DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE ${where} LIMIT ?)`);
    let n = 0;
    for (let k; n < most && (k = del.run(bound, Math.min(chunk, most - n)).changes) > 0; ) n += k;
    return n;
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}

function fromRow(r: Record<string, unknown>): DecisionRow {
  const row: DecisionRow = {
    time: r.time as number, path: r.path as string, remoteIp: r.remote_ip as string,
    hostnames: JSON.parse(r.hostnames as string) as string[], port: r.port as number,
    protocol: r.protocol as Protocol, action: r.action as 'allow' | 'block', level: r.level as string,
    reason: r.reason as string, enforced: r.enforced === 1,
  };
  if (r.pid !== null) row.pid = r.pid as number;
  if (r.cmdline !== null) row.cmdline = JSON.parse(r.cmdline as string) as string[];
  if (r.script !== null) row.script = r.script as string;
  if (r.uid !== null) row.uid = r.uid as number;
  if (r.app_id !== null) row.appId = r.app_id as string;
  if (r.exited === 1) row.exited = true;
  if (r.local_ip !== null) row.localIp = r.local_ip as string;
  if (r.local_port !== null) row.localPort = r.local_port as number;
  if (r.rule_id !== null) row.ruleId = r.rule_id as string;
  return row;
}
