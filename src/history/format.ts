// `report` output (pure): a table with a bar per row and a sparkline over the period, CSV, JSON.
// Names come from other users' processes: sanitized for the terminal, neutralised for spreadsheets.
import { displayWidth, fit, formatBytes, formatCount, sanitize, truncate } from '../views/format.js';
import type { Report, ReportRow } from './query.js';

const SPARKS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/** One character per slot: blank when nothing, else ▁…█ scaled to the row's busiest slot. */
export function sparkline(values: number[]): string {
  const max = Math.max(0, ...values);
  return values.map((v) => (v <= 0 || max === 0 ? ' ' : SPARKS[Math.min(SPARKS.length - 1, Math.floor((v / max) * (SPARKS.length - 1) + 0.5))]!)).join('');
}

/** A bar of `width` cells for share 0..1 (eighths of a cell); at least a sliver when non-zero. */
export function bar(share: number, width: number): string {
  if (!(share > 0)) return ' '.repeat(width);
  const eighths = Math.max(1, Math.round(Math.min(1, share) * width * 8));
  const full = Math.floor(eighths / 8);
  const part = eighths % 8;
  const s = '█'.repeat(full) + (part ? '▏▎▍▌▋▊▉'[part - 1]! : '');
  return s + ' '.repeat(Math.max(0, width - displayWidth(s)));
}

function labelHeads(r: Report): string[] {
  return r.by.map((k) => k.toUpperCase());
}

/** The human table, fitted to `width` columns. */
export function renderReport(r: Report, width: number, names: (row: ReportRow, i: number) => string = (row, i) => row.labels[i]!): string {
  const heads = labelHeads(r);
  const nums = ['SENT', 'RECV', 'TOTAL'];
  const numW = 9;
  // Narrow terminals get half the sparkline cells (pairs summed) so the names keep their room.
  const halve = width < 110 && r.total.series.length % 2 === 0;
  const spark = (v: number[]) => sparkline(halve ? v.filter((_, i) => i % 2 === 0).map((x, i) => x + v[2 * i + 1]!) : v);
  const sparkW = halve ? r.total.series.length / 2 : r.total.series.length;
  const barW = width < 110 ? 8 : 12;
  const labelRoom = Math.max(12, width - nums.length * (numW + 1) - (barW + 1) - (sparkW + 1));
  const labelW = heads.length === 1 ? [labelRoom] : [Math.ceil(labelRoom / 2) - 1, Math.floor(labelRoom / 2)];
  const lines: string[] = [];
  lines.push(truncate(`ctacct report ${r.since} → ${r.until} by ${r.by.join(',')} (${formatSlot((r.slot_seconds * r.total.series.length) / sparkW)}/cell)`, width));
  lines.push(
    [...heads.map((h, i) => fit(h, labelW[i]!)), ...nums.map((n) => fit(n, numW, 'right')), fit('SHARE', barW), fit('OVER TIME', sparkW)].join(' ').trimEnd(),
  );
  const total = r.total.total_bytes;
  const row = (labels: string[], sent: number, recv: number, tot: number, series: number[] | null) =>
    [
      ...labels.map((l, i) => fit(sanitize(l), labelW[i]!, 'left', r.by[i] === 'remote' ? 'middle' : 'end')),
      fit(formatBytes(sent), numW, 'right'),
      fit(formatBytes(recv), numW, 'right'),
      fit(formatBytes(tot), numW, 'right'),
      bar(total > 0 ? tot / total : 0, barW),
      series ? spark(series) : '',
    ]
      .join(' ')
      .trimEnd();
  r.rows.forEach((x) => lines.push(row(x.labels.map((_, i) => names(x, i)), x.sent_bytes, x.recv_bytes, x.total_bytes, x.series)));
  if (r.rest) lines.push(row(r.by.map((_, i) => (i === 0 ? `(${formatCount(r.rest!.groups)} more)` : '')), r.rest.sent_bytes, r.rest.recv_bytes, r.rest.total_bytes, null));
  if (r.rows.length === 0) lines.push('(no traffic recorded in this period)');
  lines.push(row(r.by.map((_, i) => (i === 0 ? 'TOTAL' : '')), r.total.sent_bytes, r.total.recv_bytes, r.total.total_bytes, r.total.series));
  return lines.join('\n') + '\n';
}

function formatSlot(s: number): string {
  s = Math.round(s);
  if (s >= 86400 && s % 86400 === 0) return `${s / 86400} d`;
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return `${Math.round(s)} s`;
}

/** JSON: the report as one object (fields may be added, never renamed). */
export function reportJson(r: Report, names?: (row: ReportRow, i: number) => string): string {
  const rows = r.rows.map((x) => ({ ...(names ? { names: x.labels.map((_, i) => names(x, i)) } : {}), ...x }));
  return JSON.stringify({ ...r, rows }) + '\n';
}

/** A CSV cell: quoted when needed; a leading = + - @ is neutralised (spreadsheets run formulas). */
export function csvCell(v: string | number | boolean | null): string {
  if (v === null) return '';
  if (typeof v !== 'string') return String(v);
  let s = sanitize(v);
  if (/^[=+\-@]/.test(s)) s = `'${s}`;
  return /[",\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV: one line per shown row (its names per --by key), then the rest and the total; exact byte counts. */
export function reportCsv(r: Report): string {
  const lines = [[...r.by, 'sent_bytes', 'recv_bytes', 'total_bytes', 'flows'].join(',')];
  const blanks = r.by.slice(1).map(() => '');
  for (const x of r.rows) lines.push([...x.labels, x.sent_bytes, x.recv_bytes, x.total_bytes, x.flows].map(csvCell).join(','));
  if (r.rest) lines.push([`(${r.rest.groups} more)`, ...blanks, r.rest.sent_bytes, r.rest.recv_bytes, r.rest.total_bytes, r.rest.flows].map(csvCell).join(','));
  lines.push(['TOTAL', ...blanks, r.total.sent_bytes, r.total.recv_bytes, r.total.total_bytes, r.total.flows].map(csvCell).join(','));
  return lines.join('\n') + '\n';
}
