/**
 * A root agent refuses a catalog that users other than its owner can change: the file, or the
 * folder it (or the link to it) is in. Files and owners are real (chmod, chown on temporary files).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadPolicy, untrustedCatalog } from '../../src/catalog/index.js';

const MAIN = join(import.meta.dirname, '../../src/cli/main.js');
const skip = process.getuid?.() === 0 ? false : 'the check applies to an agent running as root, and these tests chown files: run them as root';
if (skip) console.log(`SKIP catalog trust tests: ${skip}`);

describe('catalog trust (root)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-trust-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const CATALOG = JSON.stringify({ format: 'tollgate-catalog', version: 1, rules: [{ id: 'r', action: 'block', application: 'any', port: 445 }] });

  /** A catalog in a folder of its own: file and folder with these modes and owners. */
  function place(fileMode: number, dirMode = 0o755, owner: [number, number] = [0, 0]): string {
    const d = join(dir, `d${n++}`);
    mkdirSync(d);
    chmodSync(d, dirMode);
    const f = join(d, 'catalog.json');
    writeFileSync(f, CATALOG);
    chownSync(f, ...owner);
    chmodSync(f, fileMode);
    return f;
  }

  test("a catalog only its owner (or root's group) can write is taken", () => {
    assert.equal(untrustedCatalog(place(0o644)), null);
    assert.equal(untrustedCatalog(place(0o600, 0o700)), null);
    assert.equal(untrustedCatalog(place(0o664, 0o775)), null, 'group root');
    assert.equal(untrustedCatalog(place(0o644, 0o1777)), null, 'a sticky folder (/tmp): others cannot rename the file');
    // a user private group (daemon:daemon, nobody else in it), as Debian and Ubuntu make with umask 002
    assert.equal(untrustedCatalog(place(0o664, 0o755, [1, 1])), null);
    assert.equal(untrustedCatalog(join(dir, 'none.json')), null, 'a missing catalog is for the load to say');
  });

  test('a catalog others can write, or replace, is refused with what to do', () => {
    assert.match(untrustedCatalog(place(0o666))!, /catalog\.json can be written by every user \(mode 0666\): they could change this firewall's rules; refused \(chmod go-w .*catalog\.json\)/);
    assert.match(untrustedCatalog(place(0o664, 0o755, [0, 12345]))!, /can be written by group 12345 \(mode 0664\)/);
    assert.match(untrustedCatalog(place(0o664, 0o755, [1, 2]))!, /group 2/, "another group than the owner's own");
    assert.match(untrustedCatalog(place(0o644, 0o777))!, /d\d+, a folder above the catalog, can be written by every user \(mode 0777\): they could replace the catalog/);
    // a folder further up: whoever can write it can rename the catalog's folder away
    const deep = place(0o644);
    chmodSync(dir, 0o777);
    try {
      assert.match(untrustedCatalog(deep)!, /tollgate-trust-\w+, a folder above the catalog, can be written by every user/);
    } finally {
      chmodSync(dir, 0o700);
    }
    const groupDir = place(0o644, 0o775);
    chownSync(dirname(groupDir), 0, 12345);
    assert.match(untrustedCatalog(groupDir)!, /d\d+, a folder above the catalog, can be written by group 12345/);
    // a link in a safe folder to a catalog in an open one, and the other way round
    const open = place(0o644, 0o777);
    const safe = join(dir, `d${n++}`);
    mkdirSync(safe);
    symlinkSync(open, join(safe, 'link.json'));
    assert.match(untrustedCatalog(join(safe, 'link.json'))!, /a folder above the catalog, can be written by every user/);
    const openDir = join(dir, `d${n++}`);
    mkdirSync(openDir);
    chmodSync(openDir, 0o777);
    symlinkSync(place(0o644), join(openDir, 'link.json'));
    assert.match(untrustedCatalog(join(openDir, 'link.json'))!, /d\d+, a folder above the catalog, can be written by every user/);
  });

  test('a policy cache under a folder others can write is not used (an image is restored as it is)', () => {
    const file = place(0o644);
    const open = join(dir, `d${n++}`);
    mkdirSync(open);
    chmodSync(open, 0o777);
    const warned: string[] = [];
    const l = loadPolicy(file, undefined, { dir: join(open, 'cache'), minBytes: 0, warn: (m) => warned.push(m) });
    assert.equal(l.written, false);
    assert.match(warned.join('\n'), /policy cache .*cache is under .*d\d+, which every user can write \(mode 777\): not used/);
    chmodSync(open, 0o755);
    assert.equal(loadPolicy(file, undefined, { dir: join(open, 'cache'), minBytes: 0, warn: (m) => assert.fail(m) }).written, true);
  });

  test('the agent will not start on such a catalog, and keeps its rules when a reload finds one', async () => {
    const bad = place(0o666);
    const refused = spawn(process.execPath, [MAIN, 'agent', '--monitor', '--catalog', bad, '--db', join(dir, 'a.db'), '--no-cache'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    refused.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await Promise.race([new Promise((r) => refused.once('exit', r)), new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    if (code === 'still running') refused.kill('SIGKILL');
    assert.equal(code, 1, 'the agent exits at once');
    assert.match(err, /^tollgate: .*catalog\.json can be written by every user \(mode 0666\)/);

    const file = place(0o644);
    const agent = spawn(process.execPath, [MAIN, 'agent', '--monitor', '--catalog', file, '--db', join(dir, 'b.db'), '--no-cache'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    agent.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    const exited = new Promise((r) => agent.once('exit', r));
    const waitFor = async (re: RegExp, what: string): Promise<void> => {
      for (const end = Date.now() + 15_000; !re.test(log); await new Promise((r) => setTimeout(r, 20))) if (Date.now() > end) assert.fail(`timed out waiting for ${what}: ${log}`);
    };
    try {
      await waitFor(/tollgate agent: 1 rules from/, 'the start');
      chmodSync(file, 0o666); // a change of the file: the agent looks at it again
      await waitFor(/reload failed \(catalog file changed\), keeping the previous rules: .*can be written by every user/, 'the refusal');
      chmodSync(file, 0o644);
      await waitFor(/reloaded \(catalog file changed\): 1 rules/, 'the reload once the file is private again');
    } finally {
      agent.kill('SIGTERM');
      await exited;
    }
  });
});
