import { after, before, test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { createPair } from '../helpers/netns.js';
import { moreSnapshots, startCtacct, stopTop } from '../helpers/ctacct.js';
import { runTraffic, startTraffic } from '../helpers/procs.js';
let pair: Awaited<ReturnType<typeof createPair>>;
before(async () => {
  pair = await createPair('dbg');
  for (const ns of [pair.a, pair.b]) { await ns.engageConntrack(); await ns.sysctl('net.netfilter.nf_conntrack_acct', '1'); }
});
after(async () => { await pair?.destroy(); });
test('debug', async () => {
  const def = startCtacct(pair.b, ['top', '--json', '--interval', '0.5', '--by', 'conn']);
  const proc = startCtacct(pair.b, ['top', '--json', '--interval', '0.5']);
  const low = startCtacct(pair.b, ['top', '--json', '--interval', '0.5', '--low-overhead', '--dump-interval', '2']);
  await Promise.all([moreSnapshots(def, 1), moreSnapshots(proc, 1), moreSnapshots(low, 1)]);
  const s1 = await startTraffic(pair.b, ['tcp-server', '8101', '--count', '40', '--reply', '3000']);
  const s2 = await startTraffic(pair.b, ['tcp-server', '8102', '--count', '1']);
  await Promise.all([
    runTraffic(pair.a, ['tcp-client', '10.231.0.2', '8101', '25000', '--repeat', '40']),
    runTraffic(pair.a, ['tcp-client', '10.231.0.2', '8102', '2000000', '--hold-ms', '500']),
  ]);
  const [d1] = await Promise.all([s1.next((o) => o.done), s2.next((o) => o.done)]);
  await moreSnapshots(low, 10, 30000);
  const pr = await stopTop(proc); await stopTop(low);
  writeFileSync('/tmp/dbg-proc.json', JSON.stringify({ d1: d1.pid, rows: pr.rows.map((r: any) => [r.pid, r.recv_total]) }));
  const kernel = await pair.b.exec('conntrack', ['-L', '-p', 'tcp', '-o', 'id']);
  const a = await stopTop(def);
  writeFileSync('/tmp/dbg.json', JSON.stringify({ rows: a.rows.map((r: any) => [r.remote, r.pid, r.recv_total, r.state]), health: a.health, kernel }, null, 1));
});
