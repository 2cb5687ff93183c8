/**
 * The process connector, as the agent uses it: a program started here is heard at its fork and
 * exec, read (path, command line, uid) while it lives, and heard again at its exit, with the
 * kernel's timestamps on the same clock as the agent's. Needs root (CAP_NET_ADMIN); read-only.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { test } from 'node:test';
import { monotonicMs } from '../../src/linux/nfqueue.js';
import { ProcEvents, type ProcEvent } from '../../src/linux/procevents.js';
import { ProcessResolver } from '../../src/linux/procs.js';

const skip = process.getuid?.() !== 0 ? 'needs root (the kernel process connector wants CAP_NET_ADMIN)' : null;
if (skip) console.log(`SKIP process events tests: ${skip}`);

test('a started program is heard and read at its exec, and its exit is remembered by uid', { skip: skip ?? false }, async () => {
  const heard: ProcEvent[] = [];
  const resolver = new ProcessResolver();
  const events = await ProcEvents.start((es) => { heard.push(...es); for (const e of es) resolver.onEvent(e); }, (e) => { throw e; });
  try {
    const before = monotonicMs();
    const child = spawnSync('sleep', ['0.05']);
    const after = monotonicMs();
    const pid = child.pid!;
    for (let i = 0; i < 100 && !heard.some((e) => e.pid === pid && e.type === 'exit'); i++) await new Promise((r) => setTimeout(r, 10));
    const mine = heard.filter((e) => e.pid === pid);
    assert.deepEqual(mine.map((e) => e.type), ['fork', 'exec', 'exit']);
    const exec = mine[1]!;
    assert.ok(exec.type === 'exec' && exec.seen, 'the exec was read while the program lived');
    assert.equal(exec.seen.path, realpathSync('/usr/bin/sleep'));
    assert.deepEqual(exec.seen.cmdline, ['sleep', '0.05']);
    assert.equal(exec.seen.uid, 0);
    for (const e of mine) assert.ok(e.at >= before && e.at <= after, `kernel time ${e.at} within [${before}, ${after}]`);

    const exits = resolver.exitedOwners(0, before).filter((x) => x.pid === pid);
    assert.equal(exits.length, 1, 'the exit is remembered for uid 0');
    assert.equal(exits[0]!.path, realpathSync('/usr/bin/sleep'));
    assert.equal(resolver.exitedOwners(0, after).filter((x) => x.pid === pid).length, 0, 'not among exits after it');
    assert.equal(resolver.exitedOwners(12345, before).length, 0, 'nor among another uid\'s');
  } finally {
    await events.stop();
  }
});

test('caughtUp(t) resolves only once every event sent before t has been handed over, under load too', { skip: skip ?? false }, async () => {
  const exits = new Set<number>();
  const events = await ProcEvents.start((es) => { for (const e of es) if (e.type === 'exit') exits.add(e.pid); }, (e) => { throw e; });
  // Both CPUs busy: the events thread is scheduled late, as on a loaded machine.
  const hogs = [0, 1].map(() => spawn('sh', ['-c', 'while :; do :; done']));
  try {
    for (let i = 0; i < 20; i++) {
      const pid = spawnSync('true').pid!;
      const t0 = performance.now();
      await events.caughtUp(monotonicMs(), 5000);
      assert.ok(performance.now() - t0 < 5000, 'resolved by the events, not by the cap');
      assert.ok(exits.has(pid), `the exit of ${pid}, sent before the time waited for, was heard first`);
    }
    const late = performance.now();
    await events.caughtUp(monotonicMs() + 200, 5000);
    assert.ok(performance.now() - late >= 199, 'a time still to come is waited for');
    for (const h of hogs) h.kill();
    await new Promise((r) => setTimeout(r, 500)); // their exits heard
    // No process starts or exits now: the thread, asleep until its next event (200 ms at most), is
    // woken to see the time waited for
    for (let i = 0; i < 5; i++) {
      const soon = performance.now();
      await events.caughtUp(monotonicMs() + 5, 5000);
      const took = performance.now() - soon;
      assert.ok(took < 80, `a time 5 ms ahead is waited for until then, not until the thread's idle wake-up (${took.toFixed(0)} ms)`);
    }
    const capped = performance.now();
    await events.caughtUp(monotonicMs() + 60_000, 100);
    assert.ok(performance.now() - capped < 1000, 'the cap lets go');
  } finally {
    for (const h of hogs) h.kill();
    await events.stop();
  }
});

test('once the events thread is gone, a wait for its events ends at once and the failure is reported', { skip: skip ?? false }, async () => {
  const failures: Error[] = [];
  const events = await ProcEvents.start(() => {}, (e) => failures.push(e));
  // the thread dies as it would on an error of its own
  await (events as unknown as { worker: import('node:worker_threads').Worker }).worker.terminate();
  const t0 = performance.now();
  await events.caughtUp(monotonicMs() + 60_000, 60_000);
  assert.ok(performance.now() - t0 < 1000, 'not held until the cap');
  assert.match(failures[0]?.message ?? '', /process events thread exited/);
  await events.stop();
});
