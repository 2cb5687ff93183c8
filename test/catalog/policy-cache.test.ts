/** The compiled-policy cache: a second load of the same catalog comes from its image and decides the same. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { tempDir } from '../temp.js';
import { hashFile, loadPolicy, parseCatalog, reloadPolicy, serializeCatalog, type CacheOptions, type LoadedPolicy } from '../../src/catalog/index.js';
import { InvalidRulesError, Policy, type Flow, type Rule } from '../../src/policy/index.js';

const RULES: Rule[] = JSON.parse(readFileSync(join(import.meta.dirname, '../../../examples/workstation.json'), 'utf8')).rules;
const NOW = Date.parse('2026-06-01T00:00:00Z');
const FLOWS: Flow[] = [
  { app: { id: 'org.mozilla.firefox', path: '/usr/lib/firefox/firefox' }, remote: { ip: '192.0.2.1', hostnames: ['ads.doubleclick.net'] }, port: 443, protocol: 'tcp' },
  { app: { id: 'org.mozilla.firefox', path: '/usr/lib/firefox/firefox' }, remote: { ip: '192.0.2.1', hostnames: ['www.example.com'] }, port: 443, protocol: 'tcp' },
  { app: { path: '/usr/bin/curl' }, remote: { ip: '10.1.2.3', hostnames: [] }, port: 80, protocol: 'tcp' },
  { app: { path: '/usr/lib/apt/methods/http' }, remote: { ip: '192.0.2.2', hostnames: ['deb.debian.org'] }, port: 80, protocol: 'tcp' },
  { app: { path: '/usr/lib/apt/methods/http' }, remote: { ip: '192.0.2.3', hostnames: ['evil.example'] }, port: 80, protocol: 'tcp' },
  { app: { path: '/home/u/p/node_modules/.bin/npm' }, remote: { ip: '192.0.2.4', hostnames: ['registry.npmjs.org'] }, port: 443, protocol: 'tcp' },
  { app: { path: '/usr/bin/ssh', groups: ['admin'] }, remote: { ip: '2001:db8::5', hostnames: [] }, port: 22, protocol: 'tcp' },
  { app: { path: '/usr/bin/ssh', groups: ['staff'] }, remote: { ip: '2001:db8::5', hostnames: [] }, port: 22, protocol: 'tcp' },
  { app: { path: '/usr/bin/smbclient' }, remote: { ip: '192.0.2.9', hostnames: [] }, port: 445, protocol: 'tcp' },
  { app: { path: '/opt/trial/bin/app' }, remote: { ip: '192.0.2.9', hostnames: [] }, port: 8080, protocol: 'tcp' },
];

function setup(rules: Rule[] = RULES): { catalog: string; dir: string; warnings: string[]; opts: CacheOptions } {
  const root = tempDir('cache');
  const catalog = join(root, 'catalog.json');
  writeFileSync(catalog, serializeCatalog(rules, { format: 'tollgate', encoding: 'json', mode: 'passive-block' }));
  const dir = join(root, 'cache');
  const warnings: string[] = [];
  return { catalog, dir, warnings, opts: { dir, minBytes: 0, warn: (m) => warnings.push(m) } };
}

const images = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.policy'));

test('the second load comes from the image and gives every verdict, rule and reason the first gave', () => {
  // and text beyond ASCII: the image's rule offsets are in bytes
  const unicode: Rule = { id: 'café-☕', action: 'block', application: '/opt/ünïcode/bin/東京', endpoint: 'xn--caf-dma.example', note: 'déjà vu ☕ 東京' };
  const { catalog, dir, warnings, opts } = setup([unicode, ...RULES]);
  const first = loadPolicy(catalog, undefined, opts);
  assert.deepEqual([first.from, first.written, images(dir).length], ['catalog', true, 1]);
  const second = loadPolicy(catalog, undefined, opts);
  assert.equal(second.from, 'image');
  assert.deepEqual(second.catalog, { format: 'tollgate', encoding: 'json', mode: 'passive-block' });
  assert.equal(second.policy.mode, 'passive-block'); // the catalog's mode, kept in the image
  for (const f of FLOWS) assert.deepEqual(second.policy.decide(f, NOW), first.policy.decide(f, NOW));
  assert.deepEqual(second.policy.rules, [unicode, ...RULES]);
  const toUnicode: Flow = { app: { path: '/opt/ünïcode/bin/東京' }, remote: { ip: '192.0.2.7', hostnames: ['xn--caf-dma.example'] }, port: 443, protocol: 'tcp' };
  assert.deepEqual(second.policy.decide(toUnicode, NOW).rule, unicode);
  assert.deepEqual(second.policy.stats(), first.policy.stats());
  assert.equal(loadPolicy(catalog, 'ask', opts).policy.decide(FLOWS[9]!, Date.parse('2028-01-01')).action, 'ask');
  assert.deepEqual(warnings, []);
});

test("NuAppFirewall catalogs, current and legacy, load and reload with the rules, ids and verdicts their conversion gives, compiled and from an image", async () => {
  const app = '/Applications/Chat.app/Contents/MacOS/Chat';
  const current = { [app]: [{ action: 'block', identifier: 'unknown', destinations: [['ads.example', '443'], ['203.0.113.5', 'any']] }], any: [{ action: 'allow', identifier: 'com.acme.chat', destinations: [['chat.example', '443']] }] };
  const legacy = { [app]: [{ key: app, action: 'allow', appLocation: app, endpoints: "['chat.example', '198.51.100.7']", direction: 'outgoing' }, { key: app, action: 'block', endpoints: "['ads.example']", direction: 'outgoing' }] };
  const flows: Flow[] = [
    { app: { path: app }, remote: { ip: '192.0.2.1', hostnames: ['ads.example'] }, port: 443, protocol: 'tcp' },
    { app: { path: app }, remote: { ip: '203.0.113.5', hostnames: [] }, port: 80, protocol: 'tcp' },
    { app: { path: app }, remote: { ip: '198.51.100.7', hostnames: [] }, port: 80, protocol: 'tcp' },
    { app: { id: 'com.acme.chat', path: app }, remote: { ip: '192.0.2.2', hostnames: ['chat.example'] }, port: 443, protocol: 'tcp' },
  ];
  for (const doc of [current, legacy]) {
    const { catalog, opts } = setup();
    writeFileSync(catalog, JSON.stringify(doc));
    const rules = parseCatalog(readFileSync(catalog, 'utf8'), catalog).rules;
    const byObjects = Policy.compile(rules, 'passive-allow');
    const first = loadPolicy(catalog, undefined, opts);
    const second = loadPolicy(catalog, undefined, opts);
    const reloaded = await reloadPolicy(catalog, undefined, { ...opts, dir: null }); // read on a worker, compiled in slices
    assert.deepEqual([first.from, second.from, reloaded.from], ['catalog', 'image', 'catalog']);
    for (const l of [first, second, reloaded]) {
      assert.deepEqual(l.policy.rules, rules);
      for (const f of flows) assert.deepEqual(l.policy.decide(f, NOW), byObjects.decide(f, NOW));
    }
    const uncached = loadPolicy(catalog, undefined, { ...opts, dir: null }).policy;
    const v = uncached.decide(flows[0]!, NOW);
    assert.equal(v.rule, uncached.rules.find((r) => r.id === v.rule?.id)); // one object per rule, however it is asked for
  }
});

test("once its image is written, a compiled policy reads its rules from the image and lets the catalog's bytes go", async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const many: Rule[] = Array.from({ length: 40_000 }, (_, i) => ({ id: `r${i}`, action: i % 2 ? 'allow' : 'block', application: `/opt/app${i % 500}/bin/app`, endpoint: `h${i}.example.com`, port: 443, note: 'x'.repeat(60) }));
  const { catalog, opts } = setup(many);
  const bytes = statSync(catalog).size;
  // array buffers held while a policy so loaded is alive (each measured with only its own policy alive)
  const held = async (load: () => LoadedPolicy | Promise<LoadedPolicy>): Promise<number> => {
    const l = await load();
    assert.deepEqual(l.policy.decide(flow, NOW).rule, many[7]);
    assert.deepEqual(l.policy.rules, many);
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 50)); // array buffers are freed after the collection
    }
    return process.memoryUsage().arrayBuffers;
  };
  const flow: Flow = { app: { path: '/opt/app7/bin/app' }, remote: { ip: '192.0.2.1', hostnames: ['h7.example.com'] }, port: 443, protocol: 'tcp' };
  const without = await held(() => loadPolicy(catalog, undefined, { ...opts, dir: null }));
  const written = await held(() => {
    const l = loadPolicy(catalog, undefined, opts);
    assert.equal(l.written, true);
    return l;
  });
  // and the agent's way: written later, in slices, while it decides
  const later = await held(async () => {
    const l = loadPolicy(catalog, undefined, { ...opts, dir: setup().dir, write: 'later' });
    assert.equal(await l.job!.write(), true);
    return l;
  });
  for (const n of [written, later]) assert.ok(without - n > bytes * 0.9, `${((without - n) / 2 ** 20).toFixed(1)} MB less held for a ${(bytes / 2 ** 20).toFixed(1)} MB catalog`);
});

test('an edited catalog is compiled again, never answered by the old image', () => {
  const { catalog, dir, opts } = setup();
  loadPolicy(catalog, undefined, opts);
  const edited = RULES.map((r) => (r.id === 'firefox-ads' ? { ...r, action: 'allow' as const } : r));
  writeFileSync(catalog, serializeCatalog(edited, { format: 'tollgate', encoding: 'json' }));
  const again = loadPolicy(catalog, undefined, opts);
  assert.equal(again.from, 'catalog');
  assert.equal(again.policy.decide(FLOWS[0]!, NOW).action, 'allow');
  assert.equal(images(dir).length, 2);
  assert.equal(loadPolicy(catalog, undefined, opts).policy.decide(FLOWS[0]!, NOW).action, 'allow');
  // an edit that keeps the catalog's length: an image of that length is there, but not of these bytes
  const size = statSync(catalog).size;
  const blocked = edited.map((r) => (r.id === 'apt' ? { ...r, action: 'block' as const } : r));
  writeFileSync(catalog, serializeCatalog(blocked, { format: 'tollgate', encoding: 'json' }));
  assert.equal(statSync(catalog).size, size);
  const third = loadPolicy(catalog, undefined, opts);
  assert.equal(third.from, 'catalog');
  assert.equal(third.policy.decide(FLOWS[3]!, NOW).action, 'block');
  assert.equal(images(dir).filter((f) => f.endsWith(`-${size}.policy`)).length, 2);
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'image');
});

test('a damaged image is said, compiled around and replaced', () => {
  const { catalog, dir, warnings, opts } = setup();
  loadPolicy(catalog, undefined, opts);
  const image = join(dir, images(dir)[0]!);
  const bytes = readFileSync(image);
  writeFileSync(image, bytes.subarray(0, bytes.length - 10)); // as a full disk would leave it
  const again = loadPolicy(catalog, undefined, opts);
  assert.deepEqual([again.from, again.written], ['catalog', true]);
  assert.match(warnings.join('\n'), /policy image .* is damaged/);
  assert.equal(again.policy.decide(FLOWS[0]!, NOW).action, 'block');
  // one flipped bit in the last section, just before the head: the checksum catches it
  const whole = readFileSync(image);
  const headLen = whole.readUInt32LE(whole.length - 4);
  whole[whole.length - 4 - headLen - 3]! ^= 1;
  writeFileSync(image, whole);
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'catalog');
  assert.match(warnings.join('\n'), /do not match their checksum/);
  writeFileSync(image, 'not an image at all');
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'catalog');
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'image');
});

test('an image another build of Tollgate wrote is not used', () => {
  const { catalog, dir, warnings, opts } = setup();
  loadPolicy(catalog, undefined, opts);
  const image = join(dir, images(dir)[0]!);
  const text = readFileSync(image, 'latin1');
  const other = text.replace(/"compiler":"([0-9a-f])/, (_, c: string) => `"compiler":"${c === '0' ? '1' : '0'}`);
  assert.notEqual(other, text);
  writeFileSync(image, other, 'latin1');
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'catalog');
  assert.deepEqual(warnings, []);
});

test('a cache folder others may write to is not used: an image there could choose the rules', () => {
  const { catalog, dir, warnings, opts } = setup();
  loadPolicy(catalog, undefined, opts);
  chmodSync(dir, 0o777);
  const again = loadPolicy(catalog, undefined, opts);
  assert.deepEqual([again.from, again.written], ['catalog', false]);
  assert.match(warnings.join('\n'), /not private to this user .* mode 777/);
});

test('a catalog with bad rules gets no image; small catalogs and a null folder are compiled every time', () => {
  const bad = setup([...RULES, { id: 'x', action: 'deny' as 'allow', application: 'any' }]);
  assert.throws(() => loadPolicy(bad.catalog, undefined, bad.opts), InvalidRulesError);
  assert.throws(() => loadPolicy(bad.catalog, undefined, bad.opts), InvalidRulesError);
  assert.deepEqual(images(bad.dir), []);
  const { catalog, dir, opts } = setup();
  assert.equal(loadPolicy(catalog, undefined, { ...opts, minBytes: 1 << 20 }).written, false);
  assert.equal(loadPolicy(catalog, undefined, { ...opts, dir: null }).written, false);
  assert.throws(() => readdirSync(dir), /ENOENT/);
});

test('the folder keeps the 8 most recently used images', () => {
  const { catalog, dir, opts } = setup();
  let first = '';
  for (let i = 0; i < 10; i++) {
    writeFileSync(catalog, serializeCatalog(RULES.slice(i), { format: 'tollgate', encoding: 'json' }));
    loadPolicy(catalog, undefined, opts);
    if (i === 0) first = images(dir)[0]!;
    else utimesSync(join(dir, first), new Date(), new Date(Date.now() + 60_000)); // the first stays the most recently used
    if (i === 4) {
      // what a writer killed mid-way leaves: gone once it is an hour old
      writeFileSync(join(dir, 'x.policy.1.1.tmp'), 'partial');
      utimesSync(join(dir, 'x.policy.1.1.tmp'), new Date(), new Date(Date.now() - 7_200_000));
      writeFileSync(join(dir, 'y.policy.2.1.tmp'), 'a write under way');
    }
  }
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), ['y.policy.2.1.tmp']);
  assert.equal(images(dir).length, 8);
  assert.ok(images(dir).includes(first));
  writeFileSync(catalog, serializeCatalog(RULES, { format: 'tollgate', encoding: 'json' }));
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'image');
});

test('an image written later, in slices, is the one the next load finds; an abandoned one leaves nothing', async () => {
  const { catalog, dir, warnings, opts } = setup();
  const first = loadPolicy(catalog, undefined, { ...opts, write: 'later' });
  assert.deepEqual([first.from, first.written, images(dir)], ['catalog', false, []]);
  const stop = new AbortController();
  const abandoned = first.job!.write(0, stop.signal);
  stop.abort();
  assert.equal(await abandoned, false);
  assert.deepEqual(readdirSync(dir), [], 'no image and no temporary file');
  assert.equal(await loadPolicy(catalog, undefined, { ...opts, write: 'later' }).job!.write(0), true);
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'image');
  assert.deepEqual(warnings, []);
});

test("a reload compiles on a worker and in slices, keeps an image the next start finds, and restores it when the catalog is unchanged", async () => {
  const { catalog, dir, warnings, opts } = setup();
  const first = await reloadPolicy(catalog, undefined, opts);
  assert.equal(first.from, 'catalog');
  assert.equal(first.job!.writeNow(), true);
  // keyed by the hash of the bytes the reader parsed: the next start finds it
  assert.deepEqual(images(dir), [`${hashFile(catalog)}-${statSync(catalog).size}.policy`]);
  assert.equal(loadPolicy(catalog, undefined, opts).from, 'image');
  const again = await reloadPolicy(catalog, undefined, opts); // a SIGHUP, the catalog unchanged
  assert.deepEqual([again.from, again.job], ['image', undefined]);
  assert.equal(again.policy.mode, 'passive-block');
  for (const f of FLOWS) assert.deepEqual(again.policy.decide(f, NOW), first.policy.decide(f, NOW));
  assert.equal((await reloadPolicy(catalog, 'ask', opts)).policy.mode, 'ask');
  assert.deepEqual(warnings, []);
  // an image that cannot be used is said and replaced, as at a start; another build's quietly
  writeFileSync(join(dir, images(dir)[0]!), 'not an image at all');
  const damaged = await reloadPolicy(catalog, undefined, opts);
  assert.equal(damaged.from, 'catalog');
  assert.match(warnings.join('\n'), /policy image .* is damaged/);
  assert.equal(damaged.job!.writeNow(), true);
  assert.equal((await reloadPolicy(catalog, undefined, opts)).from, 'image');
});

test('a head that names a section "__proto__…" makes a field, not a change to every object', () => {
  const { catalog, dir, opts } = setup();
  loadPolicy(catalog, undefined, opts);
  const image = join(dir, images(dir)[0]!);
  const bytes = readFileSync(image);
  const headLen = bytes.readUInt32LE(bytes.length - 4);
  const head = JSON.parse(bytes.subarray(bytes.length - 4 - headLen, bytes.length - 4).toString('utf8'));
  head.sections['__proto__.polluted'] = head.sections.names;
  const json = Buffer.from(JSON.stringify(head));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  writeFileSync(image, Buffer.concat([bytes.subarray(0, bytes.length - 4 - headLen), json, len]));
  const again = loadPolicy(catalog, undefined, opts);
  assert.equal(again.from, 'image');
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(again.policy.decide(FLOWS[0]!, NOW).rule?.id, 'firefox-ads');
});
