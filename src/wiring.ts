// Composes the real dependencies of the core from a System: sock_diag lookups, /proc scans,
// interface addresses. Kept apart so the core only ever sees interfaces.
import { closeSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { ForeignAttributor } from './core/foreign.js';
import type { FlowEnd } from './core/flow.js';
import { OwnerResolver, type OwnerDeps, type OwnerOptions, type ProcessFacts } from './core/owners.js';
import { CgroupReader, ContainerNamer, parseContainer } from './proc/cgroup.js';
import { discoverNetns, NetnsRegistry, netnsOfPid, netnsPath, parseFibTrieLocal, parseIfInet6 } from './proc/netns.js';
import { join } from 'node:path';
import { EXIT, UserError } from './errors.js';
import { getAddon } from './netlink/addon.js';
import { makeSocketLookup } from './netlink/lookup.js';
import { dumpSocketTable } from './netlink/sockets.js';
import { formatIPv4, formatIPv6 } from './netlink/record.js';
import { parsePasswd } from './proc/parse.js';
import { findSocketOwners, ownNetns } from './proc/find.js';
import { readFamily, readProcessInfo, readStartTime, userName } from './proc/reader.js';
import { openCloseTracker, type CloserOpen } from './netlink/closer.js';
import type { ClosedBy } from './core/owners.js';
import type { HealthItem } from './core/model.js';
import type { System } from './system.js';

/** Process facts plus where the process lives: network namespace, container, systemd unit. */
export function processFacts(procRoot: string): (pid: number) => ProcessFacts | null {
  const cgroups = new CgroupReader(procRoot);
  const namer = new ContainerNamer();
  return (pid) => {
    const p = readProcessInfo(procRoot, pid);
    if (!p) return null;
    const cg = cgroups.of(pid);
    const c = parseContainer(cg?.cgroup ?? null);
    return { ...p, netns: netnsOfPid(procRoot, pid), container: c ? namer.name(c) : null, unit: cg?.unit ?? null };
  };
}

let closers: CloserOpen | null = null;

/** The close tracker of this process (loaded once, on first use; its BPF program and map go with
 *  the process, even after kill -9). */
export function closeTracker(): CloserOpen {
  // CTACCT_CLOSE_TRACKER=0: do without it (a host whose policy forbids BPF programs; A/B benchmarks).
  closers ??= process.env.CTACCT_CLOSE_TRACKER === '0' ? { tracker: null, code: 'EDISABLED', message: 'turned off by CTACCT_CLOSE_TRACKER=0' } : openCloseTracker();
  return closers;
}

/** A health note when the close tracker could not be loaded (what attribution loses without it). */
export function closeTrackerNotes(): HealthItem[] {
  const c = closers;
  if (!c || c.tracker) return [];
  return [
    {
      code: 'no-close-tracker',
      message: `close tracker unavailable (${c.message}): a connection accepted and closed between two looks stays with its listening process`,
    },
  ];
}

/** /proc/PID/stat starttime is in USER_HZ ticks (100 on Linux's mainstream architectures). */
const NS_PER_TICK = 10_000_000;

function closedByVia(open: CloserOpen): ((family: 4 | 6, end: FlowEnd) => ClosedBy | null) | undefined {
  const t = open.tracker;
  if (!t) return undefined;
  return (family, end) => {
    const h = t.lookup(family, end.localAddr, end.localPort ?? 0, end.remoteAddr, end.remotePort ?? 0);
    return h ? { pid: h.pid, uid: h.uid, comm: h.comm, startTime: h.startNs > 0 ? Math.floor(h.startNs / NS_PER_TICK) : null, agoMs: h.agoNs / 1e6 } : null;
  };
}

/** Owner deps for this namespace, or (inner) for another one through a sock_diag fd opened in it.
 *  `closer`: load the close tracker (long-running commands). */
export function realOwnerDeps(system: System, inner?: { netns: number; fd: number }, opts: { closer?: boolean } = {}): OwnerDeps {
  const netns = inner ? `net:[${inner.netns}]` : ownNetns(system.procRoot);
  const closedBy = opts.closer ? closedByVia(closeTracker()) : undefined;
  return {
    ...(closedBy ? { closedBy, netns: inner ? inner.netns : netnsOfPid(system.procRoot, 'self') } : {}),
    lookupSocket: inner ? makeSocketLookup(getAddon, () => inner.fd) : makeSocketLookup(),
    // Inside another namespace every search (candidates too) keeps to that namespace's processes.
    scanOwners: (want, pids, budgetMs) =>
      findSocketOwners(system.procRoot, want, inner && pids ? [...pids].filter((p) => netnsOfPid(system.procRoot, p) === inner.netns) : pids, budgetMs, netns),
    processInfo: processFacts(system.procRoot),
    startTime: (pid) => readStartTime(system.procRoot, pid),
    family: (pid) => readFamily(system.procRoot, pid),
    ...(inner ? {} : { listenersOn: listenerCounter(() => system.monotonic()) }),
    userName,
    now: () => system.monotonic(),
  };
}

/** Listening TCP sockets per (family, port) from one sock_diag dump of listeners, at most once a
 *  second (an SO_REUSEPORT group shows as several). A failed dump counts as one listener. */
function listenerCounter(now: () => number): (family: 4 | 6, port: number) => number {
  let at = -Infinity;
  let counts = new Map<string, number>();
  return (family, port) => {
    if (now() - at >= 1000) {
      at = now();
      counts = new Map();
      try {
        for (const s of dumpSocketTable({ tcp: true, udp: false, tcpStates: 1 << 10 /* TCP_LISTEN */ })) {
          const k = `${s.family} ${s.localPort}`;
          counts.set(k, (counts.get(k) ?? 0) + 1);
        }
      } catch {
        /* no sock_diag dump here: no groups known */
      }
    }
    return counts.get(`${family} ${port}`) ?? 1;
  };
}

export function makeOwnerResolver(system: System, opts: OwnerOptions = {}): OwnerResolver {
  return new OwnerResolver(realOwnerDeps(system, undefined, { closer: true }), opts);
}

/**
 * Attribution of flows whose ends are in other network namespaces of this host (containers): a
 * registry of namespaces and their addresses, and per namespace a sock_diag socket opened inside
 * it (kept: it stays bound there) with its own owner resolver. Namespaces that cannot be entered
 * (no CAP_SYS_ADMIN) leave their flows unattributed with reason no_permission.
 */
export function makeForeignAttributor(system: System, opts: OwnerOptions = {}): ForeignAttributor {
  const self = netnsOfPid(system.procRoot, 'self');
  const registry = new NetnsRegistry(
    {
      discover: () => discoverNetns(system.procRoot),
      addresses: (e) => {
        try {
          return decodeAddresses(getAddon().netnsAddresses(e.path));
        } catch (err) {
          // Not allowed to enter (no CAP_SYS_ADMIN): a process's view of its namespace still
          // names the addresses, so its flows are known to be a container's (reason no_permission).
          if (e.pid === null) throw err;
          const net = join(system.procRoot, String(e.pid), 'net');
          return [...parseFibTrieLocal(readFileSync(join(net, 'fib_trie'), 'utf8')), ...parseIfInet6(readFileSync(join(net, 'if_inet6'), 'utf8'))];
        }
      },
      now: () => system.monotonic(),
    },
    self,
  );
  const inner = new Map<number, OwnerResolver | null>();
  return new ForeignAttributor({
    namespacesOf: (addr) => registry.namespacesOf(addr),
    addresses: () => registry.addresses(),
    resolver: (ns) => {
      const known = inner.get(ns);
      if (known !== undefined) return known;
      const e = registry.entry(ns);
      if (!e) return null;
      if (inner.size >= 1024) {
        // Each socket pins its namespace: bound how many are kept (dropped ones reopen on use).
        for (const r of inner.values()) if (r && fdOf.has(r)) closeSync(fdOf.get(r)!);
        inner.clear();
      }
      let res: OwnerResolver | null = null;
      try {
        const fd = getAddon().netnsDiagOpen(e.path);
        res = new OwnerResolver(realOwnerDeps(system, { netns: ns, fd }, { closer: true }), opts);
        fdOf.set(res, fd);
      } catch {
        res = null; // EPERM without CAP_SYS_ADMIN: its flows say no_permission
      }
      inner.set(ns, res);
      return res;
    },
  });
}

const fdOf = new WeakMap<OwnerResolver, number>();

function decodeAddresses(buf: Buffer): string[] {
  const out: string[] = [];
  for (let off = 0; off + 17 <= buf.length; off += 17) out.push(buf[off] === 4 ? formatIPv4(buf, off + 1) : formatIPv6(buf, off + 1));
  return out;
}

/**
 * Addresses of this network namespace, from the kernel (RTM_GETADDR) whatever the link state;
 * os.networkInterfaces() leaves out links without carrier, whose addresses are still local.
 */
export function interfaceAddresses(): string[] {
  try {
    const buf = getAddon().localAddresses();
    const out: string[] = [];
    for (let off = 0; off + 17 <= buf.length; off += 17) out.push(buf[off] === 4 ? formatIPv4(buf, off + 1) : formatIPv6(buf, off + 1));
    return out;
  } catch {
    const out: string[] = [];
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.push(a.address.replace(/%.*$/, ''));
    return out;
  }
}

/**
 * `--netns`: moves ctacct into another network namespace before anything opens a socket (the
 * addon's sockets, its reader thread and /proc/self/net then all belong to that namespace).
 */
export function enterNetns(system: System, value: string | undefined): void {
  if (value === undefined) return;
  const p = netnsPath(String(value), system.procRoot);
  if ('error' in p) throw new UserError(p.error, EXIT.usage, 'ERR_USAGE');
  try {
    getAddon().netnsEnter(p.path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why =
      code === 'EPERM' ? 'permission denied (entering a namespace needs CAP_SYS_ADMIN)' : code === 'EINVAL' ? `${p.path} is not a network namespace` : ((e as Error).message ?? String(e));
    throw new UserError(`--netns ${value}: ${why}`, code === 'EPERM' ? EXIT.privilege : EXIT.usage, code === 'EPERM' ? 'EPERM' : 'ERR_USAGE');
  }
}

let passwd: Map<string, number> | null = null;
/** User name → uid from /etc/passwd (null when unknown). */
export function uidOfUser(name: string): number | null {
  if (!passwd) {
    passwd = new Map();
    try {
      for (const [uid, n] of parsePasswd(readFileSync('/etc/passwd', 'utf8'))) passwd.set(n, uid);
    } catch {
      /* no passwd file: numeric uids still work */
    }
  }
  return passwd.get(name) ?? null;
}
