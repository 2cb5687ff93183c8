/**
 * The node flags the `tollgate` command runs with (its shebang, src/cli/main.ts): the benchmarks
 * start their child processes with them, so that load times and memory are the command's own.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const MAIN = join(import.meta.dirname, '../src/cli/main.js');

export const COMMAND_NODE_FLAGS: string[] = (() => {
  const shebang = readFileSync(MAIN, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node((?: --[a-z0-9-]+=\S+)*)$/.exec(shebang);
  if (!m) throw new Error(`${MAIN}: unexpected first line ${JSON.stringify(shebang)}`);
  return m[1]!.trim().split(' ').filter(Boolean);
})();
