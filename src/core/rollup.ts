// The roll-up: totals of ended flows per group-by and key (so rows keep every key since start),
// capped per-connection rows, tombstones' late bytes, pruning, and the 2 s / 10 s / 40 s sliding
// windows and peaks kept across intervals. Group keys and row descriptions are pure functions here,
// shared with the snapshot builder.
import { ctTcpStateName, protoName } from '../netlink/record.js';
import { endBytes, formatHostPort } from './flow.js';
import { blankRow, emptyBucket, type Bucket, type GroupBy, type TopRow } from './model.js';
import { flowPasses, type Filters } from './filters.js';
import type { UnattributedReason } from './foreign.js';
import type { AccountingHealth, EndState, FlowState } from './flowtable.js';
import type { Owner } from './owners.js';

/** Per local end of a retired flow: the retired rows (one per group-by) its bytes went to, and
 *  whether it had no owner. */
export type RetiredEnds = { side: 'orig' | 'reply'; rows: TopRow[]; unknown: boolean }[];

/** One closed interval's rates for the sliding windows: bytes per row key over [from, t]. */
export interface WindowEntry {
  from: number;
  t: number;
  groupBy: GroupBy;
  rates: Map<string, [number, number]>;
  /** Each row's rate over the interval, for the peaks. */
  bps: [string, number, number][];
}

const ALL_GROUPINGS: readonly GroupBy[] = ['process', 'conn', 'remote', 'port', 'user', 'container', 'unit'];

const WINDOWS = [
  [2000, 'sent_bps_2s', 'recv_bps_2s'],
  [10000, 'sent_bps_10s', 'recv_bps_10s'],
  [40000, 'sent_bps_40s', 'recv_bps_40s'],
] as const;

export class Rollup {
  /** Totals of flows that are gone, per group-by and key (so rows keep every key since start);
   *  per connection, see the ring below. */
  readonly retired: Record<Exclude<GroupBy, 'conn'>, Map<string, TopRow>> = {
    process: new Map(),
    remote: new Map(),
    port: new Map(),
    user: new Map(),
    container: new Map(),
    unit: new Map(),
  };
  /** When each retired row last took an ended flow's bytes (monotonic ms), for pruning. */
  private readonly retiredAt = new Map<TopRow, number>();
  /**
   * The last maxRetiredConns ended connections (--by conn), a ring from connHead: each one's flow
   * and end, and what retire() counted for it. Nothing is built per connection as it ends (no key
   * string, no row: at 5,000 connections/s that was most of retire()'s cost and garbage); rows
   * are built when a snapshot asks for them (connRows).
   */
  private readonly connSt: FlowState[] = [];
  private readonly connEnd: EndState[] = [];
  private readonly connKey: (string | undefined)[] = [];
  /** Per entry: sent and received totals, then this interval's sent and received bytes. */
  private connNums = new Float64Array(0);
  /** Per entry: the interval it ended in, when (monotonic ms), and 1 new + 2 closing not counted yet. */
  private connIv = new Float64Array(0);
  private connAt = new Float64Array(0);
  private connFlags = new Uint8Array(0);
  private connHead = 0;
  private connCount = 0;
  /** Intervals closed so far. */
  private intervalNo = 0;
  /** Retired rows whose per-refresh fields are non-zero, to reset when the interval closes. */
  private readonly dirtyRetired = new Set<TopRow>();
  readonly retiredForwarded = emptyBucket();
  readonly retiredUnknown = emptyBucket();
  /** Retired unknown bytes by reason. */
  readonly retiredReasons = new Map<string, Bucket>();
  /** Tombstones of flows between the same process, remote, port and user share one `ends`. */
  private readonly endsIntern = new Map<string, RetiredEnds>();
  private readonly rowIds = new WeakMap<TopRow, number>();
  private nextRowId = 1;
  /** Closed intervals of one group-by, the last 40 s (see windows()). */
  private readonly history: Omit<WindowEntry, 'bps'>[] = [];
  private readonly peaks = new Map<string, [number, number]>();
  private readonly opt: { maxRetiredConns: number };
  /** The group-bys whose retired rows are kept (what the run's snapshots can show). */
  readonly groupings: readonly GroupBy[];

  constructor(
    /** The run's filters: ended flows and ends they exclude are never counted. */
    private readonly filters: Filters,
    private readonly now: () => number,
    private readonly health: AccountingHealth,
    opts: { maxRetiredConns: number; groupings?: GroupBy[] },
  ) {
    this.opt = { maxRetiredConns: opts.maxRetiredConns };
    this.groupings = opts.groupings ? ALL_GROUPINGS.filter((g) => opts.groupings!.includes(g)) : ALL_GROUPINGS;
  }

  /** A snapshot by a group-by whose ended flows were not kept would lack their totals: refused. */
  assertKept(g: GroupBy): void {
    if (!this.groupings.includes(g)) throw new Error(`group-by '${g}' was not kept by this run (groupings: ${this.groupings.join(', ')})`);
  }

  /** Moves a flow's totals into the retired rows; returns, per end, the rows that took them. */
  retire(st: FlowState): RetiredEnds {
    if (st.ends.length === 0) {
      if (passes(this.filters, st, null) && !this.filters.pids && !this.filters.users) {
        this.retiredForwarded.sent_total += st.origTotal;
        this.retiredForwarded.recv_total += st.replyTotal;
      }
      return [];
    }
    // Arrays built by push keep spare capacity (16 slots): tombstones live long and are many, so
    // theirs are copied to exact size below.
    const out: RetiredEnds = [];
    for (const e of st.ends) {
      if (!passes(this.filters, st, e)) continue;
      const unknown = e.owner?.pid == null;
      const rows: TopRow[] = [];
      if (unknown) {
        this.retiredUnknown.sent_total += e.sentTotal;
        this.retiredUnknown.recv_total += e.recvTotal;
        const rb = reasonBucket(this.retiredReasons, endReason(e));
        rb.sent_total += e.sentTotal;
        rb.recv_total += e.recvTotal;
      }
      for (const g of this.groupings) {
        if (g === 'conn') {
          if (!(e.end.side === 'orig' && st.ends.length === 2)) this.pushConn(st, e);
          continue;
        }
        const k = groupKey(g, st, e);
        if (k === null) continue;
        const map = this.retired[g];
        let row = map.get(k);
        if (!row) {
          row = describe(g, k, st, e);
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
        rows.push(row);
      }
      out.push({ side: e.end.side, rows: rows.slice(), unknown });
    }
    return out.slice();
  }

  /** Keeps an ended connection's end for --by conn, dropping the oldest past maxRetiredConns. */
  private pushConn(st: FlowState, e: EndState): void {
    const cap = this.opt.maxRetiredConns;
    if (cap <= 0) return;
    if (this.connNums.length === 0) {
      this.connNums = new Float64Array(cap * 4);
      this.connIv = new Float64Array(cap);
      this.connAt = new Float64Array(cap);
      this.connFlags = new Uint8Array(cap);
    }
    if (this.connCount === cap) {
      this.connHead = (this.connHead + 1) % cap;
      this.connCount--;
      this.health.retiredConnsDropped++;
    }
    const i = (this.connHead + this.connCount) % cap;
    this.connCount++;
    this.connSt[i] = st;
    this.connEnd[i] = e;
    this.connKey[i] = undefined;
    const n = this.connNums;
    n[i * 4] = e.sentTotal;
    n[i * 4 + 1] = e.recvTotal;
    n[i * 4 + 2] = e.sentInterval;
    n[i * 4 + 3] = e.recvInterval;
    this.connIv[i] = this.intervalNo;
    this.connAt[i] = this.now();
    this.connFlags[i] = (st.isNew ? 1 : 0) | (st.closedCounted ? 0 : 2);
  }

  /** The retired per-connection rows, oldest first (a connection's later lives add to its row). */
  connRows(): Map<string, TopRow> {
    const rows = new Map<string, TopRow>();
    const cap = this.opt.maxRetiredConns;
    const n = this.connNums;
    for (let j = 0; j < this.connCount; j++) {
      const i = (this.connHead + j) % cap;
      const st = this.connSt[i]!;
      const e = this.connEnd[i]!;
      let k = this.connKey[i];
      if (k === undefined) k = this.connKey[i] = groupKey('conn', st, e)!;
      let row = rows.get(k);
      if (!row) rows.set(k, (row = describe('conn', k, st, e)));
      row.sent_total += n[i * 4]!;
      row.recv_total += n[i * 4 + 1]!;
      if (this.connIv[i] === this.intervalNo) {
        // Bytes of this refresh not yet reported still show up in this refresh's rate.
        row.sent_bytes += n[i * 4 + 2]!;
        row.recv_bytes += n[i * 4 + 3]!;
        if (this.connFlags[i]! & 1) row.new_flows++;
        if (this.connFlags[i]! & 2) row.closed_flows++;
      }
    }
    return rows;
  }

  intern(ends: RetiredEnds): RetiredEnds {
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
  creditTomb(t: { lastOrig: number; lastReply: number; ends: RetiredEnds }, origBytes: number, replyBytes: number): void {
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
    for (const g of Object.keys(this.retired) as Exclude<GroupBy, 'conn'>[]) {
      for (const [k, row] of this.retired[g]) {
        if ((this.retiredAt.get(row) ?? 0) >= limit) continue;
        this.retired[g].delete(k);
        this.retiredAt.delete(row);
        this.dirtyRetired.delete(row);
        this.peaks.delete(`${g}\u0000${k}`);
        n++;
      }
    }
    // Ended connections, oldest first: each is its row's last bytes only if it is the newest of
    // its key, so rows go when all of theirs are idle (counted once per row, as above).
    const cap = this.opt.maxRetiredConns;
    const gone = new Set<string>();
    while (this.connCount > 0 && this.connAt[this.connHead]! < limit) {
      const i = this.connHead;
      gone.add(this.connKey[i] ?? groupKey('conn', this.connSt[i]!, this.connEnd[i]!)!);
      this.connSt[i] = this.connEnd[i] = undefined as never;
      this.connHead = (this.connHead + 1) % cap;
      this.connCount--;
    }
    for (let j = 0; j < this.connCount && gone.size; j++) {
      const i = (this.connHead + j) % cap;
      gone.delete(this.connKey[i] ?? groupKey('conn', this.connSt[i]!, this.connEnd[i]!)!);
    }
    for (const k of gone) this.peaks.delete(`conn\u0000${k}`);
    n += gone.size;
    return n;
  }

  /** Ends the interval: the retired rows' per-refresh fields start again from zero, and the rates
   *  of the snapshot that showed it (if any) join the sliding windows and peaks. */
  closeInterval(shown: WindowEntry | null): void {
    this.intervalNo++;
    for (const r of this.dirtyRetired) {
      r.sent_bytes = 0;
      r.recv_bytes = 0;
      r.new_flows = 0;
      r.closed_flows = 0;
    }
    this.dirtyRetired.clear();
    if (!shown) return;
    this.history.splice(0, this.stale(shown.groupBy, shown.t));
    this.history.push({ from: shown.from, t: shown.t, groupBy: shown.groupBy, rates: shown.rates });
    for (const [k, s, r] of shown.bps) {
      const pk = `${shown.groupBy}\u0000${k}`;
      const p = this.peaks.get(pk) ?? [0, 0];
      p[0] = Math.max(p[0], s);
      p[1] = Math.max(p[1], r);
      this.peaks.set(pk, p);
    }
    // Per-connection rows come and go by the thousand under churn: only the shown ones keep a peak.
    if (shown.groupBy === 'conn') {
      const live = new Set(shown.bps.map(([k]) => `conn\u0000${k}`));
      for (const pk of this.peaks.keys()) if (pk.startsWith('conn\u0000') && !live.has(pk)) this.peaks.delete(pk);
    }
  }

  /** How many of the oldest closed intervals no window at `now` reaches (or of another group-by). */
  private stale(g: GroupBy, now: number): number {
    let n = 0;
    while (n < this.history.length && (this.history[n]!.groupBy !== g || now - this.history[n]!.t > 40_000)) n++;
    return n;
  }

  /**
   * 2 s / 10 s / 40 s sliding rates and peaks for the rows of an interval [from, now] not closed
   * yet, as if it were: fills the rows' window fields and returns the entry closeInterval() keeps.
   * Reads only: the windows move when the interval closes.
   */
  windows(g: GroupBy, from: number, now: number, rows: TopRow[]): WindowEntry {
    const rates = new Map<string, [number, number]>();
    for (const r of rows) rates.set(r.key, [r.sent_bytes, r.recv_bytes]);
    const history = [...this.history.slice(this.stale(g, now)), { from, t: now, groupBy: g, rates }];
    const bps: WindowEntry['bps'] = [];
    for (const r of rows) {
      for (const [w, sk, rk] of WINDOWS) {
        let s = 0;
        let rcv = 0;
        let start = now;
        // Whole refresh intervals ending within the window; the rate is over their span.
        for (let i = history.length - 1; i >= 0; i--) {
          const h = history[i]!;
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
      const p = this.peaks.get(`${g}\u0000${r.key}`);
      r.sent_peak_bps = Math.max(p?.[0] ?? 0, r.sent_bps);
      r.recv_peak_bps = Math.max(p?.[1] ?? 0, r.recv_bps);
      bps.push([r.key, r.sent_bps, r.recv_bps]);
    }
    return { from, t: now, groupBy: g, rates, bps };
  }
}

/**
 * The row an end's bytes go to, or null for none. Groupings by owner (process, user) take every
 * end; groupings by a flow attribute (port, remote, conn) count a flow once, so a flow with two
 * local ends (loopback) counts there only from its answering end.
 */
const processKeys = new WeakMap<Owner, string>();

export function groupKey(g: GroupBy, st: FlowState, e: EndState): string | null {
  if (e.end.side === 'orig' && st.ends.length === 2 && (g === 'port' || g === 'remote' || g === 'conn')) return null;
  switch (g) {
    case 'process': {
      // (pid, start time): a reused pid is another process, with its own row. One string per
      // owner (owners are shared by their ends), not one per end.
      const o = e.owner;
      if (o?.pid == null) return null;
      let k = processKeys.get(o);
      if (k === undefined) processKeys.set(o, (k = o.startTime != null ? `${o.pid}@${o.startTime}` : String(o.pid)));
      return k;
    }
    case 'user':
      return e.owner?.uid != null ? String(e.owner.uid) : null;
    case 'remote':
      return e.end.remoteAddr;
    case 'port': {
      const port = st.shape.dport;
      return port === null ? protoName(st.shape.proto) : `${protoName(st.shape.proto)}/${port}`;
    }
    case 'conn':
      return `${protoName(st.shape.proto)} ${formatHostPort(e.end.localAddr, e.end.localPort)} ${formatHostPort(e.end.remoteAddr, e.end.remotePort)}`;
    case 'container':
      if (e.owner?.pid == null) return null;
      return e.owner.container ? `${e.owner.container.runtime}/${e.owner.container.id}` : 'host';
    case 'unit':
      if (e.owner?.pid == null) return null;
      return e.owner.unit ?? '-';
  }
}

export function describe(g: GroupBy, key: string, st: FlowState, e: EndState): TopRow {
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
    row.port = st.shape.dport;
    row.proto = protoName(st.shape.proto);
  }
  if (g === 'conn') {
    row.proto = protoName(st.shape.proto);
    row.local = formatHostPort(e.end.localAddr, e.end.localPort);
    row.remote = formatHostPort(e.end.remoteAddr, e.end.remotePort);
    row.state = st.shape.proto === 6 ? ctTcpStateName(st.tcpState) : null;
  }
  return row;
}

export function passes(f: Filters, st: FlowState, e: EndState | null): boolean {
  if (st.rec) return flowPasses(f, st.rec, e ? [e] : []);
  // No record kept: the flow has local ends, so its addresses are theirs (flowPasses reads ends).
  const { proto, sport, dport } = st.shape;
  return flowPasses(f, { family: st.family, proto, orig: { src: '', dst: '', sport, dport, icmp: null } }, e ? [e] : []);
}

export function endReason(e: EndState): UnattributedReason {
  return e.reason ?? (e.netns ? 'not_found_in_netns' : e.sock ? 'no_process' : 'no_socket');
}

export function reasonBucket(m: Map<string, Bucket>, reason: string): Bucket {
  let b = m.get(reason);
  if (!b) m.set(reason, (b = emptyBucket()));
  return b;
}
