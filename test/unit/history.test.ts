// Usage history, pure parts and the SQLite store: roll-up math, the remote cap, the accounting
// adapter (each byte credited once, across refreshes and retirement), folding minutes → hours →
// days with exact totals, schema versions, and the report's table/CSV/JSON against golden files.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, beforeEach, describe, test } from 'node:test';
import { Accounting } from '../../src/core/accounting.js';
import { localAddressSet } from '../../src/core/flow.js';
import { UserError } from '../../src/errors.js';
import { bar, csvCell, renderReport, reportCsv, reportJson, sparkline } from '../../src/history/format.js';
import { buildReport, groupedSql, parseBy, parseTime, parseWindow, type GroupedRow } from '../../src/history/query.js';
import { bucketStart, capRemotes, EMPTY_IDENT, foldCuts, MinuteRollup, OTHER, type Identity, type RollupRow } from '../../src/history/rollup.js';
import { UsageTap } from '../../src/history/source.js';
import { loadSqlite } from '../../src/history/sqlite.js';
import { processStart, SCHEMA_VERSION, UsageStore } from '../../src/history/store.js';
import { displayWidth } from '../../src/views/format.js';
import { hit, rec } from '../fakes/records.js';
import { resolver, world } from '../fakes/owners.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'history');
function golden(name: string, actual: string): void {
  const file = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
    if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`missing golden file ${file}: run with UPDATE_GOLDEN=1`);
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  assert.equal(actual, readFileSync(file, 'utf8'), `output differs from ${file}`);
}

const curl: Identity = { exe: '/usr/bin/curl', comm: 'curl', uid: 1000, user: 'alice', unit: 'session-3.scope', container: null };
const nginx: Identity = { exe: '/usr/sbin/nginx', comm: 'nginx', uid: 33, user: 'www-data', unit: 'nginx.service', container: null };
const row = (ident: Identity, remote: string, sent: number, recv: number, extra: Partial<RollupRow> = {}): RollupRow => ({
  ident,
  remote,
  proto: 'tcp',
  port: 443,
  dir: 'out',
  sent,
  recv,
  flows: 1,
  ...extra,
});

describe('roll-up', () => {
  test('adds increments per series exactly, and empties on take()', () => {
    const m = new MinuteRollup();
    m.add(row(curl, '192.0.2.1', 100, 5));
    m.add(row(curl, '192.0.2.1', 2 ** 52, 7, { flows: 0 }));
    m.add(row(curl, '192.0.2.2', 1, 1));
    m.add(row(nginx, '192.0.2.1', 0, 0, { flows: 0 })); // nothing: no row
    const rows = m.take();
    assert.equal(rows.length, 2);
    assert.deepEqual(rows.map((r) => [r.remote, r.sent, r.recv, r.flows]), [
      ['192.0.2.1', 2 ** 52 + 100, 12, 1],
      ['192.0.2.2', 1, 1, 1],
    ]);
    assert.equal(m.size, 0);
  });

  test('the remote cap keeps the N busiest remotes and sums the rest into "other", totals unchanged', () => {
    const rows = [row(curl, 'a', 10, 0), row(curl, 'b', 30, 0), row(nginx, 'b', 0, 5), row(curl, 'c', 20, 0), row(curl, 'd', 1, 1), row(nginx, 'd', 3, 0)];
    const { rows: capped, folded } = capRemotes(rows, 2);
    assert.equal(folded, 2);
    const sum = (rs: RollupRow[]) => rs.reduce((n, r) => n + r.sent + r.recv, 0);
    assert.equal(sum(capped), sum(rows));
    const by = (i: Identity, remote: string) => capped.find((r) => r.ident === i && r.remote === remote);
    assert.equal(by(curl, 'b')!.sent, 30);
    assert.equal(by(curl, 'c')!.sent, 20);
    assert.deepEqual([by(curl, OTHER)!.sent, by(curl, OTHER)!.recv, by(curl, OTHER)!.flows], [11, 1, 2]);
    assert.deepEqual([by(nginx, OTHER)!.sent, by(nginx, OTHER)!.flows], [3, 1]);
    assert.equal(capRemotes(rows, 0).rows, rows, '0: no cap');
  });

  test('buckets and fold cuts round down to whole coarser buckets', () => {
    assert.equal(bucketStart(125, 60), 120);
    const now = 10 * 86400 + 5 * 3600 + 17 * 60 + 30;
    const cut = foldCuts(now, { minuteS: 60, keepMinutes: 120, keepHours: 48, keepDays: 3 });
    assert.equal(cut.minutesBefore, 10 * 86400 + 3 * 3600, 'minutes older than 2 h, whole hours only');
    assert.equal(cut.hoursBefore, 8 * 86400);
    assert.equal(cut.daysBefore, 7 * 86400);
  });
});

describe('accounting adapter', () => {
  const HOST = '10.0.0.1';
  let acc: Accounting;
  let m: MinuteRollup;
  let tap: UsageTap;
  beforeEach(() => {
    const w = world();
    w.sockets.set(`${HOST}:40000 93.184.216.34:443`, { inode: 6000, uid: 0, state: 1 });
    w.fds.set(200, [6000]);
    w.procs.set(200, { pid: 200, comm: 'curl', cmdline: 'curl', uid: 0 });
    m = new MinuteRollup();
    tap = new UsageTap((inc) => m.add(inc), { exeOf: (pid) => (pid === 200 ? '/usr/bin/curl' : null), unitOf: () => 'x.service' });
    acc = new Accounting(() => localAddressSet([HOST]), resolver(w), () => w.clock.t, { onRetire: (st) => tap.retire(st) });
  });
  const take = () => m.take();
  const out = (kind: 'new' | 'dump' | 'destroy', o: [number, number] | null, r: [number, number] | null, extra = {}) =>
    rec({ kind, id: 1, src: HOST, sport: 40000, dst: '93.184.216.34', dport: 443, orig: o, reply: r, ...extra });

  test('an outbound flow: deltas per refresh then the rest at DESTROY, each byte once, one flow', () => {
    acc.beginDump();
    acc.endDump();
    tap.prime(acc.flows.values());
    acc.eventBatch([out('new', null, null, { skOrig: hit(6000) })]);
    acc.beginDump();
    acc.dumpBatch([out('dump', [5, 700], [4, 2000])]);
    acc.endDump();
    tap.sample(acc.flows.values());
    const first = take();
    assert.equal(first.length, 1);
    assert.deepEqual(
      { ...first[0], ident: undefined },
      { ident: undefined, remote: '93.184.216.34', proto: 'tcp', port: 443, dir: 'out', sent: 700, recv: 2000, flows: 1 },
    );
    assert.deepEqual(first[0]!.ident, { exe: '/usr/bin/curl', comm: 'curl', uid: 0, user: 'root', unit: 'x.service', container: null });
    tap.sample(acc.flows.values()); // nothing new: nothing credited
    assert.equal(take().length, 0);
    acc.eventBatch([out('destroy', [9, 4268], [7, 9364], { tcpState: 7 })]);
    const last = take();
    assert.deepEqual(last.map((r) => [r.sent, r.recv, r.flows]), [[4268 - 700, 9364 - 2000, 0]]);
    assert.equal(tap.tracked, 0, 'forgotten once retired');
    assert.equal(tap.bytes, 4268 + 9364);
  });

  test('flows open at start count from the first dump only (as top), and are not new flows', () => {
    acc.beginDump();
    acc.dumpBatch([out('dump', [5, 700], [4, 2000], { skOrig: hit(6000) })]);
    acc.endDump();
    tap.prime(acc.flows.values());
    acc.beginDump();
    acc.dumpBatch([out('dump', [6, 900], [5, 2600])]);
    acc.endDump();
    tap.sample(acc.flows.values());
    assert.deepEqual(take().map((r) => [r.sent, r.recv, r.flows]), [[200, 600, 0]]);
  });

  test('forwarded flows go to the "fwd" direction with no identity', () => {
    acc.beginDump();
    acc.endDump();
    tap.prime(acc.flows.values());
    acc.eventBatch([rec({ kind: 'destroy', id: 9, src: '192.0.2.7', sport: 1234, dst: '198.51.100.9', dport: 53, proto: 17, orig: [1, 80], reply: [1, 120] })]);
    const rows = take();
    assert.deepEqual(rows.map((r) => [r.dir, r.ident, r.remote, r.proto, r.port, r.sent, r.recv, r.flows]), [['fwd', EMPTY_IDENT, '198.51.100.9', 'udp', 53, 80, 120, 1]]);
  });
});

describe('store', async () => {
  const Sqlite = await loadSqlite();
  const dir = mkdtempSync(join(tmpdir(), 'ctt-history-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const fresh = (minuteS = 60) => UsageStore.open(Sqlite, join(dir, `u${++n}.db`), { minuteS });

  test('minutes written in one transaction each add up; a second write to the same minute adds', () => {
    const s = fresh();
    s.writeMinute(600, [row(curl, 'a', 10, 1), row(nginx, 'b', 5, 5)]);
    s.writeMinute(600, [row(curl, 'a', 1, 1)]);
    s.writeMinute(660, [row(curl, 'a', 100, 0)]);
    assert.deepEqual(s.totals(), { sent: 116, recv: 7, flows: 4 });
    assert.deepEqual(s.counts(), { minutes: 3, hours: 0, days: 0 });
    s.close();
  });

  test('folding minutes → hours → days keeps every total exact, and retention deletes old days', () => {
    const s = fresh();
    const H = 3600;
    const D = 86400;
    let sent = 0;
    // Three days of minutes, two series, uneven numbers.
    for (let t = 0; t < 3 * D; t += 60 * 7) {
      const a = (t * 7919) % 100_003;
      s.writeMinute(t, [row(curl, 'a', a, t % 13), row(nginx, 'b', t % 997, 3, { flows: 0 })]);
      sent += a + (t % 997);
    }
    const before = s.totals();
    assert.equal(before.sent, sent);
    const win = (from: number, to: number) => s.totals(from, to).sent;
    const day1 = win(D, 2 * D);
    // Keep 2 h of minutes and 24 h of hours at "now" = end of day 3.
    const moved = s.fold(3 * D, { keepMinutes: 120, keepHours: 24, keepDays: 1825 });
    assert.ok(moved.minutes > 0 && moved.hours > 0, JSON.stringify(moved));
    assert.deepEqual(s.totals(), before, 'totals unchanged by folding');
    assert.equal(win(D, 2 * D), day1, 'a whole day sums the same after folding');
    let recent = 0;
    for (let t = 0; t < 3 * D; t += 60 * 7) if (t >= 3 * D - 2 * H) recent++;
    assert.deepEqual(s.counts(), { minutes: recent * 2, hours: 22 * 2, days: 2 * 2 }, 'last 2 h in minutes, the 22 h before in hours, 2 days');
    // Folding again changes nothing.
    s.fold(3 * D, { keepMinutes: 120, keepHours: 24, keepDays: 1825 });
    assert.deepEqual(s.totals(), before);
    // Five years later, with 1 day kept: everything is gone.
    s.fold(5 * 365 * D, { keepMinutes: 120, keepHours: 24, keepDays: 1 });
    assert.deepEqual(s.counts(), { minutes: 0, hours: 0, days: 0 });
    s.close();
  });

  test('schema: an older or newer version is refused with one clear line; a foreign database too; minute length must match', () => {
    const mk = (version: string) => {
      const p = join(dir, `v${version}.db`);
      const db = new Sqlite(p);
      db.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '${version}'); INSERT INTO meta VALUES ('minute_seconds', '60');`);
      db.close();
      return p;
    };
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        assert.ok(e instanceof UserError);
        assert.equal(e.message.split('\n').length, 1);
        return e.code;
      }
      assert.fail('not refused');
    };
    assert.equal(code(() => UsageStore.open(Sqlite, mk('0'))), 'ERR_CTACCT_DB_VERSION');
    assert.equal(code(() => UsageStore.open(Sqlite, mk(String(SCHEMA_VERSION + 1)), { readonly: true })), 'ERR_CTACCT_DB_VERSION');
    const foreign = join(dir, 'foreign.db');
    const db = new Sqlite(foreign);
    db.exec('CREATE TABLE t (x)');
    db.close();
    assert.equal(code(() => UsageStore.open(Sqlite, foreign)), 'ERR_CTACCT_DB_FOREIGN');
    const s = fresh(2);
    const p = s.path;
    s.close();
    assert.equal(code(() => UsageStore.open(Sqlite, p, { minuteS: 60 })), 'ERR_CTACCT_DB_MINUTE');
    assert.equal(code(() => UsageStore.open(Sqlite, join(dir, 'none.db'), { readonly: true })), 'ENOENT');
  });

  test('a window ending now holds the bucket begun this very second; an explicit --until is half-open', () => {
    const s = fresh();
    s.writeMinute(7140, [row(curl, '192.0.2.1', 10, 1)]);
    s.writeMinute(7200, [row(curl, '192.0.2.1', 1000, 100)]); // begun at the floored now
    const sent = (w: ReturnType<typeof parseWindow>) => {
      const { sql } = groupedSql(['process']);
      const rows = s.db.prepare(sql).all(w.from, 24, w.to - w.from, w.from, w.end, w.from, w.end, w.from, w.end) as GroupedRow[];
      return buildReport(rows, ['process'], w, 24, 0).total.sent_bytes;
    };
    for (const until of [undefined, 'now']) {
      const w = parseWindow('1h', until, 7200.4);
      assert.deepEqual([w.from, w.to, w.end], [3600, 7200, 7201]);
      assert.equal(sent(w), 1010, `--until ${until}`);
    }
    const explicit = parseWindow('1970-01-01T01:00Z', '1970-01-01T02:00Z', 7200.4);
    assert.deepEqual([explicit.from, explicit.to, explicit.end], [3600, 7200, 7200]);
    assert.equal(sent(explicit), 10, 'the bucket starting at --until is after the window');
    s.close();
  });

  test('one writer per database: a live claim refuses a second collector, a dead one is taken over', () => {
    const s = fresh();
    s.claimWriter({ pid: 111, start: '500' }, () => true);
    const again = UsageStore.open(Sqlite, s.path);
    assert.throws(
      () => again.claimWriter({ pid: 222, start: '900' }, (pid, start) => pid === 111 && start === '500'),
      (e: unknown) => e instanceof UserError && e.code === 'ERR_CTACCT_DB_BUSY' && /pid 111/.test(e.message),
    );
    again.claimWriter({ pid: 222, start: '900' }, () => false); // 111 is gone (or its pid was reused)
    assert.equal((s.db.prepare("SELECT value FROM meta WHERE key = 'writer'").get() as { value: string }).value, '222 900');
    again.releaseWriter(222);
    assert.equal(s.db.prepare("SELECT value FROM meta WHERE key = 'writer'").get(), undefined);
    assert.match(processStart(process.pid), /^\d+$/);
    assert.equal(processStart(2 ** 30), '');
    again.close();
    s.close();
  });

  test('the grouped query and report over a stored window: totals equal the stored sums', () => {
    const s = fresh();
    s.writeMinute(3600, [row(curl, '192.0.2.1', 1000, 10), row(curl, '192.0.2.2', 500, 0)]);
    s.writeMinute(3780, [row(nginx, '192.0.2.1', 70, 7000, { dir: 'in', port: 80 })]);
    s.writeMinute(7200, [row(curl, '192.0.2.1', 1, 1)]); // outside [3600, 7200)
    for (const by of [['process'], ['exe', 'remote'], ['port'], ['user'], ['unit'], ['container'], ['remote']] as const) {
      const { sql } = groupedSql([...by]);
      const rows = s.db.prepare(sql).all(3600, 24, 3600, 3600, 7200, 3600, 7200, 3600, 7200) as GroupedRow[];
      const r = buildReport(rows, [...by], { from: 3600, to: 7200 }, 24, 0);
      assert.equal(r.total.sent_bytes, 1570, by.join());
      assert.equal(r.total.recv_bytes, 7010);
      assert.equal(r.rows.reduce((n, x) => n + x.total_bytes, 0), 8580);
      assert.equal(r.total.series[0], 1510);
      assert.equal(r.total.series[1], 7070);
    }
    s.close();
  });
});

describe('report', () => {
  const NOW = Date.UTC(2026, 10, 30, 12, 0, 0) / 1000;
  test('--since/--until and --by parse, bad input is one usage error', () => {
    assert.equal(parseTime('1h', NOW, '--since'), NOW - 3600);
    assert.equal(parseTime('30d', NOW, '--since'), NOW - 30 * 86400);
    assert.equal(parseTime('2026-11-01T08:00Z', NOW, '--since'), Date.UTC(2026, 10, 1, 8) / 1000);
    assert.equal(parseTime('2026-11-01', NOW, '--since'), new Date(2026, 10, 1).getTime() / 1000);
    assert.deepEqual(parseBy(['exe,remote']), ['exe', 'remote']);
    for (const f of [() => parseTime('yesterday-ish', NOW, '--since'), () => parseBy(['exe,remote,port']), () => parseBy(['pid']), () => parseWindow('1h', '2h', NOW)])
      assert.throws(f, (e: unknown) => e instanceof UserError && e.exitCode === 2);
  });

  const grouped: GroupedRow[] = [
    { k0_exe: '/usr/bin/curl', k0_comm: null, k0_fwd: 0, k1_remote: '192.0.2.1', slot: 0, sent: 1_500_000, recv: 20_000, flows: 3 },
    { k0_exe: '/usr/bin/curl', k0_comm: null, k0_fwd: 0, k1_remote: '192.0.2.1', slot: 5, sent: 500_000, recv: 0, flows: 1 },
    { k0_exe: '/usr/sbin/nginx', k0_comm: null, k0_fwd: 0, k1_remote: '2001:db8:1234:5678:9abc:def0:1234:5678', slot: 23, sent: 9_000_000_000, recv: 1_000_000, flows: 900 },
    { k0_exe: null, k0_comm: 'evil\u001b[31m', k0_fwd: 0, k1_remote: '198.51.100.7', slot: 12, sent: 7, recv: 0, flows: 1 },
    { k0_exe: null, k0_comm: null, k0_fwd: 1, k1_remote: '203.0.113.5', slot: 12, sent: 300, recv: 300, flows: 1 },
    { k0_exe: null, k0_comm: null, k0_fwd: 0, k1_remote: '=cmd|x', slot: 1, sent: 1, recv: 0, flows: 0 },
  ];
  const report = (top: number) => buildReport(grouped, ['exe', 'remote'], { from: NOW - 86400, to: NOW }, 24, top);

  test('table, CSV and JSON match their golden files; rows ranked by total; the rest summed', () => {
    const r = report(4);
    assert.deepEqual(r.rows.map((x) => x.labels[0]), ['/usr/sbin/nginx', '/usr/bin/curl', '(forwarded)', '[evil\u001b[31m]']);
    assert.deepEqual(r.rest, { groups: 1, sent_bytes: 1, recv_bytes: 0, total_bytes: 1, flows: 0 });
    assert.equal(r.total.total_bytes, 9_000_000_000 + 1_000_000 + 2_020_000 + 7 + 600 + 1);
    for (const w of [80, 132]) {
      const text = renderReport(r, w);
      golden(`exe-remote-${w}.txt`, text);
      for (const l of text.split('\n')) assert.ok(displayWidth(l) <= w, `wider than ${w}: ${l}`);
      assert.ok(!text.includes('\u001b'), 'no escape sequence from a process name reaches the terminal');
    }
    golden('exe-remote.csv', reportCsv(report(0)));
    golden('exe-remote.json', reportJson(r));
  });

  test('sparkline and bar cells', () => {
    assert.equal(sparkline([0, 1, 2, 4, 8]), ' ▂▃▅█');
    assert.equal(bar(0, 4), '    ');
    assert.equal(bar(1, 4), '████');
    assert.equal(bar(0.5, 3), '█▌ ');
    assert.equal(bar(1e-9, 3), '▏  ', 'a non-zero share is never blank');
    assert.equal(csvCell('=SUM(A1)'), "'=SUM(A1)");
    assert.equal(csvCell('a,"b"'), '"a,""b"""');
  });
});
