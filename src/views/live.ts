// The live loop of `ctacct top`: timers, raw mode, alternate screen, keys, resize, and putting the
// terminal back on every exit path. It knows nothing of netlink or /proc: snapshots come from `next`.
import type { TopSnapshot } from '../core/model.js';
import { initialUiState, parseKeys, reduceKey, type UiState } from './keys.js';
import { renderTop, renderWaiting, topGeometry, type TopRenderOptions } from './top.js';

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
  let ui = initialUiState({ ...deps.ui, quit: false });
  let last: TopSnapshot | null = null;
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
      bits: deps.bits ?? false,
      mode: ui.mode,
      sort: ui.sort,
      scroll: ui.scroll,
      paused: ui.paused,
      color: deps.color,
      showHelp: ui.showHelp,
      pendingGroupBy: ui.groupBy,
      ...(deps.changes ? { changes: deps.changes } : {}),
    };
  };

  const scrollView = () => {
    if (!last) return { page: 1, maxScroll: 0 };
    const g = topGeometry(last, renderOptions());
    return { page: Math.max(1, g.visibleRows - 1), maxScroll: g.maxScroll };
  };

  function draw(): void {
    if (finished) return;
    const o = renderOptions();
    let frame: string;
    if (last) {
      // Rows may have shrunk or the window grown since the key press: keep scroll within the table.
      const g = topGeometry(last, o);
      if (g.scroll !== ui.scroll) ui = { ...ui, scroll: g.scroll };
      frame = renderTop(last, { ...o, scroll: g.scroll });
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
      const snap = await deps.next({ ...ui });
      if (finished) return;
      last = snap;
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
export function realClock(): LiveClock {
  return {
    now: () => Date.now(),
    setInterval: (cb, ms) => setInterval(cb, ms),
    clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  };
}

/** Minimal stream shapes, so the adapter can be tested with plain EventEmitters. */
export interface InputLike {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  on(event: 'data', cb: (buf: Buffer) => void): unknown;
  off(event: 'data', cb: (buf: Buffer) => void): unknown;
  resume(): unknown;
  pause(): unknown;
}
export interface OutputLike {
  columns?: number;
  rows?: number;
  write(s: string): unknown;
  on(event: 'resize', cb: () => void): unknown;
  off(event: 'resize', cb: () => void): unknown;
}

/** A LiveTerminal over process.stdin/stdout. Reading stdin is paused again on unsubscribe, or node would not exit. */
export function nodeTerminal(stdin: InputLike, stdout: OutputLike): LiveTerminal {
  return {
    write: (s) => void stdout.write(s),
    columns: () => stdout.columns || 80,
    rows: () => stdout.rows || 24,
    onResize(cb) {
      stdout.on('resize', cb);
      return () => void stdout.off('resize', cb);
    },
    setRawMode: stdin.isTTY && stdin.setRawMode ? (on) => void stdin.setRawMode!(on) : undefined,
    onData(cb) {
      stdin.on('data', cb);
      stdin.resume();
      return () => {
        stdin.off('data', cb);
        stdin.pause();
      };
    },
  };
}

export type { UiState };
