// Who owns each local end of a flow (README "How the owner is found"): the owner policy, retries of
// ends without an owner, provisional listener owners and their re-resolution once a connection is
// accepted, and inference for sockets gone before they were seen. Reads and writes EndState only;
// the flow table decides when flows come and go.
import type { FlowRecord } from '../netlink/record.js';
import type { FlowEnd, FlowId } from './flow.js';
import type { ForeignAttributor } from './foreign.js';
import type { AccountingHealth, EndState, FlowState } from './flowtable.js';
import { SK_LISTEN, type Owner, type OwnerResolver, type SockInfo } from './owners.js';

/** An accepted socket is looked at again for this long (a fork-after-accept server hands it to a
 *  child after accept()), at 1, 2, 4, … ms, then every RECHECK_MAX_MS while still unsettled. */
const SETTLE_MS = 250;
const RECHECK_MAX_MS = 1000;
/** Kernel TCP socket states (include/net/tcp_states.h) of a connection not accept()ed yet when its
 *  inode is 0: still in the accept queue (ESTABLISHED, CLOSE_WAIT) or a request (SYN_RECV). */
const NOT_ACCEPTED_YET = new Set([1, 3, 8, 12]);

/** How long an outbound endpoint remembers who connected to it, for inference. */
const ENDPOINT_MEMORY_MS = 10_000;

export class Attributor {
  /** Ends whose owner is not final (see EndState.unsettled), looked at again by recheck(). */
  private readonly unsettled = new Set<FlowState>();
  /** Flows with an end that has no owner yet (see retryUnattributed). */
  private readonly unowned = new Set<FlowState>();
  /** remote "addr port proto" → the one process that opened connections to it lately (null: several). */
  private readonly endpoints = new Map<string, { owner: Owner | null; at: number }>();
  private readonly opt: { retryMs: number };

  constructor(
    /** The flow table's live flows (read only: recheck() drops flows no longer there). */
    private readonly flows: ReadonlyMap<FlowId, FlowState>,
    private readonly owners: OwnerResolver,
    private readonly foreign: ForeignAttributor | undefined,
    private readonly now: () => number,
    private readonly health: AccountingHealth,
    opts: { retryMs: number },
  ) {
    this.opt = { retryMs: opts.retryMs };
  }

  /** Resolves owners for the given flows in one batch (one /proc scan at most for all misses). */
  attribute(states: FlowState[]): void {
    this.resolve(states);
    // Flows left with an end without owner are retried (retryUnattributed) from this set, so a
    // refresh does not walk the whole table to find the few that need it.
    for (const st of states) {
      if (st.ends.some((e) => e.owner?.pid == null)) this.unowned.add(st);
      else this.unowned.delete(st);
    }
  }

  private resolve(states: FlowState[]): void {
    const todo: EndState[] = [];
    const todoSt: FlowState[] = [];
    const fam: (4 | 6)[] = [];
    const protos: number[] = [];
    const foreign: { e: EndState; family: 4 | 6; proto: number; end: FlowEnd; netns: number[] }[] = [];
    const now = this.now();
    for (const st of states) {
      for (const e of st.ends) {
        if (e.owner?.pid != null) continue;
        const hit = e.tries === 0 ? this.newTimeHit(st, e.end.side) : null;
        e.tries++;
        e.lastTry = now;
        // A closed client connection's socket is gone for good: only inference can help it now.
        if (st.closed && e.end.side === 'orig' && e.tries > 1) continue;
        if (e.netns) {
          foreign.push({ e, family: st.family, proto: st.shape.proto, end: e.end, netns: e.netns });
          continue;
        }
        e.sock = this.owners.socketFor(st.family, st.shape.proto, e.end, hit) ?? e.sock;
        // An accepted socket whose holder is not known yet, behind a listener that a single process
        // holds (no children, no other listener on the port): that process owns its connections
        // outright, so no fd table (a server's is the big one) is searched for the accepted socket.
        if (e.sock && !e.sock.pid && e.end.side === 'reply' && st.shape.proto === 6 && e.sock.state !== SK_LISTEN) {
          const l = this.owners.serviceSocket(st.family, st.shape.proto, e.end);
          if (l) this.owners.noteListener(l.inode, st.family, e.end.localPort ?? 0);
          if (l && this.owners.soleHolder(l.inode, st.family, e.end.localPort ?? 0)) e.sock = l;
        }
        // No socket (a client's, gone to TIME_WAIT before it was seen): who closed it, if tracked.
        if (!e.sock && this.closer(st, e)) continue;
        if (e.sock) {
          todo.push(e);
          todoSt.push(st);
          fam.push(st.family);
          protos.push(st.shape.proto);
        }
      }
      // Each end with no owner took its hit at its first try: nothing reads them again.
      st.skOrig = st.skReply = null;
    }
    if (foreign.length && this.foreign) {
      // Ends in containers' namespaces: looked up there, in one batch.
      this.foreign.resolveAll(foreign).forEach((f, i) => {
        const e = foreign[i]!.e;
        e.sock = f.sock ?? e.sock;
        e.owner = f.owner;
        e.reason = f.reason;
        if (f.owner?.pid != null) e.netns = [f.netns];
      });
    }
    if (todo.length === 0) {
      this.inferOwners(states, now);
      return;
    }
    this.owners.learn(todo.map((e) => e.sock));
    const where = new Map<number, number>();
    todo.forEach((e, i) => where.set(e.sock!.inode, i));
    // Still open? The same lookup again must find the same socket (2.5 µs, against a /proc search).
    const alive = (inode: number) => {
      const i = where.get(inode);
      if (i === undefined) return false;
      const e = todo[i]!;
      if (e.sock!.state === SK_LISTEN) return true;
      return this.owners.socketFor(fam[i]!, protos[i]!, e.end, null)?.inode === inode;
    };
    this.owners.resolveInodes(todo.map((e) => e.sock!.inode), alive);
    const fallback: EndState[] = [];
    for (let i = 0; i < todo.length; i++) {
      const e = todo[i]!;
      e.owner = this.owners.ownerOf(e.sock);
      e.reason = e.owner?.pid != null ? null : 'no_process';
      if (e.owner?.pid == null && e.sock!.state !== SK_LISTEN && this.closer(todoSt[i]!, e)) continue;
      if (e.owner?.pid == null && e.end.side === 'reply' && e.sock!.state !== SK_LISTEN) {
        // A server's connection socket whose fd is already closed: its listener owns the service.
        const l = this.owners.serviceSocket(fam[i]!, protos[i]!, e.end);
        if (l) {
          e.sock = l;
          fallback.push(e);
        }
      }
    }
    if (fallback.length) {
      this.owners.resolveInodes(fallback.map((e) => e.sock!.inode));
      for (const e of fallback) {
        e.owner = this.owners.ownerOf(e.sock);
        e.reason = e.owner?.pid != null ? null : 'no_process';
      }
    }
    for (let i = 0; i < todo.length; i++) this.markUnsettled(todoSt[i]!, todo[i]!, now);
    this.inferOwners(states, now);
  }

  /**
   * Whether an end's owner may still change: the listener of a TCP connection not accepted yet
   * (provisional), a shared socket, or a new connection's accepted socket in its first SETTLE_MS.
   */
  private markUnsettled(st: FlowState, e: EndState, now: number): void {
    if (e.owner?.pid == null || !e.sock) return;
    const server = st.shape.proto === 6 && e.end.side === 'reply';
    // A listener with one holder and no children: its process is the one that accepts (fd passing
    // aside), so nothing is looked at again; the per-connection cost stays that of one lookup.
    // An SO_REUSEPORT group member is one of several listeners: the one the kernel's lookup named
    // need not be the one that accepts, so it is provisional too.
    if (server && e.sock.state === SK_LISTEN) this.owners.noteListener(e.sock.inode, st.family, e.end.localPort ?? 0);
    const provisional =
      server && e.sock.state === SK_LISTEN && (this.owners.multiProcess(e.sock.inode) || this.owners.listenerGroup(st.family, e.end.localPort ?? 0));
    if (!(provisional || e.owner.shared)) return;
    e.unsettled = true;
    e.firstSeen ??= now;
    if (now - e.firstSeen >= SETTLE_MS && !provisional && !e.owner.shared) {
      e.unsettled = false;
      return;
    }
    e.every = 1;
    e.nextCheck = now + 1;
    this.unsettled.add(st);
    this.recheckAt = Math.min(this.recheckAt, e.nextCheck);
  }

  /** The accepted socket of an inbound connection, seen by the addon as it appeared: the flow
   *  moves to its holder (and keeps being looked at for SETTLE_MS, see markUnsettled). */
  accepted(st: FlowState, r: FlowRecord): void {
    const h = r.skReply;
    const e = st.ends.find((x) => x.end.side === 'reply');
    // (Not a container's end: the reader thread looked in this namespace, not in the container's.)
    if (!h || !h.found || !h.inode || h.state === SK_LISTEN || !e || e.netns) return;
    const sock: SockInfo = { inode: h.inode, uid: h.uid, state: h.state, pid: h.pid };
    if (e.sock?.state === SK_LISTEN) e.listener = e.sock.inode;
    this.owners.learn([sock]);
    this.owners.resolveInodes([sock.inode]);
    const owner = this.owners.ownerOf(sock);
    const now = this.now();
    if (owner?.pid == null && this.closer(st, e)) return;
    if (owner?.pid == null) {
      // The accepted socket's holder is not found (yet; or the socket is already closed): the
      // listener keeps the flow, never "unknown" for it. A provisional listener's end is looked
      // at again by recheck() (exact lookups of its own); one still unsettled when the socket is
      // gone counts in accepts_missed.
      if (e.sock?.state === SK_LISTEN && !e.unsettled) this.markUnsettled(st, e, now);
      return;
    }
    if (owner.pid !== e.owner?.pid || owner.startTime !== e.owner?.startTime) this.health.moved++;
    e.sock = sock;
    e.owner = owner;
    e.inferred = false;
    e.firstSeen ??= now;
    if (!e.unsettled) this.markUnsettled(st, e, now);
  }

  /**
   * Gives an end whose socket is gone to the process that closed it (the kernel's close tracker),
   * when one is recorded for this connection; true when it did.
   */
  private closer(st: FlowState, e: EndState): boolean {
    const now = this.now();
    const c = this.owners.closedBy(st.family, st.shape.proto, e.end, now - st.born + 2000);
    if (!c) return false;
    e.unsettled = false;
    // The same process as the owner it had: confirmed, and its owner (shared flag, socket) kept.
    if (e.owner?.pid != null && c.pid === e.owner.pid && c.startTime === e.owner.startTime) return true;
    this.health.closedBy++;
    if (e.owner?.pid != null) this.health.moved++;
    e.owner = c;
    e.reason = null;
    e.inferred = false;
    e.unsettled = false;
    return true;
  }

  /**
   * A TCP connection that is over: its socket's last holder is the process that closed it (close
   * tracker), which is the process that served it: a listener's provisional owner, an accepted
   * socket seen in the parent before a fork-after-accept child took it, or no owner at all give
   * way to it. A socket seen shared keeps the documented rule (lowest pid, shared).
   */
  settleByCloser(st: FlowState): void {
    if (st.shape.proto !== 6) return;
    for (const e of st.ends) {
      if (e.netns) continue;
      // A shared connection socket keeps the lowest pid, unless it was a hand-over: a server
      // connection held by the process that accepted it (a listener holder) and its child, the
      // fork-after-accept model, where the child that closes it is the one that served it.
      if (e.owner?.shared && e.sock?.state !== SK_LISTEN && !this.handedOver(e)) continue;
      // A client socket's exact owner is the process that connected: it stays (no lookup, the
      // per-connection path). A server connection's exact owner may have handed it to a child.
      if (e.end.side === 'orig' && e.owner?.pid != null && !e.inferred && e.sock?.state !== SK_LISTEN && !e.unsettled) continue;
      this.closer(st, e);
    }
  }

  private handedOver(e: EndState): boolean {
    if (e.end.side !== 'reply' || !e.listener || e.owner?.pid == null) return false;
    return this.owners.holdersOf(e.listener).includes(e.owner.pid);
  }

  /** Monotonic ms when recheck() has work next (Infinity: none). */
  recheckAt = Infinity;

  /**
   * Looks again at the ends whose owner is not final and that are due: a connection accepted
   * since is moved (with all its bytes) to the process that holds the accepted socket, searched
   * among the listener's holders and their family first. Returns when it is due next.
   */
  recheck(): number {
    const now = this.now();
    let next = Infinity;
    for (const st of this.unsettled) {
      if (this.flows.get(st.key) !== st) {
        this.unsettled.delete(st);
        continue;
      }
      let any = false;
      for (const e of st.ends) {
        if (!e.unsettled) continue;
        if (e.nextCheck! <= now) this.recheckEnd(st, e, now);
        if (e.unsettled) {
          any = true;
          next = Math.min(next, e.nextCheck!);
        }
      }
      if (!any) this.unsettled.delete(st);
    }
    this.recheckAt = next;
    return next;
  }

  private recheckEnd(st: FlowState, e: EndState, now: number): void {
    e.every = Math.min(RECHECK_MAX_MS, (e.every ?? 1) * 2);
    e.nextCheck = now + e.every;
    const s = this.owners.exactSocket(st.family, st.shape.proto, e.end);
    const wasListener = e.sock!.state === SK_LISTEN;
    if (!s || s.inode === 0 || s.state === SK_LISTEN) {
      // Not accepted yet: in the accept queue or a request (inode 0). The kernel answers with the
      // listener when the tuple has no socket at all: before the handshake completes, or gone.
      if (wasListener && s && NOT_ACCEPTED_YET.has(s.state)) return;
      if (wasListener && s?.state === SK_LISTEN && (st.tcpState ?? 0) < 3 && now - e.firstSeen! < 1000) return;
      // Gone: accepted and closed between two looks. The close tracker names who closed it;
      // without it (or never accepted) it stays with the listening service; count those.
      e.unsettled = false;
      if (this.closer(st, e)) return;
      if (wasListener || e.owner?.inode !== e.sock!.inode) this.health.acceptsMissed++;
      return;
    }
    if (wasListener) e.listener = e.sock!.inode;
    const base = new Set([...this.owners.holdersOf(e.sock!.inode), ...(e.listener ? this.owners.holdersOf(e.listener) : [])]);
    let holders = this.owners.searchFamily(s.inode, base.size ? base : this.owners.recentPids(16));
    if (!holders.length) {
      this.owners.resolveInodes([s.inode], () => true);
      holders = [...this.owners.holdersOf(s.inode)];
    }
    if (!holders.length) return; // its holder is not found yet: looked at again later
    const owner = this.owners.ownerOf(s);
    if (owner?.pid == null) return;
    if (owner.pid !== e.owner?.pid || owner.startTime !== e.owner?.startTime) this.health.moved++;
    e.sock = s;
    e.owner = owner;
    e.inferred = false;
    if (!owner.shared && now - e.firstSeen! >= SETTLE_MS) e.unsettled = false;
  }

  /**
   * Client connections so short that their socket was gone (TIME_WAIT, inode 0) when the event was
   * read: remember which process connects to each remote endpoint, and when exactly one did in the
   * last 10 s, the orphan is its. Ambiguous endpoints (several processes) stay unknown.
   */
  private inferOwners(states: Iterable<FlowState>, now: number): void {
    for (const st of states) {
      for (const e of st.ends) {
        if (e.end.side !== 'orig') continue;
        const key = `${e.end.remoteAddr} ${e.end.remotePort} ${st.shape.proto}`;
        const seen = this.endpoints.get(key);
        const fresh = seen !== undefined && now - seen.at <= ENDPOINT_MEMORY_MS;
        if (e.owner?.pid != null && !e.inferred) {
          // One process, or several (null, kept until it expires: no guessing while it lasts).
          if (fresh && seen.owner === null) continue;
          const owner = fresh && seen.owner!.pid !== e.owner.pid ? null : e.owner;
          this.endpoints.set(key, { owner, at: now });
          continue;
        }
        if (e.owner?.pid != null || !fresh || !seen.owner) continue;
        e.owner = seen.owner;
        e.inferred = true;
        this.health.inferred++;
      }
    }
    if (this.endpoints.size > 50_000) this.endpoints.clear();
  }

  private newTimeHit(st: FlowState, side: 'orig' | 'reply'): SockInfo | null {
    const h = side === 'orig' ? st.skOrig : st.skReply;
    return h && h.found ? { inode: h.inode, uid: h.uid, state: h.state, pid: h.pid } : null;
  }

  /** Retries ends still without an owner, each at most every retryMs. */
  retryUnattributed(): void {
    const now = this.now();
    const due: FlowState[] = [];
    for (const st of this.unowned) {
      // Gone from the table (retired, or replaced by a new life under its key): nothing to retry.
      if (this.flows.get(st.key) !== st) {
        this.unowned.delete(st);
        continue;
      }
      // Owned since by another path (an accept seen, the close tracker, inference): done.
      if (st.ends.every((e) => e.owner?.pid != null)) this.unowned.delete(st);
      else if (st.ends.some((e) => e.owner?.pid == null && now - e.lastTry >= this.opt.retryMs)) due.push(st);
    }
    if (due.length) this.attribute(due);
  }
}
