// Exact attribution on multi-process servers (real kernel, veth pair between two test namespaces):
// a pre-fork server sharing one listener, an SO_REUSEPORT group, and a fork-after-accept server.
// Every worker counts the payload it received and the client ports it served; the kernel's own
// per-flow counters for those ports (conntrack -L, the flows wait in TIME_WAIT) are its exact
// layer-3 count; ctacct's row for the worker must be within 1% of it, in both modes.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { createPair, type Netns, rootSkip } from '../helpers/netns.js';
import { moreSnapshots, startCtacct, stopTop } from '../helpers/ctacct.js';
import { JsonLines } from '../helpers/procs.js';

const MP = fileURLToPath(new URL('../helpers/mpserver.py', import.meta.url));

/** 36 connections: 12 of 300 kB, 12 of 40 kB, 12 of 1.5 kB (these last a few ms at most). */
const SIZES = Array.from({ length: 12 }, () => [300_000, 40_000, 1_500]).flat();

/** orig-direction (client → server) layer-3 bytes per client port, from the kernel's table. */
async function kernelByPort(ns: Netns, dport: number): Promise<Map<number, number>> {
  const out = await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', String(dport)]);
  const m = new Map<number, number>();
  for (const line of out.split('\n')) {
    const sport = /sport=(\d+)/.exec(line);
    const bytes = /bytes=(\d+)/.exec(line);
    if (sport && bytes) m.set(Number(sport[1]), Number(bytes[1]));
  }
  return m;
}

async function runModel(pair: { a: Netns; b: Netns }, model: 'prefork' | 'reuseport' | 'forkaccept', port: number, low: boolean, holdMs: number) {
  const top = startCtacct(pair.b, ['top', '--json', '--interval', '0.5', '--port', String(port), ...(low ? ['--low-overhead', '--dump-interval', '2'] : [])]);
  const srv = new JsonLines(pair.b.spawn('python3', [MP, model, String(port), ...(model === 'forkaccept' ? [] : ['3'])], { env: { ...process.env, MP_HOLD_MS: String(holdMs) } }));
  try {
    const ready = await srv.next((o) => o.ready);
    await moreSnapshots(top, 1);
    const cli = new JsonLines(pair.a.spawn('python3', [MP, 'client', '10.231.0.2', String(port), SIZES.join(','), '3']));
    const done = await cli.next((o) => o.done, 60_000);
    assert.equal(done.sent, SIZES.reduce((a, b) => a + b, 0));
    const short = done.durations_ms.filter((d: number) => d < 5).length;
    // Worker reports: on SIGUSR1 (pre-fork, reuseport), or as each fork-after-accept child exits.
    let reports: any[];
    if (model === 'forkaccept') {
      await srv.next(() => srv.lines.filter((l) => l.ports).length >= SIZES.length, 20_000);
      reports = srv.lines.filter((l) => l.ports);
    } else {
      process.kill(ready.pid, 'SIGUSR1');
      await srv.next(() => srv.lines.filter((l) => l.ports).length >= 3, 20_000);
      reports = srv.lines.filter((l) => l.ports);
    }
    assert.equal(reports.reduce((n, r) => n + r.received, 0), done.sent);
    await moreSnapshots(top, low ? 6 : 3);
    const kernel = await kernelByPort(pair.b, port);
    const s = await stopTop(top);
    const table = JSON.stringify({
      rows: s.rows.map((r: any) => [r.pid, r.comm, r.recv_total, r.flows, r.shared ?? false]),
      reports: reports.map((r) => [r.pid, r.received, r.conns]),
      unknown: s.unattributed.unknown,
      health: s.health,
      short,
    });
    let served = 0;
    for (const r of reports) {
      if (r.conns === 0) {
        assert.equal(s.rows.find((x: any) => x.pid === r.pid)?.recv_total ?? 0, 0, `idle worker ${r.pid} has bytes: ${table}`);
        continue;
      }
      served++;
      let expected = 0;
      for (const p of r.ports) {
        const k = kernel.get(p);
        assert.ok(k !== undefined, `no conntrack entry for client port ${p}`);
        expected += k;
      }
      assert.ok(expected >= r.received, `kernel count ${expected} below payload ${r.received}`);
      const row = s.rows.find((x: any) => x.pid === r.pid);
      assert.ok(row, `no row for worker ${r.pid}: ${table}`);
      assert.ok(Math.abs(row.recv_total - expected) <= expected * 0.01, `worker ${r.pid}: ctacct ${row.recv_total} vs its own ${expected} (L3; payload ${r.received}): ${table}`);
    }
    assert.ok(served >= 2, `the load reached only ${served} worker(s): ${table}`);
    return { short, served };
  } finally {
    srv.child.kill('SIGTERM');
    if (top.child.exitCode === null) top.child.kill('SIGTERM');
  }
}

describe('exact attribution on multi-process servers', { skip: rootSkip }, () => {
  let pair: Awaited<ReturnType<typeof createPair>>;
  before(async () => {
    pair = await createPair('mp');
  });
  after(async () => {
    await pair?.destroy();
  });
  let port = 8101;
  for (const low of [false, true]) {
    for (const model of ['prefork', 'reuseport', 'forkaccept'] as const) {
      // Each worker keeps a connection 20 ms after reading it: seen by ctacct's reader thread
      // (it looks for accepted sockets every millisecond) or, once closed, by the close tracker.
      test(`${model}${low ? ' (--low-overhead)' : ''}: every worker carries exactly the bytes it received`, async () => {
        const r = await runModel(pair, model, port++, low, 20);
        assert.equal(r.served >= 2, true);
      });
    }
  }
  // Connections accepted and closed within the same millisecond cannot be seen with their own
  // socket by any look from user space: the close tracker (a BPF program on the kernel's TCP
  // state-change tracepoint) names the process that closed each one.
  test('prefork, connections under 5 ms: every worker exact', async () => {
    const r = await runModel(pair, 'prefork', 8199, false, 0);
    assert.ok(r.short >= 1, `no connection under 5 ms (${r.short})`);
  });
});
