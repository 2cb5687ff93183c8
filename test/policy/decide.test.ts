import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Policy, decideWithAsk, type Flow, type Rule } from '../../src/policy/index.js';
import { FIREFOX, decide, flow, rule } from './helpers.js';
import { hashBytes } from '../../src/policy/bytedict.js';

const CURL = { path: '/usr/bin/curl' };

describe('rule kinds', () => {
  test('exact host matches only that host', () => {
    const rules = [rule({ id: 'h', action: 'block', application: 'any', endpoint: 'evil.example.com' })];
    assert.equal(decide(rules, flow(CURL, 'evil.example.com')).rule?.id, 'h');
    assert.equal(decide(rules, flow(CURL, 'EVIL.example.com.')).action, 'block', 'case and trailing dot do not matter');
    assert.equal(decide(rules, flow(CURL, 'a.evil.example.com')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, 'example.com')).action, 'allow');
  });

  test('names that are also JavaScript property names (__proto__, constructor) are plain names', () => {
    const rules = [
      rule({ id: 'proto', action: 'block', application: 'any', endpoint: '__proto__' }),
      rule({ id: 'ctor', action: 'block', application: 'any', endpoint: 'constructor' }),
    ];
    assert.equal(decide(rules, flow(CURL, '__proto__')).rule?.id, 'proto');
    assert.equal(decide(rules, flow(CURL, 'constructor')).rule?.id, 'ctor');
    for (const h of ['tostring', 'hasownproperty', 'valueof']) assert.equal(decide(rules, flow(CURL, h)).action, 'allow', h);
    assert.equal(decide(rules, flow({ path: '/usr/bin/__proto__' }, 'x.com')).action, 'allow');
  });

  test('*.domain matches subdomains at any depth, not the domain itself nor look-alikes', () => {
    const rules = [rule({ id: 'w', action: 'block', application: 'any', endpoint: '*.example.com' })];
    assert.equal(decide(rules, flow(CURL, 'a.example.com')).rule?.id, 'w');
    assert.equal(decide(rules, flow(CURL, 'a.b.example.com')).rule?.id, 'w');
    assert.equal(decide(rules, flow(CURL, 'example.com')).action, 'allow', 'the apex is not a subdomain');
    assert.equal(decide(rules, flow(CURL, 'badexample.com')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, 'example.com.evil.net')).action, 'allow');
    // a flow's name is matched as the index keys it: lower case, no trailing dot
    for (const h of ['A.Example.COM', 'a.example.com.', 'Ä.example.com', 'a.EXAMPLE.com.']) assert.equal(decide(rules, flow(CURL, h)).rule?.id, 'w', h);
    assert.equal(decide(rules, flow(CURL, 'a.exÄmple.com')).action, 'allow');
  });

  test('internationalised names (IDN) match written in Unicode or as the punycode DNS carries', () => {
    const rules = [
      rule({ id: 'unicode', action: 'block', application: 'any', endpoint: 'Bücher.de' }),
      rule({ id: 'wild', action: 'block', application: 'any', endpoint: '*.straße.example' }),
      rule({ id: 'puny', action: 'block', application: 'any', endpoint: 'xn--80ak6aa92e.com' }), // аррӏе.com, Cyrillic
    ];
    for (const h of ['xn--bcher-kva.de', 'bücher.de', 'BÜCHER.DE.']) assert.equal(decide(rules, flow(CURL, h)).rule?.id, 'unicode', h);
    for (const h of ['a.xn--strae-oqa.example', 'a.straße.example', 'b.c.STRASSE.example.']) {
      const want = h.includes('STRASSE') ? 'allow' : 'block'; // ß is its own letter (IDNA 2008), not "ss"
      assert.equal(decide(rules, flow(CURL, h)).action, want, h);
    }
    assert.equal(decide(rules, flow(CURL, 'аррӏе.com')).rule?.id, 'puny');
    assert.equal(decide(rules, flow(CURL, 'apple.com')).action, 'allow', 'a look-alike is another name');
    // a name whose punycode label is longer than DNS allows is refused, naming the rule
    const long = `${'ä'.repeat(70)}.com`;
    assert.throws(() => Policy.compile([rule({ id: 'too-long', action: 'block', application: 'any', endpoint: long })]), /too-long.*malformed host/s);
  });

  test('a name among many: every name a flow resolved to is matched, each suffix of each', () => {
    const rules = [
      rule({ id: 'deep', action: 'block', application: 'any', endpoint: '*.a.b.c.d.e.f.g.h.i.j.example.com' }),
      rule({ id: 'w', action: 'allow', application: 'any', endpoint: '*.example.com' }),
    ];
    const many = Array.from({ length: 30 }, (_, i) => `x${i}.a.b.c.d.e.f.g.h.i.j.k.example.com`);
    assert.equal(decide(rules, flow(CURL, 'x', 443, 'tcp', { hostnames: many })).rule?.id, 'w');
    assert.equal(decide(rules, flow(CURL, 'x', 443, 'tcp', { hostnames: [...many, 'y.a.b.c.d.e.f.g.h.i.j.example.com'] })).rule?.id, 'deep');
  });

  test('IPv4 address and CIDR', () => {
    const rules = [
      rule({ id: 'ip', action: 'block', application: 'any', endpoint: '192.0.2.7' }),
      rule({ id: 'net', action: 'block', application: 'any', endpoint: '198.51.100.0/24' }),
    ];
    assert.equal(decide(rules, flow(CURL, '192.0.2.7')).rule?.id, 'ip');
    assert.equal(decide(rules, flow(CURL, '192.0.2.8')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, '198.51.100.255')).rule?.id, 'net');
    assert.equal(decide(rules, flow(CURL, '198.51.101.0')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, '::ffff:192.0.2.7')).rule?.id, 'ip', 'IPv4-mapped IPv6 is the IPv4 address');
  });

  test('IPv4 networks of every edge length: the longest prefix that holds the address wins, compiled and restored', () => {
    const r = [
      rule({ id: 'all', action: 'allow', application: CURL.path, endpoint: '0.0.0.0/0' }),
      rule({ id: 'ten', action: 'block', application: CURL.path, endpoint: '10.0.0.0/8' }),
      rule({ id: 'pair', action: 'allow', application: CURL.path, endpoint: '10.1.2.2/31' }),
      rule({ id: 'one', action: 'block', application: CURL.path, endpoint: '10.1.2.3/32' }),
      rule({ id: 'high', action: 'block', application: CURL.path, endpoint: '128.0.0.0/1' }),
    ];
    const compiled = Policy.compile(r);
    for (const p of [compiled, Policy.restore(compiled.image(), 'passive-block')]) {
      const at = (ip: string) => p.decide(flow(CURL, ip)).rule?.id;
      assert.deepEqual(['10.1.2.3', '10.1.2.2', '10.1.2.4', '10.200.0.1', '11.0.0.1', '200.0.0.1', '127.255.255.255'].map(at), ['one', 'pair', 'ten', 'ten', 'all', 'high', 'all']);
      assert.equal(p.decide(flow({ path: '/usr/bin/wget' }, '10.1.2.3')).rule, undefined, "another program's rules do not apply");
    }
  });

  test('IPv6 address and CIDR, any spelling', () => {
    const rules = [
      rule({ id: 'ip6', action: 'block', application: 'any', endpoint: '2001:db8::1' }),
      rule({ id: 'net6', action: 'block', application: 'any', endpoint: '2001:db8:aa::/48' }),
      rule({ id: 'all', action: 'allow', application: 'any', endpoint: '::/0' }),
    ];
    assert.equal(decide(rules, flow(CURL, '2001:0db8:0000:0000:0000:0000:0000:0001')).rule?.id, 'ip6');
    assert.equal(decide(rules, flow(CURL, '2001:db8:aa:ffff::9')).rule?.id, 'net6');
    assert.equal(decide(rules, flow(CURL, '2001:db8:ab::9')).rule?.id, 'all');
    assert.equal(decide(rules, flow(CURL, '192.0.2.1')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, '192.0.2.1')).level, 'default', '::/0 does not match IPv4');
  });

  test('IPv6 networks whose prefix ends inside a group', () => {
    const rules = [
      rule({ id: 'n33', action: 'block', application: 'any', endpoint: '2001:db8:8000::/33' }),
      rule({ id: 'n127', action: 'block', application: 'any', endpoint: '2001:db8::2:0/127' }),
      rule({ id: 'n57', action: 'block', application: 'any', endpoint: 'fd00:0:0:80::/57' }),
    ];
    const at = (ip: string): string | undefined => decide(rules, flow(CURL, ip)).rule?.id;
    assert.equal(at('2001:db8:8000::1'), 'n33');
    assert.equal(at('2001:db8:ffff:ffff::1'), 'n33');
    assert.equal(at('2001:db8:7fff::1'), undefined);
    assert.equal(at('2001:db8::2:0'), 'n127');
    assert.equal(at('2001:db8::2:1'), 'n127');
    assert.equal(at('2001:db8::2:2'), undefined);
    assert.equal(at('fd00:0:0:ff::1'), 'n57');
    assert.equal(at('fd00:0:0:7f::1'), undefined);
    assert.equal(at('fd00:0:0:100::'), undefined);
  });

  test('URL rules match the URL and paths under it, only when the flow has a URL', () => {
    const rules = [rule({ id: 'u', action: 'block', application: 'any', endpoint: 'https://api.example.com/v1' })];
    const at = (url?: string) => decide(rules, flow(CURL, 'api.example.com', 443, 'tcp', url ? { url } : {}));
    assert.equal(at('https://api.example.com/v1/users?x=1').rule?.id, 'u');
    assert.equal(at('https://API.example.com/v1').rule?.id, 'u');
    assert.equal(at('https://api.example.com/v10').action, 'allow');
    assert.equal(at('http://api.example.com/v1').action, 'allow', 'scheme matters');
    assert.equal(at(undefined).action, 'allow');
  });

  test('ports: exact, range, any; protocols', () => {
    const rules = [
      rule({ id: 'p', action: 'block', application: 'any', port: 445 }),
      rule({ id: 'range', action: 'block', application: 'any', port: '6000-6010', protocol: 'udp' }),
    ];
    assert.equal(decide(rules, flow(CURL, 'x.org', 445)).rule?.id, 'p');
    assert.equal(decide(rules, flow(CURL, 'x.org', 444)).action, 'allow');
    assert.equal(decide(rules, flow(CURL, 'x.org', 6000, 'udp')).rule?.id, 'range');
    assert.equal(decide(rules, flow(CURL, 'x.org', 6010, 'udp')).rule?.id, 'range');
    assert.equal(decide(rules, flow(CURL, 'x.org', 6005, 'tcp')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, 'x.org', 6011, 'udp')).action, 'allow');
    // UDP-Lite is not UDP: only rules for any protocol apply to it
    assert.equal(decide(rules, flow(CURL, 'x.org', 6000, 'udplite')).action, 'allow');
    assert.equal(decide(rules, flow(CURL, 'x.org', 445, 'udplite')).rule?.id, 'p');
  });
});

describe('application levels', () => {
  const rules = [
    rule({ id: 'byId', action: 'allow', application: 'org.mozilla.firefox', endpoint: 'a.com' }),
    rule({ id: 'byPath', action: 'block', application: '/usr/lib/firefox/firefox', endpoint: 'a.com' }),
    rule({ id: 'byPath2', action: 'block', application: '/usr/lib/firefox/firefox', endpoint: 'b.com' }),
    rule({ id: 'prefixLong', action: 'allow', application: '/usr/lib/firefox/', endpoint: 'c.com' }),
    rule({ id: 'prefixShort', action: 'block', application: '/usr/', endpoint: 'c.com' }),
    rule({ id: 'prefixShort2', action: 'block', application: '/usr/', endpoint: 'd.com' }),
    rule({ id: 'anyApp', action: 'block', application: 'any', endpoint: 'e.com' }),
  ];
  test('app id first, then full path, then prefixes longest first, then any, then the mode', () => {
    assert.deepEqual([decide(rules, flow(FIREFOX, 'a.com')).rule?.id, decide(rules, flow(FIREFOX, 'a.com')).level], ['byId', 'app-id']);
    assert.deepEqual([decide(rules, flow(FIREFOX, 'b.com')).rule?.id, decide(rules, flow(FIREFOX, 'b.com')).level], ['byPath2', 'path']);
    assert.equal(decide(rules, flow(FIREFOX, 'c.com')).rule?.id, 'prefixLong');
    assert.equal(decide(rules, flow(FIREFOX, 'd.com')).rule?.id, 'prefixShort2');
    assert.equal(decide(rules, flow(FIREFOX, 'e.com')).rule?.id, 'anyApp');
    assert.equal(decide(rules, flow(FIREFOX, 'e.com')).level, 'any');
    assert.equal(decide(rules, flow(FIREFOX, 'f.com')).level, 'default');
  });

  test('a level with no applicable rule falls through to the next one', () => {
    // the app-id rule is for another port: not applicable, so the path rule decides
    const r = [
      rule({ id: 'id443', action: 'allow', application: 'org.mozilla.firefox', endpoint: 'a.com', port: 443 }),
      rule({ id: 'path', action: 'block', application: '/usr/lib/firefox/firefox', endpoint: 'a.com' }),
    ];
    assert.equal(decide(r, flow(FIREFOX, 'a.com', 80)).rule?.id, 'path');
    assert.equal(decide(r, flow(FIREFOX, 'a.com', 443)).rule?.id, 'id443');
  });

  test('the first level with an applicable rule decides even if a later level is more specific', () => {
    const r = [
      rule({ id: 'idAny', action: 'allow', application: 'org.mozilla.firefox' }),
      rule({ id: 'pathHost', action: 'block', application: '/usr/lib/firefox/firefox', endpoint: 'a.com', port: 443 }),
    ];
    assert.equal(decide(r, flow(FIREFOX, 'a.com')).rule?.id, 'idAny');
  });

  test('sub-paths match anywhere on component boundaries', () => {
    const r = [rule({ id: 'arc', action: 'block', application: '*/Arc.app' })];
    assert.equal(decide(r, flow({ path: '/Applications/Arc.app/Contents/MacOS/Arc' }, 'x.com')).rule?.id, 'arc');
    assert.equal(decide(r, flow({ path: '/Users/me/Arc.app/Contents/MacOS/Arc' }, 'x.com')).rule?.id, 'arc');
    assert.equal(decide(r, flow({ path: '/Applications/Arcade.app/Contents/MacOS/Arcade' }, 'x.com')).action, 'allow');
    assert.equal(decide(r, flow({ path: '/Applications/MyArc.app/Contents/MacOS/Arc' }, 'x.com')).action, 'allow');
    const bin = [rule({ id: 'curl', action: 'block', application: '*/bin/curl' })];
    assert.equal(decide(bin, flow({ path: '/usr/local/bin/curl' }, 'x.com')).rule?.id, 'curl');
    assert.equal(decide(bin, flow({ path: '/usr/local/bin/curlx' }, 'x.com')).action, 'allow');
  });

  test('a sub-path written with or without its trailing slash is one application: its most specific rule wins', () => {
    const r = [
      rule({ id: 'arcAny', action: 'allow', application: '*/Arc.app' }),
      rule({ id: 'arcHost', action: 'block', application: '*/Arc.app/', endpoint: 'tracker.com' }),
    ];
    const arc = { path: '/Applications/Arc.app/Contents/MacOS/Arc' };
    assert.equal(decide(r, flow(arc, 'tracker.com')).rule?.id, 'arcHost');
    assert.equal(decide(r, flow(arc, 'x.com')).rule?.id, 'arcAny');
  });

  test('prefixes and sub-paths: the match reaching deepest into the path wins', () => {
    const r = [
      rule({ id: 'apps', action: 'block', application: '/Applications/' }),
      rule({ id: 'arc', action: 'allow', application: '*/Arc.app/' }),
      rule({ id: 'arcBin', action: 'block', application: '*/Arc.app/Contents/MacOS/' }),
    ];
    assert.equal(decide(r, flow({ path: '/Applications/Arc.app/Contents/Helpers/h' }, 'x.com')).rule?.id, 'arc');
    assert.equal(decide(r, flow({ path: '/Applications/Arc.app/Contents/MacOS/Arc' }, 'x.com')).rule?.id, 'arcBin');
    assert.equal(decide(r, flow({ path: '/Applications/Other.app/o' }, 'x.com')).rule?.id, 'apps');
  });

  test('paths with non-ASCII characters match as their characters say, compiled and restored', () => {
    // the index keys UTF-8 bytes: "ü" is one character and two bytes, so lengths differ from the string's
    const r = [
      rule({ id: 'home', action: 'block', application: '/home/jürgen/' }),
      rule({ id: 'tool', action: 'allow', application: '/home/jürgen/bin/wörk' }),
      rule({ id: 'books', action: 'allow', application: '*/Bücher.app' }),
      rule({ id: 'deep', action: 'block', application: '/home/jürgen/Bücher.app/Contents/' }),
    ];
    const compiled = Policy.compile(r);
    for (const p of [compiled, Policy.restore(compiled.image(), 'passive-allow')]) {
      assert.equal(p.decide(flow({ path: '/home/jürgen/bin/wörk' }, 'x.com')).rule?.id, 'tool');
      assert.equal(p.decide(flow({ path: '/home/jürgen/bin/other' }, 'x.com')).rule?.id, 'home');
      assert.equal(p.decide(flow({ path: '/home/jurgen/bin/other' }, 'x.com')).action, 'allow');
      assert.equal(p.decide(flow({ path: '/opt/Bücher.app/b' }, 'x.com')).rule?.id, 'books');
      assert.equal(p.decide(flow({ path: '/opt/Bücher.apps/b' }, 'x.com')).rule, undefined);
      assert.equal(p.decide(flow({ path: '/home/jürgen/Bücher.app/Contents/x' }, 'x.com')).rule?.id, 'deep');
      assert.equal(p.decide(flow({ path: '/home/jürgen/Bücher.app/Resources/x' }, 'x.com')).rule?.id, 'books');
      // characters whose codes are the UTF-8 bytes of "ü" (Ã and ¼) are other characters: no match
      assert.equal(p.decide(flow({ path: '/opt/BÃ¼cher.app/b' }, 'x.com')).rule, undefined);
      assert.equal(p.decide(flow({ path: '/home/jÃ¼rgen/bin/wÃ¶rk' }, 'x.com')).rule, undefined);
    }
  });

  test('a path longer than PATH_MAX bytes, non-ASCII throughout, matches as its characters say', () => {
    // 3,000 "ü" are 6,000 UTF-8 bytes: walked as bytes in more than one piece of 4,096
    const dir = `/${'ü'.repeat(3000)}/`;
    const r = [rule({ id: 'long', action: 'block', application: dir }), rule({ id: 'sub', action: 'allow', application: `*/${'ü'.repeat(2999)}x` })];
    for (const p of [Policy.compile(r), Policy.restore(Policy.compile(r).image(), 'passive-allow')]) {
      assert.equal(p.decide(flow({ path: `${dir}bin` }, 'x.com')).rule?.id, 'long');
      assert.equal(p.decide(flow({ path: `/${'ü'.repeat(2999)}u/bin` }, 'x.com')).rule, undefined);
      assert.equal(p.decide(flow({ path: `/a/${'ü'.repeat(2999)}x/bin` }, 'x.com')).rule?.id, 'sub');
    }
  });

  test('a prefix does not match the directory itself nor siblings sharing its name', () => {
    const r = [rule({ id: 'p', action: 'block', application: '/usr/lib/firefox/' })];
    assert.equal(decide(r, flow({ path: '/usr/lib/firefox-esr/firefox' }, 'x.com')).action, 'allow');
    assert.equal(decide(r, flow({ path: '/usr/lib/firefox' }, 'x.com')).action, 'allow');
    assert.equal(decide(r, flow({ path: '/usr/lib/firefox/sub/plugin' }, 'x.com')).rule?.id, 'p');
  });

  test('an app id rule never applies to a process without that id', () => {
    const r = [rule({ id: 'id', action: 'block', application: 'org.mozilla.firefox' })];
    assert.equal(decide(r, flow({ path: '/usr/lib/firefox/firefox' }, 'x.com')).action, 'allow');
  });
});

describe('block beats allow at equal specificity, at every level', () => {
  const apps = [
    ['app-id', 'org.mozilla.firefox'],
    ['path', '/usr/lib/firefox/firefox'],
    ['prefix', '/usr/lib/'],
    ['prefix', '*/firefox'],
    ['any', 'any'],
  ] as const;
  for (const [level, application] of apps) {
    for (const order of ['allow-first', 'block-first']) {
      test(`${application} (${order})`, () => {
        const a = rule({ id: 'a', action: 'allow', application, endpoint: '*.example.com', port: 443 });
        const b = rule({ id: 'b', action: 'block', application, endpoint: '*.example.com', port: 443 });
        const v = decide(order === 'allow-first' ? [a, b] : [b, a], flow(FIREFOX, 'x.example.com'));
        assert.equal(v.action, 'block');
        assert.equal(v.rule?.id, 'b');
        assert.equal(v.level, level);
      });
    }
  }

  test('several host names of one IP: the most specific match over all names, block on ties', () => {
    const r = [
      rule({ id: 'allowA', action: 'allow', application: 'any', endpoint: 'a.cdn.net' }),
      rule({ id: 'blockB', action: 'block', application: 'any', endpoint: 'b.cdn.net' }),
      rule({ id: 'wild', action: 'allow', application: 'any', endpoint: '*.cdn.net' }),
    ];
    const f = flow(CURL, 'a.cdn.net');
    f.remote.hostnames = ['a.cdn.net', 'b.cdn.net'];
    assert.equal(decide(r, f).rule?.id, 'blockB');
  });
});

describe('specificity within a level', () => {
  const app = 'org.mozilla.firefox';
  const cases: [string, string, string][] = [
    ['URL over host', 'https://x.example.com/', 'x.example.com'],
    ['host over wildcard', 'x.example.com', '*.example.com'],
    ['longer wildcard over shorter', '*.x.example.com', '*.example.com'],
    ['wildcard over IP', '*.example.com', '192.0.2.1'],
    ['IP over CIDR', '192.0.2.1', '192.0.2.0/24'],
    ['longer CIDR over shorter', '192.0.2.0/25', '192.0.0.0/16'],
    ['CIDR over any', '192.0.0.0/16', 'any'],
  ];
  for (const [name, specific, general] of cases) {
    test(`${name}: the specific allow wins over a general block, and a specific block over a general allow`, () => {
      const f = flow(FIREFOX, 'a.x.example.com', 443, 'tcp', { ip: '192.0.2.1', hostnames: ['a.x.example.com', 'x.example.com'], url: 'https://x.example.com/page' });
      for (const [sa, ga] of [['allow', 'block'], ['block', 'allow']] as const) {
        const v = decide([rule({ id: 'g', action: ga, application: app, endpoint: general }), rule({ id: 's', action: sa, application: app, endpoint: specific })], f);
        assert.equal(v.rule?.id, 's');
        assert.equal(v.action, sa);
      }
    });
  }

  test('exact port over range over any; named protocol over any; scoped over everyone', () => {
    const f = { ...flow({ ...FIREFOX, user: 'alice', uid: 1000 }, 'a.com', 443) };
    const pairs: [Parameters<typeof rule>[0], Parameters<typeof rule>[0]][] = [
      [{ action: 'allow', application: app, endpoint: 'a.com', port: 443 }, { action: 'block', application: app, endpoint: 'a.com', port: '400-500' }],
      [{ action: 'allow', application: app, endpoint: 'a.com', port: '400-500' }, { action: 'block', application: app, endpoint: 'a.com' }],
      [{ action: 'allow', application: app, endpoint: 'a.com', protocol: 'tcp' }, { action: 'block', application: app, endpoint: 'a.com' }],
      [{ action: 'allow', application: app, endpoint: 'a.com', users: ['alice'] }, { action: 'block', application: app, endpoint: 'a.com' }],
      [{ action: 'allow', application: app, endpoint: 'a.com' }, { action: 'block', application: app, endpoint: 'any', port: 443, protocol: 'tcp' }],
    ];
    for (const [specific, general] of pairs) {
      const s = rule(specific);
      assert.equal(decide([rule(general), s], f).rule?.id, s.id, JSON.stringify(specific));
    }
  });
});

describe('modes', () => {
  const rules = [rule({ action: 'allow', application: 'org.mozilla.firefox', endpoint: 'a.com' })];
  test('passive-allow, passive-block and ask decide what no rule covers', () => {
    assert.equal(decide(rules, flow(FIREFOX, 'b.com'), 'passive-allow').action, 'allow');
    assert.equal(decide(rules, flow(FIREFOX, 'b.com'), 'passive-block').action, 'block');
    const v = decide(rules, flow(FIREFOX, 'b.com'), 'ask');
    assert.equal(v.action, 'ask');
    assert.equal(v.level, 'default');
    assert.match(v.reason, /mode ask/);
    assert.equal(decide(rules, flow(FIREFOX, 'a.com'), 'passive-block').action, 'allow', 'rules still decide');
  });

  test('withMode changes the default without recompiling', () => {
    const p = Policy.compile(rules, 'passive-allow');
    assert.equal(p.withMode('passive-block').decide(flow(FIREFOX, 'b.com')).action, 'block');
    assert.equal(p.decide(flow(FIREFOX, 'b.com')).action, 'allow');
  });

  test('ask: the answer, or the default on timeout or failure', async () => {
    const p = Policy.compile(rules, 'ask');
    const f = flow(FIREFOX, 'b.com');
    const answered = await decideWithAsk(p, f, { ask: async () => 'block', timeoutMs: 1000, defaultAction: 'allow' });
    assert.deepEqual([answered.action, answered.reason], ['block', 'ask: answered block']);
    const slow = await decideWithAsk(p, f, { ask: () => new Promise(() => {}), timeoutMs: 20, defaultAction: 'block' });
    assert.equal(slow.action, 'block');
    assert.match(slow.reason, /no answer within 20 ms/);
    const broken = await decideWithAsk(p, f, { ask: async () => { throw new Error('ui gone'); }, timeoutMs: 1000, defaultAction: 'allow' });
    assert.equal(broken.action, 'allow');
    assert.match(broken.reason, /ui gone/);
    const ruled = await decideWithAsk(p, flow(FIREFOX, 'a.com'), { ask: async () => 'block', timeoutMs: 1000, defaultAction: 'block' });
    assert.equal(ruled.action, 'allow', 'no prompt when a rule decides');
  });
});

describe('expiry and scope', () => {
  test('an expired rule stops applying without a recompile', () => {
    const p = Policy.compile([
      rule({ id: 'temp', action: 'allow', application: 'any', endpoint: 'a.com', expires: '2030-01-01T00:00:00Z' }),
      rule({ id: 'perm', action: 'block', application: 'any' }),
    ]);
    const f = flow(CURL, 'a.com');
    assert.equal(p.decide(f, Date.parse('2029-12-31T23:59:59Z')).rule?.id, 'temp');
    assert.equal(p.decide(f, Date.parse('2030-01-01T00:00:00Z')).rule?.id, 'perm');
  });

  test('users and groups scope a rule; a flow without that identity is out of scope', () => {
    const r = [
      rule({ id: 'alice', action: 'allow', application: 'any', endpoint: 'a.com', users: ['alice', '1001'] }),
      rule({ id: 'devs', action: 'allow', application: 'any', endpoint: 'b.com', groups: ['dev'] }),
    ];
    const as = (app: object, host: string) => decide(r, flow({ path: '/usr/bin/git', ...app }, host), 'passive-block');
    assert.equal(as({ user: 'alice' }, 'a.com').rule?.id, 'alice');
    assert.equal(as({ uid: 1001 }, 'a.com').rule?.id, 'alice');
    assert.equal(as({ user: 'bob', uid: 1002 }, 'a.com').action, 'block');
    assert.equal(as({}, 'a.com').action, 'block');
    assert.equal(as({ groups: ['staff', 'dev'] }, 'b.com').rule?.id, 'devs');
    assert.equal(as({ groups: ['staff'] }, 'b.com').action, 'block');
  });
});

/** Two names of one length whose index hash (bytedict.ts) is the same: a birthday search, ~50 ms. */
function collidingNames(): [string, string] {
  const seen = new Map<number, string>();
  let x = 12345;
  for (let i = 0; i < 2_000_000; i++) {
    let k = '';
    for (let j = 0; j < 8; j++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      k += String.fromCharCode(97 + ((x >>> 0) % 26));
    }
    k += '.test';
    const h = hashBytes(Buffer.from(k), 0, k.length);
    const o = seen.get(h);
    if (o !== undefined && o !== k) return [o, k];
    seen.set(h, k);
  }
  throw new Error('no two names of one hash found');
}

test('two keys of one hash and length each get their own verdict: decide() compares the keys it looked up', () => {
  // decide() takes a slot whose hash and length match and compares its key after (KeyChecks): here it
  // must find the other key's slot, throw that answer away and decide again
  const [a, b] = collidingNames();
  const one = [
    rule({ id: 'host', action: 'block', application: 'any', endpoint: a }),
    rule({ id: 'wild', action: 'block', application: 'any', endpoint: `*.${a}` }),
    rule({ id: 'id', action: 'block', application: a, endpoint: 'x.example' }),
    rule({ id: 'path', action: 'block', application: `/opt/${a}`, endpoint: 'x.example' }),
    rule({ id: 'prefix', action: 'block', application: `/srv/${a}/`, endpoint: 'x.example' }),
  ];
  const compiled = Policy.compile(one);
  for (const p of [compiled, Policy.restore(compiled.image(), 'passive-allow')]) {
    for (let round = 0; round < 3; round++) { // again: what a decision left in the memos must not mislead the next
      assert.equal(p.decide(flow(CURL, a)).rule?.id, 'host');
      assert.equal(p.decide(flow(CURL, b)).action, 'allow', `the host ${b}, not ${a}`);
      assert.equal(p.decide(flow(CURL, `n.${a}`)).rule?.id, 'wild');
      assert.equal(p.decide(flow(CURL, `n.${b}`)).action, 'allow', `a subdomain of ${b}`);
      assert.equal(p.decide(flow({ id: a, path: '/usr/bin/x' }, 'x.example')).rule?.id, 'id');
      assert.equal(p.decide(flow({ id: b, path: '/usr/bin/x' }, 'x.example')).action, 'allow', `the app id ${b}`);
      assert.equal(p.decide(flow({ path: `/opt/${b}` }, 'x.example')).action, 'allow', `the path /opt/${b}`);
      assert.equal(p.decide(flow({ path: `/srv/${b}/bin/x` }, 'x.example')).action, 'allow', `under /srv/${b}/`);
      assert.equal(p.decide(flow({ path: `/srv/${a}/bin/x` }, 'x.example')).rule?.id, 'prefix');
    }
  }
  // both in the catalog: each name its own rule
  const both = Policy.compile([rule({ id: 'a', action: 'block', application: 'any', endpoint: a }), rule({ id: 'b', action: 'allow', application: 'any', endpoint: b })]);
  for (let round = 0; round < 3; round++) assert.deepEqual([both.decide(flow(CURL, a)).rule?.id, both.decide(flow(CURL, b)).rule?.id], ['a', 'b']);
});

test('every verdict explains itself', () => {
  const r = [rule({ id: 'ads', action: 'block', application: 'org.mozilla.firefox', endpoint: '*.ads.net', port: 443, protocol: 'tcp', note: 'ad networks' })];
  const v = decide(r, flow(FIREFOX, 'x.ads.net'));
  assert.equal(v.reason, 'rule "ads" (block org.mozilla.firefox -> *.ads.net:443/tcp) at the app-id level');
  assert.equal(v.rule?.note, 'ad networks');
  assert.equal(decide(r, flow(FIREFOX, 'x.com')).reason, 'no rule applies; mode passive-allow -> allow');
});

describe('memoised lookups (memo.ts)', () => {
  test('a verdict never depends on which flows were decided before', () => {
    // paths under prefixes and sub-paths, names under wildcards: every memoised lookup has something to find
    const rules: Rule[] = [];
    for (let i = 0; i < 300; i++) {
      rules.push(rule({ action: i % 3 ? 'allow' : 'block', application: `/opt/app${i % 40}/`, endpoint: `*.d${i % 50}.example` }));
      rules.push(rule({ action: i % 4 ? 'block' : 'allow', application: `*/Plug${i % 30}.bundle`, endpoint: `h${i}.d${i % 50}.example`, port: 443 }));
      rules.push(rule({ action: 'block', application: `/usr/bin/tool${i}`, endpoint: `h${i}.d${i % 50}.example` }));
      rules.push(rule({ action: i % 2 ? 'allow' : 'block', application: `/usr/bin/tool${i}`, endpoint: i % 3 ? `2001:db8::${i % 7}:${i.toString(16)}` : `2001:db8:${i % 5}::/${48 + (i % 4) * 16}`, port: 443 }));
    }
    const paths = (i: number): string => [`/opt/app${i % 45}/bin/x`, `/A/Host.app/Plug${i % 33}.bundle/p`, `/usr/bin/tool${i % 310}`][i % 3]!;
    const flows: Flow[] = [];
    // enough lookups to turn the memos off (a run of one-off names) and on again (a run of repeats)
    for (let i = 0; i < 150_000; i++) {
      const repeat = Math.floor(i / 20_000) % 2 === 1;
      const k = repeat ? i % 97 : i;
      const f = flow({ path: repeat ? paths(k) : `${paths(k)}${k}` }, `${repeat ? '' : `n${k}.`}h${k % 320}.d${k % 50}.example`, k % 2 ? 443 : 80);
      flows.push(f);
      if (k % 10 !== 3) continue;
      // IPv6 addresses (memoised with their keys) that a tool's rule names, that its network holds, or neither
      const j = k % 310;
      const x = (k & 0xffff).toString(16);
      const ip = [`2001:db8::${j % 7}:${j.toString(16)}`, `2001:db8:${j % 5}::${x}`, `2001:db9::${x}`, `::ffff:10.0.${k % 3}.1`][Math.floor(k / 10) % 4]!;
      flows.push(flow({ path: `/usr/bin/tool${j}` }, ip));
    }
    const a = Policy.compile(rules);
    const b = Policy.compile(rules);
    const forward = flows.map((f) => a.decide(f).reason);
    const backward = flows.slice().reverse().map((f) => b.decide(f).reason).reverse();
    assert.deepEqual(forward, backward);
    assert.ok(new Set(forward).size > 100, `the flows reach many rules (${new Set(forward).size})`);
    const six = new Set(forward.filter((r) => r.includes('2001:db8'))).size;
    assert.ok(six > 20, `IPv6 addresses and networks decide some: ${six}`);
  });
});

test('an image whose tables could make a lookup probe forever is refused, not restored', () => {
  const rules = [rule({ action: 'block', application: '/usr/bin/curl', endpoint: 'a.example.com' })];
  const img = Policy.compile(rules).image();
  const full = (slots: Int32Array, at: number): Int32Array => {
    const s = slots.slice();
    for (let o = 0; o < s.length; o += 4) if (s[o + at] === 0) s[o + at] = 1; // every slot taken
    return s;
  };
  assert.throws(() => Policy.restore({ ...img, dicts: { ...img.dicts, names: { ...img.dicts.names, slots: full(img.dicts.names.slots, 2) } } }, 'passive-allow'), /malformed image/);
  assert.throws(() => Policy.restore({ ...img, pairs: full(img.pairs, 0) }, 'passive-allow'), /pairs for/);
  assert.equal(Policy.restore(img, 'passive-allow').decide(flow({ path: '/usr/bin/curl' }, 'a.example.com')).action, 'block');
});
