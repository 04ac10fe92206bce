// A fake OwnerDeps: sockets, fd tables and processes as plain maps.
import type { FlowEnd } from '../../src/core/flow.js';
import { OwnerResolver, type ClosedBy, type OwnerDeps, type ProcessFacts, type SockInfo } from '../../src/core/owners.js';

export interface FakeWorld {
  /** "local:lport remote:rport" (proto-less) → socket; "local:lport *" for listeners/bound sockets. */
  sockets: Map<string, SockInfo>;
  /** pid → socket inodes it holds. */
  fds: Map<number, number[]>;
  procs: Map<number, ProcessFacts>;
  /** pid → parent pid (for the family search). */
  parents?: Map<number, number>;
  scans: { pids: number[] | undefined }[];
  clock: { t: number };
  /** The close tracker: "local:lport remote:rport" → who closed that socket (absent: no tracker). */
  closers?: Map<string, ClosedBy>;
}

export function world(): FakeWorld {
  return { sockets: new Map(), fds: new Map(), procs: new Map(), scans: [], clock: { t: 0 } };
}

export function fakeDeps(w: FakeWorld): OwnerDeps {
  return {
    lookupSocket(_family, _proto, end: FlowEnd) {
      const exact = w.sockets.get(`${end.localAddr}:${end.localPort} ${end.remoteAddr}:${end.remotePort}`);
      if (exact) return exact;
      return w.sockets.get(`${end.localAddr}:${end.localPort} *`) ?? w.sockets.get(`*:${end.localPort} *`) ?? null;
    },
    scanOwners(_want, pids) {
      const list = pids ? [...pids] : undefined;
      w.scans.push({ pids: list });
      const owners = new Map<number, number[]>();
      const scanned = new Set<number>();
      for (const [pid, inodes] of [...w.fds].sort((a, b) => a[0] - b[0])) {
        if (list && !list.includes(pid)) continue;
        scanned.add(pid);
        for (const i of inodes) owners.set(i, [...(owners.get(i) ?? []), pid]);
      }
      return { owners, scanned, exhaustive: true };
    },
    processInfo: (pid) => w.procs.get(pid) ?? null,
    startTime: (pid) => w.procs.get(pid)?.startTime ?? null,
    family: (pid) => ({ ppid: w.parents?.get(pid) ?? null, children: [...(w.parents ?? new Map())].filter(([, pp]) => pp === pid).map(([c]) => c) }),
    userName: (uid) => (uid === 0 ? 'root' : uid === 33 ? 'www-data' : String(uid)),
    now: () => w.clock.t,
    ...(w.closers ? { closedBy: (_family: 4 | 6, end: FlowEnd) => w.closers!.get(`${end.localAddr}:${end.localPort} ${end.remoteAddr}:${end.remotePort}`) ?? null } : {}),
  };
}

export function resolver(w: FakeWorld): OwnerResolver {
  return new OwnerResolver(fakeDeps(w), { fullScanMaxShare: 1 });
}
