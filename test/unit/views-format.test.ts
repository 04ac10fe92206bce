// Human units, durations and width-aware text: the numbers never lie (non-zero never shows as 0).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  displayWidth,
  fit,
  formatBytes,
  formatCompact,
  formatCount,
  formatDuration,
  formatPercent,
  formatRate,
  padEnd,
  padStart,
  plural,
  sanitize,
  stripAnsi,
  truncate,
  truncateMiddle,
} from '../../src/views/format.js';

test('bytes: whole bytes below 1 KiB, then 3 significant digits in IEC units', () => {
  const cases: [number, string][] = [
    [0, '0 B'],
    [1, '1 B'],
    [400, '400 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * 1024 + 300, '10.3 KiB'],
    [123 * 1024, '123 KiB'],
    [1023 * 1024, '1023 KiB'],
    [1023.7 * 1024, '1.00 MiB'], // would round to "1024 KiB"
    [5.42 * 1024 ** 3, '5.42 GiB'],
    [2 ** 53, '8.00 PiB'], // a JS number is exact to here (64-bit counters as numbers)
    [2 ** 60, '1.00 EiB'],
  ];
  for (const [n, s] of cases) assert.equal(formatBytes(n), s, `formatBytes(${n})`);
});

test('bytes: absent or invalid is "-", never 0', () => {
  assert.equal(formatBytes(null), '-');
  assert.equal(formatBytes(undefined), '-');
  assert.equal(formatBytes(Number.NaN), '-');
  assert.equal(formatBytes(-5), '-');
});

test('rates: fractional bytes/s keep a decimal, tiny ones say <0.1, never 0', () => {
  assert.equal(formatRate(0, false), '0 B/s');
  assert.equal(formatRate(0.4, false), '0.4 B/s');
  assert.equal(formatRate(0.04, false), '<0.1 B/s');
  assert.equal(formatRate(1.5, false), '1.5 B/s');
  assert.equal(formatRate(9.96, false), '10 B/s');
  assert.equal(formatRate(190.5, false), '191 B/s');
  assert.equal(formatRate(0.4 * 1024, false), '410 B/s'); // 0.4 KiB/s is 410 B/s, not "0 KiB/s"
  assert.equal(formatRate(11.4 * 1024 * 1024, false), '11.4 MiB/s');
  assert.equal(formatRate(11.4 * 1024 * 1024, false, false), '11.4 MiB');
  assert.equal(formatRate(null, false), '-');
});

test('--bits: SI bit rates (1 kbit = 1000 bit)', () => {
  assert.equal(formatRate(0, true), '0 bit/s');
  assert.equal(formatRate(0.05, true), '0.4 bit/s');
  assert.equal(formatRate(1, true), '8 bit/s');
  assert.equal(formatRate(125, true), '1.00 kbit/s');
  assert.equal(formatRate(124.99, true), '1000 bit/s');
  assert.equal(formatRate(124_990, true), '1.00 Mbit/s'); // 999.92 kbit rounds up a unit
  assert.equal(formatRate(125_000_000, true), '1.00 Gbit/s');
  assert.equal(formatRate(1_250_000_000, true, false), '10.0 Gbit');
});

test('counts, compact counts and percentages', () => {
  assert.equal(formatCount(0), '0');
  assert.equal(formatCount(1342), '1,342');
  assert.equal(formatCount(1234567), '1,234,567');
  assert.equal(formatCount(-4200), '-4,200');
  assert.equal(formatCompact(99_999), '99999');
  assert.equal(formatCompact(123_456), '123k');
  assert.equal(formatCompact(999_600), '1.0M');
  assert.equal(formatCompact(12_345_678), '12M');
  assert.equal(formatPercent(0), '0%');
  assert.equal(formatPercent(0.01), '<0.1%');
  assert.equal(formatPercent(0.8), '0.8%');
  assert.equal(formatPercent(12.5), '13%');
  assert.equal(formatPercent(250), '250%');
  assert.equal(formatPercent(null), '-');
  assert.equal(plural(1, 'flow'), '1 flow');
  assert.equal(plural(2, 'refresh', 'refreshes'), '2 refreshes');
  assert.equal(plural(1377, 'lost event'), '1,377 lost events');
});

test('durations', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [0.5, '0.5s'],
    [1, '1s'],
    [2.5, '2.5s'],
    [59, '59s'],
    [65, '1m05s'],
    [3599, '59m59s'],
    [3720, '1h02m'],
    [86400 + 4 * 3600, '1d04h'],
  ];
  for (const [s, want] of cases) assert.equal(formatDuration(s), want, `formatDuration(${s})`);
  assert.equal(formatDuration(-1), '-');
});

test('truncate: cut with an ellipsis, within the width', () => {
  assert.equal(truncate('nginx', 10), 'nginx');
  assert.equal(truncate('nginx', 5), 'nginx');
  assert.equal(truncate('nginx: worker', 8), 'nginx:…'); // no blank before the ellipsis
  assert.equal(truncate('abcdef', 4), 'abc…');
  assert.equal(truncate('abcdef', 1), '…');
  assert.equal(truncate('abcdef', 0), '');
  assert.equal(truncateMiddle('[2001:db8:85a3::8a2e:370:7334]:443', 16), '[2001:d…334]:443');
  assert.equal(displayWidth(truncateMiddle('[2001:db8:85a3::8a2e:370:7334]:443', 16)), 16);
  assert.equal(truncateMiddle('10.0.0.1:80', 20), '10.0.0.1:80');
});

test('fit pads to exactly the width, left or right', () => {
  assert.equal(fit('ab', 5), 'ab   ');
  assert.equal(fit('ab', 5, 'right'), '   ab');
  assert.equal(fit('abcdefg', 5), 'abcd…');
  assert.equal(fit('abcdefgh', 5, 'left', 'middle'), 'ab…gh');
  assert.equal(padEnd('x', 3), 'x  ');
  assert.equal(padStart('x', 3), '  x');
  assert.equal(fit('x', 0), '');
});

test('display width: wide and combining characters', () => {
  assert.equal(displayWidth('abc'), 3);
  assert.equal(displayWidth('下载器'), 6);
  assert.equal(displayWidth('e\u0301'), 1);
  assert.equal(truncate('下载器下载器', 5), '下载…');
  assert.equal(displayWidth(fit('下载器下载器', 5)), 5);
});

test('sanitize replaces control characters; stripAnsi removes SGR/CSI', () => {
  assert.equal(sanitize('a\x1b[2Jb\tc\nd\x7fe\u009bf\u202eg'), 'a\\x1b[2Jb\\x09c\\x0ad\\x7fe\\x9bf\\u202eg');
  assert.equal(stripAnsi('\x1b[1;31mred\x1b[0m \x1b[?25h'), 'red ');
});

test('flows and states tables show a hostile process name as visible escapes', async () => {
  const { renderFlowsTable } = await import('../../src/views/flows.js');
  const { renderStates } = await import('../../src/views/states.js');
  const evil = '\x1b[2J\x1b]0;PWN\x07\u202e';
  const flow = {
    id: 1, family: 'ipv4' as const, proto: 'tcp', state: 'ESTABLISHED', direction: 'outbound' as const,
    orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 80, packets: 1, bytes: 60 },
    reply: { src: '10.0.0.2', dst: '10.0.0.1', sport: 80, dport: 1000, packets: 1, bytes: 60 },
    local: '10.0.0.1:1000', remote: '10.0.0.2:80', sent_bytes: 60, recv_bytes: 60, pid: 42, comm: evil, uid: 0, mark: null, zone: null, age_s: null,
  };
  const table = renderFlowsTable([flow]);
  assert.doesNotMatch(table, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/);
  assert.ok(table.includes('42/\\x1b[2J\\x1b]0;PWN\\x07\\u202e'), table);
  const states = renderStates(
    { source: 'sockets', by: 'process', states: { ESTABLISHED: 1 }, total: 1, groups: [{ key: '42', comm: evil, pid: 42, states: { ESTABLISHED: 1 }, total: 1 }] } as never,
    { width: 80 },
  );
  assert.doesNotMatch(states, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/);
  assert.ok(states.includes('\\x1b[2J\\x1b]0;PWN\\x07\\u202e/42'), states);
});

test('the symbols ctacct prints itself are measured without string-width, and the same as it measures them', async () => {
  const stringWidth = (await import('string-width')).default;
  const { displayWidth: width, truncate: cut } = await import('../../src/views/text.js');
  for (const s of ['10.0.0.1:80 → 10.0.0.2:443', 'a…', 'x · y — z – w ▸ ✓ ✗ × 20°C 5µs', '→'.repeat(30)]) {
    assert.equal(width(s), stringWidth(s), s);
    assert.equal(stringWidth(cut(s, 10)), Math.min(10, stringWidth(s)), s);
  }
  // Anything else still goes through string-width: wide, combining, emoji.
  for (const s of ['字→', 'e\u0301→', '→\ufe0f', '👍→']) assert.equal(width(s), stringWidth(s), s);
});
