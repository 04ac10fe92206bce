// /proc parsers and the reader over real files captured from this kernel (test/fixtures/proc/README.md).
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  parseCmdline,
  parseComm,
  parseHexAddr,
  parsePasswd,
  parseSocketTable,
  parseStatusUid,
  socketInode,
  tcpStateName,
  udpStateName,
} from '../../src/proc/parse.js';
import { createUserNames, readProcessInfo, readSocketTable, scanSocketOwners, scanSocketOwnersAsync } from '../../src/proc/reader.js';
import { parseSsStates } from '../helpers/ss.js';

const FIX = fileURLToPath(new URL('../fixtures/proc/', import.meta.url));
const ROOT = join(FIX, 'root');
const read = (p: string) => readFileSync(join(FIX, p), 'latin1');
const [PID_V4, PID_V6, PID_MAPPED] = read('pids.txt').trim().split('\n').map(Number) as [number, number, number];

test('TCP state numbers map to the netstat names; 12 (request socket) counts as SYN_RECV', () => {
  const names = Array.from({ length: 13 }, (_, i) => tcpStateName(i));
  assert.deepEqual(names, [
    'STATE_0',
    'ESTABLISHED',
    'SYN_SENT',
    'SYN_RECV',
    'FIN_WAIT1',
    'FIN_WAIT2',
    'TIME_WAIT',
    'CLOSE',
    'CLOSE_WAIT',
    'LAST_ACK',
    'LISTEN',
    'CLOSING',
    'SYN_RECV',
  ]);
  assert.equal(udpStateName(7), 'UNCONN');
  assert.equal(udpStateName(1), 'ESTABLISHED');
  assert.equal(udpStateName(3), 'STATE_3');
});

test('hex addresses: host byte order per 32-bit word, RFC 5952, v4-mapped dotted', () => {
  assert.deepEqual(parseHexAddr('0100007F', true), { family: 4, addr: '127.0.0.1' });
  assert.deepEqual(parseHexAddr('7F000001', false), { family: 4, addr: '127.0.0.1' });
  assert.deepEqual(parseHexAddr('00000000', true), { family: 4, addr: '0.0.0.0' });
  assert.deepEqual(parseHexAddr('00000000000000000000000001000000', true), { family: 6, addr: '::1' });
  assert.deepEqual(parseHexAddr('0000000000000000FFFF00000100007F', true), { family: 6, addr: '::ffff:127.0.0.1' });
  assert.deepEqual(parseHexAddr('310200FD000000000000000001000000', true), { family: 6, addr: 'fd00:231::1' });
  assert.deepEqual(parseHexAddr('B80D0120000000000000000001000000', true), { family: 6, addr: '2001:db8::1' });
  // Big-endian hosts print the words in network order.
  assert.deepEqual(parseHexAddr('FD000231000000000000000000000001', false), { family: 6, addr: 'fd00:231::1' });
  assert.equal(parseHexAddr('0100007', true), null);
  assert.equal(parseHexAddr('0100007G', true), null);
});

test('/proc/net/tcp (captured): every line, exact fields', () => {
  const t = parseSocketTable(read('root/net/tcp'), 'tcp', 4, true);
  assert.equal(t.malformed, 0);
  assert.equal(t.entries.length, 16);
  assert.deepEqual(t.entries[1], {
    proto: 'tcp',
    family: 4,
    localAddr: '127.0.0.1',
    localPort: 8080,
    remoteAddr: '0.0.0.0',
    remotePort: 0,
    state: 'LISTEN',
    stateNum: 10,
    uid: 0,
    inode: 11312,
    txQueue: 0,
    rxQueue: 0,
  });
  // TIME_WAIT sockets belong to no process: inode 0.
  const tw = t.entries.filter((e) => e.state === 'TIME_WAIT');
  assert.deepEqual(
    tw.map((e) => [e.localPort, e.remotePort, e.inode]),
    [
      [45800, 40541, 0],
      [45816, 40541, 0],
    ],
  );
  // SYN_SENT: one unacknowledged SYN in the send queue.
  const syn = t.entries.filter((e) => e.state === 'SYN_SENT');
  assert.deepEqual(
    syn.map((e) => [e.remotePort, e.txQueue, e.inode]),
    [
      [9, 1, 11330],
      [9, 1, 11331],
    ],
  );
});

test('/proc/net/tcp6 (captured): ::1, wildcard ::, v4-mapped, non-root uid', () => {
  const t = parseSocketTable(read('root/net/tcp6'), 'tcp', 6, true);
  assert.equal(t.malformed, 0);
  assert.equal(t.entries.length, 16);
  assert.deepEqual(
    t.entries.slice(0, 5).map((e) => [e.localAddr, e.localPort, e.remoteAddr, e.remotePort, e.state, e.uid]),
    [
      ['::1', 8443, '::', 0, 'LISTEN', 0],
      ['::', 9090, '::', 0, 'LISTEN', 65534],
      ['::', 42913, '::', 0, 'LISTEN', 65534],
      ['::1', 40673, '::', 0, 'LISTEN', 0],
      ['::ffff:127.0.0.1', 42913, '::ffff:127.0.0.1', 45238, 'ESTABLISHED', 65534],
    ],
  );
  assert.equal(t.entries.filter((e) => e.localAddr.startsWith('::ffff:')).length, 4);
  assert.ok(t.entries.every((e) => e.family === 6));
});

test('/proc/net/udp and udp6 (captured): wildcard binds are UNCONN, connected ones ESTABLISHED', () => {
  const u4 = parseSocketTable(read('root/net/udp'), 'udp', 4, true);
  const u6 = parseSocketTable(read('root/net/udp6'), 'udp', 6, true);
  assert.equal(u4.malformed + u6.malformed, 0);
  assert.deepEqual(
    [...u4.entries, ...u6.entries].map((e) => `${e.localAddr}:${e.localPort}>${e.remoteAddr}:${e.remotePort} ${e.state} uid=${e.uid}`),
    [
      '0.0.0.0:5353>0.0.0.0:0 UNCONN uid=0',
      '127.0.0.1:45288>127.0.0.1:5353 ESTABLISHED uid=0',
      ':::5353>:::0 UNCONN uid=0',
      ':::5354>:::0 UNCONN uid=65534',
      'fd00:231::1:5355>:::0 UNCONN uid=0',
      '::1:47337>::1:5353 ESTABLISHED uid=0',
    ],
  );
});

test('malformed lines are counted, not thrown; the header and blank lines are neither', () => {
  const good = read('root/net/tcp').split('\n');
  const text = [
    good[0],
    good[1],
    '   1: garbage',
    '   2: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000     0        0 1 1',
    '   3: 0100007F:XYZ1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1',
    '   4: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1',
    '   5: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     x        0 1 1',
    '   6: 00000000000000000000000001000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1',
    '',
    good[2],
    '',
  ].join('\n');
  const t = parseSocketTable(text, 'tcp', 4, true);
  assert.equal(t.entries.length, 2);
  assert.equal(t.malformed, 6);
  assert.deepEqual(parseSocketTable('', 'tcp', 4), { entries: [], malformed: 0 });
});

test('state counts from the captured tables equal ss -tan taken at the same moment', () => {
  const t = readSocketTable(ROOT);
  const ours: Record<string, number> = {};
  for (const e of t.entries) ours[e.state] = (ours[e.state] ?? 0) + 1;
  const ss = parseSsStates(read('ss-tan.txt'));
  assert.deepEqual(ours, ss.states);
  assert.equal(t.entries.length, ss.total);
  assert.deepEqual(ss.states, { LISTEN: 6, ESTABLISHED: 14, CLOSE_WAIT: 3, SYN_SENT: 3, TIME_WAIT: 3, FIN_WAIT2: 3 });
  const u = readSocketTable(ROOT, { tcp: false, udp: true });
  const ssu = parseSsStates(read('ss-uan.txt'));
  const oursU: Record<string, number> = {};
  for (const e of u.entries) oursU[e.state] = (oursU[e.state] ?? 0) + 1;
  assert.deepEqual(oursU, ssu.states);
  assert.deepEqual(oursU, { UNCONN: 4, ESTABLISHED: 2 });
});

test('readSocketTable: family selection and missing tables', () => {
  assert.equal(readSocketTable(ROOT, { families: [4] }).entries.length, 16);
  assert.equal(readSocketTable(ROOT, { families: [6] }).entries.length, 16);
  assert.equal(readSocketTable(ROOT, { udp: true }).entries.length, 38);
  const dir = mkdtempSync(join(tmpdir(), 'ctacct-proc-'));
  try {
    mkdirSync(join(dir, 'net'));
    writeFileSync(join(dir, 'net', 'tcp'), read('root/net/tcp'));
    const t = readSocketTable(dir, { udp: true });
    assert.equal(t.entries.length, 16);
    assert.deepEqual(t.missing, ['tcp6', 'udp', 'udp6']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('process files: status Uid, comm, cmdline, fd link targets, passwd', () => {
  assert.equal(parseStatusUid(read(`root/${PID_MAPPED}/status`)), 65534);
  assert.equal(parseStatusUid(read(`root/${PID_V4}/status`)), 0);
  assert.equal(parseStatusUid('Name:\tx\n'), null);
  assert.equal(parseComm(read(`root/${PID_V4}/comm`)), 'node');
  assert.equal(parseComm('nginx'), 'nginx');
  const argv = parseCmdline(read(`root/${PID_MAPPED}/cmdline`));
  assert.equal(argv.length, 3);
  assert.equal(argv[0], 'node');
  assert.match(argv[1]!, /test\/helpers\/tcp-states\.mjs$/);
  assert.equal(argv[2], '{"host":"::ffff:127.0.0.1","listenHost":"::","listen":[9090],"established":2,"udp":[{"host":"::","port":5354}]}');
  assert.deepEqual(parseCmdline('nginx: worker process'), ['nginx: worker process']);
  assert.deepEqual(parseCmdline('a\0\0b\0'), ['a', '', 'b']);
  assert.deepEqual(parseCmdline(''), []);
  assert.equal(socketInode('socket:[11312]'), 11312);
  assert.equal(socketInode('pipe:[10944]'), null);
  assert.equal(socketInode('anon_inode:[eventpoll]'), null);
  assert.equal(socketInode('socket:[]'), null);
  assert.equal(socketInode('/dev/null'), null);
  const users = parsePasswd(read('passwd'));
  assert.deepEqual([...users], [
    [0, 'root'],
    [1, 'daemon'],
    [65534, 'nobody'],
  ]);
  const name = createUserNames(join(FIX, 'passwd'));
  assert.equal(name(65534), 'nobody');
  assert.equal(name(4242), '4242');
  assert.equal(createUserNames(join(FIX, 'no-such-passwd'))(0), '0');
});

test('scanSocketOwners over the captured fd links: every socket inode of the helpers', () => {
  const s = scanSocketOwners(ROOT);
  assert.deepEqual(s.stats, { pids: 3, fds: 98, sockets: 35, vanished: 0, denied: 0, truncated: false });
  assert.deepEqual(s.owners.get(11312), [PID_V4]); // the :8080 listener
  assert.deepEqual(s.owners.get(12352), [PID_V6]); // the [::1]:8443 listener
  assert.deepEqual(s.owners.get(11340), [PID_MAPPED]); // udp6 :::5354
  // Every socket in the tables with an inode has its owner; TIME_WAIT (inode 0) has none.
  const t = readSocketTable(ROOT, { udp: true });
  const withInode = t.entries.filter((e) => e.inode !== 0);
  assert.equal(withInode.length, 35);
  assert.ok(withInode.every((e) => s.owners.has(e.inode)));
  assert.equal(s.owners.has(0), false);
  // A candidate subset scans only those pids; a pid that is gone counts as vanished.
  const sub = scanSocketOwners(ROOT, { pids: [PID_MAPPED, 999999] });
  assert.deepEqual([...sub.scanned], [PID_MAPPED]);
  assert.equal(sub.owners.size, 7); // 2 listeners, 2 + 2 ends of its connections, 1 UDP
  assert.equal(sub.stats.vanished, 1);
  assert.equal(scanSocketOwners(ROOT, { maxFds: 10 }).stats.truncated, true);
});

test('scanSocketOwnersAsync finds exactly what the sync scan finds', async () => {
  const a = await scanSocketOwnersAsync(ROOT, { concurrency: 2 });
  const s = scanSocketOwners(ROOT);
  assert.deepEqual([...a.owners].sort((x, y) => x[0] - y[0]), [...s.owners].sort((x, y) => x[0] - y[0]));
  assert.deepEqual(a.stats, s.stats);
});

test('scan tolerates vanishing fds and processes; shared sockets list every pid ascending', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctacct-proc-'));
  try {
    for (const pid of [30, 7, 12]) mkdirSync(join(dir, String(pid), 'fd'), { recursive: true });
    symlinkSync('socket:[500]', join(dir, '30', 'fd', '3'));
    symlinkSync('socket:[500]', join(dir, '7', 'fd', '4'));
    symlinkSync('socket:[500]', join(dir, '7', 'fd', '5')); // dup'ed fd: pid 7 once
    symlinkSync('socket:[501]', join(dir, '12', 'fd', '3'));
    writeFileSync(join(dir, '12', 'fd', '9'), ''); // not a link: readlink says EINVAL, counted as vanished
    writeFileSync(join(dir, '44'), ''); // a pid entry that is not a directory (process gone mid-scan)
    mkdirSync(join(dir, 'self'));
    const s = scanSocketOwners(dir);
    assert.deepEqual(s.owners.get(500), [7, 30]);
    assert.deepEqual(s.owners.get(501), [12]);
    assert.deepEqual(s.stats, { pids: 3, fds: 4, sockets: 4, vanished: 2, denied: 0, truncated: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readProcessInfo: captured process, and null once it is gone', () => {
  const info = readProcessInfo(ROOT, PID_MAPPED);
  assert.ok(info);
  assert.equal(info.pid, PID_MAPPED);
  assert.equal(info.comm, 'node');
  assert.equal(info.uid, 65534);
  assert.equal(info.argv.length, 3);
  assert.equal(info.cmdline, info.argv.join(' '));
  assert.equal(readProcessInfo(ROOT, 999999), null);
});
