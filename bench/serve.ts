// Cost of `ctacct serve` under churn: CPU and memory over DURATION s of ~RATE new connections/s
// (loopback, inside a throwaway namespace) while /metrics is scraped every second; plus the size
// of /metrics. Run as root: `node --import tsx bench/serve.ts [--rate 2000] [--duration 60]`.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, numArg as arg, loopbackServer, pacedClient, rssBytes, throwawayNamespace } from './common.js';

const RATE = arg('rate', 2000);
const DURATION = arg('duration', 60);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NS = `ctb-serve-${process.pid}`;

async function main() {
  const ns = throwawayNamespace(NS);
  const sh = ns.run;
  const kids: ReturnType<typeof spawn>[] = [];
  try {
    const serve = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}bin/ctacct.js`, 'serve'], { stdio: ['ignore', 'ignore', 'pipe'] });
    kids.push(serve);
    kids.push(loopbackServer(NS, ROOT, DURATION + 30));
    await new Promise((r) => setTimeout(r, 2500));
    const fetchMetrics = () => sh('curl', ['-s', 'http://127.0.0.1:9477/metrics']);
    fetchMetrics();
    const cpu0 = cpuSeconds(serve.pid!);
    let maxRss = 0;
    let scrapes = 0;
    let maxMs = 0;
    let bytes = 0;
    const client = pacedClient(NS, RATE, DURATION);
    kids.push(client.child);
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
    const load = await client.done;
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
    ns.remove();
  }
}

await main();
