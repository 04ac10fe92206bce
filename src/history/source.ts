// The one module that knows the accounting's internals: it turns the flows the engine tracks (live
// counters after each refresh) and the flows it retires (onRetire) into roll-up increments.
// Each local end of a flow is credited the growth of its totals since it was last credited, so a
// flow's bytes reach history exactly once, whichever of sample() or retire() sees them.
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { FlowState } from '../core/accounting.js';
import { protoName } from '../netlink/record.js';
import { EMPTY_IDENT, type Identity, type Increment } from './rollup.js';

export interface IdentityDeps {
  /** The executable of a running process (readlink /proc/PID/exe), or null. */
  exeOf(pid: number): string | null;
  /** The systemd unit (or cgroup path) of a process, or null. */
  unitOf(pid: number): string | null;
}

/** Real /proc lookups, cached per (pid, comm): a reused pid with another comm is read again. */
export function procIdentityDeps(procRoot: string, unitOf: (pid: number) => string | null): IdentityDeps {
  const exes = new Map<number, string | null>();
  return {
    exeOf(pid) {
      if (exes.has(pid)) return exes.get(pid)!;
      let exe: string | null = null;
      try {
        exe = readlinkSync(join(procRoot, String(pid), 'exe'));
      } catch {
        return null; // gone or not ours to read: not cached, the next flow may find it
      }
      if (exes.size > 20_000) exes.clear();
      exes.set(pid, exe);
      return exe;
    },
    unitOf,
  };
}

/** An end that has no owner yet is credited once it has this many attribution tries behind it. */
const OWNER_PATIENCE = 3;

export class UsageTap {
  /** Per flow: what was already credited, per end (sent, recv pairs), or orig/reply for forwarded. */
  private readonly credited = new Map<FlowState, number[]>();
  private primed = false;
  private readonly idents = new Map<string, { comm: string | null; ident: Identity }>();
  /** Bytes credited (tests and the collector's own health line). */
  bytes = 0;

  constructor(
    private readonly emit: (inc: Increment) => void,
    private readonly deps: IdentityDeps,
  ) {}

  /** After the initial dump: flows open now are known, their bytes so far are history (as `top`). */
  prime(flows: Iterable<FlowState>): void {
    for (const st of flows) this.credited.set(st, this.marks(st));
    this.primed = true;
  }

  /** After a refresh: credits the growth of every open flow (`final`: also of ends still being
   *  attributed, as they are now — at shutdown nothing may be left uncredited). */
  sample(flows: Iterable<FlowState>, final = false): void {
    for (const st of flows) this.credit(st, final);
  }

  /** The accounting's onRetire: the flow's last bytes, then it is forgotten. */
  readonly retire = (st: FlowState): void => {
    this.credit(st, true);
    this.credited.delete(st);
  };

  get tracked(): number {
    return this.credited.size;
  }

  /** Layout: per end [sent, recv, flowPending]; forwarded flows [orig, reply, flowPending]. */
  private marks(st: FlowState, pending = 0): number[] {
    if (st.ends.length === 0) return [st.origTotal, st.replyTotal, pending];
    return st.ends.flatMap((e) => [e.sentTotal, e.recvTotal, pending]);
  }

  private credit(st: FlowState, final: boolean): void {
    let m = this.credited.get(st);
    if (!m) {
      // A flow met after the initial dump began while collecting: it counts once as a flow, and
      // all its bytes count (the accounting started its totals at zero).
      m = (st.ends.length === 0 ? [0, 0] : st.ends.flatMap(() => [0, 0])).flatMap((v, i) => (i % 2 === 1 ? [v, this.primed ? 1 : 0] : [v]));
      this.credited.set(st, m);
    }
    const proto = protoName(st.shape.proto);
    const port = st.shape.dport;
    if (st.ends.length === 0) {
      // Flows with no local end keep their record (FlowState.rec): the remote is the destination.
      const inc = { ident: EMPTY_IDENT, remote: st.rec?.orig.dst ?? '', proto, port, dir: 'fwd' as const, sent: st.origTotal - m[0]!, recv: st.replyTotal - m[1]!, flows: m[2]! };
      m[0] = st.origTotal;
      m[1] = st.replyTotal;
      m[2] = 0;
      this.add(inc);
      return;
    }
    st.ends.forEach((e, i) => {
      // Bytes of an end still being attributed wait (they stay in its totals) rather than go to
      // "unknown" now and to the process later.
      if (!final && e.owner?.pid == null && e.tries < OWNER_PATIENCE) return;
      const j = 3 * i;
      const inc = {
        ident: this.identity(e.owner),
        remote: e.end.remoteAddr,
        proto,
        port,
        dir: e.end.side === 'orig' ? ('out' as const) : ('in' as const),
        sent: e.sentTotal - m[j]!,
        recv: e.recvTotal - m[j + 1]!,
        flows: m[j + 2]!,
      };
      m[j] = e.sentTotal;
      m[j + 1] = e.recvTotal;
      m[j + 2] = 0;
      this.add(inc);
    });
  }

  private add(inc: Increment): void {
    if (inc.sent === 0 && inc.recv === 0 && inc.flows === 0) return;
    this.bytes += inc.sent + inc.recv;
    this.emit(inc);
  }

  private identity(owner: FlowState['ends'][number]['owner']): Identity {
    if (!owner || owner.pid == null) {
      if (!owner || owner.uid == null) return EMPTY_IDENT;
      return { ...EMPTY_IDENT, uid: owner.uid, user: owner.user };
    }
    const pid = owner.pid;
    const key = `${pid} ${owner.uid}`;
    const hit = this.idents.get(key);
    if (hit && hit.comm === owner.comm) return hit.ident;
    const own = owner as { unit?: string | null; container?: { name?: string | null; id?: string } | string | null };
    const container = typeof own.container === 'string' ? own.container : own.container ? (own.container.name ?? own.container.id ?? null) : null;
    const ident: Identity = {
      exe: this.deps.exeOf(pid),
      comm: owner.comm,
      uid: owner.uid,
      user: owner.user,
      unit: own.unit ?? this.deps.unitOf(pid),
      container,
    };
    if (this.idents.size > 20_000) this.idents.clear();
    this.idents.set(key, { comm: owner.comm, ident });
    return ident;
  }
}
