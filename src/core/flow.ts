// Flow identity, direction and the local ends of a flow (README "How to read the numbers"). Pure.
import { HAS, type FlowRecord, type Tuple } from '../netlink/record.js';

export type Direction = 'outbound' | 'inbound' | 'local' | 'forwarded';

/**
 * A flow's identity in ctacct's state: its conntrack id combined with the original source port (or
 * ICMP id). The id alone is a 32-bit hash: with 250k entries in a table several pairs collide
 * (birthday bound), and two live flows must never share a key. id × 65536 + port stays below 2^53.
 * The tuple is the key when the kernel sent no id.
 */
export type FlowId = number | string;

/** The one function that builds a flow key. */
export function flowKey(r: FlowRecord): FlowId {
  const o = r.orig;
  if (r.ctId !== null) return r.ctId * 65536 + (o.sport ?? o.icmp?.id ?? 0);
  const ports = o.icmp ? `i${o.icmp.type}/${o.icmp.code}/${o.icmp.id}` : `${o.sport ?? ''}>${o.dport ?? ''}`;
  return `${r.proto}|${o.src}|${o.dst}|${ports}|${r.zone ?? 0}`;
}

/**
 * What a flow key must keep naming: an id can come back for another tuple (the kernel reuses it),
 * and the key only folds in the source port.
 */
export interface FlowShape {
  proto: number;
  sport: number | null;
  dport: number | null;
}

export function shapeOf(r: FlowRecord): FlowShape {
  return { proto: r.proto, sport: r.orig.sport, dport: r.orig.dport };
}

/** The one "same flow" rule: whether two readings under one key describe the same flow. */
export function sameFlow(a: FlowShape, b: FlowShape): boolean {
  return sameParts(a, b.proto, b.sport, b.dport);
}

function sameParts(a: FlowShape, proto: number, sport: number | null, dport: number | null): boolean {
  return a.proto === proto && a.sport === sport && a.dport === dport;
}

/** sameFlow against a record read in place from a record buffer (native/ct_record.h): the same
 *  rule, with no object made or written on the hot dump path. */
export function sameFlowRaw(a: FlowShape, view: DataView, base: number, present: number): boolean {
  const ports = (present & HAS.origPorts) !== 0;
  return sameParts(a, view.getUint8(base + 2), ports ? view.getUint16(base + 26, true) : null, ports ? view.getUint16(base + 28, true) : null);
}

/** The same key read straight from a record buffer (native/ct_record.h), or null without an id. */
export function rawFlowKey(view: DataView, base: number, present: number): number | null {
  if (!(present & HAS.id)) return null;
  const port = present & HAS.origPorts ? view.getUint16(base + 26, true) : present & HAS.origIcmp ? view.getUint16(base + 36, true) : 0;
  return view.getUint32(base + 8, true) * 65536 + port;
}

/** Which addresses are this host's (in this network namespace). */
export interface LocalAddresses {
  has(addr: string): boolean;
}

export function isLoopback(addr: string): boolean {
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}

export function localAddressSet(addrs: Iterable<string>): LocalAddresses {
  const set = new Set(addrs);
  return { has: (a) => set.has(a) || isLoopback(a) };
}

/**
 * Local side from the tuples: orig.src local → we opened it (outbound); reply.src local → the
 * connection came to us (inbound; also covers DNAT to a local port, where reply.src is the real
 * destination); both → loopback-like (local); neither → forwarded through this host.
 */
export function classify(r: FlowRecord, local: LocalAddresses): Direction {
  const origLocal = local.has(r.orig.src);
  const replyLocal = r.reply ? local.has(r.reply.src) : false;
  if (origLocal && replyLocal) return 'local';
  if (origLocal) return 'outbound';
  if (replyLocal) return 'inbound';
  return 'forwarded';
}

/** One local end of a flow: the socket side whose traffic we account. */
export interface FlowEnd {
  /** 'orig': the end that sent the first packet (local = orig.src); 'reply': the answering end. */
  side: 'orig' | 'reply';
  localAddr: string;
  localPort: number | null;
  remoteAddr: string;
  remotePort: number | null;
}

export function endOf(t: Tuple, side: 'orig' | 'reply'): FlowEnd {
  return { side, localAddr: t.src, localPort: t.sport, remoteAddr: t.dst, remotePort: t.dport };
}

/** The local ends to attribute: none for forwarded flows, both for local ones. */
export function localEnds(r: FlowRecord, dir: Direction): FlowEnd[] {
  const ends: FlowEnd[] = [];
  if ((dir === 'outbound' || dir === 'local') && r.orig) ends.push(endOf(r.orig, 'orig'));
  if ((dir === 'inbound' || dir === 'local') && r.reply) ends.push(endOf(r.reply, 'reply'));
  return ends;
}

/**
 * Bytes seen from an end's socket: the orig end sends the orig direction and receives the reply
 * direction; the reply end the other way round.
 */
export function endBytes(side: 'orig' | 'reply', orig: number, reply: number): { sent: number; recv: number } {
  return side === 'orig' ? { sent: orig, recv: reply } : { sent: reply, recv: orig };
}

export function formatHostPort(addr: string, port: number | null): string {
  const a = addr.includes(':') ? `[${addr}]` : addr;
  return port === null ? a : `${a}:${port}`;
}
