// Benchmark: one `ctacct states` with 10k and 50k TCP sockets vs the ss/netstat pipelines it
// replaces, on the same sockets, in a throwaway namespace. Root only; bounded (< 3 min).
//   node --import tsx bench/states.ts            → prints a markdown table, writes bench/out/benchmarks-states.md (its figures are kept in docs/benchmarks.md)
// The CLI is the built dist/main.js (run `npm run build` first), so node start-up is measured without tsx.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const HELPER = `${REPO}test/helpers/tcp-states.mjs`;
const OUT = `${REPO}bench/out`;
const RUNS = 5;
const sizesArg = process.argv.indexOf('--sizes');
const SIZES = sizesArg > 0 ? process.argv[sizesArg + 1]!.split(',').map(Number) : [10_000, 50_000];
const START = Date.now();
const BUDGET_MS = 170_000;

if (process.getuid?.() !== 0) {
  console.error('bench/states.ts needs root (ip netns)');
  process.exit(1);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
let ns = '';
const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 256 << 20 });
const inNs = (cmd: string) => sh(`ip netns exec ${ns} sh -c ${JSON.stringify(cmd)}`);

/** Wall and CPU (user+sys of the whole pipeline, GNU time) of a shell command inside the
 *  namespace, medians of RUNS (after one warm-up). CPU is the figure to trust on a busy machine. */
function time(cmd: string): { ms: number; cpu: number; out: string } {
  let out = '';
  const xs: number[] = [];
  const cs: number[] = [];
  const f = `${OUT}/states-time.txt`;
  for (let i = 0; i <= RUNS; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync('ip', ['netns', 'exec', ns, '/usr/bin/time', '-f', '%U %S', '-o', f, 'sh', '-c', cmd], { encoding: 'utf8', maxBuffer: 256 << 20 });
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    if (r.status !== 0) throw new Error(`${cmd}: exit ${r.status}: ${r.stderr}`);
    out = r.stdout;
    const [u, sy] = readFileSync(f, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    if (i > 0) {
      xs.push(ms);
      cs.push((u! + sy!) * 1000);
    }
  }
  return { ms: median(xs), cpu: median(cs), out };
}

/** Parse-only and scan-only timings, in a child inside the namespace (so /proc/net is the namespace's). */
function inProcess(): Record<string, number> {
  const script = `
    import { readSocketTable, scanSocketOwners, scanSocketOwnersAsync } from '${REPO}src/proc/reader.ts';
    import { countStates, socketItems } from '${REPO}src/core/states.ts';
    import { countSocketStates, dumpSocketTable } from '${REPO}src/netlink/sockets.ts';
    import { readFileSync } from 'node:fs';
    const med = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const parse = [], count = [], scan = [], scanA = [], readOnly = [], diag = [], parseCpu = [], diagCpu = [], tally = [], tallyCpu = [];
    const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    let sockets = 0, fds = 0;
    for (let i = 0; i <= ${RUNS}; i++) {
      let t = performance.now(); readFileSync('/proc/net/tcp', 'latin1'); readFileSync('/proc/net/tcp6', 'latin1'); if (i > 0) readOnly.push(performance.now() - t);
      let c0 = cpu(); t = performance.now(); const tab = readSocketTable('/proc'); const p = performance.now() - t; const pc = cpu() - c0;
      c0 = cpu(); t = performance.now(); const dt = dumpSocketTable({ tcp: true }); const d = performance.now() - t; const dc = cpu() - c0;
      if (dt.length < tab.entries.length * 0.99 || dt.length > tab.entries.length * 1.01) throw new Error('sock_diag ' + dt.length + ' vs /proc ' + tab.entries.length);
      c0 = cpu(); t = performance.now(); countSocketStates({ tcp: true }); const tl = performance.now() - t; const tc = cpu() - c0;
      if (i > 0) { diag.push(d); parseCpu.push(pc); diagCpu.push(dc); tally.push(tl); tallyCpu.push(tc); }
      t = performance.now(); countStates(socketItems(tab.entries), 'sockets', { by: 'state', listening: true, udp: false }); const c = performance.now() - t;
      if (i > 0) count.push(c);
      t = performance.now(); const s = scanSocketOwners('/proc'); const sc = performance.now() - t;
      t = performance.now(); await scanSocketOwnersAsync('/proc', { concurrency: 64 }); const sa = performance.now() - t;
      if (i > 0) { parse.push(p); scan.push(sc); scanA.push(sa); }
      sockets = tab.entries.length; fds = s.stats.fds;
    }
    console.log(JSON.stringify({ readOnly: med(readOnly), parse: med(parse), diag: med(diag), parseCpu: med(parseCpu), diagCpu: med(diagCpu), tally: med(tally), tallyCpu: med(tallyCpu), count: med(count), scan: med(scan), scanAsync: med(scanA), sockets, fds }));
  `;
  writeFileSync(`${OUT}/inproc.mts`, script);
  return JSON.parse(inNs(`cd ${REPO} && node --import tsx ${OUT}/inproc.mts`)) as Record<string, number>;
}

/**
 * Both ends of each connection live in one helper: 2 sockets and 2 fds per connection. The fd
 * hard limit here is 20,000 and cannot be raised (no CAP_SYS_RESOURCE in this container), so the
 * sockets are spread over helpers of at most PER_HELPER connections each.
 */
const PER_HELPER = 8000;

async function startHelpers(connections: number): Promise<ChildProcess[]> {
  const out: ChildProcess[] = [];
  try {
    for (let left = connections; left > 0; left -= PER_HELPER) out.push(await startHelper(Math.min(PER_HELPER, left)));
  } catch (e) {
    for (const c of out) c.kill('SIGKILL');
    throw e;
  }
  return out;
}

function startHelper(connections: number): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', `ulimit -n ${2 * connections + 1000} && exec node ${HELPER} '${JSON.stringify({ fanout: connections, deadlineMs: 60000 })}'`], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`helper not ready: ${err}`)), 70000);
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (c) => reject(new Error(`helper exited ${c}: ${err}`)));
  });
}

interface Row {
  sockets: number;
  ctacct: number;
  ctacctCpu: number;
  ssCpu: number;
  startupCpu: number;
  ctacctProcess: number;
  ss: number;
  netstat: number;
  readOnly: number;
  parse: number;
  diag: number;
  parseCpu: number;
  diagCpu: number;
  tally: number;
  tallyCpu: number;
  count: number;
  scan: number;
  scanAsync: number;
  fds: number;
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  // The built CLI (`npm run build`): compiled JS, as users run it, with its native addon.
  const cli = `node ${REPO}dist/main.js`;
  const rows: Row[] = [];
  let startup = 0;
  for (const size of SIZES) {
    if (Date.now() - START > BUDGET_MS) break;
    // A fresh namespace per size: the previous size's closed connections would linger in TIME_WAIT.
    ns = `ctt-bst-${process.pid}-${size}`;
    sh(`ip netns add ${ns} && ip netns exec ${ns} ip link set lo up`);
    try {
      // Wider ephemeral range in the namespace only: 25k connections to one port need 25k client ports.
      inNs('sysctl -qw net.ipv4.ip_local_port_range="10000 65000"');
      const helpers = await startHelpers(size / 2);
      try {
        const v = time(`${cli} --version`);
        if (!startup) startup = v.ms;
        const c = time(`${cli} states --json`);
        const s = time(`ss -tan | awk 'NR>1 {print $1}' | sort | uniq -c`);
        const n = time(`netstat -ant | awk 'NR>2 {print $6}' | sort | uniq -c`);
        const p = time(`${cli} states --by process --json`);
        const ip = inProcess();
        const total = JSON.parse(c.out).total as number;
        rows.push({
          sockets: total,
          ctacct: c.ms,
          ctacctCpu: c.cpu,
          ssCpu: s.cpu,
          startupCpu: v.cpu,
          ctacctProcess: p.ms,
          ss: s.ms,
          netstat: n.ms,
          readOnly: ip.readOnly!,
          parse: ip.parse!,
          diag: ip.diag!,
          parseCpu: ip.parseCpu!,
          diagCpu: ip.diagCpu!,
          tally: ip.tally!,
          tallyCpu: ip.tallyCpu!,
          count: ip.count!,
          scan: ip.scan!,
          scanAsync: ip.scanAsync!,
          fds: ip.fds!,
        });
      } finally {
        for (const h of helpers) h.kill('SIGKILL');
        for (const pid of sh(`ip netns pids ${ns}`).split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    } finally {
      sh(`ip netns del ${ns} || true`);
    }
  }
  const f = (x: number) => x.toFixed(1);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const lines = [
    '## `ctacct states` vs the pipelines it replaces',
    '',
    `Wall time of one run, median of ${RUNS} (after a warm-up), TCP sockets (both ends of loopback connections, plus one listener per helper; helpers of ≤ 8,000 connections since the fd hard limit here is 20,000) in a fresh namespace; ` +
      `${cpus().length} cores (${cpu}), kernel ${sh('uname -r').trim()}, Node ${process.version}. Every command runs through \`ip netns exec\` (same overhead for all). ` +
      '`ctacct` is the built CLI (`node dist/main.js`, with its native addon), node start-up included. Produced by `node --import tsx bench/states.ts`.',
    '',
    '| TCP sockets | `ctacct states` | `ss -tan \\| awk \\| sort \\| uniq -c` | `netstat -ant \\| awk \\| sort \\| uniq -c` | `ctacct states --by process` |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.sockets} | ${f(r.ctacct)} ms | ${f(r.ss)} ms | ${f(r.netstat)} ms | ${f(r.ctacctProcess)} ms |`),
    '',
    `The fixed cost of starting the CLI (\`ctacct --version\`, same conditions) is ${f(startup)} ms of each ctacct figure.`,
    '',
    'CPU time (user+sys of the whole pipeline, GNU time; medians of the same runs) — the fair comparison on a busy machine:',
    '',
    '| TCP sockets | `ctacct states` CPU | `ss -tan \\| awk \\| sort \\| uniq -c` CPU | ratio (target ≤ 1.0) | of which `ctacct --version` (node start-up) |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.sockets} | ${f(r.ctacctCpu)} ms | ${f(r.ssCpu)} ms | ${(r.ctacctCpu / r.ssCpu).toFixed(2)}× | ${f(r.startupCpu)} ms |`),
    '',
    'Inside ctacct (in-process, median of the same runs):',
    '',
    '| TCP sockets | read /proc/net/tcp{,6} only (kernel) | read + parse (`readSocketTable`) | sock_diag dump + decode (`dumpSocketTable`, `--by port/remote/process`) | sock_diag dump counted in the addon (`countSocketStates`, what `states` uses) | CPU: /proc read + parse | CPU: sock_diag + decode | CPU: sock_diag counted | count of entries (pure) | fd scan, sync | fd scan, async (64 at a time) | fds scanned |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.sockets} | ${f(r.readOnly)} ms | ${f(r.parse)} ms | ${f(r.diag)} ms | ${f(r.tally)} ms | ${f(r.parseCpu)} ms | ${f(r.diagCpu)} ms | ${f(r.tallyCpu)} ms | ${f(r.count)} ms | ${f(r.scan)} ms | ${f(r.scanAsync)} ms | ${r.fds} |`),
    '',
  ];
  const md = lines.join('\n');
  process.stdout.write(md);
  mkdirSync(`${REPO}bench/out`, { recursive: true });
  writeFileSync(`${REPO}bench/out/benchmarks-states.md`, md);
  console.error(`done in ${((Date.now() - START) / 1000).toFixed(0)} s`);
}

main().catch((e) => {
  try {
    sh(`for p in $(ip netns pids ${ns} 2>/dev/null); do kill -9 $p; done; ip netns del ${ns} 2>/dev/null || true`);
  } catch {
    /* best effort */
  }
  console.error(e);
  process.exit(1);
});
