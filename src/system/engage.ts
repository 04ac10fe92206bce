// The I/O edge of engaging conntrack without any binary: the kernel-owned nf_tables table, the
// loopback probe that tells whether anything else makes conntrack track here, the removal of
// entries that exist only because ctacct engaged tracking, and the namespace lock.
import { createSocket, type Socket } from 'node:dgram';
import { closeSync, fstatSync, lstatSync } from 'node:fs';
import { getAddon, type Addon, type Handle } from '../netlink/addon.js';
import type { FlowRecord } from '../netlink/record.js';
import { dumpAll, type ConntrackSource } from '../netlink/source.js';
import { addrBytes } from '../core/addr.js';

/** One nf_tables netlink socket; tables created with `owner` live exactly as long as it is open. */
export interface NftSession {
  /** Throws a coded error (EOPNOTSUPP: no owner flag before Linux 5.12; EPERM; EEXIST). */
  engage(table: string, owner: boolean): void;
  /** false when the table did not exist. */
  remove(table: string): boolean;
  close(): void;
}

export function openNftSession(addon: Addon = getAddon()): NftSession {
  let h: Handle | null = addon.nftOpen();
  const live = (): Handle => {
    if (!h) throw Object.assign(new Error('nft session closed'), { code: 'EBADF' });
    return h;
  };
  return {
    engage: (table, owner) => addon.nftEngage(live(), table, owner),
    remove: (table) => addon.nftDelete(live(), table),
    close() {
      if (h) addon.nftClose(h);
      h = null;
    },
  };
}

function bound(family: 'udp4' | 'udp6', addr: string): Promise<Socket> {
  return new Promise((res, rej) => {
    const s = createSocket(family);
    s.once('error', rej);
    s.bind(0, addr, () => {
      s.removeListener('error', rej);
      res(s);
    });
  });
}

function keyOf(f: FlowRecord) {
  const src = addrBytes(f.orig.src);
  const dst = addrBytes(f.orig.dst);
  if (!src || !dst || f.orig.sport === null || f.orig.dport === null) return null;
  return {
    family: f.family === 4 ? 2 : 10,
    proto: f.proto,
    src: Buffer.from(src.bytes),
    dst: Buffer.from(dst.bytes),
    sport: f.orig.sport,
    dport: f.orig.dport,
    ...(f.ctId !== null ? { id: f.ctId } : {}),
    ...(f.zone ? { zone: f.zone } : {}),
  };
}

/**
 * Sends one UDP datagram over loopback (between two sockets of this process, so no ICMP) and
 * asks conntrack for it: an entry means conntrack tracks this family here. The probe's own entry
 * is deleted again. null: the family is not usable (no ::1) or conntrack cannot be read.
 */
async function probeFamily(source: ConntrackSource, addon: Addon, v: 4 | 6): Promise<boolean | null> {
  const addr = v === 4 ? '127.0.0.1' : '::1';
  let rx: Socket | null = null;
  let tx: Socket | null = null;
  try {
    rx = await bound(v === 4 ? 'udp4' : 'udp6', addr);
    tx = await bound(v === 4 ? 'udp4' : 'udp6', addr);
    const port = rx.address().port;
    const sport = tx.address().port;
    const got = new Promise<boolean>((res) => {
      const t = setTimeout(() => res(false), 1000);
      rx!.once('message', () => {
        clearTimeout(t);
        res(true);
      });
    });
    await new Promise<void>((res, rej) => tx!.send(Buffer.from('ctacct-probe'), port, addr, (e) => (e ? rej(e) : res())));
    if (!(await got)) return null;
    // The probe's own entry by its exact tuple: deleting it says whether it was there, in one hash
    // lookup (a filtered dump walks the whole table: ~60 ms at 100k entries). Not there in zone 0:
    // the dump below, which also finds it in another zone (or not at all: not tracking).
    const own = addrBytes(addr)!;
    const h0 = addon.nftOpen();
    try {
      if (addon.ctDelete(h0, { family: v === 4 ? 2 : 10, proto: 17, src: Buffer.from(own.bytes), dst: Buffer.from(own.bytes), sport, dport: port })) return true;
    } finally {
      addon.nftClose(h0);
    }
    const { flows } = await dumpAll(source, { family: v, proto: 17, dport: port });
    const mine = flows.filter((f) => f.orig.sport === sport && f.orig.dport === port);
    const h = addon.nftOpen();
    try {
      for (const f of mine) {
        const k = keyOf(f);
        if (k) addon.ctDelete(h, k);
      }
    } finally {
      addon.nftClose(h);
    }
    return mine.length > 0;
  } catch {
    return null;
  } finally {
    rx?.close();
    tx?.close();
  }
}

export interface TrackingProbe {
  v4: boolean | null;
  v6: boolean | null;
}

export async function probeTracking(source: ConntrackSource, addon: Addon = getAddon()): Promise<TrackingProbe> {
  // Both families at once: each costs one kernel-filtered dump round trip.
  const [v4, v6] = await Promise.all([probeFamily(source, addon, 4), probeFamily(source, addon, 6)]);
  return { v4, v6 };
}

/** Conntrack ids in the table now (to tell later which entries came after). */
export async function entryIds(source: ConntrackSource): Promise<number[]> {
  const { flows } = await dumpAll(source);
  return flows.map((f) => f.ctId).filter((id): id is number => id !== null);
}

/** Deletes the TCP/UDP entries whose id is not in `keep`; returns how many went. */
export async function removeEntriesExcept(source: ConntrackSource, keep: ReadonlySet<number>, addon: Addon = getAddon()): Promise<number> {
  const { flows } = await dumpAll(source);
  const h = addon.nftOpen();
  let n = 0;
  try {
    for (const f of flows) {
      if (f.ctId === null || keep.has(f.ctId) || (f.proto !== 6 && f.proto !== 17)) continue;
      const k = keyOf(f);
      if (k && addon.ctDelete(h, k)) n++;
    }
  } finally {
    addon.nftClose(h);
  }
  return n;
}

/**
 * Exclusive lock on `path` (created 0600, not through a symlink); the returned function releases it.
 * Throws ESTALE when, while this waited, the holder unlinked the file (the last run of a namespace
 * removing its directory): the lock is then on a file nobody else will open, so the caller opens again.
 */
export function lockPath(path: string, addon: Addon = getAddon()): () => void {
  const fd = addon.lockFile(path);
  let open = true;
  const release = () => {
    if (open) closeSync(fd);
    open = false;
  };
  let same = false;
  try {
    const held = fstatSync(fd);
    const now = lstatSync(path);
    same = held.nlink > 0 && held.dev === now.dev && held.ino === now.ino;
  } catch {
    /* the path is gone */
  }
  if (!same) {
    release();
    throw Object.assign(new Error(`lock ${path}: removed while waiting`), { code: 'ESTALE' });
  }
  return release;
}
