// The flow table (README "How to read the numbers"): dump batches, raw dumps and event batches in;
// per-flow deltas between readings out. A flow can have several lives under one key: counters below
// the last reading start a new life, each life is settled by its own DESTROY, and a DESTROY below the
// current reading belongs to an earlier life. Finished flows shrink to tombstones; a failed dump
// closes nothing. Owners come from the attributor, totals of ended flows go to the roll-up.
import { decodeOne, HAS, readU64, RECORD_SIZE, type FlowRecord, type SockHit } from '../netlink/record.js';
import { classify, endBytes, flowKey, localEnds, rawFlowKey, sameFlow, sameFlowRaw, shapeOf, type Direction, type FlowEnd, type FlowId, type FlowShape, type LocalAddresses } from './flow.js';
import type { GroupBy } from './model.js';
import type { Owner, SockInfo } from './owners.js';
import type { ForeignAttributor, UnattributedReason } from './foreign.js';
import type { Attributor } from './attributor.js';
import type { RetiredEnds, Rollup } from './rollup.js';

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
   *  socket. Such ends are looked at again (see Attributor.recheck). */
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
export interface Tombstone extends FlowShape {
  lastOrig: number;
  lastReply: number;
  /** Per local end: the retired rows (one per group-by) its bytes go to, and whether it is unknown. */
  ends: RetiredEnds;
  seenGen: number;
  goneSince: number | null;
}

export interface FlowState {
  key: FlowId;
  /** What the key must keep naming (see sameFlow); also the flow's protocol and original ports. */
  shape: FlowShape;
  family: 4 | 6;
  /** TCP_CONNTRACK_* state of the latest reading (null: not TCP, or not sent). */
  tcpState: number | null;
  /** The sockets the addon found as the NEW event was read: the first attribution takes them. */
  skOrig: SockHit | null;
  skReply: SockHit | null;
  /** The latest full record, kept only where something reads it later: a flow log (onRetire,
   *  which writes every detail at the flow's end) and flows with no local end (their addresses).
   *  Null otherwise: it is about 400 bytes a flow, a third of a live flow's memory. */
  rec: FlowRecord | null;
  dir: Direction;
  ends: EndState[];
  /** Counter readings already accounted (the baseline for the next delta). */
  lastOrig: number;
  lastReply: number;
  hasCounters: boolean;
  /** Totals for flows with no local end (forwarded). */
  origTotal: number;
  replyTotal: number;
  /** Dump generation that last saw it. */
  seenGen: number;
  /** Monotonic ms when a complete dump first missed it (its DESTROY is due). */
  goneSince: number | null;
  /** New in the interval (not met in the initial dump). */
  isNew: boolean;
  closed: boolean;
  /** Closed only because a dump did not list it: a later dump that lists it opens it again. */
  missed: boolean;
  /** Its closing was counted in an interval already closed. */
  closedCounted: boolean;
  /** The interval that the per-interval fields (the *Interval bytes of the flow and its ends, isNew,
   *  closedCounted) are up to date for: closing an interval visits no flow (see FlowTable.fresh). */
  interval: number;
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

/** Counters of what the accounting met (the snapshot's health line and tests read them). */
export function newHealth() {
  return {
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
}
export type AccountingHealth = ReturnType<typeof newHealth>;

/** Counter readings already accounted: the baseline for the next delta. */
interface Reading {
  lastOrig: number;
  lastReply: number;
}

/** Counters below the last reading are another life of the flow (the kernel never counts down). */
function below(last: Reading, origBytes: number, replyBytes: number): boolean {
  return origBytes < last.lastOrig || replyBytes < last.lastReply;
}

const TCP_CLOSED_STATES = new Set([7, 8]); // TIME_WAIT, CLOSE

export interface FlowTableOptions {
  /** Called once for every flow that leaves the table (see AccountingOptions.onRetire). */
  onRetire?: (st: FlowState, reason: 'destroy' | 'vanished') => void;
  /** Keep a flow that vanished from dumps this long waiting for its DESTROY (ms). */
  goneTimeoutMs: number;
  /** Keep each flow's full latest record (see FlowState.rec): the flow log needs it. */
  keepRecords?: boolean;
  /** Ends in other local network namespaces, for flows with no end here. */
  foreign?: ForeignAttributor;
}

export class FlowTable {
  /** Finished flows whose bytes are all accounted (see Tombstone). */
  private readonly tombs = new Map<FlowId, Tombstone>();
  private gen = 0;
  private initialDone = false;
  /** The open interval's number: closeInterval() counts up. */
  interval = 0;
  /** Flows settled by DESTROY, by key → dump generation: a dump batch read by the kernel before
   *  the entry died may arrive after its DESTROY; it must not bring the flow back. */
  private readonly destroyed = new Map<FlowId, number>();
  /** Earlier lives waiting for their DESTROY, by key (see EarlierLife). */
  private readonly earlier = new Map<FlowId, EarlierLife>();
  private readonly opt: { goneTimeoutMs: number };
  private readonly onRetire: FlowTableOptions['onRetire'];
  /** Flows keep their full record (a flow log reads it at their end). */
  private readonly keepRecords: boolean;
  private readonly foreign: ForeignAttributor | undefined;

  constructor(
    private readonly local: () => LocalAddresses,
    private readonly now: () => number,
    private readonly health: AccountingHealth,
    private readonly attributor: Attributor,
    private readonly rollup: Rollup,
    /** Live flows by key (shared with the attributor, which reads them). */
    readonly flows: Map<FlowId, FlowState>,
    opts: FlowTableOptions,
  ) {
    this.onRetire = opts.onRetire;
    this.keepRecords = opts.keepRecords === true;
    this.foreign = opts.foreign;
    this.opt = { goneTimeoutMs: opts.goneTimeoutMs };
  }

  /** Flows the table holds, tombstones included. */
  get size(): number {
    return this.flows.size + this.tombs.size;
  }

  beginDump(): void {
    this.gen++;
  }

  /** Live counters from a dump batch (decoded records). */
  dumpBatch(batch: FlowRecord[]): void {
    const created: FlowState[] = [];
    for (const r of batch) this.dumpOne(r, created);
    this.attributor.attribute(created);
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
      if (st !== undefined && sameFlowRaw(st.shape, view, base, present) && !(hasC && below(st, o, rp))) {
        this.seen(st);
        this.applyCounters(st, hasC ? o : null, hasC ? readU64(view, base + 48) : 0, hasC ? rp : null, hasC ? readU64(view, base + 64) : 0, present & HAS.tcpState ? view.getUint8(base + 3) : null);
        if (st.rec && present & HAS.timeout) st.rec.timeout = view.getUint32(base + 20, true);
        continue;
      }
      if (st === undefined && id !== null) {
        const t = this.tombs.get(id);
        if (t !== undefined && sameFlowRaw(t, view, base, present) && !(hasC && below(t, o, rp))) {
          t.seenGen = this.gen;
          t.goneSince = null;
          if (hasC) this.rollup.creditTomb(t, o, rp);
          continue;
        }
      }
      this.dumpOne(decodeOne(view, buf, base), created);
    }
    this.attributor.attribute(created);
  }

  private dumpOne(r: FlowRecord, created: FlowState[]): void {
    const key = flowKey(r);
    const shape = shapeOf(r);
    const c = r.origCounters && r.replyCounters ? r : null;
    const lower = (last: Reading) => c !== null && below(last, c.origCounters!.bytes, c.replyCounters!.bytes);
    let newLife = false;
    const t = this.tombs.get(key);
    if (t) {
      this.tombs.delete(key); // unless it is the same life, below
      if (sameFlow(t, shape)) {
        if (!lower(t)) {
          this.tombs.set(key, t);
          t.seenGen = this.gen;
          t.goneSince = null;
          if (c) this.rollup.creditTomb(t, c.origCounters!.bytes, c.replyCounters!.bytes);
          return;
        }
        // A finished flow's id is back with smaller counters: a new life.
        this.earlier.set(key, { proto: t.proto, sport: t.sport, dport: t.dport, lastOrig: t.lastOrig, lastReply: t.lastReply, ends: t.ends, seenGen: t.seenGen, goneSince: t.goneSince, st: null, at: this.now() });
        this.health.lives++;
        newLife = true;
      }
    }
    let st = this.flows.get(key);
    if (st && !sameFlow(st.shape, shape)) {
      // The id now names another flow: the old one ended without a DESTROY we saw.
      this.health.vanished++;
      this.markClosed(st);
      this.retire(st);
      this.onRetire?.(st, 'vanished');
      st = undefined;
    } else if (st && st.hasCounters && lower(st)) {
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
      st = this.create(key, r, shape);
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
      this.fresh(st);
      st.missed = false;
      st.closed = false;
      st.closedCounted = false;
    }
  }

  /** Retires a life that a new one replaced; it waits for its own DESTROY in `earlier`. */
  private endLife(st: FlowState): void {
    this.markClosed(st);
    const ends = this.retire(st);
    const sh = st.shape;
    this.earlier.set(st.key, { proto: sh.proto, sport: sh.sport, dport: sh.dport, lastOrig: st.lastOrig, lastReply: st.lastReply, ends, seenGen: this.gen, goneSince: null, st: this.onRetire ? st : null, at: this.now() });
  }

  /** A DESTROY for an earlier life: its remaining bytes go where its totals went. */
  private settleEarlier(key: FlowId, el: EarlierLife, r: FlowRecord): void {
    this.earlier.delete(key);
    const o = r.origCounters!.bytes;
    const rp = r.replyCounters!.bytes;
    this.rollup.creditTomb(el, o, rp);
    if (el.st) {
      el.st.lastOrig = Math.max(el.st.lastOrig, o);
      el.st.lastReply = Math.max(el.st.lastReply, rp);
      if (el.st.rec) el.st.rec = { ...el.st.rec, origCounters: r.origCounters, replyCounters: r.replyCounters, stopMs: r.stopMs, eventMs: r.eventMs };
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
        if (!st.closed || st.seenGen !== this.gen || st.shape.proto !== 6) continue;
        if (!st.ends.every((e) => e.owner?.pid != null || e.tries >= 3)) continue;
        // An explicit literal, not a spread of st.shape: spread copies took a map of their own per
        // tombstone here (V8's clone of the shape's map), +300 bytes for each finished flow.
        const sh = st.shape;
        this.tombs.set(st.key, {
          proto: sh.proto,
          sport: sh.sport,
          dport: sh.dport,
          lastOrig: st.lastOrig,
          lastReply: st.lastReply,
          ends: this.rollup.intern(this.retire(st)),
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
      const shape = shapeOf(r);
      let st = this.flows.get(key);
      if (r.kind === 'new') {
        // A dump may have met the flow (even finished and tombstoned it) before its NEW event came.
        const t = this.tombs.get(key);
        if (!st && !(t && sameFlow(t, shape))) {
          st = this.create(key, r, shape);
          created.push(st);
        } else if (st && sameFlow(st.shape, shape) && st.ends.some((e) => e.owner?.pid == null)) {
          // A dump met the flow first (no socket in a dump record); the NEW event carries the
          // sockets the addon found when it was read — possibly the only look that met them (a
          // server that exits right after its last connection takes its listener along).
          st.skOrig ??= r.skOrig;
          st.skReply ??= r.skReply;
          for (const e of st.ends) if (e.owner?.pid == null) e.tries = 0;
          created.push(st);
        }
        continue;
      }
      if (r.kind === 'update') {
        // The addon saw the accepted socket of a connection its NEW gave to the listener.
        if (st && sameFlow(st.shape, shape)) this.attributor.accepted(st, r);
        continue;
      }
      const t = this.tombs.get(key);
      const el = r.kind === 'destroy' ? this.earlier.get(key) : undefined;
      if (el && sameFlow(el, shape) && r.origCounters && r.replyCounters) {
        // Kernel order: an earlier life's DESTROY comes before the current life's. A DESTROY
        // below the current reading cannot be the current life's.
        const cur = st && sameFlow(st.shape, shape) ? st : t && sameFlow(t, shape) ? t : null;
        const o = r.origCounters.bytes;
        const rp = r.replyCounters.bytes;
        if ((cur !== null && below(cur, o, rp)) || !below(el, o, rp)) {
          this.settleEarlier(key, el, r);
          continue;
        }
      }
      if (t) {
        this.tombs.delete(key);
        if (r.kind === 'destroy' && sameFlow(t, shape)) {
          if (r.origCounters && r.replyCounters) this.rollup.creditTomb(t, r.origCounters.bytes, r.replyCounters.bytes);
          this.destroyed.set(key, this.gen);
          continue;
        }
      }
      if (st && r.kind === 'destroy' && st.hasCounters && r.origCounters && r.replyCounters && below(st, r.origCounters.bytes, r.replyCounters.bytes)) {
        // Below the current reading: an earlier life's DESTROY whose bytes were settled already.
        this.health.staleDestroys++;
        continue;
      }
      if (!st) {
        if (r.kind !== 'destroy' || !this.initialDone) continue;
        // Born and dead between two dumps (or its NEW was lost): counted whole.
        st = this.create(key, r, shape);
        this.attributor.attribute([st]);
      }
      this.apply(st, r);
      if (r.kind === 'destroy') {
        this.markClosed(st);
        this.retire(st);
        this.destroyed.set(key, this.gen);
        this.onRetire?.(st, 'destroy');
      }
    }
    this.attributor.attribute(created);
  }

  /** The kernel dropped events: the caller resyncs with a dump. */
  overrun(): void {
    this.health.lostEvents++;
  }

  resynced(): void {
    this.health.resyncs++;
  }

  private create(key: FlowId, r: FlowRecord, shape: FlowShape): FlowState {
    const dir = classify(r, this.local());
    const st: FlowState = {
      key,
      shape,
      family: r.family,
      tcpState: r.tcpState,
      skOrig: r.skOrig,
      skReply: r.skReply,
      rec: null,
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
      seenGen: this.gen,
      goneSince: null,
      isNew: true,
      closed: false,
      missed: false,
      closedCounted: false,
      interval: this.interval,
      born: this.now(),
    };
    if (this.keepRecords || st.ends.length === 0) st.rec = r;
    this.flows.set(key, st);
    return st;
  }

  private apply(st: FlowState, r: FlowRecord): void {
    // Events carry no counters, timeouts or (DESTROY) a full record: keep what the richer one had.
    if (st.rec) {
      if (r.kind !== 'destroy') {
        if (r.reply) st.rec = { ...r, startMs: r.startMs ?? st.rec.startMs, skOrig: st.rec.skOrig, skReply: st.rec.skReply };
      } else {
        st.rec = { ...st.rec, tcpState: r.tcpState ?? st.rec.tcpState, startMs: r.startMs ?? st.rec.startMs, stopMs: r.stopMs, eventMs: r.eventMs };
      }
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
    this.fresh(st);
    if (tcpState !== null) {
      st.tcpState = tcpState;
      if (st.rec) st.rec.tcpState = tcpState;
      if (TCP_CLOSED_STATES.has(tcpState)) this.markClosed(st);
    }
    if (origBytes === null || replyBytes === null) return;
    // A kept record holds the latest counters (flow logs read them at retirement).
    const rec = st.rec;
    if (rec?.origCounters && rec.replyCounters) {
      rec.origCounters.bytes = origBytes;
      rec.origCounters.packets = origPackets;
      rec.replyCounters.bytes = replyBytes;
      rec.replyCounters.packets = replyPackets;
    } else if (rec) {
      rec.origCounters = { bytes: origBytes, packets: origPackets };
      rec.replyCounters = { bytes: replyBytes, packets: replyPackets };
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
    this.fresh(st);
    st.closed = true;
  }

  /** Ends the interval for live flows: their per-interval bytes start again from zero, and the flows
   *  new or closed in it are no longer new, or counted as closed. Each flow catches up the next
   *  time it changes (fresh); readers treat a flow behind the open interval as caught up. */
  closeInterval(): void {
    this.interval++;
  }

  /** Brings a flow's per-interval fields up to the open interval before they change. Lazy, so a
   *  refresh costs nothing for the many flows that stay idle (TIME_WAIT) and no second pass over
   *  the table for the others. */
  private fresh(st: FlowState): void {
    if (st.interval === this.interval) return;
    st.interval = this.interval;
    for (const e of st.ends) e.sentInterval = e.recvInterval = 0;
    st.isNew = false;
    if (st.closed) st.closedCounted = true;
  }

  /** Moves a flow's totals into the retired rows; returns, per end, the rows that took them. */
  private retire(st: FlowState): RetiredEnds {
    this.fresh(st);
    this.flows.delete(st.key);
    this.attributor.settleByCloser(st);
    return this.rollup.retire(st);
  }
}
