// Flow records as the addon decodes them, for tests of the pure core.
import type { FlowRecord, SockHit } from '../../src/netlink/record.js';

let nextId = 1000;

export interface RecOpts {
  kind?: FlowRecord['kind'];
  id?: number;
  proto?: number;
  src: string;
  sport?: number | null;
  dst: string;
  dport?: number | null;
  /** Reply source (differs from dst under DNAT). */
  replySrc?: string;
  replyDst?: string;
  orig?: [number, number] | null; // [packets, bytes]
  reply?: [number, number] | null;
  tcpState?: number | null;
  skOrig?: SockHit | null;
  skReply?: SockHit | null;
}

export function rec(o: RecOpts): FlowRecord {
  const family = o.src.includes(':') ? 6 : 4;
  const proto = o.proto ?? 6;
  const sport = o.sport === undefined ? 40000 : o.sport;
  const dport = o.dport === undefined ? 80 : o.dport;
  return {
    kind: o.kind ?? 'dump',
    ctId: o.id ?? nextId++,
    family,
    proto,
    tcpState: o.tcpState === undefined ? (proto === 6 ? 3 : null) : o.tcpState,
    status: 14,
    mark: 0,
    zone: null,
    timeout: 100,
    use: 1,
    orig: { src: o.src, dst: o.dst, sport, dport, icmp: null },
    reply: { src: o.replySrc ?? o.dst, dst: o.replyDst ?? o.src, sport: dport, dport: sport, icmp: null },
    origCounters: o.orig === null ? null : { packets: o.orig?.[0] ?? 0, bytes: o.orig?.[1] ?? 0 },
    replyCounters: o.reply === null ? null : { packets: o.reply?.[0] ?? 0, bytes: o.reply?.[1] ?? 0 },
    startMs: null,
    stopMs: null,
    eventMs: null,
    skOrig: o.skOrig ?? null,
    skReply: o.skReply ?? null,
  };
}

export function hit(inode: number, uid = 0, state = 1): SockHit {
  return { found: true, inode, uid, pid: 0, state };
}
