// `ctacct states` in a fresh namespace, against ss and conntrack taken there at the same moment.
// Root only (ip netns); every namespace is destroyed in `after`, also on failure.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hasCommand, Netns, rootSkip } from '../helpers/netns.js';
import { nonZero, parseSsStates } from '../helpers/ss.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const HELPER = fileURLToPath(new URL('../helpers/tcp-states.mjs', import.meta.url));
const UNPRIV = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** SYNs to port 9 are dropped in the namespace, so connects there stay in SYN_SENT. */
const DROP_SYN = `table inet ctt_drop {
  chain in { type filter hook input priority 0; tcp dport 9 tcp flags & (syn | ack) == syn drop; }
}
`;

/** Starts a tcp-states helper in the namespace and waits (at most 20 s) for its READY line. */
function startHelper(ns: Netns, plan: object, asNobody = false): Promise<{ child: ChildProcess; pid: number }> {
  const args = [HELPER, JSON.stringify({ deadlineMs: 15000, ...plan })];
  const child = asNobody ? ns.spawn(UNPRIV[0]!, [...UNPRIV.slice(1), 'node', ...args]) : ns.spawn('node', args);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`helper not ready after 20 s: ${err}`)), 20000);
    child.stderr?.on('data', (d) => (err += d));
    child.stdout?.on('data', (d) => {
      out += d;
      const m = /READY (\{.*\})/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, pid: (JSON.parse(m[1]!) as { pid: number }).pid });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`helper exited ${code}: ${err}`));
    });
  });
}

/** Runs the CLI inside the namespace from the repo dir (world-readable), optionally as nobody. */
async function ctacct(ns: Netns, args: string[], asNobody = false): Promise<string> {
  const cmd = `cd '${REPO}' && ${asNobody ? `${UNPRIV.join(' ')} ` : ''}node --import tsx src/main.ts ${args.join(' ')}`;
  return ns.sh(cmd);
}

/** ctacct, with ss taken just before and just after: both must agree (the sockets were stable). */
async function sameMoment(ns: Netns, args: string[], asNobody = false) {
  const ssBefore = parseSsStates(await ns.exec('ss', ['-tan']));
  const ours = JSON.parse(await ctacct(ns, args, asNobody));
  const ssAfter = parseSsStates(await ns.exec('ss', ['-tan']));
  assert.deepEqual(ssAfter, ssBefore, 'sockets changed while measuring');
  return { ours, ss: ssBefore };
}

function conntrackStates(text: string): { states: Record<string, number>; total: number } {
  const states: Record<string, number> = {};
  let total = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'tcp') continue;
    states[f[3]!] = (states[f[3]!] ?? 0) + 1;
    total++;
  }
  return { states, total };
}

// Plans: every count bounded; expected socket states follow from them.
const V4 = { host: '127.0.0.1', listen: [8080], established: 5, timeWait: 3, halfClosed: 2, synSent: 2, synPort: 9 };
const V6 = { host: '::1', established: 2, timeWait: 1, halfClosed: 1, synSent: 1, synPort: 9 };
const MAPPED = { host: '::ffff:127.0.0.1', listenHost: '::', established: 2 };
// Listeners: 8080 + one per helper with `established` (the others close theirs once done).
const EXPECTED_SOCKETS = {
  LISTEN: 1 + 3,
  ESTABLISHED: 2 * (5 + 2 + 2),
  TIME_WAIT: 3 + 1,
  FIN_WAIT2: 2 + 1,
  CLOSE_WAIT: 2 + 1,
  SYN_SENT: 2 + 1,
};

describe('ctacct states (sockets) in a namespace vs ss -tan', { skip: rootSkip || (!hasCommand('ss') && 'SKIPPED: ss missing') }, () => {
  let ns: Netns;
  let pids: number[] = [];
  before(async () => {
    ns = await Netns.create('st');
    await ns.nft(DROP_SYN);
    pids = [(await startHelper(ns, V4)).pid, (await startHelper(ns, V6)).pid, (await startHelper(ns, MAPPED, true)).pid];
  });
  after(async () => {
    await ns?.destroy();
  });

  test('counts per state equal ss exactly, and the plan', async () => {
    const { ours, ss } = await sameMoment(ns, ['states', '--json']);
    assert.deepEqual(nonZero(ours.states), ss.states);
    assert.equal(ours.total, ss.total);
    assert.deepEqual(nonZero(ours.states), EXPECTED_SOCKETS);
    assert.equal(ours.total, 35);
    assert.equal(ours.source, 'sockets');
    // Every netstat state name is present, 0 when none (so `jq .states.CLOSING` gives 0, not null).
    assert.deepEqual(Object.keys(ours.states).sort(), ['CLOSE', 'CLOSE_WAIT', 'CLOSING', 'ESTABLISHED', 'FIN_WAIT1', 'FIN_WAIT2', 'LAST_ACK', 'LISTEN', 'SYN_RECV', 'SYN_SENT', 'TIME_WAIT']);
  });

  test('as an unprivileged user the counts still equal ss', async () => {
    const { ours, ss } = await sameMoment(ns, ['states', '--json'], true);
    assert.deepEqual(nonZero(ours.states), ss.states);
    assert.deepEqual(nonZero(ours.states), EXPECTED_SOCKETS);
  });

  test('--by process as root: each helper with its own sockets; TIME_WAIT under "-"', async () => {
    const j = JSON.parse(await ctacct(ns, ['states', '--by', 'process', '--json']));
    const byKey = new Map<string, { total: number; states: Record<string, number> }>(j.groups.map((g: { key: string }) => [g.key, g]));
    // v4 helper: 8080 + 1 listener, 10 established, 2 FIN_WAIT2 + 2 CLOSE_WAIT, 2 SYN_SENT.
    assert.deepEqual(nonZero(byKey.get(String(pids[0]))?.states), { LISTEN: 2, ESTABLISHED: 10, FIN_WAIT2: 2, CLOSE_WAIT: 2, SYN_SENT: 2 });
    assert.deepEqual(nonZero(byKey.get(String(pids[1]))?.states), { LISTEN: 1, ESTABLISHED: 4, FIN_WAIT2: 1, CLOSE_WAIT: 1, SYN_SENT: 1 });
    assert.deepEqual(nonZero(byKey.get(String(pids[2]))?.states), { LISTEN: 1, ESTABLISHED: 4 });
    assert.deepEqual(nonZero(byKey.get('-')?.states), { TIME_WAIT: 4 });
    assert.equal(j.unattributed, 0);
  });

  test('--by process as nobody: its own process only, the rest counted as unattributed', async () => {
    const j = JSON.parse(await ctacct(ns, ['states', '--by', 'process', '--json'], true));
    assert.deepEqual(
      j.groups.map((g: { key: string; total: number }) => [g.key, g.total]),
      [
        ['?', 26],
        [String(pids[2]), 5],
        ['-', 4],
      ],
    );
    assert.equal(j.unattributed, 26);
    const text = await ctacct(ns, ['states', '--by', 'process'], true);
    assert.match(text, /^26 sockets could not be attributed — run with sudo to see all$/m);
  });

  test('--by port and filters agree with ss filters', async () => {
    const j = JSON.parse(await ctacct(ns, ['states', '--by', 'port', '--json']));
    const g9 = j.groups.find((g: { key: string }) => g.key === '9');
    assert.deepEqual({ ...g9, states: nonZero(g9?.states) }, { key: '9', states: { SYN_SENT: 3 }, total: 3 });
    const tw = JSON.parse(await ctacct(ns, ['states', '--json', '-6']));
    const ss6 = parseSsStates(await ns.exec('ss', ['-6tan']));
    assert.deepEqual(nonZero(tw.states), ss6.states);
    const p = JSON.parse(await ctacct(ns, ['states', '--port', '8080', '--json']));
    assert.deepEqual(nonZero(p.states), { LISTEN: 1 });
    const h = JSON.parse(await ctacct(ns, ['states', '--host', '::1', '--json']));
    const ssh = parseSsStates(await ns.exec('ss', ['-tan', 'dst', '[::1]']));
    assert.deepEqual(nonZero(h.states), ssh.states);
  });
});

describe('ctacct states --source conntrack vs conntrack -L', { skip: rootSkip || (!hasCommand('conntrack') && 'SKIPPED: conntrack missing') }, () => {
  let ns: Netns;
  before(async () => {
    ns = await Netns.create('stct');
    await ns.engageConntrack();
    await ns.nft(DROP_SYN);
    await startHelper(ns, V4);
    await startHelper(ns, V6);
  });
  after(async () => {
    await ns?.destroy();
  });

  test('flow counts per conntrack state equal conntrack -L -p tcp', async () => {
    const before = conntrackStates(await ns.exec('conntrack', ['-L', '-p', 'tcp']));
    const ours = JSON.parse(await ctacct(ns, ['states', '--source', 'conntrack', '--json']));
    const afterCt = conntrackStates(await ns.exec('conntrack', ['-L', '-p', 'tcp']));
    assert.deepEqual(afterCt, before, 'flows changed while measuring');
    assert.equal(ours.source, 'conntrack');
    assert.deepEqual(nonZero(ours.states), before.states);
    assert.equal(ours.total, before.total);
    // One flow per loopback connection (two sockets); listeners have none; the half-closed
    // connections are CLOSE_WAIT in conntrack (FIN seen and acknowledged).
    assert.deepEqual(nonZero(ours.states), { ESTABLISHED: 7, TIME_WAIT: 4, CLOSE_WAIT: 3, SYN_SENT: 3 });
  });

  test('the same connections as sockets (docs/states.md table): equal to ss', async () => {
    const { ours, ss } = await sameMoment(ns, ['states', '--json']);
    assert.deepEqual(nonZero(ours.states), ss.states);
    assert.deepEqual(nonZero(ours.states), { ESTABLISHED: 14, TIME_WAIT: 4, FIN_WAIT2: 3, CLOSE_WAIT: 3, SYN_SENT: 3, LISTEN: 3 });
  });

  test('without privilege: one line, exit code 3', async () => {
    const cmd = `cd '${REPO}' && { ${UNPRIV.join(' ')} node --import tsx src/main.ts states --source conntrack; echo "rc=$?"; } 2>&1`;
    const out = await ns.exec('sh', ['-c', cmd]);
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 2, out);
    assert.match(lines[0]!, /^ctacct: reading the conntrack table: permission denied \(EPERM\)/);
    assert.equal(lines[1], 'rc=3');
  });
});
