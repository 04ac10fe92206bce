// One value bundling every side effect the commands use, so tests can hand in fakes.
import { KernelConntrackSource, type ConntrackSource } from './netlink/source.js';
import type { LiveClock, LiveTerminal } from './views/live.js';
import { nodeTerminal, realClock } from './views/terminal.js';

export interface Terminal {
  write(s: string): void;
  /** Bytes as they are (UTF-8 text), for output built as bytes; absent: write the text. Returns
   *  true when they are written out already and `b` may be reused; else `written`, if given, is
   *  called once they are (a slow reader of a pipe), and `b` may be reused from then on. */
  writeBytes?(b: Uint8Array, written?: () => void): boolean;
  /** Resolves once what was written has gone out, at once when nothing waits (a slow reader of a
   *  pipe: wait instead of queueing the whole output in memory). */
  drain?(): Promise<void>;
  readonly isTTY: boolean;
  /** Terminal width/height; 80x24 when unknown (not a TTY). */
  columns(): number;
  rows(): number;
}

export interface System {
  conntrack(): ConntrackSource;
  /** Root of the proc filesystem (tests point it at a fixture tree). */
  procRoot: string;
  stdout: Terminal;
  stderr: Terminal;
  stdin: NodeJS.ReadStream | null;
  env: Record<string, string | undefined>;
  /** Wall clock in ms. */
  now(): number;
  /** Monotonic clock in ms. */
  monotonic(): number;
  isRoot: boolean;
  pid: number;
  /** Timers for refresh loops (tests pass a manual clock). */
  clock(): LiveClock;
  /** The interactive terminal for the live view, or null when stdin/stdout are not both TTYs. */
  liveTerminal(): LiveTerminal | null;
}

function terminalOf(stream: NodeJS.WriteStream): Terminal {
  return {
    write: (s) => void stream.write(s),
    // Nothing left queued after the write: the bytes went out (stdout is synchronous on Linux
    // for files, pipes and terminals) and the stream keeps no reference to them.
    writeBytes: (b, written) => {
      stream.write(b, written && (() => written()));
      return stream.writableLength === 0;
    },
    drain: () =>
      stream.writableNeedDrain
        ? new Promise<void>((res) => {
            const done = () => {
              stream.off('drain', done).off('close', done).off('error', done);
              res();
            };
            stream.on('drain', done).on('close', done).on('error', done);
          })
        : Promise.resolve(),
    isTTY: Boolean(stream.isTTY),
    columns: () => (stream.isTTY && stream.columns ? stream.columns : 80),
    rows: () => (stream.isTTY && stream.rows ? stream.rows : 24),
  };
}

export function realSystem(): System {
  let source: ConntrackSource | null = null;
  return {
    conntrack: () => (source ??= new KernelConntrackSource()),
    procRoot: '/proc',
    stdout: terminalOf(process.stdout),
    stderr: terminalOf(process.stderr),
    // A getter: touching process.stdin opens a stream for it, which one-shot commands never read.
    get stdin() {
      return process.stdin;
    },
    env: process.env,
    now: () => Date.now(),
    monotonic: () => performance.now(),
    isRoot: typeof process.getuid === 'function' && process.getuid() === 0,
    pid: process.pid,
    clock: realClock,
    liveTerminal: () => (process.stdout.isTTY && process.stdin.isTTY ? nodeTerminal(process.stdin, process.stdout) : null),
  };
}
