// ConntrackSource: the kernel's conntrack table and event stream as typed flow records.
import { getAddon, type Addon, type DumpFilterNative, type EventOptionsNative, type EventStats, type Handle, type NativeError } from './addon.js';
import { decodeRecords, type FlowRecord } from './record.js';
import { addrBytes } from '../core/addr.js';

export interface DumpFilter {
  family?: 4 | 6;
  /** IP protocol number; the kernel filters on it only together with a family. */
  proto?: number;
  /** Orig-tuple destination port (kernel-side; needs proto and family). */
  dport?: number;
  sport?: number;
  mark?: number;
  markMask?: number;
  zone?: number;
  status?: number;
  statusMask?: number;
}

export interface DumpStats {
  records: number;
  malformed: number;
  messages: number;
  bytesRead: number;
}

export type EventOptions = EventOptionsNative;

export interface EventHandlers {
  /** A batch of NEW / UPDATE / DESTROY records, in kernel order. */
  records(batch: FlowRecord[]): void;
  /** The kernel dropped events (ENOBUFS): the caller must resync with a dump. */
  overrun(err: NativeError): void;
  /** The subscription failed and is closed. */
  error(err: NativeError): void;
}

export interface Subscription {
  close(): void;
  stats(): EventStats;
  /** Processes the addon searches first for the owner of a new socket. */
  setCandidates(pids: number[]): void;
  /** Listeners whose accepted sockets belong to one process ([inode, pid, …], see
   *  OwnerResolver.soleListeners): the addon gives those sockets that owner without a search. */
  setSoleListeners?(pairs: number[]): void;
  /** The addresses the accounting calls local (loopback aside): the addon looks up only the ends
   *  of new flows at one of them, since a socket can only be there. */
  setLocalAddresses?(addrs: string[]): void;
}

/**
 * Addresses as localAddresses() gives them (17 bytes each: 4 or 6, then 16 bytes, an IPv4 address
 * in the first 4); null when one is not an address, so that nothing is skipped on a doubt.
 */
export function encodeAddresses(addrs: string[]): Buffer | null {
  const out = Buffer.alloc(addrs.length * 17);
  for (let i = 0; i < addrs.length; i++) {
    const a = addrBytes(addrs[i]!);
    if (!a) return null;
    out[i * 17] = a.family;
    out.set(a.bytes, i * 17 + 1);
  }
  return out;
}

export interface ConntrackSource {
  /** Streams the table in batches; resolves when the kernel says done. */
  dump(filter: DumpFilter, onBatch: (batch: FlowRecord[]) => void): Promise<DumpStats>;
  /** The same, handing over the addon's record buffers undecoded (see record.ts for the layout). */
  dumpRaw(filter: DumpFilter, onRaw: (records: Buffer, count: number) => void): Promise<DumpStats>;
  subscribe(opts: EventOptions, handlers: EventHandlers): Subscription;
}

const AF = { 4: 2, 6: 10 } as const;

function toNativeFilter(f: DumpFilter): DumpFilterNative {
  const n: DumpFilterNative = {};
  if (f.family) n.family = AF[f.family];
  for (const k of ['proto', 'dport', 'sport', 'mark', 'markMask', 'zone', 'status', 'statusMask'] as const) {
    const v = f[k];
    if (v !== undefined) n[k] = v;
  }
  return n;
}

export class KernelConntrackSource implements ConntrackSource {
  constructor(private readonly addon: () => Addon = getAddon) {}

  dump(filter: DumpFilter, onBatch: (batch: FlowRecord[]) => void): Promise<DumpStats> {
    return this.dumpRaw(filter, (buf, count) => onBatch(decodeRecords(buf, count)));
  }

  dumpRaw(filter: DumpFilter, onRaw: (records: Buffer, count: number) => void): Promise<DumpStats> {
    const addon = this.addon();
    return new Promise((resolvePromise, reject) => {
      let handle: Handle | null = null;
      let settled = false;
      const finish = (err: Error | null) => {
        if (settled) return;
        settled = true;
        const s = handle ? addon.stats(handle) : null;
        if (err) reject(err);
        else
          resolvePromise({
            records: s?.records ?? 0,
            malformed: s?.malformed ?? 0,
            messages: s?.messages ?? 0,
            bytesRead: s?.bytesRead ?? 0,
          });
      };
      handle = addon.dump(toNativeFilter(filter), (err, buf, count, done) => {
        if (settled) return;
        if (buf && count > 0) {
          try {
            onRaw(buf, count);
          } catch (e) {
            if (handle) addon.close(handle);
            finish(e as Error);
            return;
          }
        }
        if (err) finish(err);
        else if (done) finish(null);
      });
    });
  }

  subscribe(opts: EventOptions, handlers: EventHandlers): Subscription {
    const addon = this.addon();
    let closed = false;
    const handle = addon.openEvents(
      {
        new: opts.new ?? true,
        update: opts.update ?? false,
        destroy: opts.destroy ?? true,
        ...(opts.rcvbuf !== undefined ? { rcvbuf: opts.rcvbuf } : {}),
        ...(opts.rcvbufMax !== undefined ? { rcvbufMax: opts.rcvbufMax } : {}),
        lookupSockets: opts.lookupSockets ?? false,
        ...(opts.watchAccepts === false ? { watchAccepts: false } : {}),
        ...(opts.procRoot ? { procRoot: opts.procRoot } : {}),
        ...(opts.queueMax !== undefined ? { queueMax: opts.queueMax } : {}),
      },
      (err, buf, count, fatal) => {
        if (closed) return;
        if (buf && count > 0) handlers.records(decodeRecords(buf, count));
        if (err && err.code === 'ENOBUFS' && !fatal) handlers.overrun(err);
        else if (err) {
          closed = true;
          addon.eventsClose(handle);
          handlers.error(err);
        }
      },
    );
    return {
      close() {
        if (closed) return;
        closed = true;
        addon.eventsClose(handle);
      },
      stats: () => addon.eventsStats(handle),
      setCandidates: (pids) => {
        if (!closed) addon.setCandidates(handle, pids);
      },
      setSoleListeners: (pairs) => {
        // An addon built before this call existed simply keeps searching.
        if (!closed && typeof addon.setSoleListeners === 'function') addon.setSoleListeners(handle, pairs);
      },
      setLocalAddresses: (addrs) => {
        const buf = encodeAddresses(addrs);
        if (!closed && buf && typeof addon.setLocalAddresses === 'function') addon.setLocalAddresses(handle, buf);
      },
    };
  }
}

/** Collects a whole dump into one array (small tables, tests and `flows`). */
export async function dumpAll(source: ConntrackSource, filter: DumpFilter = {}): Promise<{ flows: FlowRecord[]; stats: DumpStats }> {
  const flows: FlowRecord[] = [];
  const stats = await source.dump(filter, (batch) => {
    for (const f of batch) flows.push(f);
  });
  return { flows, stats };
}
