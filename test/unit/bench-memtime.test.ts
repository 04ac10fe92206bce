// The pure parts of the memory-over-time bench: the trend it reports, the sums it reads from
// /metrics, and the table it writes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MEMTIME_DEFAULTS, memtimeReport, slope, sumOf, type MemtimeRun, type Sample } from '../../bench/memtime.js';
import { parsePromText } from '../helpers/promtext.js';

const MiB = 2 ** 20;
const flat = (t: number): Sample => ({ t, rss: 200 * MiB, anon: 150 * MiB, file: 50 * MiB, cpu: t * 0.4, entries: 240_000, heapUsed: 60 * MiB, heapTotal: 120 * MiB });

test('slope: MiB per second of the samples from t ≥ from, least squares', () => {
  const ss: Sample[] = [];
  for (let t = 0; t <= 600; t += 10) ss.push({ ...flat(t), rss: (t < 120 ? t : 120 + (t - 120) * 0.5) * MiB });
  assert.equal(slope(ss, (s) => s.rss, 120) / MiB, 0.5);
  assert.equal(slope(ss, (s) => s.rss, 0, 110) / MiB, 1);
  assert.ok(Number.isNaN(slope(ss, (s) => s.heapUsed, 700)), 'no samples: NaN, not 0');
});

test('sumOf: adds the series whose labels include the match', () => {
  const text = [
    '# HELP ctacct_process_sent_bytes_total x',
    '# TYPE ctacct_process_sent_bytes_total counter',
    'ctacct_process_sent_bytes_total{comm="loadgen",user="root",unit="",container=""} 1000',
    'ctacct_process_sent_bytes_total{comm="loadgen2",user="root",unit="",container=""} 7',
    'ctacct_process_sent_bytes_total{comm="loadgen",user="nobody",unit="",container=""} 24',
    '# HELP ctacct_resyncs_total x',
    '# TYPE ctacct_resyncs_total counter',
    'ctacct_resyncs_total 3',
    '',
  ].join('\n');
  const f = parsePromText(text);
  assert.equal(sumOf(f, 'ctacct_process_sent_bytes_total', { comm: 'loadgen' }), 1024);
  assert.equal(sumOf(f, 'ctacct_process_sent_bytes_total'), 1031);
  assert.equal(sumOf(f, 'ctacct_resyncs_total'), 3);
  assert.equal(sumOf(f, 'ctacct_absent_total'), 0);
});

test('memtimeReport: a row per minute, RSS at 2 and 10 min, the trend and the attributed share', () => {
  const samples: Sample[] = [];
  for (let t = 0; t <= 610; t += 10) samples.push(flat(t));
  const run: MemtimeRun = {
    target: 'top',
    command: 'ctacct top --json',
    samples,
    hwm: 210 * MiB,
    cpuLoad: 0.4,
    cpuAll: 244,
    loadS: 600,
    load: { started: 1_200_000, completed: 1_200_000, failed: 0, rate: 2000 },
    server: { conns: 1_200_000, bytes_in: 120_000_000, bytes_out: 1_200_000_000 },
    l3: { inB: 1000, outB: 3000 },
    attributed: { server: 3996, unattributed: 0, lost_events: 0, resyncs: 0 },
    loadavg: { start: '1.00 1.00 1.00 1/100 1', end: '2.00 1.50 1.20 1/100 1' },
  };
  const md = memtimeReport([run], MEMTIME_DEFAULTS);
  const rows = md.split('\n').filter((l) => /^\| \d+ \(\+\d+ s\)/.test(l));
  assert.equal(rows.length, 11, 'minutes 0 to 10');
  assert.match(rows[10]!, /^\| 10 \(\+600 s\) \| 200\.0 \| 150\.0 \| 50\.0 \| 60\.0 \/ 120\.0 \| 60\.0 \|/);
  assert.match(md, /RSS at 2 min 200\.0 MiB, at 10 min 200\.0 MiB \(\+0\.0 MiB\)/);
  assert.match(md, /within 200\.0–200\.0 MiB, trend 0\.00 MiB\/min/);
  assert.match(md, /CPU 40\.0% of one core/);
  assert.match(md, /\*\*99\.90%\*\* of the 4000 layer-3 bytes/);
});
