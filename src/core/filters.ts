// Command-line filters → the accounting's Filters and a kernel-side dump filter. Pure.
import { EXIT, UserError } from '../errors.js';
import type { DumpFilter } from '../netlink/source.js';
import type { FlowRecord } from '../netlink/record.js';
import type { FlowEnd } from './flow.js';
import type { Owner } from './owners.js';
import { BlockList } from 'node:net';
import { addrBytes, parseCidr, type Cidr } from './addr.js';

/** What a run counts: flows and ends these exclude are never counted in any row or bucket. */
export interface Filters {
  proto?: number[];
  ports?: number[];
  host?: (addr: string) => boolean;
  pids?: number[];
  users?: (uid: number | null, user: string | null) => boolean;
  family?: 4 | 6;
}

export interface FilterArgs {
  proto?: string;
  port?: number[];
  host?: string[];
  pid?: number[];
  user?: string[];
  '4'?: boolean;
  '6'?: boolean;
}

const PROTO_NUMBERS: Record<string, number[]> = { tcp: [6], udp: [17], icmp: [1, 58] };

export function toFilters(a: FilterArgs, uidOf: (name: string) => number | null): Filters {
  const f: Filters = {};
  if (a.proto) f.proto = PROTO_NUMBERS[a.proto] ?? [];
  if (a.port?.length) f.ports = a.port;
  if (a.host?.length) {
    const cidrs: Cidr[] = a.host.map((h) => {
      const c = parseCidr(h);
      if (!c) throw new UserError(`--host: '${h}' is not an address or ADDR/PREFIX`, EXIT.usage, 'ERR_USAGE');
      return c;
    });
    f.host = hostMatcher(cidrs);
  }
  if (a.pid?.length) f.pids = a.pid;
  if (a.user?.length) {
    const uids = new Set<number>();
    const names = new Set<string>();
    for (const u of a.user) {
      if (/^\d+$/.test(u)) uids.add(Number(u));
      else {
        names.add(u);
        const uid = uidOf(u);
        if (uid !== null) uids.add(uid);
      }
    }
    f.users = (uid, user) => (uid !== null && uids.has(uid)) || (user !== null && names.has(user));
  }
  if (a['4']) f.family = 4;
  if (a['6']) f.family = 6;
  return f;
}

/** "1.2.3.4" / "2001:db8::1" from an address's bytes (the form net.BlockList takes). */
function addrText(family: 4 | 6, b: Uint8Array): string {
  if (family === 4) return Array.from(b).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(':');
}

/**
 * Prefix matching by Node's own `net.BlockList` (subnets per family). Addresses are normalised
 * first (brackets, v4-mapped IPv6 as IPv4, as parseCidr does for the prefixes), and each answer is
 * remembered: a refresh asks about the same few remotes again and again.
 */
export function hostMatcher(cidrs: readonly Cidr[]): (addr: string) => boolean {
  const list = new BlockList();
  for (const c of cidrs) list.addSubnet(addrText(c.family, c.bytes), c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
  const cache = new Map<string, boolean>();
  return (addr) => {
    let hit = cache.get(addr);
    if (hit === undefined) {
      const a = addrBytes(addr);
      hit = a !== null && list.check(addrText(a.family, a.bytes), a.family === 4 ? 'ipv4' : 'ipv6');
      if (cache.size > 65_536) cache.clear();
      cache.set(addr, hit);
    }
    return hit;
  };
}

/** More kernel-side dumps than this and one unfiltered dump is cheaper. */
const MAX_KERNEL_DUMPS = 16;

/**
 * The dumps that fetch exactly what the filters can keep, filtered in the kernel: family, protocol
 * and orig-tuple ports (the kernel filters ports only with a family and a protocol, so
 * `--port 443` becomes one dump per family × tcp/udp × source/destination port). A flow has the port
 * "at either end" iff its orig tuple has it as source or destination. Returns `[{}]` (everything)
 * when nothing narrows the dump or when it would take too many dumps.
 */
export function toKernelFilters(a: FilterArgs): DumpFilter[] {
  const families: (4 | 6)[] = a['4'] ? [4] : a['6'] ? [6] : [4, 6];
  const ports = a.port ?? [];
  if (!a.proto && !ports.length) return families.length === 1 ? [{ family: families[0]! }] : [{}];
  const out: DumpFilter[] = [];
  for (const family of families) {
    const protos = a.proto === 'icmp' ? [family === 4 ? 1 : 58] : a.proto ? [PROTO_NUMBERS[a.proto]![0]!] : [6, 17];
    for (const proto of protos) {
      if (!ports.length || proto === 1 || proto === 58) {
        out.push({ family, proto });
        continue;
      }
      for (const port of ports) out.push({ family, proto, dport: port }, { family, proto, sport: port });
    }
  }
  // ICMP has no ports: with --port and no --proto it cannot match, and is not fetched.
  return out.length > MAX_KERNEL_DUMPS ? [{}] : out;
}

/** Whether a record is one the kernel filters would have returned (events are not filtered). */
export function matchesKernelFilters(filters: DumpFilter[], r: { family: 4 | 6; proto: number; orig: { sport: number | null; dport: number | null } }): boolean {
  return filters.some(
    (f) =>
      (f.family === undefined || f.family === r.family) &&
      (f.proto === undefined || f.proto === r.proto) &&
      (f.dport === undefined || f.dport === r.orig.dport) &&
      (f.sport === undefined || f.sport === r.orig.sport),
  );
}

/**
 * Whether a flow passes the filters, judged from the given local ends (one for a per-end view, all
 * of a flow's for a per-flow view; none for a forwarded flow, whose "remote" is either address).
 * The one place filter semantics live: `top` and `flows` both call it.
 */
export function flowPasses(f: Filters, r: Pick<FlowRecord, 'family' | 'proto' | 'orig'>, ends: { end: FlowEnd; owner: Owner | null }[]): boolean {
  if (f.family && r.family !== f.family) return false;
  if (f.proto && !f.proto.includes(r.proto)) return false;
  if (f.ports && ![r.orig.sport, r.orig.dport].some((p) => p !== null && f.ports!.includes(p))) return false;
  if (f.host) {
    const remotes = ends.length ? ends.map((e) => e.end.remoteAddr) : [r.orig.src, r.orig.dst];
    if (!remotes.some((a) => f.host!(a))) return false;
  }
  if (f.pids && !ends.some((e) => e.owner?.pid != null && f.pids!.includes(e.owner.pid))) return false;
  if (f.users && !ends.some((e) => f.users!(e.owner?.uid ?? null, e.owner?.user ?? null))) return false;
  return true;
}
