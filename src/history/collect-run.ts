// `ctacct collect`: the engine of `top` at a daemon's cadence, its flows credited minute by minute
// into the usage database (one transaction per minute), folded into hours and days as they age.
// Optionally serves the same /metrics as `ctacct serve`, from the same engine.
import { createServer } from 'node:http';
import { EngineError, TopEngine } from '../core/engine.js';
import { UserError, explainSystemError } from '../errors.js';
import { CgroupReader, unitLabel } from '../proc/cgroup.js';
import type { System } from '../system.js';
import { lifecycle } from '../system/lifecycle.js';
import { formatSetupReport, withSystemSetup } from '../system/setup.js';
import { closeTracker, closeTrackerNotes } from '../wiring.js';
import { bind, EXPORTED_GROUPINGS, Exporter, handle, parseListen, type ServeArgs } from '../commands/serve.js';
import { engineDeps, LOW_OVERHEAD_LOOKUP, startEngine } from '../commands/engine.js';
import { bucketStart, capRemotes, MinuteRollup } from './rollup.js';
import { procIdentityDeps, UsageTap } from './source.js';
import { loadSqlite } from './sqlite.js';
import { processStart, UsageStore, sqliteError } from './store.js';

export interface CollectArgs {
  db: string;
  'keep-minutes': number;
  'keep-hours': number;
  'keep-days': number;
  'top-remotes': number;
  interval: number;
  listen?: string;
  'minute-seconds': number;
  rcvbuf: number;
  setup: boolean;
  'keep-acct': boolean;
}

/** Accounting rows of ended flows idle this long are forgotten (history already has them). */
const PRUNE_IDLE_MS = 15 * 60_000;

export async function runCollect(system: System, args: CollectArgs): Promise<void> {
  const Sqlite = await loadSqlite();
  const listen = args.listen ? parseListen(args.listen) : null;
  const store = UsageStore.open(Sqlite, args.db, { minuteS: args['minute-seconds'] });
  try {
    store.claimWriter({ pid: process.pid, start: processStart(process.pid) }, (pid, start) => start !== '' && processStart(pid) === start);
  } catch (e) {
    store.close();
    throw e instanceof UserError ? e : sqliteError(args.db, e);
  }
  const minuteS = store.minuteS;
  const server = listen ? createServer((req, res) => handle(req, res, () => exporter, (e) => failure?.(e))) : null;
  let exporter: Exporter | null = null;
  let failure: ((e: unknown) => void) | null = null;
  const stopServer = () => {
    server?.close();
    server?.closeAllConnections();
  };
  let written = 0;
  let lost = 0;
  let finished = false;
  /** Closes the database for readers and says what was written; once, on whichever exit path. */
  const finish = () => {
    if (finished) return;
    finished = true;
    try {
      store.closeForReaders();
    } catch {
      store.close();
    }
    system.stderr.write(`ctacct: wrote ${written} minute${written === 1 ? '' : 's'} to ${store.path}${lost ? `; ${lost} could not be written` : ''}\n`);
  };
  try {
    if (server && listen) await bind(server, listen.host, listen.port, args.listen!);
    await withSystemSetup(system, { setup: args.setup, keepAcct: args['keep-acct'], needConntrack: true }, async (report) => {
      system.stderr.write(formatSetupReport(report));
      closeTracker();
      for (const n of closeTrackerNotes()) system.stderr.write(`ctacct: note: ${n.message}\n`);
      const cgroups = new CgroupReader(system.procRoot);
      let minute = new MinuteRollup();
      const tap = new UsageTap((inc) => minute.add(inc), procIdentityDeps(system.procRoot, (pid) => unitLabel(cgroups.of(pid)) || null));
      const engine = new TopEngine(
        engineDeps(system, LOW_OVERHEAD_LOOKUP),
        // Every refresh dumps: the ticks set the cadence (one per --interval, aligned to the clock),
        // and the last reading at shutdown must be a fresh dump.
        { dumpEveryMs: 0, groupings: EXPORTED_GROUPINGS, rcvbuf: Math.round(args.rcvbuf * 1024 * 1024), onRetire: (st) => tap.retire(st), watchAccepts: closeTracker().tracker === null },
      );
      await startEngine(engine);
      tap.prime(engine.acc.flows.values());
      const nowS = () => system.now() / 1000;
      let current = bucketStart(nowS(), minuteS);
      const retention = { keepMinutes: args['keep-minutes'], keepHours: args['keep-hours'], keepDays: args['keep-days'] };
      const flush = (t: number) => {
        const rows = capRemotes(minute.take(), args['top-remotes']).rows;
        if (rows.length === 0) return;
        try {
          store.writeMinute(t, rows);
          written++;
        } catch (e) {
          lost++;
          throw sqliteError(store.path, e);
        }
      };
      let lostSeen = 0;
      let dumpFailuresSeen = 0;
      const tick = async () => {
        try {
          const snap = await engine.refresh({ groupBy: 'process', sort: 'total' });
          // Never silent about lost data: overruns (resynced with a dump) and failed dumps.
          if (snap.health.lost_events > lostSeen) {
            system.stderr.write(`ctacct: warning: ${snap.health.lost_events - lostSeen} conntrack event overrun(s); resynced with a dump (flows that began and ended in between may be missing)\n`);
            lostSeen = snap.health.lost_events;
          }
          if (engine.dumpFailures > dumpFailuresSeen) {
            system.stderr.write(`ctacct: warning: a conntrack dump failed (${engine.dumpFailures - dumpFailuresSeen}); retried with back-off, open flows' bytes wait for the next dump\n`);
            dumpFailuresSeen = engine.dumpFailures;
          }
        } catch (e) {
          throw e instanceof EngineError ? explainSystemError(e.cause, 'conntrack events') : e;
        }
        tap.sample(engine.acc.flows.values());
        const m = bucketStart(nowS(), minuteS);
        if (m !== current) {
          flush(current);
          current = m;
          try {
            store.fold(nowS(), retention);
          } catch (e) {
            throw sqliteError(store.path, e);
          }
          engine.acc.pruneRetired(PRUNE_IDLE_MS);
        }
      };
      system.stderr.write(`ctacct: collecting into ${store.path} (a ${minuteS === 60 ? 'minute' : `${minuteS} s "minute"`} per transaction)\n`);
      if (server) {
        exporter = new Exporter(system, serveDefaults(args), engine);
        exporter.tracking = report.tracking;
        const addr = server.address();
        const shown = addr && typeof addr === 'object' ? (addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`) : args.listen;
        system.stderr.write(`ctacct: serving http://${shown}/metrics\n`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      let inflight: Promise<void> | null = null;
      let stopping = false;
      let lifecycleOff: () => void = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        failure = (e) => reject(e);
        // Ticks on wall-clock multiples of the interval, so one falls on every minute boundary.
        const schedule = () => {
          if (stopping) return;
          const stepMs = args.interval * 1000;
          const now = system.now();
          timer = setTimeout(run, Math.max(1, Math.ceil((now + 1) / stepMs) * stepMs - now));
        };
        const run = () => {
          inflight = tick().then(
            () => {
              inflight = null;
              schedule();
            },
            (e: unknown) => reject(e),
          );
        };
        schedule();
        lifecycleOff = lifecycle().onShutdown(
          async () => {
            stopping = true;
            clearTimeout(timer);
            stopServer();
            // A last reading after the signal, then the minute so far is written (a restart in the
            // same minute adds to it).
            await inflight?.catch(() => undefined);
            try {
              await engine.refresh({ groupBy: 'process', sort: 'total' });
            } catch {
              /* what was read so far is still written */
            }
            tap.sample(engine.acc.flows.values(), true);
            flush(current);
            finish();
            resolve();
          },
          () => {
            stopping = true;
            clearTimeout(timer);
            stopServer();
            try {
              flush(current);
            } catch {
              /* the grace period ran out: the current minute is lost, as on kill -9 */
            }
            finish();
          },
        );
      });
      try {
        await done;
      } finally {
        lifecycleOff();
        stopping = true;
        clearTimeout(timer);
        exporter = null;
        engine.close();
      }
    });
  } finally {
    stopServer();
    finish();
  }
}

function serveDefaults(args: CollectArgs): ServeArgs {
  return {
    listen: args.listen!,
    'label-pid': false,
    expire: 900,
    'top-remotes': 0,
    'top-ports': 0,
    'tcp-states': true,
    'dump-interval': args.interval,
    rcvbuf: args.rcvbuf,
    setup: args.setup,
    'keep-acct': args['keep-acct'],
  };
}
