// The exit summary of `ctacct top` (q, Ctrl-C, SIGTERM, end of --count): totals since start per row,
// the unattributed buckets and the health counters. Plain text, no colour: it usually outlives the screen.
import { blankRow, type SortKey, type TopRow, type TopSnapshot } from '../core/model.js';
import { fit, formatBytes, formatCount, formatDuration, plural, sanitize, truncate, wrap } from './format.js';
import { keyColumns, layoutColumns, sortRows, tableHeader, tableRow, type Column } from './top.js';

export interface SummaryOptions {
  /** Columns to fit in; omitted (non-TTY) = no limit beyond 100 columns per name. */
  width?: number;
  /** Row order; sent/recv/total order by totals since start. Default total. */
  sort?: SortKey;
  /** Refreshes drawn and seconds since start, for the first line. */
  refreshes?: number;
  elapsedS?: number;
  /** What ctacct changed on the system; defaults to snapshot.health.changes. */
  changes?: string[];
}

const totalsColumns = (): Column[] => [
  { title: 'SENT', align: 'right', width: 10, pri: 1, essential: true, cell: (r) => formatBytes(r.sent_total) },
  { title: 'RECV', align: 'right', width: 10, pri: 1, essential: true, cell: (r) => formatBytes(r.recv_total) },
  // Exact bytes for whoever copies the numbers out (the human units are rounded to 3 digits).
  { title: 'SENT BYTES', align: 'right', width: 15, pri: 9, cell: (r) => String(r.sent_total) },
  { title: 'RECV BYTES', align: 'right', width: 15, pri: 9, cell: (r) => String(r.recv_total) },
];

function sumRow(rows: TopRow[]): TopRow {
  const sum = (f: (r: TopRow) => number) => rows.reduce((a, r) => a + f(r), 0);
  return {
    ...blankRow('TOTAL'),
    sent_total: sum((r) => r.sent_total),
    recv_total: sum((r) => r.recv_total),
    flows: sum((r) => r.flows),
  };
}

/** The summary text, starting with `=== Summary ===` and ending in a newline. */
export function renderSummary(s: TopSnapshot | null, opts: SummaryOptions = {}): string {
  const width = opts.width !== undefined ? Math.max(20, Math.floor(opts.width)) : Number.MAX_SAFE_INTEGER;
  // Table rows are cut to the width; prose wraps, so nothing said is lost.
  const cut = (line: string) => truncate(line, width).trimEnd();
  const say = (line: string) => out.push(...wrap(line, width));
  const out = ['=== Summary ==='];
  if (!s) {
    out.push('No refresh completed: nothing was measured.');
    return `${out.join('\n')}\n`;
  }
  const span = [
    opts.refreshes !== undefined ? plural(opts.refreshes, 'refresh', 'refreshes') : '',
    opts.elapsedS !== undefined ? `over ${formatDuration(opts.elapsedS)}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  say(`Totals since start by ${s.group_by}${span ? `, ${span}` : ''}, until ${sanitize(s.time)}`);

  const sort = opts.sort ?? 'total';
  const rows = sortRows(s.rows, sort, 'total');
  const cols = [...keyColumns(s.group_by, { fullCommand: true }), ...totalsColumns()];
  // A summary names every row in full where it can: the key columns grow to their content.
  const placed = layoutColumns(cols, rows, width === Number.MAX_SAFE_INTEGER ? 400 : width, 100);
  out.push(cut(tableHeader(placed)));
  if (rows.length === 0) out.push('(no traffic since start)');
  for (const r of rows) out.push(cut(tableRow(placed, r)));
  if (rows.length > 1) {
    const total = sumRow(rows);
    // The TOTAL label goes in the first key column; the other key columns stay blank.
    const keyIds = new Set(keyColumns(s.group_by).map((c) => c.title));
    const line = placed
      .map(({ col, w }, i) => {
        if (!keyIds.has(col.title)) return fit(col.cell(total, w), w, 'right');
        return fit(i === 0 ? 'TOTAL' : '', w);
      })
      .join(' ');
    out.push(cut(line));
  }

  const b = s.unattributed;
  say(
    `Unattributed: forwarded sent ${formatBytes(b.forwarded.sent_total)} recv ${formatBytes(b.forwarded.recv_total)} (${plural(b.forwarded.flows, 'open flow')}); ` +
      `unknown sent ${formatBytes(b.unknown.sent_total)} recv ${formatBytes(b.unknown.recv_total)} (${plural(b.unknown.flows, 'open flow')})`,
  );
  const h = s.health;
  const health = [
    `${plural(h.flows_tracked, 'flow')} tracked`,
    plural(h.events, 'event'),
    plural(h.lost_events, 'lost event'),
    plural(h.resyncs, 'resync'),
    `${formatCount(h.flows_without_counters)} without counters`,
  ];
  if (h.malformed) health.push(`${formatCount(h.malformed)} malformed messages skipped`);
  if (h.unattributed_flows) health.push(`${formatCount(h.unattributed_flows)} flows never attributed`);
  say(`Health: ${health.join(', ')}`);
  if (h.lost_events > 0) say('Events were lost (netlink overrun): totals were resynced from dumps and may miss flows that ended unseen.');
  const changes = (opts.changes ?? h.changes ?? []).map(sanitize);
  if (changes.length > 0) say(`Changed on this system: ${changes.join('; ')}`);
  say('Bytes are layer-3 (IP headers included), as conntrack counts them.');
  return `${out.join('\n')}\n`;
}
