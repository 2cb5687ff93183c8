/**
 * Exhaustive check in the spirit of NuAppFirewall's permutation tests: every combination of rule
 * fields against every combination of flow fields, then random rule sets for precedence, each
 * compared with a reference that scans all rules and is written to be obviously right, not fast.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import ipaddr from 'ipaddr.js';
import { Policy, type Flow, type Level, type Rule } from '../../src/policy/index.js';
import { NOW, allFlows, allRules, randomSets, seeded } from './rule-sets.js';

// ---- the reference: plain definitions, one rule at a time ----

type Spec = number[]; // compared lexicographically, higher is more specific

const memo = new Map<string, unknown>();
function once<T>(key: string, make: () => T): T {
  if (!memo.has(key)) memo.set(key, make());
  return memo.get(key) as T;
}

function endpointSpec(e: string, f: Flow): Spec | null {
  const names = f.remote.hostnames.map((h) => h.toLowerCase().replace(/\.$/, '')); // case and a trailing dot do not matter
  if (e === 'any') return [0, 0];
  if (e.includes('://')) {
    if (!f.remote.url) return null;
    const r = once('url ' + e, () => new URL(e));
    const u = once('url ' + f.remote.url, () => new URL(f.remote.url!));
    const rp = r.protocol + '//' + r.host + r.pathname;
    const up = u.protocol + '//' + u.host + u.pathname;
    return up === rp || up.startsWith(rp.endsWith('/') ? rp : rp + '/') ? [5, rp.length] : null;
  }
  if (e.startsWith('*.')) return names.some((h) => h.endsWith(e.slice(1))) ? [3, e.length - 2] : null;
  const ip = once('ip ' + f.remote.ip, () => ipaddr.process(f.remote.ip));
  if (e.includes('/')) {
    const [net, bits] = once('cidr ' + e, () => ipaddr.parseCIDR(e));
    return net.kind() === ip.kind() && ip.match(net, bits) ? [1, bits] : null;
  }
  if (ipaddr.isValid(e)) return once('ip ' + e, () => ipaddr.process(e)).toString() === ip.toString() ? [2, 0] : null;
  return names.includes(e) ? [4, 0] : null;
}

function ruleSpec(r: Rule, f: Flow): Spec | null {
  const ep = endpointSpec(r.endpoint!, f);
  if (!ep) return null;
  const port = String(r.port);
  let portSpec: number;
  if (port === 'any') portSpec = 0;
  else if (port.includes('-')) {
    const [lo, hi] = port.split('-').map(Number);
    if (f.port < lo! || f.port > hi!) return null;
    portSpec = 1;
  } else if (Number(port) === f.port) portSpec = 2;
  else return null;
  if (r.protocol !== 'any' && r.protocol !== f.protocol) return null;
  if (r.expires && Date.parse(r.expires) <= NOW) return null;
  const scoped = r.users || r.groups;
  if (scoped && !(r.users?.includes(f.app.user!) || r.groups?.some((g) => f.app.groups?.includes(g)))) return null;
  return [...ep, portSpec, r.protocol === 'any' ? 0 : 1, scoped ? 1 : 0];
}

/** Application levels in the order they are tried: [level, does this rule's application belong here]. */
function appSteps(f: Flow, rules: Rule[]): [Level, (r: Rule) => boolean][] {
  const path = f.app.path;
  const steps: [Level, (r: Rule) => boolean][] = [
    ['app-id', (r) => !!f.app.id && r.application === f.app.id],
    ['path', (r) => r.application === path],
  ];
  // prefixes and sub-paths: deepest end of match first, then longer pattern, then prefix before sub-path
  const cands: [number, number, number, string][] = [];
  for (const a of new Set(rules.map((r) => r.application))) {
    if (a.startsWith('/') && a.endsWith('/') && path.startsWith(a)) cands.push([a.length - 1, a.length, 1, a]);
    if (a.startsWith('*/')) {
      const key = a.slice(1).replace(/\/$/, '');
      for (let i = path.indexOf(key); i >= 0; i = path.indexOf(key, i + 1)) {
        const end = i + key.length;
        if (end === path.length || path[end] === '/') cands.push([end, key.length, 0, a]);
      }
    }
  }
  cands.sort((x, y) => y[0] - x[0] || y[1] - x[1] || y[2] - x[2]);
  for (const c of cands) steps.push(['prefix', (r) => r.application === c[3]]);
  steps.push(['any', (r) => r.application === 'any']);
  return steps;
}

function cmp(a: Spec, b: Spec): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
}

/** Expected action, level and the set of rules that may be named as deciding (equal best). */
function reference(rules: Rule[], f: Flow): { action: string; level: Level; ids: Set<string> } {
  for (const [level, belongs] of appSteps(f, rules)) {
    const applicable = rules.filter(belongs).map((r) => [r, ruleSpec(r, f)] as const).filter(([, s]) => s !== null);
    if (applicable.length === 0) continue;
    let best = applicable[0]![1]!;
    for (const [, s] of applicable) if (cmp(s!, best) > 0) best = s!;
    const top = applicable.filter(([, s]) => cmp(s!, best) === 0).map(([r]) => r);
    const action = top.some((r) => r.action === 'block') ? 'block' : 'allow';
    return { action, level, ids: new Set(top.filter((r) => r.action === action).map((r) => r.id)) };
  }
  return { action: 'allow', level: 'default', ids: new Set() };
}

/** `make` the policy under test: compiled, or compiled and restored from its image. */
function check(rules: Rule[], flows: Flow[], make = (r: Rule[]) => Policy.compile(r, 'passive-allow')): void {
  const policy = make(rules);
  for (const f of flows) {
    const got = policy.decide(f, NOW);
    const want = reference(rules, f);
    const ok = got.action === want.action && got.level === want.level && (want.ids.size === 0 ? !got.rule : want.ids.has(got.rule!.id));
    if (!ok) {
      assert.fail(`rules ${JSON.stringify(rules)}\nflow ${JSON.stringify(f)}\ngot ${got.action}/${got.level}/${got.rule?.id}, want ${want.action}/${want.level}/${[...want.ids]}`);
    }
  }
}

test('every single rule against every flow', () => {
  const flows = allFlows();
  const rules = allRules();
  for (const r of rules) check([r], flows);
  assert.equal(rules.length * flows.length, 9 * 10 * 4 * 3 * 2 * 5 * 630); // flows: 210 per protocol (tcp, udp, udplite)
});

test('random rule sets against every flow: levels, specificity and block-over-allow', () => {
  const flows = allFlows();
  randomSets((set) => check(set, flows));
});

test('random paths and names: upper case, trailing dots, non-ASCII characters and look-alikes of their bytes', () => {
  // decide() walks an ASCII string as it is and any other as its UTF-8 bytes: both must agree with
  // the reference, which compares JavaScript strings. "Ã¼" has the codes of the UTF-8 bytes of "ü".
  const rand = seeded(11);
  const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)]!;
  const COMPONENTS = ['a', 'b', 'ü', 'Ã¼', 'Bücher.app', 'BÃ¼cher.app', 'x.y', 'é', 'e\u0301', '日本'];
  const LABELS = ['a', 'b', 'ex', 'xn--bcher-kva'];
  const path = (): string => '/' + Array.from({ length: 1 + rand(4) }, () => pick(COMPONENTS)).join('/');
  const host = (): string => Array.from({ length: 1 + rand(3) }, () => pick(LABELS)).join('.');
  const spell = (h: string): string => {
    const cased = rand(3) === 0 ? h.toUpperCase() : rand(4) === 0 ? 'Ä' + h : h;
    return rand(4) === 0 ? cased + '.' : cased;
  };
  for (let set = 0; set < 400; set++) {
    const rules: Rule[] = Array.from({ length: 1 + rand(6) }, (_, i) => ({
      id: `r${i}`,
      action: rand(2) === 0 ? 'allow' : 'block',
      application: pick([path(), path() + '/', '*' + path(), 'any']),
      endpoint: pick([host(), '*.' + host(), 'any']),
      port: 'any',
      protocol: 'any',
    }));
    const flows: Flow[] = Array.from({ length: 12 }, () => {
      const base = pick(rules).application.replace(/^\*/, '/x').replace(/^any$/, '');
      return {
        app: { path: rand(2) === 0 ? path() : base + (base.endsWith('/') ? '' : '/') + pick(COMPONENTS) },
        remote: { ip: '192.0.2.1', hostnames: Array.from({ length: rand(3) }, () => spell(host())) },
        port: 443,
        protocol: 'tcp',
      };
    });
    check(rules, flows);
    check(rules, flows, (r) => Policy.restore(Policy.compile(r, 'passive-allow').image(), 'passive-allow'));
  }
});

test('a policy restored from its image gives every verdict the compiled policy gives', () => {
  const flows = allFlows();
  const same = (rules: Rule[]): void => {
    const compiled = Policy.compile(rules, 'passive-allow');
    const restored = Policy.restore(compiled.image(), 'passive-allow');
    for (const f of flows) {
      const [a, b] = [compiled.decide(f, NOW), restored.decide(f, NOW)];
      if (a.action !== b.action || a.level !== b.level || a.reason !== b.reason || !isDeepStrictEqual(a.rule, b.rule)) {
        assert.fail(`rules ${JSON.stringify(rules)}\nflow ${JSON.stringify(f)}\ncompiled ${a.reason}\nrestored ${b.reason}`);
      }
    }
  };
  for (const r of allRules()) same([r]);
  randomSets(same);
  // and the whole set at once: every list, every application kind and every destination class in one index
  same(allRules());
});
