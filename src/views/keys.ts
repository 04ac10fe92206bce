// The live view's UI state and the pure key handling that changes it.
// Raw stdin bytes → key names (parseKeys) → new state (reduceKey); the runner does the I/O.
import { GROUP_BYS, type GroupBy, type SortKey } from '../core/model.js';

/** What the SENT/RECV columns lead with: this refresh's rates or totals since start. */
export type DisplayMode = 'rate' | 'total';

export interface UiState {
  groupBy: GroupBy;
  sort: SortKey;
  mode: DisplayMode;
  paused: boolean;
  showHelp: boolean;
  /** First table row shown (0 = top). */
  scroll: number;
  quit: boolean;
}

export function initialUiState(init: Partial<UiState> = {}): UiState {
  return { groupBy: 'process', sort: 'total', mode: 'rate', paused: false, showHelp: false, scroll: 0, quit: false, ...init };
}

/** How far the table can scroll and by how much a page moves; the runner takes it from the layout. */
export interface ScrollView {
  page: number;
  maxScroll: number;
}

export type KeyName =
  | 'up'
  | 'down'
  | 'left'
  | 'right'
  | 'pageup'
  | 'pagedown'
  | 'home'
  | 'end'
  | 'insert'
  | 'delete'
  | 'escape'
  | 'enter'
  | 'space'
  | 'backspace'
  | 'tab'
  | 'ctrl-c'
  | 'ctrl-d'
  | 'ctrl-z'
  | string;

const CSI_FINAL: Record<string, KeyName> = { A: 'up', B: 'down', C: 'right', D: 'left', H: 'home', F: 'end' };
const CSI_TILDE: Record<string, KeyName> = {
  '1': 'home',
  '2': 'insert',
  '3': 'delete',
  '4': 'end',
  '5': 'pageup',
  '6': 'pagedown',
  '7': 'home',
  '8': 'end',
};

/**
 * Splits one read from a raw-mode stdin into key names. Handles CSI (`ESC [ … final`, with or
 * without modifiers: xterm, VTE, tmux, linux console) and SS3 (`ESC O x`, application cursor mode);
 * a read may hold several keys (pasted text, key repeat).
 */
export function parseKeys(input: Buffer | string): KeyName[] {
  const s = typeof input === 'string' ? input : input.toString('utf8');
  const keys: KeyName[] = [];
  let i = 0;
  while (i < s.length) {
    const ch = s[i]!;
    if (ch === '\x1b') {
      const next = s[i + 1];
      if (next === '[') {
        // Parameters then one final byte in @..~.
        let j = i + 2;
        while (j < s.length && /[0-9;?]/.test(s[j]!)) j++;
        const params = s.slice(i + 2, j);
        const final = s[j];
        if (final === undefined) {
          keys.push('escape');
          i = i + 1;
          continue;
        }
        if (final === '~') keys.push(CSI_TILDE[params.split(';')[0] ?? ''] ?? 'unknown');
        else keys.push(CSI_FINAL[final] ?? 'unknown');
        i = j + 1;
        continue;
      }
      if (next === 'O' && i + 2 < s.length) {
        keys.push(CSI_FINAL[s[i + 2]!] ?? 'unknown');
        i += 3;
        continue;
      }
      // A lone ESC, or Alt+key (ESC then the key): report escape, then read on.
      keys.push('escape');
      i++;
      continue;
    }
    const code = ch.charCodeAt(0);
    if (code === 3) keys.push('ctrl-c');
    else if (code === 4) keys.push('ctrl-d');
    else if (code === 26) keys.push('ctrl-z');
    else if (code === 13 || code === 10) keys.push('enter');
    else if (code === 9) keys.push('tab');
    else if (code === 127 || code === 8) keys.push('backspace');
    else if (ch === ' ') keys.push('space');
    else if (code < 32) keys.push(`ctrl-${String.fromCharCode(code + 96)}`);
    else {
      const cp = s.codePointAt(i)!;
      const c = String.fromCodePoint(cp);
      keys.push(c);
      i += c.length;
      continue;
    }
    i++;
  }
  return keys;
}

const SORT_BY_KEY: Record<string, SortKey> = { s: 'sent', r: 'recv', t: 'total', c: 'conns', n: 'new' };

function clamp(n: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, n));
}

/**
 * Applies one key. Returns the same object when the key changes nothing, so the runner
 * redraws only on a real change. Letters are case-insensitive (Caps Lock must not make `q` dead).
 */
export function reduceKey(ui: UiState, key: KeyName, view: ScrollView = { page: 10, maxScroll: Number.MAX_SAFE_INTEGER }): UiState {
  const k = key.length === 1 ? key.toLowerCase() : key;
  const page = Math.max(1, view.page);
  const max = Math.max(0, view.maxScroll);
  const scrollTo = (n: number): UiState => {
    const scroll = clamp(n, 0, max);
    return scroll === ui.scroll ? ui : { ...ui, scroll };
  };
  switch (k) {
    case 'q':
    case 'ctrl-c':
      return { ...ui, quit: true };
    case 's':
    case 'r':
    case 't':
    case 'c':
    case 'n': {
      const sort = SORT_BY_KEY[k]!;
      return sort === ui.sort && ui.scroll === 0 ? ui : { ...ui, sort, scroll: 0 };
    }
    case 'b': {
      // Shift-b goes back; the key is already lower-cased, so look at the raw one.
      const step = key === 'B' ? -1 : 1;
      const i = GROUP_BYS.indexOf(ui.groupBy);
      const groupBy = GROUP_BYS[(i + step + GROUP_BYS.length) % GROUP_BYS.length]!;
      return { ...ui, groupBy, scroll: 0 };
    }
    case 'm':
      return { ...ui, mode: ui.mode === 'rate' ? 'total' : 'rate' };
    case 'p':
      return { ...ui, paused: !ui.paused };
    case 'h':
    case '?':
      return { ...ui, showHelp: !ui.showHelp };
    case 'escape':
      return ui.showHelp ? { ...ui, showHelp: false } : ui;
    case 'up':
    case 'k':
      return scrollTo(ui.scroll - 1);
    case 'down':
    case 'j':
      return scrollTo(ui.scroll + 1);
    case 'pageup':
      return scrollTo(ui.scroll - page);
    case 'pagedown':
    case 'space':
      return scrollTo(ui.scroll + page);
    case 'home':
      return scrollTo(0);
    case 'end':
      return scrollTo(max);
    default:
      return ui;
  }
}

/** The keys, for the help overlay (and the README). */
export const KEY_HELP: [string, string][] = [
  ['q, Ctrl-C', 'quit (prints the summary of totals since start)'],
  ['s', 'sort by sent rate'],
  ['r', 'sort by received rate'],
  ['t', 'sort by total rate (sent + received)'],
  ['c / n', 'sort by open connections / new connections'],
  ['b / B', 'next / previous group-by: process, conn, remote, port, user'],
  ['m', 'switch the view between rates and totals since start'],
  ['p', 'pause (stop refreshing; keys still work)'],
  ['↑ ↓ PgUp PgDn Home End', 'scroll the table (also j / k / space)'],
  ['h, ?', 'show / hide this help (Esc hides it)'],
];
