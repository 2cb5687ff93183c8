/**
 * The catalog read as bytes (catalog/fast-reader.ts, policy/rule-bytes.ts) against the usual read
 * (JSON.parse, compileRule): for any text, the same verdicts, rules, counts and errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidRulesError, Policy, isPlainHost, parseEndpoint, type Flow, type Rule } from '../../src/policy/index.js';
import { CatalogError, CatalogRules, parseCatalog, readCatalogToCompile, scanCatalog as scan } from '../../src/catalog/index.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../temp.js';

/** scanCatalog() as a compile's input. */
function scanCatalog(b: Buffer, name: string): { mode?: Policy['mode']; rules: CatalogRules } | null {
  const s = scan(b, name);
  return s && { mode: s.head.mode, rules: new CatalogRules(b, s.spans, s.count, s.parsed) };
}
import { NOW, allFlows, allRules, randomSets, seeded } from '../policy/rule-sets.js';

/** What loading a catalog gives: its counts and every flow's verdict, or its error. */
function outcome(load: () => Policy, flows: Flow[]): string {
  try {
    const p = load();
    const verdicts = flows.map((f) => {
      const v = p.decide(f, NOW);
      return [v.action, v.level, v.reason, v.rule];
    });
    return JSON.stringify([p.stats(), verdicts]);
  } catch (e) {
    return `${(e as Error).message}${e instanceof InvalidRulesError ? JSON.stringify(e.errors) : ''}`;
  }
}

const usual = (text: string) => (): Policy => {
  const c = parseCatalog(text, 'c.json');
  return Policy.compile(c.rules, c.mode);
};
/** As readCatalogToCompile() does: the bytes, or the usual read when the reader gives up. */
const fast = (text: string, mustScan: boolean) => (): Policy => {
  const c = scanCatalog(Buffer.from(text), 'c.json');
  if (c) return Policy.compile(c.rules, c.mode);
  if (mustScan) assert.fail(`the reader gave up on ${text.slice(0, 200)}`);
  return usual(text)();
};

const doc = (rules: unknown[], space?: number): string => JSON.stringify({ format: 'tollgate-catalog', version: 1, rules }, null, space);

function same(text: string, flows: Flow[], mustScan = true): void {
  const [a, b] = [outcome(usual(text), flows), outcome(fast(text, mustScan), flows)];
  if (a !== b) assert.fail(`catalog ${text.slice(0, 600)}\nusual ${a.slice(0, 600)}\nbytes ${b.slice(0, 600)}`);
}

test('a catalog read as bytes gives every verdict, rule and count the usual read gives', () => {
  const flows = allFlows();
  randomSets((set) => same(doc(set), flows));
  same(doc(allRules(), 2), flows);
  // and its image, whose rule text is copied from the catalog's bytes
  const c = scanCatalog(Buffer.from(doc(allRules(), 2)), 'c.json')!;
  const compiled = Policy.compile(c.rules);
  assert.equal(outcome(() => Policy.restore(compiled.image(), 'passive-allow'), flows), outcome(usual(doc(allRules())), flows));
});

// Rules the byte path declines or must read as JSON does: escapes, case, numbers, repeated keys, other fields.
const TRICKY = String.raw`{"rules": [
  {"id":"esc","action":"block","application":"/usr/bin/curl","endpoint":"\u0061.example.com"},
  {"id" : "upper" , "action":"block","application":"/usr/bin/curl","endpoint":"B.Example.COM."},
  {"id":"wildUpper","action":"block","application":"/usr/bin/curl","endpoint":"*.Example.org"},
  {"id":"twice","action":"allow","action":"block","application":"/usr/bin/wget","endpoint":"c.example.com"},
  {"id":"port-string","action":"block","application":"/usr/bin/wget","endpoint":"d.example.com","port":"0443"},
  {"id":"port-float","action":"block","application":"/usr/bin/wget","endpoint":"e.example.com","port":443.0},
  {"id":"proto-upper","action":"block","application":"/usr/bin/wget","endpoint":"f.example.com","protocol":"TCP"},
  {"id":"note","action":"block","application":"/usr/bin/wget","endpoint":"g.example.com","note":"blocked: \"tracker\" — ünïcode\n"},
  {"id":"ünicode","action":"block","application":"/home/jürgen/bin/tool","endpoint":"h.example.com"},
  {"id":"scoped","action":"block","application":"/usr/bin/wget","endpoint":"i.example.com","users":["alice"],"expires":"2030-01-01"},
  {"id":"ipv4","action":"block","application":"/usr/bin/wget","endpoint":"192.0.2.7","port":22},
  {"id":"cidr","action":"block","application":"/usr/bin/wget","endpoint":"198.51.100.0/24"},
  {"id":"ipv6","action":"block","application":"/usr/bin/wget","endpoint":"2001:DB8::1"},
  {"id":"url","action":"block","application":"/usr/bin/wget","endpoint":"https://j.example.com/x"},
  {"id":"any","action":"block","application":"any","endpoint":"any","port":"8000-8100","protocol":"udp"},
  {"id":"sub","action":"block","application":"*/Arc.app/","endpoint":"*.k.example.com"},
  {"id":"prefix","action":"allow","application":"/opt/","endpoint":"192.0.2.0/28","port":65535}
	], "version": 1, "mode": "passive-block", "format": "tollgate-catalog"}`;

function trickyFlows(): Flow[] {
  const out: Flow[] = [];
  const apps = [{ path: '/usr/bin/curl' }, { path: '/usr/bin/wget', user: 'alice' }, { path: '/home/jürgen/bin/tool' }, { path: '/Applications/Arc.app/x' }, { path: '/opt/x' }];
  const remotes: Flow['remote'][] = [
    ...['a.example.com', 'b.example.com', 'x.example.org', 'c.example.com', 'd.example.com', 'e.example.com', 'f.example.com', 'g.example.com', 'h.example.com', 'i.example.com', 'm.k.example.com']
      .map((h) => ({ ip: '203.0.113.1', hostnames: [h] })),
    { ip: '192.0.2.7', hostnames: [] },
    { ip: '198.51.100.9', hostnames: [] },
    { ip: '2001:db8::1', hostnames: [] },
    { ip: '203.0.113.1', hostnames: [], url: 'https://j.example.com/x/y' },
  ];
  for (const app of apps) for (const remote of remotes) for (const port of [22, 443, 8050]) for (const protocol of ['tcp', 'udp'] as const) out.push({ app, remote, port, protocol });
  return out;
}

test('a catalog of more rules than the reader keeps in one piece reads as the usual read reads it', () => {
  // rules without an endpoint or a port in every stretch of the file: their spans must read as absent
  // wherever the reader's pieces (131,072 rules) and blocks within them (1,024) begin and end
  const n = 131_072 + 2_500;
  const rules = Array.from({ length: n }, (_, i) => ({
    id: `r${i}`,
    action: i % 2 === 0 ? 'block' : 'allow',
    application: `/usr/bin/p${i}`,
    ...(i % 3 === 0 ? {} : { endpoint: `h${i}.example.com` }),
    ...(i % 5 === 0 ? {} : { port: 443 }),
  }));
  const at = [0, 1, 1023, 1024, 1025, 131_071, 131_072, 131_073, 132_096, 132_097, n - 1];
  const flows = at.flatMap((i) => [443, 80].map((port): Flow => ({ app: { path: `/usr/bin/p${i}` }, remote: { ip: '192.0.2.1', hostnames: [`h${i}.example.com`] }, port, protocol: 'tcp' })));
  same(doc(rules), flows);
  // and read from its bytes: a rule whose spans were not set absent would take the slow way, as not plain
  assert.equal(scan(Buffer.from(doc(rules)), 'c.json')!.parsed.size, 0);
});

test('escapes, case, repeated keys, numbers, other fields and any key order read as JSON.parse reads them', () => {
  const flows = trickyFlows();
  same(TRICKY, flows);
  const p = fast(TRICKY, true)();
  assert.equal(p.mode, 'passive-block');
  assert.equal(p.stats().rules, 17);
  assert.equal(p.decide({ app: { path: '/usr/bin/curl' }, remote: { ip: '203.0.113.1', hostnames: ['a.example.com'] }, port: 443, protocol: 'tcp' }, NOW).rule?.id, 'esc');
  assert.equal(p.decide({ app: { path: '/usr/bin/wget' }, remote: { ip: '203.0.113.1', hostnames: ['c.example.com'] }, port: 443, protocol: 'tcp' }, NOW).action, 'block');
});

test('bad rules: the same errors, in the same order, however each rule was read', () => {
  const bad: unknown[] = [
    { id: 'a', action: 'allow', application: '/usr/bin/curl', endpoint: 'a.example.com' },
    { id: 'a', action: 'allow', application: '/usr/bin/curl', endpoint: 'b.example.com' }, // duplicate id
    { id: '\u0061', action: 'allow', application: '/usr/bin/curl' }, // the same id, escaped below
    { id: 'b', action: 'permit', application: '/usr/bin/curl' },
    { id: 'c', action: 'allow', application: 'usr/bin/curl' },
    { id: 'd', action: 'allow', application: '/usr/bin/curl', endpoint: 'bad..host' },
    { id: 'e', action: 'allow', application: '/usr/bin/curl', port: 70000 },
    { id: 'f', action: 'allow', application: '/usr/bin/curl', port: 0 },
    { id: 'g', action: 'allow', application: '/usr/bin/curl', endpoint: '192.0.2.1/24' },
    { id: 'h', action: 'allow', application: '/usr/bin/curl', endpoint: '300.1.1.1' },
    { id: '', action: 'allow', application: '/usr/bin/curl' },
    { action: 'allow', application: '/usr/bin/curl' },
    { id: 'i', action: 'allow', application: '/usr/bin/curl', acton: 'block' },
    { id: 'j', action: 'allow', application: '/usr/bin/curl', note: 5 },
    { id: 'k', action: 'allow', application: '/usr/bin/curl', protocol: 'icmp' },
    'not a rule',
    null,
    {},
  ];
  const text = doc(bad).replace('"id":"a","action":"allow","application":"/usr/bin/curl"}', '"id":"\\u0061","action":"allow","application":"/usr/bin/curl"}');
  assert.match(text, /\\u0061/);
  same(text, allFlows());
  assert.match(outcome(fast(text, true), []), /duplicate id \(first used by rule #1\)/);
});

test('the reader gives up on what it cannot follow, and the usual read says what is wrong', () => {
  const good = doc([{ id: 'a', action: 'allow', application: 'any' }]);
  for (const text of [good.replace(']', ',]'), good.slice(0, -3), good.replace('{"id"', '{ // c\n"id"'), good + 'x', '[]', '{}', doc([]).replace('"rules":[]', '"rules":[],"rules":[]')]) {
    assert.equal(scanCatalog(Buffer.from(text), 'c.json'), null, text);
  }
});

test('a byte-order mark before a catalog is skipped, as the usual read skips it', () => {
  const text = '\ufeff' + doc([{ id: 'a', action: 'block', application: 'any', endpoint: 'x.example.com' }, { id: 'b', action: 'allow', application: '/usr/bin/curl' }]);
  assert.ok(scanCatalog(Buffer.from(text), 'c.json'));
  same(text, allFlows());
  assert.equal(Policy.compile(parseCatalog(text, 'c.json').rules).stats().rules, 2);
});

test('random damage to a catalog: the byte read and the usual read agree on every outcome', () => {
  const flows = trickyFlows().filter((_, i) => i % 7 === 0);
  const base = TRICKY;
  const alphabet = '{}[]",:\\ \n0123456789.-/*aeAZ_u';
  const rand = seeded(11);
  let scanned = 0;
  for (let k = 0; k < 2000; k++) {
    let t = base;
    for (let m = 1 + rand(3); m > 0; m--) {
      const at = rand(t.length);
      const ch = alphabet[rand(alphabet.length)]!;
      const op = rand(3);
      t = op === 0 ? t.slice(0, at) + t.slice(at + 1) : op === 1 ? t.slice(0, at) + ch + t.slice(at) : t.slice(0, at) + ch + t.slice(at + 1);
    }
    if (scanCatalog(Buffer.from(t), 'c.json')) scanned++;
    same(t, flows, false);
  }
  assert.ok(scanned > 200, `the reader followed only ${scanned} of 2000 damaged catalogs`); // the comparison must not be all give-ups
});

test('isPlainHost() accepts exactly the names parseEndpoint() keeps as they are', () => {
  const rand = seeded(5);
  const alphabet = 'ab09-_.A:*/';
  const cases = ['a', 'a.b', 'a-b.c', '-a.b', 'a-.b', 'a.b-', '_a._b', 'a..b', 'a.', '.a', 'a.1', '1.a', '1.2.3.4', 'x'.repeat(63) + '.com', 'x'.repeat(64) + '.com', `${'a.'.repeat(126)}ab`, `${'a.'.repeat(126)}abc`];
  for (let i = 0; i < 20000; i++) cases.push(Array.from({ length: 1 + rand(8) }, () => alphabet[rand(alphabet.length)]).join(''));
  for (const s of cases) {
    const e = parseEndpoint(s);
    const kept = typeof e !== 'string' && e.kind === 'host' && e.host === s;
    assert.equal(isPlainHost(Buffer.from(s), 0, s.length), kept, s);
  }
});

test('rules read as bytes name rule objects equal to the catalog text', () => {
  const rules: Rule[] = [{ id: 'a', action: 'block', application: 'any', endpoint: 'x.example.com', port: 443, note: 'n' }];
  const c = scanCatalog(Buffer.from(doc(rules, 4)), 'c.json')!;
  const p = Policy.compile(c.rules);
  assert.deepEqual(p.rules, rules);
  assert.deepEqual(p.decide({ app: { path: '/x' }, remote: { ip: '203.0.113.1', hostnames: ['x.example.com'] }, port: 443, protocol: 'tcp' }).rule, rules[0]);
});

test("a catalog's head is taken as the usual read takes it: each mode, and every error it finds", () => {
  const dir = tempDir('head');
  const rule = '{"id":"r","action":"block","application":"any","endpoint":"example.com"}';
  const heads = [
    '"format":"tollgate-catalog","version":1', '"version":1,"format":"tollgate-catalog","mode":"ask"', '"format":"tollgate-catalog","version":1,"mode":"passive-block"',
    '"format":"tollgate-catalog","version":2', '"format":"tollgate-catalog","version":"1"', '"format":"tollgate-catalog","version":1.5', '"format":"tollgate","version":1',
    '"format":"tollgate-catalog","version":1,"mode":"deny"', '"format":"tollgate-catalog","version":1,"mode":null', '"format":"tollgate-catalog","version":1,"extra":true',
    '"format":"tollgate-catalog","version":1,"__proto__":{"mode":"ask"}', '"version":1',
  ];
  for (const head of heads) {
    const file = join(dir, 'c.json');
    writeFileSync(file, `{${head},"rules":[${rule}]}`);
    const said = (f: () => unknown): unknown => {
      try {
        const { rules, sha256: _, size: _size, ...h } = f() as { rules: unknown; sha256?: string; size?: number };
        return [h, Policy.compile(rules as Rule[]).stats()];
      } catch (e) {
        assert.ok(e instanceof CatalogError, `${head}: ${(e as Error).message}`);
        return e.message;
      }
    };
    assert.deepEqual(said(() => readCatalogToCompile(file)), said(() => parseCatalog(`{${head},"rules":[${rule}]}`, file)), head);
  }
});
