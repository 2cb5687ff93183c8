import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { AuditStore, type DecisionRow } from '../../src/store/audit.js';
import { AuditWriter } from '../../src/store/writer.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MAIN = join(import.meta.dirname, '../../src/cli/main.js');

const row = (over: Partial<DecisionRow>): DecisionRow => ({
  time: Date.parse('2026-11-22T10:00:00Z'), path: '/usr/bin/curl', remoteIp: '10.0.0.1', hostnames: [], port: 443,
  protocol: 'tcp', action: 'allow', level: 'default', reason: 'mode', enforced: true, ...over,
});

test('the writer thread commits every row, and queries filter by app, action, host and time', async () => {
  const file = join(dir, 'a.db');
  const w = await AuditWriter.open(file, 5);
  const t = Date.parse('2026-11-22T10:00:00Z');
  for (let i = 0; i < 3000; i++) w.add(row({ time: t + i, port: 1000 + (i % 7) }));
  w.add(row({ time: t + 5000, path: '/usr/bin/node', script: '/srv/app/index.js', action: 'block', ruleId: 'r1', hostnames: ['evil.example'], cmdline: ['node', 'index.js'], pid: 42, uid: 1000, appId: 'app.service' }));
  w.add(row({ time: t + 6000, path: 'unknown-process', appId: 'unknown-process', exited: true, uid: 7 }));
  await w.close();
  assert.equal(w.written, 3002);
  const s = new AuditStore(file);
  assert.equal(s.query({ limit: 1e6 }).length, 3002);
  const [b] = s.query({ action: 'block' });
  assert.deepEqual(b, row({ time: t + 5000, path: '/usr/bin/node', script: '/srv/app/index.js', action: 'block', ruleId: 'r1', hostnames: ['evil.example'], cmdline: ['node', 'index.js'], pid: 42, uid: 1000, appId: 'app.service' }));
  assert.equal(s.query({ app: '/srv/app/index.js' }).length, 1, 'a script path finds the interpreter row');
  assert.equal(s.query({ app: 'app.service' }).length, 1);
  assert.equal(s.query({ host: 'EVIL.example' }).length, 1, 'host names match case-insensitively');
  assert.equal(s.query({ host: '10.0.0.1', limit: 1e6 }).length, 3002);
  assert.equal(s.query({ since: t + 5500 })[0]!.exited, true);
  assert.equal(s.query({ until: t + 9, limit: 1e6 }).length, 10);
  assert.equal(s.query({ limit: 5 })[0]!.time, t + 6000, 'newest first');
  s.close();
});

test('the writer keeps rows for the days asked: older ones go once it runs, newer ones stay', async () => {
  const file = join(dir, 'keep.db');
  const day = 86_400_000;
  const now = Date.now();
  const s = new AuditStore(file);
  for (let i = 0; i < 25; i++) s.add(row({ time: now - 40 * day + i, port: 1 })); // older than 30 days
  s.add(row({ time: now - 29 * day, port: 2 }));
  s.close();
  const w = await AuditWriter.open(file, 5, { ms: 30 * day });
  w.add(row({ time: now, port: 3 }));
  // the old rows go while the agent runs, not before it starts: read the store until they are gone
  const ports = (): number[] => {
    const r = new AuditStore(file, 250, true);
    try {
      return r.query({ limit: 100 }).map((x) => x.port);
    } finally {
      r.close();
    }
  };
  for (const t0 = Date.now(); ports().length !== 2 && Date.now() - t0 < 10_000; ) await new Promise((r) => setTimeout(r, 20));
  await w.close();
  assert.deepEqual(ports(), [3, 2]);
  // in chunks, oldest first
  const p = new AuditStore(join(dir, 'prune.db'));
  for (let i = 0; i < 25; i++) p.add(row({ time: 1000 + i }));
  p.flush();
  assert.equal(p.prune(1020, 4), 20);
  assert.deepEqual(p.query({ limit: 100 }).map((r) => r.time), [1024, 1023, 1022, 1021, 1020]);
  // by number: the newest stay, whatever their times say
  p.add(row({ time: 5 }));
  p.flush();
  assert.equal(p.pruneRows(3, 2), 3);
  assert.deepEqual(p.query({ limit: 100 }).map((r) => r.time), [1024, 1023, 5]);
  assert.equal(p.pruneRows(3), 0);
  p.close();
});

test('the writer keeps the newest rows it is asked to (checked once a minute), older ones go once it runs', async () => {
  const file = join(dir, 'rows.db');
  const s = new AuditStore(file);
  for (let i = 0; i < 30; i++) s.add(row({ port: 100 + i }));
  s.close();
  const w = await AuditWriter.open(file, 5, { rows: 10 });
  const count = (): number => {
    const r = new AuditStore(file, 250, true);
    try {
      return r.query({ limit: 100 }).length;
    } finally {
      r.close();
    }
  };
  for (const t0 = Date.now(); count() !== 10 && Date.now() - t0 < 10_000; ) await new Promise((r) => setTimeout(r, 20));
  await w.close();
  const kept = new AuditStore(file, 250, true);
  assert.deepEqual(kept.query({ limit: 100 }).map((r) => r.port).sort(), [120, 121, 122, 123, 124, 125, 126, 127, 128, 129]);
  kept.close();
});

test('a store that cannot be opened is a clear error, not a crash', async () => {
  await assert.rejects(AuditWriter.open('/proc/no/such/dir/a.db'), { message: 'audit store /proc/no/such/dir/a.db: Cannot open database because the directory does not exist' });
});

test('tollgate log prints rows and JSON, and names a missing store', () => {
  const file = join(dir, 'cli.db');
  const s = new AuditStore(file);
  s.add(row({ action: 'block', ruleId: 'no-ads', hostnames: ['ads.example'], pid: 9 }));
  s.add(row({ time: Date.parse('2026-11-22T10:00:01Z'), port: 80 }));
  s.close();
  const text = execFileSync(process.execPath, [MAIN, 'log', '--db', file, '--action', 'block'], { encoding: 'utf8' });
  assert.equal(text, '2026-11-22T10:00:00.000Z  block  /usr/bin/curl[9] -> ads.example:443/tcp  rule no-ads\n');
  const json = execFileSync(process.execPath, [MAIN, 'log', '--db', file, '--json'], { encoding: 'utf8' }).trim().split('\n').map((l) => JSON.parse(l) as DecisionRow);
  assert.deepEqual(json.map((r) => r.port), [80, 443]);
  assert.throws(() => execFileSync(process.execPath, [MAIN, 'log', '--db', join(dir, 'none.db')], { stdio: 'pipe' }), (e: { stderr: Buffer; status: number }) => {
    assert.equal(e.status, 1);
    assert.match(e.stderr.toString(), /^tollgate: .*none\.db: no audit store/);
    return true;
  });
  assert.throws(() => execFileSync(process.execPath, [MAIN, 'log', '--db', file, '--since', 'yesterday'], { stdio: 'pipe' }), /expected an ISO time/);
});

test('tollgate log reads a store while the agent writes it, and refuses, unchanged, a file that is not one', () => {
  const live = join(dir, 'live.db');
  const s = new AuditStore(live, Infinity); // open, as the agent's writer keeps it: its WAL files are there
  s.add(row({ port: 8443 }));
  s.flush();
  try {
    const text = execFileSync(process.execPath, [MAIN, 'log', '--db', live], { encoding: 'utf8' });
    assert.match(text, /-> 10\.0\.0\.1:8443\/tcp/);
  } finally {
    s.close();
  }
  const garbage = join(dir, 'garbage.db');
  writeFileSync(garbage, 'not a database at all, but long enough to have a header');
  const other = join(dir, 'other.db');
  const db = new Database(other);
  db.exec('CREATE TABLE notes (text TEXT)');
  db.close();
  const before = readFileSync(other);
  for (const [f, why] of [[garbage, /file is not a database/], [other, /without the decisions table: not a Tollgate audit store/]] as const) {
    assert.throws(() => execFileSync(process.execPath, [MAIN, 'log', '--db', f], { stdio: 'pipe' }), (e: { stderr: Buffer; status: number }) => {
      assert.equal(e.status, 1);
      const err = e.stderr.toString();
      assert.match(err, /^tollgate: .*\.db: not an audit store that can be read \(/);
      assert.match(err, why);
      assert.doesNotMatch(err, /\n\s+at /, 'no stack trace');
      return true;
    });
  }
  assert.deepEqual(readFileSync(other), before, "another program's database is not written to");
});

test('the store and the folders the agent makes for it are private: rows hold command lines and every host reached', async () => {
  const s = new AuditStore(join(dir, 'private.db'), Infinity);
  s.add(row({ cmdline: ['mysql', '-pSECRET'] }));
  s.flush();
  try {
    for (const f of ['private.db', 'private.db-wal', 'private.db-shm']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
  } finally {
    s.close();
  }
  // the agent: a new folder for its store is 0700; a store others can read is said at the start
  const run = async (db: string): Promise<string> => {
    const agent = spawn(process.execPath, [MAIN, 'agent', '--monitor', '--catalog', join(import.meta.dirname, '../../../examples/workstation.json'), '--db', db, '--no-cache'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    agent.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    const exited = new Promise((r) => agent.once('exit', r));
    for (const end = Date.now() + 15_000; !/tollgate agent: \d+ rules from/.test(log); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > end) assert.fail(`the agent did not start: ${log}`);
    }
    agent.kill('SIGTERM');
    await exited;
    return log;
  };
  const fresh = join(dir, 'new', 'sub', 'audit.db');
  assert.doesNotMatch(await run(fresh), /WARNING: audit store/);
  for (const p of [join(dir, 'new'), join(dir, 'new', 'sub')]) assert.equal(statSync(p).mode & 0o777, 0o700, p);
  assert.equal(statSync(fresh).mode & 0o777, 0o600);
  // another user cannot read it, and is told why (runuser: as nobody; root reads everything)
  const other = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, MAIN, 'log', '--db', fresh], { encoding: 'utf8' });
  if (other.error || process.getuid?.() !== 0) console.log(`SKIP reading the store as another user: ${other.error?.message ?? 'not root'}`);
  else {
    assert.equal(other.status, 1);
    assert.match(other.stderr, /audit\.db: not readable by this user: the agent's store is private \(it holds command lines\); read it as its owner, e\.g\. with sudo/);
  }
  chmodSync(fresh, 0o644);
  assert.match(await run(fresh), /WARNING: audit store .*audit\.db can be read by other users \(mode 644\): it records command lines and every host reached; chmod 600 it/);
});
