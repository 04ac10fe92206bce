// `ctacct flows` renderers: the JSON objects README documents and a human table. Pure.
import type { FlowView } from '../core/flowview.js';
import { alignColumns, sanitize } from './format.js';

function num(n: number | null): string {
  return n === null ? '-' : String(n);
}

function endpoint(addr: string, port: number | null): string {
  const a = addr.includes(':') ? `[${addr}]` : addr;
  return port === null ? a : `${a}:${port}`;
}

/** Column-aligned text; the last column is never padded. */
export function columns(header: string[], rows: string[][], right: Set<number> = new Set()): string {
  return alignColumns([header, ...rows], right).join('\n');
}

export function renderFlowsTable(flows: FlowView[]): string {
  const header = ['PROTO', 'STATE', 'DIR', 'ORIG (src → dst)', 'REPLY (src → dst)', 'ORIG B', 'ORIG P', 'REPLY B', 'REPLY P', 'AGE', 'PID/PROGRAM'];
  const rows = flows.map((f) => [
    f.proto,
    f.state ?? '-',
    f.direction ?? '-',
    `${endpoint(f.orig.src, f.orig.sport)} → ${endpoint(f.orig.dst, f.orig.dport)}`,
    f.reply ? `${endpoint(f.reply.src, f.reply.sport)} → ${endpoint(f.reply.dst, f.reply.dport)}` : '-',
    num(f.orig.bytes),
    num(f.orig.packets),
    num(f.reply?.bytes ?? null),
    num(f.reply?.packets ?? null),
    f.age_s === null ? '-' : `${Math.round(f.age_s)}s`,
    f.pid === null ? '-' : `${f.pid}/${sanitize(f.comm ?? '?')}`,
  ]);
  const without = flows.filter((f) => f.orig.bytes === null).length;
  const lines = [columns(header, rows, new Set([5, 6, 7, 8, 9]))];
  lines.push(`${flows.length} flow${flows.length === 1 ? '' : 's'}`);
  if (without > 0)
    lines.push(`${without} flow${without === 1 ? ' has' : 's have'} no counters ('-'): accounting was off when ${without === 1 ? 'it' : 'they'} began`);
  return `${lines.join('\n')}\n`;
}
