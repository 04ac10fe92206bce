// Aggregation for `ctacct states`: sockets or conntrack flows → counts per state, optionally grouped.
// Pure: records in, results out; owners and local addresses are handed in by the command.
import type { FlowRecord } from '../netlink/record.js';
import { ctTcpStateName, IPS, CT_TCP_STATES } from '../netlink/record.js';
import type { SocketEntry } from '../proc/parse.js';
import { TCP_STATE_ORDER } from '../proc/parse.js';
import { cidrMatcher, type Cidr } from './addr.js';

export type StatesSource = 'sockets' | 'conntrack';
export type StatesBy = 'state' | 'port' | 'process' | 'remote';

/** Who holds a socket: a process, nobody (kernel-owned: TIME_WAIT, orphans), or someone we may not see. */
export type Owner = { pid: number; comm: string; uid: number; shared: boolean } | 'none' | 'unknown';

/** One socket or flow, reduced to what counting needs. */
export interface StateItem {
  proto: 'tcp' | 'udp';
  state: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  /** The port the connection was made to: what `grep :80` means (see servicePort). */
  servicePort: number;
  owner: Owner;
  /** How many sockets or flows this item stands for (default 1): counting by state alone shares one item per state. */
  count?: number;
}

export interface StateCounts {
  states: Record<string, number>;
  total: number;
}

export interface StatesGroup extends StateCounts {
  key: string;
  /** UDP counts of this group, with --udp. */
  udp?: StateCounts;
  /** --by process: the owner (null for `-` and `?`). */
  pid?: number | null;
  comm?: string | null;
  shared?: boolean;
}

export interface StatesResult extends StateCounts {
  source: StatesSource;
  by?: Exclude<StatesBy, 'state'>;
  groups?: StatesGroup[];
  udp?: StateCounts;
  /** --by process: sockets held by processes the user may not inspect (run with sudo to see all). */
  unattributed?: number;
  /** Groups left out by --top. */
  omitted?: number;
}

export interface StatesQuery {
  by: StatesBy;
  /** Include LISTEN (TCP) and unconnected (UDP) sockets. */
  listening: boolean;
  udp: boolean;
  /** Either end's port. */
  ports?: readonly number[];
  /** Remote end in any of these. */
  hosts?: readonly Cidr[];
  top?: number;
}

/** Linux's default net.ipv4.ip_local_port_range: where client (ephemeral) ports come from. */
export const DEFAULT_EPHEMERAL: readonly [number, number] = [32768, 60999];

/**
 * The port a socket "is about", so `--by port` answers `netstat -ant | grep :80` (both ends of a
 * loopback connection to :80 count under 80): the local port when something listens there or
 * there is no peer; else, when exactly one end's port is ephemeral, the other one (a server
 * socket whose listener has closed keeps its port); else the remote port (a client).
 */
export function servicePort(
  localPort: number,
  remotePort: number,
  listeningPorts: ReadonlySet<number>,
  ephemeral: readonly [number, number] = DEFAULT_EPHEMERAL,
): number {
  if (listeningPorts.has(localPort) || remotePort === 0) return localPort;
  const eph = (p: number) => p >= ephemeral[0] && p <= ephemeral[1];
  if (eph(remotePort) && !eph(localPort)) return localPort;
  return remotePort;
}

/**
 * Sockets → items. `owners` (inode → pid list, ascending) and `procs` come from the reader; omit
 * them unless grouping by process. `ephemeral` is the host's ip_local_port_range.
 */
export function socketItems(
  entries: readonly SocketEntry[],
  owners?: ReadonlyMap<number, readonly number[]>,
  procs?: ReadonlyMap<number, { comm: string; uid: number }>,
  ephemeral: readonly [number, number] = DEFAULT_EPHEMERAL,
): StateItem[] {
  const listening = new Set<number>();
  for (const e of entries) if ((e.proto === 'tcp' && e.stateNum === 10) || (e.proto === 'udp' && e.stateNum === 7)) listening.add(e.localPort);
  return entries.map((e) => {
    let owner: Owner = 'unknown';
    if (e.inode === 0) owner = 'none';
    else if (owners) {
      const pids = owners.get(e.inode);
      const pid = pids?.[0];
      const p = pid !== undefined ? procs?.get(pid) : undefined;
      if (pid !== undefined && p) owner = { pid, comm: p.comm, uid: p.uid, shared: (pids?.length ?? 0) > 1 };
    }
    return {
      proto: e.proto,
      state: e.state,
      localPort: e.localPort,
      remoteAddr: e.remoteAddr,
      remotePort: e.remotePort,
      servicePort: servicePort(e.localPort, e.remotePort, listening, ephemeral),
      owner,
    };
  });
}

/** Conntrack's UDP "states": what `conntrack -L` shows in brackets. */
export function ctUdpStateName(status: number | null): string {
  const s = status ?? 0;
  if (s & IPS.ASSURED) return 'ASSURED';
  if (s & IPS.SEEN_REPLY) return 'REPLIED';
  return 'UNREPLIED';
}

/**
 * Flows → items (TCP, and UDP when asked). The remote end is the peer of the local end:
 * outbound (orig source is local) → orig destination; inbound, also after DNAT → orig source;
 * forwarded (no local end) → orig source, the initiator. `localAddrs` are this namespace's addresses.
 */
export function flowItems(flows: readonly FlowRecord[], localAddrs: ReadonlySet<string>): StateItem[] {
  const out: StateItem[] = [];
  for (const f of flows) {
    if (f.proto !== 6 && f.proto !== 17) continue;
    const o = f.orig;
    const outbound = localAddrs.has(o.src);
    const inbound = !outbound && f.reply !== null && localAddrs.has(f.reply.src);
    const remoteAddr = outbound ? o.dst : o.src;
    const remotePort = (outbound ? o.dport : o.sport) ?? 0;
    const localPort = (outbound ? o.sport : inbound ? f.reply!.sport : o.dport) ?? 0;
    out.push({
      proto: f.proto === 6 ? 'tcp' : 'udp',
      state: f.proto === 6 ? (ctTcpStateName(f.tcpState) ?? 'NONE') : ctUdpStateName(f.status),
      localPort,
      remoteAddr,
      remotePort,
      servicePort: o.dport ?? 0,
      owner: 'unknown',
    });
  }
  return out;
}

const bump = (c: StateCounts, state: string, n: number) => {
  c.states[state] = (c.states[state] ?? 0) + n;
  c.total += n;
};

function keyOf(item: StateItem, by: Exclude<StatesBy, 'state'>): string {
  switch (by) {
    case 'port':
      return String(item.servicePort);
    case 'remote':
      return item.remoteAddr;
    case 'process':
      return typeof item.owner === 'object' ? String(item.owner.pid) : item.owner === 'none' ? '-' : '?';
  }
}

function compareKeys(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (a !== '' && b !== '' && Number.isInteger(na) && Number.isInteger(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Counts items per state (and per group), after filters; groups sorted by total, largest first. */
export function countStates(items: readonly StateItem[], source: StatesSource, q: StatesQuery): StatesResult {
  const ports = q.ports && q.ports.length ? new Set(q.ports) : null;
  const hostOk = q.hosts && q.hosts.length ? cidrMatcher(q.hosts) : null;
  const result: StatesResult = { source, states: {}, total: 0 };
  if (q.udp) result.udp = { states: {}, total: 0 };
  const by = q.by === 'state' ? null : q.by;
  const groups = new Map<string, StatesGroup>();
  let unattributed = 0;
  for (const it of items) {
    if (it.proto === 'udp' && !q.udp) continue;
    if (!q.listening && (it.state === 'LISTEN' || (it.proto === 'udp' && it.state === 'UNCONN'))) continue;
    if (ports && !ports.has(it.localPort) && !ports.has(it.remotePort)) continue;
    if (hostOk && !hostOk(it.remoteAddr)) continue;
    const n = it.count ?? 1;
    const counts = it.proto === 'tcp' ? result : result.udp!;
    bump(counts, it.state, n);
    if (it.owner === 'unknown') unattributed += n;
    if (!by) continue;
    const key = keyOf(it, by);
    let g = groups.get(key);
    if (!g) {
      g = { key, states: {}, total: 0 };
      if (q.udp) g.udp = { states: {}, total: 0 };
      if (by === 'process') {
        const o = it.owner;
        g.pid = typeof o === 'object' ? o.pid : null;
        g.comm = typeof o === 'object' ? o.comm : null;
        g.shared = typeof o === 'object' ? o.shared : false;
      }
      groups.set(key, g);
    }
    bump(it.proto === 'tcp' ? g : g.udp!, it.state, n);
  }
  if (by) {
    const all = [...groups.values()];
    const size = (g: StatesGroup) => g.total + (g.udp?.total ?? 0);
    all.sort((a, b) => size(b) - size(a) || compareKeys(a.key, b.key));
    const top = q.top !== undefined && q.top >= 0 ? q.top : all.length;
    result.by = by;
    result.groups = all.slice(0, top);
    if (all.length > top) result.omitted = all.length - top;
    if (by === 'process') result.unattributed = unattributed;
  }
  return result;
}

/** Change between two refreshes (--watch --json): per state and per group, non-zero deltas only. */
export interface StatesChange {
  states: Record<string, number>;
  total: number;
  udp?: { states: Record<string, number>; total: number };
  groups?: { key: string; states: Record<string, number>; total: number }[];
}

function diffCounts(prev: StateCounts | undefined, cur: StateCounts | undefined): StateCounts {
  const states: Record<string, number> = {};
  const p = prev?.states ?? {};
  const c = cur?.states ?? {};
  for (const k of new Set([...Object.keys(p), ...Object.keys(c)])) {
    const d = (c[k] ?? 0) - (p[k] ?? 0);
    if (d !== 0) states[k] = d;
  }
  return { states, total: (cur?.total ?? 0) - (prev?.total ?? 0) };
}

export function diffStates(prev: StatesResult, cur: StatesResult): StatesChange {
  const top = diffCounts(prev, cur);
  const change: StatesChange = { states: top.states, total: top.total };
  if (cur.udp || prev.udp) change.udp = diffCounts(prev.udp, cur.udp);
  if (cur.groups || prev.groups) {
    const before = new Map((prev.groups ?? []).map((g) => [g.key, g]));
    const after = new Map((cur.groups ?? []).map((g) => [g.key, g]));
    const groups: { key: string; states: Record<string, number>; total: number }[] = [];
    for (const key of new Set([...after.keys(), ...before.keys()])) {
      const d = diffCounts(before.get(key), after.get(key));
      if (Object.keys(d.states).length) groups.push({ key, ...d });
    }
    change.groups = groups;
  }
  return change;
}

/** Column order for a source's states; names not listed (STATE_n) go last, alphabetically. */
export function stateOrder(source: StatesSource): readonly string[] {
  return source === 'sockets' ? TCP_STATE_ORDER : CT_TCP_STATES;
}

export const UDP_STATE_ORDER: readonly string[] = ['ESTABLISHED', 'UNCONN', 'ASSURED', 'REPLIED', 'UNREPLIED'];

export function orderStates(names: Iterable<string>, order: readonly string[]): string[] {
  const rank = (s: string) => {
    const i = order.indexOf(s);
    return i < 0 ? order.length : i;
  };
  return [...new Set(names)].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}
