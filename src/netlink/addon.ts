// The typed surface of the native addon and its single, lazy, injectable loader.
import { closeSync, constants as fsConstants, fstatSync, openSync, realpathSync, statSync } from 'node:fs';
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
  /** Look again every millisecond at each inbound TCP connection whose NEW found only its listener,
   *  until accept() has made its socket (default true). Not needed with the close tracker. */
  watchAccepts?: boolean;
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
  /** Ends of NEW records not looked up because their address is not local (0 from older builds). */
  lookupsSkipped?: number;
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
  /** Listeners whose accepted sockets belong to one process: [inode, pid, inode, pid, …]. */
  setSoleListeners(handle: Handle, pairs: number[]): void;
  /** This namespace's addresses, 17 bytes each (localAddresses()'s format): ends elsewhere are not looked up. */
  setLocalAddresses(handle: Handle, addrs: Buffer): void;
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
    /** A sock_diag fd from netnsDiagOpen: look up in that namespace instead of this one. */
    nsFd?: number,
  ): { inode: number; uid: number; state: number } | null;
  /** A sock_diag socket created inside the network namespace at `path` (nsfs file); an fd. */
  netnsDiagOpen(path: string): number;
  /** localAddresses() of the network namespace at `path`. */
  netnsAddresses(path: string): Buffer;
  /** Moves the calling thread (and threads it starts later) into the namespace at `path`. */
  netnsEnter(path: string): void;
  /** Every address of this network namespace (RTM_GETADDR), 17 bytes each: family, 16 address bytes. */
  localAddresses(): Buffer;
  /** A NETLINK_NETFILTER socket for nf_tables requests; keep it open as long as an owned table must live. */
  nftOpen(): Handle;
  /** Creates table inet `table` (one output chain, one `ct state` load, no verdict change); owner: NFT_TABLE_F_OWNER. */
  nftEngage(handle: Handle, table: string, owner: boolean): void;
  /** Deletes table inet `table`; false when it did not exist. */
  nftDelete(handle: Handle, table: string): boolean;
  nftExists(handle: Handle, table: string): boolean;
  /** Closes the socket: the kernel deletes the tables it owns. */
  nftClose(handle: Handle): void;
  /** IPCTNL_MSG_CT_DELETE of one entry by original tuple (and id); false when already gone. */
  ctDelete(handle: Handle, key: CtEntryKey): boolean;
  /** Opens `path` (O_NOFOLLOW, 0600) and takes an exclusive flock (waits up to 10 s); returns the fd. */
  lockFile(path: string): number;
  /** sock_diag dump of one family (AF_INET 2 / AF_INET6 10) and protocol: 56-byte entries (native/ct_sock.h struct ct_diag_sock). */
  dumpSockets(family: number, proto: number, states: number): Buffer;
  /** `flows --json` objects of records from..to-1 written at out[outOff..] (native/binding_json.c):
   *  [next, outEnd, status], status 0 done, 1 record `next` needs the JavaScript writer, 2 out full.
   *  ageText/ageOff: each record's age_s text (ageOff empty: records with one need JavaScript). */
  formatFlows(
    records: Uint8Array,
    from: number,
    to: number,
    dirs: Uint8Array,
    skip: Uint8Array,
    endSide: Int8Array,
    endOwner: Uint32Array,
    text: Uint8Array,
    textOff: Uint32Array,
    out: Uint8Array,
    outOff: number,
    first: boolean,
    ageText: Uint8Array,
    ageOff: Uint32Array,
  ): [number, number, number];
  /** The same dump counted by state number (index: TCP/UDP state; 32 entries), no socket kept. */
  countSockets(family: number, proto: number, states: number): Uint32Array;
  /** Loads the close tracker (native/ct_bpf.h) on tracepoint `tracepointId` whose record has
   *  these field offsets; an LRU map of maxEntries 4-tuples. Throws a coded error (EPERM without
   *  CAP_BPF/CAP_PERFMON, a verifier refusal with its `log`). */
  closerOpen(tracepointId: number, offsets: TracepointOffsets, maxEntries: number): Handle;
  /** The process that last closed the TCP socket local:lport <-> remote:rport (16-byte
   *  address buffers, IPv4 in the first 4 bytes when family is 4), or null. */
  closerLookup(handle: Handle, family: 4 | 6, local: Buffer, lport: number, remote: Buffer, rport: number): CloserHit | null;
  /** Detaches the program and frees its map. */
  closerClose(handle: Handle): void;
  /** The owner search (native/ct_owners.h): fd tables of `pids` in that order, or (null) of every
   *  pid under procRoot newest first in network namespace `netns` (inode; 0: any), until every
   *  inode of `want` was met (empty: read all) or after `budgetMs` (Infinity: no limit). */
  scanOwners(procRoot: string, pids: Uint32Array | null, want: Uint32Array, budgetMs: number, netns: number): NativeOwnerScan;
  /** Parent (field 4 of /proc/PID/stat, null when unreadable) and children of every thread. */
  processFamily(procRoot: string, pid: number): { ppid: number | null; children: number[] };
}

export interface NativeOwnerScan {
  /** [inode, pid, inode, pid, …]: every socket link met, in the order read. */
  pairs: Uint32Array;
  /** Pids whose fd table was read in full, in the order read. */
  scanned: Uint32Array;
  /** Every pid of the order was visited. */
  exhaustive: boolean;
  /** Links read; links or tables skipped because gone (vanished), not ours (denied) or another
   *  error (failed, the first one's errno). */
  fds: number;
  vanished: number;
  denied: number;
  failed: number;
  errno: number;
}

export interface TracepointOffsets {
  newstate: number;
  protocol: number;
  sport: number;
  dport: number;
  saddr_v6: number;
  daddr_v6: number;
  /** In struct task_struct, from BTF (absent: the hit's startNs is 0). */
  group_leader?: number;
  start_boottime?: number;
}

export interface CloserHit {
  /** Thread group id (the pid) of the process that closed the socket, as seen from the initial pid namespace. */
  pid: number;
  uid: number;
  /** CLOCK_BOOTTIME of the close, ns. */
  bootNs: number;
  /** The process's start (its thread group leader's start_boottime, ns; 0: unknown). /proc/PID/stat's
   *  starttime is this in clock ticks. */
  startNs: number;
  /** How long ago the close was (CLOCK_BOOTTIME now − bootNs). */
  agoNs: number;
  comm: string;
}

export interface CtEntryKey {
  family: number;
  proto: number;
  src: Buffer;
  dst: Buffer;
  sport: number;
  dport: number;
  id?: number;
  zone?: number;
}

let injected: Addon | null = null;
let loaded: Addon | null = null;

/** Hands the loader a fake (tests) or clears it (null). */
export function setAddon(fake: Addon | null): void {
  injected = fake;
  unloadable = false;
}

export class AddonLoadError extends Error {
  readonly code = 'ERR_CTACCT_ADDON';
  constructor(readonly tried: { path: string; error: string }[]) {
    super(
      `cannot load the native addon for ${process.platform}-${process.arch} (tried ` +
        tried.map((t) => `${t.path}: ${t.error}`).join('; ') +
        ')',
    );
  }
}

/** The package root: src/netlink or dist/netlink → two levels up. */
function packageRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** glibc or musl: a prebuild linked against glibc does not load on musl (Alpine). */
export function libc(): 'glibc' | 'musl' {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** Where `npm run prebuild` puts the binary for this platform, and where the package ships it. */
export function prebuildPath(root = packageRoot()): string {
  return join(root, 'prebuilds', `${process.platform}-${process.arch}`, `ctacct.${libc()}.node`);
}

/**
 * In load order: the CTACCT_ADDON override, a source build (native/build, made by the install
 * script when no prebuild fits, or by a developer), then the prebuilt binary shipped in the package.
 */
export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  return [...candidatePaths(env)];
}

/** The same, one at a time: the prebuild's name asks for the libc (a process report, ~5 ms), only
 *  needed when no source build loaded. */
function* candidatePaths(env: NodeJS.ProcessEnv): Generator<string> {
  const root = packageRoot();
  if (env.CTACCT_ADDON) yield resolve(env.CTACCT_ADDON);
  yield join(root, 'native', 'build', 'Release', 'ctacct.node');
  yield join(root, 'native', 'build', 'Debug', 'ctacct.node');
  yield prebuildPath(root);
}

export class UnsafeAddonError extends Error {
  readonly code = 'ERR_CTACCT_ADDON_UNSAFE';
}

/**
 * Refuses a CTACCT_ADDON that someone other than root could have written, when ctacct runs as root:
 * loading it would run their code as root. The path must have no symlink in it, the file and its
 * directory must be owned by root and not writable by group or others. Returns the opened file's
 * descriptor: the checks are made on it (fstat), and the code is loaded through it, so the file
 * cannot be swapped between the check and the load.
 */
export function openTrustedAddon(path: string, fs: TrustFs = nodeFs, uid = process.geteuid?.() ?? -1): number | null {
  if (uid !== 0) return null;
  const real = fs.realpathSync(path);
  if (real !== path) throw new UnsafeAddonError(`refused as root: the path goes through a symlink (to ${real})`);
  const dir = fs.statSync(dirname(path));
  if (dir.uid !== 0 || (dir.mode & 0o022) !== 0) throw new UnsafeAddonError(`refused as root: its directory ${dirname(path)} is not owned by root or is group/world writable`);
  const fd = fs.openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new UnsafeAddonError('refused as root: not a regular file');
    if (st.uid !== 0 || (st.mode & 0o022) !== 0) throw new UnsafeAddonError('refused as root: the file is not owned by root or is group/world writable');
    return fd;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** The file system calls openTrustedAddon makes (tests pass fakes for ownership they cannot create). */
export interface TrustFs {
  realpathSync(p: string): string;
  statSync(p: string): { uid: number; mode: number };
  openSync(p: string, flags: number): number;
  fstatSync(fd: number): { uid: number; mode: number; isFile(): boolean };
  closeSync(fd: number): void;
}
const nodeFs: TrustFs = { realpathSync, statSync, openSync, fstatSync, closeSync };

function loadOverride(path: string): Addon {
  const fd = openTrustedAddon(path);
  if (fd === null) return createRequire(import.meta.url)(path) as Addon;
  try {
    // dlopen through the descriptor: the very file that was checked is the one loaded.
    const mod = { exports: {} as Addon };
    process.dlopen(mod, `/proc/self/fd/${fd}`);
    return mod.exports;
  } finally {
    closeSync(fd);
  }
}

let unloadable = false;

/** The addon, or null when it cannot be loaded (tried once; setAddon clears the memory of that):
 *  for callers that have a slower JavaScript way of their own. */
export function addonIfLoadable(): Addon | null {
  if (injected) return injected;
  if (loaded) return loaded;
  if (unloadable) return null;
  try {
    return getAddon();
  } catch {
    unloadable = true;
    return null;
  }
}

/** Loads the addon on first use; every path tried is listed if none loads. */
export function getAddon(): Addon {
  if (injected) return injected;
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const tried: { path: string; error: string }[] = [];
  const override = process.env.CTACCT_ADDON ? resolve(process.env.CTACCT_ADDON) : null;
  for (const path of candidatePaths(process.env)) {
    try {
      loaded = path === override ? loadOverride(path) : (require(path) as Addon);
      return loaded;
    } catch (e) {
      tried.push({ path, error: (e as Error).message.split('\n')[0] ?? String(e) });
      // An explicit override that fails or is refused is an error, never a silent fallback.
      if (path === override) throw new AddonLoadError(tried);
    }
  }
  throw new AddonLoadError(tried);
}
