/**
 * ProcessResolver on this test's own sockets: no root needed, /proc/self/fd is ours to read.
 * Covers the first owner found by a /proc scan, then later sockets of that (now hot) process found
 * by re-reading its fds: a socket on a reused fd number, one on a new fd number, and none.
 */
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { ProcessResolver } from '../../src/linux/procs.js';

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
