// Line sinks for `ctacct record`: stdout, or a file rotated by size (FILE, FILE.1 newest … FILE.N).
// Writes are synchronous so the lifecycle's sync exit path can flush what is buffered; a line is
// never split across files.
import * as nodeFs from 'node:fs';
import { dirname } from 'node:path';

export interface LineSink {
  /** Buffers one line (ending in "\n"); flushes by itself past the buffer limit. */
  write(line: string): void;
  /** Writes everything buffered. Synchronous. */
  flush(): void;
  close(): void;
}

/** The parts of node:fs the sinks use; tests hand in a fake to provoke errors. */
export type Fs = Pick<typeof nodeFs, 'openSync' | 'writeSync' | 'closeSync' | 'renameSync' | 'unlinkSync' | 'fstatSync' | 'existsSync'> &
  Partial<Pick<typeof nodeFs, 'statSync'>>;

/** A target the flow log refuses to write, with why (code ERR_UNSAFE_OUTPUT). */
export class UnsafeOutputError extends Error {
  readonly code = 'ERR_UNSAFE_OUTPUT';
}

/**
 * Opens the log for appending the way a root daemon must: never through a symlink (O_NOFOLLOW),
 * only a regular file with one link owned by us, not in a directory others may write without the
 * sticky bit (they could swap the file between rotations); new files are 0600.
 */
export function openLogFile(fs: Fs, path: string, euid: number = typeof process.geteuid === 'function' ? process.geteuid() : 0): number {
  const dir = dirname(path);
  const d = fs.statSync?.(dir);
  if (d && (d.mode & 0o002) !== 0 && (d.mode & 0o1000) === 0)
    throw new UnsafeOutputError(`its directory ${dir} is writable by every user and has no sticky bit`);
  const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = nodeFs.constants;
  const O_CLOEXEC = (nodeFs.constants as Record<string, number>).O_CLOEXEC ?? 0o2000000;
  let fd: number;
  try {
    fd = fs.openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | (O_CLOEXEC ?? 0), 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new UnsafeOutputError('it is a symbolic link');
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new UnsafeOutputError('it is not a regular file');
    if (st.uid !== euid) throw new UnsafeOutputError(`it is owned by another user (uid ${st.uid})`);
    if (st.nlink > 1) throw new UnsafeOutputError('it has other hard links');
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}

const BUFFER_LIMIT = 64 * 1024;

/** Sleeps the thread (no event loop needed): used only while a full pipe drains. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Writes all of `buf`, through partial writes and EAGAIN on non-blocking pipes (bounded wait). */
export function writeAllSync(fs: Fs, fd: number, buf: Buffer, maxWaitMs = 10_000): void {
  let off = 0;
  let waited = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || waited >= maxWaitMs) throw e;
      pause(5);
      waited += 5;
    }
  }
}

/** Size units as people write them: 500k, 100M, 1G, 1GiB, 2048 (bytes). */
export function parseSize(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(i?b)?$/i.exec(String(s).trim());
  if (!m) return null;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Math.floor(Number(m[1]) * mult);
  return n > 0 ? n : null;
}

abstract class Buffered implements LineSink {
  private pending: string[] = [];
  private pendingBytes = 0;

  write(line: string): void {
    this.pending.push(line);
    this.pendingBytes += Buffer.byteLength(line);
    if (this.pendingBytes >= BUFFER_LIMIT) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.emit(lines);
  }

  protected abstract emit(lines: string[]): void;
  abstract close(): void;
}

export class FdSink extends Buffered {
  constructor(
    private readonly fd: number,
    private readonly fs: Fs = nodeFs,
  ) {
    super();
  }

  protected emit(lines: string[]): void {
    writeAllSync(this.fs, this.fd, Buffer.from(lines.join('')));
  }

  close(): void {
    this.flush();
  }
}

export interface RotateOptions {
  /** Rotate before a line would take the file past this size (bytes). */
  maxBytes: number;
  /** Rotated files kept besides the current one (FILE.1 … FILE.keep); older ones are deleted. */
  keep: number;
}

export class RotatingFile extends Buffered {
  private fd: number;
  private size: number;
  /** Rotations done (for health and tests). */
  rotations = 0;

  /** Opens (creates, appends to) `path` now: an unwritable path fails here with its errno code. */
  constructor(
    readonly path: string,
    private readonly opts: RotateOptions,
    private readonly fs: Fs = nodeFs,
  ) {
    super();
    this.fd = openLogFile(fs, path);
    this.size = fs.fstatSync(this.fd).size;
  }

  protected emit(lines: string[]): void {
    let chunk: string[] = [];
    let chunkBytes = 0;
    const out = () => {
      if (chunk.length === 0) return;
      writeAllSync(this.fs, this.fd, Buffer.from(chunk.join('')));
      this.size += chunkBytes;
      chunk = [];
      chunkBytes = 0;
    };
    for (const l of lines) {
      const n = Buffer.byteLength(l);
      // A line that does not fit starts a new file (a line longer than maxBytes gets one alone).
      if (this.size + chunkBytes + n > this.opts.maxBytes && this.size + chunkBytes > 0) {
        out();
        this.rotate();
      }
      chunk.push(l);
      chunkBytes += n;
    }
    out();
  }

  private rotate(): void {
    this.fs.closeSync(this.fd);
    const name = (i: number) => (i === 0 ? this.path : `${this.path}.${i}`);
    if (this.opts.keep === 0) {
      this.fs.unlinkSync(this.path);
    } else {
      if (this.fs.existsSync(name(this.opts.keep))) this.fs.unlinkSync(name(this.opts.keep));
      for (let i = this.opts.keep - 1; i >= 0; i--) if (this.fs.existsSync(name(i))) this.fs.renameSync(name(i), name(i + 1));
    }
    this.fd = openLogFile(this.fs, this.path);
    this.size = 0;
    this.rotations++;
  }

  close(): void {
    this.flush();
    this.fs.closeSync(this.fd);
  }
}
