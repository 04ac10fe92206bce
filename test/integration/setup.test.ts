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
const COST_NOTE_START = 'conntrack engaged by ctacct:';

interface Runner {
  child: ChildProcess;
  report: SetupReport;
  out(): string;
  err(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startRunner(ns: Netns, stateDir: string, extra: string[] = [], hideNft = false): Promise<Runner> {
  const cmd = ['node', '--import', 'tsx', RUNNER, '--state-dir', stateDir, ...extra];
  // nft hidden: a private mount namespace with /dev/null bound over the binary.
  const child = hideNft
    ? ns.spawn('unshare', ['-m', 'sh', '-c', 'mount --bind /dev/null "$(readlink -f "$(command -v nft)")" && exec "$@"', 'sh', ...cmd], { cwd: ROOT })
    : ns.spawn(cmd[0]!, cmd.slice(1), { cwd: ROOT });
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

/** The table a runner engages through nf_tables netlink: owned by its socket (`nft` cannot print a bare `ct state` load). */
const ctTable = (pid: number | undefined) =>
  new RegExp(`^table inet ctacct-${pid} \\{ # progname node\\n\\tflags owner\\n\\n\\tchain track \\{\\n\\t\\ttype filter hook output priority 300; policy accept;\\n`);

/** What the reference count directory of the namespace holds; null once it is gone (the last run out removes it). */
async function stateFiles(ns: Netns, stateDir: string): Promise<string[] | null> {
  const netns = (await ns.exec('readlink', ['/proc/self/ns/net'])).trim();
  try {
    return readdirSync(join(stateDir, netns.replace(/[^0-9a-z]+/gi, '-').replace(/-+$/, ''))).sort();
  } catch {
    return null;
  }
}

// N payload bytes over loopback TCP inside the namespace; the server closes after reading all.
const TRANSFER = `
const net = require('node:net');
const N = Number(process.argv[1]), PORT = Number(process.argv[2]);
const srv = net.createServer((s) => { let got = 0; s.on('data', (d) => { got += d.length; }); s.on('end', () => { s.end(); srv.close(); if (got !== N) process.exit(3); }); });
srv.listen(PORT, '127.0.0.1', () => { const c = net.connect(PORT, '127.0.0.1', () => c.end(Buffer.alloc(N, 120))); c.resume(); });
`;

/** Quits the runner the normal way (stdin `quit`) and waits for it. */
async function quit(r: Runner): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  r.child.stdin?.write('quit\n');
  await new Promise<void>((res) => {
    if (/^done$/m.test(r.out())) return res();
    r.child.stdout?.on('data', () => /^done$/m.test(r.out()) && res());
  });
  r.child.stdin?.end();
  return r.exited;
}

async function transferCounters(ns: Netns, n: number, port: number): Promise<{ op: number; ob: number; rp: number; rb: number }> {
  await ns.exec('node', ['-e', TRANSFER, String(n), String(port)]);
  const line = (await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', String(port), '-o', 'extended'])).trim();
  const m = /packets=(\d+) bytes=(\d+) .*packets=(\d+) bytes=(\d+)/.exec(line);
  assert.ok(m, line);
  const [op, ob, rp, rb] = m.slice(1).map(Number) as [number, number, number, number];
  return { op, ob, rp, rb };
}

for (const hideNft of [false, true]) {
  test(`fresh namespace${hideNft ? ', nft hidden' : ''}: acct on + owned table while running; a transfer gets exact counters; its entry goes on exit; namespace as found`, { skip: rootSkip }, async () => {
    await withNs('su', async (ns, stateDir) => {
      const before = await snapshot(ns);
      assert.equal(before.acct, '0');
      assert.equal(before.ruleset, '');
      const r = await startRunner(ns, stateDir, [], hideNft);
      const pid = Number(/table inet ctacct-(\d+)/.exec(JSON.stringify(r.report.changes))?.[1]);
      assert.deepEqual(r.report.changes, [
        { code: 'acct-on', what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 when the last ctacct in this network namespace exits)' },
        {
          code: 'table-engaged',
          what: `nft table inet ctacct-${pid}`,
          detail: 'engages conntrack in this network namespace; owned by this process, so the kernel removes it when ctacct exits (even if killed)',
        },
      ]);
      assert.equal(r.report.engagedBy, 'ctacct');
      assert.equal(r.report.tracking, 'engaged-by-ctacct');
      assert.equal(r.report.accounting, true);
      assert.ok(r.report.notes.some((n) => n.code === 'engage-cost' && n.message.startsWith(COST_NOTE_START)));
      assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
      assert.match(await ns.nftRuleset(), ctTable(pid));
      assert.deepEqual(await stateFiles(ns, stateDir), ['acct-was-0', 'entries-before', 'lock', `member-${pid}-${/\d+$/.exec((await stateFiles(ns, stateDir))!.find((f) => f.startsWith('member-'))!)?.[0]}`, 'others']);

      const N = 100_000;
      const c = await transferCounters(ns, N, 5201);
      // IPv4 TCP layer-3 bytes: payload + 52 per skb + 8 for the SYN's options (docs/decisions.md)
      assert.equal(c.ob, N + 52 * c.op + 8);
      assert.equal(c.rb, 52 * c.rp + 8);
      assert.equal((await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '5201'])).trim().split('\n').length, 1);

      assert.deepEqual(await quit(r), { code: 0, signal: null });
      assert.deepEqual(await snapshot(ns), before);
      assert.equal(await stateFiles(ns, stateDir), null);
      // The entry existed only because ctacct engaged tracking: removed, not left for days.
      assert.equal((await ns.exec('conntrack', ['-L'])).trim(), '');
    });
  });
}

test('a firewall already engages conntrack: ctacct adds no table, only turns acct on and back off; entries stay', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    await ns.engageConntrack();
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir);
    assert.deepEqual(r.report, {
      changes: [{ code: 'acct-on', what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 when the last ctacct in this network namespace exits)' }],
      notes: [{ code: 'acct-was-off', message: 'accounting was off: flows that began before now have no counters (shown as null)' }],
      accounting: true,
      engaged: true,
      engagedBy: 'existing',
      tracking: 'engaged-by-others',
      acctWasOff: true,
    });
    assert.equal(await ns.nftRuleset(), before.ruleset);
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
    await transferCounters(ns, 10_000, 5202);
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    // the firewall's entry is not ctacct's to remove
    assert.match(await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '5202']), /dport=5202/);
  });
});

for (const [sig, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
  ['SIGHUP', 129],
  ['SIGQUIT', 131],
] as const) {
  test(`${sig}: the runner undoes everything and exits ${code}`, { skip: rootSkip }, async () => {
    await withNs('su', async (ns, stateDir) => {
      const before = await snapshot(ns);
      const r = await startRunner(ns, stateDir);
      assert.equal(r.report.engagedBy, 'ctacct');
      assert.match(await ns.nftRuleset(), ctTable(Number(/ctacct-(\d+)/.exec(JSON.stringify(r.report))?.[1])));
      r.child.kill(sig);
      assert.deepEqual(await r.exited, { code, signal: null });
      assert.deepEqual(await snapshot(ns), before);
      assert.equal(await stateFiles(ns, stateDir), null);
      assert.equal(r.err(), '');
    });
  });
}

test('SIGPIPE (as from a scraper that hung up) does not end ctacct nor undo anything', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir);
    const ruleset = await ns.nftRuleset();
    r.child.kill('SIGPIPE');
    assert.equal(await ns.nftRuleset(), ruleset);
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
    // still alive: it answers `quit` and ends normally
    assert.deepEqual(await quit(r), { code: 0, signal: null });
    assert.deepEqual(await snapshot(ns), before);
  });
});

test('a cleanup that throws during shutdown: one line, the undo behind it still runs, namespace as found', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir, ['--throwing-cleanup']);
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 143, signal: null });
    assert.equal(r.err(), 'ctacct: restoring the terminal failed on purpose\n');
    assert.deepEqual(await snapshot(ns), before);
    assert.equal(await stateFiles(ns, stateDir), null);
  });
});

test('an uncaught error: one line on stderr, exit 1, namespace as found', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir, ['--crash']);
    assert.deepEqual(await r.exited, { code: 1, signal: null });
    assert.equal(r.err(), 'ctacct: runner crashed on purpose (internal error)\n');
    assert.deepEqual(await snapshot(ns), before);
    assert.equal(await stateFiles(ns, stateDir), null);
  });
});

test('SIGKILL: the kernel removes the owned table at once; the next run restores acct=0 and cleans up', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const first = await startRunner(ns, stateDir);
    // another process (nft, as root) cannot delete the owned table
    const name = /ctacct-\d+/.exec(JSON.stringify(first.report.changes))![0];
    await assert.rejects(ns.exec('nft', ['delete', 'table', 'inet', name]), /Operation not permitted/);
    first.child.kill('SIGKILL');
    assert.deepEqual(await first.exited, { code: null, signal: 'SIGKILL' });
    // what a kill -9 leaves: no table (owned by the dead socket), acct still 1, its member record
    assert.equal(await ns.nftRuleset(), '');
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');

    const second = await startRunner(ns, stateDir);
    assert.deepEqual(second.report.changes[0], {
      code: 'acct-adopted',
      what: 'net.netfilter.nf_conntrack_acct',
      detail: 'left at 1 by a ctacct run that was killed; restored to 0 on exit',
    });
    assert.equal(second.report.acctWasOff, true);
    second.child.kill('SIGTERM');
    assert.deepEqual(await second.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    assert.equal(await stateFiles(ns, stateDir), null);
  });
});

test('two runs: the first exits early; the second keeps its own table and acct until it exits', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const [a, b] = await Promise.all([startRunner(ns, stateDir), startRunner(ns, stateDir)]);
    // started at the same instant: exactly one changed acct, both have a table
    assert.equal([a, b].filter((r) => r.report.changes.some((c) => c.code === 'acct-on')).length, 1);
    assert.equal([a, b].filter((r) => r.report.notes.some((n) => n.code === 'shared')).length, 1);
    assert.equal((await ns.nftRuleset()).match(/^table inet ctacct-\d+/gm)?.length, 2);
    assert.deepEqual(await quit(a), { code: 0, signal: null });
    assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
    const N = 100_000;
    const c = await transferCounters(ns, N, 5203);
    assert.equal(c.ob, N + 52 * c.op + 8);
    assert.deepEqual((await stateFiles(ns, stateDir))?.filter((f) => f.startsWith('member-')).length, 1);
    b.child.kill('SIGTERM');
    assert.deepEqual(await b.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    // the last one out removed the namespace's directory: nothing is left in the state dir
    assert.deepEqual(readdirSync(stateDir), []);
    // and a third run after them starts cleanly and leaves nothing either
    const c3 = await startRunner(ns, stateDir);
    assert.deepEqual(c3.report.changes.map((c) => c.code), ['acct-on', 'table-engaged']);
    assert.deepEqual(await quit(c3), { code: 0, signal: null });
    assert.deepEqual(readdirSync(stateDir), []);
    assert.deepEqual(await snapshot(ns), before);
  });
});

test('--no-setup changes nothing and reports what is missing', { skip: rootSkip }, async () => {
  await withNs('su', async (ns, stateDir) => {
    const before = await snapshot(ns);
    const r = await startRunner(ns, stateDir, ['--no-setup']);
    assert.deepEqual(r.report, {
      changes: [],
      notes: [
        {
          code: 'acct-off',
          message: 'accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null — run without --no-setup, or `sudo sysctl -w net.netfilter.nf_conntrack_acct=1`',
        },
        { code: 'not-tracking', message: 'conntrack does not track in this network namespace (no rule uses it): no flows will appear — run without --no-setup to engage it' },
      ],
      accounting: false,
      engaged: false,
      engagedBy: 'none',
      tracking: 'not-tracking',
      acctWasOff: true,
    });
    assert.deepEqual(await snapshot(ns), before);
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exited, { code: 143, signal: null });
    assert.deepEqual(await snapshot(ns), before);
    assert.equal(await stateFiles(ns, stateDir), null);
  });
});
