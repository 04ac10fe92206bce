// The exporter's pure parts: counters that never go backwards, idle expiry, top-N, the rendered
// text (parsed back with a strict text-format parser) and the size of /metrics with 1,000 processes.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CounterSet, PrometheusView, type ExportModel, type Series } from '../../src/views/prometheus.js';
import { parseCgroup, unitLabel } from '../../src/proc/cgroup.js';
import { parsePromText, sampleValue } from '../helpers/promtext.js';

const L = (comm: string, user = 'root', unit = '') => ({ comm, user, unit });

function model(p: Partial<ExportModel> = {}): ExportModel {
  return {
    version: '0.1.0',
    processLabels: ['comm', 'user', 'unit'],
    process: [],
    remote: null,
    port: null,
    unattributed: [],
    tcpStates: { ESTABLISHED: 3, LISTEN: 2 },
    conntrackEntries: 17,
    conntrackLimit: 262144,
    health: { flowsTracked: 5, flowsWithoutCounters: 1, unattributedFlows: 0, events: 40, overruns: 2, resyncs: 2, inferred: 3, malformed: 0, dumps: 9, lastDumpSeconds: 0.004, seriesExpired: 0 },
    scrapeSeconds: 0.002,
    self: { startTimeSeconds: 1_700_000_000.5 },
    ...p,
  };
}

describe('CounterSet', () => {
  test('adds each source\'s growth to its label set; several pids with one label set are summed', () => {
    const c = new CounterSet(2, 60_000);
    c.feed([
      { source: '10', labels: L('nginx'), totals: [100, 10] },
      { source: '11', labels: L('nginx'), totals: [50, 5] },
      { source: '20', labels: L('curl', 'alice'), totals: [7, 700] },
    ], 0);
    c.feed([
      { source: '10', labels: L('nginx'), totals: [130, 10] },
      { source: '11', labels: L('nginx'), totals: [50, 9] },
      { source: '20', labels: L('curl', 'alice'), totals: [7, 900] },
    ], 1000);
    const byComm = Object.fromEntries(c.list().map((s) => [s.labels.comm, s.values]));
    assert.deepEqual(byComm, { nginx: [180, 19], curl: [7, 900] });
  });

  test('never goes backwards: an upstream decrease re-bases, later growth still counts', () => {
    const c = new CounterSet(2, 60_000);
    c.feed([{ source: 'unknown', labels: { reason: 'unknown' }, totals: [1000, 500] }], 0);
    c.feed([{ source: 'unknown', labels: { reason: 'unknown' }, totals: [400, 100] }], 1); // owner found late
    assert.deepEqual(c.list()[0]!.values, [1000, 500]);
    c.feed([{ source: 'unknown', labels: { reason: 'unknown' }, totals: [450, 130] }], 2);
    assert.deepEqual(c.list()[0]!.values, [1050, 530]);
  });

  test('a process that exits keeps its series until idle for the expiry, then it is dropped and counted', () => {
    const c = new CounterSet(3, 10_000);
    c.feed([{ source: '10', labels: L('job'), totals: [5, 5], adds: [0, 0, 1], gauge: 1 }], 0);
    // The row stays (retired totals) with no growth and no open flow.
    c.feed([{ source: '10', labels: L('job'), totals: [5, 5], gauge: 0 }], 6_000);
    c.feed([{ source: '10', labels: L('job'), totals: [5, 5], gauge: 0 }], 9_000);
    assert.equal(c.size, 1, 'open flows at t=0 and growth until then: not idle yet at 9 s');
    assert.deepEqual(c.list()[0]!.values, [5, 5, 1]);
    c.feed([{ source: '10', labels: L('job'), totals: [5, 5], gauge: 0 }], 10_001);
    assert.equal(c.size, 0);
    assert.equal(c.expired, 1);
  });

  test('an idle series with an open flow is not expired (the gauge keeps it alive)', () => {
    const c = new CounterSet(2, 1000);
    c.feed([{ source: '1', labels: L('sshd'), totals: [1, 1], gauge: 1 }], 0);
    c.feed([{ source: '1', labels: L('sshd'), totals: [1, 1], gauge: 1 }], 5000);
    assert.equal(c.size, 1);
  });

  test('list(top) takes the N label sets with most bytes, ties by labels', () => {
    const c = new CounterSet(2, 60_000);
    c.feed(['a', 'b', 'c', 'd'].map((r, i) => ({ source: r, labels: { remote: r }, totals: [i * 10, i === 0 ? 30 : 0] })), 0);
    assert.deepEqual(c.list(2).map((s) => s.labels.remote), ['a', 'd']);
  });
});

describe('PrometheusView', () => {
  const proc = (labels: Record<string, string>, v: number[], gauge = 0): Series => ({ labels, values: v, gauge, lastChange: 0 });

  test('renders valid text with HELP/TYPE, ctacct_ names, base units and escaped labels', async () => {
    const view = new PrometheusView(['comm', 'user', 'unit'], { remote: true, port: true });
    const text = await view.render(
      model({
        process: [proc(L('nginx', 'www-data', 'nginx.service'), [8000, 1200, 3], 2), proc({ comm: 'we"ird\\na\nme', user: '1001', unit: '' }, [1, 2, 0])],
        remote: [proc({ remote: '2001:db8::1' }, [10, 20])],
        port: [proc({ proto: 'tcp', port: '443' }, [30, 40])],
        unattributed: [proc({ reason: 'unknown' }, [5, 6]), proc({ reason: 'forwarded' }, [0, 0])],
      }),
    );
    const f = parsePromText(text);
    for (const fam of f.values()) {
      assert.ok(fam.help && fam.help.length > 10, `HELP for ${fam.name}`);
      assert.ok(fam.type, `TYPE for ${fam.name}`);
      if (fam.type === 'counter') assert.match(fam.name, /_total$/);
      assert.match(fam.name, /^(ctacct_|process_|nodejs_)/);
    }
    assert.equal(f.get('ctacct_process_sent_bytes_total')!.type, 'counter');
    assert.equal(sampleValue(f, 'ctacct_process_sent_bytes_total', { comm: 'nginx' }), 8000);
    assert.equal(sampleValue(f, 'ctacct_process_received_bytes_total', { comm: 'nginx', user: 'www-data', unit: 'nginx.service' }), 1200);
    assert.equal(sampleValue(f, 'ctacct_process_flows_total', { comm: 'nginx' }), 3);
    assert.equal(sampleValue(f, 'ctacct_process_open_flows', { comm: 'nginx' }), 2);
    assert.equal(sampleValue(f, 'ctacct_process_received_bytes_total', { comm: 'we"ird\\na\nme' }), 2, 'label escapes round-trip');
    assert.equal(sampleValue(f, 'ctacct_remote_received_bytes_total', { remote: '2001:db8::1' }), 20);
    assert.equal(sampleValue(f, 'ctacct_port_sent_bytes_total', { proto: 'tcp', port: '443' }), 30);
    assert.equal(sampleValue(f, 'ctacct_unattributed_received_bytes_total', { reason: 'unknown' }), 6);
    assert.equal(sampleValue(f, 'ctacct_tcp_sockets', { state: 'ESTABLISHED' }), 3);
    assert.equal(sampleValue(f, 'ctacct_tcp_sockets', { state: 'TIME_WAIT' }), 0, 'every state present');
    assert.equal(sampleValue(f, 'ctacct_conntrack_entries'), 17);
    assert.equal(sampleValue(f, 'ctacct_conntrack_entries_limit'), 262144);
    assert.equal(sampleValue(f, 'ctacct_event_overruns_total'), 2);
    assert.equal(sampleValue(f, 'ctacct_resyncs_total'), 2);
    assert.equal(sampleValue(f, 'ctacct_flows_without_counters'), 1);
    assert.equal(sampleValue(f, 'ctacct_scrape_duration_seconds'), 0.002);
    assert.equal(sampleValue(f, 'ctacct_start_time_seconds'), 1_700_000_000.5);
    assert.equal(sampleValue(f, 'ctacct_build_info', { version: '0.1.0' }), 1);
    assert.match(view.contentType, /^text\/plain; version=0\.0\.4/);
  });

  test('process_* series are prom-client\'s defaults: this process\'s real fds, limits, memory and start time', async () => {
    const view = new PrometheusView(['comm']);
    const out = await view.render(model());
    const f = parsePromText(out);
    const fds = readdirSync('/proc/self/fd').length;
    // readdir itself opens one fd while listing; prom-client counts the same way.
    assert.ok(Math.abs(sampleValue(f, 'process_open_fds')! - fds) <= 2, `process_open_fds ${sampleValue(f, 'process_open_fds')} vs ${fds}`);
    const soft = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]);
    assert.equal(sampleValue(f, 'process_max_fds'), soft);
    const startS = Date.now() / 1000 - process.uptime();
    assert.ok(Math.abs(sampleValue(f, 'process_start_time_seconds')! - startS) < 2);
    assert.ok(sampleValue(f, 'process_resident_memory_bytes')! > 10_000_000);
    assert.equal(f.get('process_cpu_seconds_total')!.type, 'counter');
    // One family per name: nothing hand-written duplicates a default series.
    assert.equal(out.match(/^# TYPE process_start_time_seconds /gm)?.length, 1);
  });

  test('values carry no binary float noise', async () => {
    const view = new PrometheusView(['comm']);
    const out = await view.render(model({ scrapeSeconds: 0.1 + 0.2, health: { ...model().health, lastDumpSeconds: 0.0071000000000000004 } }));
    assert.match(out, /^ctacct_scrape_duration_seconds 0\.3$/m);
    assert.match(out, /^ctacct_dump_duration_seconds 0\.0071$/m);
  });

  test('optional families are absent when off; a second render replaces the first one\'s series', async () => {
    const view = new PrometheusView(['comm', 'user', 'unit', 'pid'], { tcpStates: false });
    await view.render(model({ process: [proc({ ...L('a'), pid: '1' }, [1, 1, 1])], tcpStates: null }));
    const f = parsePromText(await view.render(model({ process: [proc({ ...L('b'), pid: '2' }, [2, 2, 2])], tcpStates: null })));
    assert.equal(f.has('ctacct_remote_sent_bytes_total'), false);
    assert.equal(f.has('ctacct_port_sent_bytes_total'), false);
    assert.equal(f.has('ctacct_tcp_sockets'), false);
    assert.deepEqual(f.get('ctacct_process_sent_bytes_total')!.samples.map((s) => s.labels), [{ comm: 'b', user: 'root', unit: '', pid: '2' }]);
  });

  test('size of /metrics with 1,000 distinct processes (benchmark figure for docs/serve.md)', async () => {
    const view = new PrometheusView(['comm', 'user', 'unit']);
    const rows: Series[] = [];
    for (let i = 0; i < 1000; i++) rows.push(proc(L(`worker-${i}`, i % 2 ? 'www-data' : 'app', `app-${i % 50}.service`), [1e9 + i, 2e9 + i, 1000 + i], i % 7));
    const t0 = performance.now();
    const text = await view.render(model({ process: rows }));
    const ms = performance.now() - t0;
    const f = parsePromText(text);
    assert.equal(f.get('ctacct_process_sent_bytes_total')!.samples.length, 1000);
    const bytes = Buffer.byteLength(text);
    // ~4 lines of ~80-100 bytes per process; recorded in docs/serve.md ("Benchmark").
    assert.ok(bytes > 250_000 && bytes < 500_000, `size ${bytes}`);
    console.log(`# /metrics with 1,000 processes: ${bytes} bytes, ${text.split('\n').length} lines, rendered in ${ms.toFixed(1)} ms`);
  });
});

describe('cgroup → unit', () => {
  test('cgroup v2: the innermost systemd unit', () => {
    assert.deepEqual(parseCgroup('0::/system.slice/nginx.service\n'), { cgroup: '/system.slice/nginx.service', unit: 'nginx.service' });
    assert.deepEqual(parseCgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-123.scope\n').unit, 'app-firefox-123.scope');
  });
  test('hybrid hierarchy: the name=systemd line when the v2 one is the root', () => {
    const text = '12:pids:/system.slice/ssh.service\n1:name=systemd:/system.slice/ssh.service\n0::/\n';
    assert.deepEqual(parseCgroup(text), { cgroup: '/system.slice/ssh.service', unit: 'ssh.service' });
  });
  test('no systemd: the cgroup path is the label; the root cgroup gives none', () => {
    assert.deepEqual(parseCgroup('0::/docker/3f2a\n'), { cgroup: '/docker/3f2a', unit: null });
    assert.equal(unitLabel(parseCgroup('0::/docker/3f2a\n')), '/docker/3f2a');
    assert.equal(unitLabel(parseCgroup('9:name=systemd:/\n0::/\n')), '');
    assert.equal(unitLabel(null), '');
  });
});

test('serve: the tracking gauge and dump failures counter', async () => {
  const { trackingMetrics } = await import('../../src/commands/serve.js');
  assert.equal(
    trackingMetrics('not-tracking', 3),
    '# HELP ctacct_conntrack_tracking 1 when conntrack tracks this network namespace (by: who engaged it); 0: no flow can appear\n' +
      '# TYPE ctacct_conntrack_tracking gauge\nctacct_conntrack_tracking{by="none"} 0\n' +
      '# HELP ctacct_dump_failures_total conntrack table dumps that failed (retried with back-off)\n# TYPE ctacct_dump_failures_total counter\nctacct_dump_failures_total 3\n',
  );
  assert.match(trackingMetrics('engaged-by-ctacct', 0), /^ctacct_conntrack_tracking\{by="ctacct"\} 1$/m);
  assert.match(trackingMetrics('engaged-by-others', 0), /^ctacct_conntrack_tracking\{by="others"\} 1$/m);
  assert.doesNotMatch(trackingMetrics('engaged-by-others', 0), /close_tracker/);
  assert.match(trackingMetrics('engaged-by-others', 0, false), /^ctacct_close_tracker 0$/m);
  assert.match(trackingMetrics('engaged-by-others', 0, true), /^ctacct_close_tracker 1$/m);
});
