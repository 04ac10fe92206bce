// The engine's timing logic with a fake source that replays captured kernel bytes and a manual clock.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { EngineError, TopEngine } from '../../src/core/engine.js';
import { getAddon, type NativeError } from '../../src/netlink/addon.js';
import type { ConntrackSource, EventHandlers } from '../../src/netlink/source.js';
import { resolver, world } from '../fakes/owners.js';
import { rec } from '../fakes/records.js';

const dumpBytes = readFileSync(new URL('../fixtures/netlink/dump-all-acct-ts.bin', import.meta.url));

function fakeSource() {
  const calls: string[] = [];
  let handlers: EventHandlers | null = null;
  const source: ConntrackSource = {
    dump: async () => {
      throw new Error('the engine uses dumpRaw');
    },
    dumpRaw: async (filter, onRaw) => {
      calls.push(`dump ${JSON.stringify(filter)}`);
      const r = getAddon().parse(dumpBytes, false);
      onRaw(r.records, r.count);
      return { records: r.count, malformed: 0, messages: 1, bytesRead: dumpBytes.length };
    },
    subscribe: (_opts, h) => {
      calls.push('subscribe');
      handlers = h;
      return {
        close: () => calls.push('close'),
        stats: () => ({}) as never,
        setCandidates: (p) => calls.push(`candidates ${p.length}`),
        setLocalAddresses: (a) => calls.push(`local ${a.join(',')}`),
      };
    },
  };
  return { source, calls, handlers: () => handlers! };
}

function engine(dumpEveryMs?: number, addrs = ['127.0.0.1']) {
  const w = world();
  const f = fakeSource();
  const e = new TopEngine(
    { source: f.source, owners: resolver(w), localAddresses: () => addrs, monotonic: () => w.clock.t, now: () => 1_700_000_000_000 + w.clock.t },
    dumpEveryMs !== undefined ? { dumpEveryMs } : {},
  );
  return { e, w, f };
}

const view = { groupBy: 'process' as const, sort: 'total' as const };

test('subscribes before the initial dump, so no flow slips between them', async () => {
  const { e, f } = engine();
  await e.start();
  assert.deepEqual(f.calls.slice(0, 3), ['subscribe', 'local 127.0.0.1', 'dump {}']);
  const s = await e.refresh(view);
  assert.equal(s.health.flows_tracked, 5);
  assert.equal(e.dumps, 2);
});

test('the reader thread gets the addresses the accounting calls local, again only when they change', async () => {
  const addrs = ['127.0.0.1', '10.0.0.5'];
  const { e, w, f } = engine(undefined, addrs);
  await e.start();
  const pushes = () => f.calls.filter((c) => c.startsWith('local'));
  assert.deepEqual(pushes(), ['local 127.0.0.1,10.0.0.5']);
  w.clock.t += 6000;
  await e.refresh(view);
  assert.deepEqual(pushes(), ['local 127.0.0.1,10.0.0.5'], 'the same set is not pushed again');
  addrs.push('fd00::5');
  w.clock.t += 6000;
  await e.refresh(view);
  assert.deepEqual(pushes(), ['local 127.0.0.1,10.0.0.5', 'local 127.0.0.1,10.0.0.5,fd00::5']);
  e.close();
});

test('each refresh ends the interval it shows: the next starts from zero, totals stay', async () => {
  const { e, w, f } = engine();
  await e.start();
  // A loopback connection born and ended between two refreshes: --by port counts its server end.
  f.handlers().records([rec({ kind: 'destroy', id: 77, src: '127.0.0.1', sport: 45000, dst: '127.0.0.1', dport: 8080, orig: [3, 600], reply: [2, 400] })]);
  const byPort = { groupBy: 'port' as const, sort: 'total' as const };
  w.clock.t += 1000;
  const first = (await e.refresh(byPort)).rows.find((r) => r.key === 'tcp/8080')!;
  w.clock.t += 1000;
  const second = (await e.refresh(byPort)).rows.find((r) => r.key === 'tcp/8080')!;
  assert.deepEqual([first.sent_bytes, first.recv_bytes, first.sent_bps, first.new_flows, first.closed_flows, first.sent_total], [400, 600, 400, 1, 1, 400]);
  assert.deepEqual([second.sent_bytes, second.recv_bytes, second.sent_bps, second.new_flows, second.closed_flows, second.sent_total], [0, 0, 0, 0, 0, 400]);
  assert.equal(second.sent_peak_bps, 400);
});

test('dump cadence: with dumpEveryMs, refreshes in between read no table', async () => {
  const { e, w } = engine(10_000);
  await e.start();
  w.clock.t += 1000;
  await e.refresh(view);
  assert.equal(e.dumps, 1);
  w.clock.t += 9500;
  await e.refresh(view);
  assert.equal(e.dumps, 2);
});

test('an overrun makes the next refresh resync with a dump, whatever the cadence', async () => {
  const { e, w, f } = engine(60_000);
  await e.start();
  f.handlers().overrun(Object.assign(new Error('recvmsg ENOBUFS'), { code: 'ENOBUFS', errno: -105, syscall: 'recvmsg' }) as NativeError);
  w.clock.t += 1000;
  const s = await e.refresh(view);
  assert.equal(e.dumps, 2);
  assert.equal(s.health.lost_events, 1);
  assert.equal(s.health.resyncs, 1);
});

test('a failed subscription surfaces at the next refresh as an EngineError with the code', async () => {
  const { e, f } = engine();
  await e.start();
  f.handlers().error(Object.assign(new Error('recvmsg EBADF'), { code: 'EBADF', errno: -9, syscall: 'recvmsg' }) as NativeError);
  await assert.rejects(e.refresh(view), (err: unknown) => err instanceof EngineError && err.cause.code === 'EBADF');
});

test('kernel filters: one dump each; events outside them are dropped on arrival', async () => {
  const w = world();
  const f = fakeSource();
  const e = new TopEngine(
    { source: f.source, owners: resolver(w), localAddresses: () => ['127.0.0.1'], monotonic: () => w.clock.t, now: () => 0 },
    { kernelFilters: [{ family: 4, proto: 6, dport: 9000 }, { family: 4, proto: 6, sport: 9000 }] },
  );
  await e.start();
  assert.deepEqual(f.calls.filter((c) => c.startsWith('dump')), ['dump {"family":4,"proto":6,"dport":9000}', 'dump {"family":4,"proto":6,"sport":9000}']);
  const events = getAddon().parse(readFileSync(new URL('../fixtures/netlink/events-new-destroy.bin', import.meta.url)), true);
  const { decodeRecords } = await import('../../src/netlink/record.js');
  const before = e.acc.health.events;
  f.handlers().records(decodeRecords(events.records, events.count));
  // Of 6 events only the TCP flow to port 9000 (NEW + DESTROY) passes.
  assert.equal(e.acc.health.events - before, 2);
});

test('failed dumps are counted in health and retried with back-off (1 s, 2 s, 4 s…); the engine keeps going', async () => {
  const { e, w, f } = engine();
  await e.start();
  let failing = 3;
  const real = f.source.dumpRaw;
  f.source.dumpRaw = async (filter, onRaw) => {
    if (failing > 0) {
      failing--;
      throw Object.assign(new Error('recvmsg ENOBUFS'), { code: 'ENOBUFS' });
    }
    return real(filter, onRaw);
  };
  w.clock.t += 1000;
  let s = await e.refresh(view); // fails (1): retry in 1 s
  assert.equal(s.health.dump_failures, 1);
  assert.deepEqual(s.health.notes?.map((n) => n.code), ['dump-failed']);
  assert.equal(s.health.flows_tracked, 5); // what the last good dump saw stays
  w.clock.t += 500;
  s = await e.refresh(view); // not due yet
  assert.equal(s.health.dump_failures, 1);
  w.clock.t += 500;
  s = await e.refresh(view); // fails (2): retry in 2 s
  assert.equal(s.health.dump_failures, 2);
  w.clock.t += 1000;
  s = await e.refresh(view); // not due
  assert.equal(s.health.dump_failures, 2);
  w.clock.t += 1000;
  s = await e.refresh(view); // fails (3): retry in 4 s
  assert.equal(s.health.dump_failures, 3);
  assert.match(s.health.notes![0]!.message, /the last 3 conntrack table dump\(s\) failed \(ENOBUFS\)/);
  w.clock.t += 4000;
  const dumpsBefore = e.dumps;
  s = await e.refresh(view); // succeeds
  assert.equal(e.dumps, dumpsBefore + 1);
  assert.equal(s.health.dump_failures, 3);
  assert.deepEqual(s.health.notes ?? [], []);
});

test('set-up facts reach every snapshot: tracking, notes and changes with codes', async () => {
  const { e } = engine();
  await e.start();
  const s = await e.refresh({
    ...view,
    tracking: 'not-tracking',
    notes: [{ code: 'not-tracking', message: 'nothing tracks' }],
    systemChanges: [{ code: 'acct-on', message: 'net.netfilter.nf_conntrack_acct: 0 → 1' }],
  });
  assert.equal(s.health.tracking, 'not-tracking');
  assert.deepEqual(s.health.notes, [{ code: 'not-tracking', message: 'nothing tracks' }]);
  assert.deepEqual(s.health.system_changes, [{ code: 'acct-on', message: 'net.netfilter.nf_conntrack_acct: 0 → 1' }]);
});
