// Decodes the addon's fixed-layout records (native/ct_record.h) into typed flow records.
// Kernel vocabulary lives here: orig/reply, ctId, counters.

export const RECORD_SIZE = 200;
/** Offsets of the tuples' source addresses in a record (destination: 16 bytes further). */
export const ORIG_SRC = 104;
export const REPLY_SRC = 136;

export type RecordKind = 'dump' | 'new' | 'update' | 'destroy';
const KINDS: RecordKind[] = ['dump', 'new', 'update', 'destroy'];

export const HAS = {
  id: 1 << 0,
  countersOrig: 1 << 1,
  countersReply: 1 << 2,
  mark: 1 << 3,
  zone: 1 << 4,
  timeout: 1 << 5,
  tsStart: 1 << 6,
  tsStop: 1 << 7,
  tsEvent: 1 << 8,
  tcpState: 1 << 9,
  status: 1 << 10,
  use: 1 << 11,
  origPorts: 1 << 12,
  replyPorts: 1 << 13,
  origIcmp: 1 << 14,
  replyIcmp: 1 << 15,
  origTuple: 1 << 16,
  replyTuple: 1 << 17,
  skOrig: 1 << 18,
  skReply: 1 << 19,
} as const;

export interface Icmp {
  type: number;
  code: number;
  id: number;
}

export interface Tuple {
  src: string;
  dst: string;
  /** Ports for TCP/UDP/SCTP...; null for protocols without ports. */
  sport: number | null;
  dport: number | null;
  icmp: Icmp | null;
}

export interface Counters {
  packets: number;
  bytes: number;
}

/** A socket found by sock_diag at NEW time for one end of the flow. */
export interface SockHit {
  found: boolean;
  inode: number;
  uid: number;
  /** Owner pid found by the addon's reader thread (fd scan of candidate pids), 0 if not found. */
  pid: number;
  /** Kernel TCP state number of the socket found (10 = LISTEN; 7 = CLOSE, usual for UDP). */
  state: number;
}

export interface FlowRecord {
  kind: RecordKind;
  /** Conntrack id (CTA_ID); null if the kernel did not send it. */
  ctId: number | null;
  family: 4 | 6;
  proto: number;
  /** TCP_CONNTRACK_* number; null for non-TCP or when absent. */
  tcpState: number | null;
  status: number | null;
  mark: number | null;
  zone: number | null;
  timeout: number | null;
  use: number | null;
  orig: Tuple;
  reply: Tuple | null;
  /** null when the flow has no counters (accounting was off when it began): absent is not zero. */
  origCounters: Counters | null;
  replyCounters: Counters | null;
  /** Wall-clock milliseconds since the epoch (from kernel nanoseconds), or null. */
  startMs: number | null;
  stopMs: number | null;
  eventMs: number | null;
  skOrig: SockHit | null;
  skReply: SockHit | null;
}

const TWO32 = 4294967296;

/**
 * 64-bit kernel counters become JavaScript numbers here and nowhere else: a number is exact
 * up to 2^53 (8 PiB of bytes, 9e15 packets), far beyond any single flow's lifetime.
 */
export function readU64(view: DataView, off: number): number {
  return view.getUint32(off + 4, true) * TWO32 + view.getUint32(off, true);
}

export function nsToMs(view: DataView, off: number): number {
  // Nanoseconds since the epoch exceed 2^53; milliseconds with a fraction keep µs precision.
  const hi = view.getUint32(off + 4, true);
  const lo = view.getUint32(off, true);
  return hi * (TWO32 / 1e6) + lo / 1e6;
}

export function formatIPv4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 5952 text form of an IPv6 address (longest zero run compressed, lower case). */
export function formatIPv6(b: Uint8Array, off: number): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((b[off + 2 * i] ?? 0) << 8) | (b[off + 2 * i + 1] ?? 0));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped addresses keep their dotted tail, as the kernel and ss print them.
  if (bestStart === 0 && bestLen === 5 && words[5] === 0xffff) {
    return `::ffff:${formatIPv4(b, off + 12)}`;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

function formatAddr(family: 4 | 6, b: Uint8Array, off: number): string {
  return family === 4 ? formatIPv4(b, off) : formatIPv6(b, off);
}

function readTuple(
  view: DataView,
  bytes: Uint8Array,
  base: number,
  family: 4 | 6,
  reply: boolean,
  present: number,
): Tuple {
  const srcOff = base + (reply ? 136 : 104);
  const hasPorts = present & (reply ? HAS.replyPorts : HAS.origPorts);
  const hasIcmp = present & (reply ? HAS.replyIcmp : HAS.origIcmp);
  return {
    src: formatAddr(family, bytes, srcOff),
    dst: formatAddr(family, bytes, srcOff + 16),
    sport: hasPorts ? view.getUint16(base + (reply ? 30 : 26), true) : null,
    dport: hasPorts ? view.getUint16(base + (reply ? 32 : 28), true) : null,
    icmp: hasIcmp
      ? {
          type: view.getUint8(base + (reply ? 38 : 34)),
          code: view.getUint8(base + (reply ? 39 : 35)),
          id: view.getUint16(base + (reply ? 40 : 36), true),
        }
      : null,
  };
}

function readHit(view: DataView, off: number): SockHit {
  return {
    found: view.getUint8(off + 12) === 1,
    inode: view.getUint32(off, true),
    uid: view.getUint32(off + 4, true),
    pid: view.getUint32(off + 8, true),
    state: view.getUint8(off + 13),
  };
}

/** Decodes `count` records from a batch Buffer. */
export function decodeRecords(buf: Uint8Array, count: number): FlowRecord[] {
  if (buf.byteLength < count * RECORD_SIZE) {
    throw new RangeError(`record batch of ${buf.byteLength} bytes cannot hold ${count} records`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: FlowRecord[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = decodeOne(view, buf, i * RECORD_SIZE);
  return out;
}

/** Decodes the record at byte offset `base` of a batch. */
export function decodeOne(view: DataView, bytes: Uint8Array, base: number): FlowRecord {
  const present = view.getUint32(base + 4, true);
  const family: 4 | 6 = view.getUint8(base + 1) === 10 ? 6 : 4;
  const has = (bit: number) => (present & bit) !== 0;
  return {
    kind: KINDS[view.getUint8(base)] ?? 'dump',
    ctId: has(HAS.id) ? view.getUint32(base + 8, true) : null,
    family,
    proto: view.getUint8(base + 2),
    tcpState: has(HAS.tcpState) ? view.getUint8(base + 3) : null,
    status: has(HAS.status) ? view.getUint32(base + 12, true) : null,
    mark: has(HAS.mark) ? view.getUint32(base + 16, true) : null,
    timeout: has(HAS.timeout) ? view.getUint32(base + 20, true) : null,
    zone: has(HAS.zone) ? view.getUint16(base + 24, true) : null,
    use: has(HAS.use) ? view.getUint32(base + 44, true) : null,
    orig: readTuple(view, bytes, base, family, false, present),
    reply: has(HAS.replyTuple) ? readTuple(view, bytes, base, family, true, present) : null,
    origCounters: has(HAS.countersOrig)
      ? { packets: readU64(view, base + 48), bytes: readU64(view, base + 56) }
      : null,
    replyCounters: has(HAS.countersReply)
      ? { packets: readU64(view, base + 64), bytes: readU64(view, base + 72) }
      : null,
    startMs: has(HAS.tsStart) ? nsToMs(view, base + 80) : null,
    stopMs: has(HAS.tsStop) ? nsToMs(view, base + 88) : null,
    eventMs: has(HAS.tsEvent) ? nsToMs(view, base + 96) : null,
    skOrig: has(HAS.skOrig) ? readHit(view, base + 168) : null,
    skReply: has(HAS.skReply) ? readHit(view, base + 184) : null,
  };
}

/** IP protocol numbers and names as conntrack prints them. */
export const PROTO_NAMES: Record<number, string> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  33: 'dccp',
  47: 'gre',
  58: 'icmpv6',
  132: 'sctp',
  136: 'udplite',
};

export function protoName(proto: number): string {
  return PROTO_NAMES[proto] ?? String(proto);
}

/** TCP_CONNTRACK_* numbers to the names `conntrack -L` prints. */
export const CT_TCP_STATES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
] as const;

export function ctTcpStateName(state: number | null): string | null {
  if (state === null) return null;
  return CT_TCP_STATES[state] ?? `STATE_${state}`;
}

/** IPS_* status bits used above the boundary. */
export const IPS = {
  EXPECTED: 1 << 0,
  SEEN_REPLY: 1 << 1,
  ASSURED: 1 << 2,
  CONFIRMED: 1 << 3,
  SRC_NAT: 1 << 4,
  DST_NAT: 1 << 5,
  DYING: 1 << 9,
  OFFLOAD: 1 << 14,
} as const;
