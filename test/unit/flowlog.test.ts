// Flow log lines from the real accounting driven by fake records and a fake /proc: which lines a
// flow makes (one per local end), their bytes, packets, times and owners, and filters as in top.
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { Accounting, type FlowState } from '../../src/core/accounting.js';
import { toFilters } from '../../src/core/filters.js';
import { localAddressSet } from '../../src/core/flow.js';
import { FLOWLOG_VERSION, flowLines, renderFlowLine, type LineContext } from '../../src/core/flowlog.js';
import { hit, rec } from '../fakes/records.js';
import { resolver, world, type FakeWorld } from '../fakes/owners.js';

const HOST = '10.0.0.1';
const T0 = Date.UTC(2026, 10, 22, 8, 0, 0);

let w: FakeWorld;
let acc: Accounting;
let retired: [FlowState, string][];

beforeEach(() => {
  w = world();
  w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
  w.sockets.set(`${HOST}:40000 93.184.216.34:443`, { inode: 6000, uid: 0, state: 1 });
  w.sockets.set(`127.0.0.1:41000 127.0.0.1:8080`, { inode: 7000, uid: 1000, state: 1 });
  w.sockets.set(`127.0.0.1:8080 *`, { inode: 7100, uid: 1001, state: 10 });
  w.fds.set(100, [5000]);
  w.fds.set(200, [6000]);
  w.fds.set(300, [7000]);
  w.fds.set(400, [7100]);
  w.procs.set(100, { pid: 100, comm: 'nginx', cmdline: 'nginx: master', uid: 33 });
  w.procs.set(200, { pid: 200, comm: 'curl', cmdline: 'curl https://example\nsecond line', uid: 0, startTime: 4242 });
  w.procs.set(300, { pid: 300, comm: 'client', cmdline: 'client', uid: 1000 });
  w.procs.set(400, { pid: 400, comm: 'server', cmdline: 'server --port 8080', uid: 1001 });
  retired = [];
  acc = new Accounting(() => localAddressSet([HOST]), resolver(w), () => w.clock.t, { keepRecords: true, onRetire: (st, why) => retired.push([st, why]) });
  acc.beginDump();
  acc.endDump();
  acc.startInterval();
});

const ctx = (p: Partial<LineContext> = {}): LineContext => ({
  reason: 'destroy',
  firstSeenMs: T0,
  lastSeenMs: T0 + 2500,
  cgroupOf: (pid) => (pid === 200 ? { cgroup: '/system.slice/fetch.service', unit: 'fetch.service' } : null),
  ...p,
});

const outbound = (kind: 'new' | 'dump' | 'destroy', orig: [number, number] | null, reply: [number, number] | null, extra = {}) =>
  rec({ kind, id: 1, src: HOST, sport: 40000, dst: '93.184.216.34', dport: 443, orig, reply, ...extra });

describe('flow log lines', () => {
  test('an outbound flow settled by DESTROY: one client line with the final counters, owner and unit', () => {
    acc.eventBatch([outbound('new', null, null, { skOrig: hit(6000) })]);
    acc.beginDump();
    acc.dumpBatch([outbound('dump', [5, 700], [4, 2000])]);
    acc.endDump();
    acc.eventBatch([outbound('destroy', [9, 4268], [7, 9364], { tcpState: 7 })]);
    assert.equal(retired.length, 1);
    const [st, why] = retired[0]!;
    assert.equal(why, 'destroy');
    const lines = flowLines(st, ctx());
    assert.equal(lines.length, 1);
    assert.deepEqual(lines[0], {
      v: FLOWLOG_VERSION,
      // No kernel timestamps: the flow's start is unknown (its counters cover it all), only when ctacct first saw it.
      started: null,
      first_seen: '2026-11-22T08:00:00.000Z',
      ended: '2026-11-22T08:00:02.500Z',
      time_source: 'ctacct',
      duration_s: 2.5,
      end_reason: 'destroy',
      ct_id: 1,
      family: 'ipv4',
      proto: 'tcp',
      state: 'TIME_WAIT',
      direction: 'outbound',
      side: 'client',
      local_addr: HOST,
      local_port: 40000,
      remote_addr: '93.184.216.34',
      remote_port: 443,
      sent_bytes: 4268,
      recv_bytes: 9364,
      sent_packets: 9,
      recv_packets: 7,
      pid: 200,
      comm: 'curl',
      cmdline: 'curl https://example\nsecond line',
      uid: 0,
      user: 'root',
      unit: 'fetch.service',
      cgroup: '/system.slice/fetch.service',
      netns: null,
      container: null,
      shared: false,
      start_time: 4242,
      inferred: false,
      // The dump said mark 0 (events leave it out): "no mark" is null either way.
      mark: null,
      zone: null,
    });
    const text = renderFlowLine(lines[0]!);
    assert.equal(text.split('\n').length, 2, 'one line: the newline in the cmdline is escaped');
    assert.deepEqual(JSON.parse(text), lines[0]);
  });

  test('kernel timestamps, when the DESTROY carries them, are used and said so', () => {
    acc.eventBatch([outbound('new', null, null, { skOrig: hit(6000) })]);
    const r = outbound('destroy', [3, 300], [2, 200]);
    r.startMs = T0 - 1000;
    r.stopMs = T0 + 119_000;
    acc.eventBatch([r]);
    const [line] = flowLines(retired[0]![0], ctx());
    assert.equal(line!.time_source, 'conntrack');
    assert.equal(line!.started, '2026-11-22T07:59:59.000Z');
    assert.equal(line!.first_seen, '2026-11-22T08:00:00.000Z');
    assert.equal(line!.ended, '2026-11-22T08:01:59.000Z');
    assert.equal(line!.duration_s, 120);
  });

  test('a loopback flow makes two lines, one per process, each with its own direction of bytes', () => {
    const loop = (kind: 'new' | 'destroy', o: [number, number] | null, p: [number, number] | null) =>
      rec({ kind, id: 2, src: '127.0.0.1', sport: 41000, dst: '127.0.0.1', dport: 8080, orig: o, reply: p, skOrig: kind === 'new' ? hit(7000, 1000) : null, skReply: kind === 'new' ? hit(7100, 1001, 10) : null });
    acc.eventBatch([loop('new', null, null)]);
    acc.eventBatch([loop('destroy', [6, 1320], [4, 5216])]);
    const lines = flowLines(retired[0]![0], ctx());
    assert.deepEqual(
      lines.map((l) => [l.side, l.pid, l.comm, l.local_port, l.remote_port, l.sent_bytes, l.recv_bytes, l.sent_packets, l.recv_packets, l.direction]),
      [
        ['client', 300, 'client', 41000, 8080, 1320, 5216, 6, 4, 'local'],
        ['server', 400, 'server', 8080, 41000, 5216, 1320, 4, 6, 'local'],
      ],
    );
    // --pid keeps only the matching end; --port keeps both (either end's port).
    assert.deepEqual(flowLines(retired[0]![0], ctx(), toFilters({ pid: [400] }, () => null)).map((l) => l.side), ['server']);
    assert.equal(flowLines(retired[0]![0], ctx(), toFilters({ port: [8080] }, () => null)).length, 2);
    assert.equal(flowLines(retired[0]![0], ctx(), toFilters({ port: [9] }, () => null)).length, 0);
  });

  test('a forwarded flow: one line without a process; --pid/--user filters drop it', () => {
    const fwd = (kind: 'new' | 'destroy', o: [number, number] | null, p: [number, number] | null) =>
      rec({ kind, id: 3, src: '192.168.1.5', sport: 5555, dst: '8.8.8.8', dport: 53, proto: 17, orig: o, reply: p, tcpState: null });
    acc.eventBatch([fwd('new', null, null)]);
    acc.eventBatch([fwd('destroy', [1, 60], [1, 120])]);
    const lines = flowLines(retired[0]![0], ctx());
    assert.deepEqual(
      lines.map((l) => [l.direction, l.side, l.pid, l.local_addr, l.remote_addr, l.sent_bytes, l.recv_bytes, l.state, l.proto]),
      [['forwarded', null, null, '192.168.1.5', '8.8.8.8', 60, 120, null, 'udp']],
    );
    assert.equal(flowLines(retired[0]![0], ctx(), toFilters({ pid: [1] }, () => null)).length, 0);
  });

  test('a flow without counters (accounting was off when it began) has null bytes and packets, never 0', () => {
    acc.eventBatch([outbound('new', null, null, { skOrig: hit(6000) })]);
    acc.eventBatch([outbound('destroy', null, null)]);
    const [line] = flowLines(retired[0]![0], ctx());
    assert.deepEqual([line!.sent_bytes, line!.recv_bytes, line!.sent_packets, line!.recv_packets], [null, null, null, null]);
  });

  test('open at shutdown: ctacct times, end_reason open, the counters of the last dump', () => {
    acc.eventBatch([outbound('new', null, null, { skOrig: hit(6000) })]);
    acc.beginDump();
    acc.dumpBatch([outbound('dump', [5, 700], [4, 2000])]);
    acc.endDump();
    const st = [...acc.flows.values()][0]!; // the only flow
    const [line] = flowLines(st, ctx({ reason: 'open', lastSeenMs: T0 + 10_000 }));
    assert.deepEqual([line!.end_reason, line!.state, line!.sent_bytes, line!.recv_bytes, line!.duration_s], ['open', 'ESTABLISHED', 700, 2000, 10]);
  });
});
