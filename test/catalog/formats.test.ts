import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CatalogError, hashFile, loadPolicy, parseCatalog, readCatalog, readCatalogOffThread, serializeCatalog, writeCatalog } from '../../src/catalog/index.js';
import { nuSchemas, plainNuApp } from '../../src/catalog/nuapp.js';
import { Policy, type Rule } from '../../src/policy/index.js';
import { DATA, NO_DATA } from '../data.js';

const SAMPLE: Rule[] = [
  { id: 'ff-web', action: 'allow', application: 'org.mozilla.firefox', endpoint: '*.mozilla.org', port: 443, protocol: 'tcp', note: 'updates' },
  { id: 'curl', action: 'block', application: '/usr/bin/curl', endpoint: '10.0.0.0/8', port: '1-1024' },
  { id: 'arc', action: 'block', application: '*/Arc.app' },
  { id: 'lib', action: 'allow', application: '/usr/lib/', endpoint: '2001:db8::/32', users: ['alice'], groups: ['dev'] },
  { id: 'smb', action: 'block', application: 'any', port: 445, expires: '2030-01-01T00:00:00.000Z' },
  { id: 'url', action: 'allow', application: 'any', endpoint: 'https://updates.example.com/v1', protocol: 'udp' },
];

function roundTrip(rules: Rule[], format: 'tollgate' | 'nuapp', encoding: 'json' | 'plist'): Rule[] {
  const text = serializeCatalog(rules, { format, encoding });
  return parseCatalog(Buffer.from(text), 'mem').rules;
}

describe('Tollgate format', () => {
  for (const encoding of ['json', 'plist'] as const) {
    test(`round trip through ${encoding} gives the same rules`, () => {
      assert.deepEqual(roundTrip(SAMPLE, 'tollgate', encoding), SAMPLE);
    });
  }

  test('binary PLIST is read too', async () => {
    const plist = await import('plist');
    const bin = (plist as unknown as { buildBinary?: (v: unknown) => Buffer }).buildBinary;
    if (!bin) return assert.fail('plist.buildBinary missing');
    const bytes = Buffer.from(bin({ format: 'tollgate-catalog', version: 1, rules: [SAMPLE[2], SAMPLE[4]] }));
    const c = parseCatalog(bytes, 'bin');
    assert.deepEqual(c.rules, [SAMPLE[2], SAMPLE[4]]);
    assert.equal(c.encoding, 'plist');
    // from a file too (readCatalog reads text first, then the bytes of a binary PLIST), and bytes passed as text are refused
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-bplist-'));
    try {
      writeFileSync(join(dir, 'c.plist'), bytes);
      assert.deepEqual((await readCatalog(join(dir, 'c.plist'))).rules, [SAMPLE[2], SAMPLE[4]]);
      assert.throws(() => parseCatalog(bytes.toString('utf8'), 'txt'), /txt: a binary PLIST must be read as bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file that starts with a UTF-8 byte-order mark reads as it would without one, in every format and every way of reading; UTF-16 is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-bom-'));
    try {
      const nu = { '/usr/bin/curl': [{ action: 'block', identifier: 'unknown', destinations: [['example.com', '443']] }] };
      const texts = [serializeCatalog(SAMPLE, { format: 'tollgate', encoding: 'json' }), serializeCatalog(SAMPLE, { format: 'tollgate', encoding: 'plist' }), JSON.stringify(nu)];
      for (const [k, text] of texts.entries()) {
        const [plain, bom] = [join(dir, `${k}.txt`), join(dir, `${k}-bom.txt`)];
        writeFileSync(plain, text);
        writeFileSync(bom, '\ufeff' + text);
        const want = (await readCatalog(plain)).rules;
        assert.ok(want.length > 0);
        assert.deepEqual((await readCatalog(bom)).rules, want, `readCatalog ${k}`);
        assert.deepEqual(loadPolicy(bom, undefined, { dir: null }).policy.rules, want, `loadPolicy ${k}`);
        assert.deepEqual(Policy.compile((await readCatalogOffThread(bom)).rules).rules, want, `off thread ${k}`);
        // UTF-16 (Windows PowerShell 5's `>`), either byte order: refused with what to do about it
        const utf16 = join(dir, `${k}-utf16.txt`);
        const le = Buffer.from('\ufeff' + text, 'utf16le');
        for (const bytes of [le, Buffer.from(le).swap16()]) {
          writeFileSync(utf16, bytes);
          const said = /-utf16\.txt: the file is UTF-16 text .*: save it as UTF-8$/;
          await assert.rejects(readCatalog(utf16), said);
          assert.throws(() => loadPolicy(utf16, undefined, { dir: null }), said);
          await assert.rejects(readCatalogOffThread(utf16), said);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('writing over a catalog keeps whose it is: its owner and group, its other hard links; a folder the writer may not add to is written in place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-write-'));
    const opts = { format: 'tollgate', encoding: 'json' } as const;
    try {
      // a second hard link sees the new rules: the file itself was rewritten, not replaced
      const file = join(dir, 'c.json');
      await writeCatalog(file, SAMPLE, opts);
      linkSync(file, join(dir, 'other-name.json'));
      await writeCatalog(file, SAMPLE.slice(0, 1), opts);
      assert.deepEqual((await readCatalog(join(dir, 'other-name.json'))).rules, SAMPLE.slice(0, 1));
      assert.equal(statSync(file).ino, statSync(join(dir, 'other-name.json')).ino);
      const MAIN = join(import.meta.dirname, '../../src/cli/main.js');
      const asNobody = (...args: string[]) => spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, MAIN, ...args], { encoding: 'utf8' });
      const probe = asNobody('--help');
      if (process.getuid?.() !== 0 || probe.error || probe.status !== 0) {
        console.log(`SKIP writing over another user's catalog as root, and as a user in a folder not theirs: ${process.getuid?.() !== 0 ? 'not root' : probe.error?.message ?? probe.stderr}`);
        return;
      }
      // root (sudo tollgate catalog build --out ~/catalog.json) leaves a user's catalog theirs
      const users = join(dir, 'users.json');
      await writeCatalog(users, SAMPLE, opts);
      chownSync(users, 65534, 65534);
      chmodSync(users, 0o640);
      await writeCatalog(users, SAMPLE.slice(0, 2), opts);
      const st = statSync(users);
      assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o640]);
      assert.deepEqual((await readCatalog(users)).rules, SAMPLE.slice(0, 2));
      // a user may write their catalog in a folder where they cannot make a file: written in place
      chmodSync(dir, 0o755);
      const src = join(dir, 'src.json');
      await writeCatalog(src, SAMPLE.slice(0, 3), opts);
      chmodSync(src, 0o644);
      const theirs = join(dir, 'theirs.json');
      await writeCatalog(theirs, SAMPLE, opts);
      chownSync(theirs, 65534, 65534);
      const r = asNobody('convert', src, theirs);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual((await readCatalog(theirs)).rules, SAMPLE.slice(0, 3));
      assert.equal(statSync(theirs).uid, 65534);
      // and a new file there cannot be made: said so
      const none = asNobody('convert', src, join(dir, 'new.json'));
      assert.equal(none.status, 1);
      assert.match(none.stderr, /new\.json: cannot write \(EACCES\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('writing a catalog replaces it whole: a reader meanwhile sees the old one or the new one, never part of one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-write-'));
    try {
      const file = join(dir, 'c.json');
      const many = (n: number, tag: string): Rule[] => Array.from({ length: n }, (_, i) => ({ id: `${tag}${i}`, action: 'block', application: 'any', port: 1 + (i % 65535) }));
      await writeCatalog(file, many(3, 'old'), { format: 'tollgate', encoding: 'json' });
      chmodSync(file, 0o600);
      // a reader on another thread reads and parses the file over and over while 50,000 rules are written
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const reader = new Worker(
        `const { readFileSync } = require('node:fs');
        const { workerData: { file, stop }, parentPort } = require('node:worker_threads');
        const seen = {};
        do {
          let n;
          try { n = JSON.parse(readFileSync(file, 'utf8')).rules.length; } catch (e) { n = 'unreadable'; }
          seen[n] = (seen[n] ?? 0) + 1;
        } while (Atomics.load(stop, 0) === 0);
        parentPort.postMessage(seen);`,
        { eval: true, workerData: { file, stop } },
      );
      const seen = new Promise<Record<string, number>>((r) => reader.once('message', r));
      await new Promise((r) => setTimeout(r, 50)); // the reader under way
      await writeCatalog(file, many(50_000, 'new'), { format: 'tollgate', encoding: 'json' });
      await new Promise((r) => setTimeout(r, 100)); // the reader finds the new one too
      Atomics.store(stop, 0, 1);
      const reads = await seen;
      assert.deepEqual(Object.keys(reads).sort(), ['3', '50000'], `what the reader found: ${JSON.stringify(reads)}`);
      assert.equal((await readCatalog(file)).rules.length, 50_000);
      assert.equal(statSync(file).mode & 0o777, 0o600, 'its permissions are kept');
      // a symlink keeps naming the file it named, which is the one replaced
      mkdirSync(join(dir, 'v'));
      writeFileSync(join(dir, 'v', 'real.json'), serializeCatalog(SAMPLE, { format: 'tollgate', encoding: 'json' }));
      symlinkSync(join('v', 'real.json'), join(dir, 'link.json'));
      await writeCatalog(join(dir, 'link.json'), SAMPLE.slice(0, 2), { format: 'tollgate', encoding: 'plist' });
      assert.ok(lstatSync(join(dir, 'link.json')).isSymbolicLink());
      assert.equal(readlinkSync(join(dir, 'link.json')), join('v', 'real.json'));
      assert.deepEqual((await readCatalog(join(dir, 'v', 'real.json'))).rules, SAMPLE.slice(0, 2));
      // a write that fails says so and leaves nothing behind
      await assert.rejects(writeCatalog(join(dir, 'v'), SAMPLE, { format: 'tollgate', encoding: 'json' }), /v: cannot write \(EISDIR\)/);
      await assert.rejects(writeCatalog(join(dir, 'none', 'c.json'), SAMPLE, { format: 'tollgate', encoding: 'json' }), /c\.json: cannot write \(ENOENT\)/);
      await assert.rejects(writeCatalog(file, SAMPLE, { format: 'nuapp', encoding: 'json' }), /cannot be expressed in NuAppFirewall's format/);
      assert.equal((await readCatalog(file)).rules.length, 50_000, 'a refused write leaves the catalog as it was');
      assert.deepEqual(readdirSync(dir).sort(), ['c.json', 'link.json', 'v']);
      assert.deepEqual(readdirSync(join(dir, 'v')), ['real.json']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the mode a catalog names is kept', () => {
    const c = parseCatalog(Buffer.from(serializeCatalog(SAMPLE, { format: 'tollgate', encoding: 'json', mode: 'ask' })), 'm');
    assert.equal(c.mode, 'ask');
  });
});

describe('NuAppFirewall format', () => {
  test('reads the generated catalog excerpt: 5 apps, 4,019 destinations', { skip: NO_DATA }, async () => {
    const c = await readCatalog(join(DATA, 'catalog_data-rules_test-rules.json'));
    assert.equal(c.format, 'nuapp');
    assert.equal(c.rules.length, 4019);
    const p = Policy.compile(c.rules);
    assert.deepEqual(p.stats().byAction, { allow: 4016, block: 3 });
    // identifiers make app-id rules; "/Arc.app" whole-app block is an app-id rule for Arc's bundle id
    const arc = p.decide({ app: { id: 'company.thebrowser.Browser', path: '/Applications/Arc.app/Contents/MacOS/Arc' }, remote: { ip: '1.1.1.1', hostnames: [] }, port: 443, protocol: 'tcp' });
    assert.equal(arc.action, 'block');
    assert.equal(arc.level, 'app-id');
    const webkit = '/Library/Apple/System/Library/StagedFrameworks/Safari/WebKit.framework/Versions/A/XPCServices/com.apple.WebKit.Networking.xpc/Contents/MacOS/com.apple.WebKit.Networking';
    const allowed = p.decide({ app: { path: webkit }, remote: { ip: '142.251.163.113', hostnames: [] }, port: 443, protocol: 'tcp' });
    assert.deepEqual([allowed.action, allowed.level], ['allow', 'path']);
    const otherPort = p.decide({ app: { path: webkit }, remote: { ip: '142.251.163.113', hostnames: [] }, port: 8443, protocol: 'tcp' });
    assert.equal(otherPort.level, 'default');
  });

  test('reads the legacy catalog: 269 apps, 153,128 endpoints, all allow', { skip: NO_DATA }, async () => {
    const c = await readCatalog(join(DATA, 'catalog_legacy-catalog_2024-09.json'));
    assert.equal(c.format, 'nuapp-legacy');
    assert.equal(c.rules.length, 153128);
    assert.equal(new Set(c.rules.map((r) => r.application)).size, 269);
    const s = Policy.compile(c.rules).stats();
    assert.deepEqual(s.byAction, { allow: 153128, block: 0 });
    // every endpoint, in order, as another reading of the Python lists gives them
    const doc = JSON.parse(readFileSync(join(DATA, 'catalog_legacy-catalog_2024-09.json'), 'utf8')) as Record<string, { endpoints: string }[]>;
    const want = Object.values(doc).flatMap((entries) => entries.flatMap((e) => JSON.parse(e.endpoints.replaceAll("'", '"')) as string[]));
    assert.deepEqual(c.rules.map((r) => r.endpoint), want);
  });

  test('legacy endpoint lists: blanks anywhere between items, an empty list', () => {
    const doc = { '/usr/bin/a': [{ action: 'allow', endpoints: "[ 'a.example' ,'10.0.0.1',  'b.example']", direction: 'outgoing' }, { action: 'block', endpoints: '[]', direction: 'outgoing' }, { action: 'block', endpoints: "['c.example']", direction: 'outgoing' }] };
    const rules = parseCatalog(JSON.stringify(doc), 'l.json').rules;
    assert.deepEqual(rules.map((r) => [r.id, r.action, r.endpoint]), [['nuapp-1', 'allow', 'a.example'], ['nuapp-2', 'allow', '10.0.0.1'], ['nuapp-3', 'allow', 'b.example'], ['nuapp-4', 'block', 'c.example']]);
  });

  test('reads the system-test and demo rules', { skip: NO_DATA }, async () => {
    const sys = await readCatalog(join(DATA, 'app_systemtests_controlled-rules.json'));
    const p = Policy.compile(sys.rules, 'passive-allow');
    const swift = { id: 'com.apple.dt.Xcode', path: '/Applications/Xcode.app/Contents/Developer/Toolchains/XcodeDefault.xctoolchain/usr/bin/swift-frontend' };
    assert.equal(p.decide({ app: swift, remote: { ip: '1.2.3.4', hostnames: ['www.google.com'] }, port: 443, protocol: 'tcp' }).action, 'block');
    assert.equal(p.decide({ app: swift, remote: { ip: '1.2.3.4', hostnames: ['www.google.com'] }, port: 80, protocol: 'tcp' }).action, 'allow');
    const demo = await readCatalog(join(DATA, 'app_Rules_Demo_rules.json'));
    assert.deepEqual(demo.rules.map((r) => r.application), ['company.thebrowser.Browser', 'org.mozilla.firefox']);
  });

  test('keys: any, one-component sub-paths, full paths, prefixes, keys without a leading slash', () => {
    const doc = {
      any: [{ action: 'block', identifier: 'unknown', destinations: [['any', '445']] }],
      '/Arc.app': [{ action: 'block', identifier: 'unknown', destinations: [['any', 'any']] }],
      '/usr/bin/curl': [{ action: 'allow', identifier: 'unknown', destinations: [['example.com', '443']] }],
      '/opt/tools/': [{ action: 'allow', identifier: 'unknown', destinations: [['1.2.3.4', 'any']] }],
      'Slack.app': [{ action: 'block', identifier: 'unknown', destinations: [['any', 'any']] }],
    };
    const c = parseCatalog(Buffer.from(JSON.stringify(doc)), 'k');
    assert.deepEqual(c.rules.map((r) => r.application), ['any', '*/Arc.app', '/usr/bin/curl', '/opt/tools/', '*/Slack.app']);
    // NuAppFirewall matches such a key inside the path: so does the rule it makes (was an app id "Slack.app", matching no path)
    const v = Policy.compile(c.rules).decide({ app: { path: '/Applications/Slack.app/Contents/MacOS/Slack' }, remote: { ip: '192.0.2.1', hostnames: ['slack.com'] }, port: 443, protocol: 'tcp' });
    assert.deepEqual([v.action, v.rule?.application], ['block', '*/Slack.app']);
  });

  for (const encoding of ['json', 'plist'] as const) {
    test(`round trip through ${encoding}: the same rules (ids are renumbered)`, () => {
      const rules: Rule[] = [
        { id: 'a', action: 'allow', application: 'com.apple.Music', endpoint: 'music.apple.com', port: '443' },
        { id: 'b', action: 'block', application: '*/Arc.app', endpoint: 'any', port: 'any' },
        { id: 'c', action: 'allow', application: '/usr/bin/curl', endpoint: '1.2.3.4', port: '80' },
        { id: 'd', action: 'block', application: 'any', endpoint: 'any', port: '445' },
        { id: 'e', action: 'allow', application: '/usr/lib/', endpoint: 'https://a.com/x', port: 'any' },
      ];
      const back = roundTrip(rules, 'nuapp', encoding);
      assert.deepEqual(back.map(({ id: _, ...r }) => r), rules.map(({ id: _, ...r }) => r));
    });
  }

  test('an app id that happens to be "rules" is still written as NuAppFirewall JSON', () => {
    const rules: Rule[] = [{ id: 'x', action: 'block', application: 'rules', endpoint: 'any', port: 'any' }];
    const back = roundTrip(rules, 'nuapp', 'json');
    assert.deepEqual(back.map(({ id: _, ...r }) => r), rules.map(({ id: _, ...r }) => r));
  });

  test('refuses to write what the format cannot hold, naming each rule', () => {
    assert.throws(() => serializeCatalog(SAMPLE, { format: 'nuapp', encoding: 'json' }), (e: unknown) => {
      assert.ok(e instanceof CatalogError);
      for (const why of ['"ff-web": wildcard endpoint', '"curl": cidr endpoint', '"lib": cidr endpoint', '"smb": expiry', '"url": protocol']) {
        assert.ok(e.message.includes(`rule ${why}`), `${e.message} lacks ${why}`);
      }
      return true;
    });
  });
});

describe('bad input gives one clear message', () => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['broken JSON', '{"format": ', /bad: invalid JSON/],
    ['broken PLIST', '<plist><dict><key>a</key>', /bad: invalid PLIST/],
    ['not an object', '[1,2]', /expected an object at the top level/],
    ['wrong version', '{"format":"tollgate-catalog","version":9,"rules":[]}', /version 9 is not supported/],
    ['unknown top-level key', '{"format":"tollgate-catalog","version":1,"rules":[],"extra":1}', /not a valid Tollgate catalog/],
    ['rules not a list', '{"format":"tollgate-catalog","version":1,"rules":{}}', /rules: /],
    ['NuApp destinations not pairs', '{"/a":[{"action":"allow","identifier":"unknown","destinations":[["x"]]}]}', /NuAppFirewall catalog: \/a\.0\.destinations\.0/],
    ['legacy endpoints not a list', '{"/a":[{"action":"allow","endpoints":"x","direction":"outgoing"}]}', /endpoints is not a list/],
    ['NuApp entries not objects', '{"/a":["x"]}', /NuAppFirewall catalog: \/a\.0: .*expected object/],
    ['legacy incoming', '{"/a":[{"action":"allow","endpoints":"[\'a.com\']","direction":"incoming"}]}', /direction "incoming" is not supported/],
  ];
  for (const [name, text, re] of cases) {
    test(name, () => {
      assert.throws(() => parseCatalog(Buffer.from(text), 'bad'), (e: unknown) => e instanceof CatalogError && re.test(e.message));
    });
  }

  test('a missing file', async () => {
    await assert.rejects(readCatalog('/no/such/catalog.json'), /\/no\/such\/catalog.json: no such file/);
  });

  test('the real files are read byte for byte as given (no trailing garbage accepted)', { skip: NO_DATA }, () => {
    const text = readFileSync(join(DATA, 'app_Rules_Demo_rules.json'), 'utf8') + '}';
    assert.throws(() => parseCatalog(Buffer.from(text), 'x'), /invalid JSON/);
  });
});

describe('reading on a worker thread (the agent\'s reload)', () => {
  test('gives what readCatalog gives, every rule in order, and the same errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-offthread-'));
    try {
      const many: Rule[] = Array.from({ length: 5000 }, (_, i) => ({ ...SAMPLE[i % SAMPLE.length]!, id: `r${i}` }));
      const file = join(dir, 'c.json');
      writeFileSync(file, serializeCatalog(many, { format: 'tollgate', encoding: 'json', mode: 'ask' }));
      // and the hash of the bytes it read: the key of the reload's compiled-policy image
      const { rules: want, ...wantHead } = await readCatalog(file);
      const { rules: got, ...gotHead } = await readCatalogOffThread(file);
      assert.deepEqual(gotHead, { ...wantHead, sha256: hashFile(file), size: statSync(file).size });
      assert.ok(!Array.isArray(got), 'a Tollgate JSON catalog comes as its bytes');
      assert.deepEqual(Policy.compile(got).rules, want);
      // a NuAppFirewall catalog comes as its columns, another format as rule objects (in chunks)
      const nu = join(dir, 'nu.json');
      writeFileSync(nu, JSON.stringify({ '/usr/bin/curl': [{ action: 'block', identifier: 'unknown', destinations: [['example.com', '443'], ['any', 'any']] }] }));
      const { rules: nuRules, sha256: nuHash } = await readCatalogOffThread(nu);
      assert.ok(!Array.isArray(nuRules), 'a NuAppFirewall catalog comes as its columns');
      assert.deepEqual(Policy.compile(nuRules).rules, (await readCatalog(nu)).rules);
      assert.equal(nuHash, hashFile(nu));
      const pl = join(dir, 'c.plist');
      writeFileSync(pl, serializeCatalog(many.slice(0, 2500), { format: 'tollgate', encoding: 'plist' }));
      assert.deepEqual((await readCatalogOffThread(pl)).rules, (await readCatalog(pl)).rules);
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"format": ');
      for (const path of [bad, join(dir, 'missing.json')]) {
        const want = (await readCatalog(path).catch((e: unknown) => e)) as CatalogError;
        const got = await readCatalogOffThread(path).catch((e: unknown) => e);
        assert.ok(got instanceof CatalogError, `${path}: a CatalogError`);
        assert.equal(got.message, want.message);
      }
      // the agent passes one long-lived signal to every reload: no listener may stay behind on it
      const warnings: string[] = [];
      const onWarning = (w: Error): void => void warnings.push(w.message);
      process.on('warning', onWarning);
      const once = new AbortController();
      for (let i = 0; i < 12; i++) await readCatalogOffThread(bad, once.signal).catch(() => undefined);
      await new Promise((r) => setImmediate(r));
      process.off('warning', onWarning);
      assert.deepEqual(warnings, []);
      const stop = new AbortController();
      const reading = readCatalogOffThread(file, stop.signal);
      stop.abort(new Error('stopping'));
      await assert.rejects(reading, /stopping/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('a NuAppFirewall document is taken without its schema exactly when the schema takes it', () => {
  const current = { '/usr/bin/curl': [{ action: 'block', identifier: 'unknown', destinations: [['a.example', '443'], ['any', 'any']] }], any: [] };
  const legacy = { '/usr/bin/curl': [{ key: '/usr/bin/curl', action: 'allow', appLocation: '/usr/bin/curl', endpoints: "['a.example']", direction: 'outgoing' }] };
  const values: unknown[] = [undefined, null, 1, 'x', true, [], {}, ['a'], ['a', 'b'], ['a', 'b', 'c'], [['a', 'b']], [1, 'b']];
  // every place in the document given each value, or removed, and each object given one more key
  function* mutations(doc: unknown): Generator<unknown> {
    const places: (string | number)[][] = [];
    const walk = (v: unknown, path: (string | number)[]): void => {
      if (path.length) places.push(path);
      if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) walk(x, [...path, Array.isArray(v) ? Number(k) : k]);
    };
    walk(doc, []);
    for (const path of places) {
      for (const value of [...values, 'remove', 'extra']) {
        const copy = structuredClone(doc) as Record<string | number, unknown>;
        let at = copy;
        for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
        const last = path[path.length - 1]!;
        if (value === 'remove') {
          if (Array.isArray(at)) at.splice(last as number, 1);
          else delete at[last];
        } else if (value === 'extra') {
          if (typeof at[last] !== 'object' || at[last] === null || Array.isArray(at[last])) continue;
          (at[last] as Record<string, unknown>).extra = 1;
        } else at[last] = value;
        yield copy;
      }
    }
  }
  let taken = 0;
  for (const [doc, isLegacy] of [[current, false], [legacy, true]] as const) {
    const schema = isLegacy ? nuSchemas().NuLegacyCatalog : nuSchemas().NuCatalog;
    for (const d of [doc, ...mutations(doc)]) {
      const plain = plainNuApp(d as object, isLegacy);
      assert.equal(plain, schema.safeParse(d).success, JSON.stringify(d));
      if (plain) taken++;
    }
  }
  assert.ok(taken > 10, `only ${taken} documents were well-formed: the mutations test nothing`);
});
