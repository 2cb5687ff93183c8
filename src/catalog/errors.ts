/** A catalog file that cannot be read: missing, not JSON/PLIST, or not a catalog. The message says which. */
export class CatalogError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CatalogError';
  }
}
