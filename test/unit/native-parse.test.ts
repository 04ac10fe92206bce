// The addon's parser over real kernel bytes (see test/fixtures/netlink/README.md).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { getAddon } from '../../src/netlink/addon.js';
import { ctTcpStateName, decodeRecords, protoName, type FlowRecord } from '../../src/netlink/record.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/netlink/${name}`, import.meta.url));

function parse(buf: Buffer, isEvent = false) {
  const r = getAddon().parse(buf, isEvent);
  return { ...r, flows: decodeRecords(r.records, r.count) };
}

function find(flows: FlowRecord[], proto: number, family: 4 | 6): FlowRecord {
  const f = flows.find((x) => x.proto === proto && x.family === family);
  assert.ok(f, `no proto ${proto} family ${family} flow`);
  return f;
}

test('dump with accounting and timestamps: every field as conntrack -L printed it', () => {
  const { flows, malformed, done, error } = parse(fixture('dump-all-acct-ts.bin'));
  assert.equal(flows.length, 5);
  assert.equal(malformed, 0);
  assert.equal(done, true);
  assert.equal(error, 0);

  const tcp4 = find(flows, 6, 4);
  assert.equal(tcp4.kind, 'dump');
  assert.equal(tcp4.ctId, 3501792868);
  assert.equal(ctTcpStateName(tcp4.tcpState), 'TIME_WAIT');
  assert.deepEqual(tcp4.orig, { src: '127.0.0.1', dst: '127.0.0.1', sport: 55360, dport: 9000, icmp: null });
  assert.deepEqual(tcp4.reply, { src: '127.0.0.1', dst: '127.0.0.1', sport: 9000, dport: 55360, icmp: null });
  assert.deepEqual(tcp4.origCounters, { packets: 6, bytes: 10320 });
  assert.deepEqual(tcp4.replyCounters, { packets: 4, bytes: 216 });
  assert.equal(tcp4.mark, 0);
  assert.equal(tcp4.use, 1);
  assert.ok(tcp4.status !== null && (tcp4.status & 4) !== 0, 'ASSURED');
  assert.ok(tcp4.startMs !== null && tcp4.startMs > 1.7e12, 'timestamp start in ms since the epoch');
  assert.equal(tcp4.stopMs, null);

  const tcp6 = find(flows, 6, 6);
  assert.equal(tcp6.ctId, 820438052);
  assert.deepEqual(tcp6.orig, { src: '::1', dst: '::1', sport: 48890, dport: 9001, icmp: null });
  assert.deepEqual(tcp6.origCounters, { packets: 7, bytes: 20512 });
  assert.deepEqual(tcp6.replyCounters, { packets: 5, bytes: 368 });

  const icmp = find(flows, 1, 4);
  assert.equal(protoName(icmp.proto), 'icmp');
  assert.deepEqual(icmp.orig, { src: '127.0.0.1', dst: '127.0.0.1', sport: null, dport: null, icmp: { type: 8, code: 0, id: 5565 } });
  assert.deepEqual(icmp.reply?.icmp, { type: 0, code: 0, id: 5565 });
  assert.deepEqual(icmp.origCounters, { packets: 1, bytes: 84 });
  assert.equal(icmp.tcpState, null);

  const icmp6 = find(flows, 58, 6);
  assert.deepEqual(icmp6.orig.icmp, { type: 128, code: 0, id: 5566 });
  assert.deepEqual(icmp6.replyCounters, { packets: 1, bytes: 104 });

  const udp = find(flows, 17, 4);
  assert.equal(udp.ctId, 3137688595);
  assert.deepEqual(udp.origCounters, { packets: 1, bytes: 3028 });
  assert.deepEqual(udp.replyCounters, { packets: 0, bytes: 0 });
  assert.ok(udp.status !== null && (udp.status & 2) === 0, 'UNREPLIED: no SEEN_REPLY bit');
});

test('dump of one family', () => {
  const { flows } = parse(fixture('dump-v6-acct-ts.bin'));
  assert.deepEqual(
    flows.map((f) => [f.family, protoName(f.proto)]),
    [
      [6, 'tcp'],
      [6, 'icmpv6'],
    ],
  );
});

test('flows without accounting have absent counters, never zero', () => {
  const { flows, malformed } = parse(fixture('dump-noacct.bin'));
  assert.equal(malformed, 0);
  assert.equal(flows.length, 2);
  for (const f of flows) {
    assert.equal(f.origCounters, null);
    assert.equal(f.replyCounters, null);
  }
  assert.deepEqual(
    flows.map((f) => [f.ctId, f.orig.sport, f.orig.dport]),
    [
      [489066902, 47778, 9000],
      [3834169237, 45224, 9002],
    ],
  );
});

test('events: NEW without counters, DESTROY with final counters and timestamps', () => {
  const { flows, malformed } = parse(fixture('events-new-destroy.bin'), true);
  assert.equal(malformed, 0);
  assert.deepEqual(
    flows.map((f) => [f.kind, f.ctId]),
    [
      ['new', 2179310238],
      ['new', 972684497],
      ['new', 4031210460],
      ['destroy', 2179310238],
      ['destroy', 972684497],
      ['destroy', 4031210460],
    ],
  );
  const [newTcp, , , dTcp, dUdp6, dUdp4] = flows as [FlowRecord, FlowRecord, FlowRecord, FlowRecord, FlowRecord, FlowRecord];
  assert.equal(newTcp.origCounters, null);
  assert.equal(ctTcpStateName(newTcp.tcpState), 'SYN_SENT');
  assert.deepEqual(dTcp.origCounters, { packets: 5, bytes: 4268 });
  assert.deepEqual(dTcp.replyCounters, { packets: 3, bytes: 164 });
  assert.deepEqual(dUdp6.origCounters, { packets: 1, bytes: 1548 });
  assert.deepEqual(dUdp6.orig, { src: '::1', dst: '::1', sport: 40734, dport: 9003, icmp: null });
  assert.deepEqual(dUdp4.origCounters, { packets: 1, bytes: 1528 });
  assert.ok(dTcp.stopMs !== null && dTcp.startMs !== null && dTcp.stopMs >= dTcp.startMs);
  // 4,000 payload bytes: + 52 per skb (IPv4 + TCP with timestamps) + 8 for the SYN's options.
  assert.equal(dTcp.origCounters!.bytes, 4000 + 52 * 5 + 8);
});

test('the same messages parsed as a dump are not events', () => {
  const { flows } = parse(fixture('events-new-destroy.bin'), false);
  assert.deepEqual(
    flows.map((f) => f.kind),
    ['dump', 'dump', 'dump', 'destroy', 'destroy', 'destroy'],
  );
});

test('a truncated buffer keeps the whole messages before the cut and counts the rest', () => {
  const full = fixture('dump-all-acct-ts.bin');
  const firstLen = full.readUInt32LE(0);
  const cut = full.subarray(0, firstLen + 40);
  const { flows, malformed } = parse(cut);
  assert.equal(flows.length, 1);
  assert.equal(malformed, 1);
});

test('a corrupted attribute length makes that message malformed, not the others', () => {
  const buf = Buffer.from(fixture('dump-all-acct-ts.bin'));
  // First attribute of the first message starts after nlmsghdr (16) + nfgenmsg (4).
  buf.writeUInt16LE(0xfff0, 20);
  const { flows, malformed } = parse(buf);
  assert.equal(malformed, 1);
  assert.equal(flows.length, 4);
});

test('an unknown attribute (a newer kernel) is skipped', () => {
  const orig = fixture('dump-v6-acct-ts.bin');
  const firstLen = orig.readUInt32LE(0);
  const extra = Buffer.alloc(12);
  extra.writeUInt16LE(12, 0); // nla_len
  extra.writeUInt16LE(250, 2); // an attribute type no kernel sends today
  extra.writeUInt32LE(0xdeadbeef, 4);
  const first = Buffer.concat([orig.subarray(0, firstLen), extra]);
  first.writeUInt32LE(firstLen + 12, 0);
  const buf = Buffer.concat([first, orig.subarray(firstLen)]);
  const a = parse(orig).flows;
  const b = parse(buf);
  assert.equal(b.malformed, 0);
  assert.deepEqual(b.flows, a);
});

test('an NLMSG_ERROR is reported as a positive errno', () => {
  const err = Buffer.alloc(36);
  err.writeUInt32LE(36, 0);
  err.writeUInt16LE(2, 4); // NLMSG_ERROR
  err.writeInt32LE(-1, 16); // -EPERM
  const r = getAddon().parse(err, false);
  assert.equal(r.error, 1);
  assert.equal(r.count, 0);
});

test('garbage shorter than a header is counted once', () => {
  const r = getAddon().parse(Buffer.from([1, 2, 3]), false);
  assert.equal(r.count, 0);
  assert.equal(r.malformed, 1);
});
