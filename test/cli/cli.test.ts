import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../temp.js';
import { DATA, NO_DATA } from '../data.js';

const ROOT = join(import.meta.dirname, '../../..');
const EXAMPLE = join(ROOT, 'examples/workstation.json');

// the compiled-policy cache of these runs: never the user's or root's own
const CACHE = tempDir('cli-cache');

function tollgate(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), ...args], { encoding: 'utf8', env: { ...process.env, TOLLGATE_CACHE_DIR: CACHE } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('the installed bin is executable, so `npx tollgate` runs it', () => {
  const bin = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin.tollgate as string;
  assert.doesNotThrow(() => accessSync(join(ROOT, bin), constants.X_OK));
  const r = spawnSync(join(ROOT, bin), ['check', EXAMPLE], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  // its first line adds to the caller's glibc tunables (env -S expands only ${NAME}): it still starts
  const tuned = spawnSync(join(ROOT, bin), ['check', EXAMPLE], { encoding: 'utf8', env: { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' } });
  assert.equal(tuned.status, 0, tuned.stderr);
});

test('check prints counts of a valid catalog', { skip: NO_DATA }, () => {
  const r = tollgate('check', EXAMPLE);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /valid tollgate catalog \(json\)/);
  assert.match(r.out, /rules\s+11/);
  assert.match(r.out, /allow 5, block 6/);
  const j = JSON.parse(tollgate('check', join(DATA, 'catalog_data-rules_test-rules.json'), '--json').out);
  assert.deepEqual([j.format, j.rules, j.byAction.block], ['nuapp', 4019, 3]);
});

test('a big catalog is compiled once: check and decide then read its image and answer the same', { skip: NO_DATA }, () => {
  const legacy = join(DATA, 'catalog_legacy-catalog_2024-09.json'); // 3 MB: over the cache's 1 MiB floor
  const dir = tempDir('cli-image');
  const run = (...args: string[]) => tollgate(...args, '--cache-dir', dir);
  const first = run('check', legacy, '--json');
  assert.equal(first.code, 0, first.err);
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.policy')).length, 1);
  const second = run('check', legacy, '--json');
  assert.deepEqual(JSON.parse(second.out), JSON.parse(first.out));
  assert.equal(JSON.parse(second.out).rules, 153128);
  // a verdict by a restored policy names its rule in full, as a compiled one does
  const app = '/Applications/Install macOS Monterey.app/Contents/Resources/startosinstall';
  const ask = ['decide', legacy, '--app', app, '--host', 'configuration.apple.com', '--port', '443', '--json'];
  const restored = JSON.parse(run(...ask).out);
  assert.equal(restored.rule.endpoint, 'configuration.apple.com');
  assert.deepEqual(restored, JSON.parse(tollgate(...ask, '--no-cache').out));
});

test('check lists every bad rule and exits non-zero without a stack trace', () => {
  const dir = tempDir('cli');
  const file = join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify({ format: 'tollgate-catalog', version: 1, rules: [
    { id: 'a', action: 'permit', application: 'any' },
    { id: 'b', action: 'block', application: 'any', endpoint: '300.1.1.1' },
    { id: 'b', action: 'block', application: 'bin/sh' },
  ] }));
  const r = tollgate('check', file);
  assert.equal(r.code, 1);
  assert.match(r.err, /4 invalid rule\(s\)/);
  assert.match(r.err, /rule "a" \(#1\): action: unknown action "permit"/);
  assert.match(r.err, /rule "b" \(#2\): endpoint: malformed IP address "300.1.1.1"/);
  assert.match(r.err, /rule "b" \(#3\): id: duplicate id/);
  assert.match(r.err, /rule "b" \(#3\): application: relative path "bin\/sh"/);
  assert.doesNotMatch(r.err, / {4}at /);
});

test("check of a NuAppFirewall catalog names an empty identifier as what is wrong, not an application the file does not have", () => {
  const dir = tempDir('cli');
  const file = join(dir, 'nu.json');
  writeFileSync(file, JSON.stringify({ '/usr/bin/curl': [{ action: 'block', identifier: '', destinations: [['example.com', '443']] }] }));
  const r = tollgate('check', file);
  assert.equal(r.code, 1);
  assert.match(r.err, /rule "nuapp-1" \(#1\): identifier: empty identifier \(a bundle id, or "unknown" for a rule by its key\)/);
});

test('bad files and arguments: one message, exit 1', () => {
  const dir = tempDir('cli');
  writeFileSync(join(dir, 'x.json'), '{ nope');
  writeFileSync(join(dir, 'x.plist'), '<plist><dict>');
  const cases: [string[], RegExp][] = [
    [['check', join(dir, 'missing.json')], /missing.json: no such file/],
    [['check', join(dir, 'x.json')], /x.json: invalid JSON/],
    [['check', join(dir, 'x.plist')], /x.plist: invalid PLIST/],
    [['decide', EXAMPLE, '--app', 'usr/bin/x', '--host', 'a.com', '--port', '1'], /--app: expected an app id or an absolute executable path/],
    [['decide', EXAMPLE, '--app', '/usr/bin/x', '--ip', '1.2.3', '--port', '1'], /--ip: not an IP address/],
    [['decide', EXAMPLE, '--app', '/usr/bin/x', '--host', 'a b', '--port', '1'], /--host: not a host name/],
    [['decide', EXAMPLE, '--app', '/usr/bin/x', '--host', 'a.com', '--port', '70000'], /expected a port 1-65535/],
    [['decide', EXAMPLE, '--app', '/usr/bin/x', '--host', 'a.com', '--port', '1', '--mode', 'open'], /expected one of passive-allow/],
    [['decide', EXAMPLE, '--app', '/usr/bin/x', '--host', 'a.com', '--port', '1', '--uid', 'abc'], /--uid <n>.*expected a whole number/],
    [['convert', EXAMPLE, join(dir, 'o.json'), '--format', 'nuapp'], /cannot be expressed in NuAppFirewall's format/],
  ];
  for (const [args, re] of cases) {
    const r = tollgate(...args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.err, re);
    assert.doesNotMatch(r.err, / {4}at /);
  }
});

test('decide explains the verdict, as text and JSON', () => {
  const r = tollgate('decide', EXAMPLE, '--app', 'org.mozilla.firefox', '--host', 'Ads.DoubleClick.net', '--port', '443');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^BLOCK {2}\(app-id level\)/);
  assert.match(r.out, /rule "firefox-ads"/);
  const ssh = JSON.parse(tollgate('decide', EXAMPLE, '--app', '/usr/bin/ssh', '--ip', '2001:db8::5', '--port', '22', '--groups', 'admin', '--json').out);
  assert.deepEqual([ssh.action, ssh.rule.id, ssh.level], ['allow', 'ssh-admins', 'path']);
  const other = JSON.parse(tollgate('decide', EXAMPLE, '--app', '/usr/bin/ssh', '--ip', '2001:db8::5', '--port', '22', '--json').out);
  assert.equal(other.rule.id, 'ssh-others');
  // a URL's host is the connection's: host, wildcard and IP rules judge it too
  const url = tollgate('decide', EXAMPLE, '--app', 'org.mozilla.firefox', '--url', 'https://Ads.DoubleClick.net/x?y=1', '--port', '443');
  assert.match(url.out, /^BLOCK {2}\(app-id level\)\n {2}rule "firefox-ads"/);
  const literal = JSON.parse(tollgate('decide', EXAMPLE, '--app', '/usr/bin/curl', '--url', 'http://10.1.2.3:8080/x', '--port', '8080', '--json').out);
  assert.deepEqual([literal.rule.id, literal.flow.remote.ip, literal.flow.remote.hostnames], ['curl-internal', '10.1.2.3', []]);
  const v6 = tollgate('decide', EXAMPLE, '--app', '/usr/bin/ssh', '--url', 'ssh://[2001:db8::1]/', '--port', '22');
  assert.match(v6.out, /rule "ssh-others"/);
  for (const bad of ['nope', 'file:///etc/passwd']) {
    const r = tollgate('decide', EXAMPLE, '--app', '/usr/bin/curl', '--url', bad, '--port', '443');
    assert.equal(r.code, 1);
    assert.match(r.err, /--url: not a URL with a host/);
  }
  const unknown = tollgate('decide', EXAMPLE, '--app', '/usr/bin/wget', '--host', 'example.org', '--port', '80', '--mode', 'passive-block');
  assert.match(unknown.out, /^BLOCK {2}\(default level\)\n {2}no rule applies; mode passive-block/);
});

test('decide --proto udplite: only rules for any protocol apply to UDP-Lite', () => {
  const dir = tempDir('cli');
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ format: 'tollgate-catalog', version: 1, rules: [
    { id: 'no-udp-53', action: 'block', application: 'any', port: 53, protocol: 'udp' },
    { id: 'no-5353', action: 'block', application: 'any', port: 5353 },
  ] }));
  const at = (port: string, proto: string) => tollgate('decide', file, '--app', '/usr/bin/x', '--ip', '192.0.2.1', '--port', port, '--proto', proto).out.split('\n')[0];
  assert.match(at('53', 'udp')!, /^BLOCK/);
  assert.match(at('53', 'udplite')!, /^ALLOW {2}\(default level\)/);
  assert.match(at('5353', 'udplite')!, /^BLOCK/);
  assert.match(tollgate('decide', file, '--app', '/usr/bin/x', '--ip', '192.0.2.1', '--port', '1', '--proto', 'sctp').err, /--proto: expected tcp, udp or udplite/);
  rmSync(dir, { recursive: true, force: true });
});

test('convert to /dev/stdout writes the catalog alone there (its summary to stderr), as a pipe or a file', () => {
  const piped = tollgate('convert', EXAMPLE, '/dev/stdout');
  assert.equal(piped.code, 0, piped.err);
  assert.equal(JSON.parse(piped.out).format, 'tollgate-catalog');
  assert.match(piped.err, /workstation\.json \(tollgate, json\) -> \/dev\/stdout \(tollgate, json\): \d+ rules/);
  const dir = tempDir('cli');
  const out = join(dir, 'redirected.json');
  const r = spawnSync('sh', ['-c', `"$0" "$1" convert "$2" /dev/stdout > "$3"`, process.execPath, join(ROOT, 'dist/src/cli/main.js'), EXAMPLE, out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(tollgate('check', out).code, 0);
  rmSync(dir, { recursive: true, force: true });
});

test('convert between formats and encodings keeps the rules', { skip: NO_DATA }, () => {
  const dir = tempDir('cli');
  const src = join(DATA, 'catalog_data-rules_test-rules.json');
  assert.equal(tollgate('convert', src, join(dir, 'c.plist')).code, 0);
  assert.match(readFileSync(join(dir, 'c.plist'), 'utf8'), /<string>tollgate-catalog<\/string>/);
  assert.equal(tollgate('convert', join(dir, 'c.plist'), join(dir, 'n.plist'), '--format', 'nuapp').code, 0);
  assert.equal(tollgate('convert', join(dir, 'n.plist'), join(dir, 'n.json'), '--format', 'nuapp').code, 0);
  const again = JSON.parse(readFileSync(join(dir, 'n.json'), 'utf8'));
  // the same entries; app-id entries are keyed by their identifier (the original path key is not kept)
  const original = JSON.parse(readFileSync(src, 'utf8')) as Record<string, { identifier: string }[]>;
  const rekeyed = Object.fromEntries(Object.entries(original).map(([k, v]) => [v[0]!.identifier === 'unknown' ? k : v[0]!.identifier, v]));
  assert.deepEqual(again, rekeyed);
});
