// `ctacct serve` on a real kernel: processes with known names (node run through symlinks named
// ctt-sender / ctt-recv) exchange known traffic over loopback inside a namespace this test creates;
// /metrics is parsed and checked against the kernel's own counters, then a real Prometheus server
// (Debian's `prometheus`) scrapes ctacct every second and its increase() is checked.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { hasCommand, Netns, rootSkip } from '../helpers/netns.js';
import { runCtacct, startCtacct } from '../helpers/ctacct.js';
import { TRAFFIC, JsonLines } from '../helpers/procs.js';
import { parsePromText, sampleValue, type Family } from '../helpers/promtext.js';

const PROM_SKIP = rootSkip || (hasCommand('prometheus') ? false : 'SKIPPED LOUDLY: the `prometheus` binary is missing — install Debian\'s `prometheus` package (.ci/run installs it)');
if (PROM_SKIP && !rootSkip) process.stderr.write(`\n*** serve.test.ts: ${PROM_SKIP} ***\n\n`);

/** GET from inside the namespace (its loopback is not ours): status and body. */
async function get(ns: Netns, url: string): Promise<{ status: number; body: string }> {
  const js = 'fetch(process.argv[1]).then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()}))).catch(e=>{process.stdout.write(JSON.stringify({status:0,body:String(e)}))})';
  return JSON.parse(await ns.exec(process.execPath, ['-e', js, url]));
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 15000, every = 200): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The kernel's layer-3 bytes for TCP flows to `dport` (orig = client → server), from conntrack -L. */
async function kernelBytes(ns: Netns, dport: number): Promise<{ orig: number; reply: number; flows: number }> {
  const out = await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', String(dport)]).catch(() => '');
  const s = { orig: 0, reply: 0, flows: 0 };
  for (const line of out.split('\n')) {
    const b = [...line.matchAll(/bytes=(\d+)/g)].map((m) => Number(m[1]));
    if (b.length === 2) {
      s.orig += b[0]!;
      s.reply += b[1]!;
      s.flows++;
    }
  }
  return s;
}

function within2(actual: number | undefined, expected: number, what: string) {
  assert.ok(actual !== undefined, `${what}: no sample`);
  assert.ok(expected > 0, `${what}: no kernel count`);
  assert.ok(Math.abs(actual - expected) <= expected * 0.02, `${what}: ${actual} vs kernel ${expected}`);
}

/** Starts traffic.mjs under another program name (a symlink to node: comm is the link's name). */
async function startNamed(ns: Netns, bin: string, args: string[]): Promise<JsonLines> {
  const j = new JsonLines(ns.spawn(bin, [TRAFFIC, ...args]));
  await j.next((o) => o.ready || o.error);
  return j;
}

describe('ctacct serve', { skip: rootSkip }, () => {
  let ns: Netns;
  let tmp: string;
  let cgroup: string | null = null;
  before(async () => {
    ns = await Netns.create('srv');
    tmp = mkdtempSync(join(tmpdir(), 'ctt-serve-'));
    for (const name of ['ctt-sender', 'ctt-recv']) symlinkSync(process.execPath, join(tmp, name));
  });
  after(async () => {
    await ns?.destroy();
    if (cgroup && existsSync(cgroup)) {
      try {
        rmdirSync(cgroup);
      } catch {
        /* a process still in it died with the namespace; the kernel frees it shortly */
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  test('per-process counters within 2% of the kernel\'s bytes, only growing, kept after the process exits; Prometheus increase() matches', { skip: PROM_SKIP }, async () => {
    const rulesBefore = await ns.nftRuleset();
    const serve = startCtacct(ns, ['serve', '--dump-interval', '0.5', '--expire', '600']);
    const base = 'http://127.0.0.1:9477';
    // Waited for on its own words, not by polling the port: a poll refused before ctacct listens is
    // a tracked loopback connection with no process at either end (unknown bytes).
    await until('serving', async () => serve.stderrText.includes('serving http://'), 15000, 50);
    assert.equal((await get(ns, `${base}/healthz`)).status, 200);
    const recv = await startNamed(ns, join(tmp, 'ctt-recv'), ['tcp-server', '7100', '--host', '127.0.0.1']);
    // The receiver runs in a cgroup named like a systemd service: its unit becomes a label.
    const unit = `ctt-${randomBytes(3).toString('hex')}.service`;
    const cgRoot = '/sys/fs/cgroup/unified';
    const cgDir = join(existsSync(`${cgRoot}/cgroup.procs`) ? cgRoot : '/sys/fs/cgroup', unit);
    try {
      mkdirSync(cgDir);
      writeFileSync(join(cgDir, 'cgroup.procs'), String(recv.lines[0].pid));
      cgroup = cgDir;
    } catch {
      cgroup = null; // no writable cgroup v2 here: the unit label is then checked as ''
    }
    const wantUnit = cgroup ? unit : '';

    // Prometheus, scraping every second, in the same namespace (loopback only).
    const promDir = join(tmp, 'prom');
    mkdirSync(promDir);
    writeFileSync(
      join(promDir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ctacct\n    static_configs:\n      - targets: ['127.0.0.1:9477']\n`,
    );
    const prom = ns.spawn('prometheus', [`--config.file=${join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(promDir, 'data')}`, '--web.listen-address=127.0.0.1:9090']);
    let promErr = '';
    let promListening = false;
    prom.stderr!.on('data', (d) => {
      promErr = (promErr + d).slice(-2000);
      if (/Start listening for connections|Server is ready to receive web requests/.test(promErr)) promListening = true;
    });
    const pq = async (q: string, time?: number) => {
      const r = await get(ns, `http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(q)}${time ? `&time=${time}` : ''}`);
      if (r.status !== 200) return undefined;
      return JSON.parse(r.body).data.result as { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }[];
    };
    // Its own log line first (polling a port not listening yet leaves refused, unattributable
    // connections in the table), then the readiness endpoint.
    await until('Prometheus listening', async () => promListening, 30000, 50).catch((e) => {
      throw new Error(`${e.message}; prometheus stderr: ${promErr}`);
    });
    await until('Prometheus ready', async () => (await get(ns, 'http://127.0.0.1:9090/-/ready')).status === 200, 30000).catch((e) => {
      throw new Error(`${e.message}; prometheus stderr: ${promErr}`);
    });

    const sel = `{comm="ctt-recv",unit="${wantUnit}"}`;
    const scrape = async () => parsePromText((await get(ns, `${base}/metrics`)).body);
    // Warm-up: the receiver's series exists (a series' first sample is not an increase).
    await startNamed(ns, join(tmp, 'ctt-sender'), ['tcp-client', '127.0.0.1', '7100', '1000']).then((c) => c.next((o) => o.done));
    await until('the receiver series', async () => sampleValue(await scrape(), 'ctacct_process_received_bytes_total', { comm: 'ctt-recv' }));
    await until('3 Prometheus samples', async () => {
      const r = await pq(`count_over_time(ctacct_process_received_bytes_total${sel}[1m])`);
      return r && r.length === 1 && Number(r[0]!.value![1]) >= 3;
    }, 30000);
    const warm = await kernelBytes(ns, 7100);
    const baseline = await until('settled warm-up', async () => {
      const v = sampleValue(await scrape(), 'ctacct_process_received_bytes_total', { comm: 'ctt-recv' });
      return v === warm.orig ? v : undefined;
    });
    await new Promise((r) => setTimeout(r, 2200)); // Prometheus has the baseline too
    const tStart = Date.now() / 1000;

    // Known traffic: 5 × 1 MB from ctt-sender to ctt-recv, while we scrape every 300 ms.
    const history: Map<string, Family>[] = [];
    let scraping = true;
    const scraper = (async () => {
      // At least 4 scrapes even when the transfer is over quickly (bounded: 200 at most).
      for (let i = 0; (scraping || history.length < 4) && i < 200; i++) {
        history.push(await scrape());
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const sender = await startNamed(ns, join(tmp, 'ctt-sender'), ['tcp-client', '127.0.0.1', '7100', '1000000', '--repeat', '5', '--hold-ms', '200']);
    const sent = await sender.next((o) => o.done, 60000);
    assert.equal(sent.sent, 5_000_000);
    await new Promise((r) => setTimeout(r, 500)); // the last FIN/ACKs
    const k = await kernelBytes(ns, 7100);
    assert.equal(k.flows, 6);
    // Dumps every 0.5 s read the finished connections' final counters (they wait in TIME_WAIT).
    // The background scrapes stop first: `final` is then the latest scrape, in time order.
    scraping = false;
    await scraper;
    const final = await until('ctacct caught up with the kernel', async () => {
      const f = await scrape();
      return sampleValue(f, 'ctacct_process_received_bytes_total', { comm: 'ctt-recv' }) === k.orig ? f : undefined;
    });
    history.push(final);

    within2(sampleValue(final, 'ctacct_process_received_bytes_total', { comm: 'ctt-recv', user: 'root', unit: wantUnit }), k.orig, 'ctt-recv received');
    within2(sampleValue(final, 'ctacct_process_sent_bytes_total', { comm: 'ctt-recv' }), k.reply, 'ctt-recv sent');
    within2(sampleValue(final, 'ctacct_process_sent_bytes_total', { comm: 'ctt-sender' }), k.orig, 'ctt-sender sent');
    within2(sampleValue(final, 'ctacct_process_received_bytes_total', { comm: 'ctt-sender' }), k.reply, 'ctt-sender received');
    assert.equal(sampleValue(final, 'ctacct_process_flows_total', { comm: 'ctt-recv' }), 6);
    assert.equal(sampleValue(final, 'ctacct_process_flows_total', { comm: 'ctt-sender' }), 6);
    assert.equal(sampleValue(final, 'ctacct_unattributed_received_bytes_total', { reason: 'unknown' }), 0);
    assert.ok(sampleValue(final, 'ctacct_conntrack_entries')! >= 6);
    assert.ok(sampleValue(final, 'ctacct_conntrack_entries_limit')! > 0);
    // ctacct's own :9477, Prometheus' :9090 and ctt-recv's :7100 listen in this namespace.
    assert.equal(sampleValue(final, 'ctacct_tcp_sockets', { state: 'LISTEN' }), 3);
    assert.equal(sampleValue(final, 'ctacct_event_overruns_total'), 0);
    // Counters only grow, scrape after scrape, for every series.
    const counters = [...final.values()].filter((f) => f.type === 'counter').map((f) => f.name);
    for (let i = 1; i < history.length; i++) {
      for (const name of counters) {
        for (const s of history[i - 1]!.get(name)?.samples ?? []) {
          const now = sampleValue(history[i]!, name, s.labels);
          assert.ok(now !== undefined && now >= s.value, `${name}${JSON.stringify(s.labels)} went from ${s.value} to ${now} (scrape ${i})`);
        }
      }
    }
    assert.ok(history.length >= 4, `${history.length} scrapes`);

    // The processes exit; their series stay (until --expire) with the same values.
    recv.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    const later = await scrape();
    assert.equal(sampleValue(later, 'ctacct_process_received_bytes_total', { comm: 'ctt-recv' }), sampleValue(final, 'ctacct_process_received_bytes_total', { comm: 'ctt-recv' }));

    // Prometheus: wait for 3 more scrapes, then increase() over the traffic window.
    await new Promise((r) => setTimeout(r, 3500));
    const T = Date.now() / 1000;
    const R = Math.ceil(T - tStart) + 1;
    const raw = (await pq(`ctacct_process_received_bytes_total${sel}[${R}s]`, T))!;
    assert.equal(raw.length, 1, JSON.stringify(raw));
    const vals = raw[0]!.values!.map(([t, v]) => [Number(t), Number(v)] as const);
    const delta = vals.at(-1)![1] - vals[0]![1];
    const expected = sampleValue(later, 'ctacct_process_received_bytes_total', { comm: 'ctt-recv' })! - baseline;
    assert.equal(delta, expected, 'Prometheus stored exactly what ctacct served');
    within2(delta, k.orig - warm.orig, 'raw delta vs the kernel\'s bytes of the 5 MB transfer');
    const inc = Number((await pq(`increase(ctacct_process_received_bytes_total${sel}[${R}s])`, T))![0]!.value![1]);
    // increase() extrapolates the sampled span to the window's edges: by at most 1.1 average
    // scrape intervals at each end (docs/serve.md), never below the raw delta.
    const sampled = vals.at(-1)![0] - vals[0]![0];
    const avg = sampled / (vals.length - 1);
    assert.ok(inc >= delta * 0.999, `increase ${inc} < delta ${delta}`);
    assert.ok(inc <= delta * ((sampled + 2.2 * avg) / sampled) * 1.001, `increase ${inc} beyond extrapolation bound for delta ${delta} (sampled ${sampled}s, avg ${avg}s)`);

    prom.kill('SIGTERM');
    const exited = new Promise<number | null>((r) => serve.child.on('exit', (c) => r(c)));
    serve.child.kill('SIGTERM');
    assert.equal(await exited, 143, 'SIGTERM: exit 128+15 after a clean shutdown');
    assert.equal(await ns.nftRuleset(), rulesBefore, 'set-up undone');
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '0');
  });

  test('--label-pid adds the pid label; /healthz; unknown paths 404', async () => {
    const serve = startCtacct(ns, ['serve', '--dump-interval', '0.5', '--label-pid', '--listen', '127.0.0.1:9478']);
    try {
      const base = 'http://127.0.0.1:9478';
      // Waited for on its own words, not by polling the port: a poll refused before ctacct listens is
    // a tracked loopback connection with no process at either end (unknown bytes).
    await until('serving', async () => serve.stderrText.includes('serving http://'), 15000, 50);
    assert.equal((await get(ns, `${base}/healthz`)).status, 200);
      // The server stays up (it is the pid label under test, not how short a process may live).
      const srv = await startNamed(ns, join(tmp, 'ctt-recv'), ['tcp-server', '7101', '--host', '127.0.0.1']);
      await startNamed(ns, join(tmp, 'ctt-sender'), ['tcp-client', '127.0.0.1', '7101', '20000']).then((c) => c.next((o) => o.done));
      const pid = String(srv.lines[0].pid);
      let lastBody = '';
      const f = await until('pid series', async () => {
        lastBody = (await get(ns, `${base}/metrics`)).body;
        const t = parsePromText(lastBody);
        return (sampleValue(t, 'ctacct_process_received_bytes_total', { comm: 'ctt-recv', pid }) ?? 0) >= 20000 ? t : undefined;
      }).catch((e: Error) => {
        throw new Error(`${e.message} (pid ${pid}); last scrape:\n${lastBody.split('\n').filter((l) => /^ctacct_(process|unattributed)_(received|sent)/.test(l)).join('\n')}`);
      });
      assert.equal(f.get('ctacct_process_received_bytes_total')!.samples.every((s) => 'pid' in s.labels), true);
      assert.equal((await get(ns, `${base}/nope`)).status, 404);
    } finally {
      serve.child.kill('SIGTERM');
      await new Promise((r) => serve.child.once('exit', r));
    }
  });

  test('bad input: a busy port, an address no interface has, a listen without an address — one line, non-zero exit, nothing changed', async () => {
    const rules = await ns.nftRuleset();
    const acct = await ns.sysctl('net.netfilter.nf_conntrack_acct');
    const busy = await startNamed(ns, process.execPath, ['tcp-server', '9479', '--host', '127.0.0.1']);
    const cases: [string[], number, RegExp][] = [
      [['serve', '--listen', '127.0.0.1:9479'], 1, /already in use/],
      [['serve', '--listen', '192.0.2.1:9477'], 1, /no interface has this address/],
      [['serve', '--listen', ':9477'], 2, /give an address/],
      [['serve', '--listen', 'nonsense'], 2, /not ADDR:PORT/],
    ];
    for (const [args, code, re] of cases) {
      const r = await runCtacct(ns, args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^ctacct: /);
      assert.match(r.stderr, re);
    }
    busy.child.kill('SIGTERM');
    assert.equal(await ns.nftRuleset(), rules);
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), acct);
  });
});
