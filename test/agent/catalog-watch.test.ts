/**
 * The agent follows its catalog file however it is changed: written in place, replaced by rename
 * (config management, mv, fleet syncs), deleted and made again, or swapped behind a symlink.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { catalogIdentity, watchCatalog } from '../../src/agent/catalog-watch.js';

const MAIN = join(import.meta.dirname, '../../src/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'tollgate-watch-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A catalog of `n` rules. */
const catalog = (n: number): string => JSON.stringify({
  format: 'tollgate-catalog', version: 1,
  rules: Array.from({ length: n }, (_, i) => ({ id: `r${i}`, action: 'block', application: 'any', port: 1000 + i })),
});

/** Writes a new file and renames it over `path`, as config-management tools and `mv` do. */
function replace(path: string, text: string): void {
  writeFileSync(`${path}.new`, text);
  renameSync(`${path}.new`, path);
}

async function waitFor(ok: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a change is seen however the file is changed; other files in its folder are not taken for one', async () => {
  const sub = mkdtempSync(join(dir, 'w-'));
  const file = join(sub, 'catalog.json');
  writeFileSync(file, catalog(1));
  let changes = 0;
  const w = watchCatalog(file, () => changes++, (e) => assert.fail(e));
  try {
    const step = async (what: string, change: () => void): Promise<void> => {
      const before = changes;
      change();
      await waitFor(() => changes === before + 1, what);
    };
    await step('a replacement by rename', () => replace(file, catalog(2)));
    await step('a second replacement by rename (a watch on the file itself is dead by now)', () => replace(file, catalog(3)));
    await step('a write in place', () => writeFileSync(file, catalog(4)));
    await step('its deletion', () => unlinkSync(file));
    await step('its making again', () => writeFileSync(file, catalog(5)));
    // another file's churn (an audit store beside the catalog) neither counts nor holds a change back
    const before = changes;
    for (let i = 0; i < 20; i++) {
      writeFileSync(join(sub, 'audit.db'), String(i));
      await new Promise((r) => setTimeout(r, 15));
    }
    assert.equal(changes, before);
    const churn = setInterval(() => writeFileSync(join(sub, 'audit.db'), String(Date.now())), 30);
    try {
      await step('a change amid the churn of another file', () => replace(file, catalog(6)));
    } finally {
      clearInterval(churn);
    }
  } finally {
    w.close();
  }
});

test('a change between the read of the catalog and the start of the watch is a change (the agent compiling at its start)', async () => {
  const sub = mkdtempSync(join(dir, 's-'));
  const file = join(sub, 'catalog.json');
  writeFileSync(file, catalog(1));
  const loaded = catalogIdentity(file); // the agent takes it before it reads the catalog
  replace(file, catalog(2));
  let changes = 0;
  const w = watchCatalog(file, () => changes++, (e) => assert.fail(e), loaded);
  try {
    await waitFor(() => changes === 1, 'the change made before the watch');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(changes, 1, 'once');
  } finally {
    w.close();
  }
  // and none when nothing changed
  const w2 = watchCatalog(file, () => changes++, (e) => assert.fail(e), catalogIdentity(file));
  await new Promise((r) => setTimeout(r, 300));
  w2.close();
  assert.equal(changes, 1);
});

test('a catalog reached through a symlink is followed when the link is swapped (as Kubernetes mounts do)', async () => {
  const sub = mkdtempSync(join(dir, 'k-'));
  writeFileSync(join(sub, 'v1.json'), catalog(1));
  writeFileSync(join(sub, 'v2.json'), catalog(2));
  symlinkSync('v1.json', join(sub, 'data'));
  symlinkSync('data', join(sub, 'catalog.json'));
  let changes = 0;
  const w = watchCatalog(join(sub, 'catalog.json'), () => changes++, (e) => assert.fail(e));
  try {
    symlinkSync('v2.json', join(sub, 'data.new'));
    renameSync(join(sub, 'data.new'), join(sub, 'data'));
    await waitFor(() => changes === 1, 'the swap');
  } finally {
    w.close();
  }
});

test('the agent reloads its catalog after each replacement by rename, not only the first', async () => {
  const file = join(dir, 'agent-catalog.json');
  writeFileSync(file, catalog(1));
  // monitor mode: no queue and no firewall rule, so this runs on any machine and touches nothing
  const agent = spawn(process.execPath, [MAIN, 'agent', '--monitor', '--catalog', file, '--db', join(dir, 'audit.db'), '--no-cache'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  agent.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  const exited = new Promise((r) => agent.once('exit', r));
  try {
    await waitFor(() => /tollgate agent: 1 rules from/.test(log), 'the agent to start', 15_000);
    for (const n of [2, 3, 4]) {
      replace(file, catalog(n));
      await waitFor(() => new RegExp(`reloaded \\(catalog file changed\\): ${n} rules`).test(log), `the reload to ${n} rules`);
    }
    // a catalog of 5,000 bad rules: the failed reload is said in a few lines, not 5,000
    const bad = JSON.parse(catalog(5000)) as { rules: { port: unknown }[] };
    for (const r of bad.rules) r.port = 'none';
    const at = log.length;
    replace(file, JSON.stringify(bad));
    await waitFor(() => /reload failed \(catalog file changed\), keeping the previous rules: 5000 invalid rules:/.test(log.slice(at)), 'the failed reload');
    await new Promise((r) => setTimeout(r, 100));
    const said = log.slice(at).trimEnd().split('\n');
    assert.equal(said.length, 22, said.slice(0, 3).join('\n'));
    assert.match(said[1]!, /rule "r0" \(#1\): port: /);
    assert.equal(said[21], '  ... and 4980 more (tollgate check lists them all)');
  } finally {
    agent.kill('SIGTERM');
    await exited;
  }
});
