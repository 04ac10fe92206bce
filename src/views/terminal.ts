// The real terminal and clock behind the live view, apart from it so commands that only print
// (states, flows) do not load the live view's modules with the System.
import type { LiveClock, LiveTerminal } from './live.js';

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

