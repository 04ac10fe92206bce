// Cost of `ctacct collect` under churn: CPU and memory over DURATION s of ~RATE new connections/s
// (loopback, inside a throwaway namespace), and what it stored (rows, series, flows, file size).
// Run as root:
//   node --import tsx bench/collect.ts [--rate 2000] [--duration 120]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSqlite } from '../src/history/sqlite.js';
import { UsageStore } from '../src/history/store.js';

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const RATE = arg('rate', 2000);
const DURATION = arg('duration', 120);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NS = `ctb-collect-${process.pid}`;
const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICK;
}
function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
const size = (p: string) => ['', '-wal'].reduce((n, s) => n + (statSync(p + s, { throwIfNoEntry: false })?.size ?? 0), 0);
const sh = (cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', NS, cmd, ...args]).toString();

// A paced client: RATE connections/s in 10 ms slices, each sends 200 bytes and closes.
const CLIENT = `const net=require('net');const rate=+process.argv[1],dur=+process.argv[2];let made=0,ok=0;const t0=Date.now();
const iv=setInterval(()=>{const due=Math.floor((Date.now()-t0)/1000*rate);while(made<due){made++;const s=net.connect(7400,'127.0.0.1',()=>s.end(Buffer.alloc(200)));s.on('error',()=>{});s.on('data',()=>{});s.on('close',()=>ok++)}
if(Date.now()-t0>=dur*1000){clearInterval(iv);setTimeout(()=>{console.log(JSON.stringify({made,ok}));process.exit(0)},1000)}},10);`;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-collect-'));
  const db = join(dir, 'usage.db');
  execFileSync('ip', ['netns', 'add', NS]);
  const kids: ReturnType<typeof spawn>[] = [];
  try {
    sh('ip', ['link', 'set', 'lo', 'up']);
    const collect = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}bin/ctacct.js`, 'collect', '--db', db], { stdio: ['ignore', 'ignore', 'pipe'] });
    kids.push(collect);
    let err = '';
    collect.stderr!.on('data', (d) => (err += d));
    const server = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}test/helpers/traffic.mjs`, 'tcp-server', '7400', '--host', '127.0.0.1', '--timeout-ms', String((DURATION + 60) * 1000)], { stdio: 'ignore' });
    kids.push(server);
    while (!err.includes('collecting into')) await new Promise((r) => setTimeout(r, 100));
    const cpu0 = cpuSeconds(collect.pid!);
    let maxRss = 0;
    const client = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', CLIENT, String(RATE), String(DURATION)], { stdio: ['ignore', 'pipe', 'inherit'] });
    kids.push(client);
    let out = '';
    client.stdout!.on('data', (d) => (out += d));
    const t0 = Date.now();
    while (Date.now() - t0 < DURATION * 1000) {
      maxRss = Math.max(maxRss, rssBytes(collect.pid!));
      await new Promise((r) => setTimeout(r, 1000));
    }
    const cpu = cpuSeconds(collect.pid!) - cpu0;
    await new Promise((r) => client.on('exit', r));
    const load = JSON.parse(out || '{}');
    const entries = Number(sh('cat', ['/proc/sys/net/netfilter/nf_conntrack_count']).trim());
    // Stop collect (it writes the minute under way), then read what it stored.
    const exited = new Promise((r) => collect.on('exit', r));
    collect.kill('SIGTERM');
    await exited;
    const store = UsageStore.open(await loadSqlite(), db, { readonly: true });
    const rows = store.counts();
    const store0Series = (store.db.prepare('SELECT COUNT(*) AS n FROM series').get() as { n: number }).n;
    const flows = (store.db.prepare("SELECT SUM(m.flows) AS n FROM minutes m JOIN series s ON s.id = m.series WHERE s.port = 7400 AND s.dir = 'out'").get() as { n: number }).n;
    store.close();
    const atEnd = size(db); // after the clean stop: checkpointed, no -wal
    console.log(
      JSON.stringify({
        rate_target: RATE,
        duration_s: DURATION,
        connections_made: load.made,
        connections_completed: load.ok,
        conntrack_entries_at_end: entries,
        collect_cpu_seconds: Math.round(cpu * 100) / 100,
        collect_cpu_percent_of_one_core: Math.round((cpu / DURATION) * 1000) / 10,
        collect_max_rss_mib: Math.round((maxRss / 1048576) * 10) / 10,
        minute_rows: rows.minutes,
        client_flows_stored: flows,
        db_bytes_at_end: atEnd,
        series: rows.minutes === 0 ? 0 : (store0Series ?? 0),
        load_avg: readFileSync('/proc/loadavg', 'utf8').trim(),
      }),
    );
  } finally {
    for (const k of kids) k.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    try {
      execFileSync('sh', ['-c', `for p in $(ip netns pids ${NS}); do kill -9 $p; done; ip netns del ${NS}`]);
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
