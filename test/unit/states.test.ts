// `ctacct states`: counting, grouping, filters, diff, rendering (golden files) and the command
// driven through buildCli with a fake System over the captured /proc fixture.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildCli } from '../../src/cli.js';
import { parseCidr } from '../../src/core/addr.js';
import { countStates, diffStates, stateOrder, flowItems, servicePort, socketItems, type StatesQuery } from '../../src/core/states.js';
import type { ConntrackSource } from '../../src/netlink/source.js';
import { IPS, type FlowRecord } from '../../src/netlink/record.js';
import { readProcessInfo, readSocketTable, scanSocketOwners } from '../../src/proc/reader.js';
import type { System } from '../../src/system.js';
import { renderStates, statesJson } from '../../src/views/states.js';
import { UserError } from '../../src/errors.js';

/** Every sockets state at 0: `states --json` lists them all. */
const ZERO = Object.fromEntries(stateOrder('sockets').map((s) => [s, 0]));
const FIX = fileURLToPath(new URL('../fixtures/proc/', import.meta.url));
const ROOT = join(FIX, 'root');
const GOLDEN = fileURLToPath(new URL('../golden/states/', import.meta.url));
const [PID_V4, PID_V6, PID_MAPPED] = readFileSync(join(FIX, 'pids.txt'), 'utf8').trim().split('\n').map(Number) as [number, number, number];

const table = readSocketTable(ROOT, { udp: true });
const scan = scanSocketOwners(ROOT);
const procs = new Map([...scan.scanned].map((p) => [p, readProcessInfo(ROOT, p)!]));
const items = socketItems(table.entries, scan.owners, procs);
const q = (over: Partial<StatesQuery> = {}): StatesQuery => ({ by: 'state', listening: true, udp: false, ...over });

/** Compares with a golden file; UPDATE_GOLDEN=1 rewrites it (review the diff before committing). */
function golden(name: string, actual: string): void {
  const file = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, actual);
    if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`golden ${name} was missing and has been written; re-run`);
  }
  assert.equal(actual, readFileSync(file, 'utf8'), `golden ${name}`);
}

test('counts per state over the captured tables (TCP, then UDP apart)', () => {
  const r = countStates(items, 'sockets', q({ udp: true }));
  assert.deepEqual(r, {
    source: 'sockets',
    states: { LISTEN: 6, ESTABLISHED: 14, CLOSE_WAIT: 3, FIN_WAIT2: 3, TIME_WAIT: 3, SYN_SENT: 3 },
    total: 32,
    udp: { states: { UNCONN: 4, ESTABLISHED: 2 }, total: 6 },
  });
  assert.deepEqual(statesJson(countStates(items, 'sockets', q())), {
    source: 'sockets',
    states: { ...ZERO, LISTEN: 6, ESTABLISHED: 14, CLOSE_WAIT: 3, FIN_WAIT2: 3, TIME_WAIT: 3, SYN_SENT: 3 },
    total: 32,
  });
});

test('--no-listening drops LISTEN and unconnected UDP', () => {
  const r = countStates(items, 'sockets', q({ listening: false, udp: true }));
  assert.deepEqual(r.states, { ESTABLISHED: 14, CLOSE_WAIT: 3, FIN_WAIT2: 3, TIME_WAIT: 3, SYN_SENT: 3 });
  assert.equal(r.total, 26);
  assert.deepEqual(r.udp, { states: { ESTABLISHED: 2 }, total: 2 });
});

test('--port matches either end; --host matches the remote end by CIDR (v4-mapped as IPv4)', () => {
  assert.deepEqual(countStates(items, 'sockets', q({ ports: [8080] })).states, { LISTEN: 1 });
  assert.deepEqual(countStates(items, 'sockets', q({ ports: [9, 8443] })).states, { SYN_SENT: 3, LISTEN: 1 });
  const v4 = countStates(items, 'sockets', q({ hosts: [parseCidr('127.0.0.0/8')!] }));
  assert.deepEqual(v4.states, { ESTABLISHED: 10, CLOSE_WAIT: 2, FIN_WAIT2: 2, TIME_WAIT: 2, SYN_SENT: 2 });
  const v6 = countStates(items, 'sockets', q({ hosts: [parseCidr('::1')!] }));
  assert.deepEqual(v6.states, { ESTABLISHED: 4, FIN_WAIT2: 1, CLOSE_WAIT: 1, TIME_WAIT: 1, SYN_SENT: 1 });
  assert.equal(countStates(items, 'sockets', q({ hosts: [parseCidr('10.0.0.0/8')!] })).total, 0);
});

test('servicePort: local port when something listens there, else the remote port', () => {
  const listening = new Set([80]);
  assert.equal(servicePort(80, 50000, listening), 80);
  assert.equal(servicePort(50000, 80, listening), 80);
  assert.equal(servicePort(50000, 443, listening), 443);
  assert.equal(servicePort(8080, 0, listening), 8080);
  // The listener on 443 has closed: the end that is not ephemeral is the service.
  assert.equal(servicePort(443, 40000, listening), 443);
  assert.equal(servicePort(40000, 443, listening), 443);
  assert.equal(servicePort(1000, 2000, listening, [900, 1100]), 2000);
});

test('--by port groups both ends of a connection under the port it was made to, sorted by total', () => {
  const r = countStates(items, 'sockets', q({ by: 'port', top: 4 }));
  assert.equal(r.by, 'port');
  assert.deepEqual(
    r.groups!.map((g) => [g.key, g.states, g.total]),
    [
      ['35941', { LISTEN: 1, ESTABLISHED: 6 }, 7],
      ['40673', { LISTEN: 1, ESTABLISHED: 4 }, 5],
      ['42913', { LISTEN: 1, ESTABLISHED: 4 }, 5],
      ['9', { SYN_SENT: 3 }, 3],
    ],
  );
  assert.equal(r.omitted, 10);
  assert.equal(r.total, 32); // totals are over every group, not only the top ones
});

test('--by process: owners from the fd scan; TIME_WAIT belongs to no process; unseen owners are counted', () => {
  const r = countStates(items, 'sockets', q({ by: 'process', udp: true }));
  assert.deepEqual(
    r.groups!.map((g) => [g.key, g.pid, g.comm, g.total, g.udp!.total]),
    [
      [String(PID_V4), PID_V4, 'node', 14, 2],
      [String(PID_V6), PID_V6, 'node', 9, 3],
      [String(PID_MAPPED), PID_MAPPED, 'node', 6, 1],
      ['-', null, null, 3, 0],
    ],
  );
  assert.equal(r.unattributed, 0);
  // As an unprivileged user sees it: only its own process (the nobody-owned one) is readable.
  const own = scanSocketOwners(ROOT, { pids: [PID_MAPPED] });
  const mine = countStates(socketItems(table.entries, own.owners, procs), 'sockets', q({ by: 'process' }));
  assert.deepEqual(
    mine.groups!.map((g) => [g.key, g.total]),
    [
      ['?', 23],
      [String(PID_MAPPED), 6],
      ['-', 3],
    ],
  );
  assert.equal(mine.unattributed, 23);
  assert.equal(
    renderStates(mine, { width: 80 }).split('\n').at(-2),
    '23 sockets could not be attributed — run with sudo to see all',
  );
});

test('a socket shared after fork goes to the lowest pid, marked shared', () => {
  const e = table.entries.find((x) => x.localPort === 8080)!;
  const owners = new Map([[e.inode, [5, 9]]]);
  const p = new Map([
    [5, { comm: 'nginx', uid: 0 }],
    [9, { comm: 'nginx', uid: 33 }],
  ]);
  const r = countStates(socketItems([e], owners, p), 'sockets', q({ by: 'process' }));
  assert.deepEqual(r.groups, [{ key: '5', states: { LISTEN: 1 }, total: 1, pid: 5, comm: 'nginx', shared: true }]);
});

test('--by remote groups by the peer address text, as in conntrack records', () => {
  const r = countStates(items, 'sockets', q({ by: 'remote' }));
  assert.deepEqual(
    r.groups!.map((g) => [g.key, g.total]),
    [
      ['127.0.0.1', 14],
      ['::1', 8],
      ['::', 4],
      ['::ffff:127.0.0.1', 4],
      ['0.0.0.0', 2],
    ],
  );
});

function flow(o: Partial<FlowRecord> & { orig: FlowRecord['orig'] }): FlowRecord {
  return {
    kind: 'dump',
    ctId: 1,
    family: 4,
    proto: 6,
    tcpState: 3,
    status: IPS.CONFIRMED | IPS.SEEN_REPLY | IPS.ASSURED,
    mark: 0,
    zone: null,
    timeout: 100,
    use: 1,
    reply: { src: o.orig.dst, dst: o.orig.src, sport: o.orig.dport, dport: o.orig.sport, icmp: null },
    origCounters: null,
    replyCounters: null,
    startMs: null,
    stopMs: null,
    eventMs: null,
    skOrig: null,
    skReply: null,
    ...o,
  };
}
const t4 = (src: string, sport: number, dst: string, dport: number) => ({ src, dst, sport, dport, icmp: null });

const FLOWS: FlowRecord[] = [
  flow({ orig: t4('10.231.0.1', 40000, '10.231.0.2', 80), tcpState: 3 }), // outbound
  flow({ orig: t4('10.231.0.1', 40001, '10.231.0.2', 80), tcpState: 7 }), // outbound, TIME_WAIT
  flow({ orig: t4('10.231.0.9', 50000, '10.231.0.1', 22), tcpState: 3 }), // inbound
  // inbound with DNAT: :8080 redirected to local :80
  flow({ orig: t4('10.231.0.9', 50001, '10.99.0.1', 8080), reply: t4('10.231.0.1', 80, '10.231.0.9', 50001), tcpState: 1 }),
  flow({ orig: t4('192.0.2.1', 1234, '198.51.100.1', 443), tcpState: 9 }), // forwarded, SYN_SENT2
  flow({ orig: t4('10.231.0.1', 40002, '10.231.0.2', 9), tcpState: 1, status: IPS.CONFIRMED }),
  flow({ orig: t4('10.231.0.1', 5353, '10.231.0.2', 53), proto: 17, tcpState: null, status: IPS.CONFIRMED }),
  flow({ orig: t4('10.231.0.1', 5354, '10.231.0.2', 53), proto: 17, tcpState: null, status: IPS.CONFIRMED | IPS.SEEN_REPLY }),
  flow({ orig: { src: '10.231.0.1', dst: '10.231.0.2', sport: null, dport: null, icmp: { type: 8, code: 0, id: 1 } }, proto: 1 }),
];
const LOCAL = new Set(['127.0.0.1', '10.231.0.1']);

test('conntrack flows: conntrack state names, one per flow, ICMP left out, UDP on request', () => {
  const r = countStates(flowItems(FLOWS, LOCAL), 'conntrack', q({ udp: true }));
  assert.deepEqual(r, {
    source: 'conntrack',
    states: { ESTABLISHED: 2, TIME_WAIT: 1, SYN_SENT: 2, SYN_SENT2: 1 },
    total: 6,
    udp: { states: { UNREPLIED: 1, REPLIED: 1 }, total: 2 },
  });
});

test('conntrack flows: remote end is the peer of the local end; port is the one dialled', () => {
  const it = flowItems(FLOWS, LOCAL);
  assert.deepEqual(
    it.slice(0, 5).map((x) => [x.remoteAddr, x.remotePort, x.localPort, x.servicePort]),
    [
      ['10.231.0.2', 80, 40000, 80],
      ['10.231.0.2', 80, 40001, 80],
      ['10.231.0.9', 50000, 22, 22],
      ['10.231.0.9', 50001, 80, 8080],
      ['192.0.2.1', 1234, 443, 443],
    ],
  );
  const r = countStates(it, 'conntrack', q({ by: 'port' }));
  assert.deepEqual(
    r.groups!.map((g) => [g.key, g.total]),
    [
      ['80', 2],
      ['9', 1],
      ['22', 1],
      ['443', 1],
      ['8080', 1],
    ],
  );
  // Either end, after NAT too: the DNAT'ed flow reaches local :80.
  assert.deepEqual(countStates(it, 'conntrack', q({ ports: [80] })).states, { ESTABLISHED: 1, TIME_WAIT: 1, SYN_SENT: 1 });
  assert.deepEqual(countStates(it, 'conntrack', q({ hosts: [parseCidr('10.231.0.9')!] })).states, { ESTABLISHED: 1, SYN_SENT: 1 });
});

test('diffStates: per state and per group, only what changed', () => {
  const a = countStates(items, 'sockets', q({ by: 'port' }));
  const fewer = items.filter((x) => !(x.state === 'TIME_WAIT' && x.localPort === 45800));
  const more = [...fewer, { ...items[0]!, state: 'ESTABLISHED', servicePort: 443, remotePort: 443 }];
  const b = countStates(more, 'sockets', q({ by: 'port' }));
  assert.deepEqual(diffStates(a, b), {
    states: { TIME_WAIT: -1, ESTABLISHED: 1 },
    total: 0,
    groups: [
      { key: '443', states: { ESTABLISHED: 1 }, total: 1 },
      { key: '40541', states: { TIME_WAIT: -1 }, total: -1 },
    ],
  });
  assert.deepEqual(diffStates(a, a), { states: {}, total: 0, groups: [] });
});

// Rendering at three widths, compared with golden files.
const CASES: [string, StatesQuery, 'sockets' | 'conntrack'][] = [
  ['state', q(), 'sockets'],
  ['state-udp', q({ udp: true }), 'sockets'],
  ['port', q({ by: 'port', top: 8 }), 'sockets'],
  ['port-udp', q({ by: 'port', udp: true, top: 8 }), 'sockets'],
  ['process', q({ by: 'process', udp: true }), 'sockets'],
  ['remote', q({ by: 'remote' }), 'sockets'],
  ['conntrack-port', q({ by: 'port', udp: true }), 'conntrack'],
];
for (const [name, query, source] of CASES) {
  for (const width of [60, 80, 120]) {
    test(`render ${name} at ${width} columns matches the golden file`, () => {
      const r = countStates(source === 'sockets' ? items : flowItems(FLOWS, LOCAL), source, query);
      const out = renderStates(r, { width, color: false });
      for (const line of out.split('\n')) assert.ok(line.length <= width, `line longer than ${width}: ${line}`);
      golden(`${name}-${width}.txt`, out);
    });
  }
}

test('colour only when asked: bold header, nothing else changes', () => {
  const r = countStates(items, 'sockets', q());
  const plain = renderStates(r, { width: 80 });
  const colored = renderStates(r, { width: 80, color: true });
  assert.equal(colored.replace(/\x1b\[(1|22)m/g, ''), plain);
  assert.equal(colored.split('\n')[0], '\x1b[1mSTATE        SOCKETS\x1b[22m');
});

// The command through buildCli with a fake System.
function fakeSystem(over: Partial<System> = {}): System & { out: string[] } {
  const out: string[] = [];
  let t = Date.UTC(2026, 0, 2, 3, 4, 5);
  const term = (tty: boolean) => ({ write: (s: string) => void out.push(s), isTTY: tty, columns: () => 80, rows: () => 24 });
  return {
    out,
    conntrack: () => {
      throw new Error('no conntrack in this test');
    },
    procRoot: ROOT,
    stdout: term(false),
    stderr: term(false),
    stdin: null,
    env: {},
    now: () => (t += 1000),
    monotonic: () => 0,
    isRoot: false,
    pid: 1,
    clock: () => {
      throw new Error('no timers in this test');
    },
    liveTerminal: () => null,
    ...over,
  };
}

async function run(args: string[], sys = fakeSystem()): Promise<{ sys: ReturnType<typeof fakeSystem>; text: string }> {
  await buildCli(sys).exitProcess(false).parseAsync(args);
  return { sys, text: sys.out.join('') };
}

test('command: states --json is the documented shape', async () => {
  const { text } = await run(['states', '--json']);
  const j = JSON.parse(text);
  assert.deepEqual(Object.keys(j), ['source', 'states', 'total']);
  assert.deepEqual(j, { source: 'sockets', states: { ...ZERO, LISTEN: 6, ESTABLISHED: 14, CLOSE_WAIT: 3, FIN_WAIT2: 3, TIME_WAIT: 3, SYN_SENT: 3 }, total: 32 });
  // Zero-filled, in the netstat order: `jq .states.CLOSING` reads 0, not null.
  assert.deepEqual(Object.keys(j.states), [...stateOrder('sockets')]);
  assert.equal((j.states as Record<string, number>).CLOSING, 0);
});

test('command: --by port --json has groups with key/states/total', async () => {
  const { text } = await run(['states', '--by', 'port', '--top', '2', '--json']);
  const j = JSON.parse(text);
  assert.deepEqual(Object.keys(j), ['source', 'by', 'groups', 'states', 'total', 'omitted']);
  assert.deepEqual(j.groups, [
    { key: '35941', states: { ...ZERO, LISTEN: 1, ESTABLISHED: 6 }, total: 7 },
    { key: '40673', states: { ...ZERO, LISTEN: 1, ESTABLISHED: 4 }, total: 5 },
  ]);
  assert.equal(j.omitted, 12);
});

test('command: human table, -4 and --port filters', async () => {
  const { text } = await run(['states', '-4', '--port', '9,8080']);
  assert.equal(text, ['STATE     SOCKETS', 'SYN_SENT        2', 'LISTEN          1', '--------  -------', 'TOTAL           3', ''].join('\n'));
});

test('command: --source conntrack counts flows from the source; EPERM becomes a privilege error', async () => {
  const source: ConntrackSource = {
    dump: async (_f, onBatch) => {
      onBatch(FLOWS);
      return { records: FLOWS.length, malformed: 0, messages: 1, bytesRead: 0 };
    },
    dumpRaw: () => {
      throw new Error('unused');
    },
    subscribe: () => {
      throw new Error('unused');
    },
  };
  const { text } = await run(['states', '--source', 'conntrack', '--json'], fakeSystem({ conntrack: () => source }));
  assert.equal(JSON.parse(text).total, 6);
  assert.equal(JSON.parse(text).source, 'conntrack');
  const denied: ConntrackSource = {
    dump: async () => {
      throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM', errno: 1, syscall: 'sendmsg' });
    },
    dumpRaw: () => {
      throw new Error('unused');
    },
    subscribe: () => {
      throw new Error('unused');
    },
  };
  await assert.rejects(run(['states', '--source', 'conntrack'], fakeSystem({ conntrack: () => denied })), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.exitCode, 3);
    assert.equal(e.code, 'EPERM');
    return true;
  });
});

test('command: usage errors carry exit code 2', async () => {
  for (const args of [
    ['states', '--port', 'x'],
    ['states', '--host', '10.0.0.0/40'],
    ['states', '--top', '0'],
    ['states', '--count', '2'],
    ['states', '--source', 'conntrack', '--by', 'process'],
    ['states', '--by', 'nope'],
  ]) {
    await assert.rejects(run(args), (e: unknown) => {
      assert.ok(e instanceof UserError, args.join(' '));
      assert.equal(e.exitCode, 2, args.join(' '));
      return true;
    });
  }
});

test('command: --watch --json --count 3 prints one line per refresh with the change', async () => {
  const { text } = await run(['states', '--watch', '0.1', '--count', '3', '--json']);
  const lines = text.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.deepEqual(
    lines.map((l) => l.time),
    ['2026-01-02T03:04:06.000Z', '2026-01-02T03:04:07.000Z', '2026-01-02T03:04:08.000Z'],
  );
  assert.equal(lines[0].change, undefined);
  assert.deepEqual(lines[1].change, { states: {}, total: 0 });
  assert.equal(lines[2].total, 32);
});

test('command: --watch on a TTY redraws in place; without a TTY prints plain blocks', async () => {
  const tty = fakeSystem({ stdout: { write: (s) => void ttyOut.push(s), isTTY: true, columns: () => 80, rows: () => 24 } });
  const ttyOut: string[] = [];
  await buildCli(tty).exitProcess(false).parseAsync(['states', '--watch', '0.1', '--count', '2']);
  assert.equal(ttyOut.length, 2);
  assert.ok(ttyOut.every((s) => s.startsWith('\x1b[H\x1b[J')));
  const { text } = await run(['states', '--watch', '0.1', '--count', '2']);
  assert.equal(text.includes('\x1b'), false);
  assert.equal(text.split('ctacct states (sockets) every 0.1s').length, 3);
});
