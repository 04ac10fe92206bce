// The top frame against golden files (colour off) at 60x10, 80x24 and 132x50, plus the
// properties every frame keeps: no line wider than the terminal, no more lines than its height.
// Regenerate after an intended change with: UPDATE_GOLDEN=1 node --import tsx --test test/unit/views-top.test.ts
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GROUP_BYS, type GroupBy, type TopRow, type TopSnapshot } from '../../src/core/model.js';
import type { Drill } from '../../src/views/keys.js';
import { displayWidth, stripAnsi } from '../../src/views/format.js';
import { renderTop, renderWaiting, sortRows, topGeometry, type TopRenderOptions } from '../../src/views/top.js';
import { emptySnapshot, manyRowsSnapshot, row, snapshot, troubledSnapshot } from '../fakes/snapshots.js';

function drillOf(r: TopRow): Drill {
  return { groupBy: 'process', key: r.key, pid: r.pid, comm: r.comm, cmdline: r.cmdline, uid: r.uid, user: r.user, remote: r.remote, port: r.port, proto: r.proto };
}

/** Window rates that differ from the refresh's: 2 s = 1.5×, 10 s = ½, 40 s = ¼ (and sent and recv swapped at 40 s). */
function windowed(): TopSnapshot {
  const s = snapshot('process');
  return {
    ...s,
    rows: s.rows.map((r) => ({
      ...r,
      sent_bps_2s: r.sent_bps * 1.5,
      recv_bps_2s: r.recv_bps * 1.5,
      sent_bps_10s: r.sent_bps / 2,
      recv_bps_10s: r.recv_bps / 2,
      sent_bps_40s: r.recv_bps / 4,
      recv_bps_40s: r.sent_bps / 4,
    })),
  };
}

/** A minute of samples per row: a ramp, a burst, a flat line, silence. */
function sparkHistory(): Map<string, number[]> {
  const h = new Map<string, number[]>();
  h.set('30411', Array.from({ length: 30 }, (_, i) => i * 1000));
  h.set('2816', Array.from({ length: 30 }, (_, i) => (i >= 12 && i < 18 ? 5e6 : 1000)));
  h.set('7702', Array.from({ length: 30 }, () => 2e6));
  h.set('15020', Array.from({ length: 30 }, () => 0));
  h.set('1320', [0, 0, 0, 250, 0, 0, 0, 0, 0, 0]);
  return h;
}

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'top');
const SIZES: [number, number][] = [
  [60, 10],
  [80, 24],
  [132, 50],
];

function opts(width: number, height: number, over: Partial<TopRenderOptions> = {}): TopRenderOptions {
  return { width, height, bits: false, mode: 'rate', sort: 'total', scroll: 0, paused: false, color: false, ...over };
}

function golden(name: string, actual: string): void {
  const file = join(GOLDEN, `${name}.txt`);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
    if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`missing golden file ${file}: run with UPDATE_GOLDEN=1`);
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, `${actual}\n`);
    return;
  }
  assert.equal(`${actual}\n`, readFileSync(file, 'utf8'), `frame differs from ${file}`);
}

function assertFits(frame: string, width: number, height: number): void {
  const lines = frame.split('\n');
  assert.ok(lines.length <= height, `${lines.length} lines > height ${height}`);
  for (const l of lines) assert.ok(displayWidth(stripAnsi(l)) <= width, `line wider than ${width}: ${JSON.stringify(l)}`);
}

for (const g of GROUP_BYS) {
  for (const [w, h] of SIZES) {
    test(`top by ${g} at ${w}x${h} matches its golden file and fits`, () => {
      const frame = renderTop(snapshot(g), opts(w, h));
      assertFits(frame, w, h);
      golden(`${g}-${w}x${h}`, frame);
    });
  }
}

const VARIANTS: [string, TopSnapshot, Partial<TopRenderOptions>][] = [
  ['paused-totals', snapshot('process'), { mode: 'total', paused: true, sort: 'sent' }],
  ['bits', snapshot('process'), { bits: true }],
  ['help', snapshot('process'), { showHelp: true }],
  ['scrolled', manyRowsSnapshot(40), { scroll: 5 }],
  ['troubled', troubledSnapshot(), {}],
  ['empty', emptySnapshot(), {}],
  ['pending-group', snapshot('process'), { pendingGroupBy: 'remote' }],
  // The new screen states: drill-down (and before its data arrives), filter (typing and kept),
  // bits, rate windows, exited processes, sparklines, the configured interval, the cursor.
  ['drill-process', snapshot('conn'), { drill: drillOf(snapshot('process').rows.find((r) => r.pid === 2816)!), intervalS: 1 }],
  ['drill-remote', snapshot('conn'), { drill: { ...drillOf(snapshot('remote').rows[1]!), groupBy: 'remote' } }],
  ['drill-pending', snapshot('process'), { drill: drillOf(snapshot('process').rows.find((r) => r.pid === 2816)!) }],
  ['filter-typing', snapshot('process'), { filter: 'ro', editing: true }],
  ['filter-kept', snapshot('process'), { filter: 'root' }],
  ['filter-none', snapshot('process'), { filter: 'zzz' }],
  ['window-40s', windowed(), { window: '40s', sort: 'sent' }],
  ['bits-window-10s', windowed(), { window: '10s', bits: true }],
  ['exited-sparkline', snapshot('process'), { exited: new Set(['1320', '41877']), history: sparkHistory(), intervalS: 2, selected: 1 }],
];
for (const [name, snap, over] of VARIANTS) {
  for (const [w, h] of SIZES) {
    test(`top ${name} at ${w}x${h} matches its golden file and fits`, () => {
      const frame = renderTop(snap, opts(w, h, over));
      assertFits(frame, w, h);
      golden(`${name}-${w}x${h}`, frame);
    });
  }
}

test('every width from 1 to 200 and height from 1 to 60 fits, in every group-by and mode', () => {
  for (const g of GROUP_BYS) {
    const s = snapshot(g);
    for (let w = 1; w <= 200; w += 7) {
      for (let h = 1; h <= 60; h += 5) {
        for (const mode of ['rate', 'total'] as const) {
          assertFits(renderTop(s, opts(w, h, { mode, bits: w % 2 === 0, showHelp: h % 10 === 1 })), w, h);
        }
      }
    }
  }
});

test('the coloured frame is the plain frame plus SGR codes', () => {
  for (const [w, h] of SIZES) {
    for (const s of [snapshot('process'), troubledSnapshot(), snapshot('conn')]) {
      const plain = renderTop(s, opts(w, h, { paused: true }));
      const colored = renderTop(s, opts(w, h, { paused: true, color: true }));
      assert.match(colored, /\x1b\[/);
      assert.doesNotMatch(plain, /\x1b/);
      assert.deepEqual(
        stripAnsi(colored).split('\n').map((l) => l.trimEnd()),
        plain.split('\n'),
      );
      assertFits(colored, w, h);
    }
  }
});

test('colour marks lost events red and the table header in inverse video', () => {
  const frame = renderTop(troubledSnapshot(), opts(132, 50, { color: true }));
  assert.ok(frame.includes('\x1b[31;1m1,377 lost events\x1b[0m'));
  const header = frame.split('\n').find((l) => l.includes('PROGRAM'))!;
  assert.ok(header.startsWith('\x1b[7m'));
  assert.equal(stripAnsi(header).length, 132, 'inverse header spans the width');
});

test('header shows totals, health, what ctacct changed and its own cost', () => {
  const frame = renderTop(snapshot('process'), opts(132, 50));
  const [title, traffic, health, changed] = frame.split('\n');
  assert.equal(title, 'ctacct top  09:26:53 UTC  by process  sort sent+recv/s  every 1s');
  assert.equal(traffic, 'Sent 7.44 MiB/s  Recv 12.6 MiB/s  since start: sent 47.3 GiB  recv 3.30 GiB');
  assert.equal(health, '1,342 flows · 0 lost events · 0 resyncs · 17 w/o counters · ctacct 0.8% CPU 43.6 MiB');
  assert.equal(changed, 'Changed: net.netfilter.nf_conntrack_acct=1 (restored on exit)');
});

test('explicit changes override the snapshot, and no changes means no line', () => {
  const mine = renderTop(snapshot('process'), opts(132, 50, { changes: ['nft table inet ctacct (removed on exit)'] }));
  assert.ok(mine.includes('Changed: nft table inet ctacct (removed on exit)'));
  const none = renderTop(snapshot('process'), opts(132, 50, { changes: [] }));
  assert.ok(!none.includes('Changed:'));
});

test('--bits shows rates in SI bits, totals stay in bytes', () => {
  const frame = renderTop(snapshot('process'), opts(132, 50, { bits: true }));
  assert.ok(frame.includes('Sent 62.4 Mbit/s  Recv 106 Mbit/s'));
  const curl = frame.split('\n').find((l) => l.includes('30411'))!;
  assert.match(curl, /492 kbit +95\.6 Mbit +1\.90 MiB +87\.3 MiB/);
});

test('process columns: PID with shared marker, user, cmdline when wide, comm when narrow; CPU%/MEM only when sampled', () => {
  const wide = renderTop(snapshot('process'), opts(132, 50)).split('\n');
  const nginx = wide.find((l) => l.includes(' 2816+'))!;
  assert.match(nginx, /^ {3}2816\+ root {5}nginx: master process/);
  assert.match(nginx, /13% 48\.0 MiB$/);
  assert.ok(wide.some((l) => /^ {2}41877  root {5}apt-get /.test(l)), 'no cmdline: comm');
  assert.ok(wide.at(-1)!.includes('+ shared socket'));
  const narrowProgram = renderTop(snapshot('process'), opts(41, 24)).split('\n');
  assert.ok(narrowProgram.some((l) => /^ {3}2816\+ nginx: m/.test(l)), narrowProgram.join('\n'));
  const noUsage = renderTop(snapshot('process', { rows: snapshot('process').rows.map((r) => ({ ...r, cpu_percent: null, rss_bytes: null })) }), opts(132, 50));
  assert.ok(!noUsage.includes('CPU%'));
});

test('narrow terminals drop whole column pairs by priority', () => {
  const header = (w: number, g: GroupBy = 'process', mode: 'rate' | 'total' = 'rate') =>
    renderTop(snapshot(g), opts(w, 24, { mode })).split('\n').find((l) => l.includes('SENT'))!;
  assert.equal(header(60).replace(/ +/g, ' ').trim(), 'PID USER PROGRAM SENT/s RECV/s CONNS');
  assert.equal(header(60, 'process', 'total').replace(/ +/g, ' ').trim(), 'PID USER PROGRAM TOTAL SENT TOTAL RECV CONNS');
  assert.equal(header(80).replace(/ +/g, ' ').trim(), 'PID USER PROGRAM SENT/s RECV/s TOTAL SENT TOTAL RECV CONNS');
  assert.equal(header(132).replace(/ +/g, ' ').trim(), 'PID USER PROGRAM SENT/s RECV/s TOTAL SENT TOTAL RECV CONNS NEW CPU% MEM');
  assert.equal(header(132, 'conn').replace(/ +/g, ' ').trim(), 'PROTO LOCAL REMOTE STATE PID/PROGRAM SENT/s RECV/s TOTAL SENT TOTAL RECV');
  assert.equal(header(80, 'port').replace(/ +/g, ' ').trim(), 'PROTO/PORT SENT/s RECV/s TOTAL SENT TOTAL RECV CONNS NEW');
});

test('sort keys reorder rows; total mode sorts by totals since start', () => {
  const s = snapshot('process');
  const pids = (o: Partial<TopRenderOptions>) => sortRows(s.rows, o.sort ?? 'total', o.mode ?? 'rate').map((r) => r.pid);
  assert.deepEqual(pids({ sort: 'total' }).slice(0, 3), [30411, 2816, 7702]);
  assert.deepEqual(pids({ sort: 'sent' }).slice(0, 3), [2816, 7702, 1544]);
  assert.deepEqual(pids({ sort: 'recv' }).slice(0, 3), [30411, 7702, 2816]);
  assert.deepEqual(pids({ sort: 'conns' }).slice(0, 3), [2816, 7702, 1320]);
  assert.deepEqual(pids({ sort: 'new' }).slice(0, 3), [2816, 7702, 1320]);
  assert.deepEqual(pids({ sort: 'total', mode: 'total' }).slice(0, 3), [1544, 2816, 7702]);
  // Idle rows sort by their totals, after every active row.
  assert.deepEqual(pids({ sort: 'total' }).slice(-3), [15020, 688, 41877]);
  const frame = renderTop(s, opts(80, 24, { sort: 'sent' })).split('\n');
  const first = frame.findIndex((l) => l.includes('PROGRAM')) + 1;
  assert.match(frame[first]!, /^ {3}2816\+/);
});

test('scrolling: offset rows, "more" line, clamped at both ends', () => {
  const s = manyRowsSnapshot(40);
  const o = opts(80, 24);
  const g = topGeometry(s, o);
  assert.deepEqual(g, { visibleRows: 16, totalRows: 40, scroll: 0, maxScroll: 24 });
  const top = renderTop(s, o).split('\n');
  assert.ok(top.includes('↓ 24 more'));
  const mid = renderTop(s, { ...o, scroll: 5 }).split('\n');
  assert.ok(mid.some((l) => /^ {2}10005  app/.test(l)), 'first row shown is the 6th');
  assert.ok(mid.includes('↑ 5 above  ↓ 19 more'));
  const end = renderTop(s, { ...o, scroll: 1000 }).split('\n');
  assert.ok(end.includes('↑ 24 above'));
  assert.ok(end.some((l) => l.startsWith('  10039 ')));
  assert.equal(topGeometry(s, { ...o, scroll: 1000 }).scroll, 24);
  assert.equal(topGeometry(s, { ...o, scroll: -3 }).scroll, 0);
});

test('small heights give up optional lines before the table shrinks below 3 rows', () => {
  const lines = renderTop(snapshot('process'), opts(80, 10)).split('\n');
  assert.equal(lines.length, 10);
  assert.ok(!lines.some((l) => l.startsWith('Changed:')), 'changes go first');
  assert.equal(lines.filter((l) => /^ +\d+\+? /.test(l)).length, 3);
  const tiny = renderTop(snapshot('process'), opts(80, 6)).split('\n');
  assert.equal(tiny.length, 6);
  assert.equal(tiny[0]!.startsWith('ctacct top'), true);
  assert.equal(tiny.at(-1), 'q quit  s/r/t sort  b group  ⏎ open  / filter  B bits  w window  p pause  h help');
});

test('footer shows the unattributed buckets and the keys', () => {
  const lines = renderTop(snapshot('process'), opts(80, 24)).split('\n');
  assert.equal(lines.at(-2), 'forwarded ↑3.40 GiB ↓512 MiB 12 open · unknown ↑18.5 KiB ↓5.00 KiB 1 open');
  assert.ok(lines.at(-1)!.startsWith('q quit  s/r/t sort  b group  ⏎ open  / filter  B bits  w window  p pause  h help'));
  const narrow = renderTop(snapshot('process'), opts(60, 24)).split('\n');
  assert.equal(narrow.at(-2), 'forwarded ↑3.40 GiB ↓512 MiB · unknown ↑18.5 KiB ↓5.00 KiB');
});

test('help overlay replaces the table with the keys', () => {
  const frame = renderTop(snapshot('process'), opts(80, 24, { showHelp: true }));
  assert.ok(frame.includes('rates in bits / bytes per second'));
  assert.ok(frame.includes("open the selected row's connections"));
  assert.ok(frame.includes('pause (stop refreshing; keys still work)'));
  assert.ok(!frame.includes('30411'));
});

test('control characters in process names never reach the terminal', () => {
  const evil = snapshot('process', {
    rows: [row({ key: '666', pid: 666, comm: 'x\x1b[2J', cmdline: 'evil\x1b]0;pwned\x07 --tab\there\nnewline', uid: 0, user: 'root', sent_bps: 5 })],
  });
  const frame = renderTop(evil, opts(132, 24));
  assert.doesNotMatch(frame, /[\x00-\x09\x0b-\x1f]/);
  // PROGRAM: comm, then the arguments; every control character a visible escape.
  assert.ok(frame.includes('x\\x1b[2J --tab\\x09here\\x0anewline'), frame);
  // The drill-down shows the full command line, as harmless.
  const drill = renderTop(snapshot('conn', { rows: [] }), opts(132, 24, { drill: drillOf(evil.rows[0]!) }));
  assert.doesNotMatch(drill, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/);
  assert.ok(drill.includes('▸ evil\\x1b]0;pwned\\x07 --tab\\x09here\\x0anewline'), drill);
});

test('wide characters count as two columns', () => {
  const s = snapshot('process', { rows: [row({ key: '7', pid: 7, comm: '下载器', cmdline: '/opt/下载器/下载器 --目录 /srv/数据/很长的路径名称', uid: 0, user: 'root', sent_bps: 1 })] });
  for (const w of [40, 60, 61, 80]) assertFits(renderTop(s, opts(w, 10)), w, 10);
});

test('a frame before the first refresh says so and fits', () => {
  const f = renderWaiting({ width: 30, height: 2, color: false, intervalS: 1 });
  assert.deepEqual(f.split('\n'), ['ctacct top  waiting for the f…', '(rates need two readings, 1s…']);
});

test('never silent: a NOT TRACKING banner (kept on a small terminal) and a WARNING for failing dumps', () => {
  const s = snapshot('process');
  s.health.tracking = 'not-tracking';
  s.health.notes = [{ code: 'not-tracking', message: 'conntrack does not track in this network namespace and ctacct cannot engage it' }];
  for (const [w, h] of [[132, 50], [60, 10]] as const) {
    const screen = renderTop(s, opts(w, h));
    assert.ok(screen.split('\n')[1]!.startsWith('NOT TRACKING: conntrack does not track'), screen);
    assert.ok(screen.split('\n').length <= h);
  }
  const d = snapshot('process');
  d.health.notes = [{ code: 'dump-failed', message: 'the last 2 conntrack table dump(s) failed (ENOBUFS); retrying, events still counted' }];
  assert.ok(renderTop(d, opts(132, 50)).includes('WARNING: the last 2 conntrack table dump(s) failed (ENOBUFS)'));
  // an escape sequence in a message reaches the screen only as visible text
  d.health.notes = [{ code: 'dump-failed', message: 'x\x1b[2Jy' }];
  assert.ok(!renderTop(d, opts(132, 50)).includes('\x1b[2J'));
});
