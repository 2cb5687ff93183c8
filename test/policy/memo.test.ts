import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Memo } from '../../src/policy/memo.js';

test('a memo that keeps missing turns itself off, then tries again', () => {
  const m = new Memo<number>();
  m.set('hot', 1);
  assert.equal(m.get('hot'), 1);
  // a window of one-off keys: almost nothing hits
  for (let i = 0; i < 4096; i++) if (m.get(`k${i}`) === undefined) m.set(`k${i}`, i);
  assert.equal(m.get('hot'), undefined, 'off: emptied, and skipped');
  m.set('hot', 2);
  let back = -1;
  for (let i = 0; i < 100_000 && back < 0; i++) {
    if (m.get('hot') === undefined) m.set('hot', 3);
    else back = i;
  }
  assert.ok(back > 60_000 && back < 70_000, `on again after its off period (${back} lookups)`);
});

test('a memo that hits stays on, and holds at most 8,192 entries', () => {
  const m = new Memo<number>();
  for (let i = 0; i < 100_000; i++) {
    const k = `k${i % 1000}`;
    if (m.get(k) === undefined) m.set(k, i);
  }
  assert.equal(m.get('k5'), 5);
  for (let i = 0; i < 8192; i++) m.set(`n${i}`, i);
  assert.equal(m.get('k5'), undefined, 'emptied when full');
});

test('a memo stops putting "nothing found" while such strings never repeat, keeps what it found, and tries again', () => {
  const NONE = -1;
  const m = new Memo<number>(NONE);
  const look = (k: string, found: number): number => {
    let v = m.get(k);
    if (v === undefined) m.set(k, (v = found));
    return v;
  };
  // a window of known strings that repeat among one-off unknown ones (1 in 4)
  for (let i = 0; i < 4096; i++) look(i % 4 === 0 ? `unknown${i}` : `known${i % 100}`, i % 4 === 0 ? NONE : i % 100);
  m.set('unknown-late', NONE);
  assert.equal(m.get('unknown-late'), undefined, '"nothing found" is not put now');
  m.set('known-late', 7);
  assert.equal(m.get('known-late'), 7, 'what is found still is');
  assert.equal(m.get('known5'), 5, 'and what was found stays');
  // after 4,096 more one-off misses it puts them again
  for (let i = 0; i < 4096; i++) m.set(`skipped${i}`, NONE);
  m.set('unknown-again', NONE);
  assert.equal(m.get('unknown-again'), NONE);
});

test('unknown strings that repeat stay memoised', () => {
  const m = new Memo<number>(-1);
  for (let i = 0; i < 20_000; i++) {
    const k = i % 2 ? `unknown${i % 200}` : `known${i % 100}`;
    if (m.get(k) === undefined) m.set(k, i % 2 ? -1 : 1);
  }
  m.set('unknown-late', -1);
  assert.equal(m.get('unknown-late'), -1);
  assert.equal(m.get('unknown7'), -1);
});
