/**
 * How the `tollgate` command starts node (its shebang, src/cli/main.ts): environment and node flags.
 * The benchmarks start their child processes the same way, so that load times and memory are the
 * command's own.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const MAIN = join(import.meta.dirname, '../src/cli/main.js');

const shebang = readFileSync(MAIN, 'utf8').split('\n', 1)[0]!;
const m = /^#!\/usr\/bin\/env -S((?: [A-Z_]+=\S+)*) node((?: --[a-z0-9-]+=\S+)*)$/.exec(shebang);
if (!m) throw new Error(`${MAIN}: unexpected first line ${JSON.stringify(shebang)}`);

export const COMMAND_NODE_FLAGS: string[] = m[2]!.trim().split(' ').filter(Boolean);

/** The variables the shebang sets, `${NAME}` expanded from this process's environment as env -S does. */
export const COMMAND_ENV: Record<string, string> = Object.fromEntries(
  m[1]!.trim().split(' ').filter(Boolean).map((a) => {
    const at = a.indexOf('=');
    return [a.slice(0, at), a.slice(at + 1).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => process.env[name] ?? '')];
  }),
);

/** COMMAND_ENV as `env` arguments: `env NAME=value ... node ...` starts a program as the command starts. */
export const COMMAND_ENV_ARGS: string[] = Object.entries(COMMAND_ENV).map(([k, v]) => `${k}=${v}`);
