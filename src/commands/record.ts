// `ctacct record`: a flow log. One JSON line per finished flow (per local end), written when the
// kernel's DESTROY settles it or dumps show it gone; at shutdown, finished flows not yet settled
// (and open ones with --include-open). Buffered lines are flushed on every exit path.
import type { CommandModule } from 'yargs';
import { EngineError, TopEngine } from '../core/engine.js';
import type { Accounting, FlowState } from '../core/accounting.js';
import { toFilters, toKernelFilters, type FilterArgs } from '../core/filters.js';
import { flowKey, type FlowId } from '../core/flow.js';
import { flowLines, renderFlowLine, type EndReason } from '../core/flowlog.js';
import { EXIT, UserError, explainSystemError } from '../errors.js';
import type { ConntrackSource } from '../netlink/source.js';
import { CgroupReader } from '../proc/cgroup.js';
import type { System } from '../system.js';
import { lifecycle } from '../system/lifecycle.js';
import { FdSink, RotatingFile, UnsafeOutputError, parseSize, type LineSink } from '../system/rotate.js';
import { formatSetupReport, withSystemSetup } from '../system/setup.js';
import { closeTracker, closeTrackerNotes, makeForeignAttributor, uidOfUser } from '../wiring.js';
import { engineDeps, LOW_OVERHEAD_LOOKUP, startEngine } from './engine.js';
import { checkPositive, filterOptions, ownerFilterOptions, setupOptions } from './options.js';
import { changeLines } from './top.js';

export interface RecordArgs extends FilterArgs {
  output?: string;
  'max-size': string;
  keep: number;
  'include-open': boolean;
  'dump-interval': number;
  rcvbuf: number;
  setup: boolean;
  'keep-acct': boolean;
}

/** Conntrack TCP states after which a flow carries no more data: TIME_WAIT, CLOSE. */
const TCP_FINISHED = new Set([7, 8]);
/** How often buffered lines reach the output at the latest (ms). */
const FLUSH_EVERY_MS = 200;

export function recordCommand(system: System): CommandModule<object, RecordArgs> {
  return {
    command: 'record',
    describe: 'Flow log: one JSON line per finished connection, with its process and bytes (needs CAP_NET_ADMIN)',
    builder: (y) =>
      setupOptions(ownerFilterOptions(filterOptions(y)))
        .option('output', { alias: 'o', type: 'string', describe: 'Write to FILE (appended, rotated by size) instead of stdout', group: 'Output:' })
        .option('max-size', { type: 'string', default: '100M', describe: 'Rotate FILE before it would grow past this size (e.g. 500k, 100M, 1G)', group: 'Output:' })
        .option('keep', { type: 'number', default: 5, describe: 'Rotated files kept (FILE.1 newest … FILE.N); older ones are deleted', group: 'Output:' })
        .option('include-open', { type: 'boolean', default: false, describe: 'At shutdown, also write flows still open (end_reason "open")', group: 'Output:' })
        .option('dump-interval', { type: 'number', default: 10, describe: 'Seconds between full conntrack table dumps (live counters; flows gone without a DESTROY)', group: 'Cost:' })
        .option('rcvbuf', { type: 'number', default: 64, describe: 'Event socket receive buffer in MiB (grows after an overrun)', group: 'Cost:' })
        .check((a) => {
          checkPositive('rcvbuf', a.rcvbuf);
          if (parseSize(a['max-size']) === null) throw new UserError(`--max-size: '${a['max-size']}' is not a size (e.g. 500k, 100M, 1G)`, EXIT.usage, 'ERR_USAGE');
          if (!(Number.isInteger(a.keep) && a.keep >= 0)) throw new UserError('--keep must be a whole number ≥ 0', EXIT.usage, 'ERR_USAGE');
          if (!(a['dump-interval'] > 0)) throw new UserError('--dump-interval must be a positive number of seconds', EXIT.usage, 'ERR_USAGE');
          return true;
        })
        .example('sudo ctacct record | vector --config vector.toml', 'ship finished connections with their process')
        .example('sudo mkdir -p -m 750 /var/log/ctacct && sudo ctacct record -o /var/log/ctacct/flows.jsonl --max-size 100M --keep 10', 'a rotated log file')
        .example('sudo ctacct record --proto tcp --port 443 --include-open', 'HTTPS flows, and those open at exit') as never,
    handler: (args) => runRecord(system, args),
  };
}

function openSink(args: RecordArgs): LineSink {
  if (!args.output) return new FdSink(1);
  try {
    return new RotatingFile(args.output, { maxBytes: parseSize(args['max-size'])!, keep: args.keep });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'ERR_CTACCT';
    if (e instanceof UnsafeOutputError) throw new UserError(`refusing to write ${args.output}: ${e.message}`, EXIT.failure, e.code);
    const why: Record<string, string> = {
      ENOENT: 'its directory does not exist',
      EISDIR: 'it is a directory',
      EACCES: 'permission denied',
      EPERM: 'permission denied',
      EROFS: 'read-only file system',
      ENOTDIR: 'a part of the path is not a directory',
    };
    throw new UserError(`cannot write ${args.output}: ${why[code] ?? code}`, EXIT.failure, code);
  }
}

/**
 * When ctacct saw each flow (wall ms): its NEW event, or the first dump that listed it; and the
 * last dump that listed it. Kept beside the accounting's flow states (a WeakMap: nothing to prune).
 */
class Sightings {
  private readonly seen = new WeakMap<FlowState, { first: number; last: number }>();
  /** Flows already finished in the first dump: they ended before this run (a previous run, if
   *  any, wrote them at its shutdown), so they are not written again. */
  private readonly before = new WeakSet<FlowState>();
  private acc: Accounting | null = null;
  private readonly newTimes = new Map<FlowId, number>();

  constructor(private readonly now: () => number) {}

  attach(acc: Accounting): void {
    this.acc = acc;
  }

  /** Wraps a source so NEW events note their time (the kernel's when it sends one). */
  wrap(src: ConntrackSource): ConntrackSource {
    return {
      dump: (f, onBatch) => src.dump(f, onBatch),
      dumpRaw: (f, onRaw) => src.dumpRaw(f, onRaw),
      subscribe: (opts, handlers) =>
        src.subscribe(opts, {
          ...handlers,
          records: (batch) => {
            const t = this.now();
            for (const r of batch) if (r.kind === 'new') this.newTimes.set(flowKey(r), r.eventMs ?? t);
            handlers.records(batch);
            for (const [k, at] of this.newTimes) {
              const st = this.acc?.flows.get(k);
              if (st && !this.seen.has(st)) this.seen.set(st, { first: at, last: at });
            }
            this.newTimes.clear();
          },
        }),
    };
  }

  /** After a dump: flows it listed were seen now; flows new to us were first seen now. */
  afterDump(flows: Iterable<FlowState>, initial: boolean): void {
    const t = this.now();
    for (const st of flows) {
      const s = this.seen.get(st);
      if (!s) this.seen.set(st, { first: t, last: t });
      else if (st.goneSince === null) s.last = t;
      if (initial && st.tcpState !== null && TCP_FINISHED.has(st.tcpState)) this.before.add(st);
    }
  }

  skip(st: FlowState): boolean {
    return this.before.has(st);
  }

  times(st: FlowState): { first: number | null; last: number | null } {
    const s = this.seen.get(st);
    // Born and settled within one event batch: its NEW time is still pending here.
    return { first: s?.first ?? this.newTimes.get(st.key) ?? null, last: s?.last ?? null };
  }
}

async function runRecord(system: System, args: RecordArgs): Promise<void> {
  const filters = toFilters(args, uidOfUser);
  // Opened before any system change: an unwritable file fails with nothing to undo.
  const sink = openSink(args);
  let sinkClosed = false;
  const closeSink = () => {
    if (sinkClosed) return;
    sinkClosed = true;
    sink.close();
  };
  try {
    await withSystemSetup(system, { setup: args.setup, keepAcct: args['keep-acct'], needConntrack: true }, async (report) => {
      system.stderr.write(formatSetupReport(report));
      closeTracker();
      for (const n of closeTrackerNotes()) system.stderr.write(`ctacct: note: ${n.message}\n`);
      const seen = new Sightings(() => system.now());
      const cgroups = new CgroupReader(system.procRoot);
      let writing = true;
      let written = 0;
      const write = (st: FlowState, reason: EndReason) => {
        if (!writing || seen.skip(st)) return;
        const t = seen.times(st);
        // A DESTROY is a sighting too: the kernel's event time, else when it was read.
        const last = reason === 'destroy' ? (st.rec?.eventMs ?? system.now()) : (t.last ?? system.now());
        const lines = flowLines(
          st,
          {
            reason,
            firstSeenMs: t.first,
            lastSeenMs: last,
            // The process may be gone by now: the cgroup read while it lived is kept.
            cgroupOf: (pid) => cgroups.cached(pid) ?? cgroups.of(pid),
          },
          filters,
        );
        for (const l of lines) sink.write(renderFlowLine(l));
        written += lines.length;
      };
      const engine = new TopEngine(engineDeps(system, LOW_OVERHEAD_LOOKUP, seen.wrap(system.conntrack())), {
          // Every refresh dumps: this command drives the cadence itself (and needs a final dump).
          dumpEveryMs: 0,
          groupings: ['user'],
          watchAccepts: closeTracker().tracker === null,
          kernelFilters: toKernelFilters(args),
          rcvbuf: Math.round(args.rcvbuf * 1024 * 1024),
          onRetire: (st, why) => write(st, why),
          keepRecords: true,
        foreign: makeForeignAttributor(system, LOW_OVERHEAD_LOOKUP),
      });
      seen.attach(engine.acc);
      await startEngine(engine);
      seen.afterDump(engine.acc.flows.values(), true);
      // Set-up done and events subscribed: from here on no finished flow is missed.
      system.stderr.write(`ctacct: recording to ${args.output ?? 'stdout'}\n`);
      // Remember the cgroup of every owner while the process lives (short-lived clients are gone
      // by the time their DESTROY arrives).
      const noteCgroups = () => {
        for (const st of engine.acc.flows.values()) for (const e of st.ends) if (e.owner?.pid != null && !cgroups.cached(e.owner.pid)) cgroups.of(e.owner.pid);
      };
      noteCgroups();
      const refresh = async () => {
        try {
          await engine.refresh({ groupBy: 'user', sort: 'total' });
        } catch (e) {
          throw e instanceof EngineError ? explainSystemError(e.cause, 'conntrack events') : e;
        }
        seen.afterDump(engine.acc.flows.values(), false);
        noteCgroups();
      };
      /** At exit: flows not settled yet that are finished (and open ones with --include-open). */
      const writeRemaining = () => {
        for (const st of [...engine.acc.flows.values()]) {
          const finished = st.closed || (st.tcpState !== null && TCP_FINISHED.has(st.tcpState));
          if (finished || args['include-open']) write(st, finished ? 'closed' : 'open');
        }
        writing = false;
      };
      let told = false;
      const summary = () => {
        if (told) return;
        told = true;
        system.stderr.write(`ctacct: wrote ${written} flow line${written === 1 ? '' : 's'}\n`);
      };
      let flushTimer: ReturnType<typeof setInterval> | undefined;
      let dumpTimer: ReturnType<typeof setInterval> | undefined;
      let lifecycleOff: () => void = () => undefined;
      let inflight: Promise<void> | null = null;
      const stopTimers = () => {
        clearInterval(flushTimer);
        clearInterval(dumpTimer);
      };
      const done = new Promise<void>((resolve, reject) => {
        flushTimer = setInterval(() => {
          try {
            sink.flush();
          } catch (e) {
            reject(writeError(args, e));
          }
        }, FLUSH_EVERY_MS);
        dumpTimer = setInterval(() => {
          if (inflight) return;
          inflight = refresh().then(
            () => {
              inflight = null;
            },
            (e: unknown) => reject(e),
          );
        }, args['dump-interval'] * 1000);
        lifecycleOff = lifecycle().onShutdown(
          async () => {
            stopTimers();
            // One last dump that starts after the signal (not one already under way, which may
            // predate the last connections' close): their latest counters and TCP states.
            await inflight?.catch(() => undefined);
            await refresh().catch(() => undefined);
            writeRemaining();
            closeSink();
            summary();
            resolve();
          },
          () => {
            // The grace period ran out (or a second signal): write what is known, synchronously.
            stopTimers();
            if (writing) writeRemaining();
            closeSink();
            summary();
          },
        );
      });
      try {
        await done;
      } finally {
        lifecycleOff();
        stopTimers();
        engine.close();
        summary();
      }
    });
  } finally {
    try {
      closeSink();
    } catch (e) {
      throw writeError(args, e);
    }
  }
}

function writeError(args: RecordArgs, e: unknown): UserError {
  const code = (e as NodeJS.ErrnoException).code ?? 'ERR_CTACCT';
  if (code === 'EPIPE') return new UserError('the reader of the flow log went away (EPIPE)', EXIT.failure, code);
  return new UserError(`writing ${args.output ?? 'stdout'}: ${code}`, EXIT.failure, code);
}
