/**
 * ProcessResolver on this test's own sockets: no root needed, /proc/self/fd is ours to read.
 * Covers the first owner found by a /proc scan, then later sockets of that (now hot) process found
 * by re-reading its fds: a socket on a reused fd number, one on a new fd number, and none; and a
 * program told of by a (synthetic) process event, found without a scan.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { ProcessResolver, readSeen } from '../../src/linux/procs.js';

let server: Server;
const open: Socket[] = [];

before(async () => {
  server = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});

after(() => {
  for (const s of open) s.destroy();
  server.close();
});

async function socket(): Promise<{ s: Socket; fd: number; inode: number }> {
  const s = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  open.push(s);
  const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
  const link = readlinkSync(`/proc/self/fd/${fd}`);
  assert.match(link, /^socket:\[\d+\]$/);
  return { s, fd, inode: Number(link.slice(8, -1)) };
}

test('finds the process of a socket, then of later sockets on reused and new fd numbers', async () => {
  const r = new ProcessResolver();
  const uid = process.getuid!();
  const first = await socket();
  const owner = await r.resolve(first.inode, uid);
  assert.equal(owner?.pid, process.pid);
  assert.equal(owner?.path, readlinkSync('/proc/self/exe'));

  // a new socket on the fd number a closed socket held: the hot process's socket fds are read first
  first.s.destroy();
  await new Promise((res) => setTimeout(res, 20));
  const reused = await socket();
  assert.equal((await r.resolve(reused.inode, uid))?.pid, process.pid);
  const scans = r.scans;

  // a socket on an fd number not seen before: found by listing the fds, without a new /proc scan
  const extra = [await socket(), await socket(), await socket()];
  for (const x of extra) assert.equal((await r.resolve(x.inode, uid))?.pid, process.pid);
  assert.equal(r.scans, scans, 'hot process answered without scanning /proc');

  // an inode no process holds
  assert.equal(await r.resolve(1, uid), null);
});

test('a program the process events saw start is read before any /proc scan; an exit is remembered', async () => {
  const r = new ProcessResolver();
  const uid = process.getuid!();
  // A child that connects, prints its socket's inode and stays until killed.
  const port = (server.address() as { port: number }).port;
  const code = `const s=require('net').connect(${port},'127.0.0.1',()=>console.log(require('fs').readlinkSync('/proc/self/fd/'+s._handle.fd).slice(8,-1)))`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const inode = Number(await new Promise<string>((res) => child.stdout!.once('data', (d: Buffer) => res(d.toString().trim()))));
    const seen = readSeen(child.pid!, Date.now());
    assert.ok(seen, 'the child is readable');
    assert.equal(seen.path, readlinkSync('/proc/self/exe'));
    r.onEvent({ type: 'exec', pid: child.pid!, at: 1, seen });
    assert.equal((await r.resolve(inode, uid))?.pid, child.pid);
    assert.equal(r.scans, 0, 'found among the young programs, without a /proc scan');

    r.onEvent({ type: 'exit', pid: child.pid!, at: 5 });
    assert.deepEqual(r.exitedOwners(uid, 4).map((x) => [x.pid, x.path]), [[child.pid, seen.path]]);
    assert.deepEqual(r.exitedOwners(uid, 5), [], 'only exits after the given time');
  } finally {
    child.kill();
  }
});

test('a pid another program took over unseen (no process events) names that program, never the one that had it', async (t) => {
  // as pid 1 of a pid namespace of its own, where the next pid can be chosen (ns_last_pid) without
  // touching the host's; the old owner is found first, killed, and its pid handed to a perl holder
  const child = join(import.meta.dirname, 'pid-reuse-child.js');
  const run = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, child], { encoding: 'utf8', timeout: 60_000 });
  if (process.getuid?.() !== 0 || run.error || (run.status !== 0 && /unshare: /.test(run.stderr))) {
    console.log(`SKIP pid take-over test: ${process.getuid?.() !== 0 ? 'not root' : run.error?.message ?? run.stderr.trim()}`);
    return t.skip();
  }
  assert.equal(run.status, 0, run.stderr);
  const got = JSON.parse(run.stdout) as Record<string, unknown>;
  assert.deepEqual(got, {
    hotOld: process.execPath, none: null, hotNew: '/usr/bin/perl', // the old owner was the hot process
    scanOld: process.execPath, scanNew: '/usr/bin/perl', scanned: true, // found by a /proc scan
  });
});
