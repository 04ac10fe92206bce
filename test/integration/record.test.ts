// `ctacct record` on a real kernel: short connections of known pids over a veth pair between two
// namespaces this test creates. Settlement is forced with `conntrack -D` (DESTROY at once, with the
// final counters) instead of waiting out TIME_WAIT.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPair, rootSkip } from '../helpers/netns.js';
import { moreSnapshots, runCtacct, startCtacct, stopTop } from '../helpers/ctacct.js';
import { JsonLines, startTraffic } from '../helpers/procs.js';
import type { JsonLines as JL } from '../helpers/procs.js';

async function stop(p: JL): Promise<number | null> {
  const exited = new Promise<number | null>((r) => p.child.on('exit', (c) => r(c)));
  p.child.kill('SIGTERM');
  return exited;
}

const flowLines = (p: JL) => p.lines.filter((l) => l.v === 1);

/** COUNT connections to HOST:PORT sending SIZE bytes each; the first is held open 300 ms so the
 *  process is known (attribution of the sub-millisecond ones that follow infers it by endpoint). */
const CLIENT = `const net=require('net');const [host,port,size,count]=process.argv.slice(1);let n=0,sent=0;
const one=()=>{const s=net.connect({host,port:+port},()=>{s.write(Buffer.alloc(+size),()=>n===0?setTimeout(()=>s.end(),300):s.end())});
s.on('data',()=>{});s.on('error',()=>{});s.on('connect',()=>{s.lp=s.localPort});
s.on('close',()=>{sent+=+size;process.stdout.write(JSON.stringify({port:s.lp})+'\\n');if(++n<+count)one();else{process.stdout.write(JSON.stringify({done:true,pid:process.pid,conns:n,sent})+'\\n');process.exit(0)}})};
process.stdout.write(JSON.stringify({ready:true,pid:process.pid})+'\\n');one();setTimeout(()=>process.exit(3),60000);`;

describe('ctacct record', { skip: rootSkip }, () => {
  let pair: Awaited<ReturnType<typeof createPair>>;
  let tmp: string;
  before(async () => {
    pair = await createPair('rec');
    // A firewall engages conntrack with accounting on: several ctacct runs share the namespace
    // without one undoing the set-up under another.
    for (const ns of [pair.a, pair.b]) {
      await ns.engageConntrack();
      await ns.sysctl('net.netfilter.nf_conntrack_acct', '1');
    }
    tmp = mkdtempSync(join(tmpdir(), 'ctt-record-'));
  });
  after(async () => {
    await pair?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('1,000 short connections from two processes: exactly 1,000 lines per side, right pids, bytes equal to top\'s totals', async () => {
    const args = ['--dump-interval', '0.5', '--port', '7200,7202'];
    const recA = startCtacct(pair.a, ['record', ...args]);
    const recB = startCtacct(pair.b, ['record', ...args]);
    const topA = startCtacct(pair.a, ['top', '--json', '--interval', '0.5']);
    const topB = startCtacct(pair.b, ['top', '--json', '--interval', '0.5']);
    await Promise.all([moreSnapshots(topA, 1), moreSnapshots(topB, 1)]);
    await new Promise((r) => setTimeout(r, 500)); // record's initial dump is done too
    // One server process on two ports; each client its own port, so a connection that closes
    // before its socket is seen is still attributed by its endpoint (README: attribution).
    const server = await startTraffic(pair.b, ['tcp-server', '7200', '--reply', '2000']);
    const server2 = await startTraffic(pair.b, ['tcp-server', '7202', '--reply', '2000']);
    const client = (port: string, size: string) => new JsonLines(pair.a.spawn(process.execPath, ['-e', CLIENT, '10.231.0.2', port, size, '500']));
    const [c1, c2] = [client('7200', '3000'), client('7202', '5000')];
    const [d1, d2] = await Promise.all([c1.next((o) => o.done, 60000), c2.next((o) => o.done, 60000)]);
    assert.equal(d1.conns + d2.conns, 1000);
    await Promise.all([moreSnapshots(topA, 3), moreSnapshots(topB, 3)]);
    // Settle: delete the finished entries; each deletion sends a DESTROY with the final counters.
    for (const ns of [pair.a, pair.b]) for (const port of ['7200', '7202']) await ns.exec('conntrack', ['-D', '-p', 'tcp', '--dport', port]).catch(() => '');
    await recA.next(() => flowLines(recA).length >= 1000, 20000);
    await recB.next(() => flowLines(recB).length >= 1000, 20000);
    await Promise.all([moreSnapshots(topA, 1), moreSnapshots(topB, 1)]);
    const [ta, tb] = await Promise.all([stopTop(topA), stopTop(topB)]);
    await Promise.all([stop(recA), stop(recB)]);
    server.child.kill('SIGTERM');
    server2.child.kill('SIGTERM');
    const a = flowLines(recA);
    const b = flowLines(recB);
    assert.equal(a.length, 1000, 'client side');
    assert.equal(b.length, 1000, 'server side');
    const ids = new Set(a.map((l) => `${l.local_port}>${l.remote_port}`));
    assert.equal(ids.size, 1000, 'one line per connection');
    for (const l of [...a, ...b]) {
      assert.equal(l.end_reason, 'destroy');
      assert.equal(l.proto, 'tcp');
      assert.equal(l.time_source, 'ctacct');
      // Timestamps are off in these namespaces: no kernel start, only ctacct's first sighting.
      assert.equal(l.started, null);
      assert.ok(Date.parse(l.ended) >= Date.parse(l.first_seen));
    }
    const byPid = (lines: any[], pid: number) => lines.filter((l) => l.pid === pid);
    const sum = (lines: any[], k: string) => lines.reduce((n, l) => n + l[k], 0);
    const row = (snap: any, pid: number) => snap.rows.find((r: any) => r.pid === pid);
    const dist = JSON.stringify([...a.reduce((m, l) => m.set(l.pid, (m.get(l.pid) ?? 0) + 1), new Map()).entries()]);
    for (const [c, payload, port] of [[d1, 3000, 7200], [d2, 5000, 7202]] as const) {
      const mine = byPid(a, c.pid);
      assert.equal(mine.length, 500, `client ${c.pid}: lines per pid ${dist}`);
      for (const l of mine) {
        assert.deepEqual([l.direction, l.side, l.remote_addr, l.remote_port, l.comm], ['outbound', 'client', '10.231.0.2', port, 'node']);
        assert.ok(l.sent_bytes > payload && l.recv_bytes > 2000, JSON.stringify(l));
        assert.ok(l.sent_packets > 0 && l.recv_packets > 0);
      }
      assert.equal(sum(mine, 'sent_bytes'), row(ta, c.pid).sent_total, 'sent bytes = top\'s sent_total');
      assert.equal(sum(mine, 'recv_bytes'), row(ta, c.pid).recv_total, 'received bytes = top\'s recv_total');
    }
    for (const s of [server, server2]) {
      const srv = byPid(b, s.lines[0].pid);
      assert.equal(srv.length, 500, 'server side: every line is a server\'s');
      assert.equal(sum(srv, 'recv_bytes'), row(tb, s.lines[0].pid).recv_total);
      assert.equal(sum(srv, 'sent_bytes'), row(tb, s.lines[0].pid).sent_total);
    }
    assert.equal(sum(b, 'recv_bytes'), sum(a, 'sent_bytes'), 'both namespaces counted the same bytes');
  });

  test('SIGTERM during a burst loses no completed connection; rotation keeps every line across files', async () => {
    const file = join(tmp, 'flows.jsonl');
    const rec = startCtacct(pair.a, ['record', '--dump-interval', '0.5', '--port', '7201', '--output', file, '--max-size', '16k', '--keep', '1000']);
    // Wait (bounded) until record says it is recording: set-up done, events subscribed.
    for (const t0 = Date.now(); !rec.stderrText.includes('ctacct: recording to '); ) {
      assert.ok(Date.now() - t0 < 20_000, `record not ready in 20 s: ${rec.stderrText}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const server = await startTraffic(pair.b, ['tcp-server', '7201']);
    // The client prints the local port of each connection once it has fully closed.
    const client = new JsonLines(pair.a.spawn(process.execPath, ['-e', CLIENT, '10.231.0.2', '7201', '500', '3000']));
    await client.next(() => client.lines.length >= 300, 30000);
    const completed = new Set(client.lines.filter((l) => l.port).map((l) => l.port as number));
    const code = await stop(rec);
    client.child.kill('SIGKILL');
    server.child.kill('SIGTERM');
    assert.equal(code, 143);
    const names = readdirSync(tmp).filter((f) => f.startsWith('flows.jsonl'));
    assert.ok(names.length >= 3, `rotated into ${names.length} files`);
    const lines: any[] = [];
    for (const n of names) {
      const text = readFileSync(join(tmp, n), 'utf8');
      assert.ok(text === '' || text.endsWith('\n'), `${n} ends with a whole line`);
      for (const l of text.split('\n').filter(Boolean)) lines.push(JSON.parse(l));
    }
    const ports = lines.map((l) => l.local_port);
    assert.equal(new Set(ports).size, ports.length, 'no line twice');
    const missing = [...completed].filter((p) => !ports.includes(p));
    assert.deepEqual(missing, [], `completed before SIGTERM but not logged (${completed.size} completed, ${lines.length} lines; stderr ${rec.stderrText})`);
    // Those not yet settled were written at shutdown as finished (TIME_WAIT): none was lost.
    assert.ok(lines.some((l) => l.end_reason === 'closed'));
    assert.ok(lines.every((l) => ['destroy', 'closed'].includes(l.end_reason)), 'without --include-open no open flow is written');
    // Attribution: a line names the client process or, when its socket was gone before it was
    // seen, nobody — never another process; and one process is one (pid, start time).
    const owned = lines.filter((l) => l.pid !== null);
    assert.deepEqual([...new Set(owned.map((l) => l.pid))], [client.child.pid], 'owned lines name the client, only');
    assert.equal(new Set(owned.map((l) => l.start_time)).size, 1, 'one start time for the one client process');
    assert.equal(typeof owned[0].start_time, 'number');
    assert.ok(rec.stderrText.includes(`wrote ${lines.length} flow lines`), rec.stderrText);
  });

  test('bad input: an unwritable output file — one line, non-zero exit, nothing changed', async () => {
    const rules = await pair.a.nftRuleset();
    for (const [out, re] of [[join(tmp, 'no-such-dir', 'x.jsonl'), /directory does not exist/], [tmp, /is a directory/]] as const) {
      const r = await runCtacct(pair.a, ['record', '--output', out]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^ctacct: cannot write /);
      assert.match(r.stderr, re);
    }
    const bad = await runCtacct(pair.a, ['record', '--max-size', 'lots']);
    assert.equal(bad.code, 2);
    assert.equal(await pair.a.nftRuleset(), rules);
  });
});
