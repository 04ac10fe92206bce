// The exit summary: totals since start per row, unattributed buckets, health, system changes.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { displayWidth } from '../../src/views/format.js';
import { renderSummary } from '../../src/views/summary.js';
import { emptySnapshot, row, snapshot, troubledSnapshot } from '../fakes/snapshots.js';

test('by process at 80 columns', () => {
  assert.equal(
    renderSummary(snapshot('process'), { width: 80, refreshes: 42, elapsedS: 42.2 }),
    `=== Summary ===
Totals since start by process, 42 refreshes over 42s, until
  2025-03-14T09:26:53.000Z
    PID  USER     PROGRAM                                        SENT       RECV
   1544  postgres postgres: 15/main: walsender replicator…   31.7 GiB   96.0 MiB
   2816+ root     nginx: master process /usr/sbin/nginx -…   8.10 GiB    412 MiB
   7702  app      /usr/bin/node --max-old-space-size=4096…   5.42 GiB   2.71 GiB
  15020  backup   rsync --server --sender -vlogDtpre.iLsf…   2.10 GiB   1.30 MiB
  30411  deploy   curl -sS -o /var/cache/apt/archives/par…   1.90 MiB   87.3 MiB
    912  root     sshd: alice [priv]                         5.60 MiB    880 KiB
    540  systemd… /usr/lib/systemd/systemd-resolved          1.20 MiB   2.90 MiB
   1320  dnsmasq  /usr/sbin/dnsmasq -x /run/dnsmasq/dnsma…   2.10 MiB   1.40 MiB
    688  _chrony  /usr/sbin/chronyd -F 1                     1.78 KiB   1.78 KiB
  41877  root     apt-get                                       412 B        0 B
TOTAL                                                        47.3 GiB   3.30 GiB
Unattributed: forwarded sent 3.40 GiB recv 512 MiB (12 open flows); unknown sent
  18.5 KiB recv 5.00 KiB (1 open flow)
Health: 1,342 flows tracked, 58,211 events, 0 lost events, 0 resyncs, 17 without
  counters
Changed on this system: net.netfilter.nf_conntrack_acct=1 (restored on exit)
Bytes are layer-3 (IP headers included), as conntrack counts them.
`,
  );
});

test('without a width (not a TTY): full names and exact byte counts', () => {
  const text = renderSummary(snapshot('port'));
  const lines = text.split('\n');
  assert.equal(lines[0], '=== Summary ===');
  assert.equal(lines[2], 'PROTO/PORT       SENT       RECV      SENT BYTES      RECV BYTES');
  assert.equal(lines[3], 'tcp/5432     31.7 GiB   95.4 MiB     34000000000       100000000');
  assert.equal(lines[9], 'icmp            840 B      840 B             840             840');
  assert.equal(lines[10], 'TOTAL        44.7 GiB   3.27 GiB     48031272664      3515803664');
  assert.ok(text.includes('Unattributed: forwarded sent 3.40 GiB recv 512 MiB (12 open flows); unknown sent 18.5 KiB recv 5.00 KiB (1 open flow)\n'));
  const conn = renderSummary(snapshot('conn'));
  assert.ok(conn.includes('tcp   [2001:db8:85a3::8a2e:370:7334]:443 [2001:db8:4860:4860:0:1234:5678:9abc]:60412 ESTABLISHED 2816+/nginx '));
  assert.ok(conn.includes('CLOSE       unknown '));
});

test('rows are ordered by totals since start, idle rows included', () => {
  const lines = renderSummary(snapshot('process')).split('\n');
  const pids = lines.filter((l) => /^ +\d+\+? /.test(l)).map((l) => Number.parseInt(l, 10));
  assert.deepEqual(pids, [1544, 2816, 7702, 15020, 30411, 912, 540, 1320, 688, 41877]);
  const bySent = renderSummary(snapshot('process'), { sort: 'sent' }).split('\n').filter((l) => /^ +\d+\+? /.test(l));
  assert.match(bySent.at(-1)!, /^ {2}41877 /);
  assert.match(bySent[4]!, /^ {4}912 /, 'sshd sent 5.6 MiB, more than curl');
});

test('health problems are spelled out', () => {
  const text = renderSummary(troubledSnapshot());
  assert.ok(text.includes('Health: 1,342 flows tracked, 58,211 events, 1,377 lost events, 3 resyncs, 17 without counters, 2 malformed'));
  assert.ok(text.includes('Events were lost (netlink overrun)'));
  assert.ok(!text.includes('Changed on this system'));
});

test('every line fits the width; nothing is lost to it but table cells', () => {
  for (const w of [20, 40, 60, 80, 132]) {
    const text = renderSummary(troubledSnapshot(), { width: w, refreshes: 3, elapsedS: 3 });
    for (const l of text.trimEnd().split('\n')) assert.ok(displayWidth(l) <= w, `${w}: ${l}`);
    assert.ok(text.replace(/\n  /g, ' ').includes('1,377 lost events'), `${w}`);
  }
});

test('no rows, one row, no snapshot at all', () => {
  assert.ok(renderSummary(emptySnapshot()).includes('(no traffic since start)'));
  const one = renderSummary(snapshot('process', { rows: [row({ key: '1', pid: 1, comm: 'init', uid: 0, user: 'root', sent_total: 10, recv_total: 20 })] }));
  assert.ok(!one.includes('TOTAL '), 'no total line for a single row');
  assert.equal(renderSummary(null), '=== Summary ===\nNo refresh completed: nothing was measured.\n');
});

test('changes passed by the command win over the snapshot', () => {
  const text = renderSummary(snapshot('process'), { changes: ['nft table inet ctacct (removed on exit)'] });
  assert.ok(text.includes('Changed on this system: nft table inet ctacct (removed on exit)\n'));
});
