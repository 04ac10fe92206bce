// The live loop of `ctacct top`: timers, raw mode, alternate screen, keys, resize, and putting the
// terminal back on every exit path. It knows nothing of netlink or /proc: snapshots come from `next`.
import type { TopSnapshot } from '../core/model.js';
import { effectiveGroupBy, initialUiState, parseKeys, reduceKey, type UiState } from './keys.js';
import type { NameCache } from './names.js';
import { renderTop, renderWaiting, rowsShown, topGeometry, type TopRenderOptions } from './top.js';

/** How long a row of an exited process stays on screen (dimmed) before it is dropped, unless `x`. */
export const EXITED_TTL_MS = 60_000;
/** The sparkline covers this much history. */
export const HISTORY_MS = 60_000;

/**
 * What the screen remembers between refreshes, beside the UI state: each row's recent rates (the
 * sparkline) and since when each exited process's row has been exited. Pure: a snapshot and the
 * time in, the new memory out.
 */
export interface RowMemory {
  groupBy: string | null;
  history: Map<string, number[]>;
  exitedSince: Map<string, number>;
}

export function emptyMemory(): RowMemory {
  return { groupBy: null, history: new Map(), exitedSince: new Map() };
}

export function remember(m: RowMemory, s: TopSnapshot, nowMs: number, intervalMs: number): RowMemory {
  const keep = Math.max(2, Math.ceil(HISTORY_MS / Math.max(1, intervalMs)));
  const same = m.groupBy === s.group_by;
  const history = new Map<string, number[]>();
  const exitedSince = new Map<string, number>();
  for (const r of s.rows) {
    const past = same ? (m.history.get(r.key) ?? []) : [];
    history.set(r.key, [...past, Math.max(0, r.sent_bps) + Math.max(0, r.recv_bps)].slice(-keep));
    if (r.exited) exitedSince.set(r.key, (same ? m.exitedSince.get(r.key) : undefined) ?? nowMs);
  }
  return { groupBy: s.group_by, history, exitedSince };
}

/** The snapshot as shown: rows of processes that exited more than EXITED_TTL_MS ago dropped (unless kept). */
export function withoutExpired(s: TopSnapshot, m: RowMemory, nowMs: number, keepExited: boolean): TopSnapshot {
  if (keepExited || m.exitedSince.size === 0) return s;
  const rows = s.rows.filter((r) => {
    const since = m.exitedSince.get(r.key);
    return since === undefined || nowMs - since <= EXITED_TTL_MS;
  });
  return rows.length === s.rows.length ? s : { ...s, rows };
}

export interface LiveTerminal {
  write(s: string): void;
  columns(): number;
  rows(): number;
  /** Subscribes to size changes; returns the unsubscribe. */
  onResize(cb: () => void): () => void;
  setRawMode?(on: boolean): void;
  /** Subscribes to key bytes; returns the unsubscribe (which should also stop reading stdin). */
  onData(cb: (buf: Buffer) => void): () => void;
}

export interface LiveClock {
  now(): number;
  setInterval(cb: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/** What the engine is asked for on each refresh. */
export type NextSnapshot = (ui: Readonly<UiState>) => Promise<TopSnapshot> | TopSnapshot;

export interface LiveResult {
  /** The last snapshot drawn (null if none arrived): feed it to renderSummary. */
  last: TopSnapshot | null;
  ui: UiState;
  /** Snapshots received. */
  refreshes: number;
}

export interface LiveHandle {
  /** Settles once the terminal is restored: resolves on q / Ctrl-C / count / stop(), rejects with `next`'s error. */
  done: Promise<LiveResult>;
  /** Ends the loop from outside (SIGINT, SIGTERM, SIGHUP handlers); safe to call more than once. */
  stop(): void;
}

export interface LiveDeps {
  terminal: LiveTerminal;
  clock: LiveClock;
  next: NextSnapshot;
  intervalMs: number;
  /** Stop after this many refreshes (--count, --once). */
  count?: number;
  color: boolean;
  bits?: boolean;
  /** Starting group-by, sort, mode (from the command line). */
  ui?: Partial<UiState>;
  /** Shown in the header; defaults to each snapshot's health.changes. */
  changes?: string[];
  /** Called after the terminal is restored, on every exit path, before `done` settles. */
  onExit?(result: LiveResult, error?: unknown): void;
  /** --resolve: host names for the remote and connection views (the screen redraws as they arrive). */
  names?: NameCache;
}

// DEC private modes: 1049 = alternate screen (saves and restores the user's screen and cursor), 25 = cursor.
export const ENTER_SCREEN = '\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J';
/** Reset attributes, show the cursor, back to the main screen. */
export const LEAVE_SCREEN = '\x1b[0m\x1b[?25h\x1b[?1049l';

/**
 * Paints a frame row by row at absolute positions. Never writes a newline after the last row and
 * clears each row before writing it (not after: EL at the last column would erase the last cell).
 */
export function screenUpdate(frame: string, rows: number): string {
  const lines = frame.split('\n');
  let out = '';
  for (let r = 0; r < rows; r++) out += `\x1b[${r + 1};1H\x1b[2K${lines[r] ?? ''}`;
  return out;
}

function safely(f: () => void): unknown {
  try {
    f();
    return undefined;
  } catch (e) {
    return e;
  }
}

/** Ends a loop: runs the exit hook (after the terminal is restored), then settles `done`. */
function settleLoop(
  settle: { resolve(r: LiveResult): void; reject(e: unknown): void },
  result: LiveResult,
  error: unknown,
  onExit: ((result: LiveResult, error?: unknown) => void) | undefined,
): void {
  const hookError = onExit ? safely(() => onExit(result, error)) : undefined;
  const err = error ?? hookError;
  if (err !== undefined) settle.reject(err);
  else settle.resolve(result);
}

export function runLive(deps: LiveDeps): LiveHandle {
  const { terminal, clock } = deps;
  let ui = initialUiState({ ...(deps.bits !== undefined ? { bits: deps.bits } : {}), ...deps.ui, quit: false });
  let last: TopSnapshot | null = null;
  let memory = emptyMemory();
  let refreshes = 0;
  let busy = false;
  let finished = false;
  let timer: unknown = null;
  const unsubscribe: (() => void)[] = [];
  let settle!: { resolve(r: LiveResult): void; reject(e: unknown): void };
  const done = new Promise<LiveResult>((resolve, reject) => (settle = { resolve, reject }));

  const size = () => ({ width: Math.max(1, terminal.columns() || 80), height: Math.max(1, terminal.rows() || 24) });

  const renderOptions = (): TopRenderOptions => {
    const { width, height } = size();
    return {
      width,
      height,
      bits: ui.bits,
      mode: ui.mode,
      sort: ui.sort,
      scroll: ui.scroll,
      paused: ui.paused,
      color: deps.color,
      showHelp: ui.showHelp,
      pendingGroupBy: ui.groupBy,
      intervalS: deps.intervalMs / 1000,
      window: ui.window,
      filter: ui.filter,
      editing: ui.editing,
      selected: ui.selected,
      drill: ui.drill,
      history: memory.history,
      exited: new Set(memory.exitedSince.keys()),
      ...(deps.names ? { nameOf: (a: string) => deps.names!.nameOf(a) } : {}),
      ...(deps.changes ? { changes: deps.changes } : {}),
    };
  };

  const shownSnapshot = (): TopSnapshot | null => (last ? withoutExpired(last, memory, clock.now(), ui.keepExited) : null);

  const scrollView = () => {
    const snap = shownSnapshot();
    if (!snap) return { page: 1, maxScroll: 0 };
    const o = renderOptions();
    const g = topGeometry(snap, o);
    return { page: Math.max(1, g.visibleRows - 1), maxScroll: g.maxScroll, visible: g.visibleRows, rows: rowsShown(snap, o) };
  };

  function draw(): void {
    if (finished) return;
    const o = renderOptions();
    let frame: string;
    const snap = shownSnapshot();
    if (snap) {
      // Rows may have shrunk or the window grown since the key press: keep scroll and cursor within the table.
      const g = topGeometry(snap, o);
      const selected = Math.max(0, Math.min(ui.selected, g.totalRows - 1));
      if (g.scroll !== ui.scroll || selected !== ui.selected) ui = { ...ui, scroll: g.scroll, selected };
      frame = renderTop(snap, { ...o, scroll: g.scroll, selected });
    } else {
      frame = renderWaiting({ width: o.width, height: o.height, color: deps.color, intervalS: deps.intervalMs / 1000 });
    }
    terminal.write(screenUpdate(frame, o.height));
  }

  function finish(error?: unknown): void {
    if (finished) return;
    finished = true;
    if (timer !== null) safely(() => clock.clearInterval(timer));
    for (const u of unsubscribe.splice(0)) safely(u);
    // Restore even if writing fails half-way: each step on its own.
    safely(() => terminal.write(LEAVE_SCREEN));
    safely(() => terminal.setRawMode?.(false));
    settleLoop(settle, { last, ui, refreshes }, error, deps.onExit);
  }

  async function refresh(): Promise<void> {
    if (finished || busy || ui.paused) return;
    // A slow engine must not stack refreshes: a tick that finds one in flight is skipped.
    busy = true;
    try {
      const snap = await deps.next({ ...ui, groupBy: effectiveGroupBy(ui) });
      if (finished) return;
      last = snap;
      memory = remember(memory, snap, clock.now(), deps.intervalMs);
      refreshes++;
      draw();
      if (deps.count !== undefined && deps.count > 0 && refreshes >= deps.count) finish();
    } catch (e) {
      finish(e);
    } finally {
      busy = false;
    }
  }

  function onKeys(buf: Buffer): void {
    try {
      for (const key of parseKeys(buf)) {
        if (finished) return;
        const before = ui;
        ui = reduceKey(ui, key, scrollView());
        if (ui.quit) return finish();
        if (ui !== before) draw();
      }
    } catch (e) {
      finish(e);
    }
  }

  try {
    terminal.setRawMode?.(true);
    terminal.write(ENTER_SCREEN);
    unsubscribe.push(terminal.onData(onKeys));
    unsubscribe.push(terminal.onResize(() => safely(draw)));
    if (deps.names) unsubscribe.push(deps.names.onName(() => safely(draw)));
    draw();
    timer = clock.setInterval(() => void refresh(), deps.intervalMs);
  } catch (e) {
    finish(e);
  }
  return { done, stop: () => finish() };
}

export interface StreamDeps {
  write(s: string): void;
  clock: LiveClock;
  next: NextSnapshot;
  intervalMs: number;
  count?: number;
  /** Fixed choices for non-interactive output (no keys). */
  ui?: Partial<UiState>;
  /** Text for one refresh, e.g. renderTrace or renderJsonLine; `previous` is the refresh before. */
  render(snapshot: TopSnapshot, previous: TopSnapshot | null): string;
  onExit?(result: LiveResult, error?: unknown): void;
}

/**
 * The same refresh loop without a screen: for --trace, --json and non-TTY stdout.
 * Each refresh appends `render(snapshot)`; a failing write (EPIPE: `| head`) ends the loop with its error.
 */
export function runStream(deps: StreamDeps): LiveHandle {
  const ui = initialUiState({ ...deps.ui, quit: false });
  let last: TopSnapshot | null = null;
  let refreshes = 0;
  let busy = false;
  let finished = false;
  let settle!: { resolve(r: LiveResult): void; reject(e: unknown): void };
  const done = new Promise<LiveResult>((resolve, reject) => (settle = { resolve, reject }));
  let timer: unknown = null;

  function finish(error?: unknown): void {
    if (finished) return;
    finished = true;
    if (timer !== null) safely(() => deps.clock.clearInterval(timer));
    settleLoop(settle, { last, ui, refreshes }, error, deps.onExit);
  }

  async function refresh(): Promise<void> {
    if (finished || busy) return;
    busy = true;
    try {
      const snap = await deps.next({ ...ui });
      if (finished) return;
      deps.write(deps.render(snap, last));
      last = snap;
      refreshes++;
      if (deps.count !== undefined && deps.count > 0 && refreshes >= deps.count) finish();
    } catch (e) {
      finish(e);
    } finally {
      busy = false;
    }
  }

  timer = deps.clock.setInterval(() => void refresh(), deps.intervalMs);
  return { done, stop: () => finish() };
}

/** The real clock (the command passes it; tests pass a manual one). */
export { nodeTerminal, realClock, type InputLike, type OutputLike } from './terminal.js';

export type { UiState };
