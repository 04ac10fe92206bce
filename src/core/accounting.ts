// Per-flow deltas between readings, DESTROY settlement, totals since start, group-by and windows
// (README "How to read the numbers"). Pure state: records in, snapshots out; the clock is injected.
import { ctTcpStateName, decodeOne, HAS, protoName, readU64, RECORD_SIZE, type FlowRecord } from '../netlink/record.js';
import { classify, endBytes, flowKey, formatHostPort, localEnds, rawFlowKey, sameFlow, sameFlowRaw, shapeOf, type Direction, type FlowEnd, type FlowId, type FlowShape, type LocalAddresses } from './flow.js';
import { blankRow, compareRows, emptyBucket, type Bucket, type GroupBy, type Health, type SortKey, type TopRow, type TopSnapshot } from './model.js';
import { flowPasses } from './filters.js';
import { SK_LISTEN, type Owner, type OwnerResolver, type SockInfo } from './owners.js';
import type { ForeignAttributor, UnattributedReason } from './foreign.js';

export interface EndState {
  end: FlowEnd;
  sock: SockInfo | null;
  owner: Owner | null;
  /** Resolution attempts and when the last one was (monotonic ms). */
  tries: number;
  lastTry: number;
  sentTotal: number;
  recvTotal: number;
  sentInterval: number;
  recvInterval: number;
  /** The owner was inferred from the remote endpoint (the socket was gone before it was seen). */
  inferred?: boolean;
  /** An end in another local network namespace (a container): the candidate namespaces. */
  netns?: number[];
  /** Why it has no owner (while it has none). */
  reason?: UnattributedReason | null;
  /** The owner is not final: the listener of a connection not accepted yet, a socket shared by
   *  several processes (a fork-after-accept server hands it to a child), or a young accepted
   *  socket. Such ends are looked at again (see Accounting.recheck). */
  unsettled?: boolean;
  /** Monotonic ms when this end was first resolved to a socket, when it is looked at next, and the
   *  current gap between looks (doubling up to RECHECK_MAX_MS). */
  firstSeen?: number;
  /** The listener this end was provisionally given to: its holders are searched first. */
  listener?: number;
  nextCheck?: number;
  every?: number;
  /** This end's row key for one group-by, kept between refreshes (keys are strings to build). */
  keyFor?: GroupBy;
  key?: string | null;
  keyOwner?: Owner | null;
}

/**
 * What is left of a finished TCP flow still waiting in the kernel's table (TIME_WAIT lasts 120 s):
 * its totals already sit in the retired rows; the tombstone only absorbs a late delta (a last ACK)
 * and its DESTROY. About a tenth of a FlowState's memory, and none of the per-refresh work.
 */
interface Tombstone extends FlowShape {
  lastOrig: number;
  lastReply: number;
  /** Per local end: the retired rows (one per group-by) its bytes go to, and whether it is unknown. */
  ends: { side: 'orig' | 'reply'; rows: TopRow[]; unknown: boolean }[];
  seenGen: number;
  goneSince: number | null;
}

/** An accepted socket is looked at again for this long (a fork-after-accept server hands it to a
 *  child after accept()), at 1, 2, 4, … ms, then every RECHECK_MAX_MS while still unsettled. */
const SETTLE_MS = 250;
const RECHECK_MAX_MS = 1000;
/** Kernel TCP socket states (include/net/tcp_states.h) of a connection not accept()ed yet when its
 *  inode is 0: still in the accept queue (ESTABLISHED, CLOSE_WAIT) or a request (SYN_RECV). */
const NOT_ACCEPTED_YET = new Set([1, 3, 8, 12]);

/** How long an outbound endpoint remembers who connected to it, for inference. */
const ENDPOINT_MEMORY_MS = 10_000;

export interface FlowState {
  key: FlowId;
  /** What the key must keep naming (see sameFlow). */
  shape: FlowShape;
  rec: FlowRecord;
  dir: Direction;
  ends: EndState[];
  /** Counter readings already accounted (the baseline for the next delta). */
  lastOrig: number;
  lastReply: number;
  hasCounters: boolean;
  /** Totals for flows with no local end (forwarded). */
  origTotal: number;
  replyTotal: number;
  origInterval: number;
  replyInterval: number;
  /** Dump generation that last saw it. */
  seenGen: number;
  /** Monotonic ms when a complete dump first missed it (its DESTROY is due). */
  goneSince: number | null;
  isNew: boolean;
  closed: boolean;
  /** Closed only because a dump did not list it: a later dump that lists it opens it again. */
  missed: boolean;
  closedCounted: boolean;
  /** Monotonic ms when ctacct first met the flow (a close tracked before it is an earlier connection's). */
  born: number;
}

/**
 * An earlier life of a flow whose id came back (a UDP client reusing its source port, a TCP
 * reconnect from the same port): a dump read the new life (counters below the last reading) before
 * the old life's DESTROY was processed. Its totals are in the retired rows; its own DESTROY settles
 * the rest, once (a DESTROY below the current life's reading is an earlier life's).
 */
interface EarlierLife extends Tombstone {
  /** The old life's state, kept for the flow log (which writes it at its DESTROY). */
  st: FlowState | null;
  at: number;
}

export interface Filters {
  proto?: number[];
  ports?: number[];
  host?: (addr: string) => boolean;
  pids?: number[];
  users?: (uid: number | null, user: string | null) => boolean;
  family?: 4 | 6;
}

export interface AccountingOptions {
  /** The run's filters: flows and ends they exclude are never counted in any row or bucket (so
   *  totals of ended flows, kept per row, are filtered too). */
  filters?: Filters;
  /** Called once for every flow that leaves the table (flow logs): on its DESTROY, or when dumps
   *  have not shown it for goneTimeoutMs and no DESTROY came (events lost). */
  onRetire?: (st: FlowState, reason: 'destroy' | 'vanished') => void;
  /** Keep a flow that vanished from dumps this long waiting for its DESTROY (ms). */
  goneTimeoutMs?: number;
  /** Retry an unattributed end at most this often (ms). */
  retryMs?: number;
  /** Retired per-connection rows kept for --by conn (oldest dropped first). */
  maxRetiredConns?: number;
  /** Attribution of flows whose ends live in other local network namespaces (containers). */
  foreign?: ForeignAttributor;
}

interface Acc {
  row: TopRow;
}

const TCP_CLOSED_STATES = new Set([7, 8]); // TIME_WAIT, CLOSE


export class Accounting {
  readonly flows = new Map<FlowId, FlowState>();
  /** Finished flows whose bytes are all accounted (see Tombstone). */
  private readonly tombs = new Map<FlowId, Tombstone>();
  /** Tombstones of flows between the same process, remote, port and user share one `ends`. */
  private readonly endsIntern = new Map<string, Tombstone['ends']>();
  private readonly rowIds = new WeakMap<TopRow, number>();
  private nextRowId = 1;
  private gen = 0;
  private initialDone = false;
  /** Totals of flows that are gone, per group-by and key (so rows keep every key since start). */
  private readonly retired: Record<GroupBy, Map<string, TopRow>> = {
    process: new Map(),
    conn: new Map(),
    remote: new Map(),
    port: new Map(),
    user: new Map(),
    container: new Map(),
    unit: new Map(),
  };
  /** When each retired row last took an ended flow's bytes (monotonic ms), for pruning. */
  private readonly retiredAt = new Map<TopRow, number>();
  /** Walks the retired per-connection rows oldest first, for evicting past maxRetiredConns. */
  private connEvict: Iterator<[string, TopRow]> | null = null;
  /** Retired rows whose per-refresh fields are non-zero, to reset after each snapshot. */
  private readonly dirtyRetired = new Set<TopRow>();
  /** Flows settled by DESTROY, by key → dump generation: a dump batch read by the kernel before
   *  the entry died may arrive after its DESTROY; it must not bring the flow back. */
  private readonly destroyed = new Map<FlowId, number>();
  private retiredForwarded = emptyBucket();
  private retiredUnknown = emptyBucket();
  private readonly history: { from: number; t: number; groupBy: GroupBy; rates: Map<string, [number, number]> }[] = [];
  private readonly peaks = new Map<string, [number, number]>();
  private lastSnapshot: number | null = null;
  private readonly opt: Required<Omit<AccountingOptions, 'onRetire' | 'filters' | 'foreign'>>;
  private readonly foreign: ForeignAttributor | undefined;
  /** Retired unknown bytes by reason. */
  private readonly retiredReasons = new Map<string, Bucket>();
  private readonly filters: Filters;
  private readonly onRetire: AccountingOptions['onRetire'];
  /** Earlier lives waiting for their DESTROY, by key (see EarlierLife). */
  private readonly earlier = new Map<FlowId, EarlierLife>();
  /** Ends whose owner is not final (see EndState.unsettled), looked at again by recheck(). */
  private readonly unsettled = new Set<FlowState>();
  readonly health = {
    dumpFailures: 0,
    acceptsMissed: 0,
    closedBy: 0,
    lives: 0,
    staleDestroys: 0,
    moved: 0,
    events: 0,
    lostEvents: 0,
    resyncs: 0,
    malformed: 0,
    bytesBeforeStart: 0,
    counterResets: 0,
    vanished: 0,
    retiredConnsDropped: 0,
    inferred: 0,
  };
  /** remote "addr port proto" → the one process that opened connections to it lately (null: several). */
  private readonly endpoints = new Map<string, { owner: Owner | null; at: number }>();

  constructor(
    private readonly local: () => LocalAddresses,
    private readonly owners: OwnerResolver,
    private readonly now: () => number,
    opts: AccountingOptions = {},
  ) {
    this.onRetire = opts.onRetire;
    this.filters = opts.filters ?? {};
    this.foreign = opts.foreign;
    this.opt = {
      goneTimeoutMs: opts.goneTimeoutMs ?? 180_000,
      retryMs: opts.retryMs ?? 1000,
      maxRetiredConns: opts.maxRetiredConns ?? 20_000,
    };
  }

  // ---- readings ----

  beginDump(): void {
    this.gen++;
  }

  /** Live counters from a dump batch (decoded records). */
  dumpBatch(batch: FlowRecord[]): void {
    const created: FlowState[] = [];
    for (const r of batch) this.dumpOne(r, created);
    this.attribute(created);
  }

  /**
   * Live counters straight from the addon's record buffer. A flow already known is updated from a
   * few fields read in place (no objects made); only new flows are decoded. This keeps a refresh
   * close to the kernel's own dump time on big tables.
   */
  dumpRaw(buf: Uint8Array, count: number): void {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const created: FlowState[] = [];
    for (let i = 0; i < count; i++) {
      const base = i * RECORD_SIZE;
      const present = view.getUint32(base + 4, true);
      const id = rawFlowKey(view, base, present);
      const st = id !== null ? this.flows.get(id) : undefined;
      const hasC = (present & HAS.countersOrig) !== 0 && (present & HAS.countersReply) !== 0;
      const o = hasC ? readU64(view, base + 56) : 0;
      const rp = hasC ? readU64(view, base + 72) : 0;
      // Counters below the last reading are a new life: the full path below handles it.
      if (st !== undefined && sameFlowRaw(st.shape, view, base, present) && !(hasC && (o < st.lastOrig || rp < st.lastReply))) {
        this.seen(st);
        this.applyCounters(st, hasC ? o : null, hasC ? readU64(view, base + 48) : 0, hasC ? rp : null, hasC ? readU64(view, base + 64) : 0, present & HAS.tcpState ? view.getUint8(base + 3) : null);
        if (present & HAS.timeout) st.rec.timeout = view.getUint32(base + 20, true);
        continue;
      }
      if (st === undefined && id !== null) {
        const t = this.tombs.get(id);
        if (t !== undefined && sameFlowRaw(t, view, base, present) && !(hasC && (o < t.lastOrig || rp < t.lastReply))) {
          t.seenGen = this.gen;
          t.goneSince = null;
          if (hasC) this.creditTomb(t, o, rp);
          continue;
        }
      }
      this.dumpOne(decodeOne(view, buf, base), created);
    }
    this.attribute(created);
  }

  private dumpOne(r: FlowRecord, created: FlowState[]): void {
    const key = flowKey(r);
    const c = r.origCounters && r.replyCounters ? r : null;
    const below = (last: { lastOrig: number; lastReply: number }) => c !== null && (c.origCounters!.bytes < last.lastOrig || c.replyCounters!.bytes < last.lastReply);
    let newLife = false;
    const t = this.tombs.get(key);
    if (t) {
      this.tombs.delete(key); // unless it is the same life, below
      if (sameFlow(t, r)) {
        if (!below(t)) {
          this.tombs.set(key, t);
          t.seenGen = this.gen;
          t.goneSince = null;
          if (c) this.creditTomb(t, c.origCounters!.bytes, c.replyCounters!.bytes);
          return;
        }
        // A finished flow's id is back with smaller counters: a new life.
        this.earlier.set(key, { ...t, st: null, at: this.now() });
        this.health.lives++;
        newLife = true;
      }
    }
    let st = this.flows.get(key);
    if (st && !sameFlow(st.shape, r)) {
      // The id now names another flow: the old one ended without a DESTROY we saw.
      this.health.vanished++;
      this.markClosed(st);
      this.retire(st);
      this.onRetire?.(st, 'vanished');
      st = undefined;
    } else if (st && st.hasCounters && below(st)) {
      // Counters below the last reading: the flow ended and its tuple came back under the same
      // id. The old life's bytes so far are kept; its own DESTROY brings the rest.
      this.health.lives++;
      this.health.counterResets++;
      this.endLife(st);
      st = undefined;
      newLife = true;
    }
    if (!st) {
      if (this.destroyed.has(key) && !newLife) return;
      st = this.create(key, r);
      created.push(st);
      // Flows present at start: their earlier bytes are history, not this interval's rate.
      // Any flow first met in a later dump began after the previous complete dump: count it whole.
      if (!this.initialDone) {
        st.isNew = false;
        st.lastOrig = r.origCounters?.bytes ?? 0;
        st.lastReply = r.replyCounters?.bytes ?? 0;
        this.health.bytesBeforeStart += st.lastOrig + st.lastReply;
      }
    }
    this.seen(st);
    this.apply(st, r);
  }

  /** A dump listed the flow: it is there (a flow missed by an earlier dump is open again). */
  private seen(st: FlowState): void {
    st.seenGen = this.gen;
    st.goneSince = null;
    if (st.missed) {
      st.missed = false;
      st.closed = false;
      st.closedCounted = false;
    }
  }

  /** Retires a life that a new one replaced; it waits for its own DESTROY in `earlier`. */
  private endLife(st: FlowState): void {
    this.markClosed(st);
    const ends = this.retire(st);
    this.earlier.set(st.key, { ...st.shape, lastOrig: st.lastOrig, lastReply: st.lastReply, ends, seenGen: this.gen, goneSince: null, st: this.onRetire ? st : null, at: this.now() });
  }

  /** A DESTROY for an earlier life: its remaining bytes go where its totals went. */
  private settleEarlier(key: FlowId, el: EarlierLife, r: FlowRecord): void {
    this.earlier.delete(key);
    const o = r.origCounters!.bytes;
    const rp = r.replyCounters!.bytes;
    this.creditTomb(el, o, rp);
    if (el.st) {
      el.st.lastOrig = Math.max(el.st.lastOrig, o);
      el.st.lastReply = Math.max(el.st.lastReply, rp);
      el.st.rec = { ...el.st.rec, origCounters: r.origCounters, replyCounters: r.replyCounters, stopMs: r.stopMs, eventMs: r.eventMs };
      this.onRetire?.(el.st, 'destroy');
    }
  }

  /** A dump failed or was interrupted: it proves nothing about flows it did not list. */
  dumpFailed(): void {
    this.health.dumpFailures++;
  }

  /** A complete dump ended: flows it did not list are gone (their DESTROY settles them). */
  endDump(): void {
    const now = this.now();
    for (const [k, g] of this.destroyed) if (g < this.gen - 1) this.destroyed.delete(k);
    for (const [k, t] of this.tombs) {
      if (t.seenGen === this.gen) continue;
      t.goneSince ??= now;
      if (now - t.goneSince > this.opt.goneTimeoutMs) this.tombs.delete(k);
    }
    // Finished TCP flows read in their final state, with owners settled, become tombstones. Not
    // with a flow log attached: it wants every detail at the flow's DESTROY.
    if (!this.onRetire) {
      for (const st of this.flows.values()) {
        if (!st.closed || st.seenGen !== this.gen || st.rec.proto !== 6) continue;
        if (!st.ends.every((e) => e.owner?.pid != null || e.tries >= 3)) continue;
        this.tombs.set(st.key, {
          proto: st.rec.proto,
          sport: st.rec.orig.sport,
          dport: st.rec.orig.dport,
          lastOrig: st.lastOrig,
          lastReply: st.lastReply,
          ends: this.intern(this.retire(st)),
          seenGen: this.gen,
          goneSince: null,
        });
      }
    }
    for (const [k, el] of this.earlier) if (now - el.at > this.opt.goneTimeoutMs) this.earlier.delete(k);
    for (const st of this.flows.values()) {
      if (st.seenGen === this.gen) continue;
      if (st.goneSince === null) st.goneSince = now;
      if (!st.closed) st.missed = true;
      this.markClosed(st);
      if (now - st.goneSince > this.opt.goneTimeoutMs) {
        this.health.vanished++;
        this.retire(st);
        this.onRetire?.(st, 'vanished');
      }
    }
    this.initialDone = true;
  }

  /** NEW / UPDATE / DESTROY events, in kernel order. */
  eventBatch(batch: FlowRecord[]): void {
    const created: FlowState[] = [];
    for (const r of batch) {
      this.health.events++;
      const key = flowKey(r);
      let st = this.flows.get(key);
      if (r.kind === 'new') {
        // A dump may have met the flow (even finished and tombstoned it) before its NEW event came.
        const t = this.tombs.get(key);
        if (!st && !(t && sameFlow(t, r))) {
          st = this.create(key, r);
          created.push(st);
        } else if (st && sameFlow(st.shape, r) && st.ends.some((e) => e.owner?.pid == null)) {
          // A dump met the flow first (no socket in a dump record); the NEW event carries the
          // sockets the addon found when it was read — possibly the only look that met them (a
          // server that exits right after its last connection takes its listener along).
          if (!st.rec.skOrig && r.skOrig) st.rec.skOrig = r.skOrig;
          if (!st.rec.skReply && r.skReply) st.rec.skReply = r.skReply;
          for (const e of st.ends) if (e.owner?.pid == null) e.tries = 0;
          created.push(st);
        }
        continue;
      }
      if (r.kind === 'update') {
        // The addon saw the accepted socket of a connection its NEW gave to the listener.
        if (st && sameFlow(st.shape, r)) this.accepted(st, r);
        continue;
      }
      const t = this.tombs.get(key);
      const el = r.kind === 'destroy' ? this.earlier.get(key) : undefined;
      if (el && sameFlow(el, r) && r.origCounters && r.replyCounters) {
        // Kernel order: an earlier life's DESTROY comes before the current life's. A DESTROY
        // below the current reading cannot be the current life's.
        const cur = st && sameFlow(st.shape, r) ? st : t && sameFlow(t, r) ? t : null;
        const o = r.origCounters.bytes;
        const rp = r.replyCounters.bytes;
        if ((cur !== null && (o < cur.lastOrig || rp < cur.lastReply)) || (o >= el.lastOrig && rp >= el.lastReply)) {
          this.settleEarlier(key, el, r);
          continue;
        }
      }
      if (t) {
        this.tombs.delete(key);
        if (r.kind === 'destroy' && sameFlow(t, r)) {
          if (r.origCounters && r.replyCounters) this.creditTomb(t, r.origCounters.bytes, r.replyCounters.bytes);
          this.destroyed.set(key, this.gen);
          continue;
        }
      }
      if (st && r.kind === 'destroy' && st.hasCounters && r.origCounters && r.replyCounters && (r.origCounters.bytes < st.lastOrig || r.replyCounters.bytes < st.lastReply)) {
        // Below the current reading: an earlier life's DESTROY whose bytes were settled already.
        this.health.staleDestroys++;
        continue;
      }
      if (!st) {
        if (r.kind !== 'destroy' || !this.initialDone) continue;
        // Born and dead between two dumps (or its NEW was lost): counted whole.
        st = this.create(key, r);
        this.attribute([st]);
      }
      this.apply(st, r);
      if (r.kind === 'destroy') {
        this.markClosed(st);
        this.retire(st);
        this.destroyed.set(key, this.gen);
        this.onRetire?.(st, 'destroy');
      }
    }
    this.attribute(created);
  }

  /** Starts the first interval (after the initial dump): rates are measured from here. */
  startInterval(): void {
    this.lastSnapshot = this.now();
  }

  /** The kernel dropped events: the caller resyncs with a dump. */
  overrun(): void {
    this.health.lostEvents++;
  }

  resynced(): void {
    this.health.resyncs++;
  }

  private create(key: FlowId, r: FlowRecord): FlowState {
    const dir = classify(r, this.local());
    const st: FlowState = {
      key,
      shape: shapeOf(r),
      rec: r,
      dir,
      // A flow with no end here may have one in a container's namespace on this host.
      ends: (dir === 'forwarded' ? (this.foreign?.endsOf(r) ?? []) : localEnds(r, dir).map((end) => ({ end, netns: undefined }))).map(({ end, netns }) => ({
        end,
        ...(netns ? { netns } : {}),
        sock: null,
        owner: null,
        tries: 0,
        lastTry: -Infinity,
        sentTotal: 0,
        recvTotal: 0,
        sentInterval: 0,
        recvInterval: 0,
      })),
      lastOrig: 0,
      lastReply: 0,
      hasCounters: false,
      origTotal: 0,
      replyTotal: 0,
      origInterval: 0,
      replyInterval: 0,
      seenGen: this.gen,
      goneSince: null,
      isNew: true,
      closed: false,
      missed: false,
      closedCounted: false,
      born: this.now(),
    };
    this.flows.set(key, st);
    return st;
  }

  private apply(st: FlowState, r: FlowRecord): void {
    // Events carry no counters, timeouts or (DESTROY) a full record: keep what the richer one had.
    if (r.kind !== 'destroy') {
      if (r.reply) st.rec = { ...r, startMs: r.startMs ?? st.rec.startMs, skOrig: st.rec.skOrig, skReply: st.rec.skReply };
    } else {
      st.rec = { ...st.rec, tcpState: r.tcpState ?? st.rec.tcpState, startMs: r.startMs ?? st.rec.startMs, stopMs: r.stopMs, eventMs: r.eventMs };
    }
    const c = r.origCounters && r.replyCounters;
    this.applyCounters(
      st,
      c ? r.origCounters!.bytes : null,
      r.origCounters?.packets ?? 0,
      c ? r.replyCounters!.bytes : null,
      r.replyCounters?.packets ?? 0,
      r.tcpState,
    );
  }

  /** One reading of a flow's counters (null bytes: the flow has none) and TCP state. */
  private applyCounters(st: FlowState, origBytes: number | null, origPackets: number, replyBytes: number | null, replyPackets: number, tcpState: number | null): void {
    if (tcpState !== null) {
      st.rec.tcpState = tcpState;
      if (TCP_CLOSED_STATES.has(tcpState)) this.markClosed(st);
    }
    if (origBytes === null || replyBytes === null) return;
    // The record keeps the latest counters (flow logs read them at retirement).
    if (st.rec.origCounters && st.rec.replyCounters) {
      st.rec.origCounters.bytes = origBytes;
      st.rec.origCounters.packets = origPackets;
      st.rec.replyCounters.bytes = replyBytes;
      st.rec.replyCounters.packets = replyPackets;
    } else {
      st.rec.origCounters = { bytes: origBytes, packets: origPackets };
      st.rec.replyCounters = { bytes: replyBytes, packets: replyPackets };
    }
    st.hasCounters = true;
    const dOrig = origBytes - st.lastOrig;
    const dReply = replyBytes - st.lastReply;
    // Readings below the last one are another life of the flow (dumps start a new FlowState for
    // it, see dumpOne): never counted against this one.
    if (dOrig < 0 || dReply < 0) return;
    st.lastOrig = origBytes;
    st.lastReply = replyBytes;
    if (dOrig === 0 && dReply === 0) return;
    if (st.ends.length === 0) {
      st.origTotal += dOrig;
      st.replyTotal += dReply;
      st.origInterval += dOrig;
      st.replyInterval += dReply;
      return;
    }
    for (const e of st.ends) {
      const b = endBytes(e.end.side, dOrig, dReply);
      e.sentTotal += b.sent;
      e.recvTotal += b.recv;
      e.sentInterval += b.sent;
      e.recvInterval += b.recv;
    }
  }

  private markClosed(st: FlowState): void {
    st.closed = true;
  }

  // ---- attribution ----

  /** Resolves owners for the given flows in one batch (one /proc scan at most for all misses). */
  attribute(states: FlowState[]): void {
    const todo: EndState[] = [];
    const todoSt: FlowState[] = [];
    const fam: (4 | 6)[] = [];
    const protos: number[] = [];
    const foreign: { e: EndState; family: 4 | 6; proto: number; end: FlowEnd; netns: number[] }[] = [];
    const now = this.now();
    for (const st of states) {
      for (const e of st.ends) {
        if (e.owner?.pid != null) continue;
        const hit = e.tries === 0 ? this.newTimeHit(st.rec, e.end.side) : null;
        e.tries++;
        e.lastTry = now;
        // A closed client connection's socket is gone for good: only inference can help it now.
        if (st.closed && e.end.side === 'orig' && e.tries > 1) continue;
        if (e.netns) {
          foreign.push({ e, family: st.rec.family, proto: st.rec.proto, end: e.end, netns: e.netns });
          continue;
        }
        e.sock = this.owners.socketFor(st.rec.family, st.rec.proto, e.end, hit) ?? e.sock;
        // No socket (a client's, gone to TIME_WAIT before it was seen): who closed it, if tracked.
        if (!e.sock && this.closer(st, e)) continue;
        if (e.sock) {
          todo.push(e);
          todoSt.push(st);
          fam.push(st.rec.family);
          protos.push(st.rec.proto);
        }
      }
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
    const server = st.rec.proto === 6 && e.end.side === 'reply';
    // A listener with one holder and no children: its process is the one that accepts (fd passing
    // aside), so nothing is looked at again; the per-connection cost stays that of one lookup.
    // An SO_REUSEPORT group member is one of several listeners: the one the kernel's lookup named
    // need not be the one that accepts, so it is provisional too.
    const provisional =
      server && e.sock.state === SK_LISTEN && (this.owners.multiProcess(e.sock.inode) || this.owners.listenerGroup(st.rec.family, e.end.localPort ?? 0));
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
  private accepted(st: FlowState, r: FlowRecord): void {
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
    const c = this.owners.closedBy(st.rec.family, st.rec.proto, e.end, now - st.born + 2000);
    if (!c) return false;
    this.health.closedBy++;
    if (e.owner?.pid != null && (c.pid !== e.owner.pid || c.startTime !== e.owner.startTime)) this.health.moved++;
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
  private settleByCloser(st: FlowState): void {
    if (st.rec.proto !== 6) return;
    for (const e of st.ends) {
      if (e.netns) continue;
      // A shared connection socket keeps the lowest pid, unless it was a hand-over: a server
      // connection held by the process that accepted it (a listener holder) and its child, the
      // fork-after-accept model, where the child that closes it is the one that served it.
      if (e.owner?.shared && e.sock?.state !== SK_LISTEN && !this.handedOver(e)) continue;
      if (e.owner?.pid != null && !e.inferred && e.sock?.state !== SK_LISTEN && !e.unsettled) {
        // An exact owner: only a different closer of this very connection moves it.
        const c = this.owners.closedBy(st.rec.family, st.rec.proto, e.end, this.now() - st.born + 2000);
        if (!c || (c.pid === e.owner.pid && c.startTime === e.owner.startTime)) continue;
        this.health.moved++;
        this.health.closedBy++;
        e.owner = c;
        continue;
      }
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
    const s = this.owners.exactSocket(st.rec.family, st.rec.proto, e.end);
    const wasListener = e.sock!.state === SK_LISTEN;
    if (!s || s.inode === 0 || s.state === SK_LISTEN) {
      // Not accepted yet: in the accept queue or a request (inode 0). The kernel answers with the
      // listener when the tuple has no socket at all: before the handshake completes, or gone.
      if (wasListener && s && NOT_ACCEPTED_YET.has(s.state)) return;
      if (wasListener && s?.state === SK_LISTEN && (st.rec.tcpState ?? 0) < 3 && now - e.firstSeen! < 1000) return;
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
        const key = `${e.end.remoteAddr} ${e.end.remotePort} ${st.rec.proto}`;
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

  private newTimeHit(r: FlowRecord, side: 'orig' | 'reply'): SockInfo | null {
    const h = side === 'orig' ? r.skOrig : r.skReply;
    return h && h.found ? { inode: h.inode, uid: h.uid, state: h.state, pid: h.pid } : null;
  }

  /** Retries ends still without an owner, each at most every retryMs. */
  retryUnattributed(): void {
    const now = this.now();
    const due: FlowState[] = [];
    for (const st of this.flows.values()) {
      if (st.ends.some((e) => e.owner?.pid == null && now - e.lastTry >= this.opt.retryMs)) due.push(st);
    }
    if (due.length) this.attribute(due);
  }

  // ---- output ----

  /** Moves a flow's totals into the retired rows; returns, per end, the rows that took them. */
  private retire(st: FlowState): Tombstone['ends'] {
    this.flows.delete(st.key);
    this.settleByCloser(st);
    if (st.ends.length === 0) {
      if (this.passes(this.filters, st, null) && !this.filters.pids && !this.filters.users) {
        this.retiredForwarded.sent_total += st.origTotal;
        this.retiredForwarded.recv_total += st.replyTotal;
      }
      return [];
    }
    // Arrays built by push keep spare capacity (16 slots): tombstones live long and are many, so
    // theirs are copied to exact size below.
    const out: Tombstone['ends'] = [];
    for (const e of st.ends) {
      if (!this.passes(this.filters, st, e)) continue;
      const unknown = e.owner?.pid == null;
      const rows: TopRow[] = [];
      if (unknown) {
        this.retiredUnknown.sent_total += e.sentTotal;
        this.retiredUnknown.recv_total += e.recvTotal;
        const rb = reasonBucket(this.retiredReasons, endReason(e));
        rb.sent_total += e.sentTotal;
        rb.recv_total += e.recvTotal;
      }
      for (const g of ['process', 'conn', 'remote', 'port', 'user', 'container', 'unit'] as GroupBy[]) {
        const k = this.groupKey(g, st, e);
        if (k === null) continue;
        const map = this.retired[g];
        let row = map.get(k);
        if (!row) {
          row = this.describe(g, k, st, e);
          if (g === 'conn' && map.size >= this.opt.maxRetiredConns) {
            // The oldest row, from one long-lived iterator: a fresh `map.entries().next()` walks over
            // every hole earlier deletions left (~48 µs at 20k rows, per new connection).
            let next = this.connEvict?.next();
            if (!next || next.done) next = (this.connEvict = map.entries()).next();
            const [oldKey, oldRow] = next.value as [string, TopRow];
            map.delete(oldKey);
            this.retiredAt.delete(oldRow);
            this.dirtyRetired.delete(oldRow);
            this.health.retiredConnsDropped++;
          }
          map.set(k, row);
        }
        row.sent_total += e.sentTotal;
        row.recv_total += e.recvTotal;
        // Bytes of this refresh not yet reported still show up in this refresh's rate.
        row.sent_bytes += e.sentInterval;
        row.recv_bytes += e.recvInterval;
        if (st.isNew) row.new_flows++;
        if (!st.closedCounted) row.closed_flows++;
        this.dirtyRetired.add(row);
        this.retiredAt.set(row, this.now());
        // Per-connection rows are capped and evicted: a tombstone must not keep them alive.
        if (g !== 'conn') rows.push(row);
      }
      out.push({ side: e.end.side, rows: rows.slice(), unknown });
    }
    return out.slice();
  }

  private intern(ends: Tombstone['ends']): Tombstone['ends'] {
    const id = (r: TopRow) => {
      let n = this.rowIds.get(r);
      if (n === undefined) this.rowIds.set(r, (n = this.nextRowId++));
      return n;
    };
    const key = ends.map((e) => `${e.side}${e.unknown ? '?' : ''}:${e.rows.map(id).join(',')}`).join(';');
    const seen = this.endsIntern.get(key);
    if (seen) return seen;
    if (this.endsIntern.size >= 100_000) this.endsIntern.clear(); // sharing is an optimisation only
    this.endsIntern.set(key, ends);
    return ends;
  }

  /** A late reading of a tombstoned flow: the growth goes straight to its retired rows. */
  private creditTomb(t: Tombstone, origBytes: number, replyBytes: number): void {
    const dOrig = Math.max(0, origBytes - t.lastOrig);
    const dReply = Math.max(0, replyBytes - t.lastReply);
    t.lastOrig = Math.max(t.lastOrig, origBytes);
    t.lastReply = Math.max(t.lastReply, replyBytes);
    if (dOrig === 0 && dReply === 0) return;
    if (t.ends.length === 0) {
      this.retiredForwarded.sent_total += dOrig;
      this.retiredForwarded.recv_total += dReply;
      return;
    }
    for (const e of t.ends) {
      const b = endBytes(e.side, dOrig, dReply);
      if (e.unknown) {
        this.retiredUnknown.sent_total += b.sent;
        this.retiredUnknown.recv_total += b.recv;
      }
      for (const row of e.rows) {
        row.sent_total += b.sent;
        row.recv_total += b.recv;
        row.sent_bytes += b.sent;
        row.recv_bytes += b.recv;
        this.dirtyRetired.add(row);
      }
    }
  }

  /**
   * Forgets the totals of ended flows for keys that took no bytes for `idleMs` (a daemon must not
   * keep every key it ever saw; `top` keeps them all, as its contract says). Returns rows dropped.
   */
  pruneRetired(idleMs: number): number {
    const limit = this.now() - idleMs;
    let n = 0;
    for (const g of Object.keys(this.retired) as GroupBy[]) {
      for (const [k, row] of this.retired[g]) {
        if ((this.retiredAt.get(row) ?? 0) >= limit) continue;
        this.retired[g].delete(k);
        this.retiredAt.delete(row);
        this.dirtyRetired.delete(row);
        this.peaks.delete(`${g}\u0000${k}`);
        n++;
      }
    }
    return n;
  }

  /**
   * The row an end's bytes go to, or null for none. Groupings by owner (process, user) take every
   * end; groupings by a flow attribute (port, remote, conn) count a flow once, so a flow with two
   * local ends (loopback) counts there only from its answering end.
   */
  groupKey(g: GroupBy, st: FlowState, e: EndState): string | null {
    if (e.end.side === 'orig' && st.ends.length === 2 && (g === 'port' || g === 'remote' || g === 'conn')) return null;
    switch (g) {
      case 'process':
        // (pid, start time): a reused pid is another process, with its own row.
        return e.owner?.pid != null ? (e.owner.startTime != null ? `${e.owner.pid}@${e.owner.startTime}` : String(e.owner.pid)) : null;
      case 'user':
        return e.owner?.uid != null ? String(e.owner.uid) : null;
      case 'remote':
        return e.end.remoteAddr;
      case 'port': {
        const port = st.rec.orig.dport;
        return port === null ? protoName(st.rec.proto) : `${protoName(st.rec.proto)}/${port}`;
      }
      case 'conn':
        return `${protoName(st.rec.proto)} ${formatHostPort(e.end.localAddr, e.end.localPort)} ${formatHostPort(e.end.remoteAddr, e.end.remotePort)}`;
      case 'container':
        if (e.owner?.pid == null) return null;
        return e.owner.container ? `${e.owner.container.runtime}/${e.owner.container.id}` : 'host';
      case 'unit':
        if (e.owner?.pid == null) return null;
        return e.owner.unit ?? '-';
    }
  }

  private describe(g: GroupBy, key: string, st: FlowState, e: EndState): TopRow {
    const row = blankRow(key);
    const o = e.owner;
    if (g === 'process' || g === 'conn') {
      // The row key stays the pid (the JSON contract); start_time completes the identity.
      if (g === 'process' && o?.pid != null) row.key = String(o.pid);
      row.start_time = o?.startTime ?? null;
      row.pid = o?.pid ?? null;
      row.comm = o?.comm ?? null;
      row.cmdline = o?.cmdline ?? null;
      row.uid = o?.uid ?? null;
      row.user = o?.user ?? null;
      if (o?.shared) row.shared = true;
    }
    if (g === 'user') {
      row.uid = o?.uid ?? null;
      row.user = o?.user ?? null;
    }
    if (g === 'process' || g === 'conn') row.netns = o?.netns ?? e.netns?.[0] ?? null;
    if (g === 'process' || g === 'conn' || g === 'container') row.container = o?.container ?? null;
    if (g === 'process' || g === 'conn' || g === 'unit') row.unit = o?.unit ?? null;
    // Every process of a container lives in its namespace (pods: one namespace for all).
    if (g === 'container') row.netns = o?.container ? (o?.netns ?? e.netns?.[0] ?? null) : null;
    if (g === 'remote') row.remote = e.end.remoteAddr;
    if (g === 'port') {
      row.port = st.rec.orig.dport;
      row.proto = protoName(st.rec.proto);
    }
    if (g === 'conn') {
      row.proto = protoName(st.rec.proto);
      row.local = formatHostPort(e.end.localAddr, e.end.localPort);
      row.remote = formatHostPort(e.end.remoteAddr, e.end.remotePort);
      row.state = st.rec.proto === 6 ? ctTcpStateName(st.rec.tcpState) : null;
    }
    return row;
  }

  private passes(f: Filters, st: FlowState, e: EndState | null): boolean {
    return flowPasses(f, st.rec, e ? [e] : []);
  }

  /**
   * Builds the refresh's snapshot and starts a new interval. Rows hold every key with traffic
   * since start (idle ones included), sorted, capped only by `limit`.
   */
  snapshot(opts: { groupBy: GroupBy; sort: SortKey; filters?: Filters; limit?: number; time: string; self?: { cpu_percent: number; rss_bytes: number }; changes?: string[] }): TopSnapshot {
    const now = this.now();
    const from = this.lastSnapshot ?? now;
    const intervalS = this.lastSnapshot === null ? 0 : Math.max((now - this.lastSnapshot) / 1000, 1e-3);
    this.lastSnapshot = now;
    const g = opts.groupBy;
    // The run's filters were applied to ended flows as they retired; a per-call filter (tests,
    // other views) can only be applied to retired rows by their own fields.
    const f = opts.filters ?? this.filters;
    const rows = new Map<string, TopRow>();
    const filtered = opts.filters !== undefined && Object.keys(opts.filters).length > 0;
    const anyFilter = Object.keys(f).length > 0;
    // Retired totals first (filters cannot be applied to retired aggregates by flow, so with
    // filters the rows come from the retired rows' own fields where possible).
    for (const [k, r] of this.retired[g]) {
      if (filtered && !this.retiredPasses(g, r, f)) continue;
      rows.set(k, { ...r });
    }
    for (const r of this.dirtyRetired) {
      r.sent_bytes = 0;
      r.recv_bytes = 0;
      r.new_flows = 0;
      r.closed_flows = 0;
    }
    this.dirtyRetired.clear();
    const forwarded = { ...this.retiredForwarded };
    const unknown: Bucket = { ...this.retiredUnknown };
    const reasons = new Map<string, Bucket>();
    for (const [k, b] of this.retiredReasons) reasons.set(k, { ...b });
    let withoutCounters = 0;
    for (const st of this.flows.values()) {
      if (!st.hasCounters) withoutCounters++;
      if (st.ends.length === 0) {
        if (anyFilter && (!this.passes(f, st, null) || f.pids || f.users)) {
          st.origInterval = st.replyInterval = 0;
          continue;
        }
        forwarded.sent_total += st.origTotal;
        forwarded.recv_total += st.replyTotal;
        if (!st.closed) forwarded.flows++;
        st.origInterval = st.replyInterval = 0;
        continue;
      }
      for (const e of st.ends) {
        if (anyFilter && !this.passes(f, st, e)) {
          e.sentInterval = e.recvInterval = 0;
          continue;
        }
        if (e.owner?.pid == null) {
          unknown.sent_total += e.sentTotal;
          unknown.recv_total += e.recvTotal;
          if (!st.closed) unknown.flows++;
          const rb = reasonBucket(reasons, endReason(e));
          rb.sent_total += e.sentTotal;
          rb.recv_total += e.recvTotal;
          if (!st.closed) rb.flows++;
        }
        if (e.keyFor !== g || e.keyOwner !== e.owner) {
          e.key = this.groupKey(g, st, e);
          e.keyFor = g;
          e.keyOwner = e.owner;
        }
        const k = e.key!;
        if (k !== null) {
          let row = rows.get(k);
          if (!row) {
            row = this.describe(g, k, st, e);
            rows.set(k, row);
          } else if (g === 'conn') {
            row.state = st.rec.proto === 6 ? ctTcpStateName(st.rec.tcpState) : null;
          }
          if (e.owner?.shared && (g === 'process' || g === 'conn')) row.shared = true;
          row.sent_total += e.sentTotal;
          row.recv_total += e.recvTotal;
          row.sent_bytes += e.sentInterval;
          row.recv_bytes += e.recvInterval;
          if (!st.closed) row.flows++;
          if (st.isNew) row.new_flows++;
          if (st.closed && !st.closedCounted) row.closed_flows++;
        }
        e.sentInterval = e.recvInterval = 0;
      }
    }
    for (const st of this.flows.values()) {
      st.isNew = false;
      if (st.closed) st.closedCounted = true;
    }
    const list = [...rows.values()];
    for (const r of list) {
      r.sent_bps = intervalS > 0 ? r.sent_bytes / intervalS : 0;
      r.recv_bps = intervalS > 0 ? r.recv_bytes / intervalS : 0;
    }
    this.windows(g, from, now, list);
    list.sort(compareRows(opts.sort));
    const health: Health = {
      flows_tracked: this.flows.size + this.tombs.size,
      events: this.health.events,
      lost_events: this.health.lostEvents,
      resyncs: this.health.resyncs,
      flows_without_counters: withoutCounters,
      malformed: this.health.malformed,
      unattributed_flows: unknown.flows,
      inferred_flows: this.health.inferred,
      retired_conns_dropped: this.health.retiredConnsDropped,
      dump_failures: this.health.dumpFailures,
      accepts_missed: this.health.acceptsMissed,
      closed_by_tracker: this.health.closedBy,
      ...(opts.changes ? { changes: opts.changes } : {}),
    };
    unknown.reasons = Object.fromEntries([...reasons].sort(([a], [b]) => (a < b ? -1 : 1)));
    return {
      time: opts.time,
      interval_s: Math.round(intervalS * 1000) / 1000,
      group_by: g,
      rows: opts.limit !== undefined ? list.slice(0, opts.limit) : list,
      unattributed: { forwarded, unknown },
      health,
      self: opts.self ?? { cpu_percent: 0, rss_bytes: 0 },
    };
  }

  private retiredPasses(g: GroupBy, r: TopRow, f: Filters): boolean {
    // Retired rows keep only their group's fields: a filter on another field cannot be decided,
    // so a filtered view shows retired rows only when the filter is on the grouped field itself.
    if (f.pids) return g === 'process' && r.pid !== null && f.pids.includes(r.pid);
    if (f.users) return (g === 'process' || g === 'user') && f.users(r.uid, r.user);
    if (f.host) return (g === 'remote' || g === 'conn') && r.remote !== null && f.host(r.remote.replace(/^\[?([^\]]*)\]?(:\d+)?$/, '$1'));
    if (f.ports) return g === 'port' && r.port !== null && f.ports.includes(r.port);
    return g !== 'conn' && !f.proto && !f.family;
  }

  /** 2 s / 10 s / 40 s sliding rates and peaks for the current group-by. */
  private windows(g: GroupBy, from: number, now: number, rows: TopRow[]): void {
    const rates = new Map<string, [number, number]>();
    for (const r of rows) rates.set(r.key, [r.sent_bytes, r.recv_bytes]);
    while (this.history.length && (this.history[0]!.groupBy !== g || now - this.history[0]!.t > 40_000)) this.history.shift();
    this.history.push({ from, t: now, groupBy: g, rates });
    for (const r of rows) {
      for (const [w, sk, rk] of [
        [2000, 'sent_bps_2s', 'recv_bps_2s'],
        [10000, 'sent_bps_10s', 'recv_bps_10s'],
        [40000, 'sent_bps_40s', 'recv_bps_40s'],
      ] as const) {
        let s = 0;
        let rcv = 0;
        let start = now;
        // Whole refresh intervals ending within the window; the rate is over their span.
        for (let i = this.history.length - 1; i >= 0; i--) {
          const h = this.history[i]!;
          if (now - h.from > w + 1) break;
          const v = h.rates.get(r.key);
          if (v) {
            s += v[0];
            rcv += v[1];
          }
          start = h.from;
        }
        const span = (now - start) / 1000;
        r[sk] = span > 0 ? s / span : r.sent_bps;
        r[rk] = span > 0 ? rcv / span : r.recv_bps;
      }
      const pk = `${g}\u0000${r.key}`;
      const p = this.peaks.get(pk) ?? [0, 0];
      p[0] = Math.max(p[0], r.sent_bps);
      p[1] = Math.max(p[1], r.recv_bps);
      this.peaks.set(pk, p);
      r.sent_peak_bps = p[0];
      r.recv_peak_bps = p[1];
    }
  }
}

function endReason(e: EndState): UnattributedReason {
  return e.reason ?? (e.netns ? 'not_found_in_netns' : e.sock ? 'no_process' : 'no_socket');
}

function reasonBucket(m: Map<string, Bucket>, reason: string): Bucket {
  let b = m.get(reason);
  if (!b) m.set(reason, (b = emptyBucket()));
  return b;
}
