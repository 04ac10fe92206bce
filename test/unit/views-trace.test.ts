// Line outputs for scripts: `--trace` in the format of `nethogs -t`, and `--json` lines.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { renderJsonLine } from '../../src/views/json.js';
import { bucketRate, formatG, renderTrace } from '../../src/views/trace.js';
import { row, snapshot } from '../fakes/snapshots.js';

describe('--trace (nethogs -t format)', () => {
  test('formatG prints like C++ iostream defaults (%g, 6 digits)', () => {
    const cases: [number, string][] = [
      [0, '0'],
      [2.48867, '2.48867'], // seen from `nethogs -t` on this machine
      [63.0488, '63.0488'],
      [1, '1'],
      [0.5, '0.5'],
      [1234567, '1.23457e+06'],
      [999999.4, '999999'],
      [999999.5, '1e+06'],
      [0.0001, '0.0001'],
      [0.00001234, '1.234e-05'],
      [3.14159265, '3.14159'],
      [Number.POSITIVE_INFINITY, 'inf'],
    ];
    for (const [x, s] of cases) assert.equal(formatG(x), s, `formatG(${x})`);
  });

  test('a refresh: blank line, "Refreshing:", name/pid/uid TAB KB/s TAB KB/s, then the unattributed buckets', () => {
    assert.equal(
      renderTrace(snapshot('process')),
      [
        '',
        'Refreshing:',
        'curl/30411/1000\t60\t11673.6',
        'nginx/2816/0\t4300.8\t128',
        'node/7702/1001\t2355.2\t1126.4',
        'postgres/1544/114\t900\t12',
        'systemd-resolve/540/990\t1.5\t2.25',
        'sshd/912/0\t3.2\t0.410156',
        'dnsmasq/1320/107\t0.244141\t0.186035',
        'rsync/15020/34\t0\t0',
        'chronyd/688/105\t0\t0',
        'apt-get/41877/0\t0\t0',
        'unknown/0/0\t0\t0',
        'forwarded/0/0\t0\t0',
        '',
      ].join('\n'),
    );
  });

  test('units: KB/s with KB = 1024 bytes, as nethogs', () => {
    const s = snapshot('process', { rows: [row({ key: '5', pid: 5, comm: 'x', uid: 7, sent_bps: 1024, recv_bps: 512 })] });
    assert.ok(renderTrace(s).includes('x/5/7\t1\t0.5\n'));
  });

  test('sort: nethogs sorts by received (default) or sent (-s)', () => {
    const names = (sort: 'recv' | 'sent') =>
      renderTrace(snapshot('process'), { sort })
        .split('\n')
        .slice(2, 5)
        .map((l) => l.split('/')[0]);
    assert.deepEqual(names('recv'), ['curl', 'node', 'nginx']);
    assert.deepEqual(names('sent'), ['nginx', 'node', 'postgres']);
  });

  test('cmdline (like nethogs -l) and total mode (like nethogs -v 1: KB since start)', () => {
    const s = snapshot('process', { rows: [row({ key: '5', pid: 5, comm: 'sshd', cmdline: 'sshd: alice [priv]', uid: 0, sent_total: 2048, recv_total: 3072 })] });
    assert.ok(renderTrace(s, { cmdline: true }).includes('\nsshd sshd: alice [priv]/5/0\t0\t0\n'));
    assert.ok(renderTrace(s, { mode: 'total' }).includes('\nsshd/5/0\t2\t3\n'));
    assert.ok(renderTrace(s, { mode: 'total' }).includes('\nunknown/0/0\t18.5\t5\n'));
  });

  test('other group-bys print the row key instead of name/pid/uid', () => {
    const lines = renderTrace(snapshot('port')).split('\n');
    assert.equal(lines[2], 'tcp/443\t4362.24\t11776');
    assert.ok(lines.includes('icmp\t0\t0'));
    assert.ok(lines.includes('unknown\t0\t0'));
    assert.ok(renderTrace(snapshot('conn')).includes('\ntcp 10.20.0.5:51514 151.101.2.132:443\t60\t11673.6\n'));
  });

  test('bucket rates: their own fields if present, else growth since the previous refresh', () => {
    const before = snapshot('process');
    const now = snapshot('process', {
      interval_s: 2,
      unattributed: {
        forwarded: { sent_total: before.unattributed.forwarded.sent_total + 4096, recv_total: before.unattributed.forwarded.recv_total + 2048, flows: 12 },
        unknown: { sent_total: 18944, recv_total: 5120, flows: 1 },
      },
    });
    const text = renderTrace(now, { previous: before });
    assert.ok(text.endsWith('unknown/0/0\t0\t0\nforwarded/0/0\t2\t1\n'), text);
    assert.deepEqual(bucketRate({ sent_total: 9, recv_total: 9, flows: 0, sent_bps: 100, recv_bps: 50 } as never, undefined, 1), { sent: 100, recv: 50 });
    assert.deepEqual(bucketRate({ sent_total: 9, recv_total: 9, flows: 0 }, undefined, 1), { sent: 0, recv: 0 });
  });

  test('names cannot break the line format', () => {
    const s = snapshot('process', { rows: [row({ key: '5', pid: 5, comm: 'a\tb\nc', uid: 0 })] });
    assert.ok(renderTrace(s).includes('\na\\x09b\\x0ac/5/0\t0\t0\n'));
  });
});

describe('--json lines', () => {
  test('one line, ending in a newline, that parses back to the snapshot', () => {
    const s = snapshot('process');
    const line = renderJsonLine(s);
    assert.equal(line.endsWith('\n'), true);
    assert.equal(line.slice(0, -1).includes('\n'), false);
    // The snapshot, plus the rates under their unit-named fields (all rates rounded to whole bytes/s).
    const round = (r: Record<string, unknown>) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, /_bps(_|$)/.test(k) && typeof v === 'number' ? Math.round(v) : v]));
    const rows = s.rows.map((r) => ({ ...round({ ...r }), sent_bytes_per_s: Math.round(r.sent_bps), recv_bytes_per_s: Math.round(r.recv_bps) }));
    assert.deepEqual(JSON.parse(line), { ...s, rows: JSON.parse(JSON.stringify(rows)) });
  });

  test('rates are whole bytes per second; *_bytes_per_s added, *_bps kept as aliases with the same value', () => {
    const s = snapshot('process', {
      rows: [{ ...row({ key: '5', pid: 5, comm: 'x', sent_bps: 89435.81739395463, recv_bps: 0.4 }), sent_bps_2s: 12.5, recv_peak_bps: 99.49 }],
    });
    const r = JSON.parse(renderJsonLine(s)).rows[0];
    assert.equal(r.sent_bytes_per_s, 89436);
    assert.equal(r.recv_bytes_per_s, 0);
    assert.equal(r.sent_bps, 89436);
    assert.equal(r.recv_bps, 0);
    assert.equal(r.sent_bps_2s, 13);
    assert.equal(r.recv_peak_bps, 99);
  });

  test('keys in the documented order; added fields after them', () => {
    const s = snapshot('process');
    const shuffled = {
      self: s.self,
      health: { changes: ['x'], resyncs: 0, lost_events: 0, flows_tracked: 1, events: 2, flows_without_counters: 0 },
      // Every row key in reverse order, the added ones first.
      rows: [{ ...row({ key: '1', pid: 1, comm: 'init' }), cpu_percent: 0.1, shared: false }].map((r) =>
        Object.fromEntries(Object.entries(r).reverse()),
      ),
      unattributed: { unknown: s.unattributed.unknown, forwarded: { flows: 1, recv_total: 2, sent_total: 3 } },
      group_by: s.group_by,
      interval_s: 1,
      time: s.time,
    };
    const o = JSON.parse(renderJsonLine(shuffled as never));
    assert.deepEqual(Object.keys(o), ['time', 'interval_s', 'group_by', 'rows', 'unattributed', 'health', 'self']);
    assert.deepEqual(Object.keys(o.rows[0]), [
      'key', 'pid', 'comm', 'cmdline', 'uid', 'user', 'remote', 'port', 'proto',
      'sent_bytes', 'recv_bytes', 'sent_bps', 'recv_bps', 'sent_total', 'recv_total',
      'flows', 'new_flows', 'closed_flows', 'sent_bytes_per_s', 'recv_bytes_per_s', 'shared', 'cpu_percent', // added fields keep their own order
    ]);
    assert.deepEqual(Object.keys(o.unattributed), ['forwarded', 'unknown']);
    assert.deepEqual(Object.keys(o.unattributed.forwarded), ['sent_total', 'recv_total', 'flows']);
    assert.deepEqual(Object.keys(o.health), ['flows_tracked', 'events', 'lost_events', 'resyncs', 'flows_without_counters', 'changes']);
    assert.deepEqual(Object.keys(o.self), ['cpu_percent', 'rss_bytes']);
  });

  test('newlines inside strings stay escaped; nulls stay null', () => {
    const s = snapshot('process', { rows: [row({ key: '9', pid: 9, comm: 'a\nb', cmdline: null })] });
    const line = renderJsonLine(s);
    assert.equal(line.split('\n').length, 2);
    assert.ok(line.includes('"comm":"a\\nb","cmdline":null'));
  });

  test('the exact line for a small snapshot', () => {
    const s = snapshot('remote', {
      rows: [row({ key: '203.0.113.45', remote: '203.0.113.45', sent_bytes: 10, recv_bytes: 20, sent_bps: 10, recv_bps: 20, sent_total: 100, recv_total: 200, flows: 1, new_flows: 1 })],
      health: { flows_tracked: 3, events: 4, lost_events: 0, resyncs: 0, flows_without_counters: 0 },
    });
    assert.equal(
      renderJsonLine(s),
      '{"time":"2025-03-14T09:26:53.000Z","interval_s":1,"group_by":"remote",' +
        '"rows":[{"key":"203.0.113.45","pid":null,"comm":null,"cmdline":null,"uid":null,"user":null,"remote":"203.0.113.45","port":null,"proto":null,' +
        '"sent_bytes":10,"recv_bytes":20,"sent_bps":10,"recv_bps":20,"sent_total":100,"recv_total":200,"flows":1,"new_flows":1,"closed_flows":0,"sent_bytes_per_s":10,"recv_bytes_per_s":20}],' +
        '"unattributed":{"forwarded":{"sent_total":3650722201,"recv_total":536870912,"flows":12},"unknown":{"sent_total":18944,"recv_total":5120,"flows":1}},' +
        '"health":{"flows_tracked":3,"events":4,"lost_events":0,"resyncs":0,"flows_without_counters":0},' +
        '"self":{"cpu_percent":0.8,"rss_bytes":45718528}}\n',
    );
  });
});
