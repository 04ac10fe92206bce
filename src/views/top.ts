// The `ctacct top` full-screen frame: pure (snapshot, size, ui) → string, one line per screen row.
// Width-aware: no line is ever longer than `width`, and no more lines than `height` are returned.
import { compareRows, type Bucket, type GroupBy, type SortKey, type TopRow, type TopSnapshot } from '../core/model.js';
import {
  displayWidth,
  fit,
  formatBytes,
  formatCompact,
  formatCount,
  formatDuration,
  formatPercent,
  formatRate,
  plural,
  sanitize,
  truncate,
} from './format.js';
import { inDrill, KEY_HELP, matchesFilter, type DisplayMode, type Drill, type RateWindow } from './keys.js';

export interface TopRenderOptions {
  width: number;
  height: number;
  /** Rates in SI bits (kbit/s, Mbit/s) instead of IEC bytes. */
  bits: boolean;
  /** 'rate' leads with SENT/s RECV/s, 'total' with totals since start (and sorts by them). */
  mode: DisplayMode;
  sort: SortKey;
  /** First row shown; clamped to what exists. */
  scroll: number;
  paused: boolean;
  /** ANSI colour; the command turns it off for NO_COLOR, TERM=dumb or --no-color. */
  color: boolean;
  /** What ctacct changed on the system; defaults to snapshot.health.changes. */
  changes?: string[];
  showHelp?: boolean;
  /** The group-by picked with `b` when the snapshot on screen was made with another one. */
  pendingGroupBy?: GroupBy;
  /** The configured refresh interval for the header (the snapshot's interval_s is the measured one). */
  intervalS?: number;
  /** Which rate the rate columns show and sort by (w). */
  window?: RateWindow;
  /** Only rows containing this text (/); `editing` shows the prompt. */
  filter?: string;
  editing?: boolean;
  /** The cursor row (index among the rows shown), painted inverse. */
  selected?: number;
  /** Show the connections of this row (the snapshot must be --by conn). */
  drill?: Drill | null;
  /** Per row key, its recent rates (bytes/s, oldest first) for the sparkline; column shown when given. */
  history?: ReadonlyMap<string, readonly number[]>;
  /** Keys of rows whose process has exited: dimmed and marked. */
  exited?: ReadonlySet<string>;
  /** --resolve: the host name of an address when known (null: show the address). */
  nameOf?: (addr: string) => string | null;
}

/** A row's sent or received rate in the chosen window (the refresh's when the window is absent). */
export function rateOf(r: TopRow, dir: 'sent' | 'recv', window: RateWindow = 'refresh'): number {
  if (window === 'refresh') return r[`${dir}_bps`];
  return r[`${dir}_bps_${window}`] ?? r[`${dir}_bps`];
}

// ---------------------------------------------------------------------------------------------
// Styled segments: lines are built as plain text plus styles, cut to width, then painted, so a
// coloured frame is exactly the plain frame with SGR codes added.

export type Style = 'bold' | 'dim' | 'inverse' | 'underline' | 'red' | 'yellow' | 'green' | 'cyan';
export interface Seg {
  text: string;
  style?: Style[];
}
type Line = Seg[];

const SGR: Record<Style, string> = { bold: '1', dim: '2', inverse: '7', underline: '4', red: '31', yellow: '33', green: '32', cyan: '36' };

/** Cuts a line of segments to `width` columns and paints it; trailing blanks are dropped unless `fill`. */
export function paint(segs: Line, width: number, color: boolean, fill = false): string {
  const pieces: Seg[] = [];
  let used = 0;
  for (const seg of segs) {
    if (used >= width) break;
    const w = displayWidth(seg.text);
    const text = used + w > width ? truncate(seg.text, width - used) : seg.text;
    if (text === '') continue;
    pieces.push({ text, style: seg.style });
    used += displayWidth(text);
  }
  if (fill && color && used < width) pieces.push({ text: ' '.repeat(width - used), style: pieces.at(-1)?.style });
  else {
    while (pieces.length > 0) {
      const last = pieces[pieces.length - 1]!;
      const t = last.text.trimEnd();
      if (t !== '') {
        last.text = t;
        break;
      }
      pieces.pop();
    }
  }
  return pieces
    .map((p) => (color && p.style && p.style.length > 0 ? `\x1b[${p.style.map((s) => SGR[s]).join(';')}m${p.text}\x1b[0m` : p.text))
    .join('');
}

/** Joins parts with `sep`, leaving out (whole) any part that would overflow `width`. */
function joinFitting(parts: Seg[][], sep: string, width: number): Line {
  const out: Line = [];
  let used = 0;
  for (const part of parts) {
    const w = part.reduce((a, s) => a + displayWidth(s.text), 0);
    const extra = out.length > 0 ? displayWidth(sep) : 0;
    if (used + extra + w > width) continue;
    if (extra) out.push({ text: sep });
    out.push(...part);
    used += extra + w;
  }
  return out.length > 0 ? out : (parts[0] ?? []);
}

// ---------------------------------------------------------------------------------------------
// Columns

export interface Column {
  title: string;
  align: 'left' | 'right';
  /** Fixed width, or the minimum width of a flexible column. */
  width: number;
  /** Flexible columns share the spare width, up to their widest cell. */
  flex?: boolean;
  /** A flexible column's width before spare columns are shared evenly. */
  comfort?: number;
  /** Columns with the same priority are kept or dropped together; lower is kept longer. */
  pri: number;
  /** A flexible column may shrink to this to make room for an essential column. */
  minWidth?: number;
  /** Kept at the cost of cutting the names shorter (the rates: what the view is for). */
  essential?: boolean;
  /** The column shows what the table is sorted by (its title is highlighted). */
  sorted?: boolean;
  cut?: 'end' | 'middle';
  cell(r: TopRow, width: number): string;
}

export interface ColumnContext {
  bits: boolean;
  mode: DisplayMode;
  /** Any row has CPU/memory figures (pidusage samples the top rows of --by process). */
  usage: boolean;
  window?: RateWindow;
  sort?: SortKey;
  history?: ReadonlyMap<string, readonly number[]>;
  exited?: ReadonlySet<string>;
  nameOf?: (addr: string) => string | null;
}

const text = (s: string | null | undefined): string => (s === null || s === undefined || s === '' ? '-' : sanitize(s));

function pidCell(r: TopRow): string {
  // The `+` marks a socket shared by several processes (after fork); the lowest pid is shown.
  return r.pid === null || r.pid === undefined ? '- ' : `${r.pid}${r.shared ? '+' : ' '}`;
}

/**
 * PROGRAM: the name, then the arguments shortened (paths to their last part), so the column says
 * what runs rather than where it is installed: `/root/.pyenv/versions/3.12/bin/python3
 * /srv/app/manage.py runserver` reads `python3 manage.py runserver`. The drill-down shows it in full.
 */
export function shortProgram(r: Pick<TopRow, 'comm' | 'cmdline' | 'key'>): string {
  const args = (r.cmdline ?? '').trim().split(/ +/).filter(Boolean);
  const base = (a: string) => (a.length > 1 && a.includes('/') && !a.endsWith('/') && !a.includes('=') ? a.slice(a.lastIndexOf('/') + 1) : a);
  // The kernel's comm is cut at 15 bytes ("systemd-resolve"): argv[0]'s last part when it starts with it.
  const arg0 = args[0] ? base(args[0]) : null;
  const name = r.comm && arg0?.startsWith(r.comm) ? arg0 : (r.comm ?? arg0);
  if (!name) return text(r.key);
  // A process that rewrote its title ("nginx: worker process", "postgres: 15/main: walwriter") keeps it whole.
  if (args.length > 0 && /^[^/]+:$/.test(args[0]!)) return sanitize(args.join(' '));
  return sanitize([name, ...args.slice(1).map(base)].join(' '));
}

function programCell(r: TopRow): string {
  return shortProgram(r);
}

/** The whole command line (the exit summary names every process in full). */
function fullProgramCell(r: TopRow): string {
  const cmd = r.cmdline?.trim();
  return cmd ? sanitize(cmd) : text(r.comm ?? r.key);
}

const SPARK = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/**
 * The last minute of a row's total rate in `width` characters, each the mean of its share of the
 * samples, scaled to the row's own peak. Blank is exactly zero; any traffic shows at least ▁.
 */
export function sparkline(samples: readonly number[], width: number): string {
  if (width <= 0 || samples.length === 0) return '';
  const n = Math.min(width, samples.length);
  const buckets: number[] = [];
  for (let i = 0; i < n; i++) {
    const part = samples.slice(Math.floor((i * samples.length) / n), Math.floor(((i + 1) * samples.length) / n));
    buckets.push(part.reduce((a, b) => a + b, 0) / Math.max(1, part.length));
  }
  const peak = Math.max(...buckets);
  return buckets.map((v) => (v <= 0 || peak <= 0 ? ' ' : SPARK[Math.min(7, Math.floor((v / peak) * 7.999))]!)).join('').padStart(width);
}

function trafficColumns(ctx: ColumnContext, ratePri: number, totalPri: number): Column[] {
  const rw = ctx.bits ? 9 : 8;
  // "SENT/s", or the window's length in its place: "SENT/10s" (fits the 8-column cell).
  const per = ctx.window && ctx.window !== 'refresh' ? ctx.window : 's';
  const sortsOn = (dir: 'sent' | 'recv', what: DisplayMode) => ctx.mode === what && (ctx.sort === dir || ctx.sort === 'total');
  const rates: Column[] = [
    { title: `SENT/${per}`, align: 'right', width: rw, pri: ratePri, essential: ctx.mode === 'rate', sorted: sortsOn('sent', 'rate'), cell: (r) => formatRate(rateOf(r, 'sent', ctx.window), ctx.bits, false) },
    { title: `RECV/${per}`, align: 'right', width: rw, pri: ratePri, essential: ctx.mode === 'rate', sorted: sortsOn('recv', 'rate'), cell: (r) => formatRate(rateOf(r, 'recv', ctx.window), ctx.bits, false) },
  ];
  const totals: Column[] = [
    { title: 'TOTAL SENT', align: 'right', width: 10, pri: totalPri, essential: ctx.mode === 'total', sorted: sortsOn('sent', 'total'), cell: (r) => formatBytes(r.sent_total) },
    { title: 'TOTAL RECV', align: 'right', width: 10, pri: totalPri, essential: ctx.mode === 'total', sorted: sortsOn('recv', 'total'), cell: (r) => formatBytes(r.recv_total) },
  ];
  const trend: Column[] = ctx.history
    ? [{ title: 'LAST 60s', align: 'right', width: 10, pri: 9, cell: (r) => sparkline(ctx.history!.get(r.key) ?? [], 10) }]
    : [];
  return ctx.mode === 'rate' ? [...rates, ...totals, ...trend] : [...totals, ...rates, ...trend];
}

/** In 'total' mode the totals take the rates' place (and priority). */
function trafficPri(ctx: ColumnContext, first: number, second: number): [number, number] {
  return ctx.mode === 'rate' ? [first, second] : [second, first];
}

const conns = (pri: number, ctx?: ColumnContext): Column => ({ title: 'CONNS', align: 'right', width: 5, pri, sorted: ctx?.sort === 'conns', cell: (r) => formatCompact(r.flows) });
const fresh = (pri: number, ctx?: ColumnContext): Column => ({ title: 'NEW', align: 'right', width: 5, pri, sorted: ctx?.sort === 'new', cell: (r) => formatCompact(r.new_flows) });

/** The columns that name a row, per group-by (shared with the exit summary). */
/** An address, or with --resolve its host name once known; "addr:port" keeps its port. */
function named(endpoint: string | null | undefined, nameOf?: (addr: string) => string | null, withPort = false): string | null {
  if (!endpoint || !nameOf) return endpoint ?? null;
  if (!withPort) return nameOf(endpoint) ?? endpoint;
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(endpoint);
  if (!m) return endpoint;
  const n = nameOf(m[1]!);
  return n ? `${n}:${m[2]}` : endpoint;
}

export function keyColumns(groupBy: GroupBy, opts: { fullCommand?: boolean; nameOf?: (addr: string) => string | null } = {}): Column[] {
  switch (groupBy) {
    case 'process':
      return [
        { title: 'PID ', align: 'right', width: 8, pri: 2, cell: pidCell },
        { title: 'USER', align: 'left', width: 8, pri: 4, cell: (r) => text(r.user ?? (r.uid === null ? null : String(r.uid))) },
        { title: 'PROGRAM', align: 'left', width: 14, minWidth: 7, flex: true, comfort: 32, pri: 0, cell: opts.fullCommand ? fullProgramCell : programCell },
      ];
    case 'conn':
      return [
        { title: 'PROTO', align: 'left', width: 5, pri: 4, cell: (r) => text(r.proto) },
        { title: 'LOCAL', align: 'left', width: 12, flex: true, comfort: 21, pri: 3, cut: 'middle', cell: (r) => text(r.local) },
        { title: 'REMOTE', align: 'left', width: 12, minWidth: 8, flex: true, comfort: 21, pri: 0, cut: 'middle', cell: (r) => text(named(r.remote, opts.nameOf, true) ?? r.key) },
        { title: 'STATE', align: 'left', width: 11, pri: 6, cell: (r) => text(r.state) },
        {
          title: 'PID/PROGRAM',
          align: 'left',
          width: 12,
          flex: true,
          comfort: 16,
          pri: 1,
          cell: (r) => (r.pid === null || r.pid === undefined ? 'unknown' : `${r.pid}${r.shared ? '+' : ''}/${text(r.comm)}`),
        },
      ];
    case 'remote':
      return [{ title: 'REMOTE', align: 'left', width: 15, minWidth: 8, flex: true, pri: 0, cut: 'middle', cell: (r) => text(named(r.remote ?? r.key, opts.nameOf)) }];
    case 'port':
      return [
        {
          title: 'PROTO/PORT',
          align: 'left',
          width: 10,
          pri: 0,
          cell: (r) => (r.proto && r.port !== null && r.port !== undefined ? `${sanitize(r.proto)}/${r.port}` : text(r.key)),
        },
      ];
    case 'user':
      return [
        {
          title: 'USER/UID',
          align: 'left',
          width: 10,
          flex: true,
          comfort: 20,
          pri: 0,
          cell: (r) => (r.uid === null || r.uid === undefined ? text(r.user ?? r.key) : `${text(r.user ?? String(r.uid))}/${r.uid}`),
        },
      ];
  }
}

/** Every column of the live table for a group-by, in display order. */
export function topColumns(groupBy: GroupBy, ctx: ColumnContext): Column[] {
  const keys = keyColumns(groupBy, ctx.nameOf ? { nameOf: ctx.nameOf } : {});
  switch (groupBy) {
    case 'process': {
      const [pid, user, program] = keys as [Column, Column, Column];
      const [rp, tp] = trafficPri(ctx, 1, 3);
      const traffic = trafficColumns(ctx, rp, tp);
      const usage: Column[] = ctx.usage
        ? [
            { title: 'CPU%', align: 'right', width: 5, pri: 7, cell: (r) => (r.cpu_percent == null ? '' : formatPercent(r.cpu_percent)) },
            { title: 'MEM', align: 'right', width: 8, pri: 8, cell: (r) => (r.rss_bytes == null ? '' : formatBytes(r.rss_bytes)) },
          ]
        : [];
      return [pid, user, program, ...traffic, conns(5, ctx), fresh(6, ctx), ...usage];
    }
    case 'conn': {
      const [proto, local, remote, state, owner] = keys as [Column, Column, Column, Column, Column];
      const [rp, tp] = trafficPri(ctx, 2, 5);
      return [proto, local, remote, state, owner, ...trafficColumns(ctx, rp, tp)];
    }
    default: {
      const [rp, tp] = trafficPri(ctx, 1, 2);
      return [...keys, ...trafficColumns(ctx, rp, tp), conns(3, ctx), fresh(4, ctx)];
    }
  }
}

export interface PlacedColumn {
  col: Column;
  w: number;
}

/**
 * Picks the columns that fit in `width` (by priority, a priority group whole or not at all),
 * then gives spare columns to the flexible ones, up to their widest cell.
 */
export function layoutColumns(cols: Column[], rows: TopRow[], width: number, maxFlex = 200): PlacedColumn[] {
  const pris = [...new Set(cols.map((c) => c.pri))].sort((a, b) => a - b);
  const chosen = new Set<Column>();
  let used = 0;
  const shrunk = new Map<Column, number>();
  for (const p of pris) {
    const group = cols.filter((c) => c.pri === p);
    const need = group.reduce((a, c) => a + c.width, 0) + group.length - (chosen.size === 0 ? 1 : 0);
    if (used + need > width) {
      // An optional column that does not fit is left out. An essential one (the rates) makes room
      // by cutting the names shorter, and if even that fails nothing less important is shown:
      // at 30 columns the rates stay and CONNS goes, never the other way round.
      if (!group.some((c) => c.essential)) continue;
      const flex = [...chosen].filter((c) => c.flex && c.minWidth !== undefined && c.minWidth < (shrunk.get(c) ?? c.width));
      const room = flex.reduce((a, c) => a + (shrunk.get(c) ?? c.width) - c.minWidth!, 0);
      if (used + need - room > width) break;
      let over = used + need - width;
      for (const c of flex) {
        const cur = shrunk.get(c) ?? c.width;
        const take = Math.min(over, cur - c.minWidth!);
        shrunk.set(c, cur - take);
        used -= take;
        over -= take;
      }
    }
    group.forEach((c) => chosen.add(c));
    used += need;
  }
  const placed = cols.filter((c) => chosen.has(c)).map((col) => ({ col, w: shrunk.get(col) ?? col.width }));
  let spare = width - used;
  const wants = placed
    .filter((p) => p.col.flex)
    .map((p) => ({
      p,
      max: Math.min(
        maxFlex,
        Math.max(p.col.width, displayWidth(p.col.title), ...rows.map((r) => displayWidth(p.col.cell(r, Number.MAX_SAFE_INTEGER)))),
      ),
    }));
  // First bring each flexible column, most important first, to a comfortable width
  // (a full IPv4 address:port, a readable command line), then share the rest evenly.
  for (const x of [...wants].sort((a, b) => a.p.col.pri - b.p.col.pri)) {
    const give = Math.max(0, Math.min(spare, Math.min(x.max, x.p.col.comfort ?? x.p.col.width) - x.p.w));
    x.p.w += give;
    spare -= give;
  }
  while (spare > 0) {
    const hungry = wants.filter((x) => x.p.w < x.max);
    if (hungry.length === 0) break;
    for (const x of hungry) {
      if (spare <= 0) break;
      x.p.w++;
      spare--;
    }
  }
  return placed;
}

export function tableHeader(placed: PlacedColumn[]): string {
  return placed.map(({ col, w }) => fit(col.title, w, col.align)).join(' ');
}

/** The header as segments: the sort column's title underlined and bold on the inverse bar. */
function headerSegs(placed: PlacedColumn[]): Line {
  const line: Line = [];
  placed.forEach(({ col, w }, i) => {
    if (i > 0) line.push({ text: ' ', style: ['inverse'] });
    line.push({ text: fit(col.title, w, col.align), style: col.sorted ? ['inverse', 'bold', 'underline'] : ['inverse'] });
  });
  return line;
}

export function tableRow(placed: PlacedColumn[], r: TopRow): string {
  return placed.map(({ col, w }) => fit(col.cell(r, w), w, col.align, col.cut ?? 'end')).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Sorting

function compareTotals(sort: 'sent' | 'recv' | 'total'): (a: TopRow, b: TopRow) => number {
  const total = (r: TopRow) => (sort === 'sent' ? r.sent_total : sort === 'recv' ? r.recv_total : r.sent_total + r.recv_total);
  const rate = (r: TopRow) => (sort === 'sent' ? r.sent_bps : sort === 'recv' ? r.recv_bps : r.sent_bps + r.recv_bps);
  return (a, b) => total(b) - total(a) || rate(b) - rate(a) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** Rows in display order: by rate (model order; the chosen window's) or, in 'total' mode, by totals since start. */
export function sortRows(rows: TopRow[], sort: SortKey, mode: DisplayMode, window: RateWindow = 'refresh'): TopRow[] {
  const byTotals = mode === 'total' && (sort === 'sent' || sort === 'recv' || sort === 'total');
  if (byTotals) return [...rows].sort(compareTotals(sort));
  if (window === 'refresh' || sort === 'conns' || sort === 'new') return [...rows].sort(compareRows(sort));
  const rate = (r: TopRow) => (sort === 'sent' ? rateOf(r, 'sent', window) : sort === 'recv' ? rateOf(r, 'recv', window) : rateOf(r, 'sent', window) + rateOf(r, 'recv', window));
  const then = compareRows(sort);
  return [...rows].sort((a, b) => rate(b) - rate(a) || then(a, b));
}

export function sortLabel(sort: SortKey, mode: DisplayMode): string {
  if (sort === 'conns') return 'open conns';
  if (sort === 'new') return 'new conns';
  const what = sort === 'total' ? 'sent+recv' : sort;
  return mode === 'rate' ? `${what}/s` : `total ${what}`;
}

// ---------------------------------------------------------------------------------------------
// Header and footer lines

/** Snapshot-level totals if the engine provides them (fields may be added), else the rows' sums. */
interface Totals {
  sent_bps: number;
  recv_bps: number;
  sent_total: number;
  recv_total: number;
}

export function snapshotTotals(s: TopSnapshot): Totals {
  const given = (s as TopSnapshot & { totals?: Partial<Totals> }).totals;
  const sum = (f: (r: TopRow) => number) => s.rows.reduce((a, r) => a + (Number.isFinite(f(r)) ? f(r) : 0), 0);
  return {
    sent_bps: given?.sent_bps ?? sum((r) => r.sent_bps),
    recv_bps: given?.recv_bps ?? sum((r) => r.recv_bps),
    sent_total: given?.sent_total ?? sum((r) => r.sent_total),
    recv_total: given?.recv_total ?? sum((r) => r.recv_total),
  };
}

/** "09:26:53 UTC" from the snapshot's ISO time (the raw string when it is not ISO). */
export function clockOf(time: string): string {
  const m = /T(\d\d:\d\d:\d\d)/.exec(time);
  if (!m) return sanitize(time);
  return time.endsWith('Z') || time.endsWith('+00:00') ? `${m[1]} UTC` : m[1]!;
}

function titleLine(s: TopSnapshot, o: TopRenderOptions): Line {
  const line: Line = [{ text: 'ctacct top', style: ['bold'] }];
  if (o.paused) line.push({ text: '  ' }, { text: 'PAUSED', style: ['yellow', 'bold', 'inverse'] });
  const by = o.drill ? `${o.drill.groupBy} ${drillName(o.drill)} › connections` : `by ${s.group_by}`;
  line.push({ text: `  ${clockOf(s.time)}  ${by}` });
  const want = o.drill ? 'conn' : o.pendingGroupBy;
  if (want && want !== s.group_by) line.push({ text: ` (→ ${want} next refresh)`, style: ['yellow'] });
  const win = o.window && o.window !== 'refresh' && o.mode === 'rate' && o.sort !== 'conns' && o.sort !== 'new' ? ` over ${o.window}` : '';
  // The configured interval: the measured one wobbles (1.1 s) and spans a pause.
  line.push({ text: `  sort ${sortLabel(o.sort, o.mode)}${win}  every ${formatDuration(o.intervalS ?? s.interval_s)}` });
  return line;
}

function lineWidth(l: Line): number {
  return l.reduce((a, seg) => a + displayWidth(seg.text), 0);
}

/** The first candidate that fits in `width` (longest wording first), else the last one. */
function firstFitting(candidates: Line[], width: number): Line {
  return candidates.find((l) => lineWidth(l) <= width) ?? candidates[candidates.length - 1]!;
}

function trafficLine(s: TopSnapshot, o: TopRenderOptions, width: number): Line {
  const t = snapshotTotals(s);
  const rates: Line = [
    { text: 'Sent ' },
    { text: formatRate(t.sent_bps, o.bits), style: ['bold'] },
    { text: '  Recv ' },
    { text: formatRate(t.recv_bps, o.bits), style: ['bold'] },
  ];
  return firstFitting(
    [
      [...rates, { text: `  since start: sent ${formatBytes(t.sent_total)}  recv ${formatBytes(t.recv_total)}` }],
      [...rates, { text: `  total ↑${formatBytes(t.sent_total)} ↓${formatBytes(t.recv_total)}` }],
      rates,
    ],
    width,
  );
}

function healthLine(s: TopSnapshot, width: number): Line {
  const h = s.health;
  const warn = (n: number, style: Style): Style[] | undefined => (n > 0 ? [style, 'bold'] : undefined);
  const parts: Seg[][] = [
    [{ text: plural(h.flows_tracked, 'flow') }],
    [{ text: plural(h.lost_events, 'lost event'), style: warn(h.lost_events, 'red') }],
    [{ text: plural(h.resyncs, 'resync'), style: warn(h.resyncs, 'yellow') }],
    [{ text: `${formatCount(h.flows_without_counters)} w/o counters`, style: warn(h.flows_without_counters, 'yellow') }],
  ];
  if (h.malformed) parts.push([{ text: `${formatCount(h.malformed)} malformed`, style: ['red'] }]);
  // ctacct's own cost, shortened before it is left out.
  const self = (cpu: string) => [{ text: `ctacct ${formatPercent(s.self.cpu_percent)}${cpu} ${formatBytes(s.self.rss_bytes)}`, style: ['dim'] as Style[] }];
  return firstFitting(
    [joinFitting([...parts, self(' CPU')], ' · ', Infinity), joinFitting([...parts, self('')], ' · ', Infinity), joinFitting(parts, ' · ', width)],
    width,
  );
}

function bucketPart(name: string, b: Bucket, open: boolean): Seg[] {
  return [{ text: `${name} ↑${formatBytes(b.sent_total)} ↓${formatBytes(b.recv_total)}${open ? ` ${formatCount(b.flows)} open` : ''}` }];
}

function unattributedLine(s: TopSnapshot, width: number): Line {
  const { forwarded, unknown } = s.unattributed;
  const both = (open: boolean) => joinFitting([bucketPart('forwarded', forwarded, open), bucketPart('unknown', unknown, open)], ' · ', Infinity);
  return firstFitting([both(true), both(false), [...bucketPart('fwd', forwarded, false), { text: ' ' }, ...bucketPart('unk', unknown, false)]], width);
}

export const KEYS_LINE = 'q quit  s/r/t sort  b group  ⏎ open  / filter  B bits  w window  p pause  h help';

/** The drilled row in a few words: "1234 nginx", "203.0.113.7", "tcp/443", "www-data". */
export function drillName(d: Drill): string {
  switch (d.groupBy) {
    case 'process':
      return `${d.pid ?? '-'} ${text(d.comm)}`;
    case 'remote':
      return text(d.remote ?? d.key);
    case 'port':
      return d.proto && d.port !== null ? `${sanitize(d.proto)}/${d.port}` : text(d.key);
    case 'user':
      return text(d.user ?? (d.uid === null ? d.key : String(d.uid)));
    case 'conn':
      return text(d.key);
  }
}

/** Under the title in a drill-down: who, the full command line (sanitised), how to go back. */
function drillLine(d: Drill): Line {
  const who = d.groupBy === 'process' ? (d.cmdline ? sanitize(d.cmdline) : text(d.comm)) : drillName(d);
  const user = d.groupBy === 'process' && (d.user ?? d.uid) !== null ? `  (${text(d.user ?? String(d.uid))})` : '';
  return [{ text: `▸ ${who}${user}`, style: ['bold'] }, { text: '   Esc back', style: ['dim'] }];
}

function filterLine(o: TopRenderOptions, shown: number, all: number): Line {
  const f = sanitize(o.filter ?? '');
  if (o.editing) return [{ text: `/${f}`, style: ['bold'] }, { text: '▏' }, { text: '   Enter keep · Esc clear', style: ['dim'] }];
  return [{ text: `filter "${f}": ${formatCount(shown)} of ${formatCount(all)} rows`, style: ['yellow'] }, { text: '   / edit · Esc clear', style: ['dim'] }];
}

function keysLine(shared: boolean, width: number): Line {
  const keys: Line = [{ text: KEYS_LINE, style: ['dim'] }];
  return shared ? firstFitting([[...keys, { text: '   + shared socket', style: ['dim'] }], keys], width) : keys;
}

function helpLines(o: TopRenderOptions): Line[] {
  const keyW = Math.max(...KEY_HELP.map(([k]) => displayWidth(k)));
  return [
    [{ text: 'Keys', style: ['bold'] }],
    ...KEY_HELP.map(([k, what]) => [{ text: `  ${fit(k, keyW)}  ${what}` }]),
    [{ text: '' }],
    [{ text: 'Bytes are layer-3 (IP headers included), as conntrack counts them.' }],
    [{ text: o.bits ? 'Rates in bits per second, SI (1 Mbit = 10^6 bit).' : 'Bytes in binary units (1 KiB = 1024 B).' }],
    [{ text: '+ after a PID: the socket is shared by several processes (lowest pid shown).' }],
  ];
}

// ---------------------------------------------------------------------------------------------
// The frame

export interface TopGeometry {
  /** Table rows on screen. */
  visibleRows: number;
  totalRows: number;
  /** Scroll offset actually used (the requested one, clamped). */
  scroll: number;
  maxScroll: number;
}

interface Plan extends TopGeometry {
  rows: TopRow[];
  head: Line[];
  foot: Line[];
  moreLine: boolean;
}

/** The rows a frame lists: the drill-down's connections, then the filter, in display order. */
export function rowsShown(s: TopSnapshot, o: Pick<TopRenderOptions, 'drill' | 'filter' | 'sort' | 'mode' | 'window'>): TopRow[] {
  let rows = s.rows;
  if (o.drill) rows = s.group_by === 'conn' ? rows.filter((r) => inDrill(o.drill!, r)) : [];
  if (o.filter) rows = rows.filter((r) => matchesFilter(r, o.filter!));
  return sortRows(rows, o.sort, o.mode, o.window);
}

function plan(s: TopSnapshot, o: TopRenderOptions): Plan {
  const width = Math.max(1, Math.floor(o.width));
  const height = Math.max(1, Math.floor(o.height));
  const rows = rowsShown(s, o);
  const changes = (o.changes ?? s.health.changes ?? []).map(sanitize);
  const filtering = o.editing || (o.filter ?? '') !== '';
  const show = { drill: Boolean(o.drill), filter: filtering, traffic: true, health: true, changes: changes.length > 0, unattributed: true };
  // Never silent: not tracking (no flow can appear) and failing dumps get a banner that small
  // terminals keep.
  const alerts = (s.health.notes ?? []).filter((n) => n.code === 'not-tracking' || n.code === 'dump-failed').map((n) => sanitize(n.message));
  if (s.health.tracking === 'not-tracking' && !alerts.length) alerts.push('conntrack does not track in this network namespace: no flows will appear');
  const help = o.showHelp ? helpLines(o).length : 0;
  const want = help || Math.max(1, rows.length);
  const avail = () =>
    height - 1 - Number(alerts.length > 0) - Number(show.drill) - Number(show.filter) - Number(show.traffic) - Number(show.health) - Number(show.changes) - 1 - Number(show.unattributed) - 1;
  const bodyFor = (a: number) => (help || want <= a ? Math.min(want, a) : a - 1);
  // Small terminals: give up the less important lines before the table shrinks below 3 rows
  // (or the help below its full length: it is asked for, and gone with the next key).
  for (const drop of ['changes', 'unattributed', 'traffic', 'health'] as const) {
    if (bodyFor(avail()) >= (help ? want : Math.min(3, want))) break;
    show[drop] = false;
  }
  const visibleRows = Math.max(0, bodyFor(avail()));
  const moreLine = !help && rows.length > visibleRows;
  const maxScroll = Math.max(0, rows.length - visibleRows);
  const scroll = Math.max(0, Math.min(Math.floor(o.scroll) || 0, maxScroll));

  const head: Line[] = [titleLine(s, o)];
  if (alerts.length) head.push([{ text: `${s.health.tracking === 'not-tracking' ? 'NOT TRACKING: ' : 'WARNING: '}${alerts.join('; ')}`, style: ['red', 'bold', 'inverse'] }]);
  if (show.drill) head.push(drillLine(o.drill!));
  if (show.filter) head.push(filterLine(o, rows.length, o.drill ? rows.length : s.rows.length));
  if (show.traffic) head.push(trafficLine(s, o, width));
  if (show.health) head.push(healthLine(s, width));
  if (show.changes) head.push([{ text: `Changed: ${changes.join('; ')}`, style: ['yellow'] }]);
  const shown = rows.slice(scroll, scroll + visibleRows);
  const foot: Line[] = [];
  if (show.unattributed) foot.push(unattributedLine(s, width));
  foot.push(keysLine(!help && shown.some((r) => r.shared), width));
  return { rows, head, foot, moreLine, visibleRows, totalRows: rows.length, scroll, maxScroll };
}

/** Rows shown and how far the table scrolls at this size: the runner clamps `scroll` and sizes pages with it. */
export function topGeometry(s: TopSnapshot, o: TopRenderOptions): TopGeometry {
  const { visibleRows, totalRows, scroll, maxScroll } = plan(s, o);
  return { visibleRows, totalRows, scroll, maxScroll };
}

/** The whole screen, lines joined by "\n" (no trailing newline): at most `height` lines of at most `width` columns. */
export function renderTop(s: TopSnapshot, o: TopRenderOptions): string {
  const width = Math.max(1, Math.floor(o.width));
  const height = Math.max(1, Math.floor(o.height));
  const p = plan(s, o);
  const shown = p.rows.slice(p.scroll, p.scroll + p.visibleRows);
  const cols = topColumns(s.group_by, {
    bits: o.bits,
    mode: o.mode,
    usage: shown.some((r) => r.cpu_percent != null || r.rss_bytes != null),
    window: o.window ?? 'refresh',
    sort: o.sort,
    ...(o.history ? { history: o.history } : {}),
    ...(o.exited ? { exited: o.exited } : {}),
    ...(o.nameOf ? { nameOf: o.nameOf } : {}),
  });
  const placed = layoutColumns(cols, shown, width);

  const out: string[] = p.head.map((l) => paint(l, width, o.color));
  out.push(paint(headerSegs(placed), width, o.color, true));
  if (o.showHelp) {
    for (const l of helpLines(o).slice(0, p.visibleRows)) out.push(paint(l, width, o.color));
  } else if (p.rows.length === 0) {
    const empty = o.drill
      ? s.group_by === 'conn'
        ? '(no connections since start)'
        : '(connections at the next refresh)'
      : o.filter
        ? `(no row contains "${sanitize(o.filter)}")`
        : '(no traffic since start)';
    if (p.visibleRows > 0) out.push(paint([{ text: empty, style: ['dim'] }], width, o.color));
  } else {
    shown.forEach((r, i) => {
      const idle = rateOf(r, 'sent', o.window) === 0 && rateOf(r, 'recv', o.window) === 0;
      const gone = o.exited?.has(r.key) ?? false;
      const style: Style[] = [];
      if (idle || gone) style.push('dim');
      if (o.selected !== undefined && p.scroll + i === o.selected) style.push('inverse');
      out.push(paint([{ text: tableRow(placed, gone ? { ...r, comm: `[exited] ${r.comm ?? ''}`, cmdline: null } : r), style }], width, o.color, style.includes('inverse')));
    });
  }
  if (p.moreLine) {
    const below = p.totalRows - p.scroll - p.visibleRows;
    const parts = [p.scroll > 0 ? `↑ ${formatCount(p.scroll)} above` : '', below > 0 ? `↓ ${formatCount(below)} more` : ''];
    out.push(paint([{ text: parts.filter(Boolean).join('  '), style: ['dim'] }], width, o.color));
  }
  out.push(...p.foot.map((l) => paint(l, width, o.color)));
  return out.slice(0, height).join('\n');
}

/** The screen before the first refresh arrives (the first rates need two readings). */
export function renderWaiting(o: { width: number; height: number; color: boolean; intervalS?: number }): string {
  const width = Math.max(1, Math.floor(o.width));
  const lines: Line[] = [
    [{ text: 'ctacct top', style: ['bold'] }, { text: '  waiting for the first refresh' }],
    [{ text: o.intervalS !== undefined ? `(rates need two readings, ${formatDuration(o.intervalS)} apart)` : '' }],
    [{ text: KEYS_LINE, style: ['dim'] }],
  ];
  return lines
    .slice(0, Math.max(1, Math.floor(o.height)))
    .map((l) => paint(l, width, o.color))
    .join('\n');
}
