// Safe on any host, end to end with the built CLI in throwaway namespaces: every exit path leaves
// the namespace as found without a stack trace, two runs coexist, nft is not needed, bad input is
// told in ctacct's words.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { BIN, assertBuilt, runCtacct, startCtacct } from '../helpers/ctacct.js';
import { Netns, rootSkip } from '../helpers/netns.js';
import { JsonLines, ROOT, runTraffic, startTraffic } from '../helpers/procs.js';

async function snapshot(ns: Netns) {
  return { ruleset: await ns.nftRuleset(), acct: await ns.sysctl('net.netfilter.nf_conntrack_acct') };
}

/** What ctacct's reference count keeps for the namespace; null once every run is gone (the last removes it). */
async function stateFiles(ns: Netns): Promise<string[] | null> {
  const netns = (await ns.exec('readlink', ['/proc/self/ns/net'])).trim();
  try {
    return readdirSync(`/run/ctacct/${netns.replace(/[^0-9a-z]+/gi, '-').replace(/-+$/, '')}`).sort();
  } catch {
    return null;
  }
}

/** `ctacct ARGS | head -1` in the namespace: ctacct's exit status, stderr and the line head printed. */
function piped(ns: Netns, args: string[]): Promise<{ status: number; stderr: string; line: string }> {
  const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const script = `${q(process.execPath)} ${q(BIN)} ${args.map(q).join(' ')} 2>/tmp/ctacct-e2e-$$.err | head -1; s=\${PIPESTATUS[0]}; cat /tmp/ctacct-e2e-$$.err >&2; rm -f /tmp/ctacct-e2e-$$.err; exit $s`;
  return new Promise((res) => {
    execFile('ip', ['netns', 'exec', ns.name, 'bash', '-c', script], { cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      const status = err ? Number((err as { code?: unknown }).code) : 0;
      res({ status, stderr, line: stdout });
    });
  });
}

describe('safe on any host', { skip: rootSkip }, () => {
  for (const args of [
    ['top', '--trace', '--count', '4', '--interval', '0.3'],
    ['top', '--json', '--count', '4', '--interval', '0.3'],
    ['states', '--watch', '0.3'],
  ]) {
    test(`\`ctacct ${args.join(' ')} | head -1\`: quiet exit 141, no stack trace, namespace as found`, async () => {
      assertBuilt();
      const ns = await Netns.create('hd');
      try {
        const before = await snapshot(ns);
        const r = await piped(ns, args);
        assert.equal(r.status, 141, r.stderr);
        // (a trace starts with a blank separator line; JSON and states with their first record)
        if (args[1] !== '--trace') assert.match(r.line, /^\{"time":|^ctacct states/);
        assert.doesNotMatch(r.stderr, /EPIPE|Error|at .*\.js:\d+/);
        assert.deepEqual(await snapshot(ns), before);
        if (args[0] === 'top') assert.equal(await stateFiles(ns), null);
      } finally {
        await ns.destroy();
      }
    });
  }

  test('`ctacct flows | head -1` with a table bigger than a pipe: no stack trace, namespace as found', async () => {
    const ns = await Netns.create('hf');
    try {
      await ns.engageConntrack();
      // 1,500 UDP flows: the table is far bigger than the 64 KiB a pipe holds
      await runTraffic(ns, ['udp-spray', '127.0.0.1', '20000', '1500']);
      const before = await snapshot(ns);
      const r = await piped(ns, ['flows']);
      assert.equal(r.status, 141, r.stderr);
      assert.match(r.line, /^PROTO/);
      assert.doesNotMatch(r.stderr, /EPIPE|Error|at .*\.js:\d+/);
      assert.deepEqual(await snapshot(ns), before);
    } finally {
      await ns.destroy();
    }
  });

  test('SIGQUIT ends top with 131 and undoes everything', async () => {
    const ns = await Netns.create('sq');
    try {
      const before = await snapshot(ns);
      const top = startCtacct(ns, ['top', '--json', '--interval', '0.3']);
      await top.next((o) => o.rows);
      const exited = new Promise<number | null>((res) => top.child.on('exit', (c) => res(c)));
      top.child.kill('SIGQUIT');
      assert.equal(await exited, 131);
      assert.doesNotMatch(top.stderrText, /Error|at .*\.js:\d+/);
      assert.deepEqual(await snapshot(ns), before);
      assert.equal(await stateFiles(ns), null);
    } finally {
      await ns.destroy();
    }
  });

  test('two runs, nft hidden from both: the first exits early, the second still counts a 1 MB transfer', async () => {
    const ns = await Netns.create('two');
    try {
      const before = await snapshot(ns);
      // A private mount namespace with /dev/null over the nft binary: nothing can run it.
      const spawnHidden = (args: string[]) => {
        const child = ns.spawn('unshare', ['-m', 'sh', '-c', 'mount --bind /dev/null "$(readlink -f "$(command -v nft)")" && exec "$@"', 'sh', process.execPath, BIN, ...args], { cwd: ROOT });
        return child;
      };
      const a = new JsonLines(spawnHidden(['top', '--json', '--interval', '0.5']));
      await a.next((o) => o.rows);
      const b = new JsonLines(spawnHidden(['top', '--json', '--interval', '0.5']));
      const first = await b.next((o) => o.rows);
      assert.equal(first.health.tracking, 'engaged-by-ctacct');
      assert.equal((await ns.nftRuleset()).match(/^table inet ctacct-\d+/gm)?.length, 2);
      const aExit = new Promise<number | null>((res) => a.child.on('exit', (c) => res(c)));
      a.child.kill('SIGTERM');
      assert.equal(await aExit, 143);
      assert.equal(await ns.sysctl('net.netfilter.nf_conntrack_acct'), '1');
      // the directory stays while b runs: b is its one member
      assert.equal((await stateFiles(ns))?.filter((f) => f.startsWith('member-')).length, 1);
      const N = 1_000_000;
      const server = await startTraffic(ns, ['tcp-server', '9200', '--count', '1']);
      const done = await runTraffic(ns, ['tcp-client', '127.0.0.1', '9200', String(N)]);
      const row = await b.next((o) => o.rows?.some((r: any) => r.pid === done.pid && r.sent_total >= N), 20_000);
      // Layer-3 bytes, exactly as the kernel counted them: the payload plus headers, in as many
      // packets as the machine's load made it take (read once the connection has settled).
      await new Promise((r) => setTimeout(r, 500));
      const kernelSent = Number(/bytes=(\d+)/.exec(await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '9200']))?.[1]);
      const seen = await b.next((o) => o.rows?.some((r: any) => r.pid === done.pid && r.sent_total === kernelSent), 10_000).catch(() => row);
      const mine = seen.rows.find((r: any) => r.pid === done.pid);
      assert.ok(kernelSent > N, `kernel count ${kernelSent}`);
      assert.equal(mine.sent_total, kernelSent, "the client's sent bytes: the kernel's count");
      const srv = row.rows.find((r: any) => r.pid === server.lines[0].pid);
      assert.ok(srv && srv.recv_total > N, 'the server received it');
      const bExit = new Promise<number | null>((res) => b.child.on('exit', (c) => res(c)));
      b.child.kill('SIGTERM');
      assert.equal(await bExit, 143);
      assert.deepEqual(await snapshot(ns), before);
      assert.equal(await stateFiles(ns), null);
      // the transfer's entry existed only because ctacct engaged tracking: gone with it
      assert.equal((await ns.exec('conntrack', ['-L'])).trim(), '');
    } finally {
      await ns.destroy();
    }
  });

  test('not tracking and --no-setup: `top --json` exits 4 with one line; the live health says not-tracking', async () => {
    const ns = await Netns.create('nt');
    try {
      const r = await runCtacct(ns, ['top', '--json', '--once', '--no-setup']);
      assert.equal(r.code, 4);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^ctacct: conntrack does not track in this network namespace .*\(exit 4: not tracking\)\n$/);
    } finally {
      await ns.destroy();
    }
  });

  describe('bad input: one line in ctacct\'s words, exit 2', () => {
    for (const [args, message] of [
      [['top', '--pid', 'abc'], "ctacct: --pid: 'abc' is not a process id (see `ctacct --help`)"],
      [['top', '--pid', '999999'], 'ctacct: --pid: no process 999999 is running (see `ctacct --help`)'],
      [['flows', '--user', 'nobodyhere'], "ctacct: --user: no user named 'nobodyhere' (see `ctacct --help`)"],
      [['top', '--rcvbuf', 'abc'], 'ctacct: --rcvbuf: not a number'],
      [['top', '--json', '--trace'], 'ctacct: --json and --trace are two output formats: choose one'],
      [['flows', '-4', '-6'], 'ctacct: -4 and -6 exclude each other: give one, or neither for both families'],
      [['top', '--proto', 'xyz'], "ctacct: --proto: 'xyz' is not one of tcp, udp, icmp (see `ctacct --help`)"],
      [['top', '--port'], 'ctacct: --port needs a value (N or N,M,...) (see `ctacct --help`)'],
    ] as const) {
      test(args.join(' '), async () => {
        const ns = await Netns.create('bad');
        try {
          const before = await snapshot(ns);
          const r = await runCtacct(ns, [...args]);
          assert.equal(r.code, 2);
          assert.equal(r.stdout, '');
          assert.equal(r.stderr, `${message}\n`);
          assert.deepEqual(await snapshot(ns), before);
        } finally {
          await ns.destroy();
        }
      });
    }
  });
});

test('-V and --version print the version and exit 0', async () => {
  assertBuilt();
  const { version } = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };
  for (const flag of ['-V', '--version']) {
    const out = await new Promise<{ code: number; stdout: string }>((res) =>
      execFile(process.execPath, [BIN, flag], { cwd: ROOT }, (err, stdout) => res({ code: err ? Number((err as { code?: unknown }).code) : 0, stdout })),
    );
    assert.deepEqual(out, { code: 0, stdout: `${version}\n` });
  }
});
