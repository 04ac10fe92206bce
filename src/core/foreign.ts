// Flows of processes in other network namespaces on this host (containers): the host's conntrack
// sees them as forwarded (masqueraded outbound, DNAT'd inbound, or routed between containers).
// The inner address of such a flow (orig source outbound, reply source inbound) names the
// namespace that holds the socket; the exact tuple is looked up there and the inode mapped to a
// process living in that namespace. Pure: namespaces and resolvers come in through ForeignDeps.
import type { FlowRecord } from '../netlink/record.js';
import { endOf, type FlowEnd } from './flow.js';
import type { Owner, OwnerResolver, SockInfo } from './owners.js';

export interface ForeignDeps {
  /** Namespaces other than ours where `addr` is configured. */
  namespacesOf(addr: string): number[];
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

  /**
   * The socket and owner of one foreign end: exact lookup in each candidate namespace (the
   * listener / bound socket for a server end), then inode → pid among that namespace's processes.
   */
  resolve(family: 4 | 6, proto: number, end: FlowEnd, netns: number[]): { netns: number; sock: SockInfo | null; owner: Owner | null; reason: UnattributedReason | null } {
    let first: { netns: number; sock: SockInfo | null; owner: Owner | null; reason: UnattributedReason | null } | null = null;
    for (const ns of netns) {
      const res = this.deps.resolver(ns);
      if (!res) {
        first ??= { netns: ns, sock: null, owner: null, reason: 'no_permission' };
        continue;
      }
      this.stats.lookups++;
      const sock = res.socketFor(family, proto, end, null);
      if (!sock) {
        first ??= { netns: ns, sock: null, owner: null, reason: 'not_found_in_netns' };
        continue;
      }
      res.resolveInodes([sock.inode]);
      let owner = res.ownerOf(sock);
      let s = sock;
      if (owner?.pid == null && end.side === 'reply' && sock.state !== 10) {
        // An accepted socket already closed: the listener's process owns the service.
        const l = res.serviceSocket(family, proto, end);
        if (l) {
          res.resolveInodes([l.inode]);
          owner = res.ownerOf(l);
          s = l;
        }
      }
      if (owner?.pid != null) this.stats.found++;
      return { netns: ns, sock: s, owner, reason: owner?.pid != null ? null : 'no_process' };
    }
    return first ?? { netns: netns[0] ?? 0, sock: null, owner: null, reason: 'not_found_in_netns' };
  }
}
