// The typed surface of the native addon and its single, lazy, injectable loader.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DumpFilterNative {
  family?: number;
  mark?: number;
  markMask?: number;
  status?: number;
  statusMask?: number;
  zone?: number;
  proto?: number;
  dport?: number;
  sport?: number;
}

export interface EventOptionsNative {
  new?: boolean;
  update?: boolean;
  destroy?: boolean;
  /** Receive buffer in bytes (SO_RCVBUFFORCE). */
  rcvbuf?: number;
  /** Upper bound the buffer may grow to after an overrun. */
  rcvbufMax?: number;
  /** Look up the sockets of both ends with sock_diag, and their owners among the candidate
   *  processes, on the reader thread as each NEW event is read. */
  lookupSockets?: boolean;
  /** Root of the proc filesystem for the owner search (default /proc). */
  procRoot?: string;
  /** Bytes of batches handed to JavaScript and not yet taken before the reader stops reading
   *  (default 4 MiB): a stalled event loop then makes the kernel's buffer overflow (an overrun,
   *  resynced by a dump) instead of growing this process. */
  queueMax?: number;
}

export type BatchCallback = (err: NativeError | null, records: Buffer | null, count: number, done: boolean) => void;

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export interface ReaderStats {
  messages: number;
  records: number;
  malformed: number;
  ignored: number;
  bytesRead: number;
}

export interface EventStats extends ReaderStats {
  overruns: number;
  rcvbuf: number;
  lookups: number;
  lookupErrors: number;
  /** Owners found by the reader thread, processes and fds it read to find them. */
  ownerHits: number;
  ownerScans: number;
  ownerFds: number;
  /** Times reading paused because JavaScript was queueMax behind; bytes waiting now and at most. */
  pauses: number;
  queuedBytes: number;
  queuedPeakBytes: number;
}

export interface ParseResult {
  records: Buffer;
  count: number;
  malformed: number;
  ignored: number;
  consumed: number;
  error: number;
  done: boolean;
}

export type Handle = object & { readonly __brand?: 'ctacct-handle' };

export interface Addon {
  recordSize: number;
  /** Starts the event reader thread; cb(err, records, count, fatal): ENOBUFS with fatal=false is an overrun. */
  openEvents(opts: EventOptionsNative, cb: BatchCallback): Handle;
  eventsClose(handle: Handle): void;
  eventsStats(handle: Handle): EventStats;
  setCandidates(handle: Handle, pids: number[]): void;
  /** Starts a dump polled on the event loop; cb(err, records, count, done). */
  dump(filter: DumpFilterNative, cb: BatchCallback): Handle;
  close(handle: Handle): void;
  stats(handle: Handle): ReaderStats;
  parse(buf: Buffer, isEvent: boolean): ParseResult;
  lookupSocket(
    family: number,
    proto: number,
    local: Buffer,
    lport: number,
    remote: Buffer,
    rport: number,
  ): { inode: number; uid: number; state: number } | null;
  /** Every address of this network namespace (RTM_GETADDR), 17 bytes each: family, 16 address bytes. */
  localAddresses(): Buffer;
  /** sock_diag dump of one family (AF_INET 2 / AF_INET6 10) and protocol: 56-byte entries (native/ct_sock.h struct ct_diag_sock). */
  dumpSockets(family: number, proto: number, states: number): Buffer;
}

let injected: Addon | null = null;
let loaded: Addon | null = null;

/** Hands the loader a fake (tests) or clears it (null). */
export function setAddon(fake: Addon | null): void {
  injected = fake;
}

export class AddonLoadError extends Error {
  readonly code = 'ERR_CTACCT_ADDON';
  constructor(readonly tried: { path: string; error: string }[]) {
    super(
      `cannot load the native addon (run \`npm run build:native\`); tried:\n` +
        tried.map((t) => `  ${t.path}: ${t.error}`).join('\n'),
    );
  }
}

export function addonCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = resolve(here, '..', '..'); // src/netlink or dist/netlink → package root
  const list = [];
  if (process.env.CTACCT_ADDON) list.push(resolve(process.env.CTACCT_ADDON));
  list.push(join(root, 'native', 'build', 'Release', 'ctacct.node'));
  list.push(join(root, 'native', 'build', 'Debug', 'ctacct.node'));
  return list;
}

/** Loads the addon on first use; every path tried is listed if none loads. */
export function getAddon(): Addon {
  if (injected) return injected;
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const tried: { path: string; error: string }[] = [];
  for (const path of addonCandidates()) {
    try {
      loaded = require(path) as Addon;
      return loaded;
    } catch (e) {
      tried.push({ path, error: (e as Error).message.split('\n')[0] ?? String(e) });
    }
  }
  throw new AddonLoadError(tried);
}
