// The accounting model README describes, driven with fake records, a fake /proc and a manual clock.
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { Accounting } from '../../src/core/accounting.js';
import { localAddressSet } from '../../src/core/flow.js';
import { hit, rec } from '../fakes/records.js';
import { resolver, world, type FakeWorld } from '../fakes/owners.js';

const HOST = '10.0.0.1';
const local = localAddressSet([HOST, 'fd00::1']);

let w: FakeWorld;
let acc: Accounting;

function setup() {
  w = world();
  // nginx (pid 100, uid 33) listens on :80; curl (pid 200) has an outbound socket; a client (pid 300)
  w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
  w.sockets.set(`${HOST}:40000 93.184.216.34:443`, { inode: 6000, uid: 0, state: 1 });
  w.fds.set(100, [5000]);
  w.fds.set(101, [5000]); // a worker sharing the listener after fork
  w.fds.set(200, [6000]);
  w.procs.set(100, { pid: 100, comm: 'nginx', cmdline: 'nginx: master', uid: 33 });
  w.procs.set(101, { pid: 101, comm: 'nginx', cmdline: 'nginx: worker', uid: 33 });
  w.procs.set(200, { pid: 200, comm: 'curl', cmdline: 'curl https://example', uid: 0 });
  acc = new Accounting(() => local, resolver(w), () => w.clock.t);
}

function dump(...records: ReturnType<typeof rec>[]) {
  acc.beginDump();
  acc.dumpBatch(records);
  acc.endDump();
}

function snap(groupBy: 'process' | 'conn' | 'remote' | 'port' | 'user' = 'process', dt = 1000) {
  w.clock.t += dt;
  // One refresh: the view of the interval, then the interval ends.
  const s = acc.snapshot({ groupBy, sort: 'total', time: 't' });
  acc.closeInterval();
  return s;
}

const outbound = (orig: [number, number] | null, reply: [number, number] | null, extra = {}) =>
  rec({ id: 1, src: HOST, sport: 40000, dst: '93.184.216.34', dport: 443, orig, reply, ...extra });
const inbound = (orig: [number, number] | null, reply: [number, number] | null, extra = {}) =>
  rec({ id: 2, src: '198.51.100.7', sport: 51000, dst: HOST, dport: 80, orig, reply, ...extra });

describe('accounting', () => {
  beforeEach(setup);

  test('bytes from before the start are history, not the first interval\'s rate', () => {
    dump(outbound([10, 1000], [8, 5000]));
    acc.startInterval();
    dump(outbound([12, 1300], [10, 9000]));
    const s = snap();
    const curl = s.rows.find((r) => r.pid === 200)!;
    assert.equal(curl.sent_bytes, 300);
    assert.equal(curl.recv_bytes, 4000);
    assert.equal(curl.sent_bps, 300);
    assert.equal(curl.sent_total, 300);
    assert.equal(curl.recv_total, 4000);
    assert.equal(curl.comm, 'curl');
    assert.equal(curl.user, 'root');
    assert.equal(s.interval_s, 1);
  });

  test('outbound: sent = orig bytes; inbound (to the listener, before accept): sent = reply bytes', () => {
    dump();
    acc.startInterval();
    dump(outbound([5, 700], [4, 2000]), inbound([6, 100], [9, 64000]));
    const s = snap();
    const byPid = new Map(s.rows.map((r) => [r.pid, r]));
    assert.deepEqual([byPid.get(200)!.sent_bytes, byPid.get(200)!.recv_bytes], [700, 2000]);
    assert.deepEqual([byPid.get(100)!.sent_bytes, byPid.get(100)!.recv_bytes], [64000, 100]);
    assert.equal(byPid.get(100)!.shared, true, 'listener shared by master and worker: lowest pid, marked shared');
    assert.equal(byPid.has(101), false);
  });

  test('a flow born and dead between two dumps is counted whole from its DESTROY', () => {
    dump();
    acc.startInterval();
    acc.eventBatch([outbound(null, null, { kind: 'new', skOrig: hit(6000) })]);
    acc.eventBatch([outbound([9, 4268], [7, 364], { kind: 'destroy', tcpState: 8 })]);
    dump();
    const s = snap();
    const curl = s.rows.find((r) => r.pid === 200)!;
    assert.equal(curl.sent_total, 4268);
    assert.equal(curl.recv_total, 364);
    assert.equal(curl.new_flows, 1);
    assert.equal(curl.closed_flows, 1);
    assert.equal(curl.flows, 0);
  });

  test('a run that shows one group-by keeps ended flows in its rows only, with the same totals', () => {
    const one = new Accounting(() => local, resolver(w), () => w.clock.t, { groupings: ['process'] });
    for (const a of [acc, one]) {
      a.beginDump();
      a.endDump();
      a.startInterval();
      a.eventBatch([outbound(null, null, { kind: 'new', skOrig: hit(6000) })]);
      a.eventBatch([outbound([9, 4268], [7, 364], { kind: 'destroy', tcpState: 8 })]);
    }
    w.clock.t += 1000;
    const row = (a: Accounting) => {
      const r = a.snapshot({ groupBy: 'process', sort: 'total', time: 't' }).rows.find((x) => x.pid === 200)!;
      return [r.sent_total, r.recv_total, r.new_flows, r.closed_flows];
    };
    assert.deepEqual(row(one), [4268, 364, 1, 1]);
    assert.deepEqual(row(one), row(acc));
    assert.equal(acc.snapshot({ groupBy: 'conn', sort: 'total', time: 't' }).rows.length, 1, 'all group-bys kept by default');
    // Asking for a group-by the run did not keep would show rows without their ended flows.
    assert.throws(() => one.snapshot({ groupBy: 'conn', sort: 'total', time: 't' }), /not kept/);
  });

  test('DESTROY adds only the remainder since the last dump, exactly once', () => {
    dump();
    acc.startInterval();
    dump(outbound([3, 1000], [2, 200]));
    acc.eventBatch([outbound([5, 1500], [3, 260], { kind: 'destroy' })]);
    // A dump the kernel serialized before the entry died arrives late: ignored.
    dump(outbound([5, 1500], [3, 260]));
    const s = snap();
    const curl = s.rows.find((r) => r.pid === 200)!;
    assert.equal(curl.sent_total, 1500);
    assert.equal(curl.recv_total, 260);
  });

  test('a flow first met in a later dump (its NEW missed) is counted whole', () => {
    dump();
    acc.startInterval();
    dump(outbound([4, 2500], [4, 900]));
    assert.equal(snap().rows.find((r) => r.pid === 200)!.sent_total, 2500);
  });

  test('the socket found at NEW time attributes a connection whose socket is gone by the dump', () => {
    dump();
    acc.startInterval();
    w.sockets.clear(); // the short-lived socket has closed
    w.fds.set(200, []);
    acc.eventBatch([outbound(null, null, { kind: 'new', skOrig: hit(6000) })]);
    assert.equal(acc.flows.size, 1);
    const st = [...acc.flows.values()][0]!;
    assert.equal(st.ends[0]!.owner?.pid ?? null, null);
    // The process scan at NEW time found nothing (fd closed): retried later, unknown meanwhile.
    dump(outbound([6, 3000], [5, 500]));
    const s = snap();
    assert.equal(s.unattributed.unknown.sent_total, 3000);
    assert.equal(s.unattributed.unknown.recv_total, 500);
  });

  test('inode → pid is resolved in the same pass as the NEW event while the fd exists', () => {
    dump();
    acc.startInterval();
    acc.eventBatch([outbound(null, null, { kind: 'new', skOrig: hit(6000) })]);
    w.fds.set(200, []); // closes right after
    w.sockets.clear();
    dump(outbound([6, 3000], [5, 500]));
    const s = snap();
    assert.equal(s.rows.find((r) => r.pid === 200)!.sent_total, 3000);
    assert.equal(s.unattributed.unknown.sent_total, 0);
  });

  test('the connections of one process share one owner object; the live flow keeps no full record', () => {
    dump();
    acc.startInterval();
    // Three connections to nginx's listener, read before accept(): one owner for all three ends.
    acc.eventBatch([51001, 51002, 51003].map((sport, i) => rec({ kind: 'new', id: 10 + i, src: '198.51.100.7', sport, dst: HOST, dport: 80, orig: null, reply: null, skReply: hit(5000, 33, 10) })));
    const ends = [...acc.flows.values()].map((st) => st.ends[0]!);
    assert.equal(ends.length, 3);
    assert.equal(ends[0]!.owner?.pid, 100);
    assert.ok(ends.every((e) => e.owner === ends[0]!.owner), 'one Owner object for the three ends');
    assert.ok([...acc.flows.values()].every((st) => st.rec === null && st.skReply === null), 'no record or socket hit kept');
    assert.deepEqual([...acc.flows.values()].map((st) => [st.family, st.shape.proto, st.shape.dport, st.tcpState]), [[4, 6, 80, 3], [4, 6, 80, 3], [4, 6, 80, 3]]);
  });

  test('loopback flow: both processes, each with its own direction', () => {
    w.sockets.set('127.0.0.1:5432 *', { inode: 7000, uid: 0, state: 10 });
    w.sockets.set('127.0.0.1:45000 127.0.0.1:5432', { inode: 7001, uid: 0, state: 1 });
    w.fds.set(300, [7000]);
    w.fds.set(400, [7001]);
    w.procs.set(300, { pid: 300, comm: 'postgres', cmdline: 'postgres', uid: 0 });
    w.procs.set(400, { pid: 400, comm: 'psql', cmdline: 'psql', uid: 0 });
    dump();
    acc.startInterval();
    dump(rec({ src: '127.0.0.1', sport: 45000, dst: '127.0.0.1', dport: 5432, orig: [3, 300], reply: [5, 9000] }));
    const s = snap();
    const pg = s.rows.find((r) => r.pid === 300)!;
    const psql = s.rows.find((r) => r.pid === 400)!;
    assert.deepEqual([psql.sent_bytes, psql.recv_bytes], [300, 9000]);
    assert.deepEqual([pg.sent_bytes, pg.recv_bytes], [9000, 300]);
  });

  test('DNAT to a local port is inbound (reply source is local)', () => {
    dump();
    acc.startInterval();
    dump(rec({ src: '198.51.100.7', sport: 51000, dst: '203.0.113.9', dport: 8080, replySrc: HOST, orig: [2, 120], reply: [2, 4000] }));
    // reply tuple's source port is the real local port
    const s = snap();
    assert.equal(s.unattributed.forwarded.sent_total, 0);
  });

  test('forwarded flows go to their own bucket, never to a pid', () => {
    dump();
    acc.startInterval();
    dump(rec({ src: '192.168.1.5', dst: '8.8.8.8', dport: 53, proto: 17, orig: [1, 60], reply: [1, 120] }));
    const s = snap();
    assert.deepEqual(s.unattributed.forwarded, { sent_total: 60, recv_total: 120, flows: 1 });
    assert.equal(s.rows.length, 0);
  });

  test('rows keep every key that had traffic since start, idle ones included', () => {
    dump();
    acc.startInterval();
    dump(outbound([1, 100], [1, 100]));
    snap();
    acc.eventBatch([outbound([1, 100], [1, 100], { kind: 'destroy' })]);
    dump();
    const s = snap();
    const curl = s.rows.find((r) => r.pid === 200)!;
    assert.equal(curl.sent_bytes, 0);
    assert.equal(curl.sent_total, 100);
    assert.equal(curl.flows, 0);
  });

  test('group by remote, port, user and conn', () => {
    dump();
    acc.startInterval();
    dump(outbound([5, 700], [4, 2000]), inbound([6, 100], [9, 64000]));
    w.clock.t += 1000;
    const byRemote = acc.snapshot({ groupBy: 'remote', sort: 'total', time: 't' });
    assert.deepEqual(
      byRemote.rows.map((r) => [r.key, r.remote, r.pid, r.sent_total]),
      [
        ['198.51.100.7', '198.51.100.7', null, 64000],
        ['93.184.216.34', '93.184.216.34', null, 700],
      ],
    );
    const byPort = acc.snapshot({ groupBy: 'port', sort: 'total', time: 't' });
    assert.deepEqual(
      byPort.rows.map((r) => [r.key, r.proto, r.port]),
      [
        ['tcp/80', 'tcp', 80],
        ['tcp/443', 'tcp', 443],
      ],
    );
    const byUser = acc.snapshot({ groupBy: 'user', sort: 'total', time: 't' });
    assert.deepEqual(
      byUser.rows.map((r) => [r.key, r.user, r.sent_total, r.recv_total]),
      [
        ['33', 'www-data', 64000, 100],
        ['0', 'root', 700, 2000],
      ],
    );
    const byConn = acc.snapshot({ groupBy: 'conn', sort: 'total', time: 't' });
    assert.deepEqual(
      byConn.rows.map((r) => [r.key, r.local, r.remote, r.state, r.pid]),
      [
        ['tcp 10.0.0.1:80 198.51.100.7:51000', '10.0.0.1:80', '198.51.100.7:51000', 'ESTABLISHED', 100],
        ['tcp 10.0.0.1:40000 93.184.216.34:443', '10.0.0.1:40000', '93.184.216.34:443', 'ESTABLISHED', 200],
      ],
    );
  });

  test('filters: --pid, --port, --host', () => {
    dump();
    acc.startInterval();
    dump(outbound([5, 700], [4, 2000]), inbound([6, 100], [9, 64000]));
    w.clock.t += 1000;
    const s1 = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't', filters: { pids: [200] } });
    assert.deepEqual(s1.rows.map((r) => r.pid), [200]);
    const s2 = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't', filters: { ports: [80] } });
    assert.deepEqual(s2.rows.map((r) => r.pid), [100]);
    const s3 = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't', filters: { host: (a) => a.startsWith('93.') } });
    assert.deepEqual(s3.rows.map((r) => r.pid), [200]);
  });

  test('flows without counters are counted in health, never as zero traffic', () => {
    dump(outbound(null, null));
    const s = snap();
    assert.equal(s.health.flows_without_counters, 1);
    assert.equal(s.rows.find((r) => r.pid === 200)!.flows, 1);
  });

  test('counters zeroed by another tool: counting restarts, nothing goes negative', () => {
    dump();
    acc.startInterval();
    dump(outbound([5, 5000], [5, 5000]));
    dump(outbound([1, 100], [1, 100]));
    const s = snap();
    assert.equal(s.rows.find((r) => r.pid === 200)!.sent_total, 5100);
  });

  test('sorting by sent, recv and conns', () => {
    dump();
    acc.startInterval();
    dump(outbound([5, 700], [4, 2000]), inbound([6, 100], [9, 64000]));
    w.clock.t += 1000;
    assert.deepEqual(acc.snapshot({ groupBy: 'process', sort: 'recv', time: 't' }).rows.map((r) => r.pid), [200, 100]);
  });

  test('sliding windows: 2 s average over the last refreshes', () => {
    dump();
    acc.startInterval();
    dump(outbound([1, 1000], [1, 0]));
    snap();
    dump(outbound([2, 4000], [1, 0]));
    const s = snap();
    const curl = s.rows.find((r) => r.pid === 200)!;
    assert.equal(curl.sent_bps, 3000);
    assert.equal(curl.sent_bps_2s, 2000);
    assert.equal(curl.sent_peak_bps, 3000);
  });

  test('a snapshot only reads: taken twice it is the same; closeInterval() starts the next interval', () => {
    dump();
    acc.startInterval();
    dump(outbound([1, 1000], [1, 200]), inbound([2, 300], [2, 4000]));
    snap();
    // This interval: curl's flow grows, nginx's flow ends (its bytes go to the retired rows).
    dump(outbound([2, 4000], [1, 500]), inbound([2, 300], [2, 4000]));
    acc.eventBatch([inbound([3, 800], [3, 9000], { kind: 'destroy' })]);
    w.clock.t += 1000;
    const view = () => acc.snapshot({ groupBy: 'process', sort: 'total', time: 't' });
    const first = view();
    const second = view();
    assert.deepEqual(second, first);
    const curl = first.rows.find((r) => r.pid === 200)!;
    const nginx = first.rows.find((r) => r.pid === 100)!;
    assert.deepEqual([curl.sent_bytes, curl.recv_bytes, curl.sent_bps, curl.sent_bps_2s, curl.sent_peak_bps], [3000, 300, 3000, 2000, 3000]);
    assert.deepEqual([nginx.sent_bytes, nginx.recv_bytes, nginx.closed_flows, nginx.sent_total, nginx.recv_total], [5000, 500, 1, 9000, 800]);
    // Another group-by in between reads too: the windows of the next refresh are unchanged.
    acc.snapshot({ groupBy: 'remote', sort: 'total', time: 't' });
    assert.deepEqual(view(), first);
    acc.closeInterval();
    const next = view();
    const curlNext = next.rows.find((r) => r.pid === 200)!;
    const nginxNext = next.rows.find((r) => r.pid === 100)!;
    assert.deepEqual([curlNext.sent_bytes, curlNext.recv_bytes, curlNext.sent_total, curlNext.sent_peak_bps], [0, 0, 4000, 3000]);
    assert.deepEqual([nginxNext.sent_bytes, nginxNext.closed_flows, nginxNext.new_flows, nginxNext.sent_total], [0, 0, 0, 9000]);
    assert.equal(next.interval_s, 0.001); // the next interval began at the snapshot that closed the last
  });
});

describe('inference for connections whose socket was gone', () => {
  beforeEach(setup);
  const conn = (id: number, sport: number, sk: ReturnType<typeof hit> | null) =>
    rec({ kind: 'new', id, src: HOST, sport, dst: '93.184.216.34', dport: 443, orig: null, reply: null, skOrig: sk });

  test('an orphan goes to the one process that connected to the same endpoint lately', () => {
    w.sockets.set(`${HOST}:40001 93.184.216.34:443`, { inode: 6001, uid: 0, state: 1 });
    w.fds.set(200, [6001]);
    dump();
    acc.startInterval();
    acc.eventBatch([conn(11, 40001, hit(6001)), conn(12, 40002, { found: true, inode: 0, uid: 0, pid: 0, state: 6 })]);
    acc.eventBatch([rec({ kind: 'destroy', id: 12, src: HOST, sport: 40002, dst: '93.184.216.34', dport: 443, orig: [4, 900], reply: [3, 300] })]);
    const s = snap();
    assert.equal(s.rows.find((r) => r.pid === 200)!.sent_total, 900);
    assert.equal(s.health.inferred_flows, 1);
  });

  test('no guess when two processes connect to that endpoint', () => {
    w.sockets.set(`${HOST}:40001 93.184.216.34:443`, { inode: 6001, uid: 0, state: 1 });
    w.sockets.set(`${HOST}:40003 93.184.216.34:443`, { inode: 6003, uid: 0, state: 1 });
    w.fds.set(200, [6001]);
    w.fds.set(300, [6003]);
    w.procs.set(300, { pid: 300, comm: 'wget', cmdline: 'wget', uid: 0 });
    dump();
    acc.startInterval();
    acc.eventBatch([conn(11, 40001, hit(6001)), conn(13, 40003, hit(6003)), conn(12, 40002, { found: true, inode: 0, uid: 0, pid: 0, state: 6 })]);
    acc.eventBatch([rec({ kind: 'destroy', id: 12, src: HOST, sport: 40002, dst: '93.184.216.34', dport: 443, orig: [4, 900], reply: [3, 300] })]);
    const s = snap();
    assert.equal(s.unattributed.unknown.sent_total, 900);
    assert.equal(s.health.inferred_flows, 0);
  });
});

describe('pruning for daemons', () => {
  beforeEach(setup);
  test('pruneRetired drops ended flows\' totals of keys idle longer than the limit, keeps the rest', () => {
    dump();
    acc.startInterval();
    dump(outbound([1, 100], [1, 100]));
    acc.eventBatch([outbound([1, 100], [1, 100], { kind: 'destroy' })]);
    w.clock.t += 5000;
    assert.equal(acc.pruneRetired(10_000), 0);
    assert.equal(snap().rows.find((r) => r.pid === 200)!.sent_total, 100);
    w.clock.t += 10_000;
    assert.equal(acc.pruneRetired(10_000), 7, 'one row per group-by (process, conn, remote, port, user, container, unit)');
    assert.equal(snap().rows.length, 0);
  });
});

describe('finished flows become tombstones', () => {
  beforeEach(setup);
  test('a TIME_WAIT flow leaves the live set; late bytes and its DESTROY are still counted exactly once', () => {
    dump();
    acc.startInterval();
    dump(outbound([5, 5000], [4, 400]));
    dump(outbound([6, 5052], [5, 452], { tcpState: 7 })); // TIME_WAIT: final state
    assert.equal(acc.flows.size, 0, 'no longer a live flow');
    let s = snap();
    assert.equal(s.health.flows_tracked, 1, 'still tracked, as a tombstone');
    const curl = () => s.rows.find((r) => r.pid === 200)!;
    assert.deepEqual([curl().sent_total, curl().recv_total, curl().closed_flows], [5052, 452, 1]);
    dump(outbound([7, 5104], [5, 452], { tcpState: 7 })); // a late retransmission
    s = snap();
    assert.deepEqual([curl().sent_total, curl().sent_bytes], [5104, 52]);
    acc.eventBatch([outbound([7, 5104], [6, 504], { kind: 'destroy', tcpState: 7 })]);
    dump(outbound([7, 5104], [6, 504], { tcpState: 7 })); // a dump written before the entry died
    s = snap();
    assert.deepEqual([curl().sent_total, curl().recv_total], [5104, 504]);
    assert.equal(s.health.flows_tracked, 0);
  });

  test('with a flow log attached, finished flows stay whole until their DESTROY', () => {
    const retired: string[] = [];
    acc = new Accounting(() => local, resolver(w), () => w.clock.t, { keepRecords: true, onRetire: (st, why) => retired.push(`${st.rec!.ctId} ${why}`) });
    dump();
    acc.startInterval();
    dump(outbound([6, 5052], [5, 452], { tcpState: 7 }));
    assert.equal(acc.flows.size, 1);
    acc.eventBatch([outbound([6, 5052], [5, 452], { kind: 'destroy', tcpState: 7 })]);
    assert.deepEqual(retired, ['1 destroy']);
  });
});

describe('event and dump races', () => {
  beforeEach(setup);
  test('a NEW event that arrives after a dump already tombstoned the flow does not count it again', () => {
    dump();
    acc.startInterval();
    dump(outbound([6, 3320], [4, 2216], { tcpState: 7 })); // met first in a dump, already finished
    acc.eventBatch([outbound(null, null, { kind: 'new', skOrig: hit(6000) })]); // its late NEW
    dump(outbound([6, 3320], [4, 2216], { tcpState: 7 }));
    acc.eventBatch([outbound([6, 3320], [4, 2216], { kind: 'destroy', tcpState: 7 })]);
    dump();
    const s = snap();
    assert.equal(s.rows.find((r) => r.pid === 200)!.sent_total, 3320);
    assert.equal(s.health.flows_tracked, 0);
  });
});

describe('conntrack id collisions', () => {
  beforeEach(setup);
  test('two live flows with the same 32-bit id are two flows, each counted once', () => {
    dump();
    acc.startInterval();
    const a = rec({ id: 77, src: HOST, sport: 40000, dst: '93.184.216.34', dport: 443, orig: [5, 5000], reply: [5, 500] });
    const b = rec({ id: 77, src: '198.51.100.7', sport: 51000, dst: HOST, dport: 80, orig: [6, 600], reply: [6, 6000] });
    dump(a, b);
    dump(a, b);
    dump(a, b);
    const s = snap();
    const byPid = new Map(s.rows.map((r) => [r.pid, r]));
    assert.equal(byPid.get(200)!.sent_total, 5000);
    assert.equal(byPid.get(100)!.sent_total, 6000);
    assert.equal(s.health.flows_tracked, 2);
    assert.deepEqual(
      s.rows.map((r) => r.new_flows).sort(),
      [1, 1],
    );
  });
});
