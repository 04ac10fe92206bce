// `ctacct serve`: snapshots → Prometheus metrics. Two pure parts: CounterSet turns cumulative
// per-source totals (a pid's row, a remote's row) into counters per label set that never go
// backwards and expire when idle; PrometheusView renders a model with prom-client's text format.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

export type Labels = Record<string, string>;

export interface FeedRow {
  /** Upstream identity whose totals are cumulative (the snapshot row key: pid, address, tcp/80). */
  source: string;
  labels: Labels;
  /** Cumulative since ctacct started (sent_total, recv_total): only their growth is counted. */
  totals: number[];
  /** Increments since the previous feed (new flows this refresh). */
  adds?: number[];
  /** A gauge summed per label set (open flows now). */
  gauge?: number;
}

export interface Series {
  labels: Labels;
  /** Counter values, one per counter column. */
  values: number[];
  gauge: number;
  /** Monotonic ms of the last growth (or creation). */
  lastChange: number;
}

/**
 * Counters per label set from cumulative upstream totals. Each source's growth since the previous
 * feed is added to its current label set, so a value never goes backwards even when upstream does
 * (an owner found late moves bytes out of `unknown`), when several pids share a label set, or when
 * a process changes its name. A label set idle for `expireMs` is dropped (its processes are gone or
 * quiet); if it comes back it starts again from zero, as a new series.
 */
export class CounterSet {
  private readonly base = new Map<string, number[]>();
  private readonly series = new Map<string, Series>();
  expired = 0;

  constructor(
    readonly columns: number,
    private readonly expireMs: number,
  ) {}

  feed(rows: Iterable<FeedRow>, now: number): void {
    const seen = new Set<string>();
    for (const s of this.series.values()) s.gauge = 0;
    for (const r of rows) {
      seen.add(r.source);
      const prev = this.base.get(r.source);
      const key = labelKey(r.labels);
      let s = this.series.get(key);
      if (!s) {
        s = { labels: r.labels, values: new Array<number>(this.columns).fill(0), gauge: 0, lastChange: now };
        this.series.set(key, s);
      }
      let grew = false;
      for (let i = 0; i < this.columns; i++) {
        const t = r.totals[i];
        if (t !== undefined) {
          const d = prev ? t - (prev[i] ?? 0) : t;
          if (d > 0) {
            s.values[i]! += d;
            grew = true;
          }
        }
        const a = r.adds?.[i] ?? 0;
        if (a > 0) {
          s.values[i]! += a;
          grew = true;
        }
      }
      s.gauge += r.gauge ?? 0;
      if (grew || s.gauge > 0) s.lastChange = now;
      // A decrease upstream re-bases: only growth from the new value counts.
      this.base.set(r.source, r.totals.slice());
    }
    // Sources gone upstream: forget their baseline (a reappearing key counts from zero).
    for (const k of this.base.keys()) if (!seen.has(k)) this.base.delete(k);
    for (const [k, s] of this.series) {
      if (now - s.lastChange > this.expireMs) {
        this.series.delete(k);
        this.expired++;
      }
    }
  }

  /** Every live series, or the `top` largest by the sum of the first two columns. */
  list(top?: number): Series[] {
    const all = [...this.series.values()];
    if (top === undefined) return all;
    return all.sort((a, b) => b.values[0]! + b.values[1]! - (a.values[0]! + a.values[1]!) || cmpLabels(a, b)).slice(0, top);
  }

  get size(): number {
    return this.series.size;
  }
}

function labelKey(l: Labels): string {
  return JSON.stringify(Object.keys(l).sort().map((k) => [k, l[k]]));
}

function cmpLabels(a: Series, b: Series): number {
  const x = labelKey(a.labels);
  const y = labelKey(b.labels);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Everything one scrape shows. Counters are cumulative; gauges are now. */
export interface ExportModel {
  version: string;
  /** Process label names in order (comm, user, unit, and pid with --label-pid). */
  processLabels: string[];
  /** Columns: sent bytes, received bytes, flows started; gauge: open flows. */
  process: Series[];
  /** Columns: sent bytes, received bytes; null when not enabled. */
  remote: Series[] | null;
  port: Series[] | null;
  /** Columns: sent, received; labels { reason: unknown | forwarded }. */
  unattributed: Series[];
  tcpStates: Record<string, number> | null;
  conntrackEntries: number | null;
  conntrackLimit: number | null;
  health: {
    flowsTracked: number;
    flowsWithoutCounters: number;
    unattributedFlows: number;
    events: number;
    overruns: number;
    resyncs: number;
    inferred: number;
    malformed: number;
    dumps: number;
    lastDumpSeconds: number;
    seriesExpired: number;
  };
  scrapeSeconds: number;
  /** startTimeSeconds feeds the deprecated ctacct_start_time_seconds; process_* come from prom-client. */
  self: { startTimeSeconds: number };
}

/** Microsecond precision at most: durations and times without binary float noise (0.30000000000000004). */
function round(v: number): number {
  return Number.isInteger(v) ? v : Math.round(v * 1e6) / 1e6;
}

const ORDER_TCP = ['ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];

/** One registry per exporter; render() sets every value from a model and returns the text format. */
export class PrometheusView {
  readonly registry = new Registry();
  private readonly c: Record<string, Counter<string> | Gauge<string>> = {};

  constructor(processLabels: string[], opts: { remote?: boolean; port?: boolean; tcpStates?: boolean } = {}) {
    const r = [this.registry];
    // The standard process_* and nodejs_* series (CPU, resident memory, open and max fds, start time,
    // heap, event-loop lag), computed by prom-client at each scrape the way every Node exporter does.
    collectDefaultMetrics({ register: this.registry });
    const counter = (name: string, help: string, labelNames: string[] = []) => (this.c[name] = new Counter({ name, help, labelNames, registers: r }));
    const gauge = (name: string, help: string, labelNames: string[] = []) => (this.c[name] = new Gauge({ name, help, labelNames, registers: r }));
    const pl = processLabels;
    counter('ctacct_process_sent_bytes_total', 'Layer-3 bytes (IP headers included, as conntrack counts them) sent by processes with these labels since ctacct started', pl);
    counter('ctacct_process_received_bytes_total', 'Layer-3 bytes received by processes with these labels since ctacct started', pl);
    counter('ctacct_process_flows_total', 'Flows (connections, UDP/ICMP exchanges) opened by or to processes with these labels since ctacct started', pl);
    gauge('ctacct_process_open_flows', 'Flows of processes with these labels that are open now', pl);
    // Optional families are not registered at all when off: no HELP lines for metrics never sent.
    if (opts.remote) {
      counter('ctacct_remote_sent_bytes_total', 'Layer-3 bytes sent to this remote address (top N by bytes, --top-remotes)', ['remote']);
      counter('ctacct_remote_received_bytes_total', 'Layer-3 bytes received from this remote address (top N by bytes, --top-remotes)', ['remote']);
    }
    if (opts.port) {
      counter('ctacct_port_sent_bytes_total', 'Layer-3 bytes sent on flows to this service port (the destination port of the first packet: local for inbound, remote for outbound; top N, --top-ports)', ['proto', 'port']);
      counter('ctacct_port_received_bytes_total', 'Layer-3 bytes received on flows to this service port (top N, --top-ports)', ['proto', 'port']);
    }
    counter('ctacct_unattributed_sent_bytes_total', 'Layer-3 bytes not attributed to a process: reason="unknown" (owner not found; sent by this host) or "forwarded" (routed through; originator to responder)', ['reason']);
    counter('ctacct_unattributed_received_bytes_total', 'Layer-3 bytes not attributed to a process: reason="unknown" (received by this host) or "forwarded" (responder to originator)', ['reason']);
    if (opts.tcpStates ?? true) gauge('ctacct_tcp_sockets', 'TCP sockets by state in this network namespace (the socket view, as ss/netstat show it)', ['state']);
    gauge('ctacct_conntrack_entries', 'Entries in the conntrack table of this network namespace (nf_conntrack_count)');
    gauge('ctacct_conntrack_entries_limit', 'Maximum conntrack table size (nf_conntrack_max); new connections are dropped when it is reached');
    gauge('ctacct_flows_tracked', 'Flows ctacct is tracking now');
    gauge('ctacct_flows_without_counters', 'Tracked flows without counters (they began while nf_conntrack_acct was 0)');
    gauge('ctacct_unattributed_flows', 'Open flows whose owning process is not known');
    counter('ctacct_events_total', 'Conntrack events read (NEW, DESTROY)');
    counter('ctacct_event_overruns_total', 'Times the kernel dropped conntrack events (ENOBUFS; how many is unknown); each is followed by a resync dump');
    counter('ctacct_resyncs_total', 'Full dumps made to recover from lost events');
    counter('ctacct_inferred_flows_total', 'Connections attributed by their remote endpoint because their socket was gone before it could be seen');
    counter('ctacct_malformed_messages_total', 'Malformed kernel messages skipped');
    counter('ctacct_dumps_total', 'Full conntrack table dumps');
    gauge('ctacct_dump_duration_seconds', 'Wall time of the last full conntrack table dump');
    counter('ctacct_series_expired_total', 'Label sets dropped after being idle for --expire');
    gauge('ctacct_scrape_duration_seconds', 'Time this scrape spent collecting (refresh, socket states) before rendering');
    gauge('ctacct_start_time_seconds', 'Deprecated (removed in 1.0): same value as process_start_time_seconds. When this ctacct started (Unix time)');
    gauge('ctacct_build_info', 'ctacct version', ['version']);
  }

  private counter(name: string): Counter<string> {
    return this.c[name] as Counter<string>;
  }

  private gauge(name: string): Gauge<string> {
    return this.c[name] as Gauge<string>;
  }

  render(m: ExportModel): Promise<string> {
    // Only ctacct's own families are rebuilt from the model: prom-client's default metrics keep state
    // between scrapes (the CPU counter adds the usage since the last one) and must not be reset.
    for (const m of Object.values(this.c)) m.reset();
    const inc = (name: string, v: number, labels: Labels = {}) => this.counter(name).inc(labels, round(Math.max(0, v)));
    const set = (name: string, v: number, labels: Labels = {}) => this.gauge(name).set(labels, round(v));
    for (const s of m.process) {
      inc('ctacct_process_sent_bytes_total', s.values[0]!, s.labels);
      inc('ctacct_process_received_bytes_total', s.values[1]!, s.labels);
      inc('ctacct_process_flows_total', s.values[2]!, s.labels);
      set('ctacct_process_open_flows', s.gauge, s.labels);
    }
    for (const s of m.remote ?? []) {
      inc('ctacct_remote_sent_bytes_total', s.values[0]!, s.labels);
      inc('ctacct_remote_received_bytes_total', s.values[1]!, s.labels);
    }
    for (const s of m.port ?? []) {
      inc('ctacct_port_sent_bytes_total', s.values[0]!, s.labels);
      inc('ctacct_port_received_bytes_total', s.values[1]!, s.labels);
    }
    for (const s of m.unattributed) {
      inc('ctacct_unattributed_sent_bytes_total', s.values[0]!, s.labels);
      inc('ctacct_unattributed_received_bytes_total', s.values[1]!, s.labels);
    }
    if (m.tcpStates) {
      // Every state is present (zero included) so queries never see a state appear from nowhere.
      const names = [...ORDER_TCP, ...Object.keys(m.tcpStates).filter((k) => !ORDER_TCP.includes(k))];
      for (const st of names) set('ctacct_tcp_sockets', m.tcpStates[st] ?? 0, { state: st });
    }
    if (m.conntrackEntries !== null) set('ctacct_conntrack_entries', m.conntrackEntries);
    if (m.conntrackLimit !== null) set('ctacct_conntrack_entries_limit', m.conntrackLimit);
    const h = m.health;
    set('ctacct_flows_tracked', h.flowsTracked);
    set('ctacct_flows_without_counters', h.flowsWithoutCounters);
    set('ctacct_unattributed_flows', h.unattributedFlows);
    inc('ctacct_events_total', h.events);
    inc('ctacct_event_overruns_total', h.overruns);
    inc('ctacct_resyncs_total', h.resyncs);
    inc('ctacct_inferred_flows_total', h.inferred);
    inc('ctacct_malformed_messages_total', h.malformed);
    inc('ctacct_dumps_total', h.dumps);
    set('ctacct_dump_duration_seconds', h.lastDumpSeconds);
    inc('ctacct_series_expired_total', h.seriesExpired);
    set('ctacct_scrape_duration_seconds', m.scrapeSeconds);
    set('ctacct_start_time_seconds', m.self.startTimeSeconds);
    set('ctacct_build_info', 1, { version: m.version });
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
