#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1:${GLIBC_TUNABLES} node --max-semi-space-size=2
/**
 * The `tollgate` command: thin wrappers over the parts. Bad input is one message and exit 1, never a stack trace.
 *
 * The node flag above: V8's young generation grows to 3 x 16 MB during a big catalog's load and
 * stays committed; at 2 MB a semi-space the peak RSS of a first load of 250,000 rules is ~25 MB
 * lower (~176 -> ~150 MB; NuAppFirewall's legacy catalog 138 -> ~116 MB) at no measured cost in
 * load time or decisions/s. Heap sizes can only be set when node starts (v8.setFlagsFromString is
 * too late), hence `env -S` (coreutils 8.30+; BusyBox's env lacks -S: run `node <this file>` there).
 *
 * The variable: glibc's malloc asks for transparent huge pages (madvise) for the big buffers of a
 * load (the catalog's bytes, its scan, the index, an image read back): one page fault per 2 MB
 * instead of 512. Faults were most of a load's time on this project's VM in its slow phases: a
 * restore from an image ~225 -> ~140 ms, a first load of 250,000 rules -12-20%, peak RSS unchanged. The
 * caller's own GLIBC_TUNABLES come after it, so one of theirs wins (glibc.malloc.hugetlb=0 turns it
 * off); with THP "never", or without glibc, it changes nothing.
 */
import { fstatSync } from 'node:fs';
import { Command } from 'commander';
import { agentCommands } from './agent.js';
import { catalogCommands } from './catalog.js';
import { UsageError, cacheDir, cacheOptions, int, mode, port, sameFile, type CacheFlags } from './usage.js';
import { CatalogError, encodingFor, loadPolicy, serializeCatalog, writeCatalog, type LoadedPolicy } from '../catalog/index.js';
import { InvalidRulesError, MODES, formatRuleError, normalizeHost, parseApplication, parseEndpoint, type Flow, type Mode } from '../policy/index.js';

/** Through the compiled-policy cache: a big catalog compiles once (catalog/policy-cache.ts). */
function load(file: string, m: Mode | undefined, o: CacheFlags): LoadedPolicy {
  return loadPolicy(file, m, { dir: cacheDir(o) });
}

const program = new Command('tollgate')
  .description('Outbound application firewall: which program may reach which destination')
  .showHelpAfterError();

cacheOptions(program
  .command('check')
  .description('validate a catalog (Tollgate or NuAppFirewall, JSON or PLIST) and print rule counts, or every error')
  .argument('<catalog>')
  .option('--json', 'print JSON'))
  .action((file: string, o: CacheFlags & { json?: boolean }) => {
    const { catalog, policy } = load(file, undefined, o);
    const s = policy.stats();
    if (o.json) return console.log(JSON.stringify({ file, format: catalog.format, encoding: catalog.encoding, ...s }));
    console.log(`${file}: valid ${catalog.format} catalog (${catalog.encoding})`);
    console.log(`  rules         ${s.rules}`);
    console.log(`  applications  ${s.applications}`);
    console.log(`  by action     allow ${s.byAction.allow}, block ${s.byAction.block}`);
    console.log(`  by level      app-id ${s.byLevel['app-id']}, path ${s.byLevel.path}, prefix ${s.byLevel.prefix}, any ${s.byLevel.any}`);
  });

cacheOptions(program
  .command('decide')
  .description('print the verdict for one connection and which rule decided it')
  .argument('<catalog>')
  .requiredOption('--app <id|path>', 'app id (org.mozilla.firefox) or absolute executable path')
  .option('--path <path>', 'executable path when --app is an app id')
  .option('--host <name...>', 'host name(s) the program resolved')
  .option('--ip <address>', 'remote IP address')
  .option('--url <url>', 'URL, where known (its host is the connection\'s host or IP)')
  .requiredOption('--port <n>', 'remote port', port)
  .option('--proto <tcp|udp|udplite>', 'protocol (udplite: only rules for any protocol apply)', 'tcp')
  .option('--user <name>', 'user name of the program')
  .option('--uid <n>', 'uid of the program', int(0, 4294967294))
  .option('--groups <names...>', 'groups of the program')
  .option('--mode <mode>', `mode when no rule applies (${MODES.join(', ')}); default: the catalog's, else passive-allow`, mode)
  .option('--json', 'print the verdict as JSON'))
  .action((file: string, o: Record<string, string | string[] | number | boolean | undefined> & CacheFlags) => {
    const app = String(o.app);
    const parsed = parseApplication(app);
    if (typeof parsed === 'string' || (parsed.kind !== 'id' && parsed.kind !== 'path')) {
      throw new UsageError(`--app: expected an app id or an absolute executable path, got "${app}"`);
    }
    if (o.proto !== 'tcp' && o.proto !== 'udp' && o.proto !== 'udplite') throw new UsageError('--proto: expected tcp, udp or udplite');
    if (!o.host && !o.ip && !o.url) throw new UsageError('give the destination: --host, --ip and/or --url');
    const ip = o.ip === undefined ? undefined : parseEndpoint(String(o.ip));
    if (ip !== undefined && (typeof ip === 'string' || ip.kind !== 'ip')) throw new UsageError(`--ip: not an IP address: "${o.ip}"`);
    const hosts = ((o.host as string[] | undefined) ?? []).map((h) => {
      const n = normalizeHost(h);
      if (!n) throw new UsageError(`--host: not a host name: "${h}"`);
      return n;
    });
    // A connection to a URL goes to its host: host, wildcard and IP rules judge it too, as they
    // would the same connection given by --host or --ip
    let remoteIp = String(o.ip ?? '');
    if (o.url !== undefined) {
      const u = URL.canParse(String(o.url)) ? new URL(String(o.url)) : null;
      if (!u || !u.hostname) throw new UsageError(`--url: not a URL with a host: "${o.url}"`);
      const host = u.hostname.replace(/^\[(.*)\]$/, '$1'); // an IPv6 literal without its brackets
      const literal = parseEndpoint(host);
      if (typeof literal !== 'string' && literal.kind === 'ip') remoteIp ||= host;
      else if (!hosts.includes(host)) hosts.push(host);
    }
    const flow: Flow = {
      app: {
        ...(parsed.kind === 'id' ? { id: app, path: String(o.path ?? '') } : { path: app }),
        ...(o.user ? { user: String(o.user) } : {}),
        ...(o.uid !== undefined ? { uid: Number(o.uid) } : {}),
        ...(o.groups ? { groups: o.groups as string[] } : {}),
      },
      remote: { ip: remoteIp, hostnames: hosts, ...(o.url ? { url: String(o.url) } : {}) },
      port: o.port as number,
      protocol: o.proto,
    };
    const { policy } = load(file, o.mode as Mode | undefined, o);
    const v = policy.decide(flow);
    if (o.json) return console.log(JSON.stringify({ flow, mode: policy.mode, ...v }, null, 2));
    console.log(`${v.action.toUpperCase()}  (${v.level} level)`);
    console.log(`  ${v.reason}`);
    if (v.rule?.note) console.log(`  note: ${v.rule.note}`);
  });

program
  .command('convert')
  .description('convert a catalog between formats; the output format follows --format, the encoding the file extension (.plist or .json)')
  .argument('<in>')
  .argument('<out>')
  .option('--format <tollgate|nuapp>', 'output format', 'tollgate')
  .action(async (input: string, out: string, o: { format: string }) => {
    if (o.format !== 'tollgate' && o.format !== 'nuapp') throw new UsageError('--format: expected tollgate or nuapp');
    const { catalog, policy } = load(input, undefined, { cache: false });
    const opts = { format: o.format, encoding: encodingFor(out), mode: catalog.mode } as const;
    // to stdout (`/dev/stdout`): the catalog alone there, its summary on stderr; a pipe that node
    // made is a socket, which cannot be opened by name
    const toStdout = sameFile(1, out);
    if (toStdout && !fstatSync(1).isFile()) process.stdout.write(serializeCatalog(policy.rules, opts));
    else await writeCatalog(out, policy.rules, opts);
    const summary = `${input} (${catalog.format}, ${catalog.encoding}) -> ${out} (${o.format}, ${encodingFor(out)}): ${policy.rules.length} rules`;
    if (toStdout) console.error(summary);
    else console.log(summary);
  });

agentCommands(program);
catalogCommands(program);

try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof InvalidRulesError) {
    console.error(`tollgate: ${e.errors.length} invalid rule(s):`);
    for (const err of e.errors) console.error(`  ${formatRuleError(err)}`);
  } else if (e instanceof CatalogError || e instanceof UsageError) {
    console.error(`tollgate: ${e.message}`);
  } else {
    console.error(`tollgate: unexpected error: ${(e as Error).stack ?? e}`);
  }
  process.exitCode = 1;
}
