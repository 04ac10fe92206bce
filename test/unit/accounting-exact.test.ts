// Counting each flow life once, failed dumps, loopback in attribute groupings, process identity
// (pid, start time), shared sockets and the move from a listener to the accepted socket's holder.
// Fake records, a fake /proc and a manual clock.
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { Accounting } from '../../src/core/accounting.js';
import { localAddressSet } from '../../src/core/flow.js';
import { TopEngine } from '../../src/core/engine.js';
import type { ConntrackSource } from '../../src/netlink/source.js';
import { hit, rec } from '../fakes/records.js';
import { fakeDeps, resolver, world, type FakeWorld } from '../fakes/owners.js';
import { OwnerResolver } from '../../src/core/owners.js';

const HOST = '10.0.0.1';
const local = localAddressSet([HOST]);
let w: FakeWorld;
let acc: Accounting;

function setup() {
  w = world();
  w.sockets.set(`${HOST}:5353 192.0.2.53:53`, { inode: 7000, uid: 0, state: 7 });
  w.fds.set(300, [7000]);
  w.procs.set(300, { pid: 300, comm: 'resolver', cmdline: 'resolver', uid: 0, startTime: 1000 });
  acc = new Accounting(() => local, resolver(w), () => w.clock.t);
}

const dump = (...records: ReturnType<typeof rec>[]) => {
  acc.beginDump();
  acc.dumpBatch(records);
  acc.endDump();
};
const snap = (groupBy: 'process' | 'conn' | 'remote' | 'port' | 'user' = 'process') => {
  w.clock.t += 1000;
  // One refresh: the view of the interval, then the interval ends.
  const s = acc.snapshot({ groupBy, sort: 'total', time: 't' });
  acc.closeInterval();
  return s;
};
/** One UDP flow from a fixed source port: every life has the same conntrack id and tuple. */
const udp = (orig: [number, number] | null, reply: [number, number] | null, kind: 'dump' | 'new' | 'destroy' = 'dump') =>
  rec({ kind, id: 77, proto: 17, src: HOST, sport: 5353, dst: '192.0.2.53', dport: 53, orig, reply, tcpState: null });

describe('each flow life is counted once', () => {
  beforeEach(setup);

  test('id reuse replayed in the captured order: new life read before the old DESTROY — totals exact, never above truth', () => {
    // The order a real kernel produced (UDP, fixed source port, 1 s timeout, dumps interleaved):
    // life 1 read at 1000/500, ends at 1400/700; life 2 read at 300/100 before life 1's DESTROY
    // is processed; life 1's DESTROY; life 2 read at 800/400; life 2's DESTROY at 900/450.
    dump();
    acc.startInterval();
    dump(udp([10, 1000], [5, 500]));
    dump(udp([3, 300], [1, 100]));
    acc.eventBatch([udp([14, 1400], [7, 700], 'destroy')]);
    dump(udp([8, 800], [4, 400]));
    // A DESTROY below the current reading belongs to an earlier life: it settles nothing now.
    acc.eventBatch([udp([6, 600], [3, 300], 'destroy')]);
    assert.equal(acc.health.staleDestroys, 1);
    acc.eventBatch([udp([9, 900], [5, 450], 'destroy')]);
    const row = snap().rows.find((r) => r.pid === 300)!;
    assert.equal(row.sent_total, 1400 + 900);
    assert.equal(row.recv_total, 700 + 450);
    assert.equal(acc.health.lives, 1);
  });

  test('the usual order (old DESTROY first, then the new life) is exact too', () => {
    dump();
    acc.startInterval();
    dump(udp([10, 1000], [5, 500]));
    acc.eventBatch([udp([14, 1400], [7, 700], 'destroy')]);
    dump();
    dump();
    dump(udp([3, 300], [1, 100]));
    acc.eventBatch([udp([9, 900], [5, 450], 'destroy')]);
    const row = snap().rows.find((r) => r.pid === 300)!;
    assert.equal(row.sent_total, 2300);
    assert.equal(row.recv_total, 1150);
  });

  test('a finished TCP flow (tombstoned) whose id comes back with smaller counters: the new life is counted whole', () => {
    w.sockets.set(`${HOST}:40000 192.0.2.80:80`, { inode: 7100, uid: 0, state: 1 });
    w.fds.set(300, [7000, 7100]);
    const tcp = (orig: [number, number], reply: [number, number], tcpState: number, kind: 'dump' | 'destroy' = 'dump') =>
      rec({ kind, id: 88, src: HOST, sport: 40000, dst: '192.0.2.80', dport: 80, orig, reply, tcpState });
    dump();
    acc.startInterval();
    dump(tcp([10, 5000], [10, 9000], 3));
    dump(tcp([12, 5200], [11, 9100], 7)); // TIME_WAIT: tombstoned
    dump(tcp([2, 120], [1, 60], 3)); // reconnect from the same port, same id
    acc.eventBatch([tcp([12, 5200], [11, 9100], 7, 'destroy')]); // the old life's DESTROY
    dump(tcp([6, 700], [5, 800], 3));
    const row = snap().rows.find((r) => r.pid === 300)!;
    assert.equal(row.sent_total, 5200 + 700);
    assert.equal(row.recv_total, 9100 + 800);
  });
});

describe('dumps that fail close nothing', () => {
  beforeEach(setup);

  test('a dump that ends in an error closes no flow; a flow missed by a complete dump and seen again is open', () => {
    dump();
    acc.startInterval();
    dump(udp([1, 100], [1, 50]));
    acc.beginDump();
    acc.dumpBatch([]); // the kernel returned an error before listing the flow
    acc.dumpFailed();
    let row = snap().rows.find((r) => r.pid === 300)!;
    assert.equal(row.flows, 1);
    assert.equal(row.closed_flows, 0);
    assert.equal(acc.health.dumpFailures, 1);
    dump(); // complete but missed it (e.g. a table resize)
    dump(udp([2, 200], [2, 100]));
    row = snap().rows.find((r) => r.pid === 300)!;
    assert.equal(row.flows, 1, 'open again');
    assert.equal(row.sent_total, 200);
  });

  test('the engine reports a failed dump to the accounting (retried later) and closes nothing', async () => {
    let fail = false;
    const source: ConntrackSource = {
      dump: async () => ({ records: 0, malformed: 0, messages: 0, bytesRead: 0 }),
      dumpRaw: async (_f, onRaw) => {
        if (fail) {
          const err = Object.assign(new Error('dump failed'), { code: 'EBUSY', errno: 16, syscall: 'recv' });
          throw err;
        }
        void onRaw;
        return { records: 0, malformed: 0, messages: 0, bytesRead: 0 };
      },
      subscribe: () => ({ close() {}, stats: () => null, setCandidates() {} }) as never,
    };
    const engine = new TopEngine({ source, owners: resolver(w), localAddresses: () => [HOST], monotonic: () => w.clock.t, now: () => 0 });
    await engine.start();
    engine.acc.beginDump();
    engine.acc.dumpBatch([udp([1, 100], [1, 50])]);
    engine.acc.endDump();
    fail = true;
    const snapAfter = await engine.refresh({ groupBy: 'process', sort: 'total' });
    assert.equal(snapAfter.health.dump_failures, 1);
    assert.equal(engine.acc.health.dumpFailures, 1);
    assert.equal([...engine.acc.flows.values()][0]!.closed, false);
    engine.close();
  });
});

describe('groupings', () => {
  beforeEach(setup);

  test('a loopback flow: --by port and --by remote carry it once, --by process both ends, --by user their sum', () => {
    const lo = localAddressSet([HOST]);
    w.sockets.set('127.0.0.1:9000 *', { inode: 8000, uid: 33, state: 10 });
    w.sockets.set('127.0.0.1:9000 127.0.0.1:45000', { inode: 8001, uid: 33, state: 1 });
    w.sockets.set('127.0.0.1:45000 127.0.0.1:9000', { inode: 8002, uid: 1000, state: 1 });
    w.fds.set(400, [8000, 8001]);
    w.fds.set(500, [8002]);
    w.procs.set(400, { pid: 400, comm: 'server', cmdline: 'server', uid: 33, startTime: 1 });
    w.procs.set(500, { pid: 500, comm: 'client', cmdline: 'client', uid: 1000, startTime: 2 });
    acc = new Accounting(() => lo, resolver(w), () => w.clock.t);
    const flow = rec({ id: 9, src: '127.0.0.1', sport: 45000, dst: '127.0.0.1', dport: 9000, orig: [40, 2_000_000], reply: [30, 10_000] });
    dump();
    acc.startInterval();
    dump(flow);
    const port = snap('port').rows;
    assert.equal(port.length, 1);
    assert.deepEqual([port[0]!.sent_total, port[0]!.recv_total], [10_000, 2_000_000], 'once, from the answering end');
    const remote = snap('remote').rows;
    assert.equal(remote.length, 1);
    assert.equal(remote[0]!.sent_total + remote[0]!.recv_total, 2_010_000);
    const conn = snap('conn').rows;
    assert.equal(conn.reduce((n, r) => n + r.sent_total + r.recv_total, 0), 2_010_000);
    const proc = snap('process').rows;
    assert.deepEqual(proc.map((r) => [r.pid, r.sent_total, r.recv_total]).sort(), [[400, 10_000, 2_000_000], [500, 2_000_000, 10_000]]);
    const user = snap('user').rows;
    assert.equal(user.reduce((n, r) => n + r.sent_total + r.recv_total, 0), 2 * 2_010_000);
  });
});

describe('process identity and shared sockets', () => {
  beforeEach(setup);

  test('a reused pid is another process: its own row, its own name, never the old one\'s', () => {
    const out = (id: number, sport: number, orig: [number, number]) => rec({ id, proto: 17, src: HOST, sport, dst: '192.0.2.53', dport: 53, orig, reply: [1, 10], tcpState: null });
    dump();
    acc.startInterval();
    dump(out(1, 5353, [1, 111]));
    assert.equal(snap().rows[0]!.comm, 'resolver');
    // pid 300 exits; a new process gets pid 300 and opens another socket.
    w.clock.t += 5000;
    w.procs.set(300, { pid: 300, comm: 'intruder', cmdline: 'intruder', uid: 1000, startTime: 9000 });
    w.sockets.set(`${HOST}:6000 192.0.2.53:53`, { inode: 7200, uid: 1000, state: 7 });
    w.fds.set(300, [7200]);
    dump(out(2, 6000, [1, 222]));
    const rows = snap().rows.filter((r) => r.pid === 300);
    assert.equal(rows.length, 2);
    const byStart = new Map(rows.map((r) => [r.start_time, r]));
    assert.equal(byStart.get(1000)!.comm, 'resolver');
    assert.equal(byStart.get(1000)!.sent_total, 111);
    assert.equal(byStart.get(9000)!.comm, 'intruder');
    assert.equal(byStart.get(9000)!.user, '1000');
    assert.equal(byStart.get(9000)!.sent_total, 222);
  });

  test('a socket held by parent and child: the lowest pid, shared: true, whichever the search met first', () => {
    w.sockets.set(`${HOST}:7000 192.0.2.9:443`, { inode: 7300, uid: 0, state: 1 });
    w.fds.set(600, [7300]);
    w.fds.set(650, [7300]);
    w.parents = new Map([[650, 600]]);
    w.procs.set(600, { pid: 600, comm: 'parent', cmdline: 'parent', uid: 0, startTime: 1 });
    w.procs.set(650, { pid: 650, comm: 'child', cmdline: 'child', uid: 0, startTime: 2 });
    dump();
    acc.startInterval();
    dump(rec({ id: 3, src: HOST, sport: 7000, dst: '192.0.2.9', dport: 443, orig: [1, 500], reply: [1, 900] }));
    const row = snap().rows.find((r) => r.sent_total === 500)!;
    assert.equal(row.pid, 600);
    assert.equal(row.shared, true);
  });

  test('an inbound connection moves from its listener to the worker holding the accepted socket', () => {
    // Pre-fork: master 100 and workers 101, 102 hold the listener; 102 accepts.
    w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
    for (const p of [100, 101, 102]) {
      w.fds.set(p, [5000]);
      w.procs.set(p, { pid: p, comm: 'nginx', cmdline: p === 100 ? 'nginx: master' : 'nginx: worker', uid: 33, startTime: p });
    }
    w.parents = new Map([[101, 100], [102, 100]]);
    const conn = (orig: [number, number] | null, reply: [number, number] | null, kind: 'new' | 'dump' = 'dump') =>
      rec({ kind, id: 4, src: '198.51.100.7', sport: 51000, dst: HOST, dport: 80, orig, reply, skReply: kind === 'new' ? hit(5000, 33, 10) : null });
    dump();
    acc.startInterval();
    acc.eventBatch([conn(null, null, 'new')]);
    let s = snap();
    assert.equal(s.rows.find((r) => r.new_flows === 1)!.pid, 100, 'provisional: the listening service (lowest pid)');
    // accept() in worker 102
    w.sockets.set(`${HOST}:80 198.51.100.7:51000`, { inode: 5100, uid: 33, state: 1 });
    w.fds.set(102, [5000, 5100]);
    w.clock.t += 5;
    acc.recheck();
    dump(conn([20, 30_000], [15, 900]));
    s = snap();
    const worker = s.rows.find((r) => r.pid === 102)!;
    assert.equal(worker.recv_total, 30_000);
    assert.equal(worker.sent_total, 900);
    assert.equal(worker.shared ?? false, false);
    assert.equal(s.rows.find((r) => r.pid === 100)?.recv_total ?? 0, 0);
    assert.equal(acc.health.moved, 1);
  });

  test('a connection that ends before accept() stays with the listening service', () => {
    w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
    w.fds.set(100, [5000]);
    w.procs.set(100, { pid: 100, comm: 'server', cmdline: 'server', uid: 33, startTime: 7 });
    dump();
    acc.startInterval();
    acc.eventBatch([rec({ kind: 'new', id: 5, src: '198.51.100.7', sport: 52000, dst: HOST, dport: 80, orig: null, reply: null, skReply: hit(5000, 33, 10) })]);
    // Still in the accept queue (inode 0, CLOSE_WAIT): not accepted, looked at again later.
    w.sockets.set(`${HOST}:80 198.51.100.7:52000`, { inode: 0, uid: 33, state: 8 });
    w.clock.t += 5;
    acc.recheck();
    dump(rec({ id: 5, src: '198.51.100.7', sport: 52000, dst: HOST, dport: 80, orig: [3, 4000], reply: [2, 120] }));
    const row = snap().rows.find((r) => r.pid === 100)!;
    assert.equal(row.recv_total, 4000);
    assert.equal(acc.health.moved, 0);
  });
});

describe('a single-process server owns its connections outright', () => {
  test('an accepted socket met at NEW time is not searched for: the sole listener holder owns it', () => {
    const w = world();
    w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
    w.fds.set(100, [5000]);
    w.procs.set(100, { pid: 100, comm: 'server', cmdline: 'server', uid: 33, startTime: 7 });
    const acc = new Accounting(() => local, resolver(w), () => w.clock.t);
    acc.beginDump();
    acc.endDump();
    acc.startInterval();
    // The listener is met first (its family is read once: one holder, no children).
    acc.eventBatch([rec({ kind: 'new', id: 6, src: '198.51.100.7', sport: 52999, dst: HOST, dport: 80, orig: null, reply: null, skReply: hit(5000, 33, 10) })]);
    const scans = w.scans.length;
    // The server accepts a second connection; a NEW read after accept(): the addon met the
    // accepted socket, without its holder.
    w.sockets.set(`${HOST}:80 198.51.100.7:53000`, { inode: 5300, uid: 33, state: 1 });
    w.fds.set(100, [5000, 5300]);
    acc.eventBatch([rec({ kind: 'new', id: 7, src: '198.51.100.7', sport: 53000, dst: HOST, dport: 80, orig: null, reply: null, skReply: hit(5300, 33, 1) })]);
    assert.equal(w.scans.length, scans, 'no fd table searched for the accepted socket');
    acc.beginDump();
    acc.dumpBatch([rec({ id: 7, src: '198.51.100.7', sport: 53000, dst: HOST, dport: 80, orig: [3, 4000], reply: [2, 120] })]);
    acc.endDump();
    w.clock.t += 1000;
    const row = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't' }).rows.find((r) => r.pid === 100)!;
    assert.equal(row.recv_total, 4000);
  });
  test('the addon is told which listeners have a sole holder; a group or a child takes a listener off the list', async () => {
    const w = world();
    w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
    w.sockets.set(`${HOST}:81 *`, { inode: 5100, uid: 33, state: 10 });
    w.sockets.set(`${HOST}:82 *`, { inode: 5200, uid: 33, state: 10 });
    w.fds.set(100, [5000]);
    w.fds.set(200, [5100]);
    w.fds.set(300, [5200]);
    w.parents = new Map([[201, 200]]); // 200 has a child: a fork-after-accept server
    for (const pid of [100, 200, 201, 300]) w.procs.set(pid, { pid, comm: 'server', cmdline: 'server', uid: 33, startTime: 7 });
    const groups = new Map([[82, 2]]); // port 82: an SO_REUSEPORT group of two listeners
    const res = new OwnerResolver({ ...fakeDeps(w), listenersOn: (_f, port) => groups.get(port) ?? 1 }, { fullScanMaxShare: 1 });
    const pushed: number[][] = [];
    const source = {
      dump: async () => ({ records: 0, malformed: 0, messages: 0, bytesRead: 0 }),
      dumpRaw: async () => ({ records: 0, malformed: 0, messages: 0, bytesRead: 0 }),
      subscribe: (_o: unknown, h: { records: (b: ReturnType<typeof rec>[]) => void }) => {
        handlers = h;
        return { close() {}, stats: () => null, setCandidates() {}, setSoleListeners: (p: number[]) => pushed.push(p) };
      },
    } as unknown as ConntrackSource;
    let handlers: { records: (b: ReturnType<typeof rec>[]) => void } | null = null;
    const engine = new TopEngine({ source, owners: res, localAddresses: () => [HOST], monotonic: () => w.clock.t, now: () => w.clock.t });
    await engine.start();
    // One connection to each listener, read before accept(): each listener is met.
    handlers!.records([80, 81, 82].map((port, i) => rec({ kind: 'new', id: 10 + i, src: '198.51.100.7', sport: 52000 + i, dst: HOST, dport: port, orig: null, reply: null, skReply: hit(5000 + 100 * i, 33, 10) })));
    assert.deepEqual(pushed.at(-1), [5000, 100], 'only the listener of the one-process server without children or group');
    // The server on port 80 forks a worker that shares its listener: it is no longer the sole holder.
    w.fds.set(101, [5000]);
    w.parents.set(101, 100);
    res.resolveInodes([5000], () => true);
    assert.deepEqual(res.soleListeners(), [5000, 100], 'read again only after a few seconds');
    w.clock.t += 6000;
    assert.deepEqual(res.soleListeners(), [], 'its family read again: two holders now');
    // The next batch pushes the shorter list: the addon searches fd tables again for port 80.
    handlers!.records([rec({ kind: 'new', id: 20, src: '198.51.100.7', sport: 53100, dst: HOST, dport: 81, orig: null, reply: null, skReply: hit(5100, 33, 10) })]);
    assert.deepEqual(pushed.at(-1), []);
    engine.close();
  });
});
