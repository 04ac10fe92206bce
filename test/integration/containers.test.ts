// Containers behind a host: ctacct runs in the "host" namespace, whose conntrack sees the
// containers' flows only as forwarded (masqueraded outbound, DNAT'd inbound). Every flow must be
// attributed to the process inside its container, with that container's namespace, and nothing of
// it left in `forwarded`. All namespaces, veths and nft rules are the test's own.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Netns, rootSkip } from '../helpers/netns.js';
import { moreSnapshots, runCtacct, startCtacct, stopTop } from '../helpers/ctacct.js';
import { runTraffic, startTraffic } from '../helpers/procs.js';

interface Lab {
  ext: Netns;
  host: Netns;
  c1: Netns;
  c2: Netns;
  /** ext ⇄ host link: 10.231.N.0/24; containers 10.231.N+1 and N+2. */
  net: number;
  extAddr: string;
  hostAddr: string;
  c1Addr: string;
  c2Addr: string;
}

const nsInode = (ns: Netns) => statSync(`/run/netns/${ns.name}`).ino;

async function link(a: Netns, aAddr: string, b: Netns, bAddr: string): Promise<void> {
  const va = `ca${randomBytes(3).toString('hex')}`;
  const vb = `cb${randomBytes(3).toString('hex')}`;
  await a.exec('ip', ['link', 'add', va, 'type', 'veth', 'peer', 'name', vb, 'netns', b.name]);
  await a.exec('ip', ['addr', 'add', aAddr, 'dev', va]);
  await a.exec('ip', ['link', 'set', va, 'up']);
  await b.exec('ip', ['addr', 'add', bAddr, 'dev', vb]);
  await b.exec('ip', ['link', 'set', vb, 'up']);
}

async function buildLab(): Promise<Lab> {
  // Subnets unique per run: parallel runs elsewhere on the machine use other 10.231.x.x nets.
  const net = 10 + 3 * randomInt(0, 80);
  const made: Netns[] = [];
  try {
    const ext = await Netns.create('cx');
    made.push(ext);
    const host = await Netns.create('ch');
    made.push(host);
    const c1 = await Netns.create('c1');
    made.push(c1);
    const c2 = await Netns.create('c2');
    made.push(c2);
    const lab: Lab = { ext, host, c1, c2, net, extAddr: `10.231.${net}.2`, hostAddr: `10.231.${net}.1`, c1Addr: `10.231.${net + 1}.2`, c2Addr: `10.231.${net + 2}.2` };
    await link(host, `${lab.hostAddr}/24`, ext, `${lab.extAddr}/24`);
    await link(host, `10.231.${net + 1}.1/24`, c1, `${lab.c1Addr}/24`);
    await link(host, `10.231.${net + 2}.1/24`, c2, `${lab.c2Addr}/24`);
    await c1.exec('ip', ['route', 'add', 'default', 'via', `10.231.${net + 1}.1`]);
    await c2.exec('ip', ['route', 'add', 'default', 'via', `10.231.${net + 2}.1`]);
    await host.sysctl('net.ipv4.ip_forward', '1');
    // The external side has no route to the containers: only NAT gets their traffic through.
    await host.nft(`table ip ctt_nat {
  chain pre { type nat hook prerouting priority -100; ip daddr ${lab.hostAddr} tcp dport 8080 dnat to ${lab.c2Addr}:80; ip daddr ${lab.hostAddr} udp dport 5353 dnat to ${lab.c2Addr}:53; }
  chain post { type nat hook postrouting priority 100; ip saddr 10.231.${net + 1}.0/24 masquerade; ip saddr 10.231.${net + 2}.0/24 masquerade; }
}
`);
    return lab;
  } catch (e) {
    for (const n of made) await n.destroy();
    throw e;
  }
}

/** Sum of the kernel's own layer-3 bytes (orig direction) of the host's flows to a port. */
async function kernelOrigBytes(host: Netns, proto: 'tcp' | 'udp', dport: number): Promise<{ bytes: number; reply: number; flows: number }> {
  const out = await host.exec('conntrack', ['-L', '-p', proto, '--dport', String(dport)]).catch(() => '');
  let bytes = 0;
  let reply = 0;
  let flows = 0;
  for (const line of out.split('\n')) {
    const b = [...line.matchAll(/bytes=(\d+)/g)].map((m) => Number(m[1]));
    if (b.length !== 2) continue;
    bytes += b[0]!;
    reply += b[1]!;
    flows++;
  }
  return { bytes, reply, flows };
}

function rowOf(snap: any, pid: number): any {
  const row = snap.rows.find((r: any) => r.pid === pid);
  if (!row) {
    const rows = snap.rows.map((r: any) => `${r.pid}/${r.comm} netns ${r.netns} sent ${r.sent_total} recv ${r.recv_total}`).join('; ');
    throw new assert.AssertionError({ message: `no row for pid ${pid}; rows: ${rows}; unattributed: ${JSON.stringify(snap.unattributed)}` });
  }
  return row;
}

/** At least 99% of the kernel's count, never more. */
function assert99(actual: number, kernel: number, what: string) {
  assert.ok(kernel > 0, `${what}: the kernel counted nothing`);
  assert.ok(actual <= kernel, `${what}: ${actual} > kernel ${kernel}`);
  assert.ok(actual >= kernel * 0.99, `${what}: ${actual} < 99% of kernel ${kernel} (${((100 * actual) / kernel).toFixed(2)}%)`);
}

describe('containers behind NAT, ctacct in the host namespace', { skip: rootSkip }, () => {
  let lab: Lab;
  before(async () => {
    lab = await buildLab();
  });
  after(async () => {
    for (const n of [lab?.ext, lab?.host, lab?.c1, lab?.c2]) await n?.destroy();
  });

  test('masqueraded long, short and UDP transfers and a DNAT download: each on its process, with its netns; nothing forwarded', async (t) => {
    const top = startCtacct(lab.host, ['top', '--json', '--interval', '0.5']);
    try {
      await moreSnapshots(top, 1);
      const sLong = await startTraffic(lab.ext, ['tcp-server', '9001']);
      const sShort = await startTraffic(lab.ext, ['tcp-server', '9002']);
      const sUdp = await startTraffic(lab.ext, ['udp-server', '5300', '--reply', '300']);
      const sIn = await startTraffic(lab.c2, ['tcp-server', '80', '--reply', '1000000']);
      const sDns = await startTraffic(lab.c2, ['udp-server', '53', '--reply', '200']);
      const [long, short, udp, inbound, dnsClient] = await Promise.all([
        runTraffic(lab.c1, ['tcp-client', lab.extAddr, '9001', '1000000', '--hold-ms', '1200']),
        runTraffic(lab.c1, ['tcp-client', lab.extAddr, '9002', '2000', '--repeat', '200']),
        // The UDP client lingers 1 s: container ends are looked up from the event loop, not on
        // the reader thread, so a process gone sooner depends on the load (see docs/containers.md).
        runTraffic(lab.c2, ['udp-client', lab.extAddr, '5300', '1000', '--count', '20', '--wait-ms', '1000']),
        runTraffic(lab.ext, ['tcp-client', lab.hostAddr, '8080', '1000', '--hold-ms', '1000']),
        runTraffic(lab.ext, ['udp-client', lab.hostAddr, '5353', '500', '--count', '10']),
      ]);
      for (const r of [long, short, udp, inbound, dnsClient]) assert.ok(r.done, JSON.stringify(r));
      assert.equal(inbound.received, 1_000_000);
      await moreSnapshots(top, 3);
      const kLong = await kernelOrigBytes(lab.host, 'tcp', 9001);
      const kShort = await kernelOrigBytes(lab.host, 'tcp', 9002);
      const kUdp = await kernelOrigBytes(lab.host, 'udp', 5300);
      const kIn = await kernelOrigBytes(lab.host, 'tcp', 8080);
      const kDns = await kernelOrigBytes(lab.host, 'udp', 5353);
      assert.equal(kShort.flows, 200, 'every short connection still in the host table (TIME_WAIT)');
      const snap = await stopTop(top);
      // Servers stay up to the end (as services do): a connection whose socket is already gone
      // falls back to its listener.
      for (const s of [sUdp, sDns, sIn, sShort, sLong]) s.child.kill('SIGTERM');
      assert.equal((await sShort.next((o) => o.done)).conns, 200);
      const inPid = sIn.lines[0].pid;

      t.diagnostic(
        `kernel vs ctacct: long ${kLong.bytes}/${rowOf(snap, long.pid).sent_total} short ${kShort.bytes}/${rowOf(snap, short.pid).sent_total} udp ${kUdp.bytes}/${rowOf(snap, udp.pid).sent_total} dnat ${kIn.reply}/${rowOf(snap, inPid).sent_total} inferred ${snap.health.inferred_flows}`,
      );
      const c1 = nsInode(lab.c1);
      const c2 = nsInode(lab.c2);
      const rLong = rowOf(snap, long.pid);
      assert.equal(rLong.netns, c1);
      assert.equal(rLong.comm, 'node');
      assert99(rLong.sent_total, kLong.bytes, 'long upload sent');
      const rShort = rowOf(snap, short.pid);
      assert.equal(rShort.netns, c1);
      assert99(rShort.sent_total, kShort.bytes, '200 short connections sent');
      assert99(rShort.recv_total, kShort.reply, '200 short connections received');
      const rUdp = rowOf(snap, udp.pid);
      assert.equal(rUdp.netns, c2);
      assert99(rUdp.sent_total, kUdp.bytes, 'UDP sent');
      // DNAT'd inbound: the container's server sends the reply direction, receives the orig one.
      const rIn = rowOf(snap, inPid);
      assert.equal(rIn.netns, c2);
      assert99(rIn.sent_total, kIn.reply, 'DNAT download served');
      assert99(rIn.recv_total, kIn.bytes, 'DNAT upload received');
      const rDns = rowOf(snap, sDns.lines[0].pid);
      assert.equal(rDns.netns, c2);
      assert99(rDns.recv_total, kDns.bytes, 'DNAT UDP received');
      assert.deepEqual(snap.unattributed.forwarded, { sent_total: 0, recv_total: 0, flows: 0 }, 'nothing of the containers in forwarded');
      // A client connection that ends within a millisecond is gone (TIME_WAIT, no inode) before
      // its NEW event is read; it is inferred from the same process's earlier connections to the
      // same endpoint, so only the very first can stay unknown: at most 1% of the short ones.
      const unknown = snap.unattributed.unknown;
      assert.ok(unknown.sent_total + unknown.recv_total <= 0.01 * (kShort.bytes + kShort.reply), `unknown: ${JSON.stringify(unknown)}`);
      for (const reason of Object.keys(unknown.reasons ?? {})) assert.equal(reason, 'not_found_in_netns', JSON.stringify(unknown));
    } finally {
      if (top.child.exitCode === null) top.child.kill('SIGKILL');
    }
  });

  test('flows --json names the container process and its netns', async () => {
    const srv = await startTraffic(lab.ext, ['tcp-server', '9011', '--count', '1']);
    const cli = await startTraffic(lab.c1, ['tcp-client', lab.extAddr, '9011', '1000', '--hold-ms', '3000']);
    try {
      await srv.next(() => true);
      const r = await runCtacct(lab.host, ['flows', '--json', '--port', '9011']);
      assert.equal(r.code, 0, r.stderr);
      const flows = JSON.parse(r.stdout);
      const f = flows.find((x: any) => x.orig.dport === 9011 && x.state === 'ESTABLISHED');
      assert.ok(f, r.stdout);
      assert.equal(f.pid, cli.lines[0].pid);
      assert.equal(f.netns, nsInode(lab.c1));
      assert.equal(f.local, `${lab.c1Addr}:${f.orig.sport}`);
    } finally {
      cli.child.kill('SIGKILL');
      srv.child.kill('SIGKILL');
    }
  });
});
