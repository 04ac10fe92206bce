// The one place that runs cleanup (undo system changes, restore the terminal) exactly once, on
// every exit path: normal end, SIGINT/SIGTERM/SIGHUP/SIGQUIT, a closed output (EPIPE),
// an uncaught error, and process 'exit'. A closed output ends quietly with status 141 (128 +
// SIGPIPE), as a C tool killed by SIGPIPE under `| head` does.

export type Cleanup = () => Promise<void> | void;
export type SyncCleanup = () => void;

/** The part of `process` the lifecycle uses; tests hand in a fake. */
export interface ProcessLike {
  on(event: string, listener: (...args: any[]) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
  exit(code?: number): void;
  /** Output streams whose EPIPE means "the reader went away" (process.stdout/stderr). */
  stdout?: { on(event: string, l: (...args: any[]) => void): unknown; removeListener(event: string, l: (...args: any[]) => void): unknown };
  stderr?: { on(event: string, l: (...args: any[]) => void): unknown; removeListener(event: string, l: (...args: any[]) => void): unknown };
}

// SIGPIPE is not here on purpose: Node ignores it, and must — it also comes from a scraper that
// hung up on `serve` or a child whose stdin closed. A closed output shows up as EPIPE on that
// output (onClosedOutput), which ends ctacct quietly with 141.
export const SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 } as const;
/** Exit status after a closed output (EPIPE). */
export const EXIT_PIPE = 141;
export type HandledSignal = keyof typeof SIGNALS;

export interface LifecycleOptions {
  /** One-line messages (uncaught errors, failed undo). */
  writeErr(line: string): void;
  /** After a signal, how long async cleanup may take before the sync path finishes it. */
  graceMs?: number;
  setTimer?(fn: () => void, ms: number): { unref?(): void };
}

interface Entry {
  fn: Cleanup;
  syncFn: SyncCleanup;
  state: 'pending' | 'running' | 'done';
}

export function isEpipe(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
}

function oneLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0] ?? m;
}

export class Lifecycle {
  private readonly entries: Entry[] = [];
  private installed = false;
  private exiting = false;
  private readonly listeners: [string, (...args: any[]) => void][] = [];
  private readonly streamListeners: [NonNullable<ProcessLike['stdout']>, (...args: any[]) => void][] = [];
  /** Set once the output is closed: nothing more is written to it. */
  outputClosed = false;

  constructor(
    private readonly proc: ProcessLike,
    private readonly opts: LifecycleOptions,
  ) {}

  /** Registers cleanup; returns a function that unregisters it without running it. Runs last-registered first. */
  onShutdown(fn: Cleanup, syncFn: SyncCleanup): () => void {
    const e: Entry = { fn, syncFn, state: 'pending' };
    this.entries.push(e);
    return () => {
      const i = this.entries.indexOf(e);
      if (i >= 0) this.entries.splice(i, 1);
    };
  }

  /** Runs every pending cleanup (async, newest first); each runs once whatever path calls it. */
  async shutdown(): Promise<void> {
    const errors: unknown[] = [];
    for (const e of [...this.entries].reverse()) {
      if (e.state !== 'pending') continue;
      e.state = 'running';
      try {
        await e.fn();
      } catch (err) {
        errors.push(err);
      }
      e.state = 'done';
    }
    if (errors.length) throw errors[0];
  }

  /** Synchronous path: finishes every cleanup not done yet (also ones whose async run was cut short). */
  shutdownSync(): void {
    for (const e of [...this.entries].reverse()) {
      if (e.state === 'done') continue;
      e.state = 'done';
      try {
        e.syncFn();
      } catch (err) {
        this.opts.writeErr(`ctacct: ${oneLine(err)}`);
      }
    }
  }

  /** Hooks signals, uncaught errors and 'exit'. Idempotent. */
  install(): void {
    if (this.installed) return;
    this.installed = true;
    for (const sig of Object.keys(SIGNALS) as HandledSignal[]) this.listen(sig, () => this.onSignal(sig));
    this.listen('uncaughtException', (err: unknown) => (isEpipe(err) ? this.onClosedOutput() : this.onFatal(err)));
    this.listen('unhandledRejection', (err: unknown) => (isEpipe(err) ? this.onClosedOutput() : this.onFatal(err)));
    this.guardOutput();
    this.listen('exit', () => this.shutdownSync());
  }

  /**
   * Only the closed-output path (EPIPE on stdout/stderr → quiet cleanup, exit 141), without taking
   * over signals: commands that handle their own Ctrl-C keep doing so. Idempotent.
   */
  guardOutput(): void {
    if (this.streamListeners.length) return;
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      if (!stream) continue;
      const fn = (err: unknown) => (isEpipe(err) ? this.onClosedOutput() : this.onFatal(err));
      stream.on('error', fn);
      this.streamListeners.push([stream, fn]);
    }
  }

  uninstall(): void {
    for (const [stream, fn] of this.streamListeners.splice(0)) stream.removeListener('error', fn);
    for (const [ev, fn] of this.listeners.splice(0)) this.proc.removeListener(ev, fn);
    this.installed = false;
  }

  private listen(ev: string, fn: (...args: any[]) => void): void {
    this.listeners.push([ev, fn]);
    this.proc.on(ev, fn);
  }

  /** The reader of our output went away (`| head`): undo quietly and exit 141. */
  onClosedOutput(): void {
    this.outputClosed = true;
    this.ending(EXIT_PIPE, true);
  }

  private onSignal(sig: HandledSignal): void {
    this.ending(128 + SIGNALS[sig], false);
  }

  private ending(code: number, quiet: boolean): void {
    // More EPIPEs follow the first (every later write fails too): the shutdown under way is enough.
    if (this.exiting && quiet) return;
    if (this.exiting) {
      // A second signal while cleaning up: finish synchronously and go.
      this.shutdownSync();
      this.proc.exit(code);
      return;
    }
    this.exiting = true;
    const timer = (this.opts.setTimer ?? setTimeout)(() => {
      this.shutdownSync();
      this.proc.exit(code);
    }, this.opts.graceMs ?? 5000);
    timer.unref?.();
    this.shutdown().then(
      () => this.proc.exit(code),
      (err) => {
        if (!quiet || !isEpipe(err)) this.opts.writeErr(`ctacct: ${oneLine(err)}`);
        this.proc.exit(code);
      },
    );
  }

  private onFatal(err: unknown): void {
    // State may be inconsistent after an uncaught error: take the synchronous path.
    this.opts.writeErr(`ctacct: ${oneLine(err)} (internal error)`);
    this.exiting = true;
    this.shutdownSync();
    this.proc.exit(1);
  }
}

let shared: Lifecycle | null = null;

function safeStderr(line: string): void {
  try {
    process.stderr.write(`${line}\n`);
  } catch {
    /* closed */
  }
}

/** The process-wide lifecycle (created on first use; bound to the real `process`). */
export function lifecycle(): Lifecycle {
  return (shared ??= new Lifecycle(process, { writeErr: (l) => safeStderr(l) }));
}

/** Registers cleanup with the process-wide lifecycle; returns unregister. */
export function onShutdown(fn: Cleanup, syncFn: SyncCleanup): () => void {
  return lifecycle().onShutdown(fn, syncFn);
}

/** Guards stdout/stderr against a closed reader (main.ts, for every command). */
export function guardOutput(): Lifecycle {
  const lc = lifecycle();
  lc.guardOutput();
  return lc;
}

/** Installs the process-wide handlers, writing messages to `system.stderr`. */
export function installSignalHandlers(system?: { stderr: { write(s: string): void } }): Lifecycle {
  shared ??= new Lifecycle(process, {
    writeErr: (l) => {
      try {
        if (system) system.stderr.write(`${l}\n`);
        else safeStderr(l);
      } catch {
        /* stderr closed too */
      }
    },
  });
  shared.install();
  return shared;
}
