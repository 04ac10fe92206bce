// `ctacct serve`: a Prometheus exporter. The engine of `top` at a daemon's dump cadence; each
// scrape refreshes it (at most once a second) and renders counters that never go backwards.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { EngineError, TopEngine } from '../core/engine.js';
import type { GroupBy, TopSnapshot } from '../core/model.js';
import { EXIT, UserError, explainSystemError } from '../errors.js';
import { CgroupReader, unitLabel } from '../proc/cgroup.js';
import { readSocketTable } from '../proc/reader.js';
import { countSocketStates } from '../netlink/sockets.js';
import { tcpStateName } from '../proc/parse.js';
import type { System } from '../system.js';
import { lifecycle } from '../system/lifecycle.js';
import { formatSetupReport, withSystemSetup, type SetupReport } from '../system/setup.js';
import { CounterSet, PrometheusView, type ExportModel, type FeedRow } from '../views/prometheus.js';
import { closeTracker, closeTrackerNotes, makeForeignAttributor } from '../wiring.js';
import { engineDeps, LOW_OVERHEAD_LOOKUP, startEngine } from './engine.js';
import { checkPositive, setupOptions } from './options.js';
import { changeLines } from './top.js';

/** The group-bys the metrics are built from: the only ones whose ended flows are kept. */
export const EXPORTED_GROUPINGS: GroupBy[] = ['process', 'remote', 'port'];

// Read here, not from cli.ts: cli.ts imports every command module.
const VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

export const DEFAULT_LISTEN = '127.0.0.1:9477';

export interface ServeArgs {
  listen: string;
  'label-pid': boolean;
  expire: number;
  'top-remotes': number;
  'top-ports': number;
  'tcp-states': boolean;
  'dump-interval': number;
  rcvbuf: number;
  setup: boolean;
  'keep-acct': boolean;
}

/** A scrape within this long of the previous collection reuses it (several scrapers, retries). */
const MIN_COLLECT_MS = 1000;
/** The socket table is read at most this often: on hosts with 100k TIME_WAIT sockets it costs. */
const STATES_EVERY_MS = 5000;

/** `127.0.0.1:9477`, `[::1]:9477`, `localhost:9477` → host and port. An address is required. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]]+):(\d+)$/.exec(s);
  const fail = (why: string) =>
    new UserError(`--listen '${s}': ${why} (ADDR:PORT, e.g. ${DEFAULT_LISTEN}, [::1]:9477, or 0.0.0.0:9477 for every interface)`, EXIT.usage, 'ERR_USAGE');
  if (!m) throw fail(s.startsWith(':') ? 'give an address; ctacct never listens on every interface unless told' : 'not ADDR:PORT');
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port > 65535) throw fail('port must be 0-65535');
  if (m[0].startsWith('[') && isIP(m[1]!) !== 6) throw fail('not an IPv6 address in brackets');
  return { host: m[1]!, port };
}

export function serveCommand(system: System): CommandModule<object, ServeArgs> {
  return {
    command: 'serve',
    describe: `Prometheus exporter: per-process bytes and flows at /metrics (listens on ${DEFAULT_LISTEN}; needs CAP_NET_ADMIN)`,
    builder: (y) =>
      setupOptions(y)
        .option('listen', { type: 'string', default: DEFAULT_LISTEN, describe: 'ADDR:PORT to serve /metrics and /healthz on (loopback by default; 0.0.0.0:PORT for every interface)', group: 'Exporter:' })
        .option('label-pid', { type: 'boolean', default: false, describe: 'Add a pid label to per-process series (more series: one per process)', group: 'Exporter:' })
        .option('expire', { type: 'number', default: 900, describe: 'Seconds a label set may stay idle (no growth, no open flow) before its series is dropped', group: 'Exporter:' })
        .option('top-remotes', { type: 'number', default: 0, describe: 'Also export per-remote-address totals for the N remotes with most bytes (0: off)', group: 'Exporter:' })
        .option('top-ports', { type: 'number', default: 0, describe: 'Also export per-service-port totals for the N ports with most bytes (0: off)', group: 'Exporter:' })
        .option('tcp-states', { type: 'boolean', default: true, describe: 'Export TCP socket counts by state (reads /proc/net/tcp* at most every 5 s)', group: 'Exporter:' })
        .option('dump-interval', { type: 'number', default: 10, describe: 'Seconds between full conntrack table dumps (events settle finished flows in between)', group: 'Cost:' })
        .option('rcvbuf', { type: 'number', default: 64, describe: 'Event socket receive buffer in MiB (grows after an overrun)', group: 'Cost:' })
        .check((a) => {
          checkPositive('rcvbuf', a.rcvbuf);
          parseListen(a.listen);
          if (!(a.expire > 0)) throw new UserError('--expire must be a positive number of seconds', EXIT.usage, 'ERR_USAGE');
          if (!(a['dump-interval'] > 0)) throw new UserError('--dump-interval must be a positive number of seconds', EXIT.usage, 'ERR_USAGE');
          for (const k of ['top-remotes', 'top-ports'] as const)
            if (!(Number.isInteger(a[k]) && a[k] >= 0)) throw new UserError(`--${k} must be a whole number ≥ 0`, EXIT.usage, 'ERR_USAGE');
          return true;
        })
        .example('sudo ctacct serve', `metrics at http://${DEFAULT_LISTEN}/metrics`)
        .example('sudo ctacct serve --listen 10.0.0.5:9477 --top-remotes 20', 'on a private interface, with the 20 busiest remotes')
        .example('curl -s localhost:9477/metrics | grep ^ctacct_process_sent', 'bytes sent per program') as never,
    handler: (args) => runServe(system, args),
  };
}

function listenError(e: NodeJS.ErrnoException, listen: string): UserError {
  switch (e.code) {
    case 'EADDRINUSE':
      return new UserError(`cannot listen on ${listen}: the port is already in use (choose another with --listen)`, EXIT.failure, e.code);
    case 'EADDRNOTAVAIL':
      return new UserError(`cannot listen on ${listen}: no interface has this address (choose another with --listen)`, EXIT.failure, e.code);
    case 'EACCES':
    case 'EPERM':
      return new UserError(`cannot listen on ${listen}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`, EXIT.privilege, e.code);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UserError(`cannot listen on ${listen}: the host name does not resolve`, EXIT.usage, e.code);
    default:
      return new UserError(`cannot listen on ${listen}: ${e.code ?? e.message}`, EXIT.failure, e.code ?? 'ERR_CTACCT');
  }
}

export function bind(server: Server, host: string, port: number, listen: string): Promise<void> {
  return new Promise((res, rej) => {
    const onError = (e: NodeJS.ErrnoException) => rej(listenError(e, listen));
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.removeListener('error', onError);
      res();
    });
  });
}

function readCount(path: string): number | null {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/** Everything a scrape needs from the running engine, kept between scrapes. */
export class Exporter {
  readonly view: PrometheusView;
  private readonly processes: CounterSet;
  private readonly remotes: CounterSet | null;
  private readonly ports: CounterSet | null;
  private readonly unattributed = new CounterSet(2, Infinity);
  private readonly cgroups: CgroupReader;
  private readonly processLabels: string[];
  private states: { at: number; counts: Record<string, number> | null } = { at: -Infinity, counts: null };
  private last: { at: number; text: Promise<string> } | null = null;
  private collecting: Promise<string> | null = null;
  private readonly startTimeSeconds: number;

  constructor(
    private readonly system: System,
    private readonly args: ServeArgs,
    private readonly engine: TopEngine,
  ) {
    const expireMs = args.expire * 1000;
    this.processLabels = ['comm', 'user', 'unit', 'container', ...(args['label-pid'] ? ['pid'] : [])];
    this.processes = new CounterSet(3, expireMs);
    this.remotes = args['top-remotes'] > 0 ? new CounterSet(2, expireMs) : null;
    this.ports = args['top-ports'] > 0 ? new CounterSet(2, expireMs) : null;
    this.cgroups = new CgroupReader(system.procRoot);
    this.view = new PrometheusView(this.processLabels, { remote: !!this.remotes, port: !!this.ports, tcpStates: args['tcp-states'] });
    this.startTimeSeconds = Math.round(system.now() - process.uptime() * 1000) / 1000;
  }

  /** The metrics text; collections are shared by concurrent scrapes and reused for a second. */
  metrics(): Promise<string> {
    const now = this.system.monotonic();
    if (this.last && now - this.last.at < MIN_COLLECT_MS) return this.last.text;
    if (this.collecting) return this.collecting;
    this.collecting = this.collect().finally(() => {
      this.collecting = null;
    });
    this.last = { at: now, text: this.collecting };
    return this.collecting;
  }

  /** One refresh without rendering (the background tick: dumps and expiry go on without scrapers). */
  async tick(): Promise<void> {
    await this.metrics();
  }

  private async collect(): Promise<string> {
    const t0 = this.system.monotonic();
    let snap: TopSnapshot;
    try {
      snap = await this.engine.refresh({ groupBy: 'process', sort: 'total', tracking: this.tracking });
    } catch (e) {
      throw e instanceof EngineError ? explainSystemError(e.cause, 'conntrack events') : e;
    }
    const now = this.system.monotonic();
    const time = snap.time;
    // Totals of long-ended flows live on in the series below; the accounting may forget them.
    this.engine.acc.pruneRetired(this.args.expire * 1000);
    this.processes.feed(snap.rows.map((r) => this.processRow(r)), now);
    this.unattributed.feed(
      [
        { source: 'unknown', labels: { reason: 'unknown' }, totals: [snap.unattributed.unknown.sent_total, snap.unattributed.unknown.recv_total] },
        { source: 'forwarded', labels: { reason: 'forwarded' }, totals: [snap.unattributed.forwarded.sent_total, snap.unattributed.forwarded.recv_total] },
      ],
      now,
    );
    // Other group-bys come straight from the accounting: no second dump. Snapshots only read, and
    // the refresh above already closed its interval; only totals are taken from these.
    if (this.remotes) {
      const s = this.engine.acc.snapshot({ groupBy: 'remote', sort: 'total', time });
      this.remotes.feed(s.rows.map((r) => ({ source: r.key, labels: { remote: r.remote ?? r.key }, totals: [r.sent_total, r.recv_total] })), now);
    }
    if (this.ports) {
      const s = this.engine.acc.snapshot({ groupBy: 'port', sort: 'total', time });
      this.ports.feed(s.rows.map((r) => ({ source: r.key, labels: { proto: r.proto ?? '', port: r.port === null ? '' : String(r.port) }, totals: [r.sent_total, r.recv_total] })), now);
    }
    if (this.args['tcp-states'] && now - this.states.at >= STATES_EVERY_MS) this.states = { at: now, counts: this.readStates() };
    const model: ExportModel = {
      version: VERSION,
      processLabels: this.processLabels,
      process: this.processes.list(),
      remote: this.remotes ? this.remotes.list(this.args['top-remotes']) : null,
      port: this.ports ? this.ports.list(this.args['top-ports']) : null,
      unattributed: this.unattributed.list(),
      tcpStates: this.args['tcp-states'] ? this.states.counts : null,
      conntrackEntries: readCount(join(this.system.procRoot, 'sys/net/netfilter/nf_conntrack_count')),
      conntrackLimit: readCount(join(this.system.procRoot, 'sys/net/netfilter/nf_conntrack_max')),
      health: {
        flowsTracked: snap.health.flows_tracked,
        flowsWithoutCounters: snap.health.flows_without_counters,
        unattributedFlows: snap.health.unattributed_flows ?? 0,
        events: snap.health.events,
        overruns: snap.health.lost_events,
        resyncs: snap.health.resyncs,
        inferred: snap.health.inferred_flows ?? 0,
        malformed: snap.health.malformed ?? 0,
        dumps: this.engine.dumps,
        lastDumpSeconds: this.engine.lastDumpMs / 1000,
        seriesExpired: this.processes.expired + (this.remotes?.expired ?? 0) + (this.ports?.expired ?? 0),
      },
      scrapeSeconds: (this.system.monotonic() - t0) / 1000,
      self: { startTimeSeconds: this.startTimeSeconds },
    };
    return `${await this.view.render(model)}${trackingMetrics(this.tracking, this.engine.dumpFailures, closeTracker().tracker !== null)}`;
  }

  /** Who makes conntrack track here (from set-up); /healthz fails while nothing does. */
  tracking: SetupReport['tracking'] = 'engaged-by-others';

  private processRow(r: TopSnapshot['rows'][number]): FeedRow {
    const labels: Record<string, string> = {
      comm: r.comm ?? '',
      user: r.user ?? (r.uid !== null ? String(r.uid) : ''),
      unit: r.pid !== null ? unitLabel(this.cgroups.of(r.pid)) : '',
      // One value per container (runtime:name, else runtime:short id): as bounded as the processes.
      container: r.container ? `${r.container.runtime}:${r.container.name ?? r.container.id.slice(0, 12)}` : '',
    };
    if (this.args['label-pid']) labels.pid = r.pid !== null ? String(r.pid) : '';
    // A process is (pid, start time): a reused pid is a new source, never the old one's series.
    const source = r.start_time != null ? `${r.key}@${r.start_time}` : r.key;
    return { source, labels, totals: [r.sent_total, r.recv_total], adds: [0, 0, r.new_flows], gauge: r.flows };
  }

  private readStates(): Record<string, number> | null {
    const counts: Record<string, number> = {};
    const count = (state: number, n = 1) => {
      const name = tcpStateName(state);
      counts[name] = (counts[name] ?? 0) + n;
    };
    // sock_diag, counted per state in the addon during the dump (nothing per socket reaches
    // JavaScript). Reading /proc/net/tcp instead blocked the event loop for seconds per scrape with
    // 170k TIME_WAIT sockets (the kernel formats the text slowly): scrapes timed out.
    if (this.system.procRoot === '/proc') {
      try {
        for (const d of countSocketStates({ tcp: true, udp: false })) d.counts.forEach((n, st) => n > 0 && count(st, n));
        return counts;
      } catch {
        /* no sock_diag here: the text tables below */
      }
    }
    try {
      for (const e of readSocketTable(this.system.procRoot, { tcp: true, udp: false }).entries) count(e.stateNum);
      return counts;
    } catch {
      return null; // unreadable /proc/net: the gauge is left out rather than shown as zero
    }
  }


}

/** The tracking gauge and dump failures, in Prometheus text format. */
export function trackingMetrics(tracking: SetupReport['tracking'], dumpFailures: number, closeTracker?: boolean): string {
  const by = tracking === 'engaged-by-ctacct' ? 'ctacct' : tracking === 'engaged-by-others' ? 'others' : 'none';
  return (
    '# HELP ctacct_conntrack_tracking 1 when conntrack tracks this network namespace (by: who engaged it); 0: no flow can appear\n' +
    '# TYPE ctacct_conntrack_tracking gauge\n' +
    `ctacct_conntrack_tracking{by="${by}"} ${tracking === 'not-tracking' ? 0 : 1}\n` +
    '# HELP ctacct_dump_failures_total conntrack table dumps that failed (retried with back-off)\n' +
    '# TYPE ctacct_dump_failures_total counter\n' +
    `ctacct_dump_failures_total ${dumpFailures}\n` +
    (closeTracker === undefined
      ? ''
      : '# HELP ctacct_close_tracker 1 when the close tracker is loaded; 0: a connection accepted and closed between two looks stays with its listening process\n' +
        '# TYPE ctacct_close_tracker gauge\n' +
        `ctacct_close_tracker ${closeTracker ? 1 : 0}\n`)
  );
}

export function handle(req: IncomingMessage, res: ServerResponse, exporter: () => Exporter | null, fail: (e: unknown) => void): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    return;
  }
  const ex = exporter();
  if (path === '/healthz') {
    if (ex?.tracking === 'not-tracking') {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('not tracking: conntrack does not track in this network namespace, no flow can appear\n');
      return;
    }
    res.writeHead(ex ? 200 : 503, { 'content-type': 'text/plain' }).end(ex ? 'ok\n' : 'starting\n');
    return;
  }
  if (path === '/metrics') {
    if (!ex) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('starting\n');
      return;
    }
    ex.metrics().then(
      (text) => res.writeHead(200, { 'content-type': ex.view.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collection failed\n');
        fail(e);
      },
    );
    return;
  }
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/html' }).end('<html><head><title>ctacct</title></head><body><h1>ctacct exporter</h1><p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></p></body></html>\n');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
}

async function runServe(system: System, args: ServeArgs): Promise<void> {
  const { host, port } = parseListen(args.listen);
  let exporter: Exporter | null = null;
  let failure: ((e: unknown) => void) | null = null;
  const server = createServer((req, res) => handle(req, res, () => exporter, (e) => failure?.(e)));
  server.keepAliveTimeout = 5000;
  // Bound before any system change: a busy port or a foreign address fails with nothing to undo.
  await bind(server, host, port, args.listen);
  const stopServer = () => {
    server.close();
    server.closeAllConnections();
  };
  try {
    await withSystemSetup(system, { setup: args.setup, keepAcct: args['keep-acct'], needConntrack: true }, async (report) => {
      system.stderr.write(formatSetupReport(report));
      closeTracker();
      for (const n of closeTrackerNotes()) system.stderr.write(`ctacct: note: ${n.message}\n`);
      const engine = new TopEngine(engineDeps(system, LOW_OVERHEAD_LOOKUP), {
          dumpEveryMs: args['dump-interval'] * 1000,
          groupings: EXPORTED_GROUPINGS,
          watchAccepts: closeTracker().tracker === null,
          rcvbuf: Math.round(args.rcvbuf * 1024 * 1024),
        foreign: makeForeignAttributor(system, LOW_OVERHEAD_LOOKUP),
      });
      await startEngine(engine);
      let timer: ReturnType<typeof setInterval> | undefined;
      let lifecycleOff: () => void = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        failure = (e) => reject(e);
        const ex = new Exporter(system, args, engine);
        ex.tracking = report.tracking;
        exporter = ex;
        // Dumps, settlement and expiry go on between scrapes (and when nobody scrapes).
        timer = setInterval(() => void ex.tick().catch((e: unknown) => reject(e)), args['dump-interval'] * 1000);
        const addr = server.address();
        const shown = addr && typeof addr === 'object' ? (addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`) : args.listen;
        system.stderr.write(`ctacct: serving http://${shown}/metrics\n`);
        lifecycleOff = lifecycle().onShutdown(
          async () => {
            clearInterval(timer);
            stopServer();
            resolve();
          },
          () => {
            clearInterval(timer);
            stopServer();
          },
        );
      });
      try {
        await done;
      } finally {
        lifecycleOff();
        clearInterval(timer);
        exporter = null;
        engine.close();
      }
    });
  } finally {
    stopServer();
  }
}
