// One flow of `ctacct flows --json`, written as bytes straight from the addon's record buffer (the
// layout of native/ct_record.h, mirrored in netlink/record.ts) into an output buffer: the very
// text of JSON.stringify(toFlowView(decodeOne(…), …)) — the README contract — with no record,
// view, tuple or string made per flow (at 100k flows, those objects and strings cost more in
// garbage collection than the kernel's dump). A unit test holds the two equal on recorded and
// synthetic flows.
import type { Direction } from '../core/flow.js';
import type { Owner } from '../core/owners.js';
import { CT_TCP_STATES, formatIPv6, HAS, nsToMs, ORIG_SRC, PROTO_NAMES, readU64, REPLY_SRC } from '../netlink/record.js';

/** A local (or foreign) end of the flow: which tuple it is the source of, and its owner. */
export interface EndOwner {
  side: 'orig' | 'reply';
  owner: Owner | null;
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const K = {
  id: enc('{"id":'),
  fam4: enc(',"family":"ipv4","proto":'),
  fam6: enc(',"family":"ipv6","proto":'),
  state: enc(',"state":'),
  dir: enc(',"direction":"'),
  orig: enc('","orig":'),
  reply: enc(',"reply":'),
  src: enc('{"src":"'),
  dst: enc('","dst":"'),
  sport: enc('","sport":'),
  dport: enc(',"dport":'),
  packets: enc(',"packets":'),
  bytes: enc(',"bytes":'),
  icmpType: enc(',"icmp":{"type":'),
  code: enc(',"code":'),
  icmpId: enc(',"id":'),
  local: enc(',"local":'),
  remote: enc(',"remote":'),
  sent: enc(',"sent_bytes":'),
  recv: enc(',"recv_bytes":'),
  pid: enc(',"pid":'),
  comm: enc(',"comm":'),
  uid: enc(',"uid":'),
  mark: enc(',"mark":'),
  zone: enc(',"zone":'),
  age: enc(',"age_s":'),
  timeout: enc(',"timeout_s":'),
  shared: enc(',"shared":true'),
  netns: enc(',"netns":'),
  container: enc(',"container":'),
  unit: enc(',"unit":'),
  peer: enc(',"peer":{"pid":'),
  null: enc('null'),
} as const;
const DIRECTION: Record<Direction, Uint8Array> = { outbound: enc('outbound'), inbound: enc('inbound'), local: enc('local'), forwarded: enc('forwarded') };
/** Decimal text of each byte value. */
const DEC: readonly Uint8Array[] = Array.from({ length: 256 }, (_, i) => enc(String(i)));
const QUOTE = 0x22;
const CLOSE = 0x7d;

/**
 * An output buffer that hands full chunks to `flush` (a fresh buffer each time, so the consumer
 * may keep one). At most one chunk is held: output is streamed, memory stays bounded.
 */
export class ByteSink {
  buf: Buffer;
  n = 0;

  constructor(
    private readonly flush: (chunk: Buffer) => void,
    private readonly size = 1 << 18,
  ) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Room for `k` more bytes (a flow needs well under 4 KiB unless its names are long). */
  room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    this.end();
    if (k > this.buf.length) this.buf = Buffer.allocUnsafe(k);
  }

  /** Hands what was written over and starts a new buffer. */
  end(): void {
    if (this.n === 0) return;
    this.flush(this.buf.subarray(0, this.n));
    this.buf = Buffer.allocUnsafe(this.size);
    this.n = 0;
  }

  byte(b: number): void {
    this.buf[this.n++] = b;
  }

  lit(s: Uint8Array): void {
    const b = this.buf;
    let n = this.n;
    for (let i = 0; i < s.length; i++) b[n++] = s[i]!;
    this.n = n;
  }

  /** A non-negative integer, as String() writes it. */
  uint(v: number): void {
    const b = this.buf;
    if (v > Number.MAX_SAFE_INTEGER) {
      this.ascii(String(v)); // not exact any more: String()'s shortest form (or exponent)
      return;
    }
    if (v < 10) {
      b[this.n++] = 48 + v;
      return;
    }
    let digits = 1;
    if (v < 0x80000000) {
      // Ports, ids, small counters: 32-bit integer arithmetic.
      for (let x = v; x >= 10; x = (x / 10) | 0) digits++;
      let n = this.n + digits;
      this.n = n;
      for (let x = v; digits-- > 0; x = (x / 10) | 0) b[--n] = 48 + (x % 10);
      return;
    }
    for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
    let n = this.n + digits;
    this.n = n;
    for (let x = v; digits-- > 0; x = Math.floor(x / 10)) b[--n] = 48 + (x % 10);
  }

  /** Text that needs no JSON escaping and is ASCII (numbers as String() writes them, names we make). */
  ascii(s: string): void {
    const b = this.buf;
    let n = this.n;
    for (let i = 0; i < s.length; i++) b[n++] = s.charCodeAt(i);
    this.n = n;
  }

  /** Any value as JSON.stringify writes it (strings escaped, UTF-8). */
  json(v: unknown): void {
    const s = JSON.stringify(v);
    this.room(3 * s.length + 2048); // and the rest of the flow (see writeFlowJson)
    this.n += this.buf.write(s, this.n, 'utf8');
  }

  /** An IPv4 address from 4 record bytes, as formatIPv4 writes it. */
  ipv4(rec: Uint8Array, off: number): void {
    this.lit(DEC[rec[off]!]!);
    this.buf[this.n++] = 0x2e;
    this.lit(DEC[rec[off + 1]!]!);
    this.buf[this.n++] = 0x2e;
    this.lit(DEC[rec[off + 2]!]!);
    this.buf[this.n++] = 0x2e;
    this.lit(DEC[rec[off + 3]!]!);
  }
}

/** "ADDR:PORT" or "[ADDR6]:PORT" (formatHostPort), from the record. */
function hostPort(o: ByteSink, view: DataView, rec: Uint8Array, addrOff: number, family: 4 | 6, port: number | null): void {
  o.byte(QUOTE);
  if (family === 4) o.ipv4(rec, addrOff);
  else {
    const a = formatIPv6(rec, addrOff);
    if (a.includes(':')) {
      o.byte(0x5b);
      o.ascii(a);
      o.byte(0x5d);
    } else o.ascii(a);
  }
  if (port !== null) {
    o.byte(0x3a);
    o.uint(port);
  }
  o.byte(QUOTE);
}

function addr(o: ByteSink, rec: Uint8Array, off: number, family: 4 | 6): void {
  if (family === 4) o.ipv4(rec, off);
  else o.ascii(formatIPv6(rec, off));
}

function side(o: ByteSink, view: DataView, rec: Uint8Array, base: number, family: 4 | 6, reply: boolean, present: number): void {
  const src = base + (reply ? REPLY_SRC : ORIG_SRC);
  o.lit(K.src);
  addr(o, rec, src, family);
  o.lit(K.dst);
  addr(o, rec, src + 16, family);
  const hasPorts = present & (reply ? HAS.replyPorts : HAS.origPorts);
  o.lit(K.sport);
  if (hasPorts) o.uint(view.getUint16(base + (reply ? 30 : 26), true));
  else o.lit(K.null);
  o.lit(K.dport);
  if (hasPorts) o.uint(view.getUint16(base + (reply ? 32 : 28), true));
  else o.lit(K.null);
  const c = base + (reply ? 64 : 48);
  const hasCounters = present & (reply ? HAS.countersReply : HAS.countersOrig);
  o.lit(K.packets);
  if (hasCounters) o.uint(readU64(view, c));
  else o.lit(K.null);
  o.lit(K.bytes);
  if (hasCounters) o.uint(readU64(view, c + 8));
  else o.lit(K.null);
  if (present & (reply ? HAS.replyIcmp : HAS.origIcmp)) {
    const i = base + (reply ? 38 : 34);
    o.lit(K.icmpType);
    o.uint(view.getUint8(i));
    o.lit(K.code);
    o.uint(view.getUint8(i + 1));
    o.lit(K.icmpId);
    o.uint(view.getUint16(i + 2, true));
    o.byte(CLOSE);
  }
  o.byte(CLOSE);
}

const nullable = (o: ByteSink, v: number | null | undefined) => (v == null ? o.lit(K.null) : o.uint(v));
const text = (o: ByteSink, v: string | null | undefined) => (v == null ? o.lit(K.null) : o.json(v));

/**
 * Writes the JSON object of the record at `base` to `o`. `ends[0]` is the flow's main end,
 * `ends[1]` its peer (as toFlowView takes them).
 */
export function writeFlowJson(o: ByteSink, view: DataView, rec: Uint8Array, base: number, direction: Direction, ends: readonly EndOwner[], nowMs: number): void {
  o.room(4096); // the fixed part of a flow is under 1.5 KiB; names make room for themselves
  const present = view.getUint32(base + 4, true);
  const family: 4 | 6 = view.getUint8(base + 1) === 10 ? 6 : 4;
  const proto = view.getUint8(base + 2);
  const hasReply = (present & HAS.replyTuple) !== 0;
  o.lit(K.id);
  nullable(o, present & HAS.id ? view.getUint32(base + 8, true) : null);
  o.lit(family === 4 ? K.fam4 : K.fam6);
  const pn = PROTO_NAMES[proto];
  if (pn !== undefined) {
    o.byte(QUOTE);
    o.ascii(pn);
    o.byte(QUOTE);
  } else o.json(String(proto));
  o.lit(K.state);
  if (proto === 6 && present & HAS.tcpState) {
    const st = view.getUint8(base + 3);
    o.byte(QUOTE);
    o.ascii(CT_TCP_STATES[st] ?? `STATE_${st}`);
    o.byte(QUOTE);
  } else o.lit(K.null);
  o.lit(K.dir);
  o.lit(DIRECTION[direction]);
  o.lit(K.orig);
  side(o, view, rec, base, family, false, present);
  o.lit(K.reply);
  if (hasReply) side(o, view, rec, base, family, true, present);
  else o.lit(K.null);
  const oBytes = present & HAS.countersOrig ? readU64(view, base + 56) : null;
  const rBytes = present & HAS.countersReply ? readU64(view, base + 72) : null;
  const both = oBytes !== null && rBytes !== null;
  const endAddr = (e: EndOwner, remote: boolean) => {
    const reply = e.side === 'reply';
    const ports = present & (reply ? HAS.replyPorts : HAS.origPorts);
    const off = base + (reply ? REPLY_SRC : ORIG_SRC) + (remote ? 16 : 0);
    hostPort(o, view, rec, off, family, ports ? view.getUint16(base + (reply ? 30 : 26) + (remote ? 2 : 0), true) : null);
  };
  const bytesOf = (e: EndOwner, sent: boolean) => {
    if (!both) o.lit(K.null);
    else o.uint((e.side === 'orig') === sent ? oBytes! : rBytes!);
  };
  const main = ends[0];
  o.lit(K.local);
  if (main) endAddr(main, false);
  else o.lit(K.null);
  o.lit(K.remote);
  if (main) endAddr(main, true);
  else o.lit(K.null);
  o.lit(K.sent);
  if (main) bytesOf(main, true);
  else o.lit(K.null);
  o.lit(K.recv);
  if (main) bytesOf(main, false);
  else o.lit(K.null);
  const ow = main?.owner ?? null;
  o.lit(K.pid);
  nullable(o, ow?.pid);
  o.lit(K.comm);
  text(o, ow?.comm);
  o.lit(K.uid);
  nullable(o, ow?.uid);
  o.lit(K.mark);
  nullable(o, present & HAS.mark ? view.getUint32(base + 16, true) : null);
  o.lit(K.zone);
  nullable(o, present & HAS.zone ? view.getUint16(base + 24, true) : null);
  o.lit(K.age);
  if (present & HAS.tsStart) o.json(Math.max(0, (nowMs - nsToMs(view, base + 80)) / 1000));
  else o.lit(K.null);
  o.lit(K.timeout);
  nullable(o, present & HAS.timeout ? view.getUint32(base + 20, true) : null);
  if (ow?.shared) o.lit(K.shared);
  if (ow && ow.netns !== undefined) {
    o.lit(K.netns);
    nullable(o, ow.netns);
    o.lit(K.container);
    o.json(ow.container ?? null);
    o.lit(K.unit);
    text(o, ow.unit);
  }
  const peer = ends[1];
  if (peer) {
    const p = peer.owner;
    o.lit(K.peer);
    nullable(o, p?.pid);
    o.lit(K.comm);
    text(o, p?.comm);
    o.lit(K.uid);
    nullable(o, p?.uid);
    o.lit(K.local);
    endAddr(peer, false);
    o.lit(K.sent);
    bytesOf(peer, true);
    o.lit(K.recv);
    bytesOf(peer, false);
    o.byte(CLOSE);
  }
  o.byte(CLOSE);
}

/** The same as one string (tests, and callers that want text). */
export function flowJson(view: DataView, rec: Uint8Array, base: number, direction: Direction, ends: readonly EndOwner[], nowMs: number): string {
  const parts: Buffer[] = [];
  const o = new ByteSink((c) => parts.push(c), 4096);
  writeFlowJson(o, view, rec, base, direction, ends, nowMs);
  o.end();
  return Buffer.concat(parts).toString('utf8');
}

