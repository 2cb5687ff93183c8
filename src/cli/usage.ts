/** Option parsers and the error for a mistake in how a command was called (one line, exit 1). */
import { fstatSync, statSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { defaultCacheDir } from '../catalog/index.js';
import { MODES, type Mode } from '../policy/index.js';

export class UsageError extends Error {}

export interface CacheFlags {
  cache: boolean;
  cacheDir?: string;
}

/** --cache-dir and --no-cache (catalog/policy-cache.ts), for the commands that load a catalog's policy. */
export function cacheOptions(c: Command): Command {
  return c
    .option('--cache-dir <dir>', `compiled-policy cache for catalogs of 1 MiB or more (default ${defaultCacheDir() ?? 'none'})`)
    .option('--no-cache', 'compile the catalog; keep no compiled image');
}

/** The cache folder the flags ask for: undefined for the default, null for none. */
export function cacheDir(o: CacheFlags): string | null | undefined {
  return o.cache ? o.cacheDir : null;
}

export function mode(v: string): Mode {
  if (!(MODES as readonly string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${MODES.join(', ')}`);
  return v as Mode;
}

export function port(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port 1-65535');
  return n;
}

export function int(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number ${min}-${max}`);
    return n;
  };
}

export function oneOf<T extends string>(...values: T[]): (v: string) => T {
  return (v) => {
    if (!(values as string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${values.join(', ')}`);
    return v as T;
  };
}

/** A time: ISO 8601, or an age such as 90s, 10m, 2h, 7d (that long ago). Returns epoch ms. */
export function when(v: string): number {
  const age = /^([0-9]+)(s|m|h|d)$/.exec(v);
  if (age) return Date.now() - Number(age[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[age[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidArgumentError('expected an ISO time (2026-11-22T10:00:00Z) or an age (90s, 10m, 2h, 7d)');
  return t;
}

/** `a` (a path, or an open file descriptor: 1 is stdout) and the path `b` are one file. */
export function sameFile(a: string | number, b: string): boolean {
  try {
    const [x, y] = [typeof a === 'number' ? fstatSync(a) : statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}
