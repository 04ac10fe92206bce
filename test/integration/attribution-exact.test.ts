// Counting rules on a real kernel: a UDP flow whose conntrack id comes back (fixed source port,
// 1 s UDP timeout in the test namespace, bursts around the expiry, dumps interleaved), a socket
// shared across a real fork, and a loopback flow in attribute groupings.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createPair, rootSkip } from '../helpers/netns.js';
import { moreSnapshots, startCtacct, stopTop } from '../helpers/ctacct.js';
import { JsonLines, runTraffic, startTraffic } from '../helpers/procs.js';

// 3 bursts of 20 datagrams of 500 B from source port 40053, 1.6 s apart (the UDP entry expires
// after 1 s, so each burst is a new life of the same tuple); the server answers 100 B to each.
const UDP_CLIENT = `
import socket, sys, time, json, os
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40053))
s.settimeout(2)
got = 0
for burst in range(3):
    for i in range(20):
        s.sendto(b"u" * 500, (sys.argv[1], int(sys.argv[2])))
        got += len(s.recv(2048))
    time.sleep(1.6)
print(json.dumps({"done": True, "pid": os.getpid(), "received": got}), flush=True)
`;
const UDP_SERVER = `
import socket, sys, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print(json.dumps({"ready": True}), flush=True)
while True:
    d, a = s.recvfrom(2048)
    s.sendto(b"r" * 100, a)
`;
// Connects, forks (the child keeps the socket open and sleeps), then the parent sends.
const FORKED = `
import socket, sys, os, time, json
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(json.dumps({"ready": True, "pid": os.getpid(), "child": child}), flush=True)
sys.stdin.readline()
c.sendall(b"f" * 200000)
time.sleep(1)
print(json.dumps({"done": True}), flush=True)
time.sleep(60)
`;

describe('counting rules on a real kernel', { skip: rootSkip }, () => {
  let pair: Awaited<ReturnType<typeof createPair>>;
  before(async () => {
    pair = await createPair('ex');
  });
  after(async () => {
    await pair?.destroy();
  });

  test('UDP from a fixed source port across expiries: every life counted once, totals exact', async () => {
    const server = new JsonLines(pair.b.spawn('python3', ['-c', UDP_SERVER, '5301']));
    const top = startCtacct(pair.a, ['top', '--json', '--interval', '0.3', '--proto', 'udp']);
    try {
      await server.next((o) => o.ready);
      await moreSnapshots(top, 1);
      // Conntrack is engaged in this namespace now: its UDP timeout is this namespace's own.
      await pair.a.exec('sysctl', ['-qw', 'net.netfilter.nf_conntrack_udp_timeout=1']);
      await pair.a.exec('sysctl', ['-qw', 'net.netfilter.nf_conntrack_udp_timeout_stream=1']);
      const cli = new JsonLines(pair.a.spawn('python3', ['-c', UDP_CLIENT, '10.231.0.2', '5301']));
      const done = await cli.next((o) => o.done, 30_000);
      assert.equal(done.received, 60 * 100);
      // Let the last life expire and be settled by its DESTROY (dumps reap expired entries).
      const sent = 60 * (500 + 28);
      const recv = 60 * (100 + 28);
      let last: any = null;
      for (let i = 0; i < 40; i++) {
        last = await moreSnapshots(top, 1);
        const row = last.rows.find((r: any) => r.pid === done.pid);
        if (row) assert.ok(row.sent_total <= sent && row.recv_total <= recv, `above truth: ${JSON.stringify(row)}`);
        if (row && row.sent_total === sent && row.recv_total === recv && row.flows === 0) break;
      }
      const s = await stopTop(top);
      const row = s.rows.find((r: any) => r.pid === done.pid);
      assert.ok(row, `no row for the client: ${JSON.stringify(s.rows)}`);
      assert.equal(row.sent_total, sent);
      assert.equal(row.recv_total, recv);
      assert.equal(s.unattributed.unknown.sent_total, 0);
    } finally {
      server.child.kill();
      if (top.child.exitCode === null) top.child.kill('SIGTERM');
    }
  });

  test('a socket shared across fork: the lowest pid (the parent), shared: true', async () => {
    const server = await startTraffic(pair.b, ['tcp-server', '8301', '--count', '1']);
    const proc = new JsonLines(pair.a.spawn('python3', ['-c', FORKED, '10.231.0.2', '8301']));
    let top: JsonLines | null = null;
    let childPid = 0;
    try {
      const ready = await proc.next((o) => o.ready);
      childPid = ready.child;
      // ctacct starts after the fork: its search meets the child (newest) first.
      top = startCtacct(pair.a, ['top', '--json', '--interval', '0.5', '--port', '8301']);
      await moreSnapshots(top, 1);
      proc.child.stdin!.write('go\n');
      await proc.next((o) => o.done);
      await moreSnapshots(top, 2);
      const s = await stopTop(top);
      const row = s.rows.find((r: any) => r.pid === ready.pid);
      assert.ok(row, `no row for the parent ${ready.pid} (child ${ready.child}): ${JSON.stringify(s.rows.map((x: any) => [x.pid, x.sent_total, x.shared]))} ${JSON.stringify(s.unattributed)} ${JSON.stringify(s.health)}`);
      assert.equal(row.shared, true);
      assert.ok(row.sent_total >= 200_000 && row.sent_total <= 200_000 * 1.1, `sent ${row.sent_total}`);
      assert.equal(s.rows.find((r: any) => r.pid === ready.child), undefined);
    } finally {
      proc.child.kill('SIGKILL');
      if (childPid) process.kill(childPid, 'SIGKILL');
      server.child.kill('SIGTERM');
      if (top && top.child.exitCode === null) top.child.kill('SIGTERM');
    }
  });

  test('a loopback flow: --by port and --by remote carry it once, --by process both ends', async () => {
    const byPort = startCtacct(pair.a, ['top', '--json', '--interval', '0.5', '--port', '8302', '--by', 'port']);
    const byRemote = startCtacct(pair.a, ['top', '--json', '--interval', '0.5', '--port', '8302', '--by', 'remote']);
    const byProc = startCtacct(pair.a, ['top', '--json', '--interval', '0.5', '--port', '8302']);
    await Promise.all([moreSnapshots(byPort, 1), moreSnapshots(byRemote, 1), moreSnapshots(byProc, 1)]);
    const server = await startTraffic(pair.a, ['tcp-server', '8302', '--count', '1']);
    const client = await runTraffic(pair.a, ['tcp-client', '127.0.0.1', '8302', '2000000', '--hold-ms', '200']);
    const done = await server.next((o) => o.done);
    assert.equal(done.received, 2_000_000);
    await Promise.all([moreSnapshots(byPort, 2), moreSnapshots(byRemote, 2), moreSnapshots(byProc, 2)]);
    const [p, r, proc] = await Promise.all([stopTop(byPort), stopTop(byRemote), stopTop(byProc)]);
    const cli = proc.rows.find((x: any) => x.pid === client.pid);
    const srv = proc.rows.find((x: any) => x.pid === done.pid);
    const flowBytes = cli.sent_total + cli.recv_total; // the flow's two directions
    // Layer-3 bytes: the payload plus headers (more skbs, so more headers, on a loaded host).
    assert.ok(cli.sent_total >= 2_000_000 && cli.sent_total <= 2_000_000 * 1.1, `client sent ${cli.sent_total}`);
    assert.equal(srv.recv_total, cli.sent_total);
    assert.equal(srv.sent_total, cli.recv_total);
    assert.equal(p.rows.length, 1);
    assert.equal(p.rows[0].sent_total + p.rows[0].recv_total, flowBytes, 'port row: once');
    assert.equal(p.rows[0].recv_total, cli.sent_total, 'port row: from the answering end');
    assert.equal(r.rows.length, 1);
    assert.equal(r.rows[0].sent_total + r.rows[0].recv_total, flowBytes, 'remote row: once');
  });
});
