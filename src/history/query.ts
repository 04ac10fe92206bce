// What `report` asks of the database (pure): the time window, the grouping columns per --by key,
// and the grouped sums turned into ranked rows with a sparkline each.
import { EXIT, UserError } from '../errors.js';

export type ReportKey = 'process' | 'exe' | 'user' | 'unit' | 'container' | 'remote' | 'port';
export const REPORT_KEYS: ReportKey[] = ['process', 'exe', 'user', 'unit', 'container', 'remote', 'port'];

/** SQL expressions (over `i` idents and `s` series) that a --by key groups on, with their names. */
const COLUMNS: Record<ReportKey, [string, string][]> = {
  process: [
    ['exe', 'i.exe'],
    ['comm', 'i.comm'],
    ['uid', 'i.uid'],
    ['user', 'i.user'],
    ['unit', 'i.unit'],
    ['container', 'i.container'],
    ['fwd', "s.dir = 'fwd'"],
  ],
  exe: [
    ['exe', 'i.exe'],
    ['comm', 'CASE WHEN i.exe IS NULL THEN i.comm END'],
    ['fwd', "s.dir = 'fwd'"],
  ],
  user: [
    ['uid', 'i.uid'],
    ['user', 'i.user'],
    ['fwd', "s.dir = 'fwd'"],
  ],
  unit: [
    ['unit', 'i.unit'],
    ['fwd', "s.dir = 'fwd'"],
  ],
  container: [
    ['container', 'i.container'],
    ['fwd', "s.dir = 'fwd'"],
  ],
  remote: [['remote', 's.remote']],
  port: [
    ['proto', 's.proto'],
    ['port', 's.port'],
  ],
};

/** `--by exe,remote` → ['exe', 'remote']: one or two distinct keys. */
export function parseBy(v: string | string[]): ReportKey[] {
  const keys = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(',')).map((s) => s.trim()).filter(Boolean);
  if (keys.length === 0 || keys.length > 2) throw new UserError(`--by: give one or two keys (e.g. --by exe or --by exe,remote)`, EXIT.usage, 'ERR_USAGE');
  for (const k of keys) if (!REPORT_KEYS.includes(k as ReportKey)) throw new UserError(`--by: '${k}' is not one of ${REPORT_KEYS.join(', ')}`, EXIT.usage, 'ERR_USAGE');
  if (keys[0] === keys[1]) throw new UserError(`--by: '${keys[0]}' twice`, EXIT.usage, 'ERR_USAGE');
  return keys as ReportKey[];
}

/**
 * A point in time for --since/--until (unix seconds): a duration back from now (`90m`, `1h`,
 * `24h`, `7d`, `30d`, `2w`), a date (`2026-11-01`, local midnight) or a date and time
 * (`2026-11-01T08:00`, `2026-11-01 08:00`, with or without a zone), or `now`.
 */
export function parseTime(v: string, nowS: number, opt: string): number {
  const s = v.trim();
  if (s === 'now') return nowS;
  const d = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$/.exec(s);
  if (d) {
    const mult = { s: 1, m: 60, min: 60, h: 3600, d: 86400, w: 604800 }[d[2] as 's' | 'm' | 'min' | 'h' | 'd' | 'w'];
    return Math.round(nowS - Number(d[1]) * mult);
  }
  let ms = NaN;
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (date) ms = new Date(Number(date[1]), Number(date[2]) - 1, Number(date[3])).getTime();
  else if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(s)) ms = Date.parse(s.replace(' ', 'T'));
  if (!Number.isFinite(ms))
    throw new UserError(`${opt} '${v}': not a time (give 1h, 24h, 7d, 30d, a date like 2026-11-01, or a date and time like 2026-11-01T08:00)`, EXIT.usage, 'ERR_USAGE');
  return Math.floor(ms / 1000);
}

export interface Window {
  from: number;
  to: number;
  /**
   * The bound bucket starts are kept below (unix seconds, exclusive). A window that ends now
   * holds the bucket begun this very second (its start equals the floored now): `to` + 1 then.
   */
  end: number;
}

/** The report's window; nowS may carry a fraction (the present instant). */
export function parseWindow(since: string, until: string | undefined, nowS: number): Window {
  const now = Math.floor(nowS);
  const from = parseTime(since, now, '--since');
  const toNow = until === undefined || until.trim() === 'now';
  const to = toNow ? now : parseTime(until, now, '--until');
  if (!(to > from)) throw new UserError(`--since must be before --until`, EXIT.usage, 'ERR_USAGE');
  return { from, to, end: toNow ? now + 1 : to };
}

/** The grouped query: one row per group and sparkline slot. Parameters: from, slots, span, then from, to per level. */
export function groupedSql(by: ReportKey[]): { sql: string; names: string[] } {
  const cols = by.flatMap((k, n) => COLUMNS[k].map(([name, expr]) => ({ name: `k${n}_${name}`, expr })));
  const names = cols.map((c) => c.name);
  const levels = ['minutes', 'hours', 'days'].map((t) => `SELECT t, series, sent, recv, flows FROM ${t} WHERE t >= ? AND t < ?`).join(' UNION ALL ');
  // Summed per series and slot first (one pass over the buckets, no join per bucket), then the
  // few resulting rows are joined to their identities and grouped by the --by columns.
  const sql = `SELECT ${cols.map((c) => `${c.expr} AS ${c.name}`).join(', ')},
       u.slot AS slot, SUM(u.sent) AS sent, SUM(u.recv) AS recv, SUM(u.flows) AS flows
  FROM (SELECT series, CAST((t - ?) * ? / ? AS INTEGER) AS slot, SUM(sent) AS sent, SUM(recv) AS recv, SUM(flows) AS flows
          FROM (${levels}) GROUP BY series, slot) u
  JOIN series s ON s.id = u.series JOIN idents i ON i.id = s.ident
  GROUP BY ${names.join(', ')}, u.slot`;
  return { sql, names };
}

/** One row of the grouped query. */
export type GroupedRow = Record<string, string | number | null> & { slot: number; sent: number; recv: number; flows: number };

export interface ReportRow {
  /** The row's name per --by key, as printed. */
  labels: string[];
  /** Identity fields of the --by keys (JSON/CSV). */
  fields: Record<string, string | number | boolean | null>;
  sent_bytes: number;
  recv_bytes: number;
  total_bytes: number;
  flows: number;
  /** Bytes (sent + received) per sparkline slot. */
  series: number[];
}

export interface Sums {
  sent_bytes: number;
  recv_bytes: number;
  total_bytes: number;
  flows: number;
}

export interface Report {
  since: string;
  until: string;
  by: ReportKey[];
  slot_seconds: number;
  rows: ReportRow[];
  /** Groups beyond --top, summed (null when none). */
  rest: (Sums & { groups: number }) | null;
  total: Sums & { series: number[] };
}

function label(k: ReportKey, f: Record<string, string | number | boolean | null>): string {
  if (f.fwd) return '(forwarded)';
  switch (k) {
    case 'process': {
      if (f.comm === null && f.exe === null) return f.uid !== null ? `(unknown, user ${f.user ?? f.uid})` : '(unknown)';
      const name = String(f.comm ?? f.exe);
      const who = [f.user ?? f.uid, f.exe].filter((x) => x !== null);
      return who.length ? `${name} (${who.join(', ')})` : name;
    }
    case 'exe':
      return f.exe !== null ? String(f.exe) : f.comm !== null ? `[${f.comm}]` : '(unknown)';
    case 'user':
      return f.user !== null ? String(f.user) : f.uid !== null ? String(f.uid) : '(unknown)';
    case 'unit':
      return f.unit !== null ? String(f.unit) : '(none)';
    case 'container':
      return f.container !== null ? String(f.container) : '(host)';
    case 'remote':
      return String(f.remote);
    case 'port':
      return f.port !== null ? `${f.proto}/${f.port}` : String(f.proto);
  }
}

/** Ranks grouped sums into the report (pure): rows by total bytes, then the first label. */
export function buildReport(rows: GroupedRow[], by: ReportKey[], win: Pick<Window, 'from' | 'to'>, slots: number, top: number): Report {
  const groups = new Map<string, ReportRow>();
  const total: Report['total'] = { sent_bytes: 0, recv_bytes: 0, total_bytes: 0, flows: 0, series: new Array<number>(slots).fill(0) };
  for (const r of rows) {
    const perKey = by.map((k, n) => {
      const f: Record<string, string | number | boolean | null> = {};
      for (const [name] of COLUMNS[k]) {
        const v = r[`k${n}_${name}`] ?? null;
        f[name] = name === 'fwd' ? v === 1 : v;
      }
      return f;
    });
    const labels = by.map((k, n) => label(k, perKey[n]!));
    const fields: ReportRow['fields'] = {};
    for (const f of perKey) for (const [name, v] of Object.entries(f)) if (name !== 'fwd') fields[name] = v;
    if (perKey.some((f) => f.fwd === true)) fields.forwarded = true;
    const id = JSON.stringify([labels, fields]);
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { labels, fields, sent_bytes: 0, recv_bytes: 0, total_bytes: 0, flows: 0, series: new Array<number>(slots).fill(0) }));
    g.sent_bytes += r.sent;
    g.recv_bytes += r.recv;
    g.total_bytes += r.sent + r.recv;
    g.flows += r.flows;
    const slot = Math.min(slots - 1, Math.max(0, r.slot));
    g.series[slot]! += r.sent + r.recv;
    total.sent_bytes += r.sent;
    total.recv_bytes += r.recv;
    total.total_bytes += r.sent + r.recv;
    total.flows += r.flows;
    total.series[slot]! += r.sent + r.recv;
  }
  const ranked = [...groups.values()].sort((a, b) => b.total_bytes - a.total_bytes || cmp(a.labels.join('\u0000'), b.labels.join('\u0000')));
  const shown = top > 0 ? ranked.slice(0, top) : ranked;
  const restRows = ranked.slice(shown.length);
  const rest = restRows.length
    ? restRows.reduce(
        (a, r) => ({ groups: a.groups + 1, sent_bytes: a.sent_bytes + r.sent_bytes, recv_bytes: a.recv_bytes + r.recv_bytes, total_bytes: a.total_bytes + r.total_bytes, flows: a.flows + r.flows }),
        { groups: 0, sent_bytes: 0, recv_bytes: 0, total_bytes: 0, flows: 0 },
      )
    : null;
  return {
    since: new Date(win.from * 1000).toISOString(),
    until: new Date(win.to * 1000).toISOString(),
    by,
    slot_seconds: (win.to - win.from) / slots,
    rows: shown,
    rest,
    total,
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
