/**
 * Which code files an interpreter process runs, from its command line: the script, and files it
 * loads before it (node --require/--import, java -javaagent:). A rule naming a script (or a prefix of
 * it, `*\/node_modules`) is more specific than one naming the interpreter, so this must never name a
 * file the process does not run: inline code (`node -e`, `python3 -Ic`), a module or class name
 * (`python3 -m x`, `java Main`) and an option's value are no script, and a path is taken as the
 * process would open it (against its working directory, `..` and `//` resolved, symlinks followed).
 *
 * Written by hand: no library parses the command lines of these interpreters, and each has its own
 * options that take a value. An option not listed here that takes a separate value would make that
 * value look like the script: the lists cover each interpreter's documented ones.
 */
import { posix } from 'node:path';

export interface Scripts {
  /** The script the interpreter runs (absolute), if it runs one from a file. */
  script?: string;
  /** Files it loads before the script: judged with it (agent: the strictest decides). */
  preloads: string[];
}

interface Spec {
  /** Options (long, or a whole short one) meaning inline code or a REPL: no script. */
  inline: ReadonlySet<string>;
  /** Short letters meaning inline code, also inside a cluster (`-Ic`). */
  inlineLetters: string;
  /** Short letters naming a module, not a file (`python3 -m`): no script. */
  moduleLetters: string;
  /** Options taking the next argument (or `=value`) as their value. */
  valued: ReadonlySet<string>;
  /** Short letters taking a value: the rest of their cluster, else the next argument. */
  valuedLetters: string;
  /** Options whose value is code loaded before the script. */
  preload: ReadonlySet<string>;
  /** Short letters whose value is code loaded before the script (ruby -r): only when it is a path. */
  preloadLetters: string;
  /** Whether short options may be clustered (`-Bc`). */
  clusters: boolean;
  /** First arguments that are subcommands: `run` is skipped, any other means no script. */
  subcommands?: { run: ReadonlySet<string> };
}

const set = (...xs: string[]): ReadonlySet<string> => new Set(xs);
const NODE_PRELOAD = set('-r', '--require', '--import', '--loader', '--experimental-loader');
const NODE: Spec = {
  inline: set('-', '-e', '--eval', '-p', '--print', '-pe', '-i', '--interactive', '-c', '--check', '-v', '--version', '-h', '--help'),
  inlineLetters: '',
  moduleLetters: '',
  valued: set(...NODE_PRELOAD, '-C', '--conditions', '--input-type', '--title', '--env-file', '--inspect-port', '--debug-port',
    '--openssl-config', '--icu-data-dir', '--redirect-warnings', '--diagnostic-dir', '--report-dir', '--report-directory',
    '--report-filename', '--report-signal', '--heapsnapshot-signal', '--heapsnapshot-near-heap-limit', '--unhandled-rejections',
    '--dns-result-order', '--watch-path', '--tls-keylog', '--tls-cipher-list', '--secure-heap', '--secure-heap-min',
    '--disable-warning', '--experimental-policy', '--policy-integrity', '--cpu-prof-dir', '--cpu-prof-name', '--heap-prof-dir',
    '--heap-prof-name', '--trace-event-categories', '--trace-event-file-pattern', '--max-http-header-size', '--stack-trace-limit'),
  valuedLetters: '',
  preload: NODE_PRELOAD,
  preloadLetters: '',
  clusters: false,
};
const BUN_DENO: Spec = { ...NODE, subcommands: { run: set('run') } };
const PYTHON: Spec = {
  inline: set('-', '--help', '--version'),
  inlineLetters: 'c',
  moduleLetters: 'm',
  valued: set('--check-hash-based-pycs'),
  valuedLetters: 'WX',
  preload: set(),
  preloadLetters: '',
  clusters: true,
};
const PERL: Spec = { inline: set('-'), inlineLetters: 'eE', moduleLetters: '', valued: set(), valuedLetters: 'IMm', preload: set(), preloadLetters: '', clusters: true }; // -Mfeature=say: a module's name, not -e
const RUBY: Spec = { inline: set('-', '--version', '--help'), inlineLetters: 'e', moduleLetters: '', valued: set(), valuedLetters: 'ICE', preload: set(), preloadLetters: 'r', clusters: true };
const PHP: Spec = { inline: set('-a', '--interactive'), inlineLetters: 'rBRFE', moduleLetters: '', valued: set('-c', '-d', '-z', '--php-ini', '--define', '--zend-extension'), valuedLetters: '', preload: set(), preloadLetters: '', clusters: false };
const SHELL: Spec = { inline: set('-', '--version', '--help'), inlineLetters: 'cs', moduleLetters: '', valued: set('--rcfile', '--init-file'), valuedLetters: 'oO', preload: set(), preloadLetters: '', clusters: true };

function specOf(name: string): Spec | 'java' | undefined {
  if (name === 'node' || name === 'nodejs') return NODE;
  if (name === 'bun' || name === 'deno') return BUN_DENO;
  if (/^python[0-9.]*$/.test(name)) return PYTHON;
  if (name === 'perl') return PERL;
  if (name === 'ruby') return RUBY;
  if (/^php[0-9.]*$/.test(name)) return PHP;
  if (name === 'java') return 'java';
  if (/^(bash|sh|dash|zsh)$/.test(name)) return SHELL;
  return undefined;
}

/**
 * The code files of a process running `exe` with `cmdline` in `cwd`; undefined for a program that is
 * no interpreter. `real` takes an absolute path to the file it names (symlinks followed); `environ`
 * gives the process's environment, asked for only by interpreters that take options from it.
 */
export function scriptsOf(exe: string, cmdline: readonly string[], cwd: string, real: (p: string) => string = (p) => p, environ: () => ReadonlyMap<string, string> = () => new Map()): Scripts | undefined {
  const spec = specOf(exe.slice(exe.lastIndexOf('/') + 1));
  if (!spec) return undefined;
  const fileIn = (dir: string, p: string): string => real(posix.resolve(dir, p.startsWith('file://') ? decodeURIComponent(p.slice(7)) : p));
  const file = (p: string): string => fileIn(cwd, p);
  const found = scriptsOfLine(spec, cmdline, cwd, fileIn);
  // options the interpreter takes from its environment load code as their command-line forms do
  const env = spec === 'java' || spec === NODE || spec === BUN_DENO ? environ() : undefined;
  const fromEnv = !env ? [] : spec === 'java'
    ? java(['java', ...['JDK_JAVA_OPTIONS', 'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS'].flatMap((k) => words(env.get(k)))], file).preloads
    : scriptsOfLine(NODE, ['node', ...words(env.get('NODE_OPTIONS')), '-e', ''], cwd, fileIn).preloads;
  return fromEnv.length ? { ...found, preloads: [...fromEnv, ...found.preloads] } : found;
}

/** An option string as the interpreter splits it: on blanks, with "double" or 'single' quotes kept together. */
function words(s: string | undefined): string[] {
  return s ? [...s.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!) : [];
}

/** scriptsOf() of the command line alone; `fileIn` resolves a path against a directory (ruby -C changes it). */
function scriptsOfLine(spec: Spec | 'java', cmdline: readonly string[], cwd: string, fileIn: (dir: string, p: string) => string): Scripts {
  const file = (p: string): string => fileIn(cwd, p);
  if (spec === 'java') return java(cmdline, file);
  if (spec === PHP) return php(cmdline, file);
  const preloads: string[] = [];
  const none = (): Scripts => ({ preloads });
  let subcommand = spec.subcommands !== undefined;
  for (let i = 1; i < cmdline.length; i++) {
    const a = cmdline[i]!;
    if (a === '--') return fileAt(cmdline, i + 1, file, preloads);
    if (spec.inline.has(a)) return none();
    if (a.startsWith('--') || (!spec.clusters && a.startsWith('-') && a.length > 1)) {
      const eq = a.indexOf('=');
      const opt = eq < 0 ? a : a.slice(0, eq);
      if (spec.inline.has(opt)) return none();
      if (!spec.valued.has(opt)) continue;
      const value = eq < 0 ? cmdline[++i] : a.slice(eq + 1);
      if (value !== undefined && spec.preload.has(opt)) preloads.push(nodeModule(value, file));
      continue;
    }
    if ((a.startsWith('-') || (spec === SHELL && a.startsWith('+'))) && a.length > 1) {
      // a cluster of short options: the first that takes a value takes the rest, or the next argument
      for (let k = 1; k < a.length; k++) {
        const c = a[k]!;
        if (spec.inlineLetters.includes(c) || spec.moduleLetters.includes(c)) return none();
        if (spec.valuedLetters.includes(c) || spec.preloadLetters.includes(c)) {
          const value = k + 1 < a.length ? a.slice(k + 1) : cmdline[++i];
          if (value !== undefined && spec.preloadLetters.includes(c) && /^\.{0,2}\//.test(value)) preloads.push(file(value));
          if (spec === RUBY && c === 'C' && value !== undefined) cwd = posix.resolve(cwd, value); // ruby -C dir: its script is found there
          break;
        }
      }
      continue;
    }
    if (subcommand) {
      subcommand = false;
      if (spec.subcommands!.run.has(a)) continue;
      if (!a.includes('/') && !a.includes('.')) return none(); // another subcommand (deno eval, bun install)
    }
    return { script: file(a), preloads };
  }
  return none();
}

/** The script named by cmdline[j] (after `--`, `-jar`, `-f`), or none when the line ends first. */
function fileAt(cmdline: readonly string[], j: number, file: (p: string) => string, preloads: string[]): Scripts {
  return j < cmdline.length ? { script: file(cmdline[j]!), preloads } : { preloads };
}

/** A node --require/--import value: a path, or a package found first in the working directory's node_modules. */
function nodeModule(v: string, file: (p: string) => string): string {
  return /^(\.{0,2}\/|file:\/\/)/.test(v) ? file(v) : file(`node_modules/${v}`);
}

/** java: a script only with -jar; agents (-javaagent:X.jar) run before it. A main class names no file. */
function java(cmdline: readonly string[], file: (p: string) => string): Scripts {
  const preloads: string[] = [];
  const VALUED = set('-cp', '-classpath', '--class-path', '-p', '--module-path', '--upgrade-module-path', '--add-modules',
    '--limit-modules', '--add-reads', '--add-exports', '--add-opens', '--enable-native-access', '-d', '--describe-module');
  for (let i = 1; i < cmdline.length; i++) {
    const a = cmdline[i]!;
    if (a.startsWith('-javaagent:')) preloads.push(file(a.slice(11).split('=')[0]!));
    else if (a === '-jar') return fileAt(cmdline, i + 1, file, preloads);
    else if (VALUED.has(a)) i++;
    else if (!a.startsWith('-')) return { preloads }; // a main class (or a source file run directly: not judged as a script)
  }
  return { preloads };
}

/** php: `-f file` or the first argument; -r/-B/-R/-F/-E are inline code, -a the REPL. */
function php(cmdline: readonly string[], file: (p: string) => string): Scripts {
  for (let i = 1; i < cmdline.length; i++) {
    const a = cmdline[i]!;
    if (a === '-f' || a === '--') return fileAt(cmdline, i + 1, file, []);
    if (PHP.inline.has(a) || (a.length > 1 && a[0] === '-' && PHP.inlineLetters.includes(a[1]!))) return { preloads: [] };
    if (PHP.valued.has(a)) i++;
    else if (a.startsWith('-')) continue;
    else return { script: file(a), preloads: [] };
  }
  return { preloads: [] };
}
