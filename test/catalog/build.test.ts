import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, describe, test } from 'node:test';
import { buildCatalog, presetMapping, type BuildOptions } from '../../src/catalog/build/index.js';
import { serializeCatalog, writeCatalog } from '../../src/catalog/index.js';
import { Policy, type Rule } from '../../src/policy/index.js';
import { AuditStore } from '../../src/store/audit.js';
import { DATA, NO_DATA } from '../data.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-build-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MAIN = join(import.meta.dirname, '../../src/cli/main.js');

let n = 0;
function file(name: string, content: string | Buffer): string {
  const f = join(dir, `${n++}-${name}`);
  writeFileSync(f, content);
  return f;
}

const HEADER = 'app\thost\tip\tport\tdevice\tuser\ttime';
const tsv = (...rows: string[][]): string => [HEADER, ...rows.map((r) => r.join('\t'))].join('\n') + '\n';

function opts(logs: string[], over: Partial<BuildOptions> = {}): BuildOptions {
  return {
    logs, mapping: presetMapping('tollgate'), keepIps: false, keepPrivate: false, stripUrls: false,
    minCount: 1, minDevices: 1, minUsers: 1, maxPorts: 10, wildcardAfter: 0, strict: false, ...over,
  };
}

/** The rules without their generated ids, for exact comparisons. */
const shape = (rules: Rule[]): string[] => rules.map((r) => `${r.action} ${r.application} ${r.endpoint ?? 'any'} ${r.port ?? 'any'}${r.protocol ? ` ${r.protocol}` : ''}`);

describe('catalog build: refinements on small logs', () => {
  test('hosts are normalised and merged; the IP of a named access is dropped unless --keep-ips', async () => {
    const log = file('a.tsv', tsv(
      ['/usr/bin/curl', 'Example.COM.', '93.184.216.34', '443', 'd1', 'u1', ''],
      ['/usr/bin/curl', 'example.com', '', '443', 'd2', 'u1', ''],
      ['/usr/bin/curl', 'bücher.example', '', '443', 'd1', 'u1', ''],
      ['/usr/bin/curl', '', '2001:DB8:0:0::1', '22', 'd1', 'u1', ''],
    ));
    assert.deepEqual(shape((await buildCatalog(opts([log]))).rules), [
      'allow /usr/bin/curl 2001:db8::1 22',
      'allow /usr/bin/curl example.com 443',
      'allow /usr/bin/curl xn--bcher-kva.example 443',
    ]);
    assert.deepEqual(shape((await buildCatalog(opts([log], { keepIps: true }))).rules), [
      'allow /usr/bin/curl 2001:db8::1 22',
      'allow /usr/bin/curl 93.184.216.34 443',
      'allow /usr/bin/curl example.com 443',
      'allow /usr/bin/curl xn--bcher-kva.example 443',
    ]);
  });

  test('private, loopback and link-local destinations are dropped unless --keep-private', async () => {
    const log = file('p.tsv', tsv(
      ['/a', '', '10.1.2.3', '445', '', '', ''], ['/a', '', '127.0.0.1', '80', '', '', ''], ['/a', '', 'fe80::1', '80', '', '', ''],
      ['/a', 'printer.local', '', '631', '', '', ''], ['/a', '', '8.8.8.8', '53', '', '', ''],
    ));
    assert.deepEqual(shape((await buildCatalog(opts([log]))).rules), ['allow /a 8.8.8.8 53']);
    assert.equal((await buildCatalog(opts([log], { keepPrivate: true }))).rules.length, 5);
  });

  test('an application on many ports of one host gets one rule for any port', async () => {
    const rows = Array.from({ length: 4 }, (_, i) => ['/usr/bin/torrent', 'tracker.example', '', String(6881 + i), '', '', '']);
    const log = file('ports.tsv', tsv(...rows, ['/usr/bin/torrent', 'other.example', '', '443', '', '', '']));
    assert.deepEqual(shape((await buildCatalog(opts([log], { maxPorts: 3 }))).rules), ['allow /usr/bin/torrent other.example 443', 'allow /usr/bin/torrent tracker.example any']);
    assert.equal((await buildCatalog(opts([log], { maxPorts: 4 }))).rules.length, 5);
  });

  test('many subdomains become *.domain, by the Public Suffix List: never *.co.uk, and the apex stays', async () => {
    const subs = (app: string, domain: string, k: number): string[][] => Array.from({ length: k }, (_, i) => [app, `h${i}.${domain}`, '', '443', '', '', '']);
    const log = file('w.tsv', tsv(
      ...subs('/app', 'cdn.example.co.uk', 3), ['/app', 'example.co.uk', '', '443', '', '', ''],
      ...subs('/app', 'github.io', 3), ...subs('/app', 'few.example', 2),
    ));
    const { rules, steps } = await buildCatalog(opts([log], { wildcardAfter: 2 }));
    assert.deepEqual(shape(rules), [
      'allow /app *.example.co.uk 443', 'allow /app example.co.uk 443',
      'allow /app h0.few.example 443', 'allow /app h0.github.io 443', 'allow /app h1.few.example 443',
      'allow /app h1.github.io 443', 'allow /app h2.github.io 443',
    ]);
    assert.match(steps.find((s) => s.step === 'wildcards')!.detail, /^3 host names under 1 domains/);
  });

  test('noise filters: occurrences (count column summed), distinct devices, distinct users, time window', async () => {
    const log = file('noise.tsv', tsv(
      ['/a', 'once.example', '', '443', 'd1', 'u1', '2026-11-01T00:00:00Z'],
      ['/a', 'often.example', '', '443', 'd1', 'u1', '2026-11-02T00:00:00Z'],
      ['/a', 'often.example', '', '443', 'd2', 'u1', '2026-11-03T00:00:00Z'],
      ['/a', 'often.example', '', '443', 'd3', 'u2', '2026-11-04T00:00:00Z'],
    ));
    assert.deepEqual(shape((await buildCatalog(opts([log], { minCount: 2 }))).rules), ['allow /a often.example 443']);
    assert.deepEqual(shape((await buildCatalog(opts([log], { minDevices: 3 }))).rules), ['allow /a often.example 443']);
    assert.deepEqual(shape((await buildCatalog(opts([log], { minUsers: 2 }))).rules), ['allow /a often.example 443']);
    assert.equal((await buildCatalog(opts([log], { minUsers: 3 }))).rules.length, 0);
    const w = await buildCatalog(opts([log], { since: Date.parse('2026-11-03T00:00:00Z') }));
    assert.deepEqual([shape(w.rules), w.files[0]!.outsideWindow], [['allow /a often.example 443'], 2]);
    const counted = file('count.csv', 'app,host,port,count\n/a,x.example,443,5\n/a,y.example,443,1\n');
    assert.deepEqual(shape((await buildCatalog(opts([counted], { minCount: 3 }))).rules), ['allow /a x.example 443']);
    await assert.rejects(buildCatalog(opts([counted], { minDevices: 2 })), /--min-devices 2: the logs have no device column/);
  });

  test('URLs stay URLs, or become hosts with --strip-urls', async () => {
    const log = file('u.jsonl', '{"app":"/a","host":"https://API.example.com/v1/x?q=1","port":443}\n');
    assert.deepEqual(shape((await buildCatalog(opts([log]))).rules), ['allow /a https://api.example.com/v1/x?q=1 443']);
    // the same file written with a byte-order mark: its first line is an access, not a malformed line
    const bom = await buildCatalog(opts([file('bom.jsonl', '\ufeff' + readFileSync(log, 'utf8'))]));
    assert.deepEqual([shape(bom.rules), bom.files[0]!.malformed], [['allow /a https://api.example.com/v1/x?q=1 443'], 0]);
    assert.deepEqual(shape((await buildCatalog(opts([log], { stripUrls: true }))).rules), ['allow /a api.example.com 443']);
  });

  test('blocked applications and ports: whole-app blocks by path and app id; their allow rules are dropped and reported', async () => {
    const apps = file('apps.csv', 'app,identifier\n/Arc.app,company.thebrowser.Browser\n/TftpServer.app,\n');
    const ports = file('ports.txt', '445\n# comment\n\n21\n');
    const log = file('b.tsv', tsv(
      ['/Applications/Arc.app/Contents/MacOS/Arc', 'example.com', '', '443', '', '', ''],
      ['/Applications/Arcade.app/Contents/MacOS/Arcade', 'example.com', '', '443', '', '', ''],
    ));
    const r = await buildCatalog(opts([log], { blockedAppsFile: apps, blockedPortsFile: ports }));
    assert.deepEqual(shape(r.rules), [
      'block */Arc.app any any', 'block */TftpServer.app any any', 'block company.thebrowser.Browser any any',
      'block any any 21', 'block any any 445',
      'allow /Applications/Arcade.app/Contents/MacOS/Arcade example.com 443',
    ]);
    assert.match(r.steps.find((s) => s.step === 'blocked apps')!.detail, /1 allow rules of 1 blocked applications dropped: \/Applications\/Arc\.app/);
    await assert.rejects(buildCatalog(opts([log], { blockedAppsFile: file('bad.csv', 'app,identifier\nArc.app,x\n') })), /bad\.csv:2: app must be a path/);
    // a spreadsheet's "CSV UTF-8" export starts with a byte-order mark: the header's first column is still "app" (csv-parse's trim takes it off)
    const excel = await buildCatalog(opts([log], { blockedAppsFile: file('excel.csv', '\ufeff' + readFileSync(apps, 'utf8')), blockedPortsFile: ports }));
    assert.deepEqual(shape(excel.rules), shape(r.rules));
  });
});

describe('catalog build: inputs', () => {
  const rows = Array.from({ length: 3000 }, (_, i) => [`/opt/app${i % 37}/bin/app`, `h${i % 101}.example${i % 7}.com`, `203.0.113.${i % 250}`, String(443 + (i % 3)), `d${i % 13}`, `u${i % 5}`, '']);
  const text = tsv(...rows);

  test('the same catalog from 1 or 4 workers on byte ranges, and from gzip: byte-identical output', async () => {
    const plain = file('big.tsv', text);
    const gz = file('big.tsv.gz', gzipSync(text));
    const out = async (o: BuildOptions): Promise<string> => serializeCatalog((await buildCatalog(o)).rules, { format: 'tollgate', encoding: 'json' }).toString();
    const one = await out(opts([plain], { workers: 1 }));
    assert.equal(await out(opts([plain], { workers: 4, minRangeBytes: 4096 })), one);
    assert.equal(await out(opts([gz])), one);
    assert.equal(await out(opts([plain], { workers: 1 })), one, 'deterministic');
    assert.equal(JSON.parse(one).rules.length, 3000, 'every row is a distinct access');
  });

  test('malformed lines are counted with their line numbers (across worker ranges), never fatal unless --strict', async () => {
    const lines = text.split('\n');
    lines[1000] = 'only\ttwo';
    lines[2500] = '/a\thost.example\t\tnot-a-port\t\t\t';
    const f = file('bad.tsv', lines.join('\n'));
    const r = await buildCatalog(opts([f], { workers: 4, minRangeBytes: 4096 }));
    assert.deepEqual(r.files[0]!.firstBad, [
      { line: 1001, reason: '2 fields, expected at least 7' },
      { line: 2501, reason: 'bad port "not-a-port"' },
    ]);
    assert.equal(r.files[0]!.malformed, 2);
    await assert.rejects(buildCatalog(opts([f], { strict: true })), /--strict: malformed lines:\n {2}.*bad\.tsv:1001: 2 fields/);
    const gz = file('bad.tsv.gz', gzipSync(lines.join('\n')));
    assert.deepEqual((await buildCatalog(opts([gz]))).files[0]!.firstBad.map((b) => b.line), [1001, 2501]);
  });

  test('the real Cortex XDR sample with NuAppFirewall\'s blocked apps and ports', { skip: NO_DATA }, async () => {
    const r = await buildCatalog(opts([join(DATA, 'catalog_edr-log-ex.tsv')], {
      mapping: presetMapping('cortex-xdr'), blockedAppsFile: join(DATA, 'catalog_block-applications.csv'), blockedPortsFile: join(DATA, 'catalog_block_ports.txt'),
    }));
    assert.deepEqual([r.files[0]!.lines, r.files[0]!.accesses, r.files[0]!.malformed], [99, 1388, 0]);
    assert.equal(r.rules.filter((x) => x.application === 'any').length, 8);
    assert.ok(r.rules.some((x) => x.action === 'allow' && x.endpoint === 'api.github.com'));
  });

  test('an agent audit store becomes a catalog of what was allowed', async () => {
    const db = join(dir, 'audit.db');
    const s = new AuditStore(db);
    const base = { time: 1, pid: 1, remoteIp: '93.184.216.34', protocol: 'tcp' as const, level: 'default', reason: 'mode', enforced: true };
    s.add({ ...base, path: '/usr/bin/curl', hostnames: ['example.com'], port: 443, action: 'allow' });
    s.add({ ...base, path: '/usr/bin/curl', hostnames: [], port: 80, action: 'allow' });
    s.add({ ...base, path: '/usr/bin/nc', hostnames: ['evil.example'], port: 4444, action: 'block' });
    s.close();
    assert.deepEqual(shape((await buildCatalog(opts([db]))).rules), ['allow /usr/bin/curl 93.184.216.34 80 tcp', 'allow /usr/bin/curl example.com 443 tcp']);
  });

  test('a built catalog allows exactly the accesses it kept', async () => {
    const f = file('kept.tsv', text);
    const { rules } = await buildCatalog(opts([f], { minCount: 10 }));
    const policy = Policy.compile(rules, 'passive-block');
    const counts = new Map<string, number>();
    for (const r of rows) counts.set(`${r[0]}|${r[1]}|${r[3]}`, (counts.get(`${r[0]}|${r[1]}|${r[3]}`) ?? 0) + 1);
    for (const [k, c] of counts) {
      const [app, host, port] = k.split('|');
      const v = policy.decide({ app: { path: app! }, remote: { ip: '198.51.100.1', hostnames: [host!] }, port: Number(port), protocol: 'tcp' });
      assert.equal(v.action, c >= 10 ? 'allow' : 'block', `${k} seen ${c} times`);
    }
  });
});

test('a large catalog is written in pieces, byte for byte what serializeCatalog gives', async () => {
  const rules: Rule[] = Array.from({ length: 25_001 }, (_, i) => ({ id: `r${i}`, action: i % 2 ? 'allow' : 'block', application: `/opt/a${i % 97}`, endpoint: `h${i}.example.com`, ...(i % 3 ? { port: 443 } : {}) }));
  const f = join(dir, 'large.json');
  await writeCatalog(f, rules, { format: 'tollgate', encoding: 'json', mode: 'ask' });
  assert.ok(readFileSync(f).equals(Buffer.from(serializeCatalog(rules, { format: 'tollgate', encoding: 'json', mode: 'ask' }))));
});

describe('catalog CLI', () => {
  test('build writes the catalog and a summary; diff and stats review it', () => {
    const log = file('cli.tsv', tsv(['/usr/bin/curl', 'a.example', '', '443', '', '', ''], ['/usr/bin/curl', 'b.example', '', '443', '', '', '']));
    const out = join(dir, 'cli.json');
    const res = execFileSync(process.execPath, [MAIN, 'catalog', 'build', '--logs', log, '--preset', 'tollgate', '--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(res, '');
    assert.equal(JSON.parse(readFileSync(out, 'utf8')).rules.length, 2);
    const log2 = file('cli2.tsv', tsv(['/usr/bin/curl', 'a.example', '', '443', '', '', ''], ['/usr/bin/curl', 'c.example', '', '443', '', '', '']));
    const out2 = join(dir, 'cli2.plist');
    execFileSync(process.execPath, [MAIN, 'catalog', 'build', '--logs', log2, '--preset', 'tollgate', '--out', out2], { stdio: 'ignore' });
    const diff = execFileSync(process.execPath, [MAIN, 'catalog', 'diff', out, out2], { encoding: 'utf8' });
    assert.match(diff, /^\/usr\/bin\/curl: \+1 -1 ~0\n {2}\+ .*c\.example.*\n {2}- .*b\.example.*\n1 applications: 1 added, 1 removed, 0 changed\n$/);
    const stats = JSON.parse(execFileSync(process.execPath, [MAIN, 'catalog', 'stats', out2, '--json'], { encoding: 'utf8' }));
    assert.deepEqual([stats.rules, stats.byEndpoint, stats.topApplications], [2, { host: 2 }, [{ application: '/usr/bin/curl', rules: 2 }]]);
  });

  test('bad input is one clear message', () => {
    const fail = (args: string[]): string => {
      try {
        execFileSync(process.execPath, [MAIN, 'catalog', ...args], { stdio: 'pipe' });
      } catch (e) {
        const err = e as { status: number; stderr: Buffer };
        assert.equal(err.status, 1);
        assert.doesNotMatch(err.stderr.toString(), /\n\s+at /, 'no stack trace');
        return err.stderr.toString();
      }
      assert.fail('expected a failure');
    };
    assert.match(fail(['build', '--logs', join(dir, 'none.tsv'), '--out', join(dir, 'x.json')]), /none\.tsv: cannot read \(ENOENT\)/);
    const missingApps = fail(['build', '--logs', file('ok2.tsv', tsv()), '--blocked', join(dir, 'none.csv'), '--out', join(dir, 'x.json')]);
    assert.match(missingApps, /none\.csv: cannot read \(ENOENT\)/);
    assert.doesNotMatch(missingApps, /not a CSV/, 'a missing file is not called a bad CSV');
    assert.match(fail(['build', '--logs', file('nohead.tsv', 'a\tb\n1\t2\n'), '--out', join(dir, 'x.json')]), /the header has no column for app \(causality_actor_process_image_path\)/);
    assert.match(fail(['build', '--logs', file('ok.tsv', tsv()), '--out', join(dir, 'x.json'), '--format', 'nuapp', '--wildcard-after', '3']), /NuAppFirewall catalogs cannot hold \*\.domain rules/);
    assert.match(fail(['build', '--logs', file('g.tsv.gz', 'not gzip at all'), '--out', join(dir, 'x.json')]), /header has no column|not a readable gzip/);
    // --out naming an input (a slip of the shell) is refused before the build, and the input is left as it was
    const log = file('keep.tsv', tsv(['/a', 'x.example', '', '443', '', '', '']));
    const apps = file('keep.csv', 'app,identifier\n/Arc.app,\n');
    assert.match(fail(['build', '--logs', log, '--out', log, '--preset', 'tollgate']), /--out .*keep\.tsv is the input .*keep\.tsv: the catalog would replace it/);
    assert.match(fail(['build', '--logs', log, '--blocked', apps, '--out', join(dir, '.', apps.slice(dir.length + 1)), '--preset', 'tollgate']), /is the input .*keep\.csv/);
    assert.equal(readFileSync(log, 'utf8'), tsv(['/a', 'x.example', '', '443', '', '', '']));
  });
});
