// Flows of processes in other network namespaces on this host (containers): the host's conntrack
// sees them as forwarded (masqueraded outbound, DNAT'd inbound, or routed between containers).
// The inner address of such a flow (orig source outbound, reply source inbound) names the
// namespace that holds the socket; the exact tuple is looked up there and the inode mapped to a
// process living in that namespace. Pure: namespaces and resolvers come in through ForeignDeps.
import { formatIPv4, formatIPv6, type FlowRecord } from '../netlink/record.js';
import { endOf, type FlowEnd } from './flow.js';
import { SK_LISTEN, type Owner, type OwnerResolver, type SockInfo } from './owners.js';

export interface ForeignDeps {
  /** Namespaces other than ours where `addr` is configured. */
  namespacesOf(addr: string): number[];
  /** Every address namespacesOf knows now (refreshed if stale), for snapshots; absent: ask namespacesOf. */
  addresses?(): string[];
  /** The owner resolver working inside namespace `netns` (null: cannot enter it). */
  resolver(netns: number): OwnerResolver | null;
}

/** Why an end has no process (the `unattributed.unknown.reasons` keys). */
export type UnattributedReason = 'no_socket' | 'not_found_in_netns' | 'no_process' | 'no_permission';

export interface ForeignEnd {
  end: FlowEnd;
  /** Candidate namespaces (usually one); the one that held the socket once found. */
  netns: number[];
}

export interface ForeignStats {
  ends: number;
  lookups: number;
  found: number;
}

export class ForeignAttributor {
  readonly stats: ForeignStats = { ends: 0, lookups: 0, found: 0 };

  constructor(private readonly deps: ForeignDeps) {}

  /**
   * For a one-shot snapshot: whether endsOf could find an end at the address in a record (`off`
   * into `buf`), with the other namespaces' addresses as they are now (IPv4 ones compared as
   * numbers, no text made). endsOf itself stays the answer for the flows this lets through.
   */
  snapshot(): (view: DataView, buf: Uint8Array, off: number, family: 4 | 6) => boolean {
    const addrs = this.deps.addresses?.() ?? null;
    if (!addrs) return (_v, buf, off, family) => this.deps.namespacesOf(family === 4 ? formatIPv4(buf, off) : formatIPv6(buf, off)).length > 0;
    const v4 = new Set<number>();
    const v6 = new Set<string>();
    for (const a of addrs) {
      const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
      if (m) v4.add(((+m[1]! << 24) | (+m[2]! << 16) | (+m[3]! << 8) | +m[4]!) >>> 0);
      else v6.add(a);
    }
    return (view, buf, off, family) => (family === 4 ? v4.size > 0 && v4.has(view.getUint32(off)) : v6.size > 0 && v6.has(formatIPv6(buf, off)));
  }

  /** The ends of a flow with no end in our namespace that sit in another local namespace. */
  endsOf(r: FlowRecord): ForeignEnd[] {
    const out: ForeignEnd[] = [];
    const o = this.deps.namespacesOf(r.orig.src);
    if (o.length) out.push({ end: endOf(r.orig, 'orig'), netns: o });
    if (r.reply) {
      const p = this.deps.namespacesOf(r.reply.src);
      if (p.length) out.push({ end: endOf(r.reply, 'reply'), netns: p });
    }
    this.stats.ends += out.length;
    return out;
  }

  /** The socket and owner of one foreign end (see resolveAll). */
  resolve(family: 4 | 6, proto: number, end: FlowEnd, netns: number[]): ForeignResult {
    return this.resolveAll([{ family, proto, end, netns }])[0]!;
  }

  /**
   * Sockets and owners of many foreign ends at once: first every exact lookup in the candidate
   * namespaces (a socket can be gone within a millisecond, so lookups come before any /proc
   * search), then one inode → pid search per namespace among its processes, then the listener /
   * bound socket for server ends whose own socket has no process any more.
   */
  resolveAll(items: { family: 4 | 6; proto: number; end: FlowEnd; netns: number[] }[]): ForeignResult[] {
    const out: ForeignResult[] = [];
    const perNs = new Map<number, { res: OwnerResolver; inodes: number[] }>();
    for (const it of items) {
      let r: ForeignResult | null = null;
      let first: ForeignResult | null = null;
      for (const ns of it.netns) {
        const res = this.deps.resolver(ns);
        if (!res) {
          first ??= { netns: ns, sock: null, owner: null, reason: 'no_permission' };
          continue;
        }
        this.stats.lookups++;
        const sock = res.socketFor(it.family, it.proto, it.end, null);
        if (!sock) continue;
        r = { netns: ns, sock, owner: null, reason: 'no_process' };
        let g = perNs.get(ns);
        if (!g) perNs.set(ns, (g = { res, inodes: [] }));
        g.inodes.push(sock.inode);
        break;
      }
      out.push(r ?? first ?? { netns: it.netns[0] ?? 0, sock: null, owner: null, reason: 'not_found_in_netns' });
    }
    for (const g of perNs.values()) g.res.resolveInodes(g.inodes);
    const fallback = new Map<number, { res: OwnerResolver; inodes: number[] }>();
    const late: number[] = [];
    out.forEach((r, i) => {
      if (!r.sock) return;
      const res = perNs.get(r.netns)!.res;
      r.owner = res.ownerOf(r.sock);
      const it = items[i]!;
      if (r.owner?.pid == null && it.end.side === 'reply' && r.sock.state !== SK_LISTEN) {
        // An accepted socket already closed: the listener's process owns the service.
        const l = res.serviceSocket(it.family, it.proto, it.end);
        if (l) {
          r.sock = l;
          let g = fallback.get(r.netns);
          if (!g) fallback.set(r.netns, (g = { res, inodes: [] }));
          g.inodes.push(l.inode);
          late.push(i);
        }
      }
    });
    for (const g of fallback.values()) g.res.resolveInodes(g.inodes);
    for (const i of late) out[i]!.owner = perNs.get(out[i]!.netns)!.res.ownerOf(out[i]!.sock);
    for (const r of out) {
      if (r.owner?.pid != null) {
        r.reason = null;
        this.stats.found++;
      }
    }
    return out;
  }
}

export interface ForeignResult {
  netns: number;
  sock: SockInfo | null;
  owner: Owner | null;
  reason: UnattributedReason | null;
}
