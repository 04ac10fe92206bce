// Socket → process attribution: exact socket → listening/bound socket on the local port (a
// provisional owner for a connection not accepted yet) → unknown; inode → holders from a cache of
// /proc/PID/fd links, rescanned only on a miss (candidate pids first, a full scan rate-limited).
// One rule for a socket held by several processes: the lowest pid, marked shared. A process is
// (pid, start time): a reused pid is another process. All I/O comes in through OwnerDeps.
import type { FlowEnd } from './flow.js';
import type { ContainerRef } from './model.js';

/** Kernel TCP socket states used here. */
export const SK_LISTEN = 10;
/** How often a listener with a sole holder has its family read again (it may fork workers later). */
const SOLE_RECHECK_MS = 5000;

export interface SockInfo {
  inode: number;
  uid: number;
  state: number;
  /** Owner found by the addon's reader thread as the event was read (0 or absent: not found). */
  pid?: number;
}

export interface ProcessFacts {
  pid: number;
  comm: string;
  cmdline: string;
  uid: number;
  /** Where it lives: network namespace inode, container, systemd unit (absent: not read). */
  netns?: number | null;
  container?: ContainerRef | null;
  unit?: string | null;
  /** Start time (clock ticks after boot, /proc/PID/stat field 22); with pid, the identity. */
  startTime?: number | null;
}

export interface OwnerScanResult {
  owners: Map<number, number[]>;
  scanned: Set<number>;
  /** Every pid was read (so `scanned` lists every live process). */
  exhaustive: boolean;
}

export interface OwnerDeps {
  /** sock_diag lookup of the socket whose local end is end.local… and remote end end.remote…
   *  (the kernel falls back to a listener / unconnected UDP socket by itself). */
  lookupSocket(family: 4 | 6, proto: number, end: FlowEnd): SockInfo | null;
  /** inode → pids from /proc/PID/fd: over `pids`, or every pid newest first, stopping once all
   *  of `want` are found (an empty `want` reads everything) or after `budgetMs`. */
  scanOwners(want: ReadonlySet<number>, pids?: Iterable<number>, budgetMs?: number): OwnerScanResult;
  processInfo(pid: number): ProcessFacts | null;
  /** Start time of a process (see ProcessFacts.startTime), null if it is gone. */
  startTime?(pid: number): number | null;
  /** Parent and children of a process (the family that shares sockets across fork). */
  family?(pid: number): { ppid: number | null; children: number[] };
  /** How many TCP listening sockets are bound to this local port (an SO_REUSEPORT group has
   *  several, each with a holder of its own); at most a second old. */
  listenersOn?(family: 4 | 6, port: number): number;
  userName(uid: number): string;
  /** Monotonic ms. */
  now(): number;
  /** The process that last closed the TCP socket of this exact end (the kernel's close tracker),
   *  with how long ago (ms) and its start time (ticks, as ProcessFacts.startTime; null unknown). */
  closedBy?(family: 4 | 6, end: FlowEnd): ClosedBy | null;
  /** Inode of the network namespace these lookups are in (a closer in another one is not ours). */
  netns?: number | null;
}

export interface ClosedBy {
  pid: number;
  uid: number;
  comm: string;
  startTime: number | null;
  agoMs: number;
}

export interface Owner {
  /** Lowest pid holding the socket, or null when the socket is known but its process is not. */
  pid: number | null;
  shared: boolean;
  uid: number | null;
  user: string | null;
  comm: string | null;
  cmdline: string | null;
  inode: number;
  netns?: number | null;
  container?: ContainerRef | null;
  unit?: string | null;
  /** Start time of the process (see ProcessFacts.startTime), null when unknown. */
  startTime: number | null;
}

export interface OwnerStats {
  lookups: number;
  fullScans: number;
  candidateScans: number;
  scanMs: number;
  cacheSize: number;
  misses: number;
  /** Owners named by the close tracker (connections whose socket was gone when looked up). */
  closers: number;
}

export interface OwnerOptions {
  /** Share of wall time that searches of all of /proc may take (a token bucket of that rate). */
  fullScanMaxShare?: number;
  /** The most one search may take (ms): newest processes first, so a cut search still covers
   *  where new sockets are most likely to be. */
  searchBudgetMs?: number;
  /** Owner-cache bound (inodes). */
  maxCache?: number;
  /** How many recent owner pids are scanned first on a miss. */
  candidates?: number;
}

const ZERO4 = '0.0.0.0';
const ZERO6 = '::';

export class OwnerResolver {
  private readonly inodeOwners = new Map<number, number[]>();
  /** Listener inodes whose holders were searched across the family (searchFamily), and whether
   *  several processes may accept on it (several holders, or a holder with children). */
  private readonly familyDone = new Map<number, boolean>();
  /** When each listener's family was read (monotonic ms). */
  private readonly familyRead = new Map<number, number>();

  /** Whether a listener's connections may be accepted by another process than its one holder:
   *  several holders (pre-fork), or a holder with children (fork-after-accept). Unknown: true. */
  multiProcess(listenerInode: number): boolean {
    return this.familyDone.get(listenerInode) ?? true;
  }
  /** A listener known to be held by exactly one process without children (its family was read),
   *  alone on its port: that process accepts every connection (fd passing aside). */
  soleHolder(listenerInode: number, family: 4 | 6, port: number): boolean {
    return this.familyDone.get(listenerInode) === false && (this.inodeOwners.get(listenerInode)?.length ?? 0) === 1 && !this.listenerGroup(family, port);
  }
  /** TCP listeners met as the provisional owner of a connection, with their family and port. */
  private readonly listeners = new Map<number, { family: 4 | 6; port: number }>();
  noteListener(inode: number, family: 4 | 6, port: number): void {
    if (this.listeners.has(inode)) return;
    if (this.listeners.size >= 256) this.listeners.delete(this.listeners.keys().next().value!);
    this.listeners.set(inode, { family, port });
  }
  /** The listeners met that have a sole holder (soleHolder), as [inode, pid, inode, pid, …]: the
   *  addon gives their accepted sockets that process without searching fd tables. Recomputed as
   *  the facts behind soleHolder change (a fork, a second listener on the port). */
  soleListeners(): number[] {
    const out: number[] = [];
    const now = this.deps.now();
    for (const [inode, l] of this.listeners) {
      // A sole holder may fork workers later: its family is read again every few seconds.
      const pids = this.inodeOwners.get(inode);
      if (pids && this.familyDone.get(inode) === false && now - (this.familyRead.get(inode) ?? -Infinity) >= SOLE_RECHECK_MS) this.readFamily(inode, pids);
      if (!this.soleHolder(inode, l.family, l.port)) continue;
      out.push(inode, this.inodeOwners.get(inode)![0]!);
      if (out.length >= 128) break;
    }
    return out;
  }
  /** Whether the port has several listening sockets (an SO_REUSEPORT group): the kernel's
   *  listener lookup then names one member, not the one that will accept. */
  listenerGroup(family: 4 | 6, port: number): boolean {
    return (this.deps.listenersOn?.(family, port) ?? 1) > 1;
  }
  /** When each holder's family was last read for learned sockets (monotonic ms). */
  private readonly familyAt = new Map<number, number>();
  private readonly procs = new Map<number, { facts: ProcessFacts | null; checked: number }>();
  /** Pids that owned sockets recently, most recent last. */
  private readonly recent = new Map<number, true>();
  /** Milliseconds of full search still allowed (refills at fullScanMaxShare of elapsed time). */
  private tokens: number;
  private tokensAt: number | null = null;
  readonly stats: OwnerStats = { lookups: 0, fullScans: 0, candidateScans: 0, scanMs: 0, cacheSize: 0, misses: 0, closers: 0 };
  private readonly opt: Required<OwnerOptions>;

  constructor(
    private readonly deps: OwnerDeps,
    opts: OwnerOptions = {},
  ) {
    this.opt = {
      fullScanMaxShare: opts.fullScanMaxShare ?? 0.05,
      searchBudgetMs: opts.searchBudgetMs ?? 50,
      maxCache: opts.maxCache ?? 200_000,
      candidates: opts.candidates ?? 16,
    };
    this.tokens = this.opt.searchBudgetMs * 4;
  }

  /**
   * The socket behind one local end. `hit` is what the addon found at NEW time (preferred: a
   * short-lived socket may be gone now). An orig (client) end never takes a listener; a reply
   * (server) end falls back to the listener / bound socket on its local port.
   */
  socketFor(family: 4 | 6, proto: number, end: FlowEnd, hit: SockInfo | null): SockInfo | null {
    let s = hit && hit.inode !== 0 ? hit : null;
    if (!s && !hit) {
      this.stats.lookups++;
      s = this.deps.lookupSocket(family, proto, end);
      if (s && s.inode === 0) s = null;
    }
    if (s && end.side === 'orig' && proto === 6 && s.state === SK_LISTEN) s = null;
    // Accepted sockets have no inode until accept(), and TIME_WAIT ones none after close.
    if (!s) s = this.serviceSocket(family, proto, end);
    return s;
  }

  /**
   * The listener (TCP) or bound socket (UDP) on a reply (server) end's local port: it owns the
   * service when the connection's own socket is not (or no longer) mapped to a process.
   */
  serviceSocket(family: 4 | 6, proto: number, end: FlowEnd): SockInfo | null {
    if (end.side !== 'reply' || end.localPort === null) return null;
    this.stats.lookups++;
    const wild: FlowEnd = { ...end, remoteAddr: family === 4 ? ZERO4 : ZERO6, remotePort: 0 };
    const l = this.deps.lookupSocket(family, proto, wild);
    return l && l.inode !== 0 && (proto !== 6 || l.state === SK_LISTEN) ? l : null;
  }

  /** Pids that owned sockets most recently, newest first: where a new socket is looked for first. */
  recentPids(max = 64): number[] {
    return [...this.recent.keys()].slice(-max).reverse();
  }

  /** Owners the addon found while the socket still existed (its fd may be closed by now). A
   *  listener's holders are searched here instead (they are few, and all of them are needed). */
  learn(socks: Iterable<SockInfo | null>): void {
    const learned: number[] = [];
    for (const s of socks) {
      if (!s || !s.pid || !s.inode || this.inodeOwners.has(s.inode)) continue;
      this.remember(s.inode, [s.pid]);
      // A listener's other holders are completed by ownerOf (searchFamily, once per listener); the
      // holder the addon met is kept now, so a server that exits (or a search out of budget)
      // still leaves its connections with their service.
      if (s.state !== SK_LISTEN) learned.push(s.inode);
    }
    // The addon met one holder; its family may hold the socket too (fork). Checked at most once
    // a second per holder: this is the per-connection path.
    const now = this.deps.now();
    const check = learned.filter((i) => {
      const p = this.inodeOwners.get(i)![0]!;
      const at = this.familyAt.get(p);
      if (at !== undefined && now - at < 1000) return false;
      this.familyAt.set(p, now);
      return true;
    });
    if (this.familyAt.size > 10_000) this.familyAt.clear();
    this.completeHolders(check);
  }

  /** Exact sock_diag lookup of one end's socket (the kernel may answer with the listener). */
  exactSocket(family: 4 | 6, proto: number, end: FlowEnd): SockInfo | null {
    this.stats.lookups++;
    return this.deps.lookupSocket(family, proto, end);
  }

  /** Cached holders of a socket inode, lowest pid first. */
  holdersOf(inode: number): readonly number[] {
    return this.inodeOwners.get(inode) ?? [];
  }

  /**
   * The holders of one socket among `pids`, their parents and children (fork shares sockets in a
   * family: pre-fork workers, a fork-after-accept child, a helper), read in full, so the holder
   * list is complete there. Replaces the cache entry when found. Returns the holders.
   */
  searchFamily(inode: number, pids: Iterable<number>): number[] {
    const look = new Set<number>();
    for (const p of pids) {
      look.add(p);
      const f = this.deps.family?.(p);
      if (f) {
        for (const c of f.children) look.add(c);
        if (f.ppid !== null && f.ppid > 1) {
          look.add(f.ppid);
          // Siblings: the members of an SO_REUSEPORT group each hold a listener of their own.
          for (const c of this.deps.family?.(f.ppid)?.children ?? []) if (look.size < 64) look.add(c);
        }
      }
    }
    if (look.size === 0) return [];
    const t0 = this.deps.now();
    const r = this.deps.scanOwners(new Set(), look);
    this.stats.scanMs += this.deps.now() - t0;
    this.stats.candidateScans++;
    // Every table in `look` was read in full: their sockets' holder lists are exact there.
    for (const [i, owners] of r.owners) {
      if (i === inode) this.remember(i, owners);
      else this.merge(i, owners);
    }
    const got = r.owners.get(inode);
    if (!got) return [];
    return got;
  }

  /**
   * Resolves many inodes at once: one candidate scan, then at most one full search for the misses
   * that `alive` says still exist (a socket whose fd is closed cannot be found in any fd table;
   * searching all of /proc for it would only burn time). Full searches spend from a token bucket
   * (fullScanMaxShare of wall time) and each stops after searchBudgetMs.
   */
  resolveInodes(inodes: Iterable<number>, alive?: (inode: number) => boolean): void {
    const missing = new Set<number>();
    for (const i of inodes) if (i !== 0 && !this.inodeOwners.has(i)) missing.add(i);
    if (missing.size === 0) return;
    const wanted = [...missing];
    try {
      this.search(missing, alive);
    } finally {
      this.completeHolders(wanted.filter((i) => this.inodeOwners.has(i)));
    }
  }

  /**
   * A search stops at the first holder it meets; a socket shared across fork has more, in the
   * same family. One read of the found holders' parents and children (once per batch) completes
   * the holder lists, so the lowest pid is the owner whichever holder was met first. The holders'
   * own tables are not read again: the search (or the reader thread) has just met the socket
   * there, and a server's table is the big one (thousands of connections).
   */
  private completeHolders(inodes: number[]): void {
    if (inodes.length === 0 || !this.deps.family) return;
    const holders = new Set<number>();
    for (const i of inodes) for (const p of this.inodeOwners.get(i) ?? []) holders.add(p);
    const look = new Set<number>();
    for (const p of holders) {
      const f = this.deps.family(p);
      if (f.ppid !== null && f.ppid > 1 && !holders.has(f.ppid)) look.add(f.ppid);
      for (const c of f.children) if (!holders.has(c)) look.add(c);
    }
    if (look.size === 0) return;
    const t0 = this.deps.now();
    const r = this.deps.scanOwners(new Set(), look);
    this.stats.scanMs += this.deps.now() - t0;
    for (const i of inodes) {
      const got = r.owners.get(i);
      if (got) this.merge(i, got);
    }
  }

  private search(missing: Set<number>, alive?: (inode: number) => boolean): void {
    if (this.recent.size > 0) {
      const pids = [...this.recent.keys()].slice(-this.opt.candidates);
      this.scan(pids, missing, false);
      if (missing.size === 0) return;
    }
    if (alive) for (const i of missing) if (!alive(i)) missing.delete(i);
    const now = this.deps.now();
    const cap = this.opt.searchBudgetMs * 4;
    this.tokens = Math.min(cap, this.tokens + (this.tokensAt === null ? 0 : (now - this.tokensAt) * this.opt.fullScanMaxShare));
    this.tokensAt = now;
    if (missing.size > 0 && this.tokens > 0) this.scan(undefined, missing, true, Math.min(this.tokens, this.opt.searchBudgetMs));
    this.stats.misses += missing.size;
  }

  private scan(pids: number[] | undefined, missing: Set<number>, full: boolean, budgetMs?: number): void {
    const t0 = this.deps.now();
    const r = this.deps.scanOwners(missing, pids, budgetMs);
    const ms = this.deps.now() - t0;
    this.stats.scanMs += ms;
    if (full) {
      this.stats.fullScans++;
      this.tokens -= ms;
      // Processes that are gone drop out of the process cache.
      if (r.exhaustive) for (const pid of this.procs.keys()) if (!r.scanned.has(pid)) this.procs.delete(pid);
    } else {
      this.stats.candidateScans++;
    }
    // A search that stops early sees only some holders of a shared socket (a listener): add
    // them to what is known, never replace a longer list with a shorter one.
    for (const [inode, owners] of r.owners) {
      this.merge(inode, owners);
      missing.delete(inode);
    }
  }

  private merge(inode: number, pids: number[]): void {
    const had = this.inodeOwners.get(inode);
    if (!had) return this.remember(inode, pids);
    for (const p of pids) if (!had.includes(p)) had.push(p);
    had.sort((a, b) => a - b);
  }

  private remember(inode: number, pids: number[]): void {
    if (this.inodeOwners.size >= this.opt.maxCache) {
      // Drop the oldest tenth: insertion order is age.
      let n = Math.ceil(this.opt.maxCache / 10);
      for (const k of this.inodeOwners.keys()) {
        this.inodeOwners.delete(k);
        if (--n === 0) break;
      }
    }
    this.inodeOwners.set(inode, pids);
    this.stats.cacheSize = this.inodeOwners.size;
  }

  /**
   * The process that closed this connection's socket, when the socket itself is gone: the close
   * tracker names the task that moved it from ESTABLISHED to FIN_WAIT1 (or CLOSE_WAIT to
   * LAST_ACK), which only close()/shutdown() do, in the holder's own context. A close older than
   * `maxAgoMs` belongs to an earlier connection on the same 4-tuple.
   */
  closedBy(family: 4 | 6, proto: number, end: FlowEnd, maxAgoMs: number): Owner | null {
    if (proto !== 6 || !this.deps.closedBy || end.localPort === null || end.remotePort === null) return null;
    const c = this.deps.closedBy(family, end);
    if (!c || c.pid <= 0 || c.agoMs > maxAgoMs) return null;
    this.stats.closers++;
    const live = this.process(c.pid);
    // A live process with another start time has reused the pid since the close.
    let facts = live && (c.startTime === null || live.startTime == null || live.startTime === c.startTime) ? live : null;
    // The same 4-tuple in another network namespace is another connection.
    if (facts?.netns != null && this.deps.netns != null && facts.netns !== this.deps.netns) return null;
    if (!facts) {
      // Gone already (a fork-after-accept child that served one connection): what the kernel
      // recorded at the close names it, and stays its facts for its other connections.
      facts = { pid: c.pid, comm: c.comm, cmdline: '', uid: c.uid, startTime: c.startTime };
      if (!live) this.procs.set(c.pid, { facts, checked: this.deps.now() });
    }
    return this.owner(c.pid, false, facts.uid, 0, facts, facts.cmdline || null, facts.startTime ?? c.startTime);
  }

  /** Owners made, by identity: the many ends of one process's connections share one object
   *  (memory per flow, and the views' per-end key cache stays valid). Owners are never mutated. */
  private readonly owners = new Map<string, { owner: Owner; info: ProcessFacts | null; cmdline: string | null }>();

  private owner(pid: number | null, shared: boolean, uid: number, inode: number, info: ProcessFacts | null, cmdline: string | null, startTime: number | null): Owner {
    const key = `${pid} ${shared ? 1 : 0} ${uid} ${inode} ${startTime}`;
    const hit = this.owners.get(key);
    // The same facts object (ProcessFacts are cached per pid and replaced when re-read).
    if (hit && hit.info === info && hit.cmdline === cmdline) return hit.owner;
    const owner = this.makeOwner(pid, shared, uid, inode, info, cmdline, startTime);
    if (this.owners.size >= 50_000) this.owners.clear();
    this.owners.set(key, { owner, info, cmdline });
    return owner;
  }

  private makeOwner(pid: number | null, shared: boolean, uid: number, inode: number, info: ProcessFacts | null, cmdline: string | null, startTime: number | null): Owner {
    return {
      pid,
      shared,
      uid,
      user: this.deps.userName(uid),
      comm: info?.comm ?? null,
      cmdline,
      inode,
      ...(info && info.netns !== undefined ? { netns: info.netns, container: info.container ?? null, unit: info.unit ?? null } : {}),
      startTime,
    };
  }

  /** A listener is shared by a server's processes: finds them all, for the lowest pid, and
   *  whether more than one process (or a child) is there (see multiProcess, soleHolder). */
  private readFamily(inode: number, pids: number[]): number[] {
    const all = this.searchFamily(inode, pids);
    if (all.length) pids = all;
    const kids = pids.some((p) => (this.deps.family?.(p).children.length ?? 0) > 0);
    this.familyDone.set(inode, pids.length > 1 || kids);
    this.familyRead.set(inode, this.deps.now());
    if (this.familyDone.size > 10_000) {
      this.familyDone.clear();
      this.familyRead.clear();
    }
    return pids;
  }

  /** The owner of a socket inode, from the cache (call resolveInodes first for a batch). */
  ownerOf(sock: SockInfo | null): Owner | null {
    if (!sock) return null;
    let pids = this.inodeOwners.get(sock.inode);
    if (pids && sock.state === SK_LISTEN && !this.familyDone.has(sock.inode)) pids = this.readFamily(sock.inode, pids);
    const pid = pids && pids.length > 0 ? pids[0]! : null;
    if (pid !== null) {
      this.recent.delete(pid);
      this.recent.set(pid, true);
      if (this.recent.size > 256) this.recent.delete(this.recent.keys().next().value as number);
    }
    const info = pid !== null ? this.process(pid) : null;
    return this.owner(pid, (pids?.length ?? 0) > 1, info?.uid ?? sock.uid, sock.inode, info, info?.cmdline ?? null, info?.startTime ?? null);
  }

  /**
   * Facts of a process, cached. A pid can be reused by another process: an entry older than a
   * second is checked against the process's start time before it is used again (pids wrap only
   * after pid_max new processes, so a reuse within that second is not a practical concern).
   */
  private process(pid: number): ProcessFacts | null {
    const now = this.deps.now();
    let p = this.procs.get(pid);
    if (p !== undefined && p.facts && now - p.checked > 1000 && this.deps.startTime) {
      // Gone (null): the facts still describe the process that held the socket. Another start
      // time: the pid was reused, the facts are another process's.
      const start = this.deps.startTime(pid);
      if (start !== null && start !== (p.facts.startTime ?? null)) p = undefined;
      else p.checked = now;
    }
    if (p === undefined) {
      p = { facts: this.deps.processInfo(pid), checked: now };
      this.procs.set(pid, p);
    }
    return p.facts;
  }

}
