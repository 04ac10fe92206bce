// Which socket the kernel's sock_diag lookup would return for a flow end, answered from one dump
// of every socket where the answer is certain, so a snapshot of 100k flows does not make 100k
// lookups. Certain: the end's own socket (exact 4-tuple, held by one socket), or, when there is
// none, the one listener (TCP) / unconnected socket (UDP) that can take the end's local address
// and port, or none at all. Not certain, so left to a lookup: two sockets on one 4-tuple, two or
// more sockets that could take the end (an SO_REUSEPORT group, or sockets the kernel ranks by
// score: the member it picks depends on the 4-tuple's hash), a socket bound to a device, an IPv6
// socket whose IPV6_V6ONLY the dump did not tell. Pure.
import type { FlowEnd } from './flow.js';
import type { SockInfo } from './owners.js';
import type { SocketEntry } from '../proc/parse.js';

/** "The kernel would find no socket": OwnerResolver.socketFor then makes no lookup of its own. */
export const NO_SOCKET: SockInfo = Object.freeze({ inode: 0, uid: 0, state: 0 });

const TCP_LISTEN = 10;
/** DIAG_F in netlink/sockets.ts (kept here as numbers: this module is pure). */
const BOUND_DEV = 1;
const V6ONLY = 2;
const V6ONLY_KNOWN = 4;

type Match = 'yes' | 'no' | 'maybe';

function key(family: 4 | 6, proto: number, localAddr: string, localPort: number | null, remoteAddr: string, remotePort: number | null): string {
  return `${family}|${proto}|${localAddr}|${localPort}|${remoteAddr}|${remotePort}`;
}

/** Whether socket `s` (a listener or unconnected socket on the end's port) can take local address `addr` of `family`. */
function canTake(s: SocketEntry, family: 4 | 6, addr: string): Match {
  const flags = s.diagFlags;
  if (flags === undefined) return 'maybe'; // not from sock_diag: nothing known of devices and v6only
  let m: Match;
  if (s.family === family) m = s.localAddr === addr || s.localAddr === (family === 4 ? '0.0.0.0' : '::') ? 'yes' : 'no';
  else if (s.family === 6 && family === 4) {
    if (s.localAddr !== '::' && s.localAddr !== `::ffff:${addr}`) m = 'no';
    else if (!(flags & V6ONLY_KNOWN)) m = 'maybe';
    else m = flags & V6ONLY ? 'no' : 'yes';
  } else m = 'no';
  if (m === 'yes' && flags & BOUND_DEV) m = 'maybe'; // found only by a lookup on that device
  return m;
}

export class SocketIndex {
  /** Exact 4-tuples; null when two sockets share one. */
  private readonly exact = new Map<string, SockInfo | null>();
  /** Listeners (TCP) and unconnected sockets (UDP) by protocol × 65536 + port. */
  private readonly bound = new Map<number, SocketEntry[]>();
  /** Protocol × 65536 + local port of every socket indexed (exact or bound). */
  private readonly ports = new Set<number>();

  constructor(entries: Iterable<SocketEntry>) {
    const put = (k: string, v: SockInfo) => this.exact.set(k, this.exact.has(k) ? null : v);
    for (const e of entries) {
      const proto = e.proto === 'tcp' ? 6 : 17;
      this.ports.add(proto * 65536 + e.localPort);
      if (e.remotePort === 0) {
        if (proto === 17 || e.stateNum === TCP_LISTEN) {
          const k = proto * 65536 + e.localPort;
          const list = this.bound.get(k);
          if (list) list.push(e);
          else this.bound.set(k, [e]);
        }
        continue;
      }
      const v: SockInfo = { inode: e.inode, uid: e.uid, state: e.stateNum };
      put(key(e.family, proto, e.localAddr, e.localPort, e.remoteAddr, e.remotePort), v);
      // IPv4 connections on dual-stack IPv6 sockets are listed under their IPv4 form too.
      if (e.family === 6 && e.localAddr.startsWith('::ffff:') && e.remoteAddr.startsWith('::ffff:') && e.localAddr.includes('.'))
        put(key(4, proto, e.localAddr.slice(7), e.localPort, e.remoteAddr.slice(7), e.remotePort), v);
    }
  }

  /** Whether any socket of this protocol (TCP 6, UDP 17) has this local port: if not, find says NO_SOCKET. */
  usesPort(proto: number, port: number): boolean {
    return this.ports.has(proto * 65536 + port);
  }

  /**
   * The socket a lookup of this end would return; NO_SOCKET when it would return none; null when
   * only a lookup can tell (see the module comment).
   */
  find(family: 4 | 6, proto: number, end: FlowEnd): SockInfo | null {
    if ((proto === 6 || proto === 17) && end.localPort !== null && !this.usesPort(proto, end.localPort)) return NO_SOCKET;
    const own = this.exact.get(key(family, proto, end.localAddr, end.localPort, end.remoteAddr, end.remotePort));
    if (own !== undefined) return own;
    if ((proto !== 6 && proto !== 17) || end.localPort === null) return null;
    let found: SocketEntry | null = null;
    for (const s of this.bound.get(proto * 65536 + end.localPort) ?? []) {
      const m = canTake(s, family, end.localAddr);
      if (m === 'maybe' || (m === 'yes' && found)) return null;
      if (m === 'yes') found = s;
    }
    return found ? { inode: found.inode, uid: found.uid, state: found.stateNum } : NO_SOCKET;
  }
}
