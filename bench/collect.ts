// Cost of `ctacct collect` under churn: CPU and memory over DURATION s of ~RATE new connections/s
// (loopback, inside a throwaway namespace), and what it stored (rows, series, flows, file size).
// Run as root:
//   node --import tsx bench/collect.ts [--rate 2000] [--duration 120]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSqlite } from '../src/history/sqlite.js';
import { UsageStore } from '../src/history/store.js';
import { cpuSeconds, numArg as arg, loopbackServer, pacedClient, rssBytes, throwawayNamespace } from './common.js';

const RATE = arg('rate', 2000);
const DURATION = arg('duration', 120);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NS = `ctb-collect-${process.pid}`;
const size = (p: string) => ['', '-wal'].reduce((n, s) => n + (statSync(p + s, { throwIfNoEntry: false })?.size ?? 0), 0);

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-collect-'));
  const db = join(dir, 'usage.db');
  const ns = throwawayNamespace(NS);
  const sh = ns.run;
  const kids: ReturnType<typeof spawn>[] = [];
  try {
    const collect = spawn('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}bin/ctacct.js`, 'collect', '--db', db], { stdio: ['ignore', 'ignore', 'pipe'] });
    kids.push(collect);
    let err = '';
    collect.stderr!.on('data', (d) => (err += d));
    kids.push(loopbackServer(NS, ROOT, DURATION + 60));
    while (!err.includes('collecting into')) await new Promise((r) => setTimeout(r, 100));
    const cpu0 = cpuSeconds(collect.pid!);
    let maxRss = 0;
    const client = pacedClient(NS, RATE, DURATION);
    kids.push(client.child);
    const t0 = Date.now();
    while (Date.now() - t0 < DURATION * 1000) {
      maxRss = Math.max(maxRss, rssBytes(collect.pid!));
      await new Promise((r) => setTimeout(r, 1000));
    }
    const cpu = cpuSeconds(collect.pid!) - cpu0;
    const load = await client.done;
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
    ns.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
