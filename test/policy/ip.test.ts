import { test } from 'node:test';
import assert from 'node:assert/strict';
import ipaddr from 'ipaddr.js';
import { parseIPv4, parseIp, formatIPv4 } from '../../src/policy/ip.js';

/** Deterministic PRNG so a failure can be reproduced. */
function rng(seed: number): () => number {
  return () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

test('IPv4 parsing agrees with ipaddr.js on random and edge addresses', () => {
  const r = rng(1);
  for (let i = 0; i < 5000; i++) {
    const n = Math.floor(r() * 2 ** 32);
    const s = formatIPv4(n);
    assert.equal(parseIPv4(s), n, s);
    assert.equal(ipaddr.IPv4.parse(s).toString(), s);
  }
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1..2.3', '', '1.2.3.4 ', 'a.b.c.d', '1.2.3.-4']) {
    assert.equal(parseIPv4(bad), -1, bad);
  }
});

test('IPv6 parsing agrees with ipaddr.js in every spelling', () => {
  const r = rng(2);
  for (let i = 0; i < 3000; i++) {
    const parts = Array.from({ length: 8 }, () => (r() < 0.4 ? 0 : Math.floor(r() * 65536)));
    const addr = ipaddr.IPv6.parse(parts.map((p) => p.toString(16)).join(':'));
    for (const s of [addr.toString(), addr.toNormalizedString(), addr.toString().toUpperCase()]) {
      const p = parseIp(s);
      const bytes = addr.toByteArray();
      if (addr.isIPv4MappedAddress()) {
        assert.equal(p?.v, 4, s);
        continue;
      }
      assert.equal(p?.v, 6, s);
      const words = [0, 1, 2, 3].map((k) => ((bytes[k * 4]! << 24) | (bytes[k * 4 + 1]! << 16) | (bytes[k * 4 + 2]! << 8) | bytes[k * 4 + 3]!) >>> 0);
      assert.deepEqual(p.v === 6 && p.w, words, s);
    }
  }
  assert.deepEqual(parseIp('::ffff:192.0.2.1'), { v: 4, n: parseIPv4('192.0.2.1') });
  assert.deepEqual(parseIp('64:ff9b::192.0.2.1'), { v: 6, w: [0x0064ff9b, 0, 0, 0xc0000201] });
  for (const bad of ['1:2:3:4:5:6:7', '1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', '1:2:3:4:5:6:7:', '::1.2.3']) {
    assert.equal(parseIp(bad), null, bad);
  }
});

test('an IPv6 text is valid to parseIp exactly when ipaddr.js finds it valid (zone ids refused)', () => {
  const r = rng(3);
  const pick = (a: string): string => a[Math.floor(r() * a.length)]!;
  let valid = 0;
  for (let i = 0; i < 60000; i++) {
    let s: string;
    if (i % 2 === 0) s = Array.from({ length: 2 + Math.floor(r() * 24) }, () => pick('0123456789abcdefABCDEF:.:::g%')).join('');
    else {
      // groups and gaps, now and then an IPv4 tail
      const groups = Array.from({ length: 1 + Math.floor(r() * 9) }, () => (r() < 0.2 ? '' : Math.floor(r() * 65536).toString(16).slice(0, 1 + Math.floor(r() * 5))));
      s = groups.join(':') + (r() < 0.25 ? `:${Math.floor(r() * 300)}.${Math.floor(r() * 300)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}` : '');
    }
    if (!s.includes(':')) continue;
    const theirs = ipaddr.IPv6.isValid(s) && !s.includes('%');
    if (theirs) valid++;
    assert.equal(parseIp(s) !== null, theirs, s);
  }
  assert.ok(valid > 5000, `only ${valid} valid addresses drawn`);
});
