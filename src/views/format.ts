// Pure formatting for the views: human units, durations, and width-aware text fitting.
// Numbers never lie: a non-zero value never prints as "0", absent counters print as "-".
import stringWidth from 'string-width';

/** Bytes in binary (IEC) units, as `ls -h`, `free -h` and nethogs' KB (1024) count them. */
const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
/** Bit rates in SI units, as network links are sold. */
const BIT_UNITS = ['bit', 'kbit', 'Mbit', 'Gbit', 'Tbit', 'Pbit'];

/** Scales v into units of `base` with 3 significant digits ("1.23", "12.3", "123", "1023"). */
function scaled(v: number, base: number, units: string[]): string {
  if (v === null || v === undefined || !Number.isFinite(v) || v < 0) return '-';
  if (v === 0) return `0 ${units[0]}`;
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  if (i === 0) {
    // Below the first step: whole units when whole, one decimal for fractional rates,
    // and "<0.1" rather than a lying "0".
    if (Number.isInteger(v) || v >= 10) return `${Math.round(v)} ${units[0]}`;
    if (v < 0.05) return `<0.1 ${units[0]}`;
    const s = v.toFixed(1);
    return `${s === '10.0' ? '10' : s} ${units[0]}`;
  }
  let s = v >= 999.5 ? v.toFixed(0) : v.toPrecision(3);
  if (Number(s) >= base && i < units.length - 1) {
    // 1023.7 KiB rounds to 1024: say 1.00 MiB instead.
    v /= base;
    i++;
    s = v.toPrecision(3);
  }
  return `${s} ${units[i]}`;
}

/** A byte count: "0 B", "400 B", "1.21 KiB", "12.3 MiB", "1023 MiB"; "-" when absent. */
export function formatBytes(n: number | null | undefined): string {
  return scaled(n as number, 1024, BYTE_UNITS);
}

/**
 * A rate given in bytes/s: IEC bytes ("1.21 MiB/s") or, with `bits`, SI bits ("9.68 Mbit/s").
 * `suffix` false drops the "/s" for table cells whose header already says per second.
 */
export function formatRate(bytesPerSecond: number | null | undefined, bits: boolean, suffix = true): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return '-';
  const s = bits ? scaled(bytesPerSecond * 8, 1000, BIT_UNITS) : scaled(bytesPerSecond, 1024, BYTE_UNITS);
  return suffix ? `${s}/s` : s;
}

/** Integer with thousands separators, locale-independent ("12,345"). */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const sign = n < 0 ? '-' : '';
  const digits = String(Math.round(Math.abs(n)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A count for a narrow column: exact up to 99,999, then "123k", "1.2M". */
export function formatCompact(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const a = Math.abs(n);
  if (a < 100_000) return String(Math.round(n));
  if (a < 999_500) return `${Math.round(n / 1000)}k`;
  if (a < 9_950_000) return `${(n / 1e6).toFixed(1)}M`;
  if (a < 999_500_000) return `${Math.round(n / 1e6)}M`;
  return `${(n / 1e9).toPrecision(2)}G`;
}

/** CPU share: "0%", "<0.1%", "0.8%", "12%", "250%" (several cores). */
export function formatPercent(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p) || p < 0) return '-';
  if (p === 0) return '0%';
  if (p < 0.05) return '<0.1%';
  if (p < 9.95) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

/** Seconds as "0.5s", "1s", "59s", "1m05s", "2h03m", "3d04h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 10 && !Number.isInteger(seconds)) {
    const s = seconds.toFixed(1).replace(/\.0$/, '');
    return s === '10' ? '10s' : `${s}s`;
  }
  const t = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${two(t % 60)}s`;
  if (t < 86400) return `${Math.floor(t / 3600)}h${two(Math.floor((t % 3600) / 60))}m`;
  return `${Math.floor(t / 86400)}d${two(Math.floor((t % 86400) / 3600))}h`;
}

/** "s"-plural for counts in prose. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${formatCount(n)} ${n === 1 ? word : many}`;
}

/**
 * Process names, command lines, units, users and container names come from other users'
 * processes: a control character or escape sequence must never reach the terminal, a tab or
 * newline must never break a line-oriented format, and a bidi override must never reorder what
 * follows. Each such code point is shown as a visible escape (`\x1b`, `\u202e`), so
 * `\x1b[2J` reads as text instead of clearing the screen, and two names that differ only in
 * hidden characters still look different.
 */
// C0, DEL, C1; then the invisible format controls that reorder or hide text (bidi embeddings,
// overrides and isolates, zero-width and direction marks, the BOM, line/paragraph separators).
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f]|[\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;

export function sanitize(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const cp = c.codePointAt(0)!;
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
  });
}

/** Removes ANSI SGR/CSI sequences (for measuring coloured lines). */
export function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '');
}

// Display width: string-width (Unicode East Asian Width, emoji, zero-width and combining marks),
// applied per grapheme cluster so a cut never splits a character from its accents or an emoji
// sequence. Ambiguous-width characters count as narrow, as most terminals draw them.
const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

function clusters(s: string): string[] {
  return Array.from(graphemes.segment(s), (g) => g.segment);
}

/** Terminal columns a code point takes: 0 for combining marks, 2 for East Asian wide, else 1. */
export function charWidth(cp: number): number {
  return cachedWidth(String.fromCodePoint(cp));
}

/** Printable ASCII: one column per character, no need to segment (the common case, and fast). */
const ASCII = /^[\x20-\x7e]*$/;

// string-width segments and tests emoji per call (tens of µs for a line): the frame measures the
// same few strings again and again, so remember them (bounded: cleared when it grows large).
const widthCache = new Map<string, number>();
function cachedWidth(s: string): number {
  let w = widthCache.get(s);
  if (w === undefined) {
    if (widthCache.size > 4096) widthCache.clear();
    w = stringWidth(s);
    widthCache.set(s, w);
  }
  return w;
}

/** Columns a string takes on a terminal (escape sequences are not counted). */
export function displayWidth(s: string): number {
  return ASCII.test(s) ? s.length : cachedWidth(s);
}

/** Longest prefix of s that fits in `width` columns. */
function takeWidth(s: string, width: number): string {
  if (ASCII.test(s)) return s.slice(0, Math.max(0, width));
  let w = 0;
  let out = '';
  for (const g of clusters(s)) {
    const cw = cachedWidth(g);
    if (w + cw > width) break;
    w += cw;
    out += g;
  }
  return out;
}

/** Longest suffix of s that fits in `width` columns. */
function takeWidthEnd(s: string, width: number): string {
  if (ASCII.test(s)) return width > 0 ? s.slice(-width) : '';
  const gs = clusters(s);
  let w = 0;
  let i = gs.length;
  while (i > 0) {
    const cw = cachedWidth(gs[i - 1]!);
    if (w + cw > width) break;
    w += cw;
    i--;
  }
  return gs.slice(i).join('');
}

/** Cuts s to `width` columns, ending in "…" when something was cut. */
export function truncate(s: string, width: number): string {
  if (width <= 0) return '';
  if (displayWidth(s) <= width) return s;
  return `${takeWidth(s, width - 1).trimEnd()}…`;
}

/** Cuts the middle out ("2001:db8:…:1]:443"), keeping the end where ports and pids live. */
export function truncateMiddle(s: string, width: number): string {
  if (width <= 0) return '';
  if (displayWidth(s) <= width) return s;
  if (width < 5) return truncate(s, width);
  const tail = Math.ceil((width - 1) / 2);
  const head = width - 1 - tail;
  return `${takeWidth(s, head)}…${takeWidthEnd(s, tail)}`;
}

/** Fits s into exactly `width` columns: cut (end or middle) then padded left or right. */
export function fit(s: string, width: number, align: 'left' | 'right' = 'left', cut: 'end' | 'middle' = 'end'): string {
  if (width <= 0) return '';
  const t = cut === 'middle' ? truncateMiddle(s, width) : truncate(s, width);
  const pad = ' '.repeat(Math.max(0, width - displayWidth(t)));
  return align === 'right' ? pad + t : t + pad;
}

export function padEnd(s: string, width: number): string {
  return fit(s, width, 'left');
}

export function padStart(s: string, width: number): string {
  return fit(s, width, 'right');
}

/**
 * Word-wraps prose to `width` columns; continuation lines get `indent`. A word longer than a line
 * is cut (with an ellipsis) rather than overflowing.
 */
export function wrap(s: string, width: number, indent = '  '): string[] {
  if (width <= 0) return [];
  const lines: string[] = [];
  let line = '';
  for (const word of s.split(/ +/)) {
    const prefix = lines.length === 0 ? '' : indent;
    const candidate = line === '' ? `${prefix}${word}` : `${line} ${word}`;
    if (displayWidth(candidate) <= width) {
      line = candidate;
      continue;
    }
    if (line !== '') lines.push(line);
    const next = lines.length === 0 ? '' : indent;
    line = truncate(`${next}${word}`, width);
  }
  if (line !== '') lines.push(line);
  return lines;
}

/**
 * The plain table every non-live command prints (flows, states, doctor-like listings): columns
 * `sep` apart, widths in terminal columns (wide characters count two), numbers right-aligned,
 * the last column never padded, trailing blanks dropped. The live view and the exit summary lay
 * out their columns by priority (top.ts) with the same width and cutting rules.
 */
export function alignColumns(rows: string[][], right: Set<number> = new Set(), sep = '  '): string[] {
  const n = Math.max(0, ...rows.map((r) => r.length));
  const widths = Array.from({ length: n }, (_, i) => Math.max(0, ...rows.map((r) => displayWidth(r[i] ?? ''))));
  return rows.map((cells) =>
    cells
      .map((c, i) => (right.has(i) ? fit(c, widths[i]!, 'right') : i === cells.length - 1 ? c : fit(c, widths[i]!)))
      .join(sep)
      .trimEnd(),
  );
}
