// `ctacct report`: reads the usage database (read-only, no root needed) and prints the window.
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { EXIT, UserError } from '../errors.js';
import type { System } from '../system.js';
import { renderReport, reportCsv, reportJson } from './format.js';
import { buildReport, groupedSql, parseBy, parseWindow, type GroupedRow, type ReportRow } from './query.js';
import { loadSqlite } from './sqlite.js';
import { UsageStore, sqliteError } from './store.js';

export interface ReportArgs {
  db: string;
  since: string;
  until?: string;
  by: string[];
  top: number;
  json: boolean;
  csv: boolean;
  resolve: boolean;
}

/** Sparkline cells over the period. */
export const SLOTS = 24;

export async function runReport(system: System, args: ReportArgs): Promise<void> {
  const by = parseBy(args.by);
  if (!(Number.isInteger(args.top) && args.top >= 0)) throw new UserError('--top must be a whole number ≥ 0 (0: every row)', EXIT.usage, 'ERR_USAGE');
  if (args.json && args.csv) throw new UserError('--json and --csv: choose one', EXIT.usage, 'ERR_USAGE');
  const win = parseWindow(args.since, args.until, system.now() / 1000);
  const Sqlite = await loadSqlite();
  const store = UsageStore.open(Sqlite, args.db, { readonly: true });
  let rows: GroupedRow[];
  try {
    const { sql } = groupedSql(by);
    const span = win.to - win.from;
    rows = store.db.prepare(sql).all(win.from, SLOTS, span, win.from, win.end, win.from, win.end, win.from, win.end) as GroupedRow[];
  } catch (e) {
    throw e instanceof UserError ? e : sqliteError(args.db, e);
  } finally {
    store.close();
  }
  const report = buildReport(rows, by, win, SLOTS, args.top);
  let names: ((row: ReportRow, i: number) => string) | undefined;
  if (args.resolve) {
    const cache = await resolveRemotes(report.rows.flatMap((r) => by.map((k, i) => (k === 'remote' ? r.labels[i]! : null)).filter((x): x is string => x !== null)));
    names = (row, i) => (by[i] === 'remote' ? (cache.get(row.labels[i]!) ?? row.labels[i]!) : row.labels[i]!);
  }
  if (args.json) system.stdout.write(reportJson(report, names));
  else if (args.csv) system.stdout.write(reportCsv(report));
  else system.stdout.write(renderReport(report, system.stdout.columns(), names));
}

const dnsCache = new Map<string, string>();

/** Reverse DNS of the shown remotes only, in parallel, 2 s at most; a failure keeps the address. */
async function resolveRemotes(addrs: string[]): Promise<Map<string, string>> {
  const todo = [...new Set(addrs)].filter((a) => isIP(a) && !dnsCache.has(a));
  const timeout = new Promise<void>((r) => setTimeout(r, 2000).unref());
  await Promise.race([
    Promise.all(
      todo.map((a) =>
        dns.reverse(a).then(
          (names) => void dnsCache.set(a, names[0] ? `${names[0]} (${a})` : a),
          () => void dnsCache.set(a, a),
        ),
      ),
    ),
    timeout,
  ]);
  return dnsCache;
}
