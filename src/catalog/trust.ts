/**
 * Whether root may take rules from a file (the agent's catalog, the compiled-policy cache): not when
 * a user other than its owner can change it. A catalog others can write, or a folder where they can
 * replace it, lets any local program rewrite the firewall (ARCHITECTURE.md: "a local program that can
 * change the rules could switch the firewall off"), as sshd refuses keys and configs others can write
 * (StrictModes).
 * The owner's own write is allowed: a clone of this repository run with sudo is its user's.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Why the agent must refuse the catalog at `path`, or null (also when it is not there: the load says so). */
export function untrustedCatalog(path: string): string | null {
  if (process.getuid?.() !== 0) return null; // a user's own agent (monitor mode) trusts what that user can write
  let file: string;
  try {
    file = realpathSync(path);
  } catch {
    return null;
  }
  const st = statSync(file);
  const writers = others(st.mode, st.uid, st.gid);
  if (writers) {
    return `${path} can be written by ${writers} (mode ${mode(st.mode)}): they could change this firewall's rules; refused (chmod go-w ${path})`;
  }
  for (const start of new Set([dirname(resolve(path)), dirname(file)])) {
    const w = openFolder(start);
    if (w) return `${w.dir}, a folder above the catalog, can be written by ${w.by} (mode ${mode(w.mode)}): they could replace the catalog; refused (chmod go-w ${w.dir})`;
  }
  return null;
}

/**
 * The first of `start` and the folders above it up to / that users other than its owner can write
 * without the sticky bit, or null: such a user can put another file or folder in place of anything
 * below it (sshd checks the same). Checked for root only, as untrustedCatalog().
 */
export function openFolder(start: string): { dir: string; by: string; mode: number } | null {
  if (process.getuid?.() !== 0) return null;
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    const d = statSync(dir);
    const by = (d.mode & 0o1000) === 0 ? others(d.mode, d.uid, d.gid) : null; // sticky (/tmp): only owners may rename
    if (by) return { dir, by, mode: d.mode };
    if (dir === dirname(dir)) return null;
  }
}

/**
 * Who besides the owner may write, by these permissions. A group write is the owner's alone when
 * the group is root's, or the owner's private group (Debian and Ubuntu give each user one, with
 * umask 002: a clone there is group-writable), as sshd's StrictModes allows.
 */
function others(m: number, uid: number, gid: number): string | null {
  if ((m & 0o002) !== 0) return 'every user';
  if ((m & 0o020) !== 0 && gid !== 0 && !privateGroup(uid, gid)) return `group ${gid}`;
  return null;
}

/** Group `gid` is user `uid`'s primary group and has no other member (by /etc/passwd and /etc/group). */
function privateGroup(uid: number, gid: number): boolean {
  try {
    const users = readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':'));
    const owner = users.find((u) => u[2] === String(uid));
    if (!owner || owner[3] !== String(gid)) return false;
    if (users.some((u) => u[3] === String(gid) && u[2] !== String(uid))) return false; // another user's primary group too
    const group = readFileSync('/etc/group', 'utf8').split('\n').map((l) => l.split(':')).find((g) => g[2] === String(gid));
    return group !== undefined && (group[3] ?? '').split(',').every((m) => m === '' || m === owner[0]);
  } catch {
    return false; // users from elsewhere (LDAP): not known to be private
  }
}

const mode = (m: number): string => (m & 0o7777).toString(8).padStart(4, '0');
