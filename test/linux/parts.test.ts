import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readlinkSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import dnsPacket from 'dns-packet';
import { DnsNames } from '../../src/linux/dns.js';
import { ruleSpecs } from '../../src/linux/netfilter.js';
import { parsePacket } from '../../src/linux/packet.js';
import { appIdFromCgroup, readProcess } from '../../src/linux/procs.js';
import { scriptsOf, type Scripts } from '../../src/linux/scripts.js';

function ipv4Tcp(src: number[], sport: number, dst: number[], dport: number): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x45; b[9] = 6; b.set(src, 12); b.set(dst, 16);
  b.writeUInt16BE(sport, 20); b.writeUInt16BE(dport, 22); b[32] = 5 << 4;
  return b;
}

test('packets: IPv4 TCP, IPv6 UDP behind an extension header, fragments and other protocols', () => {
  const t = parsePacket(ipv4Tcp([10, 0, 0, 1], 40000, [93, 184, 216, 34], 443))!;
  assert.deepEqual([t.family, t.protocol, t.src, t.sport, t.dst, t.dport, t.dataOffset], [4, 'tcp', '10.0.0.1', 40000, '93.184.216.34', 443, 40]);
  const v6 = Buffer.alloc(40 + 8 + 8);
  v6[0] = 0x60; v6[6] = 0; // hop-by-hop options first
  v6.set([0x20, 0x01, 0x0d, 0xb8], 8); v6[23] = 1;
  v6.set([0x20, 0x01, 0x0d, 0xb8], 24); v6[39] = 2;
  v6[40] = 17; v6[41] = 0; // next: UDP, 8 bytes long
  v6.writeUInt16BE(5353, 48); v6.writeUInt16BE(53, 50);
  const u = parsePacket(v6)!;
  assert.deepEqual([u.family, u.protocol, u.src, u.dst, u.dport, u.dataOffset], [6, 'udp', '2001:db8::1', '2001:db8::2', 53, 56]);
  const frag = ipv4Tcp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
  frag.writeUInt16BE(10, 6);
  assert.equal(parsePacket(frag), null);
  const lite = ipv4Tcp([10, 0, 0, 1], 40001, [10, 0, 0, 2], 7000);
  lite[9] = 136; // UDP-Lite: UDP's header
  const l = parsePacket(lite)!;
  assert.deepEqual([l.protocol, l.sport, l.dport, l.dataOffset], ['udplite', 40001, 7000, 28]);
  const icmp = ipv4Tcp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
  icmp[9] = 1;
  assert.equal(parsePacket(icmp), null);
  assert.equal(parsePacket(Buffer.alloc(10)), null);
});

test('DNS answers: every name of a CNAME chain maps to the address, until the TTL ends', () => {
  const d = new DnsNames();
  const msg = dnsPacket.encode({
    type: 'response', id: 1, questions: [{ type: 'A', name: 'WWW.Example.com' }],
    answers: [
      { type: 'CNAME', name: 'www.example.com', ttl: 300, data: 'edge.cdn.net' },
      { type: 'A', name: 'edge.cdn.net', ttl: 300, data: '93.184.216.34' },
      { type: 'AAAA', name: 'edge.cdn.net', ttl: 300, data: '2001:0db8:0000::0001' },
    ],
  });
  d.learn(msg, 0);
  assert.deepEqual(d.namesOf('93.184.216.34', 1000).sort(), ['edge.cdn.net', 'www.example.com']);
  assert.deepEqual(d.namesOf('2001:db8::1', 1000).sort(), ['edge.cdn.net', 'www.example.com'], 'IPv6 in the same text as packets give');
  assert.deepEqual(d.namesOf('93.184.216.34', 301_000), [], 'expired');
  assert.deepEqual(d.learn(Buffer.from('not dns')), []);
  assert.equal(d.malformed, 1);
  d.learn(dnsPacket.encode({ type: 'response', id: 2, answers: [{ type: 'A', name: 'fast.example', ttl: 0, data: '10.1.1.1' }] }), 0);
  assert.deepEqual(d.namesOf('10.1.1.1', 20_000), ['fast.example'], 'a zero TTL still covers the connection that follows');
});

test('DNS answers per program: its own names for an address it resolved, everyone\'s otherwise', () => {
  const d = new DnsNames();
  const a = (name: string) => dnsPacket.encode({ type: 'response', id: 1, answers: [{ type: 'A', name, ttl: 60, data: '203.0.113.7' }] });
  d.assign('10:1', d.learn(a('tracker.example'), 0));
  d.assign('20:1', d.learn(a('news.example'), 0));
  assert.deepEqual(d.namesOf('203.0.113.7', 1000, '20:1'), ['news.example'], 'the program that asked for news.example');
  assert.deepEqual(d.namesOf('203.0.113.7', 1000, '30:1').sort(), ['news.example', 'tracker.example'], 'a program that asked for neither');
  assert.deepEqual(d.namesOf('203.0.113.7', 1000).sort(), ['news.example', 'tracker.example'], 'no program known');
  d.sweep(1000, (asker) => asker === '20:1');
  assert.deepEqual(d.namesOf('203.0.113.7', 1000, '20:1').sort(), ['news.example', 'tracker.example'], 'an exited program\'s own names are dropped');
  assert.deepEqual(d.namesOf('203.0.113.7', 61_000, '10:1'), [], 'expired for everyone');
});

test('DNS answers cannot grow the agent without bound: full tables keep what they have, count the rest, and take new names once old ones expire', () => {
  const d = new DnsNames({ everyone: 4, perProgram: 2, allPrograms: 3 });
  const answer = (ip: string, ...names: string[]) => dnsPacket.encode({ type: 'response', id: 1, answers: names.map((name) => ({ type: 'A', name, ttl: 60, data: ip })) });
  d.assign('10:1', d.learn(answer('203.0.113.1', 'a.example', 'b.example', 'c.example'), 0), 0);
  assert.deepEqual(d.namesOf('203.0.113.1', 1000, '10:1'), ['a.example', 'b.example'], "a program's own names: two at most");
  assert.equal(d.dropped, 1);
  d.assign('20:1', d.learn(answer('203.0.113.2', 'd.example', 'e.example'), 0), 0);
  assert.deepEqual(d.namesOf('203.0.113.2', 1000, '20:1'), ['d.example'], 'all programs together: three at most');
  assert.deepEqual(d.namesOf('203.0.113.2', 1000, '30:1'), ['d.example'], "everyone's: four at most");
  assert.equal(d.dropped, 1 + 2);
  d.learn(answer('203.0.113.1', 'a.example'), 2000); // a name it has is renewed, whatever the room
  assert.deepEqual(d.namesOf('203.0.113.1', 61_000, '30:1'), ['a.example']);
  // an exited program's names make room for others; expired ones make room in a full table
  d.sweep(61_000, (asker) => asker === '10:1');
  d.assign('20:1', d.learn(answer('203.0.113.3', 'f.example'), 62_000), 62_000);
  assert.deepEqual(d.namesOf('203.0.113.3', 62_000, '20:1'), ['f.example']);
  assert.deepEqual(d.namesOf('203.0.113.3', 62_000, '30:1'), ['f.example']);
  // a full table of expired names takes a new one without waiting for the agent's sweep
  const one = new DnsNames({ everyone: 1, perProgram: 1, allPrograms: 1 });
  one.learn(answer('203.0.113.4', 'old.example'), 0);
  one.learn(answer('203.0.113.5', 'new.example'), 61_000);
  assert.deepEqual(one.namesOf('203.0.113.5', 61_000), ['new.example']);
  assert.equal(one.dropped, 0);
});

test('cgroups name system services, Flatpak and snap apps, and nothing else', () => {
  assert.equal(appIdFromCgroup('0::/system.slice/nginx.service\n'), 'nginx.service');
  assert.equal(appIdFromCgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-2245.scope\n'), 'org.mozilla.firefox');
  assert.equal(appIdFromCgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-1d2c.scope\n'), 'snap.firefox');
  assert.equal(appIdFromCgroup('0::/user.slice/user-1000.slice/session-3.scope\n'), undefined);
  assert.equal(appIdFromCgroup(''), undefined);
});

test('netfilter rules: only new connections, loopback skipped unless asked, bypass only when failing open', () => {
  const o = { queue: 7, dnsQueue: 8, failMode: 'open' as const, includeLoopback: false, rejectMark: 0x10 };
  const open = ruleSpecs(o, false).out.map((r) => r.join(' '));
  assert.ok(open.includes('-o lo -j RETURN'));
  assert.ok(open.includes('-p tcp --syn -j NFQUEUE --queue-num 7 --queue-bypass'), 'every SYN, whatever conntrack makes of it');
  assert.ok(open.includes('-p udp -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7 --queue-bypass'));
  assert.ok(open.includes('-p udplite -m conntrack --ctstate NEW -j NFQUEUE --queue-num 7 --queue-bypass'), 'any program may send UDP-Lite');
  assert.ok(open.includes('-m mark --mark 0x10/0x10 -j REJECT --reject-with icmp-port-unreachable'));
  const closed = ruleSpecs({ ...o, failMode: 'closed', includeLoopback: true }, true).out.map((r) => r.join(' '));
  assert.ok(!closed.some((r) => r.includes('--queue-bypass')));
  assert.ok(!closed.includes('-o lo -j RETURN'));
  assert.ok(closed.includes('-m mark --mark 0x10/0x10 -j REJECT --reject-with icmp6-port-unreachable'));
  assert.ok(ruleSpecs({ ...o, failMode: 'closed' }, false).dns[0]!.includes('--queue-bypass'), 'DNS answers never wait for a dead agent');
});

test('a live process: executable, command line, user and groups; a recycled pid is refused', () => {
  const me = readProcess(process.pid)!;
  assert.equal(me.path, realpathSync(process.execPath));
  assert.deepEqual(me.cmdline.slice(0, 1), [process.argv0]);
  assert.equal(me.uid, process.getuid!());
  assert.ok(me.groups.length > 0, 'at least the primary group');
  const primary = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
  assert.ok(me.groups.includes(primary), `groups ${me.groups.join(',')} include ${primary}`);
  assert.equal(readProcess(process.pid, me.start + 1), null, 'another start time is another process');
});

test("an interpreter's script is the file it runs: never inline code, a module or class name, or an option's value", () => {
  const cwd = '/srv/app';
  const of = (cmd: string[], real?: (p: string) => string): Scripts | undefined => scriptsOf(cmd[0]!, cmd, cwd, real);
  const script = (cmd: string[]): string | undefined => of(cmd)?.script;
  // the file, as the process opens it: against its working directory, `..`, `.` and `//` resolved
  assert.equal(script(['/usr/bin/node', 'server.js']), '/srv/app/server.js');
  assert.equal(script(['/usr/bin/node', '/srv/app/../../tmp/evil.js']), '/tmp/evil.js');
  assert.equal(script(['/usr/bin/node', '../../tmp/evil.js']), '/tmp/evil.js');
  assert.equal(script(['/usr/bin/node', '/srv//app/./node_modules/x/i.js']), '/srv/app/node_modules/x/i.js');
  assert.equal(of(['/usr/bin/node', '/tmp/link/i.js'], (p) => p.replace('/tmp/link', '/srv/app/node_modules/x'))?.script, '/srv/app/node_modules/x/i.js', 'symlinks followed');
  assert.equal(of(['/usr/bin/ls', 'x.js']), undefined, 'not an interpreter');
  // inline code, a REPL, stdin: no script, however the option is written
  for (const cmd of [['node', '-e', 'x'], ['node', '-p', 'allowed.js'], ['node', '-pe', '1'], ['node', '--eval=x', 'allowed.js'], ['node', '--print', 'x'], ['node'], ['node', '-'],
    ['python3', '-c', 'x'], ['python3', '-Ic', 'allowed.py'], ['python3', '-m', 'http.server'], ['python3', '-Bm', 'evil'], ['python3', '-'],
    ['perl', '-ne', 'print'], ['perl', '-E', 'say 1'], ['ruby', '-e', 'x'], ['bash', '-c', 'curl x'], ['sh', '-ec', 'x'], ['bash', '-s'],
    ['php', '-r', 'x'], ['java', 'Main'], ['java', '-cp', '/srv/app/a.jar:/tmp/e.jar', 'Evil'], ['deno', 'eval', 'x'], ['bun', 'install']]) {
    assert.equal(script(['/usr/bin/' + cmd[0], ...cmd.slice(1)]), undefined, cmd.join(' '));
  }
  // an option's value is not the script
  assert.equal(script(['/usr/bin/node', '--input-type', 'module', '--title', 'x', 'a.js']), '/srv/app/a.js');
  assert.equal(script(['/usr/bin/python3', '-W', 'ignore', '-X', 'dev', 'a.py']), '/srv/app/a.py');
  assert.equal(script(['/usr/bin/python3', '-Wignore', '-u', 'a.py']), '/srv/app/a.py');
  assert.equal(script(['/usr/bin/perl', '-I', '/lib', 'a.pl']), '/srv/app/a.pl');
  assert.equal(script(['/usr/bin/perl', '-Mfeature=say', '-Mstrict', 'a.pl']), '/srv/app/a.pl');
  assert.equal(script(['/usr/bin/bash', '-o', 'pipefail', '+o', 'errexit', 'a.sh']), '/srv/app/a.sh');
  assert.equal(script(['/usr/bin/ruby', '-C', '/opt/x', 'a.rb']), '/opt/x/a.rb', 'ruby -C changes where its script is found');
  assert.equal(script(['/usr/bin/php', '-d', 'x=1', '-f', 'a.php']), '/srv/app/a.php');
  assert.equal(script(['/usr/bin/java', '-cp', 'x', '-jar', 'app.jar']), '/srv/app/app.jar');
  assert.equal(script(['/usr/bin/deno', 'run', '--allow-net', 'a.ts']), '/srv/app/a.ts');
  assert.equal(script(['/usr/bin/node', '--', '-weird.js']), '/srv/app/-weird.js');
  // code loaded before the script is named too: a preload's rules judge the process with its script's
  assert.deepEqual(of(['/usr/bin/node', '-r', '/tmp/evil.js', '--require=./x.js', '--import', 'file:///srv/app/hook.mjs', '--loader', 'tsx', 'ok.js']),
    { script: '/srv/app/ok.js', preloads: ['/tmp/evil.js', '/srv/app/x.js', '/srv/app/hook.mjs', '/srv/app/node_modules/tsx'] });
  assert.deepEqual(of(['/usr/bin/node', '-r', '/tmp/evil.js', '-e', '1']), { preloads: ['/tmp/evil.js'] });
  assert.deepEqual(of(['/usr/bin/java', '-javaagent:/tmp/agent.jar=opts', '-jar', 'app.jar']), { script: '/srv/app/app.jar', preloads: ['/tmp/agent.jar'] });
  assert.deepEqual(of(['/usr/bin/ruby', '-r', './evil.rb', '-rjson', 'a.rb']), { script: '/srv/app/a.rb', preloads: ['/srv/app/evil.rb'] });
  // and what the environment adds to the options: NODE_OPTIONS, the JVM's option variables
  const env = new Map([['NODE_OPTIONS', '--max-old-space-size=100 --require "/tmp/e v.js" --import=./hook.mjs'], ['JAVA_TOOL_OPTIONS', '-Xmx1g -javaagent:/tmp/a.jar'], ['PATH', '/bin']]);
  assert.deepEqual(scriptsOf('/usr/bin/node', ['node', '-r', './x.js', 'ok.js'], cwd, undefined, () => env), { script: '/srv/app/ok.js', preloads: ['/tmp/e v.js', '/srv/app/hook.mjs', '/srv/app/x.js'] });
  assert.deepEqual(scriptsOf('/usr/bin/java', ['java', '-jar', 'app.jar'], cwd, undefined, () => env), { script: '/srv/app/app.jar', preloads: ['/tmp/a.jar'] });
  let asked = false;
  scriptsOf('/usr/bin/python3', ['python3', 'a.py'], cwd, undefined, () => ((asked = true), env));
  assert.equal(asked, false, 'the environment is read only for interpreters that take options from it');
});

test('a program mounted over another path in a mount namespace of its own is not taken for that path; one upgraded while it runs still is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-exe-'));
  chmodSync(dir, 0o755);
  const other = join(dir, 'not-curl');
  copyFileSync(realpathSync('/usr/bin/sleep'), other);
  chmodSync(other, 0o755);
  const started: ChildProcess[] = [];
  const sleeper = async (cmd: string[]): Promise<number> => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
    started.push(c);
    await new Promise((r) => c.once('spawn', r));
    const want = cmd.includes('sh') ? 'curl' : cmd[0]!;
    for (let k = 0; k < 100; k++) {
      // the shell execs the program: its pid then runs it
      const exe = (() => { try { return readlinkSync(`/proc/${c.pid}/exe`); } catch { return ''; } })();
      if (exe.endsWith(want) || exe.endsWith(`${want} (deleted)`)) return c.pid!;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`${cmd.join(' ')} did not start`);
  };
  try {
    // as nobody, in a user and mount namespace of its own: any user can do this where user namespaces are allowed
    const curl = realpathSync('/usr/bin/curl');
    const masked = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '-Urm', 'sh', '-c', `mount --bind ${other} ${curl} && exec ${curl} 30`];
    const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '-Urm', 'true'], { encoding: 'utf8' });
    if (process.getuid?.() !== 0 || probe.status !== 0) {
      console.log(`SKIP a program mounted over another path: ${process.getuid?.() !== 0 ? 'not root' : `no user namespaces for nobody (${(probe.stderr || probe.error?.message || '').trim()})`}`);
      return t.skip();
    }
    const m = readProcess(await sleeper(masked))!;
    assert.deepEqual([m.path, m.pathUnverified], [curl, true], 'it calls itself curl, and is not');
    // the same program run as itself, and after it was replaced on disk while running (an upgrade)
    const plain = readProcess(await sleeper([other, '30']))!;
    assert.deepEqual([plain.path, plain.pathUnverified], [other, undefined]);
    const upgraded = await sleeper([other, '31']);
    copyFileSync(other, `${other}.new`);
    renameSync(`${other}.new`, other);
    const u = readProcess(upgraded)!;
    assert.deepEqual([u.path, u.pathUnverified], [other, undefined], 'replaced on disk while it runs: still its path');
  } finally {
    for (const c of started) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
