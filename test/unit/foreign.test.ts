// Flows with no end in ctacct's namespace whose inner address is in another local namespace
// (containers behind NAT): attributed there, named by netns, kept out of `forwarded`; the rest is
// forwarded or unknown with a reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Accounting } from '../../src/core/accounting.js';
import { ForeignAttributor } from '../../src/core/foreign.js';
import { localAddressSet } from '../../src/core/flow.js';
import { OwnerResolver } from '../../src/core/owners.js';
import { rec } from '../fakes/records.js';
import { fakeDeps, world } from '../fakes/owners.js';

const HOST = '203.0.113.1'; // the host's public address (masquerade source, DNAT target)
const C1 = '172.17.0.2'; // container 1 (netns 4026532001), C2 in 4026532002, C3's namespace is not enterable
const C2 = '172.17.0.3';
const C3 = '172.17.0.4';
const REMOTE = '198.51.100.9';

function lab() {
  const host = world();
  const c1 = world();
  const c2 = world();
  // c1: a client (pid 4100) uploading; c2: a server (pid 4200) on :80 behind DNAT host:8080.
  c1.sockets.set(`${C1}:41000 ${REMOTE}:443`, { inode: 9100, uid: 1000, state: 1 });
  c1.fds.set(4100, [9100]);
  c1.procs.set(4100, { pid: 4100, comm: 'uploader', cmdline: 'uploader', uid: 1000, netns: 4026532001, container: { runtime: 'docker', id: 'a'.repeat(64), name: 'up' }, unit: null });
  c2.sockets.set(`${C2}:80 *`, { inode: 9200, uid: 0, state: 10 });
  c2.fds.set(4200, [9200]);
  c2.procs.set(4200, { pid: 4200, comm: 'nginx', cmdline: 'nginx', uid: 0, netns: 4026532002, container: null, unit: 'web.service' });
  const resolvers = new Map([
    [4026532001, new OwnerResolver(fakeDeps(c1), { fullScanMaxShare: 1 })],
    [4026532002, new OwnerResolver(fakeDeps(c2), { fullScanMaxShare: 1 })],
  ]);
  const where = new Map([
    [C1, [4026532001]],
    [C2, [4026532002]],
    [C3, [4026532003]],
  ]);
  const foreign = new ForeignAttributor({ namespacesOf: (a) => where.get(a) ?? [], resolver: (ns) => resolvers.get(ns) ?? null });
  const acc = new Accounting(() => localAddressSet([HOST]), new OwnerResolver(fakeDeps(host), { fullScanMaxShare: 1 }), () => host.clock.t, { foreign });
  return { acc, host };
}

// Masqueraded outbound: orig C1:41000 → REMOTE:443, reply REMOTE:443 → HOST:61000.
const masq = (orig: [number, number], reply: [number, number]) =>
  rec({ id: 1, src: C1, sport: 41000, dst: REMOTE, dport: 443, replyDst: HOST, orig, reply });
// DNAT inbound: orig REMOTE:50000 → HOST:8080, reply C2:80 → REMOTE:50000.
const dnat = (orig: [number, number], reply: [number, number]) => {
  const r = rec({ id: 2, src: REMOTE, sport: 50000, dst: HOST, dport: 8080, replySrc: C2, orig, reply });
  r.reply!.sport = 80;
  return r;
};
// Truly forwarded (no end in any local namespace), and one into a namespace we may not enter.
const routed = rec({ id: 3, src: '192.0.2.5', sport: 1000, dst: REMOTE, dport: 22, orig: [1, 700], reply: [1, 300] });
const denied = rec({ id: 4, src: C3, sport: 2000, dst: REMOTE, dport: 25, orig: [1, 111], reply: [1, 222] });

test('masqueraded and DNAT container flows go to their processes with netns/container/unit; forwarded keeps only the routed flow', () => {
  const { acc, host } = lab();
  acc.beginDump();
  acc.endDump();
  acc.startInterval();
  acc.beginDump();
  acc.dumpBatch([masq([10, 5000], [8, 400]), dnat([5, 300], [20, 90000]), routed, denied]);
  acc.endDump();
  host.clock.t += 1000;
  const s = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't' });
  const up = s.rows.find((r) => r.pid === 4100)!;
  assert.deepEqual([up.sent_total, up.recv_total, up.netns, up.container?.name, up.unit], [5000, 400, 4026532001, 'up', null]);
  const web = s.rows.find((r) => r.pid === 4200)!;
  // The DNAT'd server sends the reply direction and receives the orig one.
  assert.deepEqual([web.sent_total, web.recv_total, web.netns, web.container, web.unit], [90000, 300, 4026532002, null, 'web.service']);
  assert.deepEqual(s.unattributed.forwarded, { sent_total: 700, recv_total: 300, flows: 1 });
  assert.deepEqual(s.unattributed.unknown, {
    sent_total: 111,
    recv_total: 222,
    flows: 1,
    reasons: { no_permission: { sent_total: 111, recv_total: 222, flows: 1 } },
  });

  const c = acc.snapshot({ groupBy: 'container', sort: 'total', time: 't' });
  assert.deepEqual(
    c.rows.map((r) => [r.key, r.sent_total, r.recv_total]),
    // Sorted by totals (no rate in a second snapshot of the same interval); "host": no container.
    [['host', 90000, 300], [`docker/${'a'.repeat(64)}`, 5000, 400]],
  );
  const u = acc.snapshot({ groupBy: 'unit', sort: 'total', time: 't' });
  assert.deepEqual(
    u.rows.map((r) => [r.key, r.unit]),
    [['web.service', 'web.service'], ['-', null]],
  );
});

test('a container end whose socket is gone: unknown, reason not_found_in_netns; a host end with no socket: no_socket', () => {
  const { acc, host } = lab();
  acc.beginDump();
  acc.endDump();
  acc.startInterval();
  acc.beginDump();
  acc.dumpBatch([
    rec({ id: 5, src: C1, sport: 41999, dst: REMOTE, dport: 443, replyDst: HOST, orig: [1, 60], reply: [1, 40] }),
    rec({ id: 6, src: HOST, sport: 42000, dst: REMOTE, dport: 443, orig: [1, 70], reply: [1, 30] }),
  ]);
  acc.endDump();
  host.clock.t += 1000;
  const s = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't' });
  assert.deepEqual(s.unattributed.unknown.reasons, {
    no_socket: { sent_total: 70, recv_total: 30, flows: 1 },
    not_found_in_netns: { sent_total: 60, recv_total: 40, flows: 1 },
  });
  assert.equal(s.unattributed.unknown.sent_total, 130);
  assert.deepEqual(s.unattributed.forwarded, { sent_total: 0, recv_total: 0, flows: 0 });
});
