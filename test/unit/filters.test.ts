import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchesKernelFilters, toFilters, toKernelFilters } from '../../src/core/filters.js';
import { UserError } from '../../src/errors.js';

test('no narrowing filter: one unfiltered dump; a family alone: one dump of that family', () => {
  assert.deepEqual(toKernelFilters({}), [{}]);
  assert.deepEqual(toKernelFilters({ '6': true }), [{ family: 6 }]);
});

test('--proto: one dump per family with the protocol (the kernel needs a family to filter it)', () => {
  assert.deepEqual(toKernelFilters({ proto: 'tcp' }), [
    { family: 4, proto: 6 },
    { family: 6, proto: 6 },
  ]);
  assert.deepEqual(toKernelFilters({ proto: 'icmp', '4': true }), [{ family: 4, proto: 1 }]);
});

test('--port: source and destination port dumps per family and protocol', () => {
  assert.deepEqual(toKernelFilters({ port: [443], proto: 'tcp', '4': true }), [
    { family: 4, proto: 6, dport: 443 },
    { family: 4, proto: 6, sport: 443 },
  ]);
  assert.equal(toKernelFilters({ port: [443] }).length, 8);
  // Too many dumps: one unfiltered dump instead.
  assert.deepEqual(toKernelFilters({ port: [1, 2, 3] }), [{}]);
});

test('events are kept only if a kernel filter would have returned them', () => {
  const f = toKernelFilters({ port: [443], proto: 'tcp', '4': true });
  const r = (sport: number, dport: number, proto = 6, family: 4 | 6 = 4) => ({ family, proto, orig: { sport, dport } });
  assert.equal(matchesKernelFilters(f, r(50000, 443)), true);
  assert.equal(matchesKernelFilters(f, r(443, 50000)), true);
  assert.equal(matchesKernelFilters(f, r(50000, 80)), false);
  assert.equal(matchesKernelFilters(f, r(50000, 443, 17)), false);
  assert.equal(matchesKernelFilters(f, r(50000, 443, 6, 6)), false);
  assert.equal(matchesKernelFilters([{}], r(1, 2)), true);
});

test('user filters: names and uids, host prefixes; a bad --host is a usage error', () => {
  const f = toFilters({ user: ['www-data', '0'], host: ['10.0.0.0/8'] }, (n) => (n === 'www-data' ? 33 : null));
  assert.equal(f.users!(33, null), true);
  assert.equal(f.users!(0, 'root'), true);
  assert.equal(f.users!(1000, 'bob'), false);
  assert.equal(f.host!('10.1.2.3'), true);
  assert.equal(f.host!('192.168.1.1'), false);
  assert.throws(() => toFilters({ host: ['nope'] }, () => null), (e: unknown) => e instanceof UserError && e.exitCode === 2);
});

test('--host prefixes match through net.BlockList: v4, v6, v4-mapped, brackets, exact hosts', async () => {
  const { hostMatcher } = await import('../../src/core/filters.js');
  const { parseCidr } = await import('../../src/core/addr.js');
  const m = hostMatcher(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7', '::ffff:198.51.100.0/120'].map((t) => parseCidr(t)!));
  for (const a of ['10.1.2.3', '::ffff:10.9.9.9', '2001:db8:1::5', '[2001:db8::1]', '192.0.2.7', '198.51.100.200']) assert.equal(m(a), true, a);
  for (const a of ['11.0.0.1', '2001:db9::1', '192.0.2.8', '198.51.101.1', 'not-an-address', '']) assert.equal(m(a), false, a);
});
