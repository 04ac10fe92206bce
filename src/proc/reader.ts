// Reads the socket tables and socket owners from a proc tree (default /proc; tests pass a fixture dir).
// Processes and fds vanish while we read: those are counted, never reported one by one.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { addonIfLoadable } from '../netlink/addon.js';
import {
  parseCmdline,
  parseComm,
  parsePasswd,
  parseSocketTable,
  parseStatusUid,
  socketInode,
  type SocketEntry,
  type SocketProto,
} from './parse.js';

export interface SocketTableOptions {
  tcp?: boolean; // default true
  udp?: boolean; // default false
  families?: ReadonlyArray<4 | 6>; // default [4, 6]
}

export interface SocketSnapshot {
  entries: SocketEntry[];
  malformed: number;
  /** Tables that do not exist (e.g. tcp6 with IPv6 disabled): not an error. */
  missing: string[];
}

/** Reads /proc/net/{tcp,tcp6,udp,udp6} (of the reader's network namespace). Needs no privilege. */
export function readSocketTable(root = '/proc', opts: SocketTableOptions = {}): SocketSnapshot {
  const protos: SocketProto[] = [];
  if (opts.tcp ?? true) protos.push('tcp');
  if (opts.udp ?? false) protos.push('udp');
  const families = opts.families ?? [4, 6];
  const out: SocketSnapshot = { entries: [], malformed: 0, missing: [] };
  for (const proto of protos) {
    for (const family of families) {
      const name = family === 4 ? proto : `${proto}6`;
      let text: string;
      try {
        text = readFileSync(join(root, 'net', name), 'latin1');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          out.missing.push(name);
          continue;
        }
        throw e;
      }
      const t = parseSocketTable(text, proto, family);
      for (const e of t.entries) out.entries.push(e);
      out.malformed += t.malformed;
    }
  }
  return out;
}

export interface OwnerScanOptions {
  /** Scan only these pids (candidates, e.g. same uid or known owners); default every pid in root. */
  pids?: Iterable<number>;
  /** Stop after this many fd links (bounds the cost on hosts with huge fd counts); default no limit. */
  maxFds?: number;
}

export interface OwnerScanStats {
  pids: number;
  fds: number;
  sockets: number;
  /** Processes or fds that disappeared mid-scan (ENOENT, ESRCH). */
  vanished: number;
  /** Processes whose fds we may not read (EACCES, EPERM): other users' when not root. */
  denied: number;
  truncated: boolean;
}

export interface OwnerScan {
  /** Socket inode → owning pids, ascending (a socket shared after fork has several; take the first). */
  owners: Map<number, number[]>;
  /** Pids whose fd table was read in full. */
  scanned: Set<number>;
  stats: OwnerScanStats;
}

const GONE = new Set(['ENOENT', 'ESRCH']);
const DENIED = new Set(['EACCES', 'EPERM']);

function listPids(root: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(root)) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) {
      const n = Number(name);
      if (Number.isInteger(n)) pids.push(n);
    }
  }
  return pids;
}

/**
 * Maps socket inodes to pids by reading every /proc/PID/fd/* link. Synchronous on purpose: on
 * 5k fds it measured faster than async fs with bounded concurrency (see docs/benchmarks-states.md),
 * because each readlink of a proc link is a cheap syscall and the thread-pool round trip dominates.
 */
export function scanSocketOwners(root = '/proc', opts: OwnerScanOptions = {}): OwnerScan {
  const pids = opts.pids ? [...new Set(opts.pids)] : listPids(root);
  pids.sort((a, b) => a - b); // ascending, so each owners list comes out sorted
  const owners = new Map<number, number[]>();
  const scanned = new Set<number>();
  const stats: OwnerScanStats = { pids: 0, fds: 0, sockets: 0, vanished: 0, denied: 0, truncated: false };
  const maxFds = opts.maxFds ?? Infinity;
  for (const pid of pids) {
    if (stats.fds >= maxFds) {
      stats.truncated = true;
      break;
    }
    const dir = join(root, String(pid), 'fd');
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (GONE.has(code) || code === 'ENOTDIR') stats.vanished++;
      else if (DENIED.has(code)) stats.denied++;
      else throw e;
      continue;
    }
    stats.pids++;
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(join(dir, fd));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        if (GONE.has(code) || code === 'EINVAL') stats.vanished++;
        else if (DENIED.has(code)) stats.denied++;
        else throw e;
        continue;
      }
      stats.fds++;
      const inode = socketInode(target);
      if (inode === null) continue;
      stats.sockets++;
      const list = owners.get(inode);
      if (!list) owners.set(inode, [pid]);
      else if (list[list.length - 1] !== pid) list.push(pid); // dup'ed fds: one pid once
    }
    scanned.add(pid);
  }
  return { owners, scanned, stats };
}

/**
 * The same scan with async fs and bounded concurrency. Kept for the benchmark that justifies the
 * synchronous default; use it only where blocking the event loop for the scan is unacceptable.
 */
export async function scanSocketOwnersAsync(root = '/proc', opts: OwnerScanOptions & { concurrency?: number } = {}): Promise<OwnerScan> {
  const pids = opts.pids ? [...new Set(opts.pids)] : listPids(root);
  pids.sort((a, b) => a - b);
  const perPid = new Map<number, number[]>();
  const scanned = new Set<number>();
  const stats: OwnerScanStats = { pids: 0, fds: 0, sockets: 0, vanished: 0, denied: 0, truncated: false };
  const limit = opts.concurrency ?? 64;
  const count = (e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (GONE.has(code) || code === 'EINVAL' || code === 'ENOTDIR') stats.vanished++;
    else if (DENIED.has(code)) stats.denied++;
    else throw e;
  };
  let next = 0;
  const worker = async () => {
    while (next < pids.length) {
      const pid = pids[next++]!;
      const dir = join(root, String(pid), 'fd');
      let fds: string[];
      try {
        fds = await readdir(dir);
      } catch (e) {
        count(e);
        continue;
      }
      stats.pids++;
      const inodes: number[] = [];
      const links = await Promise.allSettled(fds.map((fd) => readlink(join(dir, fd))));
      for (const r of links) {
        if (r.status === 'rejected') {
          count(r.reason);
          continue;
        }
        stats.fds++;
        const inode = socketInode(r.value);
        if (inode !== null) inodes.push(inode);
      }
      stats.sockets += inodes.length;
      perPid.set(pid, inodes);
      scanned.add(pid);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, pids.length) }, worker));
  const owners = new Map<number, number[]>();
  for (const pid of pids) {
    for (const inode of perPid.get(pid) ?? []) {
      const list = owners.get(inode);
      if (!list) owners.set(inode, [pid]);
      else if (list[list.length - 1] !== pid) list.push(pid);
    }
  }
  return { owners, scanned, stats };
}

export interface ProcessInfo {
  pid: number;
  comm: string;
  /** Arguments joined by spaces ('' for kernel threads); `argv` keeps them apart. */
  cmdline: string;
  argv: string[];
  /** Real uid. */
  uid: number;
  /** Start time in clock ticks after boot (/proc/PID/stat field 22): with pid, the identity. */
  startTime: number | null;
}

/** Field 22 of a /proc/PID/stat text (start time in clock ticks); comm may hold spaces and ')'. */
export function statStartTime(stat: string): number | null {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const v = Number(rest[19]);
  return rest.length > 19 && Number.isFinite(v) ? v : null;
}

/** Field 4 of a /proc/PID/stat text (parent pid). */
export function statParent(stat: string): number | null {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const v = Number(rest[1]);
  return rest.length > 1 && Number.isInteger(v) ? v : null;
}

/** Start time of one process (see ProcessInfo.startTime), or null if it is gone. */
export function readStartTime(root: string, pid: number): number | null {
  try {
    return statStartTime(readFileSync(join(root, String(pid), 'stat'), 'latin1'));
  } catch {
    return null;
  }
}

/**
 * Parent and children of a process: the parent from /proc/PID/stat (null when unreadable), the
 * children from /proc/PID/task/TID/children of EVERY thread (a child forked by a worker thread is
 * listed under that thread only). Native (native/ct_owners.c, the reader thread's code) when the
 * addon loads.
 */
export function readFamily(root: string, pid: number): { ppid: number | null; children: number[] } {
  const addon = addonIfLoadable();
  if (!addon || typeof addon.processFamily !== 'function') return readFamilyJs(root, pid);
  return addon.processFamily(root, pid);
}

/** readFamily in JavaScript (no addon), same rules. */
export function readFamilyJs(root: string, pid: number): { ppid: number | null; children: number[] } {
  let ppid: number | null = null;
  const children: number[] = [];
  try {
    ppid = statParent(readFileSync(join(root, String(pid), 'stat'), 'latin1'));
  } catch {
    /* gone, or no stat: the children may still be listed */
  }
  let tids: string[] = [];
  try {
    tids = readdirSync(join(root, String(pid), 'task'));
  } catch {
    /* gone */
  }
  for (const tid of tids) {
    try {
      for (const c of readFileSync(join(root, String(pid), 'task', tid, 'children'), 'latin1').split(/\s+/)) {
        const n = Number(c);
        if (c && Number.isInteger(n) && n > 0) children.push(n);
      }
    } catch {
      /* thread gone, or a kernel without CONFIG_PROC_CHILDREN: parents still count */
    }
  }
  return { ppid, children };
}

/** comm, cmdline and uid of one process; null if it is gone (or unreadable). */
export function readProcessInfo(root: string, pid: number): ProcessInfo | null {
  const base = join(root, String(pid));
  try {
    const status = readFileSync(join(base, 'status'), 'utf8');
    const uid = parseStatusUid(status);
    if (uid === null) return null;
    const comm = parseComm(readFileSync(join(base, 'comm'), 'utf8'));
    let argv: string[] = [];
    try {
      argv = parseCmdline(readFileSync(join(base, 'cmdline'), 'utf8'));
    } catch (e) {
      // cmdline of another user's process can be unreadable under hidepid; comm still names it.
      if (!DENIED.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    }
    let startTime: number | null = null;
    try {
      startTime = statStartTime(readFileSync(join(base, 'stat'), 'latin1'));
    } catch {
      /* raced with exit: the facts above still name it */
    }
    return { pid, comm, cmdline: argv.join(' '), argv, uid, startTime };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (GONE.has(code) || DENIED.has(code) || code === 'ENOTDIR') return null;
    throw e;
  }
}

/** uid → user name from a passwd file, read once and cached; unknown uids come back as digits. */
export function createUserNames(passwdPath = '/etc/passwd'): (uid: number) => string {
  let users: Map<number, string> | null = null;
  return (uid) => {
    if (users === null) {
      try {
        users = parsePasswd(readFileSync(passwdPath, 'utf8'));
      } catch {
        users = new Map(); // no passwd (containers): numeric uids are still correct
      }
    }
    return users.get(uid) ?? String(uid);
  };
}

/** The process-wide cached lookup over /etc/passwd. */
export const userName: (uid: number) => string = createUserNames();
