// Renderers for `ctacct states`: pure (result, width) → string. No colour unless asked.
import { alignColumns, displayWidth, needsWideWidths, sanitize, truncate } from './text.js';
import { orderStates, stateOrder, UDP_STATE_ORDER, type StatesGroup, type StatesResult } from '../core/states.js';

export interface RenderOptions {
  /** Terminal columns; lines never exceed it (the key column is cut, then small states fold into OTHER). */
  width: number;
  /** Bold headers; the command turns it off for NO_COLOR or a non-TTY. */
  color?: boolean;
  /** Root sees every process: unattributed sockets then mean exited processes, not missing privilege. */
  privileged?: boolean;
}

const SHORT: Record<string, string> = {
  ESTABLISHED: 'ESTAB',
  SYN_SENT: 'SYN_S',
  SYN_SENT2: 'SYN_S2',
  SYN_RECV: 'SYN_R',
  FIN_WAIT1: 'FIN_W1',
  FIN_WAIT2: 'FIN_W2',
  FIN_WAIT: 'FIN_W',
  TIME_WAIT: 'TIME_W',
  CLOSE_WAIT: 'CLOSE_W',
  LAST_ACK: 'LAST_A',
  UNREPLIED: 'UNREPL',
  'UDP:ESTABLISHED': 'U:ESTAB',
  'UDP:UNCONN': 'U:UNCON',
  'UDP:ASSURED': 'U:ASSUR',
  'UDP:REPLIED': 'U:REPL',
  'UDP:UNREPLIED': 'U:UNREP',
};

const bold = (s: string, on: boolean) => (on ? `\x1b[1m${s}\x1b[22m` : s);

function cut(s: string, w: number): string {
  return truncate(s, w);
}

interface Column {
  header: string;
  /** Right-aligned numbers, left-aligned text. */
  numeric: boolean;
  cells: string[];
}

/** Lays out columns two spaces apart; the first column is text, the rest numbers. */
function layout(cols: Column[], color: boolean, ruleBeforeLast: boolean): string {
  const widths = cols.map((c) => Math.max(displayWidth(c.header), ...c.cells.map(displayWidth)));
  const nrows = cols[0]!.cells.length;
  const table = [cols.map((c) => c.header), ...Array.from({ length: nrows }, (_, r) => cols.map((c) => c.cells[r]!))];
  const right = new Set(cols.flatMap((c, i) => (c.numeric ? [i] : [])));
  const lines = alignColumns(table, right);
  const out = [bold(lines[0]!, color)];
  for (let r = 0; r < nrows; r++) {
    if (ruleBeforeLast && r === nrows - 1) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
    out.push(lines[r + 1]!);
  }
  return out.join('\n');
}

function countTable(title: string, unit: string, counts: { states: Record<string, number>; total: number }, width: number, color: boolean): string {
  const rows = Object.entries(counts.states).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const countW = Math.max(unit.length, String(counts.total).length);
  const keyW = Math.max(1, Math.min(Math.max(title.length, 5, ...rows.map(([s]) => s.length)), width - countW - 2));
  return layout(
    [
      { header: cut(title, keyW), numeric: false, cells: [...rows.map(([s]) => cut(s, keyW)), 'TOTAL'] },
      { header: unit, numeric: true, cells: [...rows.map(([, n]) => String(n)), String(counts.total)] },
    ],
    color,
    true,
  );
}

/** `--by state`: one small table per protocol, sorted by count, with a total. */
export function renderStateCounts(r: StatesResult, opts: RenderOptions): string {
  const unit = r.source === 'sockets' ? 'SOCKETS' : 'FLOWS';
  const color = opts.color ?? false;
  const parts = [countTable(r.source === 'sockets' ? 'STATE' : 'CT STATE', unit, r, opts.width, color)];
  if (r.udp) parts.push(countTable('UDP STATE', unit, r.udp, opts.width, color));
  return `${parts.join('\n\n')}\n`;
}

function groupLabel(g: StatesGroup, by: StatesResult['by']): string {
  if (by !== 'process') return g.key;
  if (g.key === '-') return '- (no process)';
  if (g.key === '?') return '? (not visible)';
  return `${sanitize(g.comm ?? '?')}/${g.key}${g.shared ? ' (shared)' : ''}`;
}

const KEY_HEADER = { port: 'PORT', process: 'PROCESS/PID', remote: 'REMOTE' } as const;

/** `--by port|process|remote`: one row per group, one column per state present, sorted by total. */
export function renderStatesBy(r: StatesResult, opts: RenderOptions): string {
  const by = r.by ?? 'port';
  const groups = r.groups ?? [];
  const color = opts.color ?? false;
  const per = (g: { states: Record<string, number>; udp?: { states: Record<string, number> } }) => {
    const m = new Map<string, number>(Object.entries(g.states));
    for (const [s, n] of Object.entries(g.udp?.states ?? {})) m.set(`UDP:${s}`, n);
    return m;
  };
  const rows = groups.map((g) => ({ label: groupLabel(g, by), counts: per(g), total: g.total + (g.udp?.total ?? 0) }));
  const totals = per(r);
  const grand = r.total + (r.udp?.total ?? 0);
  const udpOrder = UDP_STATE_ORDER.map((s) => `UDP:${s}`);
  // Columns for every state in the totals, so the TOTAL row adds up even when --top hides groups.
  let states = orderStates(
    [...totals.keys()],
    [...stateOrder(r.source), ...udpOrder],
  );
  const totalW = Math.max(5, String(grand).length);
  const numW = (s: string, short: boolean) =>
    Math.max((short ? (SHORT[s] ?? s) : s).length, ...rows.map((x) => String(x.counts.get(s) ?? 0).length), String(totals.get(s) ?? 0).length);
  const minKey = Math.min(16, Math.max(KEY_HEADER[by].length, ...rows.map((x) => displayWidth(x.label)), 5));
  const fits = (list: string[], short: boolean, other: boolean) => {
    const nums = list.reduce((a, s) => a + numW(s, short) + 2, 0) + (other ? 7 : 0) + totalW + 2;
    return minKey + nums <= opts.width;
  };
  // Narrow terminals: short state names first, then fold the least-used states into OTHER.
  let short = !fits(states, false, false);
  let folded: string[] = [];
  if (short && !fits(states, true, false)) {
    const bySize = [...states].sort((a, b) => (totals.get(a) ?? 0) - (totals.get(b) ?? 0));
    while (states.length > 0 && !fits(states, true, true)) {
      folded.push(bySize.shift()!);
      states = states.filter((s) => !folded.includes(s));
    }
  }
  const otherOf = (m: Map<string, number>) => folded.reduce((a, s) => a + (m.get(s) ?? 0), 0);
  const numsW = states.reduce((a, s) => a + numW(s, short) + 2, 0) + (folded.length ? 7 : 0) + totalW + 2;
  const keyW = Math.max(1, Math.min(Math.max(KEY_HEADER[by].length, ...rows.map((x) => displayWidth(x.label)), 5), opts.width - numsW));
  const cols: Column[] = [
    { header: cut(KEY_HEADER[by], keyW), numeric: false, cells: [...rows.map((x) => cut(x.label, keyW)), 'TOTAL'] },
    ...states.map((s) => ({
      header: short ? (SHORT[s] ?? s) : s,
      numeric: true,
      cells: [...rows.map((x) => String(x.counts.get(s) ?? 0)), String(totals.get(s) ?? 0)],
    })),
  ];
  if (folded.length) cols.push({ header: 'OTHER', numeric: true, cells: [...rows.map((x) => String(otherOf(x.counts))), String(otherOf(totals))] });
  cols.push({ header: 'TOTAL', numeric: true, cells: [...rows.map((x) => String(x.total)), String(grand)] });
  const notes: string[] = [];
  if (r.omitted) notes.push(`${r.omitted} more ${r.omitted === 1 ? 'group' : 'groups'} not shown (--top)`);
  if (folded.length) notes.push(`OTHER = ${folded.join(', ')}`);
  if (r.unattributed) {
    const n = `${r.unattributed} ${r.unattributed === 1 ? 'socket' : 'sockets'}`;
    notes.push(
      opts.privileged
        ? `${n} could not be attributed (owner exited or its fds are hidden)`
        : `${n} could not be attributed — run with sudo to see all`,
    );
  }
  const body = layout(cols, color, true);
  return `${body}\n${notes.map((n) => `${cut(n, opts.width)}\n`).join('')}`;
}

/** Whether rendering `r` needs loadWideWidths() first: a process name that is not printable ASCII. */
export function rendersWide(r: StatesResult): boolean {
  return (r.groups ?? []).some((g) => needsWideWidths(groupLabel(g, r.by)));
}

/** Either table, by the result's shape. */
export function renderStates(r: StatesResult, opts: RenderOptions): string {
  return r.by ? renderStatesBy(r, opts) : renderStateCounts(r, opts);
}

export { statesJson } from './states-json.js';
