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
