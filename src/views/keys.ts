// The live view's UI state and the pure key handling that changes it.
// Raw stdin bytes → key names (parseKeys) → new state (reduceKey); the runner does the I/O.
import { GROUP_BYS, type GroupBy, type SortKey, type TopRow } from '../core/model.js';

/** What the SENT/RECV columns lead with: this refresh's rates or totals since start. */
export type DisplayMode = 'rate' | 'total';

/** Which rate the rate columns show: this refresh's, or a sliding window's (iftop's 2 s/10 s/40 s). */
export type RateWindow = 'refresh' | '2s' | '10s' | '40s';
export const RATE_WINDOWS: RateWindow[] = ['refresh', '2s', '10s', '40s'];

/** The row a drill-down opened (Enter): its connections are shown, the row's identity kept to match them. */
export type Drill = { groupBy: GroupBy } & Pick<TopRow, 'key' | 'pid' | 'comm' | 'cmdline' | 'uid' | 'user' | 'remote' | 'port' | 'proto'>;

export interface UiState {
  groupBy: GroupBy;
  sort: SortKey;
  mode: DisplayMode;
  paused: boolean;
  showHelp: boolean;
  /** First table row shown (0 = top). */
  scroll: number;
  /** The cursor: index of the selected row among the rows shown (after sorting and filtering). */
  selected: number;
  quit: boolean;
  /** Rates in bits (B). */
  bits: boolean;
  window: RateWindow;
  /** Rows whose text contains this (case-insensitive); '' = all. */
  filter: string;
  /** The filter is being typed (after `/`): keys go into it until Enter or Esc. */
  editing: boolean;
  /** The connections of one row (Enter), or null for the table. */
  drill: Drill | null;
  /** Keep rows of exited processes instead of dropping them after a while (x). */
  keepExited: boolean;
}

export function initialUiState(init: Partial<UiState> = {}): UiState {
  return {
    groupBy: 'process',
    sort: 'total',
    mode: 'rate',
    paused: false,
    showHelp: false,
    scroll: 0,
    selected: 0,
    quit: false,
    bits: false,
    window: 'refresh',
    filter: '',
    editing: false,
    drill: null,
    keepExited: false,
    ...init,
  };
}

/** The group-by the engine must produce for this state: a drill-down shows connections. */
export function effectiveGroupBy(ui: UiState): GroupBy {
  return ui.drill ? 'conn' : ui.groupBy;
}

/** How far the table can scroll and by how much a page moves; the runner takes it from the layout. */
export interface ScrollView {
  page: number;
  maxScroll: number;
  /** Table rows on screen; with `rows`, the cursor moves and the view scrolls to keep it visible. */
  visible?: number;
  /** The rows shown, in order (after sorting and filtering): Enter opens the selected one. */
  rows?: readonly TopRow[];
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
  if (ui.editing) return editFilter(ui, key);
  const k = key.length === 1 ? key.toLowerCase() : key;
  const page = Math.max(1, view.page);
  const max = Math.max(0, view.maxScroll);
  const count = view.rows?.length;
  // With the rows known, keys move the cursor and the view follows it; without, they scroll.
  const move = (target: (from: number) => number): UiState => {
    if (count === undefined) {
      const scroll = clamp(target(ui.scroll), 0, max);
      return scroll === ui.scroll ? ui : { ...ui, scroll };
    }
    const selected = clamp(target(ui.selected), 0, Math.max(0, count - 1));
    const visible = Math.max(1, view.visible ?? page + 1);
    const scroll = clamp(selected < ui.scroll ? selected : selected >= ui.scroll + visible ? selected - visible + 1 : ui.scroll, 0, max);
    return selected === ui.selected && scroll === ui.scroll ? ui : { ...ui, selected, scroll };
  };
  const top = { scroll: 0, selected: 0 };
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
      return sort === ui.sort && ui.scroll === 0 && ui.selected === 0 ? ui : { ...ui, sort, ...top };
    }
    case 'b': {
      // B (shift) switches bits/bytes, as iftop's B and nethogs' m do; b cycles the group-by.
      if (key === 'B') return { ...ui, bits: !ui.bits };
      const i = GROUP_BYS.indexOf(ui.groupBy);
      const groupBy = GROUP_BYS[(i + 1) % GROUP_BYS.length]!;
      return { ...ui, groupBy, drill: null, ...top };
    }
    case 'w': {
      const i = RATE_WINDOWS.indexOf(ui.window);
      return { ...ui, window: RATE_WINDOWS[(i + 1) % RATE_WINDOWS.length]! };
    }
    case 'x':
      return { ...ui, keepExited: !ui.keepExited };
    case '/':
      return { ...ui, editing: true };
    case 'm':
      return { ...ui, mode: ui.mode === 'rate' ? 'total' : 'rate' };
    case 'p':
      return { ...ui, paused: !ui.paused };
    case 'h':
    case '?':
      return { ...ui, showHelp: !ui.showHelp };
    case 'enter': {
      if (ui.drill || ui.showHelp) return ui;
      const row = view.rows?.[ui.selected];
      return row ? { ...ui, drill: drillOf(ui.groupBy, row), ...top } : ui;
    }
    case 'escape':
    case 'backspace':
    case 'left':
      // Back out one level: help, then the drill-down, then the filter.
      if (ui.showHelp) return { ...ui, showHelp: false };
      if (ui.drill) return { ...ui, drill: null, ...top };
      if (ui.filter !== '' && k !== 'left') return { ...ui, filter: '', ...top };
      return ui;
    case 'up':
    case 'k':
      return move((n) => n - 1);
    case 'down':
    case 'j':
      return move((n) => n + 1);
    case 'pageup':
      return move((n) => n - page);
    case 'pagedown':
    case 'space':
      return move((n) => n + page);
    case 'home':
      return move(() => 0);
    case 'end':
      return move(() => (count === undefined ? max : count - 1));
    default:
      return ui;
  }
}

/** Typing the filter: printable keys append, Backspace deletes, Enter keeps it, Esc drops it. */
function editFilter(ui: UiState, key: KeyName): UiState {
  switch (key) {
    case 'ctrl-c':
      return { ...ui, quit: true };
    case 'enter':
      return { ...ui, editing: false };
    case 'escape':
      return { ...ui, editing: false, filter: '', scroll: 0, selected: 0 };
    case 'backspace':
      return { ...ui, filter: [...ui.filter].slice(0, -1).join(''), scroll: 0, selected: 0 };
    case 'space':
      return { ...ui, filter: `${ui.filter} `, scroll: 0, selected: 0 };
    default:
      // One printable character (named keys are longer than one code point).
      if ([...key].length !== 1 || /\p{C}/u.test(key) || ui.filter.length >= 64) return ui;
      return { ...ui, filter: ui.filter + key, scroll: 0, selected: 0 };
  }
}

function drillOf(groupBy: GroupBy, r: TopRow): Drill {
  return {
    groupBy,
    key: r.key,
    pid: r.pid ?? null,
    comm: r.comm ?? null,
    cmdline: r.cmdline ?? null,
    uid: r.uid ?? null,
    user: r.user ?? null,
    remote: r.remote ?? null,
    port: r.port ?? null,
    proto: r.proto ?? null,
  };
}

/** The host part of "addr:port" / "[v6]:port" (conn rows' remote), or the string itself. */
export function hostOf(endpoint: string): string {
  const v6 = /^\[(.*)\]:\d+$/.exec(endpoint);
  if (v6) return v6[1]!;
  const v4 = /^([^:]+):\d+$/.exec(endpoint);
  return v4 ? v4[1]! : endpoint;
}

/** The port of "addr:port" / "[v6]:port", or null. */
export function portOf(endpoint: string | null | undefined): number | null {
  const m = endpoint ? /:(\d+)$/.exec(endpoint) : null;
  return m ? Number(m[1]) : null;
}

/** Does a connection row belong to the drilled row? */
export function inDrill(d: Drill, c: TopRow): boolean {
  switch (d.groupBy) {
    case 'process':
      return d.pid !== null && c.pid === d.pid;
    case 'remote':
      return c.remote !== null && hostOf(c.remote) === (d.remote ?? d.key);
    case 'port':
      return (d.proto === null || c.proto === d.proto) && (portOf(c.local) === d.port || portOf(c.remote) === d.port);
    case 'user':
      return d.uid !== null && c.uid === d.uid;
    case 'conn':
      return c.key === d.key;
    case 'container':
      // Connection rows carry their owner's container ("host": an owner in none).
      return c.pid != null && (c.container ? `${c.container.runtime}/${c.container.id}` : 'host') === d.key;
    case 'unit':
      return c.pid != null && (c.unit ?? '-') === d.key;
  }
}

/** Does the row contain the filter text (case-insensitive) in any of its names? */
export function matchesFilter(r: TopRow, filter: string): boolean {
  if (filter === '') return true;
  const f = filter.toLowerCase();
  const fields = [r.key, r.comm, r.cmdline, r.user, r.remote, r.local, r.state, r.proto, r.pid?.toString(), r.port?.toString(), r.uid?.toString()];
  return fields.some((x) => x != null && x.toLowerCase().includes(f));
}

/** The keys, for the help overlay (and the README). */
export const KEY_HELP: [string, string][] = [
  ['q, Ctrl-C', 'quit (prints the summary of totals since start)'],
  ['s', 'sort by sent rate'],
  ['r', 'sort by received rate'],
  ['t', 'sort by total rate (sent + received)'],
  ['c / n', 'sort by open connections / new connections'],
  ['b', 'next group-by: process, conn, remote, port, user'],
  ['Enter', "open the selected row's connections (rates, state, remote; full command line)"],
  ['Esc, Backspace, ←', 'back from the connections; clear the filter'],
  ['/', 'filter rows by text (Enter keeps it, Esc clears it)'],
  ['B', 'rates in bits / bytes per second'],
  ['w', 'rate window: this refresh, 2 s, 10 s, 40 s (as iftop)'],
  ['m', 'switch the view between rates and totals since start'],
  ['x', 'keep exited processes (else dropped a minute after they exit)'],
  ['p', 'pause (stop refreshing; keys still work)'],
  ['↑ ↓ PgUp PgDn Home End', 'move the selection (also j / k / space)'],
  ['h, ?', 'show / hide this help (Esc hides it)'],
];
