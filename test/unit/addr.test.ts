// --host matching: CIDR parsing and membership for IPv4, IPv6 and v4-mapped addresses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addrBytes, cidrMatcher, inCidr, parseCidr } from '../../src/core/addr.js';
import { encodeAddresses } from '../../src/netlink/source.js';

const c = (s: string) => {
  const r = parseCidr(s);
  assert.ok(r, `parseCidr(${s})`);
  return r;
};

test('parseCidr: host bits cleared, default prefix is the full length', () => {
  assert.deepEqual({ ...c('10.1.2.3/8'), bytes: [...c('10.1.2.3/8').bytes] }, { family: 4, bytes: [10, 0, 0, 0], prefix: 8, text: '10.1.2.3/8' });
  assert.equal(c('192.168.1.7').prefix, 32);
  assert.deepEqual([...c('192.168.1.7/23').bytes], [192, 168, 0, 0]);
  assert.equal(c('fd00:231::1').prefix, 128);
  assert.deepEqual([...c('fd00:231::ff/120').bytes], [0xfd, 0, 2, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(c('0.0.0.0/0').prefix, 0);
  assert.equal(c('::/0').family, 6);
  // A v4-mapped network is the IPv4 network it denotes.
  assert.deepEqual({ family: c('::ffff:10.0.0.0/104').family, prefix: c('::ffff:10.0.0.0/104').prefix }, { family: 4, prefix: 8 });
  assert.equal(c('[::1]').prefix, 128);
});

test('parseCidr rejects what is not an address or prefix', () => {
  for (const bad of ['', '10.0.0.256', '10.0.0.0/33', '::1/129', '10.0.0.0/', '10.0.0.0/x', 'example.com', '1.2.3', 'fe80::1%eth0', '::ffff:10.0.0.0/64', '10.0.0.0/-1']) {
    assert.equal(parseCidr(bad), null, bad);
  }
});

test('inCidr: IPv4', () => {
  assert.equal(inCidr('10.231.0.2', c('10.231.0.0/24')), true);
  assert.equal(inCidr('10.231.1.2', c('10.231.0.0/24')), false);
  assert.equal(inCidr('10.231.1.2', c('10.231.0.0/23')), true);
  assert.equal(inCidr('10.231.2.2', c('10.231.0.0/23')), false);
  assert.equal(inCidr('127.0.0.1', c('127.0.0.1')), true);
  assert.equal(inCidr('127.0.0.2', c('127.0.0.1')), false);
  assert.equal(inCidr('8.8.8.8', c('0.0.0.0/0')), true);
  assert.equal(inCidr('::1', c('0.0.0.0/0')), false);
});

test('inCidr: IPv6 in any text form, and v4-mapped against IPv4 networks', () => {
  assert.equal(inCidr('fd00:231::2', c('fd00:231::/64')), true);
  assert.equal(inCidr('FD00:0231:0000:0000:0000:0000:0000:0002', c('fd00:231::/64')), true);
  assert.equal(inCidr('fd00:232::2', c('fd00:231::/64')), false);
  assert.equal(inCidr('fd00:231::2', c('fd00:230::/31')), true);
  assert.equal(inCidr('::1', c('::1')), true);
  assert.equal(inCidr('::', c('::1')), false);
  assert.equal(inCidr('::ffff:127.0.0.1', c('127.0.0.0/8')), true);
  assert.equal(inCidr('::ffff:7f00:1', c('127.0.0.0/8')), true);
  assert.equal(inCidr('127.0.0.1', c('::ffff:127.0.0.1')), true);
  assert.equal(inCidr('::ffff:10.0.0.1', c('127.0.0.0/8')), false);
  assert.equal(inCidr('::ffff:127.0.0.1', c('::/0')), false); // v4-mapped is IPv4 traffic
  assert.equal(inCidr('not-an-address', c('::/0')), false);
});

test('addrBytes and cidrMatcher', () => {
  assert.deepEqual(addrBytes('::ffff:1.2.3.4'), { family: 4, bytes: Uint8Array.from([1, 2, 3, 4]) });
  assert.deepEqual([...addrBytes('2001:db8::8:800:200c:417a')!.bytes], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0x08, 0x08, 0, 0x20, 0x0c, 0x41, 0x7a]);
  const m = cidrMatcher([c('10.0.0.0/8'), c('fd00::/8')]);
  assert.deepEqual(['10.9.9.9', 'fd12::1', '11.0.0.1', '::1', '10.9.9.9'].map(m), [true, true, false, false, true]);
  assert.equal(cidrMatcher([])('10.0.0.1'), false);
});

test('writeAddr16: dotted IPv4 without allocation, IPv6 and bad text through the full parser', async () => {
  const { writeAddr16 } = await import('../../src/netlink/lookup.js');
  const b = Buffer.alloc(16, 0xaa);
  assert.equal(writeAddr16('10.231.0.2', 4, b), true);
  assert.deepEqual([...b], [10, 231, 0, 2, ...Array(12).fill(0)]);
  assert.equal(writeAddr16('255.255.255.255', 4, b), true);
  assert.deepEqual([...b.subarray(0, 4)], [255, 255, 255, 255]);
  for (const bad of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '', '1..2.3', 'a.b.c.d', '1.2.3.4 ']) assert.equal(writeAddr16(bad, 4, b), false, bad);
  assert.equal(writeAddr16('fd00:231::2', 6, b), true);
  assert.deepEqual([...b], [0xfd, 0, 0x02, 0x31, ...Array(11).fill(0), 2]);
  assert.equal(writeAddr16('::1', 6, b), true);
  assert.equal(b[15], 1);
});

test("addresses for the reader thread: 17 bytes each in localAddresses()'s format; none on a doubt", () => {
  const b = encodeAddresses(['10.0.0.5', 'fd00::1', '::ffff:192.0.2.1'])!;
  assert.equal(b.length, 51);
  assert.deepEqual([...b.subarray(0, 5)], [4, 10, 0, 0, 5]);
  assert.ok(b.subarray(5, 17).every((x) => x === 0));
  assert.deepEqual([b[17], b[18], b[19], b[33]], [6, 0xfd, 0, 1]);
  assert.deepEqual([...b.subarray(34, 39)], [4, 192, 0, 2, 1], 'v4-mapped: the IPv4 address');
  assert.equal(encodeAddresses(['10.0.0.5', 'eth0']), null);
  assert.equal(encodeAddresses([])!.length, 0);
});
