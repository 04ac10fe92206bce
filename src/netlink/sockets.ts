// The socket tables through sock_diag (no privileges needed): the same entries as parsing
// /proc/net/{tcp,udp}[6], read from the kernel's binary dump instead of its text.
import type { SocketEntry, SocketProto } from '../proc/parse.js';
import { tcpStateName, udpStateName } from '../proc/parse.js';
import { getAddon, type Addon } from './addon.js';
import { formatIPv4, formatIPv6 } from './record.js';

/** sizeof(struct ct_diag_sock) in native/ct_sock.h. */
export const DIAG_SOCK_SIZE = 56;
const AF = { 4: 2, 6: 10 } as const;
const PROTO = { tcp: 6, udp: 17 } as const;
/**
 * The TCP states /proc/net/tcp lists: 1..11 (ESTABLISHED..CLOSING) and request sockets
 * (NEW_SYN_RECV, 12, reported as SYN_RECV). Not 13 (BOUND_INACTIVE: bound, never listened),
 * which /proc/net/tcp and `ss -a` leave out.
 */
export const TCP_STATES = 0x1ffe;
/** ct_diag_sock.flags (native/ct_sock.h): what, beyond its addresses, decides whether a kernel
 *  lookup can pick a socket. V6ONLY is meaningful only with V6ONLY_KNOWN (listening and unbound
 *  IPv6 sockets). */
export const DIAG_F = { boundDev: 1, v6only: 2, v6onlyKnown: 4 } as const;
/** UDP: connected (ESTABLISHED, 1) and unconnected (CLOSE, 7) — every hashed UDP socket. */
export const UDP_STATES = (1 << 1) | (1 << 7);

/** Decodes a dumpSockets buffer. Addresses are interned: tables repeat few of them. */
export function decodeSockets(buf: Uint8Array, proto: SocketProto, family: 4 | 6, out: SocketEntry[] = []): SocketEntry[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const names = new Map<string, string>();
  const addr = (off: number): string => {
    // Key on the raw bytes (fast path for IPv4: one 32-bit word).
    const key = family === 4 ? String(view.getUint32(off)) : buf.subarray(off, off + 16).toString();
    let a = names.get(key);
    if (a === undefined) names.set(key, (a = family === 4 ? formatIPv4(buf, off) : formatIPv6(buf, off)));
    return a;
  };
  const nameOf = proto === 'tcp' ? tcpStateName : udpStateName;
  for (let base = 0; base + DIAG_SOCK_SIZE <= buf.byteLength; base += DIAG_SOCK_SIZE) {
    const stateNum = buf[base + 2]!;
    out.push({
      proto,
      family,
      localAddr: addr(base + 24),
      localPort: view.getUint16(base + 4, true),
      remoteAddr: addr(base + 40),
      remotePort: view.getUint16(base + 6, true),
      state: nameOf(stateNum),
      stateNum,
      uid: view.getUint32(base + 8, true),
      inode: view.getUint32(base + 12, true),
      txQueue: view.getUint32(base + 20, true),
      rxQueue: view.getUint32(base + 16, true),
      diagFlags: buf[base + 3]!,
    });
  }
  return out;
}

/** Every TCP (and, when asked, UDP) socket of this network namespace, through sock_diag. */
export function dumpSocketTable(opts: { tcp?: boolean; udp?: boolean; families?: readonly (4 | 6)[]; tcpStates?: number } = {}, addon: () => Addon = getAddon): SocketEntry[] {
  const a = addon();
  const out: SocketEntry[] = [];
  const protos: SocketProto[] = [];
  if (opts.tcp ?? true) protos.push('tcp');
  if (opts.udp ?? false) protos.push('udp');
  for (const proto of protos)
    for (const family of opts.families ?? [4, 6])
      decodeSockets(a.dumpSockets(AF[family], PROTO[proto], proto === 'tcp' ? (opts.tcpStates ?? TCP_STATES) : UDP_STATES), proto, family, out);
  return out;
}

/**
 * How many sockets are in each state (index: state number), counted in the addon during the dump:
 * for counting by state, nothing per socket reaches JavaScript.
 */
export function countSocketStates(opts: { tcp?: boolean; udp?: boolean; families?: readonly (4 | 6)[] } = {}, addon: () => Addon = getAddon): { proto: SocketProto; counts: Uint32Array }[] {
  const a = addon();
  const out: { proto: SocketProto; counts: Uint32Array }[] = [];
  const protos: SocketProto[] = [];
  if (opts.tcp ?? true) protos.push('tcp');
  if (opts.udp ?? false) protos.push('udp');
  for (const proto of protos)
    for (const family of opts.families ?? [4, 6]) out.push({ proto, counts: a.countSockets(AF[family], PROTO[proto], proto === 'tcp' ? TCP_STATES : UDP_STATES) });
  return out;
}
