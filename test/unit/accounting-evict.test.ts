// Retired per-connection rows are capped (maxRetiredConns): the oldest go first, each counted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Accounting } from '../../src/core/accounting.js';
import { localAddressSet } from '../../src/core/flow.js';
import { hit, rec } from '../fakes/records.js';
import { resolver, world } from '../fakes/owners.js';

const HOST = '10.0.0.1';

function makeAcc(max: number) {
  const w = world();
  w.fds.set(200, []);
  w.procs.set(200, { pid: 200, comm: 'curl', cmdline: 'curl', uid: 0 });
  const acc = new Accounting(() => localAddressSet([HOST]), resolver(w), () => w.clock.t, { maxRetiredConns: max });
  const conn = (i: number) => {
    const sport = 10000 + i;
    const inode = 100000 + i;
    w.sockets.set(`${HOST}:${sport} 93.184.216.34:443`, { inode, uid: 0, state: 1 });
    w.fds.set(200, [inode]); // the process holds only its current socket
    const base = { id: 1 + i, src: HOST, sport, dst: '93.184.216.34', dport: 443 };
    acc.eventBatch([rec({ ...base, kind: 'new', orig: null, reply: null, skOrig: hit(inode) })]);
    acc.eventBatch([rec({ ...base, kind: 'destroy', orig: [2, 100 + i], reply: [1, 50] })]);
  };
  return { w, acc, conn };
}

test('retired connection rows: the oldest are dropped first, each counted', () => {
  const { w, acc, conn } = makeAcc(3);
  for (let i = 0; i < 7; i++) conn(i);
  w.clock.t += 1000;
  const s = acc.snapshot({ groupBy: 'conn', sort: 'total', time: 't' });
  assert.deepEqual(s.rows.map((r) => r.local).sort(), [`${HOST}:10004`, `${HOST}:10005`, `${HOST}:10006`]);
  assert.equal(s.health.retired_conns_dropped, 4);
  // The process row keeps every connection's bytes: only the per-connection detail was capped.
  const p = acc.snapshot({ groupBy: 'process', sort: 'total', time: 't' }).rows.find((r) => r.pid === 200)!;
  assert.equal(p.sent_total, 7 * 100 + 21);
});

test("an ended connection's row: its last bytes in the refresh it ended in, its totals after; a later life of the tuple adds", () => {
  const { w, acc, conn } = makeAcc(10);
  acc.beginDump();
  acc.endDump();
  acc.startInterval();
  conn(1);
  w.clock.t += 1000;
  const row = () => acc.snapshot({ groupBy: 'conn', sort: 'total', time: 't' }).rows.find((r) => r.local === `${HOST}:10001`)!;
  let r = row();
  assert.deepEqual([r.sent_total, r.sent_bytes, r.sent_bps, r.new_flows, r.closed_flows, r.pid], [101, 101, 101, 1, 1, 200]);
  acc.closeInterval();
  w.clock.t += 1000;
  r = row();
  assert.deepEqual([r.sent_total, r.sent_bytes, r.new_flows, r.closed_flows], [101, 0, 0, 0], 'the next refresh: totals only');
  assert.equal(r.sent_peak_bps, 101, 'its peak is kept while it is shown');
  conn(1); // the same tuple again, another life
  r = row();
  assert.deepEqual([r.sent_total, r.sent_bytes, r.new_flows, r.closed_flows], [202, 101, 1, 1]);
  // Pruning (daemons) forgets a row once all its lives are idle, and says how many rows went.
  w.clock.t += 60_000;
  assert.equal(acc.pruneRetired(30_000) >= 1, true);
  assert.equal(acc.snapshot({ groupBy: 'conn', sort: 'total', time: 't' }).rows.length, 0);
});
