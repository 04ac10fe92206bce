// Targeted inode → pid search for attribution: newest processes first, stopping as soon as every
// wanted socket is found. A new socket usually belongs to a process that was just started (high pid)
// or to one that already owned sockets (the caller passes those first), so the typical search
// reads a few fd tables instead of the whole of /proc (200 ms for 48k sockets on a busy host).
//
// The search itself is native/ct_owners.c (the reader thread uses the same code); the JavaScript
// below is the fallback for a tree without the addon, and follows the same rules.
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { addonIfLoadable, type NativeOwnerScan } from '../netlink/addon.js';
import { socketInode } from './parse.js';

export interface FindResult {
  owners: Map<number, number[]>;
  /** Pids whose fd table was read in full. */
  scanned: Set<number>;
  fds: number;
  /** The search went through every pid (nothing left to look at). */
  exhaustive: boolean;
}

function allPids(root: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync(root)) {
    const c = name.charCodeAt(0);
    if (c >= 49 && c <= 57 && /^\d+$/.test(name)) out.push(Number(name));
  }
  return out;
}

function inNetns(root: string, pid: number, netns: string): boolean {
  try {
    return readlinkSync(join(root, String(pid), 'ns', 'net')) === netns;
  } catch {
    return true; // unreadable: do not rule it out
  }
}

/** "net:[inode]" of this process's network namespace, or null. */
export function ownNetns(root = '/proc'): string | null {
  try {
    return readlinkSync(join(root, 'self', 'ns', 'net'));
  } catch {
    return null;
  }
}

/** N of "net:[N]", 0 (any namespace) for null or anything else. */
export function netnsInode(netns: string | null): number {
  const m = netns ? /^net:\[(\d+)\]$/.exec(netns) : null;
  return m ? Number(m[1]) : 0;
}

/** The native result as a FindResult: holder lists ascending, each pid once (dup'ed fds). */
export function fromNative(r: NativeOwnerScan): FindResult {
  const owners = new Map<number, number[]>();
  const p = r.pairs;
  for (let k = 0; k < p.length; k += 2) {
    const inode = p[k]!;
    const pid = p[k + 1]!;
    const list = owners.get(inode);
    if (!list) owners.set(inode, [pid]);
    else if (!list.includes(pid)) {
      list.push(pid);
      list.sort((a, b) => a - b);
    }
  }
  return { owners, scanned: new Set(r.scanned), fds: r.fds, exhaustive: r.exhaustive };
}

/**
 * Reads fd tables of `pids` (default: every pid, highest first, in network namespace `netns`) until
 * all of `want` are found. With an empty `want` it reads everything (a full refresh of the owner
 * cache). Every socket met on the way is returned, so the caller's cache fills as a side effect.
 * Rules: native/ct_owners.h.
 */
export function findSocketOwners(
  root: string,
  want: ReadonlySet<number>,
  pids?: Iterable<number>,
  budgetMs = Infinity,
  netns: string | null = null,
): FindResult {
  const addon = addonIfLoadable();
  if (!addon || typeof addon.scanOwners !== 'function') return findSocketOwnersJs(root, want, pids, budgetMs, netns);
  return fromNative(addon.scanOwners(root, pids ? Uint32Array.from(pids) : null, Uint32Array.from(want), budgetMs, netnsInode(netns)));
}

/** findSocketOwners in JavaScript (no addon; and the benchmark's reference). */
export function findSocketOwnersJs(
  root: string,
  want: ReadonlySet<number>,
  pids?: Iterable<number>,
  budgetMs = Infinity,
  netns: string | null = null,
): FindResult {
  const deadline = performance.now() + budgetMs;
  const order = pids ? [...pids] : allPids(root).sort((a, b) => b - a);
  const owners = new Map<number, number[]>();
  const scanned = new Set<number>();
  let left = want.size;
  let fds = 0;
  let i = 0;
  for (; i < order.length; i++) {
    const pid = order[i]!;
    // A search of all processes skips other network namespaces' (containers, test hosts): their
    // sockets are not in our conntrack table, and their fd tables can be huge.
    if (netns && !pids && !inNetns(root, pid, netns)) {
      if (performance.now() > deadline) break;
      continue;
    }
    const dir = join(root, String(pid), 'fd');
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      // Gone, or not ours to read: neither is worth a message. The clock still counts.
      if (performance.now() > deadline) break;
      continue;
    }
    for (const fd of names) {
      let target: string;
      try {
        target = readlinkSync(join(dir, fd));
      } catch {
        continue;
      }
      fds++;
      const inode = socketInode(target);
      if (inode === null || inode > 0xffffffff) continue; // socket inodes are 32-bit (get_next_ino)
      const list = owners.get(inode);
      if (!list) {
        owners.set(inode, [pid]);
        if (want.has(inode)) left--;
      } else if (!list.includes(pid)) {
        list.push(pid);
        list.sort((a, b) => a - b);
      }
    }
    scanned.add(pid);
    // Keep reading the current pid's table (done) but stop before the next one.
    if (want.size > 0 && left <= 0) break;
    if (performance.now() > deadline) break;
  }
  // The pid the search stopped at was read: stopping at the last one still read them all.
  return { owners, scanned, fds, exhaustive: i + 1 >= order.length };
}
