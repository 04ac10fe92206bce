// The close tracker's pure parts (tracefs format, BTF offsets) and how accounting uses what it
// names: a connection whose socket is gone goes to the process that closed it, within the rules
// (shared sockets, hand-over after fork, a close older than the flow, a reused pid).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Accounting } from '../../src/core/accounting.js';
import { localAddressSet } from '../../src/core/flow.js';
import { structOffsets } from '../../src/netlink/btf.js';
import { openCloseTracker, parseTracepointFormat } from '../../src/netlink/closer.js';
import type { Addon } from '../../src/netlink/addon.js';
import { hit, rec } from '../fakes/records.js';
import { resolver, world, type FakeWorld } from '../fakes/owners.js';

const FORMAT = readFileSync(fileURLToPath(new URL('../fixtures/tracefs/inet_sock_set_state.format', import.meta.url)), 'utf8');

describe('tracepoint format', () => {
  test('offsets of the fields the program reads (kernel 6.18)', () => {
    assert.deepEqual(parseTracepointFormat(FORMAT), { newstate: 20, protocol: 30, sport: 24, dport: 26, saddr_v6: 40, daddr_v6: 56 });
  });
  test('a missing field or another size: refused', () => {
    assert.equal(parseTracepointFormat(FORMAT.replace(/field:__u8 daddr_v6\[16\];[^\n]*\n/, '')), null);
    assert.equal(parseTracepointFormat(FORMAT.replace('field:int newstate;\toffset:20;\tsize:4;', 'field:long newstate;\toffset:20;\tsize:8;')), null);
    assert.equal(parseTracepointFormat(''), null);
  });
});

/** A BTF blob: int, a pointer, struct task_struct { int pid; union { struct task_struct *group_leader; }; u64 start_boottime @200; }. */
function tinyBtf(): Uint8Array {
  const strs = ['', 'int', 'task_struct', 'pid', 'group_leader', 'start_boottime'];
  const off: Record<string, number> = {};
  let strBuf = '';
  for (const s of strs) {
    off[s] = strBuf.length;
    strBuf += s + '\0';
  }
  const words: number[] = [];
  const type = (name: number, kind: number, vlen: number, sizeOrType: number, kflag = 0) => words.push(name, (kflag << 31) | (kind << 24) | vlen, sizeOrType);
  type(off.int!, 1, 0, 4); // [1] INT
  words.push(32);
  type(0, 2, 0, 3); // [2] PTR -> 3
  type(off.task_struct!, 4, 3, 208); // [3] STRUCT task_struct
  words.push(off.pid!, 1, 0);
  words.push(0, 4, 64); // anonymous union at byte 8
  words.push(off.start_boottime!, 1, 200 * 8);
  type(0, 5, 1, 8); // [4] UNION (anonymous)
  words.push(off.group_leader!, 2, 0);
  const types = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => types.writeUInt32LE(w >>> 0, i * 4));
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(0xeb9f, 0);
  hdr.writeUInt8(1, 2);
  hdr.writeUInt32LE(24, 4);
  hdr.writeUInt32LE(0, 8);
  hdr.writeUInt32LE(types.length, 12);
  hdr.writeUInt32LE(types.length, 16);
  hdr.writeUInt32LE(strBuf.length, 20);
  return Buffer.concat([hdr, types, Buffer.from(strBuf, 'latin1')]);
}

describe('BTF struct offsets', () => {
  test('members, anonymous unions entered', () => {
    assert.deepEqual(structOffsets(tinyBtf(), 'task_struct', ['group_leader', 'start_boottime']), { group_leader: 8, start_boottime: 200 });
  });
  test('missing struct or member, bad magic: null', () => {
    assert.equal(structOffsets(tinyBtf(), 'sock', ['x']), null);
    assert.equal(structOffsets(tinyBtf(), 'task_struct', ['nope']), null);
    const bad = Buffer.from(tinyBtf());
    bad[0] = 0;
    assert.equal(structOffsets(bad, 'task_struct', ['pid']), null);
    assert.equal(structOffsets(new Uint8Array(10), 'task_struct', ['pid']), null);
  });
  test('the running kernel (when it has BTF): task_struct has both members', { skip: existsSync('/sys/kernel/btf/vmlinux') ? false : 'no /sys/kernel/btf/vmlinux here' }, () => {
    const o = structOffsets(readFileSync('/sys/kernel/btf/vmlinux'), 'task_struct', ['group_leader', 'start_boottime', 'pid', 'tgid']);
    assert.ok(o, 'task_struct not found');
    const { pid, tgid, group_leader, start_boottime } = o as Record<string, number>;
    assert.equal(tgid, pid! + 4); // pid_t pid; pid_t tgid; — adjacent in every kernel since 2.6
    assert.ok(group_leader! > tgid! && start_boottime! > group_leader!);
  });
});

describe('openCloseTracker never throws', () => {
  test('no tracefs: a reason', () => {
    const r = openCloseTracker(() => ({}) as Addon, () => ({ error: 'tracefs is not mounted' }));
    assert.equal(r.tracker, null);
    assert.match((r as { message: string }).message, /tracefs/);
  });
  test('in a nested pid namespace: not loaded (the kernel numbers processes differently)', () => {
    let loaded = false;
    const addon = { closerOpen: () => ((loaded = true), {}) } as unknown as Addon;
    const r = openCloseTracker(() => addon, () => ({ id: 1, format: FORMAT }), () => ({}), () => 'Name:\tnode\nNSpid:\t48213\t7\n');
    assert.equal(r.tracker, null);
    assert.equal((r as { code: string }).code, 'ENOTSUP');
    assert.equal(loaded, false);
    const host = openCloseTracker(() => addon, () => ({ id: 1, format: FORMAT }), () => ({}), () => 'Name:\tnode\nNSpid:\t48213\n');
    assert.ok(host.tracker);
    assert.equal(loaded, true);
  });
  test('the kernel refuses the program: a coded reason', () => {
    const addon = {
      closerOpen() {
        throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' });
      },
    } as unknown as Addon;
    const r = openCloseTracker(() => addon, () => ({ id: 1, format: FORMAT }), () => ({}));
    assert.equal(r.tracker, null);
    assert.equal((r as { code: string }).code, 'EPERM');
  });
});

const HOST = '10.0.0.1';
const CLIENT = '198.51.100.7';
const local = localAddressSet([HOST]);
let w: FakeWorld;
let acc: Accounting;

const dump = (...records: ReturnType<typeof rec>[]) => {
  acc.beginDump();
  acc.dumpBatch(records);
  acc.endDump();
};
const snap = () => {
  w.clock.t += 1000;
  return acc.snapshot({ groupBy: 'process', sort: 'total', time: 't' });
};
const key = (sport: number) => `${HOST}:80 ${CLIENT}:${sport}`;
const conn = (sport: number, orig: [number, number] | null, reply: [number, number] | null, kind: 'new' | 'dump' = 'dump', tcpState = 3) =>
  rec({ kind, id: sport, src: CLIENT, sport, dst: HOST, dport: 80, orig, reply, tcpState, skReply: kind === 'new' ? hit(5000, 33, 10) : null });

describe('accounting with the close tracker', () => {
  beforeEach(() => {
    w = world();
    w.closers = new Map();
    // Pre-fork: master 100 and workers 101, 102 hold the listener.
    w.sockets.set(`${HOST}:80 *`, { inode: 5000, uid: 33, state: 10 });
    for (const p of [100, 101, 102]) {
      w.fds.set(p, [5000]);
      w.procs.set(p, { pid: p, comm: 'srv', cmdline: `srv ${p}`, uid: 33, startTime: p });
    }
    w.parents = new Map([
      [101, 100],
      [102, 100],
    ]);
    acc = new Accounting(() => local, resolver(w), () => w.clock.t);
    dump();
    acc.startInterval();
  });

  test('accepted and closed between two looks: the worker that closed it, not the listener', () => {
    acc.eventBatch([conn(51000, null, null, 'new')]);
    // Worker 102 accepted, served and closed before any look: the socket is gone (the kernel
    // answers with the listener), the tracker names 102.
    w.closers!.set(key(51000), { pid: 102, uid: 33, comm: 'srv', startTime: 102, agoMs: 3 });
    w.clock.t += 5;
    acc.recheck();
    dump(conn(51000, [20, 30_000], [15, 900], 'dump', 7));
    const s = snap();
    assert.equal(s.rows.find((r) => r.pid === 102)?.recv_total, 30_000);
    assert.equal(s.rows.find((r) => r.pid === 100)?.recv_total ?? 0, 0);
    assert.equal(acc.health.acceptsMissed, 0);
  });

  test('a close older than the flow belongs to an earlier connection on the 4-tuple: ignored', () => {
    w.clock.t = 100_000;
    acc.eventBatch([conn(51001, null, null, 'new')]);
    w.closers!.set(key(51001), { pid: 101, uid: 33, comm: 'srv', startTime: 101, agoMs: 60_000 });
    w.clock.t += 5;
    acc.recheck();
    dump(conn(51001, [20, 30_000], [15, 900], 'dump', 7));
    const s = snap();
    assert.equal(s.rows.find((r) => r.pid === 101)?.recv_total ?? 0, 0);
    assert.equal(s.rows.find((r) => r.pid === 100)?.recv_total, 30_000, 'stays with the listening service');
    assert.equal(acc.health.acceptsMissed, 1);
  });

  test('fork after accept: seen shared by the acceptor and its child, settled on the child that closed it', () => {
    w.procs.set(150, { pid: 150, comm: 'srv', cmdline: 'srv child', uid: 33, startTime: 150 });
    w.parents!.set(150, 100);
    acc.eventBatch([conn(51002, null, null, 'new')]);
    // 100 accepted and forked 150; both hold the socket at the look.
    w.sockets.set(key(51002), { inode: 5200, uid: 33, state: 1 });
    w.fds.set(100, [5000, 5200]);
    w.fds.set(150, [5200]);
    w.clock.t += 5;
    acc.recheck();
    assert.equal(snap().rows.find((r) => r.new_flows === 1)?.shared, true);
    // 100 closed its copy; 150 served and closed the connection, then exited.
    w.sockets.delete(key(51002));
    w.fds.set(100, [5000]);
    w.fds.delete(150);
    w.procs.delete(150);
    w.closers!.set(key(51002), { pid: 150, uid: 33, comm: 'srv', startTime: 150, agoMs: 1 });
    dump(conn(51002, [20, 40_000], [15, 900], 'dump', 7));
    const s = snap();
    const child = s.rows.find((r) => r.pid === 150)!;
    assert.equal(child.recv_total, 40_000);
    assert.equal(child.start_time, 150);
    assert.equal(s.rows.find((r) => r.pid === 100)?.recv_total ?? 0, 0);
  });

  test('a client socket shared across fork keeps the lowest pid whoever closes it', () => {
    w.sockets.set(`${HOST}:7000 192.0.2.9:443`, { inode: 6000, uid: 0, state: 1 });
    w.fds.set(600, [6000]);
    w.fds.set(650, [6000]);
    w.parents!.set(650, 600);
    w.procs.set(600, { pid: 600, comm: 'parent', cmdline: 'parent', uid: 0, startTime: 1 });
    w.procs.set(650, { pid: 650, comm: 'child', cmdline: 'child', uid: 0, startTime: 2 });
    const out = (state: number) => rec({ id: 9, src: HOST, sport: 7000, dst: '192.0.2.9', dport: 443, orig: [1, 500], reply: [1, 900], tcpState: state });
    dump(out(3));
    w.closers!.set(`${HOST}:7000 192.0.2.9:443`, { pid: 650, uid: 0, comm: 'child', startTime: 2, agoMs: 1 });
    dump(out(7));
    const row = snap().rows.find((r) => r.sent_total === 500)!;
    assert.equal(row.pid, 600);
    assert.equal(row.shared, true);
  });

  test('a pid reused since the close: the recorded process, not the live one', () => {
    acc.eventBatch([conn(51003, null, null, 'new')]);
    // The closer (pid 777, started at tick 50) is gone; pid 777 now belongs to another process.
    w.procs.set(777, { pid: 777, comm: 'other', cmdline: 'other', uid: 0, startTime: 900 });
    w.closers!.set(key(51003), { pid: 777, uid: 33, comm: 'oldworker', startTime: 50, agoMs: 2 });
    w.clock.t += 5;
    acc.recheck();
    dump(conn(51003, [20, 10_000], [15, 900], 'dump', 7));
    const row = snap().rows.find((r) => r.pid === 777)!;
    assert.equal(row.comm, 'oldworker');
    assert.equal(row.start_time, 50);
    assert.equal(row.recv_total, 10_000);
  });
});
