// The accounting (README "How to read the numbers"): records in, snapshots out; the clock is
// injected. A facade over four parts: the flow table (readings, lives, tombstones), the attributor
// (owners), the roll-up (totals of ended flows, windows) and the pure snapshot builder. A refresh
// is snapshot() (reads only) then closeInterval() (starts the next interval).
import type { FlowRecord } from '../netlink/record.js';
import type { FlowId, LocalAddresses } from './flow.js';
import type { Filters } from './filters.js';
import type { ForeignAttributor } from './foreign.js';
import type { GroupBy, TopSnapshot } from './model.js';
import type { OwnerResolver } from './owners.js';
import { Attributor } from './attributor.js';
import { FlowTable, newHealth, type EndState, type FlowState } from './flowtable.js';
import { groupKey, Rollup, type WindowEntry } from './rollup.js';
import { buildSnapshot, type SnapshotOptions } from './snapshot.js';

export type { EndState, FlowState } from './flowtable.js';
export type { Filters } from './filters.js';

export interface AccountingOptions {
  /** The run's filters: flows and ends they exclude are never counted in any row or bucket (so
   *  totals of ended flows, kept per row, are filtered too). */
  filters?: Filters;
  /** Called once for every flow that leaves the table (flow logs): on its DESTROY, or when dumps
   *  have not shown it for goneTimeoutMs and no DESTROY came (events lost). */
  onRetire?: (st: FlowState, reason: 'destroy' | 'vanished') => void;
  /** Keep a flow that vanished from dumps this long waiting for its DESTROY (ms). */
  goneTimeoutMs?: number;
  /** Keep each flow's full latest record (FlowState.rec) for onRetire: a flow log writes it. */
  keepRecords?: boolean;
  /** Retry an unattributed end at most this often (ms). */
  retryMs?: number;
  /** Retired per-connection rows kept for --by conn (oldest dropped first). */
  maxRetiredConns?: number;
  /** The group-bys this run's snapshots can ask for (default: all). An ended flow's totals go to
   *  the retired rows of these only: `top --json --by process` never builds a per-connection row. */
  groupings?: GroupBy[];
  /** Attribution of flows whose ends live in other local network namespaces (containers). */
  foreign?: ForeignAttributor;
}

export class Accounting {
  readonly health = newHealth();
  readonly flows: Map<FlowId, FlowState>;
  private readonly table: FlowTable;
  private readonly attributor: Attributor;
  private readonly rollup: Rollup;
  private readonly filters: Filters;
  /** Monotonic ms when the open interval began (null: none yet). */
  private intervalStart: number | null = null;
  /** The rates of the last snapshot taken in the open interval: the windows keep them when it closes. */
  private shown: WindowEntry | null = null;

  constructor(
    local: () => LocalAddresses,
    owners: OwnerResolver,
    private readonly now: () => number,
    opts: AccountingOptions = {},
  ) {
    this.filters = opts.filters ?? {};
    this.rollup = new Rollup(this.filters, now, this.health, {
      maxRetiredConns: opts.maxRetiredConns ?? 20_000,
      ...(opts.groupings ? { groupings: opts.groupings } : {}),
    });
    const flows = new Map<FlowId, FlowState>();
    this.attributor = new Attributor(flows, owners, opts.foreign, now, this.health, { retryMs: opts.retryMs ?? 1000 });
    this.table = new FlowTable(local, now, this.health, this.attributor, this.rollup, flows, {
      goneTimeoutMs: opts.goneTimeoutMs ?? 180_000,
      ...(opts.onRetire ? { onRetire: opts.onRetire } : {}),
      ...(opts.keepRecords ? { keepRecords: true } : {}),
      ...(opts.foreign ? { foreign: opts.foreign } : {}),
    });
    this.flows = flows;
  }

  // ---- readings (the flow table) ----

  beginDump(): void {
    this.table.beginDump();
  }

  /** Live counters from a dump batch (decoded records). */
  dumpBatch(batch: FlowRecord[]): void {
    this.table.dumpBatch(batch);
  }

  /** Live counters straight from the addon's record buffer (see FlowTable.dumpRaw). */
  dumpRaw(buf: Uint8Array, count: number): void {
    this.table.dumpRaw(buf, count);
  }

  /** A dump failed or was interrupted: it proves nothing about flows it did not list. */
  dumpFailed(): void {
    this.table.dumpFailed();
  }

  /** A complete dump ended: flows it did not list are gone (their DESTROY settles them). */
  endDump(): void {
    this.table.endDump();
  }

  /** NEW / UPDATE / DESTROY events, in kernel order. */
  eventBatch(batch: FlowRecord[]): void {
    this.table.eventBatch(batch);
  }

  /** The kernel dropped events: the caller resyncs with a dump. */
  overrun(): void {
    this.table.overrun();
  }

  resynced(): void {
    this.table.resynced();
  }

  // ---- owners (the attributor) ----

  /** Resolves owners for the given flows in one batch (one /proc scan at most for all misses). */
  attribute(states: FlowState[]): void {
    this.attributor.attribute(states);
  }

  /** Monotonic ms when recheck() has work next (Infinity: none). */
  get recheckAt(): number {
    return this.attributor.recheckAt;
  }

  /** Looks again at ends whose owner is not final and that are due; returns when it is due next. */
  recheck(): number {
    return this.attributor.recheck();
  }

  /** Retries ends still without an owner, each at most every retryMs. */
  retryUnattributed(): void {
    this.attributor.retryUnattributed();
  }

  // ---- totals and views ----

  /** The row an end's bytes go to for a group-by, or null for none (see rollup.groupKey). */
  groupKey(g: GroupBy, st: FlowState, e: EndState): string | null {
    return groupKey(g, st, e);
  }

  /**
   * Forgets the totals of ended flows for keys that took no bytes for `idleMs` (a daemon must not
   * keep every key it ever saw; `top` keeps them all, as its contract says). Returns rows dropped.
   */
  pruneRetired(idleMs: number): number {
    return this.rollup.pruneRetired(idleMs);
  }

  /** Starts the first interval (after the initial dump): rates are measured from here. */
  startInterval(): void {
    this.intervalStart = this.now();
    this.shown = null;
  }

  /**
   * The view of the open interval: rows hold every key with traffic since start (idle ones
   * included), sorted, capped only by `limit`. Reads only: taken twice, it is the same snapshot.
   */
  snapshot(opts: SnapshotOptions): TopSnapshot {
    const { snapshot, window } = buildSnapshot(
      { flows: this.flows, tracked: this.table.size, interval: this.table.interval, rollup: this.rollup, health: this.health, filters: this.filters, intervalStart: this.intervalStart, now: this.now() },
      opts,
    );
    this.shown = window;
    return snapshot;
  }

  /**
   * Ends the open interval and starts the next: per-refresh bytes and new/closed flow counts start
   * again from zero, and the rates of the last snapshot taken in it join the 2 s / 10 s / 40 s
   * windows and peaks. Call it once per refresh, after the snapshot that shows the interval.
   */
  closeInterval(): void {
    this.table.closeInterval();
    this.rollup.closeInterval(this.shown);
    this.intervalStart = this.shown?.t ?? this.now();
    this.shown = null;
  }
}
