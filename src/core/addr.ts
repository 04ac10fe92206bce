// Address and CIDR matching for `--host`, pure. Addresses are compared as bytes, so every text
// form (compressed IPv6, upper case, v4-mapped) matches the same address.
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  family: 4 | 6;
  /** Network address bytes (4 or 16), host bits cleared. */
  bytes: Uint8Array;
  prefix: number;
  /** The text the user gave, for messages. */
  text: string;
}

function v4Bytes(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map(Number));
}

function v6Bytes(s: string): Uint8Array {
  const out = new Uint8Array(16);
  let text = s;
  // A dotted IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4 = v4Bytes(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

/** Bytes of an address in any valid text form; v4-mapped IPv6 comes back as its 4 IPv4 bytes. */
export function addrBytes(addr: string): { family: 4 | 6; bytes: Uint8Array } | null {
  const a = addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  if (isIPv4(a)) return { family: 4, bytes: v4Bytes(a) };
  if (!isIPv6(a) || a.includes('%')) return null;
  const b = v6Bytes(a);
  if (isV4Mapped(b)) return { family: 4, bytes: b.slice(12) };
  return { family: 6, bytes: b };
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * `ADDR` or `ADDR/PREFIX` → Cidr; null when it is not valid. A v4-mapped network
 * (`::ffff:10.0.0.0/104`) is treated as the IPv4 network it denotes (10.0.0.0/8).
 */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const a = addrBytes(addr);
  if (!a) return null;
  const rawFamily = isIPv4(addr) ? 4 : 6;
  const max = rawFamily === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > max) return null;
  }
  if (rawFamily === 6 && a.family === 4) {
    if (prefix < 96) return null; // wider than the v4-mapped block: ambiguous, refuse
    prefix -= 96;
  }
  const bytes = a.bytes.slice();
  for (let bit = prefix; bit < bytes.length * 8; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { family: a.family, bytes, prefix, text };
}

/** True when `addr` lies in `cidr`; IPv4 addresses match in their v4-mapped IPv6 form too. */
export function inCidr(addr: string, cidr: Cidr): boolean {
  const a = addrBytes(addr);
  if (!a || a.family !== cidr.family) return false;
  const full = cidr.prefix >> 3;
  for (let i = 0; i < full; i++) if (a.bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a.bytes[full]! & mask) === cidr.bytes[full]);
}

/** A matcher over several CIDRs (any of them), caching per address string: tables repeat addresses. */
export function cidrMatcher(cidrs: readonly Cidr[]): (addr: string) => boolean {
  const cache = new Map<string, boolean>();
  return (addr) => {
    let hit = cache.get(addr);
    if (hit === undefined) {
      hit = cidrs.some((c) => inCidr(addr, c));
      cache.set(addr, hit);
    }
    return hit;
  };
}
