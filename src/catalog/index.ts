export { CatalogError } from './errors.js';
export * from './file.js';
export { fromNuApp, fromNuAppLegacy, keyToApplication, nuAppUnsupported, toNuApp } from './nuapp.js';
