// Memory over time under churn (`npm run bench -- --only memtime`, never in --quick): `ctacct top
// --json` (default mode) and then `ctacct serve` (scraped every 15 s inside the server namespace), each
// for SECONDS of RATE short TCP connections/s from bench/loadgen.c, on bench/run.ts's testbed.
// Every 10 s: VmRSS/RssAnon/RssFile from /proc/PID/status, utime+stime, the conntrack table size, and
// the process's own process.memoryUsage() (bench/memprobe.mjs, preloaded, written every 2 s: the
// latest line is at most 2 s old). At the end (after a settle
// of one scrape period): the bytes ctacct attributed to the load's server against the layer-3 bytes
// the bench's nft counters saw on its port.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePromText, type Family } from '../test/helpers/promtext.js';
import { cpuSeconds, sleep, statusBytes } from './common.js';

const PROBE = fileURLToPath(new URL('./memprobe.mjs', import.meta.url));

/** What bench/run.ts lends: its namespaces, load generator and counters. */
export interface MemtimeTestbed {
  nsA: string;
  nsB: string;
  ipB: string;
  clientSrcs: string[];
  loadgen: string;
  /** node + bin/ctacct.js */
  ctacct: string[];
  tmp: string;
  nextPort: () => number;
  flushConntrack: () => void;
  nftCounters: () => { inB: number; outB: number };
  log: (s: string) => void;
}

export interface MemtimeConfig {
  rate: number;
  seconds: number;
  sampleS: number;
  scrapeS: number;
  settleS: number;
  req: number;
  resp: number;
  maxconc: number;
}
export const MEMTIME_DEFAULTS: MemtimeConfig = { rate: 2000, seconds: 600, sampleS: 10, scrapeS: 15, settleS: 15, req: 100, resp: 1000, maxconc: 4000 };

export interface Sample {
  /** seconds since the load started */
  t: number;
  rss: number;
  anon: number;
  file: number;
  cpu: number;
  entries: number;
  heapUsed?: number;
  heapTotal?: number;
  external?: number;
  arrayBuffers?: number;
  malloced?: number;
}

export interface MemtimeRun {
  target: 'top' | 'serve';
  command: string;
  samples: Sample[];
  hwm: number;
  cpuLoad: number; // cores, over the load
  cpuAll: number; // CPU seconds from start to the last reading
  loadS: number;
  load: Record<string, number>;
  server: Record<string, number>;
  l3: { inB: number; outB: number };
  attributed: { server: number; unattributed: number; lost_events: number; resyncs: number } | null;
  scrapes?: { n: number; slowestMs: number; bytes: number; ms: number[]; failed: number };
  loadavg: { start: string; end: string };
  error?: string;
}

function inNs(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
}

function lastProbe(file: string): Record<string, number> | undefined {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return JSON.parse(lines[lines.length - 1]!) as Record<string, number>;
  } catch {
    return undefined;
  }
}

/** Spawned in a namespace; keeps only the last complete stdout line (a JSON summary) and a line count. */
function spawnKeepLast(ns: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const st = { child, last: '', lines: 0, stderr: '', done: false, exited: null as unknown as Promise<void> };
  let part = '';
  child.stdout!.on('data', (d: Buffer) => {
    const s = part + d.toString();
    const cut = s.lastIndexOf('\n');
    if (cut < 0) return void (part = s);
    const whole = s.slice(0, cut);
    st.lines += whole.split('\n').length;
    st.last = whole.slice(whole.lastIndexOf('\n') + 1);
    part = s.slice(cut + 1);
  });
  child.stderr!.on('data', (d: Buffer) => {
    if (st.stderr.length < 64 << 10) st.stderr += d.toString();
  });
  st.exited = new Promise((r) => child.on('close', () => ((st.done = true), r())));
  return st;
}

async function stop(p: ReturnType<typeof spawnKeepLast>, sig: NodeJS.Signals): Promise<void> {
  if (p.done) return;
  p.child.kill(sig);
  const t = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(t);
}

/** Sum of the samples of `name` whose labels include `match` (0 when there are none). */
export function sumOf(fams: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  const f = fams.get(name);
  return (f?.samples ?? []).filter((x) => Object.entries(match).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0);
}

async function scrape(ns: string): Promise<{ text: string; ms: number }> {
  const t = performance.now();
  const text = await new Promise<string>((res) => {
    const c = spawn('ip', ['netns', 'exec', ns, 'curl', '-s', '--max-time', '10', 'http://127.0.0.1:9477/metrics'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('close', () => res(out));
  });
  return { text, ms: performance.now() - t };
}

export async function runMemtime(tb: MemtimeTestbed, target: 'top' | 'serve', cfg: MemtimeConfig): Promise<MemtimeRun> {
  tb.flushConntrack();
  const port = tb.nextPort();
  const srv = spawnKeepLast(tb.nsB, [tb.loadgen, 'server', String(port), String(cfg.req), String(cfg.resp)]);
  const probe = join(tb.tmp, `memprobe-${target}.jsonl`);
  rmSync(probe, { force: true });
  const args = target === 'top' ? ['top', '--json'] : ['serve'];
  const [node, ...rest] = tb.ctacct;
  const mon = spawnKeepLast(tb.nsB, [node!, '--import', PROBE, ...rest, ...args], { ...process.env, CTB_MEMPROBE: probe, CTB_MEMPROBE_MS: '2000' });
  const run: MemtimeRun = {
    target,
    command: `ctacct ${args.join(' ')}`,
    samples: [],
    hwm: NaN,
    cpuLoad: NaN,
    cpuAll: NaN,
    loadS: NaN,
    load: {},
    server: {},
    l3: { inB: 0, outB: 0 },
    attributed: null,
    loadavg: { start: readFileSync('/proc/loadavg', 'utf8').trim(), end: '' },
  };
  let client: ReturnType<typeof spawnKeepLast> | null = null;
  try {
    const until = async (pred: () => boolean, ms: number, what: string) => {
      const end = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        if (mon.done) throw new Error(`${run.command} exited at start: ${mon.stderr.trim().slice(-300)}`);
        await sleep(100);
      }
    };
    await until(() => srv.last.includes('ready'), 5000, 'the loadgen server');
    const serverPid = srv.child.pid!;
    const pid = mon.child.pid!; // `ip netns exec` execs: this is node's pid
    if (target === 'top') await until(() => mon.lines >= 1, 30_000, 'the first JSON line');
    else {
      const end = Date.now() + 30_000;
      while (!(await scrape(tb.nsB)).text.includes('ctacct_flows_tracked')) {
        if (mon.done || Date.now() > end) throw new Error(`serve did not answer: ${mon.stderr.trim().slice(-300)}`);
        await sleep(500);
      }
    }
    const before = tb.nftCounters();
    const cpu0 = cpuSeconds(pid);
    const sample = (t: number) => {
      const st = statusBytes(pid);
      const p = lastProbe(probe);
      const entries = Number(inNs(tb.nsB, 'cat', ['/proc/sys/net/netfilter/nf_conntrack_count']).trim());
      run.samples.push({
        t: Math.round(t),
        rss: st.VmRSS ?? NaN,
        anon: st.RssAnon ?? NaN,
        file: st.RssFile ?? NaN,
        cpu: cpuSeconds(pid) - cpu0,
        entries,
        ...(p ? { heapUsed: p.heapUsed, heapTotal: p.heapTotal, external: p.external, arrayBuffers: p.arrayBuffers, malloced: p.malloced } : {}),
      });
      run.hwm = st.VmHWM ?? run.hwm;
    };
    const scrapes = { n: 0, slowestMs: 0, bytes: 0, ms: [] as number[], failed: 0 };
    let lastText = '';
    let inFlight: Promise<void> | null = null;
    const doScrape = async () => {
      const s = await scrape(tb.nsB);
      scrapes.n++;
      scrapes.ms.push(Math.round(s.ms));
      scrapes.slowestMs = Math.max(scrapes.slowestMs, Math.round(s.ms));
      if (!s.text.includes('ctacct_flows_tracked')) scrapes.failed++;
      else ((scrapes.bytes = s.text.length), (lastText = s.text));
    };

    tb.log(`memtime ${target}: ${cfg.rate} conn/s for ${cfg.seconds} s (pid ${pid}, port ${port})`);
    const t0 = performance.now();
    const el = () => (performance.now() - t0) / 1000;
    client = spawnKeepLast(tb.nsA, ['timeout', String(cfg.seconds + 30), tb.loadgen, 'client', tb.ipB, String(port), String(cfg.rate), String(cfg.seconds), String(cfg.req), String(cfg.resp), String(cfg.maxconc), tb.clientSrcs.join(',')]);
    let nextSample = 0;
    let nextScrape = 0;
    let loadEnd = Infinity;
    let cpuAtEnd = NaN;
    while (el() < loadEnd + cfg.settleS) {
      if (mon.done) throw new Error(`${run.command} exited during the run: ${mon.stderr.trim().slice(-300)}`);
      if (client.done && loadEnd === Infinity) {
        loadEnd = el();
        cpuAtEnd = cpuSeconds(pid) - cpu0;
      }
      if (el() >= nextSample) {
        sample(el());
        if (run.samples.length % 6 === 1) {
          const s = run.samples[run.samples.length - 1]!;
          tb.log(`memtime ${target} +${s.t}s: rss ${(s.rss / 2 ** 20).toFixed(1)} MiB, heap ${((s.heapUsed ?? NaN) / 2 ** 20).toFixed(1)} MiB, ${s.entries} entries, cpu ${s.cpu.toFixed(1)} s`);
        }
        nextSample += cfg.sampleS;
      }
      // A scrape runs beside the sampling (a slow one must not delay the samples); never two at once.
      if (target === 'serve' && el() >= nextScrape && !inFlight) {
        inFlight = doScrape().finally(() => (inFlight = null));
        nextScrape += cfg.scrapeS;
      }
      await sleep(200);
    }
    // The final reading, one settle period after the load: every connection has ended.
    sample(el());
    run.loadS = loadEnd;
    run.cpuLoad = cpuAtEnd / loadEnd;
    run.cpuAll = cpuSeconds(pid) - cpu0;
    const after = tb.nftCounters();
    run.l3 = { inB: after.inB - before.inB, outB: after.outB - before.outB };
    run.load = JSON.parse(client.last || '{}') as Record<string, number>;
    if (target === 'top') {
      const j = JSON.parse(mon.last) as { rows: { pid: number | null; sent_total: number; recv_total: number }[]; unattributed: Record<string, { sent_total: number; recv_total: number }>; health: { lost_events: number; resyncs: number } };
      const row = j.rows.find((r) => r.pid === serverPid);
      run.attributed = {
        server: (row?.sent_total ?? 0) + (row?.recv_total ?? 0),
        unattributed: Object.values(j.unattributed).reduce((s, u) => s + u.sent_total + u.recv_total, 0),
        lost_events: j.health.lost_events,
        resyncs: j.health.resyncs,
      };
    } else {
      await inFlight;
      await doScrape();
      const f = parsePromText(lastText);
      const server = { comm: 'loadgen' };
      run.attributed = {
        server: sumOf(f, 'ctacct_process_sent_bytes_total', server) + sumOf(f, 'ctacct_process_received_bytes_total', server),
        unattributed: sumOf(f, 'ctacct_unattributed_sent_bytes_total') + sumOf(f, 'ctacct_unattributed_received_bytes_total'),
        lost_events: sumOf(f, 'ctacct_event_overruns_total'),
        resyncs: sumOf(f, 'ctacct_resyncs_total'),
      };
      run.scrapes = scrapes;
    }
  } catch (e) {
    run.error = (e as Error).message.slice(0, 400);
  } finally {
    run.loadavg.end = readFileSync('/proc/loadavg', 'utf8').trim();
    if (client) await stop(client, 'SIGTERM');
    await stop(mon, target === 'top' ? 'SIGINT' : 'SIGTERM');
    await stop(srv, 'SIGTERM');
    try {
      run.server = JSON.parse(srv.last) as Record<string, number>;
    } catch {
      /* no summary */
    }
  }
  return run;
}

// ---------------------------------------------------------------- report
const MiB = (b: number | undefined) => (b === undefined || !Number.isFinite(b) ? '–' : (b / 2 ** 20).toFixed(1));
const at = (ss: Sample[], t: number) => ss.reduce((best, s) => (Math.abs(s.t - t) < Math.abs(best.t - t) ? s : best), ss[0]!);

/** Least-squares slope of y over t (per second) for the samples from t ≥ from. */
export function slope(ss: Sample[], y: (s: Sample) => number | undefined, from: number, to = Infinity): number {
  const pts = ss.filter((s) => s.t >= from && s.t <= to && Number.isFinite(y(s))).map((s) => [s.t, y(s)!] as const);
  if (pts.length < 2) return NaN;
  const mx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
  const my = pts.reduce((a, p) => a + p[1], 0) / pts.length;
  const num = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return num / den;
}

export function memtimeReport(runs: MemtimeRun[], cfg: MemtimeConfig): string {
  const L: string[] = [];
  for (const r of runs) {
    L.push(`#### \`${r.command}\``, '');
    if (r.error) L.push(`**failed**: ${r.error}`, '');
    const ss = r.samples;
    if (!ss.length) continue;
    const loadEnd = Number.isFinite(r.loadS) ? r.loadS : cfg.seconds;
    L.push('| minute | VmRSS MiB | RssAnon MiB | RssFile MiB | V8 heap used / total MiB | heap used, lowest in the minute MiB | external (of it ArrayBuffers) MiB | malloced by V8 MiB | conntrack entries | CPU in the minute (cores) |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (let m = 0; m * 60 <= loadEnd + 1; m++) {
      const s = at(ss, m * 60);
      const prev = m ? at(ss, (m - 1) * 60) : null;
      const cpu = prev && s.t > prev.t ? ((s.cpu - prev.cpu) / (s.t - prev.t)).toFixed(2) : '–';
      // The lowest sample of the minute before this mark approximates the live set after a GC.
      const floor = prev ? Math.min(...ss.filter((x) => x.t > prev.t && x.t <= s.t).map((x) => x.heapUsed ?? NaN)) : NaN;
      L.push(`| ${m} (+${s.t} s) | ${MiB(s.rss)} | ${MiB(s.anon)} | ${MiB(s.file)} | ${MiB(s.heapUsed)} / ${MiB(s.heapTotal)} | ${MiB(floor)} | ${MiB(s.external)} (${MiB(s.arrayBuffers)}) | ${MiB(s.malloced)} | ${s.entries} | ${cpu} |`);
    }
    const last = ss[ss.length - 1]!;
    L.push(`| after the load (+${last.t} s) | ${MiB(last.rss)} | ${MiB(last.anon)} | ${MiB(last.file)} | ${MiB(last.heapUsed)} / ${MiB(last.heapTotal)} | – | ${MiB(last.external)} (${MiB(last.arrayBuffers)}) | ${MiB(last.malloced)} | ${last.entries} | – |`, '');
    const inLoad = ss.filter((s) => s.t <= loadEnd);
    const maxS = ss.reduce((a, s) => (s.rss > a.rss ? s : a), ss[0]!);
    const s2 = at(ss, 120);
    const s10 = at(ss, Math.min(600, Math.floor(loadEnd / 10) * 10));
    const perMin = (f: (s: Sample) => number | undefined) => (60 * slope(inLoad, f, 120)) / 2 ** 20;
    const after120 = inLoad.filter((s) => s.t >= 120);
    const lo = Math.min(...after120.map((s) => s.rss));
    const hi = Math.max(...after120.map((s) => s.rss));
    const attributedPct = r.attributed ? (100 * r.attributed.server) / (r.l3.inB + r.l3.outB) : NaN;
    const spark = (f: (s: Sample) => number | undefined) => {
      const v = ss.map((s) => f(s) ?? NaN);
      const [a, b] = [Math.min(...v), Math.max(...v)];
      return `${v.map((x) => '▁▂▃▄▅▆▇█'[Math.min(7, Math.floor((8 * (x - a)) / (b - a || 1)))] ?? '·').join('')} (${MiB(a)}–${MiB(b)} MiB)`;
    };
    L.push(`Every ${cfg.sampleS} s from the load's start: VmRSS ${spark((s) => s.rss)}; V8 heap used ${spark((s) => s.heapUsed)}.`, '');
    L.push(
      `- max VmRSS ${MiB(maxS.rss)} MiB at +${maxS.t} s (VmHWM ${MiB(r.hwm)} MiB); RSS at 2 min ${MiB(s2.rss)} MiB, at ${Math.round(s10.t / 60)} min ${MiB(s10.rss)} MiB (${s10.rss >= s2.rss ? '+' : ''}${MiB(s10.rss - s2.rss)} MiB); ` +
        `after 120 s RSS stays within ${MiB(lo)}–${MiB(hi)} MiB, trend ${perMin((s) => s.rss).toFixed(2)} MiB/min (least squares; V8 heap used ${perMin((s) => s.heapUsed).toFixed(2)} MiB/min, heap total ${perMin((s) => s.heapTotal).toFixed(2)}, RssAnon ${perMin((s) => s.anon).toFixed(2)}); ` +
        `over the second half (from ${Math.round(loadEnd / 2)} s) RSS ${((60 * slope(inLoad, (s) => s.rss, loadEnd / 2)) / 2 ** 20).toFixed(2)} MiB/min, V8 heap total ${((60 * slope(inLoad, (s) => s.heapTotal, loadEnd / 2)) / 2 ** 20).toFixed(2)} MiB/min`,
      `- CPU ${(100 * r.cpuLoad).toFixed(1)}% of one core over the ${Math.round(loadEnd)} s load (${r.cpuAll.toFixed(1)} s of CPU up to the last reading)`,
      `- load: ${r.load.started ?? '?'} connections started, ${r.load.completed ?? '?'} completed, ${r.load.failed ?? '?'} failed, ${r.load.rate ?? '?'}/s reached; server: ${r.server.conns ?? '?'} connections, ${r.server.bytes_in ?? '?'} B in / ${r.server.bytes_out ?? '?'} B out of payload`,
      r.attributed
        ? `- attributed to the load's server ${r.attributed.server} B = **${attributedPct.toFixed(2)}%** of the ${r.l3.inB + r.l3.outB} layer-3 bytes nft counted on its port (read ${cfg.settleS} s after the load); unattributed ${r.attributed.unattributed} B; lost events ${r.attributed.lost_events}, resyncs ${r.attributed.resyncs}`
        : '- attribution: not read',
      ...(r.scrapes ? [`- ${r.scrapes.n} scrapes (curl, 10 s timeout), slowest ${r.scrapes.slowestMs} ms${r.scrapes.ms ? `, median ${[...r.scrapes.ms].sort((a, b) => a - b)[r.scrapes.ms.length >> 1]} ms, ${r.scrapes.ms.filter((x) => x > 1000).length} over 1 s` : ''}${r.scrapes.failed !== undefined ? `, ${r.scrapes.failed} without an answer` : ''}; last /metrics ${r.scrapes.bytes} bytes`] : []),
      `- load average at start ${r.loadavg.start.split(' ').slice(0, 3).join(' ')}, at end ${r.loadavg.end.split(' ').slice(0, 3).join(' ')}`,
      '',
    );
  }
  return L.join('\n');
}
