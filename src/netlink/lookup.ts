// sock_diag socket lookups from TypeScript (for flows whose NEW event was not seen).
import { addrBytes } from '../core/addr.js';
import type { FlowEnd } from '../core/flow.js';
import type { SockInfo } from '../core/owners.js';
import { getAddon, type Addon } from './addon.js';

const AF = { 4: 2, 6: 10 } as const;

function addr16(addr: string, family: 4 | 6): Buffer | null {
  const a = addrBytes(addr);
  if (!a) return null;
  const b = Buffer.alloc(16);
  if (family === 6 && a.family === 4) {
    // conntrack's IPv6 flows never carry v4-mapped addresses; kept for completeness.
    b[10] = 0xff;
    b[11] = 0xff;
    b.set(a.bytes, 12);
  } else b.set(a.bytes, 0);
  return b;
}

/** Lookups in this namespace, or (nsFd) through a sock_diag socket opened in another one. */
export function makeSocketLookup(addon: () => Addon = getAddon, nsFd?: () => number | null): (family: 4 | 6, proto: number, end: FlowEnd) => SockInfo | null {
  return (family, proto, end) => {
    if ((proto !== 6 && proto !== 17) || end.localPort === null) return null;
    const local = addr16(end.localAddr, family);
    const remote = addr16(end.remoteAddr, family);
    if (!local || !remote) return null;
    try {
      if (!nsFd) return addon().lookupSocket(AF[family], proto, local, end.localPort, remote, end.remotePort ?? 0);
      const fd = nsFd();
      return fd === null ? null : addon().lookupSocket(AF[family], proto, local, end.localPort, remote, end.remotePort ?? 0, fd);
    } catch {
      return null; // a failed lookup leaves the end unattributed; it is retried later
    }
  };
}
