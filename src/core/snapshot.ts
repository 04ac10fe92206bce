// The view builder: a TopSnapshot (the `--json` line) from the flow table and the roll-up. Pure: it
// reads the interval still open and changes nothing; closing the interval (per-refresh counters
// back to zero, the windows moved on) is the accounting's closeInterval(), called by whoever
// decides that a refresh is over. Building the same view twice gives the same snapshot.
import { ctTcpStateName } from '../netlink/record.js';
import type { FlowId } from './flow.js';
import type { Filters } from './filters.js';
import type { AccountingHealth, FlowState } from './flowtable.js';
import { compareRows, type Bucket, type GroupBy, type Health, type SortKey, type TopRow, type TopSnapshot } from './model.js';
import { describe, endReason, groupKey, passes, reasonBucket, type Rollup, type WindowEntry } from './rollup.js';

export interface SnapshotOptions {
  groupBy: GroupBy;
  sort: SortKey;
  /** A per-call filter (tests, other views); default: the run's filters. */
  filters?: Filters;
  limit?: number;
  time: string;
  self?: { cpu_percent: number; rss_bytes: number };
  changes?: string[];
}

/** What a view is built from; nothing in it is written. */
export interface SnapshotSource {
  flows: ReadonlyMap<FlowId, FlowState>;
  /** Flows the table holds, tombstones included. */
  tracked: number;
  rollup: Rollup;
  health: Readonly<AccountingHealth>;
  /** The run's filters (already applied to ended flows as they retired). */
  filters: Filters;
  /** The flow table's open interval (a flow behind it has nothing in it: see FlowTable.fresh). */
  interval: number;
  /** Monotonic ms when the open interval began (null: no interval yet), and now. */
  intervalStart: number | null;
  now: number;
}

/**
 * The snapshot of the open interval. Rows hold every key with traffic since start (idle ones
 * included), sorted, capped only by `limit`. Also returns the interval's rates, which the windows
 * keep when the interval is closed.
 */
export function buildSnapshot(src: SnapshotSource, opts: SnapshotOptions): { snapshot: TopSnapshot; window: WindowEntry } {
  const now = src.now;
  const from = src.intervalStart ?? now;
  const intervalS = src.intervalStart === null ? 0 : Math.max((now - src.intervalStart) / 1000, 1e-3);
  const g = opts.groupBy;
  src.rollup.assertKept(g);
  // The run's filters were applied to ended flows as they retired; a per-call filter (tests,
  // other views) can only be applied to retired rows by their own fields.
  const f = opts.filters ?? src.filters;
  const rows = new Map<string, TopRow>();
  const filtered = opts.filters !== undefined && Object.keys(opts.filters).length > 0;
  const anyFilter = Object.keys(f).length > 0;
  const rollup = src.rollup;
  // Retired totals first (filters cannot be applied to retired aggregates by flow, so with
  // filters the rows come from the retired rows' own fields where possible).
  const retired = g === 'conn' ? rollup.connRows() : rollup.retired[g];
  for (const [k, r] of retired) {
    if (filtered && !retiredPasses(g, r, f)) continue;
    rows.set(k, g === 'conn' ? r : { ...r });
  }
  const forwarded = { ...rollup.retiredForwarded };
  const unknown: Bucket = { ...rollup.retiredUnknown };
  const reasons = new Map<string, Bucket>();
  for (const [k, b] of rollup.retiredReasons) reasons.set(k, { ...b });
  let withoutCounters = 0;
  for (const st of src.flows.values()) {
    if (!st.hasCounters) withoutCounters++;
    if (st.ends.length === 0) {
      if (anyFilter && (!passes(f, st, null) || f.pids || f.users)) continue;
      forwarded.sent_total += st.origTotal;
      forwarded.recv_total += st.replyTotal;
      if (!st.closed) forwarded.flows++;
      continue;
    }
    // A flow not changed since the last close: no bytes, not new, its closing counted already.
    const cur = st.interval === src.interval;
    for (const e of st.ends) {
      if (anyFilter && !passes(f, st, e)) continue;
      if (e.owner?.pid == null) {
        unknown.sent_total += e.sentTotal;
        unknown.recv_total += e.recvTotal;
        if (!st.closed) unknown.flows++;
        const rb = reasonBucket(reasons, endReason(e));
        rb.sent_total += e.sentTotal;
        rb.recv_total += e.recvTotal;
        if (!st.closed) rb.flows++;
      }
      // The end's row key, kept on the end while its owner and the group-by stay (a cache).
      if (e.keyFor !== g || e.keyOwner !== e.owner) {
        e.key = groupKey(g, st, e);
        e.keyFor = g;
        e.keyOwner = e.owner;
      }
      const k = e.key!;
      if (k !== null) {
        let row = rows.get(k);
        if (!row) {
          row = describe(g, k, st, e);
          rows.set(k, row);
        } else if (g === 'conn') {
          row.state = st.shape.proto === 6 ? ctTcpStateName(st.tcpState) : null;
        }
        if (e.owner?.shared && (g === 'process' || g === 'conn')) row.shared = true;
        row.sent_total += e.sentTotal;
        row.recv_total += e.recvTotal;
        if (cur) {
          row.sent_bytes += e.sentInterval;
          row.recv_bytes += e.recvInterval;
        }
        if (!st.closed) row.flows++;
        if (cur && st.isNew) row.new_flows++;
        if (cur && st.closed && !st.closedCounted) row.closed_flows++;
      }
    }
  }
  const list = [...rows.values()];
  for (const r of list) {
    r.sent_bps = intervalS > 0 ? r.sent_bytes / intervalS : 0;
    r.recv_bps = intervalS > 0 ? r.recv_bytes / intervalS : 0;
  }
  const window = rollup.windows(g, from, now, list);
  list.sort(compareRows(opts.sort));
  const h = src.health;
  const health: Health = {
    flows_tracked: src.tracked,
    events: h.events,
    lost_events: h.lostEvents,
    resyncs: h.resyncs,
    flows_without_counters: withoutCounters,
    malformed: h.malformed,
    unattributed_flows: unknown.flows,
    inferred_flows: h.inferred,
    retired_conns_dropped: h.retiredConnsDropped,
    dump_failures: h.dumpFailures,
    accepts_missed: h.acceptsMissed,
    closed_by_tracker: h.closedBy,
    ...(opts.changes ? { changes: opts.changes } : {}),
  };
  unknown.reasons = Object.fromEntries([...reasons].sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    snapshot: {
      time: opts.time,
      interval_s: Math.round(intervalS * 1000) / 1000,
      group_by: g,
      rows: opts.limit !== undefined ? list.slice(0, opts.limit) : list,
      unattributed: { forwarded, unknown },
      health,
      self: opts.self ?? { cpu_percent: 0, rss_bytes: 0 },
    },
    window,
  };
}

function retiredPasses(g: GroupBy, r: TopRow, f: Filters): boolean {
  // Retired rows keep only their group's fields: a filter on another field cannot be decided,
  // so a filtered view shows retired rows only when the filter is on the grouped field itself.
  if (f.pids) return g === 'process' && r.pid !== null && f.pids.includes(r.pid);
  if (f.users) return (g === 'process' || g === 'user') && f.users(r.uid, r.user);
  if (f.host) return (g === 'remote' || g === 'conn') && r.remote !== null && f.host(r.remote.replace(/^\[?([^\]]*)\]?(:\d+)?$/, '$1'));
  if (f.ports) return g === 'port' && r.port !== null && f.ports.includes(r.port);
  return g !== 'conn' && !f.proto && !f.family;
}
