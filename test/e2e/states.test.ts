// End to end: the built CLI (bin/ctacct.js) against this machine's /proc, no root
// needed. A helper holds known loopback sockets on a kernel-chosen port; --port narrows to them.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const HELPER = fileURLToPath(new URL('../helpers/tcp-states.mjs', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `ctacct ARGS` (bounded to 20 s); `onStdout` may act on output as it arrives. */
function cli(args: string[], onStdout?: (sofar: string, child: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/ctacct.js', ...args], {
      cwd: REPO,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ctacct ${args.join(' ')} still running after 20 s`));
    }, 20000);
    child.stdout.on('data', (d) => {
      stdout += d;
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

let helper: ChildProcess;
let port = 0;
before(async () => {
  helper = spawn(process.execPath, [HELPER, JSON.stringify({ host: '127.0.0.1', established: 3, deadlineMs: 15000 })], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('helper not ready after 20 s')), 20000);
    helper.stdout!.on('data', (d) => {
      out += d;
      const m = /READY (\{.*\})/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve((JSON.parse(m[1]!) as { ports: { established: number } }).ports.established);
      }
    });
    helper.on('exit', (c) => reject(new Error(`helper exited ${c}`)));
  });
});
after(() => {
  helper?.kill('SIGKILL');
});

test('states --json --port P: exactly the helper listener and both ends of its 3 connections', async () => {
  const r = await cli(['states', '--json', '--port', String(port)]);
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, '{"source":"sockets","states":{"LISTEN":1,"ESTABLISHED":6},"total":7}\n');
});

test('states --json without filters: total is the sum of the states, names are netstat names', async () => {
  const r = await cli(['states', '--json']);
  assert.equal(r.code, 0);
  const j = JSON.parse(r.stdout) as { source: string; states: Record<string, number>; total: number };
  assert.equal(j.source, 'sockets');
  assert.equal(Object.values(j.states).reduce((a, b) => a + b, 0), j.total);
  assert.ok(j.total >= 7);
  const names = ['ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];
  for (const k of Object.keys(j.states)) assert.ok(names.includes(k), k);
});

test('states --by port --port P: one group keyed by the port, human and JSON', async () => {
  const j = await cli(['states', '--by', 'port', '--port', String(port), '--json']);
  assert.equal(j.code, 0);
  assert.deepEqual(JSON.parse(j.stdout), {
    source: 'sockets',
    by: 'port',
    groups: [{ key: String(port), states: { LISTEN: 1, ESTABLISHED: 6 }, total: 7 }],
    states: { LISTEN: 1, ESTABLISHED: 6 },
    total: 7,
  });
  const h = await cli(['states', '--by', 'port', '--port', String(port)]);
  assert.equal(h.code, 0);
  const p = String(port);
  assert.equal(
    h.stdout,
    [
      'PORT   ESTABLISHED  LISTEN  TOTAL',
      `${p}            6       1      7`,
      '-----  -----------  ------  -----',
      'TOTAL            6       1      7',
      '',
    ].join('\n'),
  );
});

test('a bad argument: exit code 2, one line on stderr, nothing on stdout', async () => {
  for (const [args, msg] of [
    [['states', '--port', '99999'], "ctacct: --port: '99999' is not a port number (0-65535)"],
    [['states', '--host', 'nope/8'], "ctacct: --host: 'nope/8' is not an address or ADDR/PREFIX"],
    [['states', '--frobnicate'], 'ctacct: Unknown argument: frobnicate (see `ctacct --help`)'],
  ] as const) {
    const r = await cli([...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `${msg}\n`);
  }
});

test('states --help shows the pipelines it replaces', async () => {
  const r = await cli(['states', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /netstat -ant \| awk '\{print \$6\}' \| sort \| uniq -c/);
  assert.match(r.stdout, /ss -tan state time-wait \| wc -l/);
  assert.match(r.stdout, /--source/);
});

test('states --watch: Ctrl-C (SIGINT) ends it cleanly with exit code 0', async () => {
  let sent = false;
  const r = await cli(['states', '--watch', '0.2', '--port', String(port)], (sofar, child) => {
    // Interrupt once two blocks are out.
    if (!sent && sofar.split('every 0.2s').length >= 3) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  assert.equal(sent, true);
  assert.equal(r.code, 0);
  assert.equal(r.signal, null);
  assert.equal(r.stderr, '');
  assert.ok((r.stdout.match(/^TOTAL +7$/gm) ?? []).length >= 2, r.stdout);
});
