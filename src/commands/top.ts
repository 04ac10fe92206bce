// `ctacct top`: the live per-process (or per-connection/remote/port/user) traffic view.
import { promises as dnsPromises } from 'node:dns';
import { existsSync } from 'node:fs';
import { NameCache } from '../views/names.js';
import pidusage from 'pidusage';
import type { CommandModule } from 'yargs';
import { TopEngine, EngineError } from '../core/engine.js';
import { toFilters, toKernelFilters, type FilterArgs } from '../core/filters.js';
import { GROUP_BYS, SORT_KEYS, type GroupBy, type SortKey, type TopSnapshot } from '../core/model.js';
import { EXIT, UserError, explainSystemError } from '../errors.js';
import type { System } from '../system.js';
import { lifecycle } from '../system/lifecycle.js';
import { formatSetupReport, withSystemSetup, type SetupReport } from '../system/setup.js';
import { renderJsonLine } from '../views/json.js';
import { renderSummary } from '../views/summary.js';
import { renderTrace } from '../views/trace.js';
import { closeTracker, closeTrackerNotes, enterNetns, makeForeignAttributor, uidOfUser } from '../wiring.js';
import { engineDeps, LOW_OVERHEAD_LOOKUP, startEngine } from './engine.js';
import { checkPositive, filterOptions, netnsOptions, outputOptions, ownerFilterOptions, setupOptions, usage } from './options.js';
import { runLive, runStream } from '../views/live.js';

export interface TopArgs extends FilterArgs {
  by: GroupBy;
  sort: SortKey;
  interval?: number;
  count?: number;
  once: boolean;
  trace: boolean;
  /** --resolve (shared output option): reverse DNS in the live view. */
  resolve?: boolean;
  json: boolean;
  bits: boolean;
  limit?: number;
  'low-overhead': boolean;
  'dump-interval'?: number;
  rcvbuf: number;
  color: boolean;
  setup: boolean;
  'keep-acct': boolean;
  netns?: string;
}

/** Rows whose process CPU/MEM is sampled with pidusage each refresh (default mode only). */
const USAGE_ROWS = 10;

export function topCommand(system: System): CommandModule<object, TopArgs> {
  return {
    command: ['top', '$0'],
    describe: 'Live traffic per process, connection, remote host, port or user (the default; needs CAP_NET_ADMIN)',
    builder: (y) =>
      netnsOptions(setupOptions(outputOptions(ownerFilterOptions(filterOptions(y)))))
        .option('by', { choices: GROUP_BYS, default: 'process' as GroupBy, describe: 'Group rows by', group: 'View:' })
        .option('sort', { choices: SORT_KEYS, default: 'total' as SortKey, describe: 'Sort rows by rate sent/recv/total, open conns, or new conns', group: 'View:' })
        .option('interval', { alias: ['d', 'delay', 'watch'], type: 'number', describe: 'Seconds between refreshes (default 1; with --low-overhead, the dump interval); -d as in nethogs', group: 'View:' })
        .option('count', { alias: 'c', type: 'number', describe: 'Stop after N refreshes', group: 'View:' })
        .option('once', { type: 'boolean', default: false, describe: 'One refresh, then exit (= --count 1)', group: 'View:' })
        .option('limit', { alias: 'top', type: 'number', describe: 'At most N rows (default: every key that had traffic)', group: 'View:' })
        .option('trace', { alias: 't', type: 'boolean', default: false, describe: 'Plain text lines per refresh, like `nethogs -t` (default when stdout is not a terminal)', group: 'Output:' })
        .option('bits', { type: 'boolean', default: false, describe: 'Rates in bits per second', group: 'Output:' })
        .option('color', { type: 'boolean', default: true, describe: 'Colour in the live view (also off with NO_COLOR)', group: 'Output:' })
        .option('low-overhead', { type: 'boolean', default: false, describe: 'For busy servers: full dumps every 10 s (or --dump-interval), events in between, no per-row CPU sampling', group: 'Cost:' })
        .option('dump-interval', { type: 'number', describe: 'Seconds between full table dumps (default: every refresh; 10 with --low-overhead)', group: 'Cost:' })
        .option('rcvbuf', { type: 'number', default: 64, describe: 'Event socket receive buffer in MiB (grows after an overrun)', group: 'Cost:' })
        .check((a) => {
          if (a.json && a.trace) throw usage('--json and --trace are two output formats: choose one');
          checkPositive('rcvbuf', a.rcvbuf);
          if (a.interval !== undefined && !(a.interval > 0)) throw new UserError('--interval must be a positive number of seconds', EXIT.usage, 'ERR_USAGE');
          if (a.count !== undefined && !(Number.isInteger(a.count) && a.count >= 1)) throw new UserError('--count must be a whole number ≥ 1', EXIT.usage, 'ERR_USAGE');
          if (a.limit !== undefined && !(Number.isInteger(a.limit) && a.limit >= 1)) throw new UserError('--limit must be a whole number ≥ 1', EXIT.usage, 'ERR_USAGE');
          if (a['dump-interval'] !== undefined && !(a['dump-interval'] > 0)) throw new UserError('--dump-interval must be a positive number of seconds', EXIT.usage, 'ERR_USAGE');
          return true;
        })
        .example('sudo ctacct top', 'live view per process (keys: q s r t b m p h)')
        .example('sudo ctacct top --by remote --port 443', 'who we talk to over HTTPS')
        .example('sudo ctacct top --json --count 10 > usage.jsonl', 'ten refreshes as JSON lines; the last is a complete summary')
        .example('sudo ctacct top --trace', 'nethogs -t style lines for scripts')
        .example('sudo ctacct top --low-overhead --interval 5', 'a busy server with a huge conntrack table') as never,
    handler: (args) => runTop(system, args),
  };
}

async function selfUsage(pid: number): Promise<{ cpu_percent: number; rss_bytes: number }> {
  try {
    const u = await pidusage(pid);
    return { cpu_percent: Math.round(u.cpu * 10) / 10, rss_bytes: u.memory };
  } catch {
    return { cpu_percent: 0, rss_bytes: process.memoryUsage().rss };
  }
}

async function addRowUsage(s: TopSnapshot): Promise<void> {
  if (s.group_by !== 'process') return;
  const pids = s.rows.slice(0, USAGE_ROWS).map((r) => r.pid).filter((p): p is number => p !== null);
  if (!pids.length) return;
  let stats: Record<string, { cpu: number; memory: number }> = {};
  try {
    stats = (await pidusage(pids)) as Record<string, { cpu: number; memory: number }>;
  } catch {
    return; // a process exited between the refresh and the sample: no CPU column this time
  }
  for (const r of s.rows.slice(0, USAGE_ROWS)) {
    const u = r.pid !== null ? stats[String(r.pid)] : undefined;
    r.cpu_percent = u ? Math.round(u.cpu * 10) / 10 : null;
    r.rss_bytes = u ? u.memory : null;
  }
}

/** --by process: flags rows whose process is gone, so the live view dims and later drops them. */
function markExited(s: TopSnapshot): void {
  if (s.group_by !== 'process') return;
  for (const r of s.rows) if (r.pid !== null) r.exited = !existsSync(`/proc/${r.pid}`);
}

export function changeLines(report: SetupReport): string[] {
  return report.changes.map((c) => `${c.what}: ${c.detail}`);
}

async function runTop(system: System, args: TopArgs): Promise<void> {
  enterNetns(system, args.netns);
  const filters = toFilters(args, uidOfUser);
  const count = args.once ? 1 : args.count;
  const mode: 'json' | 'trace' | 'live' = args.json ? 'json' : args.trace || !system.stdout.isTTY ? 'trace' : 'live';
  const low = args['low-overhead'];
  const dumpEvery = args['dump-interval'] ?? (low ? 10 : undefined);
  // Live counters come with dumps: refreshing more often than dumping would show a long flow's
  // bytes as a spike in one refresh, so the low-overhead view refreshes with its dumps by default.
  const intervalS = args.interval ?? (low ? dumpEvery! : 1);
  await withSystemSetup(system, { setup: args.setup, keepAcct: args['keep-acct'], needConntrack: true }, async (report) => {
    const changes = changeLines(report);
    if (report.tracking === 'not-tracking' && mode !== 'live') {
      // A script must not mistake "not tracking" for "no traffic".
      const why = report.notes.find((n) => n.code === 'not-tracking')?.message ?? 'conntrack does not track in this network namespace';
      throw new UserError(`${why} (exit 4: not tracking)`, EXIT.unsupported, 'ERR_NOT_TRACKING');
    }
    // Loaded before the first event (it only knows closes from then on); a note when it cannot be.
    closeTracker();
    const trackerNotes = closeTrackerNotes();
    const setupFacts = {
      tracking: report.tracking,
      notes: [...report.notes, ...trackerNotes],
      systemChanges: report.changes.map((c) => ({ code: c.code, message: `${c.what}: ${c.detail}` })),
    };
    if (mode !== 'json') {
      system.stderr.write(formatSetupReport(report));
      for (const n of trackerNotes) system.stderr.write(`ctacct: note: ${n.message}\n`);
    }
    const lookup = low ? LOW_OVERHEAD_LOOKUP : {};
    const engine = new TopEngine(engineDeps(system, lookup), {
        ...(dumpEvery !== undefined ? { dumpEveryMs: dumpEvery * 1000 } : {}),
        kernelFilters: toKernelFilters(args),
        watchAccepts: closeTracker().tracker === null,
        // Only the live view switches group-by: --json and the trace keep just --by's rows.
        ...(mode !== 'live' ? { groupings: [args.by] } : {}),
        filters,
        ...(args.limit !== undefined ? { limit: args.limit } : {}),
        rcvbuf: Math.round(args.rcvbuf * 1024 * 1024),
      foreign: makeForeignAttributor(system, lookup),
    });
    await startEngine(engine);
    let warnedCost = false;
    const next = async (ui: { groupBy: GroupBy; sort: SortKey }): Promise<TopSnapshot> => {
      let s: TopSnapshot;
      try {
        s = await engine.refresh({ groupBy: ui.groupBy, sort: ui.sort, self: await selfUsage(system.pid), changes, ...setupFacts });
      } catch (e) {
        throw e instanceof EngineError ? explainSystemError(e.cause, 'conntrack events') : e;
      }
      if (!low) await addRowUsage(s);
      markExited(s);
      // A refresh that spends a quarter of its interval dumping the table: say once what helps.
      if (!warnedCost && !low && mode !== 'json' && (s.health.dump_ms ?? 0) > intervalS * 250) {
        warnedCost = true;
        if (mode === 'trace')
          system.stderr.write(`ctacct: note: each refresh reads ${s.health.dump_records} conntrack entries in ${Math.round(s.health.dump_ms!)} ms; --low-overhead (or --port/--proto, filtered in the kernel) costs far less on tables this big\n`);
      }
      return s;
    };
    try {
      await runLoop(system, { next, intervalMs: intervalS * 1000, count, args, mode, changes });
    } finally {
      engine.close();
    }
  });
}

/** Runs the live screen (a terminal) or the line stream (--json, --trace, not a TTY) until
 *  --count, q, or a signal; then writes the summary (the screen is restored first). */
async function runLoop(
  system: System,
  o: { next: (ui: { groupBy: GroupBy; sort: SortKey }) => Promise<TopSnapshot>; intervalMs: number; count: number | undefined; args: TopArgs; mode: 'json' | 'trace' | 'live'; changes: string[] },
): Promise<void> {
  const ui = { groupBy: o.args.by, sort: o.args.sort };
  let summarized = false;
  const summary = (last: TopSnapshot | null) => {
    if (summarized || o.mode === 'json') return; // in JSON the last line is the complete summary
    summarized = true;
    // --trace: the summary goes to stderr, so nethogs-format parsers reading stdout see only refreshes.
    if (o.mode === 'trace') system.stderr.write(renderSummary(last, {}));
    else system.stdout.write(renderSummary(last, { width: system.stdout.columns() }));
  };
  const terminal = o.mode === 'live' ? system.liveTerminal() : null;
  const handle = terminal
    ? runLive({
        terminal,
        clock: system.clock(),
        next: o.next,
        intervalMs: o.intervalMs,
        ...(o.count !== undefined ? { count: o.count } : {}),
        color: o.args.color && !system.env.NO_COLOR && system.env.TERM !== 'dumb',
        bits: o.args.bits,
        ui,
        changes: o.changes,
        ...(o.args.resolve ? { names: new NameCache((addr) => dnsPromises.reverse(addr)) } : {}),
        onExit: (r) => summary(r.last),
      })
    : runStream({
        write: (t) => system.stdout.write(t),
        clock: system.clock(),
        next: o.next,
        intervalMs: o.intervalMs,
        ...(o.count !== undefined ? { count: o.count } : {}),
        ui,
        render: (snap, previous) =>
          o.mode === 'json' ? renderJsonLine(snap) : renderTrace(snap, { sort: o.args.sort, previous }),
        onExit: (r) => summary(r.last),
      });
  // A signal ends the loop; the screen is restored and the summary written before set-up is undone
  // (the lifecycle runs the newest cleanup first).
  const off = lifecycle().onShutdown(
    async () => {
      handle.stop();
      await handle.done.catch(() => undefined);
    },
    () => handle.stop(),
  );
  try {
    await handle.done;
  } finally {
    off();
  }
}
