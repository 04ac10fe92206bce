// The life of a namespace's reference count directory (/run/ctacct/net-<inode>/): taken under its
// lock, removed by the last run out, and swept when a namespace left one behind. Removal happens
// only under the lock, and a run that waited on the lock of a directory being removed opens again
// (the lock reports ESTALE), so a starting run never ends up holding a lock nobody else sees.
import { join } from 'node:path';
import { MEMBER_RE, namespaceMembers, readNames, type Host } from './detect.js';

export const LOCK = 'lock';
/** Left by a run that died (or could not remove them); they only serve live members. */
const SCRATCH = new Set(['others', 'entries-before']);
/** How often a start opens the lock again when the directory went away under it. */
const LOCK_ATTEMPTS = 20;

function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * Creates `dir` if needed and takes its lock; returns release. Retries when the directory or its
 * lock file was removed meanwhile by the last run of the namespace. Refuses a symlinked directory.
 */
export function lockNamespace(host: Host, dir: string): () => void {
  for (let attempt = 1; ; attempt++) {
    host.mkdir(dir);
    if (!host.isDir(dir)) throw coded(`${dir} is not a directory`, 'ENOTDIR');
    try {
      return host.lock(join(dir, LOCK));
    } catch (e) {
      const code = (e as { code?: string }).code;
      if ((code === 'ESTALE' || code === 'ENOENT') && attempt < LOCK_ATTEMPTS) continue;
      throw e;
    }
  }
}

/**
 * Removes `dir` when it holds nothing but its lock file. The caller holds that lock: the file is
 * unlinked first, so a run waiting on it sees ESTALE and starts over; a run that created a new lock
 * file meanwhile makes rmdir fail, and keeps the directory. Returns whether it went.
 */
export function removeIfUnused(host: Host, dir: string): boolean {
  const names = readNames(host, dir);
  if (!names || names.some((n) => n !== LOCK)) return false;
  try {
    if (names.length) host.unlink(join(dir, LOCK));
    host.rmdir(dir);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a directory holds only what no one needs once every member is gone: the lock, scratch
 * files, and records of dead members without a table. A dead member's table (kernel < 5.12) or
 * `acct-was-0` still has to be undone by the next run in that namespace, so such a directory stays.
 */
function stale(host: Host, dir: string): boolean {
  const names = readNames(host, dir);
  const members = new Map(namespaceMembers(host, dir).map((m) => [m.file, m]));
  return names !== null && names.every((n) => {
    if (n === LOCK || SCRATCH.has(n)) return true;
    if (!MEMBER_RE.test(n)) return false;
    const m = members.get(join(dir, n));
    return m !== undefined && !m.alive && m.table === null;
  });
}

/**
 * Removes the directories under `stateDir` (other than `own`) of namespaces no ctacct runs in any
 * more and that have nothing left to undo. Only `net-<digits>` directories are looked at, never
 * through a symlink; each is checked again under its lock. Returns the directories removed.
 */
export function sweepStale(host: Host, stateDir: string, own: string | null): string[] {
  const removed: string[] = [];
  for (const name of readNames(host, stateDir) ?? []) {
    const dir = join(stateDir, name);
    if (!/^net-\d+$/.test(name) || dir === own || !host.isDir(dir) || !stale(host, dir)) continue;
    let release: () => void;
    try {
      release = host.lock(join(dir, LOCK));
    } catch {
      continue; // removed meanwhile, or busy
    }
    try {
      if (!stale(host, dir)) continue;
      for (const n of readNames(host, dir) ?? []) if (n !== LOCK) host.unlink(join(dir, n));
      if (removeIfUnused(host, dir)) removed.push(dir);
    } catch {
      /* left for a later sweep */
    } finally {
      release();
    }
  }
  return removed;
}
