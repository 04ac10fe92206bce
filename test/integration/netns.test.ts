// Where a process lives, on a real kernel: a test process in a cgroup named like a Docker scope
// carries that container label; `--netns` runs the views inside a namespace the test made.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spawn } from 'node:child_process';
import { Netns, rootSkip } from '../helpers/netns.js';
import { BIN, moreSnapshots, startCtacct, stopTop } from '../helpers/ctacct.js';
import { JsonLines, ROOT, TRAFFIC, startTraffic } from '../helpers/procs.js';
import { parseSsStates } from '../helpers/ss.js';

/** Where cgroup v2 is mounted (/sys/fs/cgroup on v2 hosts, …/unified on hybrid ones). */
function cgroup2Root(): string | null {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.startsWith('cgroup2 ')) return pre!.split(' ')[4]!;
  }
  return null;
}

/** Runs `ctacct ARGS` from this (the test runner's) namespace: --netns does the entering. */
function runHere(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

describe('container label from the cgroup', { skip: rootSkip || (cgroup2Root() === null && 'SKIPPED: no cgroup2 mount') }, () => {
  let ns: Netns;
  let base: string;
  let scope: string;
  const id = randomBytes(32).toString('hex');
  before(async () => {
    ns = await Netns.create('cg');
    base = join(cgroup2Root()!, `ctt-${randomBytes(3).toString('hex')}`);
    scope = join(base, `docker-${id}.scope`);
    mkdirSync(scope, { recursive: true });
  });
  after(async () => {
    await ns?.destroy();
    // Empty once its processes are gone (destroy killed them); retry briefly while they exit.
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(scope);
        rmdirSync(base);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  test('a client in docker-<id>.scope: its row says container docker/<id>, unit docker-<id>.scope; --by container groups it', async () => {
    const top = startCtacct(ns, ['top', '--json', '--interval', '0.5']);
    const byC = startCtacct(ns, ['top', '--json', '--interval', '0.5', '--by', 'container']);
    try {
      await Promise.all([moreSnapshots(top, 1), moreSnapshots(byC, 1)]);
      const srv = await startTraffic(ns, ['tcp-server', '7001']);
      // The shell waits until the test has moved it into the scope (from here: `ip netns exec`
      // mounts its own /sys), then execs the client: same pid, already inside.
      const child = ns.spawn('sh', ['-c', `read go && exec ${process.execPath} ${TRAFFIC} tcp-client 127.0.0.1 7001 50000 --hold-ms 1500`]);
      const cli = new JsonLines(child);
      writeFileSync(join(scope, 'cgroup.procs'), `${child.pid}\n`);
      assert.match(readFileSync(`/proc/${child.pid}/cgroup`, 'utf8'), new RegExp(`docker-${id}\\.scope`));
      child.stdin!.write('go\n');
      const done = await cli.next((o) => o.done || o.error, 30000);
      assert.ok(done.done, JSON.stringify(done));
      await Promise.all([moreSnapshots(top, 2), moreSnapshots(byC, 2)]);
      const snap = await stopTop(top);
      const snapC = await stopTop(byC);
      srv.child.kill('SIGTERM');
      const row = snap.rows.find((r: any) => r.pid === done.pid);
      assert.ok(row, JSON.stringify(snap.rows));
      assert.deepEqual(row.container, { runtime: 'docker', id, name: null });
      assert.equal(row.unit, `docker-${id}.scope`);
      assert.equal(row.netns, statSync(`/run/netns/${ns.name}`).ino);
      assert.ok(row.sent_total >= 50000, String(row.sent_total));
      const server = snap.rows.find((r: any) => r.pid === srv.lines[0].pid);
      assert.equal(server.container, null);

      // --by container: the client's bytes under docker/<id>; the server's under "host".
      const c = snapC.rows.find((r: any) => r.key === `docker/${id}`);
      assert.ok(c, JSON.stringify(snapC.rows));
      assert.deepEqual(c.container, { runtime: 'docker', id, name: null });
      assert.equal(c.sent_total, row.sent_total);
      assert.equal(snapC.rows.find((r: any) => r.key === 'host').recv_total, server.recv_total);
    } finally {
      for (const t of [top, byC]) if (t.child.exitCode === null) t.child.kill('SIGKILL');
    }
  });
});

describe('--netns', { skip: rootSkip }, () => {
  let ns: Netns;
  before(async () => {
    ns = await Netns.create('nn');
  });
  after(async () => {
    await ns?.destroy();
  });

  test('states --netns NAME equals ss run inside it; PID and PATH name the same namespace', async () => {
    const srv = await startTraffic(ns, ['tcp-server', '7101']);
    const holders = await Promise.all([1, 2, 3].map(() => startTraffic(ns, ['tcp-client', '127.0.0.1', '7101', '10', '--hold-ms', '60000'])));
    try {
      // Wait until ss shows the three connections established (both ends: 6) and the listener.
      let ss = parseSsStates(await ns.exec('ss', ['-tan']));
      for (let i = 0; i < 50 && (ss.states.ESTABLISHED ?? 0) < 6; i++) {
        await new Promise((r) => setTimeout(r, 100));
        ss = parseSsStates(await ns.exec('ss', ['-tan']));
      }
      assert.equal(ss.states.ESTABLISHED, 6);
      assert.equal(ss.states.LISTEN, 1);
      for (const value of [ns.name, String(srv.lines[0].pid), `/run/netns/${ns.name}`]) {
        const r = await runHere(['states', '--netns', value, '--json']);
        assert.equal(r.code, 0, r.stderr);
        const j = JSON.parse(r.stdout);
        const now = parseSsStates(await ns.exec('ss', ['-tan']));
        assert.deepEqual(now.states, ss.states, 'nothing changed in the namespace meanwhile');
        // Every state is listed (zeros included); ss prints only those with sockets.
        const nonZero = Object.fromEntries(Object.entries(j.states as Record<string, number>).filter(([, n]) => n > 0));
        assert.deepEqual(nonZero, ss.states, `--netns ${value}`);
        assert.equal(j.total, ss.total);
      }
    } finally {
      for (const h of holders) h.child.kill('SIGKILL');
      srv.child.kill('SIGKILL');
    }
  });

  test('top --netns sees the namespace\'s own flows and processes', async () => {
    const srv = await startTraffic(ns, ['tcp-server', '7102']);
    const child = spawn(process.execPath, [BIN, 'top', '--netns', ns.name, '--json', '--interval', '0.5'], { cwd: ROOT, stdio: 'pipe' });
    const top = new JsonLines(child);
    try {
      await moreSnapshots(top, 1);
      const cli = await startTraffic(ns, ['tcp-client', '127.0.0.1', '7102', '200000', '--hold-ms', '300']);
      const done = await cli.next((o) => o.done);
      await moreSnapshots(top, 2);
      // The kernel's own count in that namespace (the connection waits in TIME_WAIT).
      const ct = await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '7102']);
      const kernel = [...ct.matchAll(/bytes=(\d+)/g)].map((m) => Number(m[1]));
      const snap = await stopTop(top);
      const row = snap.rows.find((r: any) => r.pid === done.pid);
      assert.ok(row, JSON.stringify(snap.rows));
      assert.equal(kernel.length, 2, ct);
      assert.ok(kernel[0]! >= 200000);
      assert.equal(row.sent_total, kernel[0]);
      assert.equal(row.recv_total, kernel[1]);
      assert.equal(row.netns, statSync(`/run/netns/${ns.name}`).ino);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      srv.child.kill('SIGKILL');
    }
  });

  test('bad --netns values: one line in ctacct\'s words, usage exit code, no stack', async () => {
    for (const [value, re] of [
      ['ctt-no-such-ns', /^ctacct: --netns ctt-no-such-ns: \/run\/netns\/ctt-no-such-ns does not exist\n$/],
      ['999999999', /^ctacct: --netns 999999999: no process 999999999\n$/],
      ['/etc/hostname', /^ctacct: --netns \/etc\/hostname: \/etc\/hostname is not a network namespace\n$/],
      ['/tmp', /^ctacct: --netns \/tmp: \/tmp is a directory, not a namespace file\n$/],
    ] as const) {
      const r = await runHere(['states', '--netns', value]);
      assert.equal(r.code, 2, `${value}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    }
  });
});
