// --low-overhead against the default mode on the same traffic, and an event overrun under a burst:
// detected, resynced with a dump, totals intact.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createPair, rootSkip } from '../helpers/netns.js';
import { moreSnapshots, startCtacct, stopTop } from '../helpers/ctacct.js';
import { runTraffic, startTraffic } from '../helpers/procs.js';

const total = (s: any, k: 'sent_total' | 'recv_total') =>
  s.rows.reduce((n: number, r: any) => n + r[k], 0) + s.unattributed.unknown[k] + s.unattributed.forwarded[k];

describe('low-overhead mode and overruns', { skip: rootSkip }, () => {
  let pair: Awaited<ReturnType<typeof createPair>>;
  before(async () => {
    pair = await createPair('lo');
    // Set up beforehand, so that two ctacct runs in one namespace change (and undo) nothing.
    for (const ns of [pair.a, pair.b]) {
      await ns.engageConntrack();
      await ns.sysctl('net.netfilter.nf_conntrack_acct', '1');
    }
  });
  after(async () => {
    await pair?.destroy();
  });

  test('--low-overhead gives the same per-process totals as the default mode (within 1%)', async () => {
    const def = startCtacct(pair.b, ['top', '--json', '--interval', '0.5']);
    const low = startCtacct(pair.b, ['top', '--json', '--interval', '0.5', '--low-overhead', '--dump-interval', '2']);
    await Promise.all([moreSnapshots(def, 1), moreSnapshots(low, 1)]);
    // The servers keep listening after their last connection, as servers do: a connection whose
    // server has exited (listener and all) by the time it is first looked at has no owner left.
    const s1 = await startTraffic(pair.b, ['tcp-server', '8101', '--count', '40', '--reply', '3000', '--stay']);
    const s2 = await startTraffic(pair.b, ['tcp-server', '8102', '--count', '1', '--stay']);
    await Promise.all([
      runTraffic(pair.a, ['tcp-client', '10.231.0.2', '8101', '25000', '--repeat', '40']),
      runTraffic(pair.a, ['tcp-client', '10.231.0.2', '8102', '2000000', '--hold-ms', '500']),
    ]);
    const [d1, d2] = await Promise.all([s1.next((o) => o.done), s2.next((o) => o.done)]);
    // Two full dumps of the low-overhead run after the traffic (finished connections wait in TIME_WAIT).
    await moreSnapshots(low, 10, 30000);
    const [a, b] = await Promise.all([stopTop(def), stopTop(low)]);
    for (const pid of [d1.pid, d2.pid]) {
      const ra = a.rows.find((r: any) => r.pid === pid);
      const rb = b.rows.find((r: any) => r.pid === pid);
      const table = JSON.stringify({ def: a.rows.map((r: any) => [r.pid, r.recv_total]), low: b.rows.map((r: any) => [r.pid, r.recv_total]), unattributed: a.unattributed, lowUnattributed: b.unattributed, health: a.health, lowHealth: b.health });
      assert.ok(ra && rb, `pid ${pid} in both: ${table}`);
      assert.ok(ra.recv_total >= (pid === d1.pid ? 1_000_000 : 2_000_000), `pid ${pid} recv_total ${ra.recv_total}: ${table}`);
      assert.ok(Math.abs(ra.recv_total - rb.recv_total) <= ra.recv_total * 0.01, `recv ${ra.recv_total} vs ${rb.recv_total}: ${table}`);
      assert.ok(Math.abs(ra.sent_total - rb.sent_total) <= ra.sent_total * 0.01, `sent ${ra.sent_total} vs ${rb.sent_total}: ${table}`);
    }
    assert.ok(b.self.rss_bytes > 0);
  });

  test('an overrun under a burst is detected, resynced, and no bytes are lost', async () => {
    // 4 KiB of event buffer and 3,000 new flows within milliseconds.
    const top = startCtacct(pair.a, ['top', '--json', '--interval', '0.5', '--rcvbuf', '0.004', '--proto', 'udp']);
    await moreSnapshots(top, 1);
    const spray = await runTraffic(pair.a, ['udp-spray', '10.231.0.2', '20000', '3000']);
    assert.equal(spray.datagrams, 3000);
    await moreSnapshots(top, 3);
    const kernel = await pair.a.exec('conntrack', ['-L', '-p', 'udp']);
    let kernelBytes = 0;
    for (const line of kernel.split('\n')) {
      const m = line.match(/dport=(\d+) packets=\d+ bytes=(\d+)/);
      if (m && Number(m[1]) >= 20000 && Number(m[1]) < 23000) kernelBytes += Number(m[2]);
    }
    const s = await stopTop(top);
    assert.ok(s.health.lost_events >= 1, `lost_events ${s.health.lost_events}`);
    assert.ok(s.health.resyncs >= 1, `resyncs ${s.health.resyncs}`);
    // 3,000 datagrams of 1 byte + 28 bytes of IPv4/UDP header, all accounted after the resync.
    assert.equal(kernelBytes, 3000 * 29);
    assert.equal(total(s, 'sent_total'), 3000 * 29);
  });
});
