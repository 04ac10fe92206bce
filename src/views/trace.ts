// `ctacct top --trace` (and non-TTY stdout): the line format of `nethogs -t`, so scripts and GUIs
// that parse nethogs keep working. nethogs 0.8.7 (src/cui.cpp show_trace, Line::log) prints, per refresh:
//
//   <empty line>
//   Refreshing:
//   name/pid/uid<TAB>sent<TAB>recv
//   unknown TCP/0/0<TAB>0<TAB>0
//
// sent/recv are KB/s with KB = 1024 bytes (process.cpp tokbps: bytes / period / 1024), held in a
// C float and printed by iostream's default format (6 significant digits, %g: "2.48867", "63.0488",
// "0", "1.23457e+06"). Verified against `nethogs -t -a lo` on this machine. Our bytes are layer-3
// (IP headers included) as conntrack counts them; nethogs counts captured frames.
import { compareRows, type Bucket, type SortKey, type TopRow, type TopSnapshot } from '../core/model.js';
import { sanitize } from './format.js';

export interface TraceOptions {
  /** Row order; nethogs sorts by received (its default) or sent (-s). Default: the snapshot's order. */
  sort?: SortKey;
  /** Append the command line to the name, as `nethogs -t -l` does. */
  cmdline?: boolean;
  /** 'total' prints KB since start instead of KB/s, as `nethogs -t -v 1`. */
  mode?: 'rate' | 'total';
  /** The previous refresh: lets the unattributed buckets (which carry totals only) show a rate. */
  previous?: TopSnapshot | null;
}

/** C++ iostream default float output (%g, precision 6). */
export function formatG(x: number, precision = 6): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return '0';
  const strip = (s: string) => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);
  const [mant, exp] = x.toExponential(precision - 1).split('e') as [string, string];
  const e = Number(exp);
  if (e < -4 || e >= precision) {
    const digits = String(Math.abs(e)).padStart(2, '0');
    return `${strip(mant)}e${e < 0 ? '-' : '+'}${digits}`;
  }
  return strip(x.toFixed(Math.max(0, precision - 1 - e)));
}

/** A value in nethogs' unit (KB = 1024 B), rounded through a C float as nethogs does. */
function kb(bytes: number): string {
  return formatG(Math.fround(Number.isFinite(bytes) && bytes > 0 ? bytes / 1024 : 0));
}

/** "name/pid/uid" for --by process (the nethogs key scripts split on the last two '/'); the row key otherwise. */
function label(r: TopRow, group: TopSnapshot['group_by'], withCmdline: boolean): string {
  if (group !== 'process') return sanitize(r.key);
  const name = sanitize(r.comm ?? r.cmdline?.split(' ')[0] ?? r.key);
  const cmd = withCmdline && r.cmdline ? ` ${sanitize(r.cmdline)}` : '';
  return `${name}${cmd}/${r.pid ?? 0}/${r.uid ?? 0}`;
}

interface BucketRate {
  sent_bps?: number;
  recv_bps?: number;
}

/**
 * A bucket's rate: its own `*_bps` if the engine provides them (fields may be added),
 * else the growth of its totals since the previous refresh, else 0 (first refresh, like rows).
 */
export function bucketRate(now: Bucket, before: Bucket | undefined, intervalS: number): { sent: number; recv: number } {
  const own = now as Bucket & BucketRate;
  if (own.sent_bps !== undefined && own.recv_bps !== undefined) return { sent: own.sent_bps, recv: own.recv_bps };
  if (!before || !(intervalS > 0)) return { sent: 0, recv: 0 };
  return {
    sent: Math.max(0, now.sent_total - before.sent_total) / intervalS,
    recv: Math.max(0, now.recv_total - before.recv_total) / intervalS,
  };
}

/** One refresh in `nethogs -t` format, ending in a newline. */
export function renderTrace(s: TopSnapshot, opts: TraceOptions = {}): string {
  const rows = opts.sort ? [...s.rows].sort(compareRows(opts.sort)) : s.rows;
  const total = opts.mode === 'total';
  const lines = ['', 'Refreshing:'];
  for (const r of rows) {
    const sent = total ? r.sent_total : r.sent_bps;
    const recv = total ? r.recv_total : r.recv_bps;
    lines.push(`${label(r, s.group_by, opts.cmdline ?? false)}\t${kb(sent)}\t${kb(recv)}`);
  }
  // nethogs always lists its "unknown TCP/0/0" pseudo-process; we list both of our buckets.
  const suffix = s.group_by === 'process' ? '/0/0' : '';
  for (const name of ['unknown', 'forwarded'] as const) {
    const b = s.unattributed[name];
    const v = total
      ? { sent: b.sent_total, recv: b.recv_total }
      : bucketRate(b, opts.previous?.unattributed[name], s.interval_s);
    lines.push(`${name}${suffix}\t${kb(v.sent)}\t${kb(v.recv)}`);
  }
  return `${lines.join('\n')}\n`;
}
