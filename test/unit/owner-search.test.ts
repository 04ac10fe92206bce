// The owner search of native/ct_owners.c (the reader thread's and JavaScript's) on fixture proc
// trees and on this process, against the JavaScript fallback that follows the same rules.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { getAddon, setAddon, type Addon } from '../../src/netlink/addon.js';
import { findSocketOwners, findSocketOwnersJs, netnsInode, type FindResult } from '../../src/proc/find.js';
import { readFamily, readFamilyJs } from '../../src/proc/reader.js';

const FIX = fileURLToPath(new URL('../fixtures/proc/', import.meta.url));
const ROOT = join(FIX, 'root');
const [PID_V4, PID_V6, PID_MAPPED] = readFileSync(join(FIX, 'pids.txt'), 'utf8').trim().split('\n').map(Number) as [number, number, number];
const addon = getAddon();

/** A FindResult in comparable form (maps and sets as sorted arrays). */
const plain = (r: FindResult) => ({
  owners: [...r.owners].sort((a, b) => a[0] - b[0]),
  scanned: [...r.scanned],
  fds: r.fds,
  exhaustive: r.exhaustive,
});

/** A proc tree in a temporary directory: `build` fills it; removed afterwards. */
function withTree(build: (dir: string) => void, run: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ctacct-owners-'));
  try {
    build(dir);
    run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function proc(dir: string, pid: number, links: Record<string, string>, netns?: number): void {
  mkdirSync(join(dir, String(pid), 'fd'), { recursive: true });
  for (const [fd, target] of Object.entries(links)) symlinkSync(target, join(dir, String(pid), 'fd', fd));
  if (netns !== undefined) {
    mkdirSync(join(dir, String(pid), 'ns'));
    symlinkSync(`net:[${netns}]`, join(dir, String(pid), 'ns', 'net'));
  }
}

test('native scan of the captured fd links: every socket of the three helpers, newest first, as JavaScript finds them', () => {
  const r = addon.scanOwners(ROOT, null, new Uint32Array(), Infinity, 0);
  assert.deepEqual([...r.scanned], [PID_MAPPED, PID_V6, PID_V4]); // highest pid first
  assert.equal(r.pairs.length, 2 * 35); // 35 socket links, one fd each
  assert.equal(r.fds, 98);
  assert.deepEqual([r.vanished, r.denied, r.failed, r.errno, r.exhaustive], [0, 0, 0, 0, true]);
  const c = findSocketOwners(ROOT, new Set());
  assert.deepEqual(c.owners.get(11312), [PID_V4]); // the :8080 listener
  assert.deepEqual(c.owners.get(12352), [PID_V6]); // the [::1]:8443 listener
  assert.deepEqual(c.owners.get(11340), [PID_MAPPED]); // udp6 :::5354
  assert.equal(c.owners.size, 35);
  assert.deepEqual(plain(c), plain(findSocketOwnersJs(ROOT, new Set())));
});

test('native scan stops after the table where the last wanted inode was met; the rest is not read', () => {
  // 11340 is the highest pid's: one table. 11312 and 11340: all three (PID_V4 is the lowest).
  const one = findSocketOwners(ROOT, new Set([11340]));
  assert.deepEqual([...one.scanned], [PID_MAPPED]);
  assert.equal(one.exhaustive, false);
  assert.equal(one.owners.size, 7); // every socket met on the way: 2 listeners, 4 connection ends, 1 UDP
  assert.deepEqual(plain(one), plain(findSocketOwnersJs(ROOT, new Set([11340]))));
  const both = findSocketOwners(ROOT, new Set([11340, 11312]));
  assert.deepEqual([...both.scanned], [PID_MAPPED, PID_V6, PID_V4]);
  assert.equal(both.exhaustive, true); // stopped at the last pid: every pid was read
  assert.deepEqual(plain(both), plain(findSocketOwnersJs(ROOT, new Set([11340, 11312]))));
  // An inode nobody holds: everything is read.
  assert.deepEqual([...findSocketOwners(ROOT, new Set([1])).scanned], [PID_MAPPED, PID_V6, PID_V4]);
  // A caller's list is read in its order, a pid that is gone skipped.
  const sub = findSocketOwners(ROOT, new Set([11312]), [PID_V4, 999999, PID_MAPPED]);
  assert.deepEqual([...sub.scanned], [PID_V4]);
  assert.equal(sub.owners.size, 16);
  // A budget of 0 reads one table.
  assert.deepEqual([...findSocketOwners(ROOT, new Set([1]), undefined, 0).scanned], [PID_MAPPED]);
  assert.deepEqual([...findSocketOwnersJs(ROOT, new Set([1]), undefined, 0).scanned], [PID_MAPPED]);
});

test('namespace rule: a process is left out only when its ns link names another namespace; a caller list is never filtered', () => {
  withTree(
    (dir) => {
      proc(dir, 10, { 3: 'socket:[500]' }, 111);
      proc(dir, 20, { 3: 'socket:[501]' }, 222); // another namespace
      proc(dir, 30, { 3: 'socket:[502]' }); // no ns link: not ruled out
      mkdirSync(join(dir, 'self'));
    },
    (dir) => {
      const ours = findSocketOwners(dir, new Set(), undefined, Infinity, 'net:[111]');
      assert.deepEqual([...ours.scanned], [30, 10]);
      assert.deepEqual([...ours.owners.keys()].sort(), [500, 502]);
      assert.equal(ours.exhaustive, true);
      assert.deepEqual(plain(ours), plain(findSocketOwnersJs(dir, new Set(), undefined, Infinity, 'net:[111]')));
      assert.deepEqual([...findSocketOwners(dir, new Set(), undefined, Infinity, null).scanned], [30, 20, 10]);
      assert.deepEqual([...findSocketOwners(dir, new Set(), [20, 10], Infinity, 'net:[111]').scanned], [20, 10]);
      // The raw binding takes the inode.
      assert.deepEqual([...addon.scanOwners(dir, null, new Uint32Array(), Infinity, 222).scanned], [30, 20]);
      assert.equal(netnsInode('net:[4026531840]'), 4026531840);
      assert.equal(netnsInode(null), 0);
      assert.equal(netnsInode('mnt:[1]'), 0);
    },
  );
});

test('errors: vanished tables and links are skipped and counted; shared and dup\'ed sockets list each pid once, ascending', () => {
  withTree(
    (dir) => {
      proc(dir, 7, { 4: 'socket:[500]', 5: 'socket:[500]', 6: 'pipe:[9]', 7: 'socket:[x]', 8: 'socket:[4294967296]' });
      proc(dir, 30, { 3: 'socket:[500]' });
      proc(dir, 12, { 3: 'socket:[501]' });
      writeFileSync(join(dir, '12', 'fd', '9'), ''); // not a link: EINVAL
      writeFileSync(join(dir, '44'), ''); // a pid entry that is not a directory: ENOTDIR
      mkdirSync(join(dir, '1abc')); // not a pid
    },
    (dir) => {
      const r = addon.scanOwners(dir, null, new Uint32Array(), Infinity, 0);
      assert.deepEqual([...r.scanned], [30, 12, 7]);
      assert.equal(r.fds, 7); // the 7 links; the plain file is not one
      assert.deepEqual([r.vanished, r.denied, r.failed], [2, 0, 0]);
      const c = findSocketOwners(dir, new Set());
      assert.deepEqual(c.owners.get(500), [7, 30]);
      assert.deepEqual(c.owners.get(501), [12]);
      assert.equal(c.owners.size, 2); // pipe, malformed and out-of-range socket links are not sockets
      assert.deepEqual(plain(c), plain(findSocketOwnersJs(dir, new Set())));
      const gone = addon.scanOwners(dir, new Uint32Array([999999]), new Uint32Array([500]), Infinity, 0);
      assert.deepEqual([gone.scanned.length, gone.vanished, gone.exhaustive], [0, 1, true]);
      assert.deepEqual([...addon.scanOwners(dir, new Uint32Array(), new Uint32Array(), Infinity, 0).scanned], []); // empty list: no pid
      assert.throws(() => addon.scanOwners(join(dir, 'nope'), null, new Uint32Array(), Infinity, 0), (e: Error & { code?: string }) => e.code === 'ENOENT');
      assert.throws(() => addon.scanOwners(dir, [1] as unknown as Uint32Array, new Uint32Array(), Infinity, 0), /scanOwners/);
    },
  );
});

test('family: parent from stat (comm with spaces and parens), children of every thread, a long children file in full', () => {
  const many = Array.from({ length: 2000 }, (_, i) => 100000 + i);
  withTree(
    (dir) => {
      for (const tid of [123, 124, 125]) mkdirSync(join(dir, '123', 'task', String(tid)), { recursive: true });
      writeFileSync(join(dir, '123', 'stat'), '123 (a b) c) S 77 123 123 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0 500 0 0\n');
      writeFileSync(join(dir, '123', 'task', '123', 'children'), '5 6 ');
      writeFileSync(join(dir, '123', 'task', '124', 'children'), '9 ');
      // 125 has no children file (a kernel without CONFIG_PROC_CHILDREN, or the thread is gone)
      mkdirSync(join(dir, '200', 'task', '200'), { recursive: true }); // no stat: parent unknown
      writeFileSync(join(dir, '200', 'task', '200', 'children'), many.join(' ') + ' ');
    },
    (dir) => {
      const f = readFamily(dir, 123);
      assert.equal(f.ppid, 77);
      assert.deepEqual([...f.children].sort((a, b) => a - b), [5, 6, 9]);
      const j = readFamilyJs(dir, 123);
      assert.deepEqual({ ...j, children: j.children.sort((a, b) => a - b) }, { ppid: 77, children: [5, 6, 9] });
      const big = readFamily(dir, 200);
      assert.equal(big.ppid, null);
      assert.deepEqual(big.children, many); // 13 KB, read in pieces: no number cut in two
      assert.deepEqual(readFamilyJs(dir, 200), big);
      assert.deepEqual(readFamily(dir, 999), { ppid: null, children: [] });
      assert.deepEqual(readFamilyJs(dir, 999), { ppid: null, children: [] });
    },
  );
});

test('this process: native and JavaScript see the same sockets and family; a child forked by a worker thread is found', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // A worker thread starts a child: the kernel lists it under the worker's task/TID/children only.
  const worker = new Worker(
    `const { spawn } = require('node:child_process'); const { parentPort } = require('node:worker_threads');
     const c = spawn('sleep', ['30'], { stdio: 'ignore' }); parentPort.postMessage(c.pid);
     parentPort.on('message', () => { c.kill(); process.exit(0); });`,
    { eval: true },
  );
  const fromMain = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const workerChild = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const n = findSocketOwners('/proc', new Set(), [process.pid]);
    const j = findSocketOwnersJs('/proc', new Set(), [process.pid]);
    assert.ok(n.owners.size >= 1, 'the listening socket at least');
    assert.deepEqual([...n.owners.keys()].sort(), [...j.owners.keys()].sort());
    assert.deepEqual([...n.scanned], [process.pid]);
    const f = readFamily('/proc', process.pid);
    assert.equal(f.ppid, process.ppid);
    assert.ok(f.children.includes(fromMain.pid!), 'child of the main thread');
    assert.ok(f.children.includes(workerChild), 'child of the worker thread');
    const fj = readFamilyJs('/proc', process.pid);
    assert.deepEqual([...fj.children].sort(), [...f.children].sort());
    assert.equal(fj.ppid, f.ppid);
    worker.postMessage('stop');
  } finally {
    fromMain.kill();
    await worker.terminate();
    server.close();
  }
});

test('wrappers: a fake addon without the search falls back to JavaScript; one with it gets typed arguments', () => {
  try {
    setAddon({} as Addon);
    assert.deepEqual(plain(findSocketOwners(ROOT, new Set([11340]))), plain(findSocketOwnersJs(ROOT, new Set([11340]))));
    assert.deepEqual(readFamily(ROOT, PID_V4), { ppid: null, children: [] }); // no stat, no task in the fixture
    const calls: unknown[][] = [];
    setAddon({
      scanOwners: (...a: unknown[]) => {
        calls.push(a);
        return { pairs: new Uint32Array([500, 9, 500, 3, 500, 9]), scanned: new Uint32Array([9, 3]), exhaustive: false, fds: 4, vanished: 0, denied: 0, failed: 0, errno: 0 };
      },
    } as unknown as Addon);
    const r = findSocketOwners('/x', new Set([500]), new Set([9, 3]), 50, 'net:[77]');
    assert.deepEqual(calls, [['/x', new Uint32Array([9, 3]), new Uint32Array([500]), 50, 77]]);
    assert.deepEqual(plain(r), { owners: [[500, [3, 9]]], scanned: [9, 3], fds: 4, exhaustive: false });
  } finally {
    setAddon(null);
  }
});
