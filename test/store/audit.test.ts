import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
