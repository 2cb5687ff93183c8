/**
 * zod and plist, loaded on first use. Imported up front they cost every start ~200 ms and ~25 MB
 * (zod ~140 ms and ~12 MB, plist ~80 ms and ~12 MB, measured here) where the usual catalog, Tollgate
 * JSON, needs neither: json-spans.ts takes its head as it is when it is the plainest one. require()
 * keeps the readers synchronous; plist is an ES module only, loaded by require() of the file that
 * import resolves to (Node 20.19+).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Plist from 'plist';
import type * as Zod from 'zod';
import { CatalogError } from './errors.js';

const require = createRequire(import.meta.url);
let zodModule: typeof Zod | undefined;
type PlistModule = typeof Plist & { parseBinary(data: Buffer): unknown }; // its types do not declare parseBinary
let plistModule: PlistModule | undefined;

export function zod(): typeof Zod.z {
  return (zodModule ??= require('zod') as typeof Zod).z;
}

export function plist(): PlistModule {
  try {
    return (plistModule ??= require(fileURLToPath(import.meta.resolve('plist'))) as PlistModule);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') throw e;
    throw new CatalogError(`PLIST catalogs need Node.js 20.19 or later (this is ${process.version})`);
  }
}
