// One flow of `ctacct flows --json`, written as bytes straight from the addon's record buffer (the
// layout of native/ct_record.h, mirrored in netlink/record.ts) into an output buffer: the very
// text of JSON.stringify(toFlowView(decodeOne(…), …)) — the README contract — with no record,
// view, tuple or string made per flow (at 100k flows, those objects and strings cost more in
// garbage collection than the kernel's dump). A unit test holds the two equal on recorded and
// synthetic flows.
import type { Direction } from '../core/flow.js';
import type { Owner } from '../core/owners.js';
import { CT_TCP_STATES, formatIPv6, HAS, nsToMs, ORIG_SRC, PROTO_NAMES, readU64, RECORD_SIZE, REPLY_SRC } from '../netlink/record.js';

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
 * An output buffer that hands full chunks to `flush`. When flush returns true (the bytes are out,
 * nothing keeps the chunk), the same memory is written again; otherwise each chunk gets a fresh
 * buffer, so the consumer may keep it. Output is streamed, memory stays bounded (and, reused, does
 * not wait for the garbage collector: 44 MB of output at 100k flows left ~20 MB of spent chunks).
 */
export class ByteSink {
  buf: Buffer;
  n = 0;
  /** Buffers handed over earlier and written out since: taken before allocating (a slow reader
   *  would otherwise leave a trail of written buffers for the garbage collector to find). */
  private readonly free: Buffer[] = [];

  /**
   * flush(chunk, written): true when the chunk is written out already (its buffer is used again);
   * otherwise the consumer may call `written` once it is, and the buffer goes back to the pool.
   */
  constructor(
    private readonly flush: (chunk: Buffer, written: () => void) => boolean | void,
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
    const b = this.buf;
    let state: 'out' | 'kept' | 'back' = 'out';
    const done =
      this.flush(b.subarray(0, this.n), () => {
        // Once, and not when the buffer stayed the current one; a handful at most.
        if (state !== 'out') return;
        state = 'back';
        if (b.length === this.size && this.free.length < 8) this.free.push(b);
      }) === true;
    if (done && state === 'out' && b.length === this.size) state = 'kept';
    else this.buf = this.free.pop() ?? Buffer.allocUnsafe(this.size);
    this.n = 0;
  }

  byte(b: number): void {
    this.buf[this.n++] = b;
  }

  /** Any value as JSON.stringify writes it (strings escaped, UTF-8). */
  json(v: unknown): void {
    const s = JSON.stringify(v);
    this.room(3 * s.length + 2048); // and the rest of the flow (see writeFlowJson)
    this.n += this.buf.write(s, this.n, 'utf8');
  }
}

// The writers below take the output array and position and return the new position: plain
// functions over locals, which the compiler inlines (a method per piece costs more than the copy).

function put(b: Uint8Array, n: number, s: Uint8Array): number {
  for (let i = 0; i < s.length; i++) b[n + i] = s[i]!;
  return n + s.length;
}

/** A non-negative integer, as String() writes it. */
function putUint(b: Uint8Array, n: number, v: number): number {
  if (v < 10) {
    b[n] = 48 + v;
    return n + 1;
  }
  if (v > Number.MAX_SAFE_INTEGER) return putAscii(b, n, String(v)); // String()'s shortest form, or exponent
  let digits = 1;
  let end: number;
  if (v < 0x80000000) {
    // Ports, ids, small counters: 32-bit integer arithmetic.
    for (let x = v; x >= 10; x = (x / 10) | 0) digits++;
    end = n + digits;
    for (let x = v, i = end; i > n; x = (x / 10) | 0) b[--i] = 48 + (x % 10);
    return end;
  }
  for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
  end = n + digits;
  for (let x = v, i = end; i > n; x = Math.floor(x / 10)) b[--i] = 48 + (x % 10);
  return end;
}

/** Text that needs no JSON escaping and is ASCII (numbers as String() writes them, names we make). */
function putAscii(b: Uint8Array, n: number, s: string): number {
  for (let i = 0; i < s.length; i++) b[n + i] = s.charCodeAt(i);
  return n + s.length;
}

const putNullable = (b: Uint8Array, n: number, v: number | null | undefined): number => (v == null ? put(b, n, K.null) : putUint(b, n, v));

/** An address from the record, as formatIPv4 / formatIPv6 write it. */
function putAddr(b: Uint8Array, n: number, rec: Uint8Array, off: number, family: 4 | 6): number {
  if (family === 6) return putAscii(b, n, formatIPv6(rec, off));
  n = put(b, n, DEC[rec[off]!]!);
  b[n++] = 0x2e;
  n = put(b, n, DEC[rec[off + 1]!]!);
  b[n++] = 0x2e;
  n = put(b, n, DEC[rec[off + 2]!]!);
  b[n++] = 0x2e;
  return put(b, n, DEC[rec[off + 3]!]!);
}

/** "ADDR:PORT" or "[ADDR6]:PORT" (formatHostPort), from the record. */
function putHostPort(b: Uint8Array, n: number, rec: Uint8Array, off: number, family: 4 | 6, port: number | null): number {
  b[n++] = QUOTE;
  if (family === 6) {
    const a = formatIPv6(rec, off);
    if (a.includes(':')) {
      b[n++] = 0x5b;
      n = putAscii(b, n, a);
      b[n++] = 0x5d;
    } else n = putAscii(b, n, a);
  } else n = putAddr(b, n, rec, off, 4);
  if (port !== null) {
    b[n++] = 0x3a;
    n = putUint(b, n, port);
  }
  b[n++] = QUOTE;
  return n;
}

function putSide(b: Uint8Array, n: number, view: DataView, rec: Uint8Array, base: number, family: 4 | 6, reply: boolean, present: number): number {
  const src = base + (reply ? REPLY_SRC : ORIG_SRC);
  n = put(b, n, K.src);
  n = putAddr(b, n, rec, src, family);
  n = put(b, n, K.dst);
  n = putAddr(b, n, rec, src + 16, family);
  const hasPorts = present & (reply ? HAS.replyPorts : HAS.origPorts);
  n = put(b, n, K.sport);
  n = hasPorts ? putUint(b, n, view.getUint16(base + (reply ? 30 : 26), true)) : put(b, n, K.null);
  n = put(b, n, K.dport);
  n = hasPorts ? putUint(b, n, view.getUint16(base + (reply ? 32 : 28), true)) : put(b, n, K.null);
  const c = base + (reply ? 64 : 48);
  const hasCounters = present & (reply ? HAS.countersReply : HAS.countersOrig);
  n = put(b, n, K.packets);
  n = hasCounters ? putUint(b, n, readU64(view, c)) : put(b, n, K.null);
  n = put(b, n, K.bytes);
  n = hasCounters ? putUint(b, n, readU64(view, c + 8)) : put(b, n, K.null);
  if (present & (reply ? HAS.replyIcmp : HAS.origIcmp)) {
    const i = base + (reply ? 38 : 34);
    n = put(b, n, K.icmpType);
    n = putUint(b, n, view.getUint8(i));
    n = put(b, n, K.code);
    n = putUint(b, n, view.getUint8(i + 1));
    n = put(b, n, K.icmpId);
    n = putUint(b, n, view.getUint16(i + 2, true));
    b[n++] = CLOSE;
  }
  b[n++] = CLOSE;
  return n;
}

/**
 * Writes the JSON object of the record at `base` to `o`. `ends[0]` is the flow's main end,
 * `ends[1]` its peer (as toFlowView takes them).
 */
export function writeFlowJson(o: ByteSink, view: DataView, rec: Uint8Array, base: number, direction: Direction, ends: readonly EndOwner[], nowMs: number): void {
  o.room(4096); // the fixed part of a flow is under 1.5 KiB; names make room for themselves
  let b = o.buf;
  let n = o.n;
  /** A value JSON.stringify must write (names: escaping, UTF-8); the sink may move to a new buffer. */
  const json = (v: unknown) => {
    o.n = n;
    o.json(v);
    b = o.buf;
    n = o.n;
  };
  const text = (v: string | null | undefined) => (v == null ? (n = put(b, n, K.null)) : json(v));
  const present = view.getUint32(base + 4, true);
  const family: 4 | 6 = view.getUint8(base + 1) === 10 ? 6 : 4;
  const proto = view.getUint8(base + 2);
  const hasReply = (present & HAS.replyTuple) !== 0;
  n = put(b, n, K.id);
  n = putNullable(b, n, present & HAS.id ? view.getUint32(base + 8, true) : null);
  n = put(b, n, family === 4 ? K.fam4 : K.fam6);
  const pn = PROTO_NAMES[proto];
  if (pn !== undefined) {
    b[n++] = QUOTE;
    n = putAscii(b, n, pn);
    b[n++] = QUOTE;
  } else json(String(proto));
  n = put(b, n, K.state);
  if (proto === 6 && present & HAS.tcpState) {
    const st = view.getUint8(base + 3);
    b[n++] = QUOTE;
    n = putAscii(b, n, CT_TCP_STATES[st] ?? `STATE_${st}`);
    b[n++] = QUOTE;
  } else n = put(b, n, K.null);
  n = put(b, n, K.dir);
  n = put(b, n, DIRECTION[direction]);
  n = put(b, n, K.orig);
  n = putSide(b, n, view, rec, base, family, false, present);
  n = put(b, n, K.reply);
  n = hasReply ? putSide(b, n, view, rec, base, family, true, present) : put(b, n, K.null);
  const oBytes = present & HAS.countersOrig ? readU64(view, base + 56) : null;
  const rBytes = present & HAS.countersReply ? readU64(view, base + 72) : null;
  const both = oBytes !== null && rBytes !== null;
  const endAddr = (e: EndOwner, remote: boolean) => {
    const reply = e.side === 'reply';
    const ports = present & (reply ? HAS.replyPorts : HAS.origPorts);
    const off = base + (reply ? REPLY_SRC : ORIG_SRC) + (remote ? 16 : 0);
    n = putHostPort(b, n, rec, off, family, ports ? view.getUint16(base + (reply ? 30 : 26) + (remote ? 2 : 0), true) : null);
  };
  const bytesOf = (e: EndOwner, sent: boolean) => {
    n = both ? putUint(b, n, (e.side === 'orig') === sent ? oBytes! : rBytes!) : put(b, n, K.null);
  };
  const main = ends[0];
  n = put(b, n, K.local);
  if (main) endAddr(main, false);
  else n = put(b, n, K.null);
  n = put(b, n, K.remote);
  if (main) endAddr(main, true);
  else n = put(b, n, K.null);
  n = put(b, n, K.sent);
  if (main) bytesOf(main, true);
  else n = put(b, n, K.null);
  n = put(b, n, K.recv);
  if (main) bytesOf(main, false);
  else n = put(b, n, K.null);
  /** An owner's pid, "comm" and "uid" values (the key before pid is the caller's). */
  const identity = (o: EndOwner['owner'] | null | undefined) => {
    n = putNullable(b, n, o?.pid);
    n = put(b, n, K.comm);
    text(o?.comm);
    n = put(b, n, K.uid);
    n = putNullable(b, n, o?.uid);
  };
  const ow = main?.owner ?? null;
  n = put(b, n, K.pid);
  identity(ow);
  n = put(b, n, K.mark);
  n = putNullable(b, n, present & HAS.mark ? view.getUint32(base + 16, true) : null);
  n = put(b, n, K.zone);
  n = putNullable(b, n, present & HAS.zone ? view.getUint16(base + 24, true) : null);
  n = put(b, n, K.age);
  if (present & HAS.tsStart) json(Math.max(0, (nowMs - nsToMs(view, base + 80)) / 1000));
  else n = put(b, n, K.null);
  n = put(b, n, K.timeout);
  n = putNullable(b, n, present & HAS.timeout ? view.getUint32(base + 20, true) : null);
  if (ow?.shared) n = put(b, n, K.shared);
  if (ow && ow.netns !== undefined) {
    n = put(b, n, K.netns);
    n = putNullable(b, n, ow.netns);
    n = put(b, n, K.container);
    json(ow.container ?? null);
    n = put(b, n, K.unit);
    text(ow.unit);
  }
  const peer = ends[1];
  if (peer) {
    n = put(b, n, K.peer);
    identity(peer.owner);
    n = put(b, n, K.local);
    endAddr(peer, false);
    n = put(b, n, K.sent);
    bytesOf(peer, true);
    n = put(b, n, K.recv);
    bytesOf(peer, false);
    b[n++] = CLOSE;
  }
  b[n++] = CLOSE;
  o.n = n;
}

/** The same as one string (tests, and callers that want text). */
export function flowJson(view: DataView, rec: Uint8Array, base: number, direction: Direction, ends: readonly EndOwner[], nowMs: number): string {
  const parts: Buffer[] = [];
  const o = new ByteSink((c) => {
    parts.push(c);
  }, 4096);
  writeFlowJson(o, view, rec, base, direction, ends, nowMs);
  o.end();
  return Buffer.concat(parts).toString('utf8');
}


const numText = (v: number | null | undefined): string => (v == null ? 'null' : String(v));

/**
 * Owners' texts for the addon's formatFlows: per owner, `"pid":…,"comm":…,"uid":…` (as in
 * writeFlowJson) and what follows a main end's timeout_s. Owner 0 is "no owner" (an end whose
 * process is unknown). Owners are few; their texts are made once.
 */
export class OwnerTexts {
  private readonly ids = new Map<Owner, number>();
  private readonly list: (Owner | null)[] = [];
  private readonly byText = new Map<string, number>();
  private readonly parts: Buffer[] = [];
  private readonly offs: number[] = [];
  private len = 0;
  private built: { text: Buffer; off: Uint32Array } | null = null;

  constructor() {
    this.add('"pid":null,"comm":null,"uid":null', '');
  }

  id(o: Owner | null): number {
    if (!o) return 0;
    let k = this.ids.get(o);
    if (k === undefined) {
      const who = `"pid":${numText(o.pid)},"comm":${o.comm == null ? 'null' : JSON.stringify(o.comm)},"uid":${numText(o.uid)}`;
      let more = o.shared ? ',"shared":true' : '';
      if (o.netns !== undefined) more += `,"netns":${numText(o.netns)},"container":${JSON.stringify(o.container ?? null)},"unit":${o.unit == null ? 'null' : JSON.stringify(o.unit)}`;
      // Equal texts share an id: owners are objects made per call, the texts are what counts.
      const key = `${who}\u0000${more}`;
      k = this.byText.get(key);
      if (k === undefined) {
        k = this.add(who, more);
        this.byText.set(key, k);
        this.list[k] = o;
      }
      this.ids.set(o, k);
    }
    return k;
  }

  private add(who: string, more: string): number {
    const k = this.offs.length / 4;
    for (const s of [who, more]) {
      const b = Buffer.from(s, 'utf8');
      this.parts.push(b);
      this.offs.push(this.len, this.len + b.length);
      this.len += b.length;
    }
    this.built = null;
    return k;
  }

  /** The owner of id k (null for 0). */
  owner(k: number): Owner | null {
    return this.list[k] ?? null;
  }

  /** All texts in one buffer, and 4 offsets per owner (who start/end, more start/end). */
  table(): { text: Buffer; off: Uint32Array } {
    return (this.built ??= { text: Buffer.concat(this.parts), off: Uint32Array.from(this.offs) });
  }
}

const NO_AGES = { text: Buffer.alloc(0), off: new Uint32Array(0) };

/**
 * age_s of each record of a batch, as writeFlowJson writes it (JSON.stringify of a float: the
 * addon takes this text rather than format the number itself), for the addon's formatFlows; none
 * when no record has a start time (then the addon leaves such records to JavaScript).
 */
export function ageTexts(view: DataView, count: number, skip: Uint8Array, nowMs: number): { text: Buffer; off: Uint32Array } {
  let any = false;
  for (let i = 0; i < count && !any; i++) any = !skip[i] && (view.getUint32(i * RECORD_SIZE + 4, true) & HAS.tsStart) !== 0;
  if (!any) return NO_AGES;
  const off = new Uint32Array(count + 1);
  let text = '';
  for (let i = 0; i < count; i++) {
    off[i] = text.length;
    const base = i * RECORD_SIZE;
    if (!skip[i] && view.getUint32(base + 4, true) & HAS.tsStart) text += JSON.stringify(Math.max(0, (nowMs - nsToMs(view, base + 80)) / 1000));
  }
  off[count] = text.length;
  return { text: Buffer.from(text, 'latin1'), off };
}
