// The reference count directory on a real file system (a temp dir) with the real flock: the last
// run removes it, a start sweeps what dead namespaces left, symlinks are never followed, and a run
// that waited on the lock of a directory being removed starts over instead of holding a dead lock.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { realHost, type Host } from '../../src/system/detect.js';
import { LOCK, lockNamespace, removeIfUnused, sweepStale } from '../../src/system/statedir.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const base = mkdtempSync(join(tmpdir(), 'ctacct-statedir-'));
after(() => rmSync(base, { recursive: true, force: true }));

const host: Host = realHost({
  conntrack: () => {
    throw new Error('no conntrack in this test');
  },
  procRoot: '/proc',
  env: process.env,
  pid: process.pid,
} as never);

let n = 0;
const fresh = () => {
  const d = join(base, `s${++n}`);
  mkdirSync(d);
  return d;
};

test('the last run out removes the directory it locked; nothing is left', () => {
  const state = fresh();
  const dir = join(state, 'net-4026532001');
  const release = lockNamespace(host, dir);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(dir), [LOCK]);
  assert.equal(removeIfUnused(host, dir), true);
  release();
  assert.deepEqual(readdirSync(state), []);
});

test('a directory holding anything but its lock stays', () => {
  const state = fresh();
  const dir = join(state, 'net-4026532002');
  const release = lockNamespace(host, dir);
  writeFileSync(join(dir, 'acct-was-0'), '1\n');
  assert.equal(removeIfUnused(host, dir), false);
  release();
  assert.deepEqual(readdirSync(dir).sort(), ['acct-was-0', LOCK]);
});

test('a symlinked namespace directory is refused and never followed', () => {
  const state = fresh();
  const target = fresh();
  writeFileSync(join(target, 'keep'), 'x');
  symlinkSync(target, join(state, 'net-4026532003'));
  assert.throws(() => lockNamespace(host, join(state, 'net-4026532003')), { code: 'ENOTDIR' });
  assert.deepEqual(sweepStale(host, state, null), []);
  assert.equal(lstatSync(join(state, 'net-4026532003')).isSymbolicLink(), true);
  assert.deepEqual(readdirSync(target), ['keep']);
});

test('a sweep removes what dead runs left and keeps what a live run or an undo needs', () => {
  const state = fresh();
  const mk = (name: string, files: Record<string, string>) => {
    mkdirSync(join(state, name));
    for (const [f, v] of Object.entries(files)) writeFileSync(join(state, name, f), v);
  };
  mk('net-1', { lock: '' });
  mk('net-2', { lock: '', 'member-999999999-1': '-\n', others: '0\n' }); // a dead run (no such pid)
  mk('net-3', { lock: '', [`member-${process.pid}-1`]: '-\n' }); // a live run
  mk('net-4', { lock: '', 'acct-was-0': '5\n' });
  mk('net-5', {}); // created, never locked
  mk('net-6', { lock: '' }); // this run's own
  mk('other', { lock: '' });
  const removed = sweepStale(host, state, join(state, 'net-6'));
  assert.deepEqual(removed.sort(), ['net-1', 'net-2', 'net-5'].map((d) => join(state, d)));
  assert.deepEqual(readdirSync(state).sort(), ['net-3', 'net-4', 'net-6', 'other']);
  assert.deepEqual(readdirSync(join(state, 'net-3')).sort(), [LOCK, `member-${process.pid}-1`]);
});

test('a start waiting on the lock of a directory being removed opens again and holds a live lock', async () => {
  const state = fresh();
  const dir = join(state, 'net-4026532004');
  const release = lockNamespace(host, dir);
  // Another process starts: it blocks in flock on the file this one holds.
  const script = `
    import { realHost } from './src/system/detect.ts';
    import { lockNamespace } from './src/system/statedir.ts';
    import { statSync } from 'node:fs';
    const host = realHost({ conntrack: () => null, procRoot: '/proc', env: process.env, pid: process.pid });
    process.stdout.write('waiting\\n');
    const release = lockNamespace(host, process.argv[1]);
    process.stdout.write('locked ' + statSync(process.argv[1] + '/lock').ino + '\\n');
    release();
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: ROOT });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  const deadline = Date.now() + 15_000;
  while (!out.includes('waiting') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.match(out, /waiting/, err);
  await new Promise((r) => setTimeout(r, 300)); // into its flock wait
  // The last run out: removes the directory under the lock, then lets go.
  assert.equal(removeIfUnused(host, dir), true);
  assert.equal(existsSync(dir), false);
  release();
  assert.equal(await exited, 0, err);
  const m = /locked (\d+)/.exec(out);
  assert.ok(m, out);
  // It made the directory again and locked a file that is there, not the one unlinked under it.
  assert.equal(existsSync(join(dir, LOCK)), true);
  assert.equal(Number(m[1]), statSync(join(dir, LOCK)).ino);
});
