// --resolve: the name cache (asynchronous, cached, bounded) and names in the remote and conn views.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { NameCache } from '../../src/views/names.js';
import { renderTop } from '../../src/views/top.js';
import { snapshot } from '../fakes/snapshots.js';

/** A lookup the test answers by hand. */
function manualLookup() {
  const calls: string[] = [];
  const waiting = new Map<string, { ok(n: string[]): void; fail(e: Error): void }>();
  const lookup = (addr: string) =>
    new Promise<string[]>((ok, fail) => {
      calls.push(addr);
      waiting.set(addr, { ok, fail });
    });
  return { lookup, calls, waiting };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

test('a name is looked up once, in the background; the address shows until it arrives', async () => {
  const l = manualLookup();
  const names = new NameCache(l.lookup, { concurrency: 2 });
  let redraws = 0;
  names.onName(() => redraws++);
  assert.equal(names.nameOf('203.0.113.45'), null);
  assert.equal(names.nameOf('203.0.113.45'), null);
  assert.deepEqual(l.calls, ['203.0.113.45'], 'one lookup per address');
  l.waiting.get('203.0.113.45')!.ok(['web.example.net.']);
  await flush();
  assert.equal(names.nameOf('203.0.113.45'), 'web.example.net');
  assert.equal(redraws, 1);
  assert.deepEqual(l.calls, ['203.0.113.45'], 'cached');
});

test('bounded: concurrency, queue length and cache size; failures are cached as no name', async () => {
  const l = manualLookup();
  let t = 0;
  const names = new NameCache(l.lookup, { concurrency: 2, queueMax: 3, max: 2, ttlMs: 1000, now: () => t });
  for (const a of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']) names.nameOf(a);
  assert.deepEqual(l.calls, ['10.0.0.1', '10.0.0.2'], 'two in flight');
  l.waiting.get('10.0.0.1')!.fail(new Error('ENOTFOUND'));
  await flush();
  assert.deepEqual(l.calls, ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  assert.equal(names.nameOf('10.0.0.1'), null);
  assert.equal(l.calls.filter((a) => a === '10.0.0.1').length, 1, 'a failure is remembered too');
  l.waiting.get('10.0.0.2')!.ok(['b.example']);
  l.waiting.get('10.0.0.3')!.ok(['c.example']);
  await flush();
  assert.equal(names.failures, 1);
  // max 2 entries: the oldest (10.0.0.1) was dropped when 10.0.0.3 came in.
  assert.equal(names.nameOf('10.0.0.3'), 'c.example');
  t = 2000; // past the TTL: asked again, the old name shown meanwhile
  assert.equal(names.nameOf('10.0.0.3'), 'c.example');
  assert.equal(l.calls.filter((a) => a === '10.0.0.3').length, 1, 'queued behind the two in flight');
  l.waiting.get('10.0.0.4')!.ok(['d.example']);
  await flush();
  assert.equal(l.calls.filter((a) => a === '10.0.0.3').length, 2);
  assert.ok(!l.calls.includes('10.0.0.6'), 'dropped: the queue was full');
});

test('remote and conn views show names (sanitised) with --resolve, addresses without', () => {
  const nameOf = (a: string) => (a === '203.0.113.45' ? 'evil\x1b[2J.example' : a === '151.101.2.132' ? 'cdn.example.net' : null);
  const o = { width: 100, height: 24, bits: false, mode: 'rate' as const, sort: 'total' as const, scroll: 0, paused: false, color: false };
  const remote = renderTop(snapshot('remote'), { ...o, nameOf });
  assert.ok(remote.includes('cdn.example.net'), remote);
  assert.ok(remote.includes('evil\\x1b[2J.example'), remote);
  assert.doesNotMatch(remote, /\x1b/);
  assert.ok(remote.includes('10.20.0.9'), 'unknown names stay numeric');
  const conn = renderTop(snapshot('conn'), { ...o, width: 132, nameOf });
  assert.ok(conn.includes('cdn.example.net:443'), conn);
  assert.ok(!renderTop(snapshot('remote'), o).includes('cdn.example.net'), 'numeric by default');
});
