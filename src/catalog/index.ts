export { CatalogError } from './errors.js';
export * from './file.js';
export { readCatalogOffThread } from './offthread.js';
export { CatalogRules, readCatalogToCompile, type CompilableCatalog } from './fast-reader.js';
export { Spans, scanCatalog, type ScannedCatalog } from './json-spans.js';
export { keyToApplication, nuAppUnsupported, toNuApp } from './nuapp.js';
export { catalogStats, diffCatalogs, type AppDiff, type CatalogStats } from './review.js';
export { CACHE_MIN_BYTES, ImageJob, compilerFingerprint, defaultCacheDir, hashFile, loadPolicy, reloadPolicy, type CacheOptions, type LoadedPolicy } from './policy-cache.js';
export { openFolder, untrustedCatalog } from './trust.js';
