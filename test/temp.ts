/**
 * Folders for a test file's files: made fresh under the OS's temporary folder, and removed when the
 * file's test process exits (node --test runs each file in a process of its own), pass or fail.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tollgate-${name}-`));
  made.push(dir);
  return dir;
}
