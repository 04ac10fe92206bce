// `ctacct collect` and `report` on a real kernel: connections of known size over a veth pair
// between two namespaces this test creates, spread over several (2-3 s) "minutes". The stored
// roll-ups must equal the kernel's own counters (conntrack -L, layer-3 bytes) and `top`'s totals;
// folding must keep them; kill -9 must lose at most the minute under way and count nothing twice.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPair, rootSkip } from '../helpers/netns.js';
import { moreSnapshots, runCtacct, startCtacct, stopTop } from '../helpers/ctacct.js';
import { JsonLines, startTraffic, TRAFFIC } from '../helpers/procs.js';
import { parsePromText } from '../helpers/promtext.js';
import { loadSqlite } from '../../src/history/sqlite.js';
import { UsageStore } from '../../src/history/store.js';

type Pair = Awaited<ReturnType<typeof createPair>>;

/** Kernel counters of the flows to a port: per flow [orig bytes, reply bytes] (conntrack -L). */
async function kernelFlows(pair: Pair, port: number): Promise<{ sport: number; orig: number; reply: number }[]> {
  const text = await pair.a.exec('conntrack', ['-L', '-p', 'tcp', '--dport', String(port)]).catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.includes('bytes='))
    .map((l) => {
      const b = [...l.matchAll(/bytes=(\d+)/g)].map((m) => Number(m[1]));
      return { sport: Number(/sport=(\d+)/.exec(l)![1]), orig: b[0]!, reply: b[1]! };
    });
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 20000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(p: JsonLines, sig: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const exited = new Promise<number | null>((r) => p.child.on('exit', (c, s) => r(c ?? (s ? -1 : null))));
  p.child.kill(sig);
  return exited;
}

const started = (c: JsonLines) => until(() => c.stderrText.includes('collecting into'), `collect to start (${c.stderrText})`);

/** One client connection sending `size` bytes (held open `holdMs` so a dump sees its process). */
async function transfer(pair: Pair, port: number, size: number, holdMs = 0, asNobody = false): Promise<number> {
  const args = ['tcp-client', '10.231.0.2', String(port), String(size), '--hold-ms', String(holdMs)];
  const c = asNobody
    ? new JsonLines(pair.a.spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, TRAFFIC, ...args]))
    : await startTraffic(pair.a, args);
  const done = await c.next((o) => o.done || o.error, 20000);
  assert.ok(done.done, JSON.stringify(done));
  return c.child.pid!;
}

describe('ctacct collect / report', { skip: rootSkip }, () => {
  let pair: Pair;
  let tmp: string;
  let Sqlite: Awaited<ReturnType<typeof loadSqlite>>;
  before(async () => {
    Sqlite = await loadSqlite();
    pair = await createPair('hist');
    for (const ns of [pair.a, pair.b]) {
      await ns.engageConntrack();
      await ns.sysctl('net.netfilter.nf_conntrack_acct', '1');
    }
    tmp = mkdtempSync(join(tmpdir(), 'ctt-history-'));
  });
  after(async () => {
    await pair?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  });

  const read = (path: string) => {
    const s = UsageStore.open(Sqlite, path, { readonly: true });
    try {
      const rows = s.db
        .prepare("SELECT m.t, s.port, s.dir, m.sent, m.recv, m.flows FROM minutes m JOIN series s ON s.id = m.series UNION ALL SELECT d.t, s.port, s.dir, d.sent, d.recv, d.flows FROM days d JOIN series s ON s.id = d.series")
        .all() as { t: number; port: number; dir: string; sent: number; recv: number; flows: number }[];
      return rows;
    } finally {
      s.close();
    }
  };
  const sum = (rows: ReturnType<typeof read>, port: number, dir: string) =>
    rows.filter((r) => r.port === port && r.dir === dir).reduce((a, r) => ({ sent: a.sent + r.sent, recv: a.recv + r.recv, flows: a.flows + r.flows }), { sent: 0, recv: 0, flows: 0 });

  test('known transfers over several minutes: roll-ups equal the kernel counters and top; report --json matches; folding keeps totals', async () => {
    const db = join(tmp, 'a.db');
    const PORT = 7300;
    const server = await startTraffic(pair.b, ['tcp-server', String(PORT), '--reply', '3000']);
    const collect = startCtacct(pair.a, ['collect', '--db', db, '--minute-seconds', '2', '--interval', '1', '--top-remotes', '5', '--listen', '127.0.0.1:9477']);
    const top = startCtacct(pair.a, ['top', '--json', '--interval', '0.5', '--by', 'port']);
    await Promise.all([started(collect), moreSnapshots(top, 1)]);
    const second = await runCtacct(pair.a, ['collect', '--db', db, '--minute-seconds', '2', '--interval', '1']);
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /^ctacct: .*a\.db: another `ctacct collect` \(pid \d+\) is writing to it/);
    assert.equal(second.stderr.trim().split('\n').length, 1);
    const sizes = [20_000, 31_000, 45_000, 70_000];
    for (const size of sizes) {
      await transfer(pair, PORT, size, 1200, true); // as nobody: apart from collect's own (root) series
      await new Promise((r) => setTimeout(r, 2100)); // the next one in another minute
    }
    const kernel = await kernelFlows(pair, PORT);
    assert.equal(kernel.length, sizes.length, 'one conntrack entry per connection (TIME_WAIT)');
    const kOrig = kernel.reduce((n, f) => n + f.orig, 0);
    const kReply = kernel.reduce((n, f) => n + f.reply, 0);
    await moreSnapshots(top, 2);
    // --listen: the same counters as `ctacct serve`, from the collector's own engine.
    const metrics = parsePromText(await pair.a.exec('curl', ['-sf', 'http://127.0.0.1:9477/metrics']));
    const nodeSent = metrics.get('ctacct_process_sent_bytes_total')!.samples.filter((x) => x.labels.user === 'nobody').reduce((n, x) => n + x.value, 0);
    assert.equal(nodeSent, kOrig, '/metrics: bytes sent by the clients');
    const snap = await stopTop(top);
    assert.equal(await stop(collect), 143);
    server.child.kill('SIGTERM');
    assert.match(collect.stderrText, /wrote \d+ minutes? to /);

    const rows = read(db);
    const out = sum(rows, PORT, 'out');
    assert.deepEqual(out, { sent: kOrig, recv: kReply, flows: sizes.length }, 'stored = kernel L3 bytes, one flow each');
    for (const size of sizes) assert.ok(kernel.some((f) => f.orig > size && f.orig < size + 2000), `flow of ${size} B present`);
    const minutes = new Set(rows.filter((r) => r.port === PORT).map((r) => r.t));
    assert.ok(minutes.size >= 3, `spread over ${minutes.size} minutes`);
    // top summed the same bytes for the same processes over the same time.
    const topRow = snap.rows.find((r: any) => r.port === PORT);
    assert.deepEqual([topRow.sent_total, topRow.recv_total], [kOrig, kReply], "top's totals for the port");

    // report --json, as a script would read it: the same totals, per process and per port.
    const rep = await runCtacct(pair.a, ['report', '--db', db, '--since', '3h', '--by', 'port', '--json']);
    assert.equal(rep.code, 0, rep.stderr);
    const j = JSON.parse(rep.stdout);
    const row = j.rows.find((r: any) => r.labels[0] === `tcp/${PORT}`);
    assert.equal(row.sent_bytes, kOrig, 'port row sent');
    assert.equal(row.recv_bytes, kReply);
    assert.equal(row.flows, sizes.length);
    // The rest is the /metrics scrape above (loopback, both ends).
    const scrape = j.rows.find((r: any) => r.labels[0] === 'tcp/9477');
    const rowsSeen = JSON.stringify(j.rows.map((r: any) => [r.labels, r.sent_bytes, r.recv_bytes, r.flows]));
    assert.equal(j.total.total_bytes, kOrig + kReply + (scrape?.total_bytes ?? 0), rowsSeen);
    assert.equal(j.rows.length, scrape ? 2 : 1, rowsSeen);
    // Every row (--top 0): by process each short-lived ctacct run and scraper is a row of its own,
    // and the default 20 would sum the rest into `rest`, outside the rows summed below.
    const byExe = JSON.parse((await runCtacct(pair.a, ['report', '--db', db, '--since', '3h', '--by', 'process,remote', '--json', '--top', '0'])).stdout);
    const byExeSeen = JSON.stringify(byExe.rows.map((r: any) => [r.labels, r.fields.comm, r.sent_bytes, r.recv_bytes, r.flows]));
    assert.equal(byExe.rest, null, byExeSeen);
    // Each client lived across a dump: attributed, with its executable (127.0.0.1: the scrape above).
    assert.deepEqual(
      byExe.rows.filter((r: any) => r.labels[1] !== '127.0.0.1').map((r: any) => [r.labels[1], r.fields.comm, r.fields.user, r.fields.exe, r.sent_bytes, r.flows]),
      [['10.231.0.2', 'node', 'nobody', realpathSync(process.execPath), kOrig, sizes.length]],
    );
    // By process a loopback flow counts on each local end it could attribute (the scraper's and
    // ctacct's): the loopback rows hold at least what the port row counted once.
    const loopSent = byExe.rows.filter((r: any) => r.labels[1] === '127.0.0.1').reduce((n: number, r: any) => n + r.sent_bytes, 0);
    assert.ok(loopSent >= (scrape?.sent_bytes ?? 0), `loopback by process ${loopSent} vs by port ${scrape?.sent_bytes}: ${rowsSeen}`);
    assert.equal(byExe.total.sent_bytes, kOrig + loopSent, byExeSeen);

    // Folding minute → hour → day (a day is 48 min with 2 s minutes): the same totals.
    const w = UsageStore.open(Sqlite, db, { minuteS: 2 });
    const before = w.totals();
    w.fold(Date.now() / 1000 + 3 * 2880, { keepMinutes: 0, keepHours: 0, keepDays: 1825 });
    assert.deepEqual(w.counts().minutes + w.counts().hours, 0, 'everything folded into days');
    assert.deepEqual(w.totals(), before);
    w.closeForReaders();
    assert.deepEqual(sum(read(db), PORT, 'out'), out, 'folded days keep the exact totals');
    const rep2 = JSON.parse((await runCtacct(pair.a, ['report', '--db', db, '--since', '3h', '--by', 'port', '--json'])).stdout);
    assert.equal(rep2.total.total_bytes, j.total.total_bytes);
    assert.deepEqual(rep2.rows.find((r: any) => r.labels[0] === `tcp/${PORT}`), { ...row, series: rep2.rows.find((r: any) => r.labels[0] === `tcp/${PORT}`).series });
  });

  test('kill -9 mid-minute, restart: nothing counted twice, at most the minute under way lost', async () => {
    const db = join(tmp, 'k.db');
    const PORT = 7301;
    const server = await startTraffic(pair.b, ['tcp-server', String(PORT), '--reply', '1000']);
    const args = ['collect', '--db', db, '--minute-seconds', '3', '--interval', '1'];
    const c1 = startCtacct(pair.a, args);
    await started(c1);
    await transfer(pair, PORT, 11_000);
    // A is committed once all its bytes (the kernel's final counters: it is in TIME_WAIT) are written.
    const [a0] = await kernelFlows(pair, PORT);
    await until(() => sum(read(db), PORT, 'out').sent === a0!.orig, 'the first transfer to be written');
    await transfer(pair, PORT, 13_000); // B: in the minute under way when collect dies
    assert.equal(await stop(c1, 'SIGKILL'), -1);
    const afterKill = sum(read(db), PORT, 'out');
    const c2 = startCtacct(pair.a, args);
    await started(c2);
    await new Promise((r) => setTimeout(r, 1500)); // B's entry (TIME_WAIT) is in c2's first dump: history, not new
    await transfer(pair, PORT, 17_000); // C
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(await stop(c2), 143);
    server.child.kill('SIGTERM');
    const kernel = (await kernelFlows(pair, PORT)).sort((x, y) => x.orig - y.orig);
    assert.equal(kernel.length, 3);
    const [A, B, C] = kernel as [typeof kernel[0], typeof kernel[0], typeof kernel[0]];
    assert.ok(A.orig > 11_000 && A.orig < 13_000 && B.orig > 13_000 && C.orig > 17_000, JSON.stringify(kernel));
    const got = sum(read(db), PORT, 'out');
    // A and C exactly; of B, what was committed before the kill (all, part, or none) — never more.
    const bPart = got.sent - A.orig - C.orig;
    assert.ok(bPart >= 0 && bPart <= B.orig, `B counted ${bPart} of ${B.orig} bytes (A ${A.orig}, C ${C.orig}, total ${got.sent})`);
    assert.equal(afterKill.sent, A.orig + bPart, 'what survived the kill is exactly what was committed before it');
    assert.ok(got.flows === 2 || got.flows === 3, `flows ${got.flows}`);
    const bRecv = got.recv - A.reply - C.reply;
    assert.ok(bRecv >= 0 && bRecv <= B.reply, `B received ${bRecv} of ${B.reply} bytes`);
    // The database reopens cleanly after the kill (WAL recovery) and is readable.
    const rep = await runCtacct(pair.a, ['report', '--db', db, '--since', '3h', '--json']);
    assert.equal(rep.code, 0, rep.stderr);
    assert.deepEqual([JSON.parse(rep.stdout).total.sent_bytes, JSON.parse(rep.stdout).total.recv_bytes], [got.sent, got.recv]);
  });

  test('bad input: a database of a newer schema, or not a ctacct one, is refused in one line before anything changes', async () => {
    const newer = join(tmp, 'newer.db');
    const d = new Sqlite(newer);
    d.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '99');");
    d.close();
    chmodSync(newer, 0o644);
    const rules = await pair.a.nftRuleset();
    for (const cmd of [['collect', '--db', newer], ['report', '--db', newer]]) {
      const r = await runCtacct(pair.a, cmd);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /newer ctacct \(schema 99/);
    }
    assert.equal(await pair.a.nftRuleset(), rules, 'nothing changed');
    const bad = await runCtacct(pair.a, ['report', '--db', newer, '--by', 'exe,remote,port']);
    assert.equal(bad.code, 2);
  });
});
