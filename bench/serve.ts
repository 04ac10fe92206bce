// Cost of `ctacct serve` under churn: CPU and memory over DURATION s of ~RATE new connections/s
// (loopback, inside a throwaway namespace) while /metrics is scraped every second; plus the size
// of /metrics. Run as root: `node --import tsx bench/serve.ts [--rate 2000] [--duration 60]`.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const RATE = arg('rate', 2000);
const DURATION = arg('duration', 60);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NS = `ctb-serve-${process.pid}`;
const TICK = sysconf();

function sysconf(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICK;
}
function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
const sh = (cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', NS, cmd, ...args]).toString();

// A paced client: RATE connections/s in 10 ms slices, each sends 200 bytes and closes.
const CLIENT = `const net=require('net');const rate=+process.argv[1],dur=+process.argv[2];let made=0,ok=0;const t0=Date.now();
const iv=setInterval(()=>{const due=Math.floor((Date.now()-t0)/1000*rate);while(made<due){made++;const s=net.connect(7400,'127.0.0.1',()=>s.end(Buffer.alloc(200)));s.on('error',()=>{});s.on('data',()=>{});s.on('close',()=>ok++)}
if(Date.now()-t0>=dur*1000){clearInterval(iv);setTimeout(()=>{console.log(JSON.stringify({made,ok}));process.exit(0)},1000)}},10);`;

async function main() {
  execFileSync('ip', ['netns', 'add', NS]);
  const kids: ReturnType<typeof spawn>[] = [];
  try {
    sh('ip', ['link', 'set', 'lo', 'up']);
    const serve = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}bin/ctacct.js`, 'serve'], { stdio: ['ignore', 'ignore', 'pipe'] });
    kids.push(serve);
    const server = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}test/helpers/traffic.mjs`, 'tcp-server', '7400', '--host', '127.0.0.1', '--timeout-ms', String((DURATION + 30) * 1000)], { stdio: 'ignore' });
    kids.push(server);
    await new Promise((r) => setTimeout(r, 2500));
    const fetchMetrics = () => sh('curl', ['-s', 'http://127.0.0.1:9477/metrics']);
    fetchMetrics();
    const cpu0 = cpuSeconds(serve.pid!);
    let maxRss = 0;
    let scrapes = 0;
    let maxMs = 0;
    let bytes = 0;
    const client = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', CLIENT, String(RATE), String(DURATION)], { stdio: ['ignore', 'pipe', 'inherit'] });
    kids.push(client);
    let out = '';
    client.stdout!.on('data', (d) => (out += d));
    const t0 = Date.now();
    while (Date.now() - t0 < DURATION * 1000) {
      const s = Date.now();
      const text = fetchMetrics();
      maxMs = Math.max(maxMs, Date.now() - s);
      bytes = text.length;
      scrapes++;
      maxRss = Math.max(maxRss, rssBytes(serve.pid!));
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - s))));
    }
    const cpu = cpuSeconds(serve.pid!) - cpu0;
    await new Promise((r) => client.on('exit', r));
    const load = JSON.parse(out || '{}');
    const entries = sh('cat', ['/proc/sys/net/netfilter/nf_conntrack_count']).trim();
    console.log(JSON.stringify({
      rate_target: RATE,
      duration_s: DURATION,
      connections_made: load.made,
      connections_completed: load.ok,
      conntrack_entries_at_end: Number(entries),
      serve_cpu_seconds: Math.round(cpu * 100) / 100,
      serve_cpu_percent_of_one_core: Math.round((cpu / DURATION) * 1000) / 10,
      serve_max_rss_mib: Math.round((maxRss / 1048576) * 10) / 10,
      scrapes,
      slowest_scrape_ms: maxMs,
      metrics_bytes: bytes,
    }));
  } finally {
    for (const k of kids) k.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    try {
      execFileSync('sh', ['-c', `for p in $(ip netns pids ${NS}); do kill -9 $p; done; ip netns del ${NS}`]);
    } catch {
      /* already gone */
    }
  }
}

await main();
