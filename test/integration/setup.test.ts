// Set-up and undo on a real kernel: each case in its own fresh network namespace, with ctacct's
// set-up running in a child process inside it (test/helpers/setup-runner.ts).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SetupReport } from '../../src/system/setup.js';
import { Netns, rootSkip } from '../helpers/netns.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUNNER = join(ROOT, 'test', 'helpers', 'setup-runner.ts');
const COST_NOTE_START = 'conntrack engaged by ctacct (nft table inet ctacct)';

interface Runner {
  child: ChildProcess;
  report: SetupReport;
  out(): string;
  err(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startRunner(ns: Netns, stateDir: string, extra: string[] = []): Promise<Runner> {
  const child = ns.spawn('node', ['--import', 'tsx', RUNNER, '--state-dir', stateDir, ...extra], { cwd: ROOT });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, signal) => res({ code, signal })),
  );
  const report = await new Promise<SetupReport>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`runner not ready in 20 s: ${out} ${err}`)), 20_000);
    const check = () => {
      const m = /^ready (.*)$/m.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        res(JSON.parse(m[1]) as SetupReport);
      }
    };
    child.stdout?.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      rej(new Error(`runner exited before ready: ${out} ${err}`));
    });
  });
  return { child, report, out: () => out, err: () => err, exited };
}

interface Snapshot {
  ruleset: string;
  acct: string;
  events: string;
  timestamp: string;
}

async function snapshot(ns: Netns): Promise<Snapshot> {
  return {
    ruleset: await ns.nftRuleset(),
    acct: await ns.sysctl('net.netfilter.nf_conntrack_acct'),
    events: await ns.sysctl('net.netfilter.nf_conntrack_events'),
    timestamp: await ns.sysctl('net.netfilter.nf_conntrack_timestamp'),
  };
}

/** A fresh namespace plus a private state dir, both removed whatever happens. */
async function withNs(tag: string, fn: (ns: Netns, stateDir: string) => Promise<void>): Promise<void> {
  const ns = await Netns.create(tag);
  const stateDir = mkdtempSync(join(tmpdir(), 'ctacct-state-'));
  try {
    await fn(ns, stateDir);
  } finally {
    await ns.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

const CT_TABLE = /table inet ctacct \{\n\tcomment "ctacct pid=\d+ start=\d+ acct=0"\n\tchain track \{\n\t\ttype filter hook output priority 300; policy accept;\n\t\tct state new\n\t\}\n\}\n/;

// N payload bytes over loopback TCP inside the namespace; the server closes after reading all.
const TRANSFER = `
const net = require('node:net');
const N = Number(process.argv[1]), PORT = Number(process.argv[2]);
const srv = net.createServer((s) => { let got = 0; s.on('data', (d) => { got += d.length; }); s.on('end', () => { s.end(); srv.close(); if (got !== N) process.exit(3); }); });
srv.listen(PORT, '127.0.0.1', () => { const c = net.connect(PORT, '127.0.0.1', () => c.end(Buffer.alloc(N, 120))); c.resume(); });
`;

test('fresh namespace: acct on + table while running; a loopback transfer gets exact counters; undo leaves it as found', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    assert.equal(before.acct, '0');
    assert.equal(before.ruleset, '');
    const r = await startRunner(ns, stateDir);
    assert.deepEqual(r.report.changes, [
      { what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 on exit)' },
      { what: 'nft table inet ctacct', detail: 'engages conntrack in this network namespace; removed on exit' },
    ]);
    assert.equal(r.report.engagedBy, 'ctacct');
    assert.equal(r.report.accounting, true);
    assert.ok(r.report.notes.some((n) => n.startsWith(COST_NOTE_START)));
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
    assert.match(await ns.nftRuleset(), CT_TABLE);
    assert.equal(readdirSync(stateDir).length, 1);

    const N = 100_000;
    await ns.exec('node', ['-e', TRANSFER, String(N), '5201']);
    const line = (await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '5201', '-o', 'extended'])).trim();
    const m = /packets=(\d+) bytes=(\d+) .*packets=(\d+) bytes=(\d+)/.exec(line);
    assert.ok(m, line);
    const [op, ob, rp, rb] = m.slice(1).map(Number) as [number, number, number, number];
    // IPv4 TCP layer-3 bytes: payload + 52 per skb + 8 for the SYN's options (docs/decisions.md)
    assert.equal(ob, N + 52 * op + 8);
    assert.equal(rb, 52 * rp + 8);

    r.child.stdin?.write('quit\n');
    await new Promise<void>((res) => r.child.stdout?.on('data', () => /^done$/m.test(r.out()) && res()));
    r.child.stdin?.end();
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    assert.deepEqual(readdirSync(stateDir), []);
  });
});

test('a firewall already engages conntrack: ctacct adds no table, only turns acct on and back off', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    await ns.engageConntrack();
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir);
    assert.deepEqual(r.report, {
      changes: [{ what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 on exit)' }],
      notes: ['accounting was off: flows that began before now have no counters (shown as null)'],
      accounting: true,
      engaged: true,
      engagedBy: 'existing',
      acctWasOff: true,
    });
    assert.equal(await ns.nftRuleset(), before.ruleset);
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
  });
});

for (const [sig, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
  ['SIGHUP', 129],
] as const) {
  test(`${sig}: the runner undoes everything and exits ${code}`, { skip: rootSkip }, async () => {
    await withNs('su', async (ns, stateDir) => {
      const before = await snapshot(ns);
      const r = await startRunner(ns, stateDir);
      assert.equal(r.report.engagedBy, 'ctacct');
      assert.match(await ns.nftRuleset(), CT_TABLE);
      r.child.kill(sig);
      assert.deepEqual(await r.exited, { code, signal: null });
      assert.deepEqual(await snapshot(ns), before);
      assert.deepEqual(readdirSync(stateDir), []);
    });
  });
}

test('an uncaught error: one line on stderr, exit 1, namespace as found', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir, ['--crash']);
    assert.deepEqual(await r.exited, { code: 1, signal: null });
    assert.equal(r.err(), 'ctacct: runner crashed on purpose (internal error)\n');
    assert.deepEqual(await snapshot(ns), before);
    assert.deepEqual(readdirSync(stateDir), []);
  });
});

test('after a SIGKILLed run, the next run reuses the stale table, restores acct=0 and cleans up', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const first = await startRunner(ns, stateDir);
    first.child.kill('SIGKILL');
    assert.deepEqual(await first.exited, { code: null, signal: 'SIGKILL' });
    // what a crash leaves
    assert.match(await ns.nftRuleset(), new RegExp(`comment "ctacct pid=${first.child.pid} `));
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
    assert.equal(readdirSync(stateDir).length, 1);

    const second = await startRunner(ns, stateDir);
    assert.deepEqual(second.report.changes, [
      { what: 'net.netfilter.nf_conntrack_acct', detail: `left at 1 by a crashed ctacct run (pid ${first.child.pid}); restored to 0 on exit` },
      { what: 'nft table inet ctacct', detail: `reused the table an earlier ctacct run (pid ${first.child.pid}) left; removed on exit` },
    ]);
    assert.equal(second.report.acctWasOff, true);
    assert.match(await ns.nftRuleset(), new RegExp(`comment "ctacct pid=${second.child.pid} `));
    second.child.kill('SIGTERM');
    assert.deepEqual(await second.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    assert.deepEqual(readdirSync(stateDir), []);
  });
});

test('--no-setup changes nothing and reports what is missing', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir, ['--no-setup']);
    assert.deepEqual(r.report, {
      changes: [],
      notes: [
        'accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null — run without --no-setup, or `sudo sysctl -w net.netfilter.nf_conntrack_acct=1`',
        'conntrack does not track in this network namespace (no rule uses it): no flows will appear — run without --no-setup to engage it',
      ],
      accounting: false,
      engaged: false,
      engagedBy: 'none',
      acctWasOff: true,
    });
    assert.deepEqual(await snapshot(ns), before);
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    assert.deepEqual(readdirSync(stateDir), []);
  });
});
