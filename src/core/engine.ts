// Drives the accounting from a ConntrackSource: events (NEW at once, DESTROY as settlement) and
// dumps (live counters; resync after an overrun). The only timing logic of `top`; views pull
// snapshots from it.
import type { ConntrackSource, DumpFilter, Subscription } from '../netlink/source.js';
import type { NativeError } from '../netlink/addon.js';
import { Accounting, type AccountingOptions, type Filters } from './accounting.js';
import { matchesKernelFilters } from './filters.js';
import { localAddressSet, type LocalAddresses } from './flow.js';
import type { GroupBy, HealthItem, SortKey, TopSnapshot } from './model.js';
import type { OwnerResolver } from './owners.js';

export interface EngineDeps {
  source: ConntrackSource;
  owners: OwnerResolver;
  /** Addresses of this network namespace's interfaces. */
  localAddresses(): string[];
  /** Monotonic ms. */
  monotonic(): number;
  /** Wall clock ms. */
  now(): number;
}

export interface EngineOptions extends AccountingOptions {
  /** How often a full dump refreshes live counters (ms); default every refresh. */
  dumpEveryMs?: number;
  /** Kernel-side dump filters: each is one dump per refresh (default: one unfiltered dump). */
  kernelFilters?: DumpFilter[];
  /** Event socket receive buffer (bytes). */
  rcvbuf?: number;
  /** Look up sockets in the addon as NEW events are read (default true). */
  lookupSockets?: boolean;
  /** Have the reader thread look every millisecond for inbound connections' accepted sockets
   *  (default true; false when the close tracker settles connections accepted and closed between
   *  looks, so that per-connection cost is not paid twice). */
  watchAccepts?: boolean;
  filters?: Filters;
  limit?: number;
}

export interface ViewRequest {
  groupBy: GroupBy;
  sort: SortKey;
  self?: { cpu_percent: number; rss_bytes: number };
  changes?: string[];
  /** Set-up facts copied into every snapshot's health. */
  tracking?: 'engaged-by-ctacct' | 'engaged-by-others' | 'not-tracking';
  notes?: HealthItem[];
  systemChanges?: HealthItem[];
}

/** Back-off after failed dumps: 1 s, 2 s, 4 s … capped at 30 s. */
export function dumpBackoffMs(failuresInARow: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, failuresInARow - 1));
}

export class EngineError extends Error {
  constructor(override readonly cause: NativeError) {
    super(cause.message);
  }
}

export class TopEngine {
  readonly acc: Accounting;
  private sub: Subscription | null = null;
  private dumping: Promise<void> | null = null;
  private needResync = false;
  private lastDump = -Infinity;
  private failure: NativeError | null = null;
  private local: LocalAddresses;
  private localList: string[];
  private localPushed = '';
  private localAt = -Infinity;
  /** Cost of the last dump (ms), for health and adaptive cadence. */
  lastDumpMs = 0;
  dumps = 0;
  /** Records that crossed from the kernel in all dumps (what kernel-side filters save shows here). */
  dumpRecords = 0;
  lastDumpRecords = 0;
  /** Failed dumps since start, in a row now, and when the next try is due (monotonic ms). */
  dumpFailures = 0;
  private failuresInARow = 0;
  private retryAt = -Infinity;
  private lastDumpError: string | null = null;

  constructor(
    private readonly deps: EngineDeps,
    private readonly opts: EngineOptions = {},
  ) {
    this.localList = deps.localAddresses();
    this.local = localAddressSet(this.localList);
    this.acc = new Accounting(() => this.localAddrs(), deps.owners, deps.monotonic, opts);
  }

  private localAddrs(): LocalAddresses {
    const now = this.deps.monotonic();
    if (now - this.localAt > 5000) {
      this.localList = this.deps.localAddresses();
      this.local = localAddressSet(this.localList);
      this.localAt = now;
      this.pushLocal();
    }
    return this.local;
  }

  /** The reader thread looks up only the ends the accounting calls local: the same set. */
  private pushLocal(): void {
    const key = this.localList.join(',');
    if (key === this.localPushed || !this.sub) return;
    this.localPushed = key;
    this.sub.setLocalAddresses?.(this.localList);
  }

  /** Subscribes first (no flow slips between the initial dump and the subscription), then dumps. */
  async start(): Promise<void> {
    this.sub = this.deps.source.subscribe(
      {
        new: true,
        destroy: true,
        lookupSockets: this.opts.lookupSockets ?? true,
        ...(this.opts.watchAccepts === false ? { watchAccepts: false } : {}),
        ...(this.opts.rcvbuf ? { rcvbuf: this.opts.rcvbuf } : {}),
      },
      {
        records: (batch) => {
          // Events are not filtered in the kernel: keep only what the dumps would return.
          const kf = this.opts.kernelFilters;
          this.acc.eventBatch(kf && kf.length && Object.keys(kf[0]!).length ? batch.filter((r) => matchesKernelFilters(kf, r)) : batch);
          this.pushCandidates();
          this.scheduleRecheck();
        },
        overrun: () => {
          this.acc.overrun();
          this.needResync = true;
        },
        error: (err) => {
          this.failure = err;
        },
      },
    );
    this.pushLocal();
    await this.dump();
    this.acc.startInterval();
  }

  private lastCandidates = '';
  private lastSole = '';
  /** Tells the addon's reader thread which processes to search first for new sockets, and which
   *  listeners' accepted sockets need no search at all (one process holds the listener). */
  private pushCandidates(): void {
    const pids = this.deps.owners.recentPids();
    const key = pids.join(',');
    if (key !== this.lastCandidates) {
      this.lastCandidates = key;
      this.sub?.setCandidates(pids);
    }
    const sole = this.deps.owners.soleListeners();
    const skey = sole.join(',');
    if (skey !== this.lastSole) {
      this.lastSole = skey;
      this.sub?.setSoleListeners?.(sole);
    }
  }

  private recheckTimer: ReturnType<typeof setTimeout> | null = null;
  /** Looks again at owners that may still change (connections being accepted) when they are due. */
  private scheduleRecheck(): void {
    if (this.recheckTimer || !this.sub) return;
    const at = this.acc.recheckAt;
    if (at === Infinity) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = null;
      this.acc.recheck();
      this.scheduleRecheck();
    }, Math.max(1, at - this.deps.monotonic()));
    this.recheckTimer.unref?.();
  }

  private dump(): Promise<void> {
    if (this.dumping) return this.dumping;
    const t0 = this.deps.monotonic();
    this.dumping = (async () => {
      this.acc.beginDump();
      this.lastDumpRecords = 0;
      try {
        for (const f of this.opts.kernelFilters ?? [{}]) {
          const stats = await this.deps.source.dumpRaw(f, (buf, count) => this.acc.dumpRaw(buf, count));
          this.acc.health.malformed += stats.malformed;
          this.dumpRecords += stats.records;
          this.lastDumpRecords += stats.records;
        }
      } catch (e) {
        // An incomplete dump closes nothing: flows it did not list may well be there.
        this.acc.dumpFailed();
        throw e;
      }
      this.acc.endDump();
      this.dumps++;
      this.lastDump = this.deps.monotonic();
      this.lastDumpMs = this.lastDump - t0;
    })().finally(() => {
      this.dumping = null;
    });
    return this.dumping;
  }

  /** A dump that fails is counted and retried with back-off; events keep the view going meanwhile. */
  private async tryDump(): Promise<boolean> {
    if (this.deps.monotonic() < this.retryAt) return false;
    try {
      await this.dump();
      this.failuresInARow = 0;
      this.lastDumpError = null;
      return true;
    } catch (e) {
      this.dumpFailures++;
      this.failuresInARow++;
      this.retryAt = this.deps.monotonic() + dumpBackoffMs(this.failuresInARow);
      const err = e as { code?: string; message?: string };
      this.lastDumpError = err.code ?? err.message?.split('\n')[0] ?? String(e);
      return false;
    }
  }

  /** One refresh: a dump when due (or to resync after lost events), then a snapshot; it closes the
   *  interval the snapshot shows. */
  async refresh(view: ViewRequest): Promise<TopSnapshot> {
    if (this.failure) throw new EngineError(this.failure);
    const every = this.opts.dumpEveryMs ?? 0;
    if (this.needResync) {
      if (await this.tryDump()) {
        this.needResync = false;
        this.acc.resynced();
      }
    } else if (this.deps.monotonic() - this.lastDump >= every * 0.9) {
      await this.tryDump();
    }
    this.localAddrs(); // read again every 5 s, and the reader thread told, even with no new flow
    this.acc.retryUnattributed();
    this.acc.recheck();
    this.scheduleRecheck();
    this.pushCandidates();
    const snap = this.acc.snapshot({
      groupBy: view.groupBy,
      sort: view.sort,
      ...(this.opts.limit !== undefined ? { limit: this.opts.limit } : {}),
      time: new Date(this.deps.now()).toISOString(),
      ...(view.self ? { self: view.self } : {}),
      ...(view.changes ? { changes: view.changes } : {}),
    });
    // This refresh's interval ends here: the next snapshot measures from now.
    this.acc.closeInterval();
    const h = snap.health;
    if (view.tracking) h.tracking = view.tracking;
    if (view.systemChanges) h.system_changes = view.systemChanges;
    h.dump_failures = this.dumpFailures;
    const notes = [...(view.notes ?? [])];
    if (this.lastDumpError !== null)
      notes.push({ code: 'dump-failed', message: `the last ${this.failuresInARow} conntrack table dump(s) failed (${this.lastDumpError}); retrying, events still counted` });
    if (h.lost_events > 0) notes.push({ code: 'lost-events', message: `the kernel dropped events ${h.lost_events} time(s); resynced with a dump` });
    if (h.flows_without_counters > 0)
      notes.push({ code: 'no-counters', message: `${h.flows_without_counters} flow(s) began before accounting was on and have no counters` });
    if (view.notes || notes.length) h.notes = notes;
    snap.health.dump_ms = Math.round(this.lastDumpMs * 10) / 10;
    snap.health.dump_records = this.lastDumpRecords;
    return snap;
  }

  eventStats() {
    return this.sub?.stats() ?? null;
  }

  close(): void {
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    this.recheckTimer = null;
    this.sub?.close();
    this.sub = null;
  }
}
