import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatIPv6, readU64, RECORD_SIZE, decodeRecords } from '../../src/netlink/record.js';

test('64-bit counters are exact up to 2^53 (8 PiB)', () => {
  const b = Buffer.alloc(8);
  const v = view(b);
  b.writeBigUInt64LE(2n ** 53n - 1n, 0);
  assert.equal(readU64(v, 0), Number.MAX_SAFE_INTEGER);
  b.writeBigUInt64LE(2n ** 32n + 5n, 0);
  assert.equal(readU64(v, 0), 4294967301);
  b.writeBigUInt64LE(0xffffffffn, 0);
  assert.equal(readU64(v, 0), 4294967295);
});

test('IPv6 text form follows RFC 5952', () => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000001', '::1'],
    ['00000000000000000000000000000000', '::'],
    ['fd000231000000000000000000000002', 'fd00:231::2'],
    ['20010db8000000010000000000000001', '2001:db8:0:1::1'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['00000000000000000000ffff0a000001', '::ffff:10.0.0.1'],
    ['fe800000000000000211223344556677', 'fe80::211:2233:4455:6677'],
    ['20010db8000100020003000400050006', '2001:db8:1:2:3:4:5:6'],
  ];
  for (const [hex, text] of cases) assert.equal(formatIPv6(Buffer.from(hex, 'hex'), 0), text, hex);
});

test('decodeRecords refuses a batch shorter than its count', () => {
  assert.throws(() => decodeRecords(Buffer.alloc(RECORD_SIZE), 2), RangeError);
});

function view(b: Buffer) {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
