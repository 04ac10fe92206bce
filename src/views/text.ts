// Terminal text: what may reach a terminal (sanitize) and how many columns it takes (display
// widths, cutting and padding). Pure. format.ts re-exports all of it with the number formats.
import { createRequire } from 'node:module';
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
// string-width and the segmenter are loaded only for text that is not printable ASCII: format.ts
// loads them with itself; a one-shot command that renders through this module alone calls
// loadWideWidths() first when its text needs them (`ctacct states`: ~0.1 s less when not), and
// a caller that did not is served by a synchronous load.
let graphemes: Intl.Segmenter | null = null;
let stringWidth: ((s: string) => number) | null = null;

/** Registers string-width (format.ts does so as it loads). */
export function setWideWidth(f: (s: string) => number): void {
  stringWidth = f;
}

/** Loads string-width, for text that is not printable ASCII. */
export async function loadWideWidths(): Promise<void> {
  if (!stringWidth) setWideWidth((await import('string-width')).default);
}

/** Whether measuring `s` needs loadWideWidths() first. */
export function needsWideWidths(s: string): boolean {
  return !ASCII.test(s) && stringWidth === null;
}

function clusters(s: string): string[] {
  graphemes ??= new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  return Array.from(graphemes.segment(s), (g) => g.segment);
}

/** Terminal columns a code point takes: 0 for combining marks, 2 for East Asian wide, else 1. */
export function charWidth(cp: number): number {
  return cachedWidth(String.fromCodePoint(cp));
}

/**
 * Printable ASCII and a few one-column symbols ctacct prints itself (→ … · — – ▸ ✓ ✗ × ° µ): one
 * column per UTF-16 unit, each its own grapheme, so no need to segment or measure (the common
 * case, and fast: string-width takes ~100 µs per string, and a flows table has a → in every row).
 */
const ASCII = /^[\x20-\x7e\u00b0\u00b5\u00b7\u00d7\u2013\u2014\u2026\u2192\u25b8\u2713\u2717]*$/;

// string-width segments and tests emoji per call (tens of µs for a line): the frame measures the
// same few strings again and again, so remember them (bounded: cleared when it grows large).
const widthCache = new Map<string, number>();
function cachedWidth(s: string): number {
  let w = widthCache.get(s);
  if (w === undefined) {
    if (widthCache.size > 4096) widthCache.clear();
    if (!stringWidth) {
      // Not loaded beforehand (a renderer called directly): load it now, synchronously.
      setWideWidth((createRequire(import.meta.url)('string-width') as { default: (s: string) => number }).default);
    }
    w = stringWidth!(s);
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
