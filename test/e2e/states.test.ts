// End to end: the built CLI (bin/ctacct.js) against this machine's /proc, no root
// needed. A helper holds known loopback sockets on a kernel-chosen port; --port narrows to them.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
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

/** Every socket state at 0: `states --json` lists them all. */
const ZERO = Object.fromEntries(
  ['ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'].map((s) => [s, 0]),
);

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
  // Every state is listed, zero when none (jq .states.TIME_WAIT reads 0, not null), in netstat order.
  assert.equal(
    r.stdout,
    '{"source":"sockets","states":{"ESTABLISHED":6,"SYN_SENT":0,"SYN_RECV":0,"FIN_WAIT1":0,"FIN_WAIT2":0,"TIME_WAIT":0,"CLOSE":0,"CLOSE_WAIT":0,"LAST_ACK":0,"LISTEN":1,"CLOSING":0},"total":7}\n',
  );
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
    groups: [{ key: String(port), states: { ...ZERO, LISTEN: 1, ESTABLISHED: 6 }, total: 7 }],
    states: { ...ZERO, LISTEN: 1, ESTABLISHED: 6 },
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

test('states --watch in a terminal (tmux): q quits with exit code 0', { skip: spawnSync('tmux', ['-V']).status === 0 ? false : 'SKIPPED: tmux is not installed' }, async () => {
  const session = `ctt${process.pid}s`;
  const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' }).stdout;
  const waitFor = async (re: RegExp, ms = 10000) => {
    const end = Date.now() + ms;
    for (;;) {
      const text = tmux('capture-pane', '-p', '-t', session);
      if (re.test(text)) return text;
      if (Date.now() > end) throw new Error(`screen never matched ${re}:\n${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', `cd ${REPO} && NO_COLOR=1 ${process.execPath} bin/ctacct.js states --watch 0.3 --port ${port}; echo EXIT=$?; sleep 20`);
  try {
    await waitFor(/every 0\.3s .* q to quit/);
    await waitFor(/^TOTAL +7$/m);
    tmux('send-keys', '-t', session, 'q');
    await waitFor(/EXIT=0/);
  } finally {
    tmux('kill-session', '-t', session);
  }
});
