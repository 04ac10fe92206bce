// sock_diag socket lookups from TypeScript (for flows whose NEW event was not seen).
import { addrBytes } from '../core/addr.js';
import type { FlowEnd } from '../core/flow.js';
import type { SockInfo } from '../core/owners.js';
import { getAddon, type Addon } from './addon.js';

const AF = { 4: 2, 6: 10 } as const;

/**
 * Writes an address as the 16 bytes the addon takes (IPv4 in the first 4) into `out`; false when
 * it is not an address. Dotted IPv4, the per-connection case, is parsed without allocating.
 */
export function writeAddr16(addr: string, family: 4 | 6, out: Buffer): boolean {
  out.fill(0);
  if (family === 4) {
    let part = 0;
    let n = 0;
    let digits = 0;
    for (let i = 0; i < addr.length; i++) {
      const c = addr.charCodeAt(i);
      if (c === 46 /* . */) {
        if (digits === 0 || n > 255 || part > 2) return false;
        out[part++] = n;
        n = 0;
        digits = 0;
      } else if (c >= 48 && c <= 57 && digits < 3) {
        n = n * 10 + (c - 48);
        digits++;
      } else {
        return writeSlow(addr, family, out);
      }
    }
    if (part !== 3 || digits === 0 || n > 255) return writeSlow(addr, family, out);
    out[3] = n;
    return true;
  }
  return writeSlow(addr, family, out);
}

function writeSlow(addr: string, family: 4 | 6, out: Buffer): boolean {
  const a = addrBytes(addr);
  if (!a) return false;
  if (family === 6 && a.family === 4) {
    // conntrack's IPv6 flows never carry v4-mapped addresses; kept for completeness.
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(a.bytes, 12);
  } else out.set(a.bytes, 0);
  return true;
}

/** Scratch buffers for one synchronous addon call at a time. */
const LOCAL = Buffer.alloc(16);
const REMOTE = Buffer.alloc(16);

/** Lookups in this namespace, or (nsFd) through a sock_diag socket opened in another one. */
export function makeSocketLookup(addon: () => Addon = getAddon, nsFd?: () => number | null): (family: 4 | 6, proto: number, end: FlowEnd) => SockInfo | null {
  return (family, proto, end) => {
    if ((proto !== 6 && proto !== 17) || end.localPort === null) return null;
    if (!writeAddr16(end.localAddr, family, LOCAL) || !writeAddr16(end.remoteAddr, family, REMOTE)) return null;
    const local = LOCAL;
    const remote = REMOTE;
    try {
      if (!nsFd) return addon().lookupSocket(AF[family], proto, local, end.localPort, remote, end.remotePort ?? 0);
      const fd = nsFd();
      return fd === null ? null : addon().lookupSocket(AF[family], proto, local, end.localPort, remote, end.remotePort ?? 0, fd);
    } catch {
      return null; // a failed lookup leaves the end unattributed; it is retried later
    }
  };
}
