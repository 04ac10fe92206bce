// The `top` view model: exactly the `--json` line shape README documents (snake_case field names are
// the contract: fields may be added, never renamed). Renderers take a TopSnapshot; accounting makes it.

export type GroupBy = 'process' | 'conn' | 'remote' | 'port' | 'user' | 'container' | 'unit';
export const GROUP_BYS: GroupBy[] = ['process', 'conn', 'remote', 'port', 'user', 'container', 'unit'];

/** The container a process runs in, from its cgroup path (null: not in a container). */
export interface ContainerRef {
  /** docker | podman | containerd | crio | lxc | nspawn | … */
  runtime: string;
  /** The runtime's id: 64 hex digits for OCI runtimes, the name for lxc/nspawn. */
  id: string;
  /** The name the runtime gave it, where its files say (Docker's config.v2.json). */
  name: string | null;
  /** Kubernetes pod uid, when the cgroup path has one. */
  pod?: string | null;
}

export type SortKey = 'sent' | 'recv' | 'total' | 'conns' | 'new';
export const SORT_KEYS: SortKey[] = ['sent', 'recv', 'total', 'conns', 'new'];

export interface TopRow {
  /** Stable key of the group: pid, "proto local remote", address, "proto/port", uid. */
  key: string;
  pid: number | null;
  comm: string | null;
  cmdline: string | null;
  uid: number | null;
  user: string | null;
  remote: string | null;
  port: number | null;
  proto: string | null;
  /** --by conn only: "addr:port" strings and the conntrack state. */
  local?: string | null;
  state?: string | null;
  /** The socket is shared by several processes (after fork); pid is the lowest. */
  shared?: boolean;
  /** Where the owner lives (--by process, conn, container, unit): the inode of its network
   *  namespace, its container (null: none) and its systemd unit (null: none). */
  netns?: number | null;
  container?: ContainerRef | null;
  unit?: string | null;
  /** With pid, the process identity: its start time in clock ticks after boot (/proc/PID/stat
   *  field 22). A reused pid is another process, with another row. */
  start_time?: number | null;
  /** This refresh. */
  sent_bytes: number;
  recv_bytes: number;
  sent_bps: number;
  recv_bps: number;
  /** The same rates as whole bytes per second, named by their unit (the --json output adds them;
   *  `*_bps` stay as deprecated aliases until 1.0). */
  sent_bytes_per_s?: number;
  recv_bytes_per_s?: number;
  /** Since ctacct started, flows that ended included. */
  sent_total: number;
  recv_total: number;
  /** Open flows now; new/closed during this refresh. */
  flows: number;
  new_flows: number;
  closed_flows: number;
  /** Sliding-window rates (bytes/s) and peak rates since start. */
  sent_bps_2s?: number;
  recv_bps_2s?: number;
  sent_bps_10s?: number;
  recv_bps_10s?: number;
  sent_bps_40s?: number;
  recv_bps_40s?: number;
  sent_peak_bps?: number;
  recv_peak_bps?: number;
  /** --by process: the process has exited (its row keeps the totals it made). */
  exited?: boolean;
  /** Process CPU and memory (pidusage), for the top rows of --by process; null when not sampled. */
  cpu_percent?: number | null;
  rss_bytes?: number | null;
}

export interface Bucket {
  sent_total: number;
  recv_total: number;
  flows: number;
  /** `unknown` only: the same split by why no process was found (no_socket: no socket with
   *  that tuple; not_found_in_netns: none in the container namespace holding the address;
   *  no_process: a socket but no process holds it (closed, or not readable); no_permission:
   *  the namespace could not be entered). */
  reasons?: Record<string, Bucket>;
}

export interface HealthItem {
  code: string;
  message: string;
}

export interface Health {
  flows_tracked: number;
  events: number;
  lost_events: number;
  resyncs: number;
  flows_without_counters: number;
  /** What ctacct changed on the system (printed once on start, listed here). */
  changes?: string[];
  /** Malformed kernel messages skipped. */
  malformed?: number;
  /** Flows whose owner is still unknown after retries. */
  unattributed_flows?: number;
  /** Connections that ended before their socket could be seen, attributed to the one process that
   *  connected to the same remote endpoint within the last 10 s (see README "How attribution works"). */
  inferred_flows?: number;
  /** Ended connections' rows dropped from `--by conn` (capped at 20,000 to bound memory). */
  retired_conns_dropped?: number;
  /** Who makes conntrack track in this network namespace; "not-tracking": no flow will appear. */
  tracking?: 'engaged-by-ctacct' | 'engaged-by-others' | 'not-tracking';
  /** Conditions worth a script's attention, each with a stable code (acct-off, not-tracking, dump-failed…). */
  notes?: HealthItem[];
  /** `changes` as objects with a stable code (acct-on, acct-adopted, table-engaged). */
  system_changes?: HealthItem[];
  /** Table dumps that failed or were interrupted (retried with back-off; they close no flow). */
  dump_failures?: number;
  /** Inbound connections that ended while their listener still owned them: never accepted, or
   *  accepted and closed between two looks (their bytes stay with the listening service). */
  accepts_missed?: number;
  /** Connection ends given to the process that closed their socket (the close tracker): the socket
   *  was gone before a look could see it, or was handed to another process after accept. */
  closed_by_tracker?: number;
  /** Wall time of the last full table dump (ms) and the records it returned. */
  dump_ms?: number;
  dump_records?: number;
}

export interface TopSnapshot {
  time: string;
  interval_s: number;
  group_by: GroupBy;
  rows: TopRow[];
  unattributed: { forwarded: Bucket; unknown: Bucket };
  health: Health;
  self: { cpu_percent: number; rss_bytes: number };
}

/** A row with every contract field present and zero/null: groupers fill in their fields. */
export function blankRow(key: string): TopRow {
  return {
    key,
    pid: null,
    comm: null,
    cmdline: null,
    uid: null,
    user: null,
    remote: null,
    port: null,
    proto: null,
    sent_bytes: 0,
    recv_bytes: 0,
    sent_bps: 0,
    recv_bps: 0,
    sent_total: 0,
    recv_total: 0,
    flows: 0,
    new_flows: 0,
    closed_flows: 0,
  };
}

export function emptyBucket(): Bucket {
  return { sent_total: 0, recv_total: 0, flows: 0 };
}

/** Sort comparator for a --sort key: rates for sent/recv/total, then totals, then key. */
export function compareRows(sort: SortKey): (a: TopRow, b: TopRow) => number {
  const primary = (r: TopRow): number => {
    switch (sort) {
      case 'sent':
        return r.sent_bps;
      case 'recv':
        return r.recv_bps;
      case 'total':
        return r.sent_bps + r.recv_bps;
      case 'conns':
        return r.flows;
      case 'new':
        return r.new_flows;
    }
  };
  const secondary = (r: TopRow): number =>
    sort === 'sent' ? r.sent_total : sort === 'recv' ? r.recv_total : r.sent_total + r.recv_total;
  return (a, b) => primary(b) - primary(a) || secondary(b) - secondary(a) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}
