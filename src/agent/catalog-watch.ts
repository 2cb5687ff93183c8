/**
 * Following the catalog file: `onChange` once a change has settled, however the file was changed.
 *
 * The folder is watched, not the file. A watch on the file is a watch on its inode: a file replaced
 * by rename (config-management tools, `mv`, many editors, an MDM or fleet sync) is a new inode, and
 * the old watch never fires again, so the agent silently stopped following its catalog after the
 * first such update. Any event in the folder makes the file's identity (device, inode, size, times)
 * be compared with the one last seen: a catalog reached through a symlink swapped elsewhere in the
 * folder is followed too, and other files' events cost a stat().
 */
import { statSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

const SETTLE_MS = 100; // between looks at the file: a change is taken once it holds still for one

export interface CatalogWatch {
  close(): void;
}

/**
 * `loaded`: catalogIdentity() taken before the catalog was read; a change made since, before the
 * watch began (while a big catalog compiles at the agent's start), is then a change too.
 */
export function watchCatalog(path: string, onChange: () => void, onError: (e: Error) => void, loaded = catalogIdentity(path)): CatalogWatch {
  const file = resolve(path);
  let seen = loaded;
  let changing: string | null = null; // the identity at the last look, while it differs from `seen`
  let settle: NodeJS.Timeout | undefined;
  // An editor's save is several events, and the file may be half written at the first: a change is
  // taken when two looks SETTLE_MS apart find the same new identity. Not a timer restarted at each
  // event: events of other files (an audit store in the same folder) would put it off for ever.
  const look = (): void => {
    settle = undefined;
    const now = catalogIdentity(file);
    if (now === seen) changing = null;
    else if (now !== changing) {
      changing = now;
      settle = setTimeout(look, SETTLE_MS);
    } else {
      seen = now;
      changing = null;
      onChange();
    }
  };
  const watcher = watch(dirname(file), () => {
    settle ??= setTimeout(look, SETTLE_MS);
  });
  settle = setTimeout(look, 0); // a change before the watch began has no event of its own
  // without a listener an 'error' event (the folder removed, say) would end the agent
  watcher.on('error', (e) => {
    clearTimeout(settle);
    onError(new Error(`${basename(file)}'s folder can no longer be watched (${(e as NodeJS.ErrnoException).code ?? e.message})`));
  });
  return {
    close(): void {
      clearTimeout(settle);
      watcher.close();
    },
  };
}

/** What changes when the file does (its content through size and times): "none" when it is not there. */
export function catalogIdentity(file: string): string {
  try {
    const s = statSync(file, { bigint: true }); // bigint: nanosecond times, two writes in one millisecond differ
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (e) {
    return `none (${(e as NodeJS.ErrnoException).code})`;
  }
}
