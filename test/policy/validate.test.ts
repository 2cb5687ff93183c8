import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidRulesError, Policy, formatRuleError } from '../../src/policy/index.js';

function errorsOf(rules: unknown[]): string[] {
  return Policy.validate(rules).map(formatRuleError);
}

test('each malformed field is named with the rule id', () => {
  const cases: [object, string][] = [
    [{ action: 'deny' }, 'action: unknown action "deny"'],
    [{ application: '' }, 'application: empty application'],
    [{ application: 'usr/bin/curl' }, 'application: relative path "usr/bin/curl"'],
    [{ application: '/usr//bin/curl' }, 'application: malformed path'],
    [{ application: '/usr/../bin/sh' }, 'application: malformed path'],
    [{ application: 'bad id!' }, 'application: malformed app id'],
    [{ application: '*/' }, 'application: malformed sub-path "*/"'],
    [{ application: '*//' }, 'application: malformed sub-path "*//"'],
    [{ application: '*/a//b' }, 'application: malformed sub-path "*/a//b": empty component'],
    [{ endpoint: 'exa mple.com' }, 'endpoint: malformed host'],
    [{ endpoint: '-bad-.com' }, 'endpoint: malformed host'],
    [{ endpoint: '256.1.1.1' }, 'endpoint: malformed IP address'],
    [{ endpoint: '1.2.3' }, 'endpoint: malformed IP address'],
    [{ endpoint: '2001:db8::g' }, 'endpoint: malformed IP address'],
    [{ endpoint: '10.0.0.0/33' }, 'endpoint: malformed CIDR'],
    [{ endpoint: '10.0.0.1/8' }, 'endpoint: CIDR "10.0.0.1/8" has host bits set'],
    [{ endpoint: '2001:db8::1/64' }, 'endpoint: CIDR "2001:db8::1/64" has host bits set'],
    [{ endpoint: '*.' }, 'endpoint: malformed wildcard'],
    [{ endpoint: 'a.*.com' }, 'endpoint: malformed host'],
    [{ endpoint: 'https://' }, 'endpoint: malformed URL'],
    [{ port: 0 }, 'port: port 0 out of range'],
    [{ port: 70000 }, 'port: port 70000 out of range'],
    [{ port: '443x' }, 'port: malformed port "443x"'],
    [{ port: '9000-8000' }, 'port: malformed port range "9000-8000"'],
    [{ protocol: 'icmp' }, 'protocol: unknown protocol "icmp"'],
    [{ users: [] }, 'users: must be a non-empty list'],
    [{ expires: 'tomorrow' }, 'expires: malformed time "tomorrow"'],
    // one instant on every machine: a time needs its zone, and engine-specific forms are refused
    [{ expires: '2027-01-01T00:00:00' }, 'expires: malformed time "2027-01-01T00:00:00" (ISO 8601 with its zone'],
    [{ expires: 'Jan 1 2027' }, 'expires: malformed time'],
    [{ expires: '2027/01/01' }, 'expires: malformed time'],
    [{ expires: '2027-02-30T00:00:00Z' }, 'expires: malformed time'],
    [{ acton: 'block' }, 'acton: unknown field'],
  ];
  for (const [bad, message] of cases) {
    const errs = errorsOf([{ id: 'r1', action: 'block', application: 'any', ...bad }]);
    assert.equal(errs.length, 1, `${JSON.stringify(bad)} -> ${errs.join('; ')}`);
    assert.ok(errs[0]!.startsWith(`rule "r1" (#1): ${message}`), `${errs[0]} should start with ${message}`);
  }
});

test('good rules of every kind validate', () => {
  const good = [
    { application: 'org.mozilla.firefox' }, { application: 'sshd.service' }, { application: 'user@1000.service' },
    { application: '/usr/bin/curl' }, { application: '/usr/lib/' }, { application: '/' }, { application: '*/Arc.app' },
    { application: '*/Arc.app/' }, { endpoint: 'EXAMPLE.com.' }, { endpoint: '_dmarc.example.com' }, { endpoint: '*.co.uk' },
    { endpoint: '2001:db8::/32' }, { endpoint: '::1' }, { endpoint: '0.0.0.0/0' }, { endpoint: 'https://a.com/x' },
    { port: '443' }, { port: 'any' }, { port: '1-65535' }, { protocol: 'TCP' }, { groups: ['wheel'] },
    { expires: '2030-01-01T00:00:00Z' }, { expires: '2030-01-01' }, { expires: '2030-01-01T09:00+09:00' }, { expires: '2030-01-01T00:00:00.250-03:00' },
    { note: 'why' },
  ];
  good.forEach((g, i) => assert.deepEqual(errorsOf([{ id: `g${i}`, action: 'allow', application: 'any', ...g }]), [], JSON.stringify(g)));
});

test('all bad rules are reported at once, duplicates and missing ids included; nothing is half-loaded', () => {
  const rules = [
    { id: 'ok', action: 'allow', application: 'any' },
    { id: 'ok', action: 'allow', application: 'any' },
    { action: 'allow', application: 'any' },
    'not a rule',
    { id: 'bad', action: 'allow', application: 'any', port: -1 },
  ];
  assert.throws(() => Policy.compile(rules), (e: unknown) => {
    assert.ok(e instanceof InvalidRulesError);
    assert.deepEqual(e.errors.map((x) => [x.index, x.field]), [[1, 'id'], [2, 'id'], [3, 'rule'], [4, 'port']]);
    assert.match(e.message, /4 invalid rules/);
    assert.match(formatRuleError(e.errors[0]!), /rule "ok" \(#2\): id: duplicate id \(first used by rule #1\)/);
    return true;
  });
});

test('duplicate ids among many: exactly the repeats are reported, and ids that merely hash alike are not repeats', () => {
  // rule-179599 and rule-362382 have the same 32-bit hash in the id table (ids.ts): only the string decides
  const rules = Array.from({ length: 400_000 }, (_, i) => ({ id: `rule-${i}`, action: 'allow', application: 'any' }));
  rules.push({ id: 'rule-362382', action: 'block', application: 'any' }, { id: 'rule-7', action: 'block', application: 'any' });
  assert.throws(() => Policy.compile(rules), (e: unknown) => {
    assert.ok(e instanceof InvalidRulesError);
    assert.deepEqual(e.errors.map(formatRuleError), [
      'rule "rule-362382" (#400001): id: duplicate id (first used by rule #362383)',
      'rule "rule-7" (#400002): id: duplicate id (first used by rule #8)',
    ]);
    return true;
  });
});

test('compiling leaves the rules as they were, frozen ones included', () => {
  const rules = [
    { id: 'a', action: 'allow', application: '/usr/bin/curl', endpoint: 'example.com' },
    Object.freeze({ id: 'b', action: 'block', application: '/usr/bin/curl', endpoint: 'example.org' }),
    { id: 'c', action: 'block', application: '*/Arc.app/' },
    { id: 'd', action: 'allow', application: '*/Arc.app', port: 443 },
  ];
  const before = JSON.parse(JSON.stringify(rules)) as unknown;
  const p = Policy.compile(rules);
  assert.deepEqual(rules, before);
  assert.deepEqual(p.rules, before);
});

test('a sliced compile lets the event loop run, and gives the same policy and the same errors', async () => {
  const rules = Array.from({ length: 20_000 }, (_, i) => ({ id: `r${i}`, action: i % 2 ? 'allow' : 'block', application: `/usr/bin/app${i % 500}`, endpoint: `h${i}.example.com` }));
  let turns = 0;
  const tick = setInterval(() => turns++, 0);
  const sliced = await Policy.compileSliced(rules, 'passive-block', 0.01);
  clearInterval(tick);
  assert.ok(turns > 0, 'timers ran while the rules compiled');
  const flow = (i: number) => ({ app: { path: `/usr/bin/app${i % 500}` }, remote: { ip: '192.0.2.1', hostnames: [`h${i}.example.com`] }, port: 443, protocol: 'tcp' as const });
  const whole = Policy.compile(rules, 'passive-block');
  for (const i of [0, 1, 777, 19_999]) assert.deepEqual(sliced.decide(flow(i)), whole.decide(flow(i)));
  assert.equal(sliced.decide(flow(20_001)).action, 'block', 'the mode carries over');
  const bad = [...rules, { id: 'r5', action: 'allow', application: 'any' }, { id: 'x', action: 'deny', application: 'any' }];
  const err = await Policy.compileSliced(bad).catch((e: unknown) => e);
  assert.ok(err instanceof InvalidRulesError);
  assert.deepEqual(err.errors, Policy.validate(bad));
  assert.deepEqual(err.errors.map((e) => `${e.id} ${e.field}`), ['r5 id', 'x action']);
  const stop = new AbortController();
  setImmediate(() => stop.abort(new Error('stopping')));
  await assert.rejects(Policy.compileSliced(rules, 'passive-block', 0.01, stop.signal), /stopping/);
});
