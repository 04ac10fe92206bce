// The kernel path end to end: real flows over a veth pair between two throwaway namespaces,
// counters checked against the layer-3 byte formula (docs/decisions.md).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createPair, rootSkip, type Netns } from '../helpers/netns.js';
import { probeDump, runTraffic, startProbe, startTraffic } from '../helpers/procs.js';

// Per skb: IPv4 20 + TCP 20 + timestamps 12 = 52; IPv6 40 + 32 = 72. A SYN and a SYN-ACK carry
// 8 bytes more options (MSS, SACK-permitted, window scale) than a data segment's timestamps.
const HDR = { 4: 52, 6: 72 } as const;
const SYN_EXTRA = 8;
/** Payload of a full segment (MTU 1500 minus IP, TCP and timestamp option headers). */
const MSS = { 4: 1448, 6: 1428 } as const;

/** TCP segments retransmitted so far in a namespace (/proc/net/snmp: shared by IPv4 and IPv6). */
async function retransSegs(ns: Netns): Promise<number> {
  const lines = (await ns.exec('cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  return Number(values[names.indexOf('RetransSegs')]);
}

/**
 * Counted bytes = payload + header per skb + SYN options, exactly, unless the sender retransmitted:
 * a retransmitted segment is counted again (at most one MSS of payload each).
 */
function assertFormula(bytes: number, packets: number, payload: number, family: 4 | 6, retrans: number, what: string) {
  const extra = bytes - (payload + HDR[family] * packets + SYN_EXTRA);
  if (retrans === 0) assert.equal(extra, 0, `${what}: ${bytes} bytes in ${packets} packets for ${payload} payload`);
  else assert.ok(extra >= 0 && extra <= retrans * MSS[family], `${what}: ${extra} extra bytes with ${retrans} retransmissions`);
}

async function until(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('conntrack over a veth pair', { skip: rootSkip }, () => {
  let pair: Awaited<ReturnType<typeof createPair>>;

  before(async () => {
    pair = await createPair('ct');
    for (const ns of [pair.a, pair.b]) {
      await ns.engageConntrack();
      await ns.sysctl('net.netfilter.nf_conntrack_acct', '1');
      await ns.sysctl('net.netfilter.nf_conntrack_timestamp', '1');
      // SACK blocks (12 bytes per block) appear on some ACKs after reordering; without them every
      // data segment's header size is fixed and the formula is exact.
      await ns.sysctl('net.ipv4.tcp_sack', '0');
    }
  });
  after(async () => {
    await pair?.destroy();
  });

  for (const family of [4, 6] as const) {
    test(`TCP/IPv${family}: counters are payload + ${HDR[family]} per packet + 8 per SYN, in both namespaces`, async () => {
      const port = 7100 + family;
      const send = 1_000_003;
      const reply = 54_321;
      const server = await startTraffic(pair.b, ['tcp-server', String(port), '--reply', String(reply), '--count', '1']);
      const host = family === 4 ? '10.231.0.2' : 'fd00:231::2';
      const before = { a: await retransSegs(pair.a), b: await retransSegs(pair.b) };
      const client = await runTraffic(pair.a, ['tcp-client', host, String(port), String(send)]);
      const srv = await server.next((o) => o.done);
      const retrans = { a: (await retransSegs(pair.a)) - before.a, b: (await retransSegs(pair.b)) - before.b };
      assert.equal(client.sent, send);
      assert.equal(srv.received, send);
      assert.equal(client.received, reply);

      for (const ns of [pair.a, pair.b]) {
        const { flows } = await probeDump(ns);
        const f = flows.find((x) => x.proto === 6 && x.orig.dport === port && x.family === family);
        assert.ok(f, `flow to port ${port} in ${ns.name}`);
        assert.equal(f.orig.src, family === 4 ? '10.231.0.1' : 'fd00:231::1');
        assert.equal(f.orig.dst, host);
        assert.equal(f.reply.sport, port);
        assertFormula(f.origCounters.bytes, f.origCounters.packets, send, family, retrans.a, `orig in ${ns.name}`);
        assertFormula(f.replyCounters.bytes, f.replyCounters.packets, reply, family, retrans.b, `reply in ${ns.name}`);
        assert.ok(f.origCounters.packets >= 3);
      }
    });
  }

  test('UDP: each datagram is counted with its 28-byte IPv4+UDP header, replies in the reply direction', async () => {
    const server = await startTraffic(pair.b, ['udp-server', '7200', '--reply', '100']);
    const client = await runTraffic(pair.a, ['udp-client', '10.231.0.2', '7200', '1000', '--count', '5']);
    assert.equal(client.received, 500);
    server.child.kill('SIGTERM');
    const { flows } = await probeDump(pair.a);
    const f = flows.find((x) => x.proto === 17 && x.orig.dport === 7200);
    assert.ok(f);
    assert.deepEqual(f.origCounters, { packets: 5, bytes: 5 * 1028 });
    assert.deepEqual(f.replyCounters, { packets: 5, bytes: 5 * 128 });
  });

  test('a short connection\'s DESTROY event carries its final counters', async () => {
    const probe = startProbe(pair.a, ['events']);
    await probe.next((o) => o.ready);
    const server = await startTraffic(pair.b, ['tcp-server', '7300', '--count', '1']);
    const client = await runTraffic(pair.a, ['tcp-client', '10.231.0.2', '7300', '4000']);
    await server.next((o) => o.done);
    assert.equal(client.sent, 4000);
    // DESTROY comes only when the entry is reaped; delete it to settle now.
    await pair.a.exec('conntrack', ['-D', '-p', 'tcp', '--dport', '7300']);
    const destroy = await probe.next((o) => o.records?.some((r: any) => r.kind === 'destroy' && r.orig.dport === 7300));
    const d = destroy.records.find((r: any) => r.kind === 'destroy' && r.orig.dport === 7300);
    const created = probe.lines.flatMap((l) => l.records ?? []).find((r: any) => r.kind === 'new' && r.orig.dport === 7300);
    assert.ok(created, 'NEW event seen');
    assert.equal(created.origCounters, null, 'NEW carries no counters');
    assert.equal(created.ctId, d.ctId);
    assert.equal(d.origCounters.bytes, 4000 + 52 * d.origCounters.packets + SYN_EXTRA);
    assert.equal(d.replyCounters.bytes, 52 * d.replyCounters.packets + SYN_EXTRA);
    assert.ok(d.stopMs >= d.startMs);
    probe.child.kill('SIGTERM');
    const stats = await probe.next((o) => o.stats);
    assert.equal(stats.stats.overruns, 0);
    assert.equal(stats.stats.malformed, 0);
  });

  test('flows created while accounting is off have no counters (null, not 0)', async () => {
    await pair.a.sysctl('net.netfilter.nf_conntrack_acct', '0');
    try {
      const server = await startTraffic(pair.b, ['tcp-server', '7400', '--count', '1']);
      await runTraffic(pair.a, ['tcp-client', '10.231.0.2', '7400', '2000']);
      await server.next((o) => o.done);
    } finally {
      await pair.a.sysctl('net.netfilter.nf_conntrack_acct', '1');
    }
    const a = (await probeDump(pair.a)).flows.find((x) => x.orig.dport === 7400);
    const b = (await probeDump(pair.b)).flows.find((x) => x.orig.dport === 7400);
    assert.equal(a.origCounters, null);
    assert.equal(a.replyCounters, null);
    assert.ok(b.origCounters.bytes > 2000, 'the other namespace had accounting on');
  });

  test('kernel-side dump filters: only matching flows cross into user space', async () => {
    const server = await startTraffic(pair.b, ['udp-server', '7600']);
    await runTraffic(pair.a, ['udp-spray', '10.231.0.2', '7600', '40']); // 40 flows to ports 7600–7639
    await runTraffic(pair.a, ['udp-client', '10.231.0.2', '7700', '10', '--count', '1', '--wait-ms', '0']);
    server.child.kill('SIGTERM');
    const all = await probeDump(pair.a);
    const byPort = await probeDump(pair.a, { family: 4, proto: 17, dport: 7700 });
    const byProto = await probeDump(pair.a, { family: 4, proto: 6 });
    const udp6 = await probeDump(pair.a, { family: 6, proto: 17 });
    assert.ok(all.stats.records >= 41, `unfiltered dump: ${all.stats.records}`);
    assert.equal(byPort.stats.records, 1, 'one flow to port 7700 crossed');
    assert.equal(byPort.flows[0].orig.dport, 7700);
    assert.ok(byProto.flows.every((f: any) => f.proto === 6), 'protocol filter');
    assert.equal(byProto.stats.records, all.flows.filter((f: any) => f.proto === 6 && f.family === 4).length);
    assert.equal(udp6.stats.records, 0, 'no IPv6 UDP flows');
  });

  test("the reader thread looks up only the local ends of new flows, and finds each one's socket", async () => {
    const probe = startProbe(pair.a, ['events', '--lookup', '--local', '10.231.0.1,fd00:231::1']);
    await probe.next((o) => o.ready);
    const server = await startTraffic(pair.b, ['tcp-server', '7810', '--reply', '100']);
    const local = await startTraffic(pair.a, ['tcp-server', '7811', '--reply', '100']);
    // Outbound (only the client end is here), inbound (only the server end), loopback (both).
    await runTraffic(pair.a, ['tcp-client', '10.231.0.2', '7810', '100', '--hold-ms', '300']);
    await runTraffic(pair.b, ['tcp-client', '10.231.0.1', '7811', '100', '--hold-ms', '300']);
    await runTraffic(pair.a, ['tcp-client', '127.0.0.1', '7811', '100', '--hold-ms', '300']);
    const news = () => probe.lines.flatMap((l) => l.records ?? []).filter((r: any) => r.kind === 'new' && r.proto === 6);
    await until(() => news().length >= 3, 'three NEW events');
    probe.child.kill('SIGTERM');
    const { stats } = await probe.next((o) => o.stats);
    server.child.kill('SIGTERM');
    local.child.kill('SIGTERM');
    const by = (port: number, src: string) => news().find((r: any) => r.orig.dport === port && r.orig.src === src);
    const out = by(7810, '10.231.0.1');
    const inb = by(7811, '10.231.0.2');
    const loop = by(7811, '127.0.0.1');
    assert.ok(out && inb && loop, JSON.stringify(news()));
    assert.ok(out.skOrig?.inode > 0, `outbound: the client's socket (${JSON.stringify(out.skOrig)})`);
    assert.ok(!out.skReply?.inode, 'outbound: the remote server end has no socket here');
    assert.ok(inb.skReply?.inode > 0, `inbound: the listener or accepted socket (${JSON.stringify(inb.skReply)})`);
    assert.ok(!inb.skOrig?.inode, 'inbound: the remote client end has no socket here');
    assert.ok(loop.skOrig?.inode > 0 && loop.skReply?.inode > 0, `loopback: both ends (${JSON.stringify([loop.skOrig, loop.skReply])})`);
    assert.equal(stats.lookupsSkipped, 2, 'one end each of the outbound and the inbound flow, not looked up');
  });

  test('an overrun of the event socket is detected and counted, and reading goes on', async () => {
    // A tiny receive buffer and a burst of 3,000 new flows within milliseconds: the kernel must drop events.
    const probe = startProbe(pair.a, ['events', '--rcvbuf', '4096', '--lookup']);
    await probe.next((o) => o.ready);
    await runTraffic(pair.a, ['udp-spray', '10.231.0.2', '30000', '3000']);
    const over = await probe.next((o) => o.overrun, 10000);
    assert.equal(over.overrun.code, 'ENOBUFS');
    // After the overrun the socket still delivers new events.
    await runTraffic(pair.a, ['udp-client', '10.231.0.2', '7502', '10', '--wait-ms', '0']);
    await probe.next((o) => o.records?.some((r: any) => r.orig.dport === 7502), 10000);
    probe.child.kill('SIGTERM');
    const { stats } = await probe.next((o) => o.stats);
    const seen = probe.lines.flatMap((l) => l.records ?? []).filter((r: any) => r.kind === 'new' && r.orig.dport >= 30000 && r.orig.dport < 33000).length;
    assert.ok(stats.overruns >= 1, `overruns counted: ${stats.overruns}`);
    assert.ok(seen < 3000, `events were lost (${seen} of 3000 seen): that is what an overrun means`);
    assert.ok(stats.rcvbuf > 4096, `buffer grown after the overrun: ${stats.rcvbuf}`);
  });
});
