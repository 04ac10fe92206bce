// Command-line filters → the accounting's Filters and a kernel-side dump filter. Pure.
import { EXIT, UserError } from '../errors.js';
import type { DumpFilter } from '../netlink/source.js';
import type { Filters } from './accounting.js';
import { cidrMatcher, parseCidr, type Cidr } from './addr.js';

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
    f.host = cidrMatcher(cidrs);
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

/** What the kernel can filter for us: family, and protocol when a family is fixed. */
export function toKernelFilter(a: FilterArgs): DumpFilter {
  const k: DumpFilter = {};
  if (a['4']) k.family = 4;
  if (a['6']) k.family = 6;
  if (k.family && (a.proto === 'tcp' || a.proto === 'udp')) k.proto = PROTO_NUMBERS[a.proto]![0]!;
  if (k.family && a.proto === 'icmp') k.proto = k.family === 4 ? 1 : 58;
  return k;
}
