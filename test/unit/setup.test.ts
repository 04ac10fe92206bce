// Set-up decisions against a fake host: the kernel-owned table, the per-namespace reference count,
// the undo on every path, leftover entries. The real kernel is in test/integration/setup.test.ts.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { EXIT, UserError } from '../../src/errors.js';
import type { System } from '../../src/system.js';
import { Lifecycle } from '../../src/system/lifecycle.js';
import { COST_NOTE, formatSetupReport, namespaceDir, prepareSystem, withSystemSetup, type SetupOptions } from '../../src/system/setup.js';
import { FakeHost, type FakeHostOptions } from '../fakes/host.js';

const ACCT = '/proc/sys/net/netfilter/nf_conntrack_acct';
const DIR = '/run/ctacct/net-4026532999';
const ON: SetupOptions = { setup: true, keepAcct: false, needConntrack: true };
const ACCT_NOTE = 'accounting was off: flows that began before now have no counters (shown as null)';

async function prepare(o: FakeHostOptions, opts: Partial<SetupOptions> = {}, host = new FakeHost(o)) {
  const handle = await prepareSystem({ ...ON, ...opts }, { host });
  return { host, handle };
}

test('namespaceDir', () => {
  assert.equal(namespaceDir('/run/ctacct', 'net:[4026532999]'), DIR);
});

test('needConntrack false: nothing is looked at or changed', async () => {
  const { host, handle } = await prepare({ acct: 0 }, { needConntrack: false });
  assert.deepEqual(host.log, []);
  assert.equal(handle.report.tracking, 'not-tracking');
  assert.deepEqual(handle.report.changes, []);
});

test('fresh namespace: acct on (marked first), probe, owned table, member; undo reverses it once', async () => {
  const { host, handle } = await prepare({ acct: 0, entries: [5, 6], count: 2 });
  assert.deepEqual(host.log, [
    `mkdir ${DIR}`,
    `write ${DIR}/member-4242-777 -`,
    `write ${DIR}/acct-was-0 4242`,
    `write ${ACCT} 1`,
    'probe',
    `write ${DIR}/others 0`,
    `write ${DIR}/entries-before 5 6`,
    'nft engage ctacct-4242 owner',
  ]);
  assert.deepEqual([...host.tables.keys()], ['ctacct-4242']);
  assert.equal(handle.report.tracking, 'engaged-by-ctacct');
  assert.equal(handle.report.engagedBy, 'ctacct');
  assert.deepEqual(
    handle.report.changes.map((c) => c.code),
    ['acct-on', 'table-engaged'],
  );
  assert.deepEqual(handle.report.notes, [
    { code: 'acct-was-off', message: ACCT_NOTE },
    { code: 'engage-cost', message: COST_NOTE },
  ]);
  host.entries.push(7, 8); // flows that exist only because ctacct engaged
  host.log.length = 0;
  await handle.undo();
  await handle.undo();
  handle.undoSync();
  assert.deepEqual(host.log, [
    'nft owner closed ctacct-4242',
    `unlink ${DIR}/member-4242-777`,
    `write ${ACCT} 0`,
    `unlink ${DIR}/acct-was-0`,
    `unlink ${DIR}/others`,
    `unlink ${DIR}/entries-before`,
    `rmdir ${DIR}`,
    'probe',
    'remove entries 7,8',
  ]);
  assert.deepEqual(host.entries, [5, 6]);
  assert.equal(host.tables.size, 0);
  assert.equal(host.locked, false);
});

test('undoSync alone does the same (without the entry removal, which needs a dump)', async () => {
  const { host, handle } = await prepare({ acct: 0 });
  handle.undoSync();
  assert.equal(host.acct, '0\n');
  assert.equal(host.tables.size, 0);
  assert.equal(host.files.has(`${DIR}/acct-was-0`), false);
  await handle.undo(); // nothing more
  assert.equal(host.acct, '0\n');
});

test('a firewall already engages conntrack: no table, only acct; entries are never touched', async () => {
  const { host, handle } = await prepare({ acct: 0, trackedByOthers: { v4: true, v6: true }, entries: [1] });
  assert.equal(host.tables.size, 0);
  assert.equal(handle.report.tracking, 'engaged-by-others');
  assert.equal(handle.report.engagedBy, 'existing');
  assert.deepEqual(handle.report.changes.map((c) => c.code), ['acct-on']);
  host.entries.push(2);
  await handle.undo();
  assert.equal(host.acct, '0\n');
  assert.deepEqual(host.entries, [1, 2]);
});

test('IPv4 tracked by others but IPv6 not: ctacct still engages its table', async () => {
  const { host, handle } = await prepare({ acct: 1, trackedByOthers: { v4: true, v6: false } });
  assert.deepEqual([...host.tables.keys()], ['ctacct-4242']);
  assert.equal(handle.report.tracking, 'engaged-by-ctacct');
  await handle.undo();
});

test('two instances: the second joins the count, engages its own table; the last out restores acct', async () => {
  const a = await prepare({ acct: 0, pid: 100, alive: { 200: 777 } });
  const host = a.host;
  // The second process: same files, another pid and table.
  const b = new FakeHost({ acct: 1, pid: 200, alive: { 100: 777 } });
  for (const [k, v] of host.files) if (k.startsWith('/run/')) b.files.set(k, v);
  const hb = await prepareSystem(ON, { host: b });
  assert.deepEqual(hb.report.changes.map((c) => c.code), ['table-engaged']);
  assert.equal(hb.report.notes[0]?.code, 'shared');
  assert.match(hb.report.notes[0]!.message, /1 other ctacct process \(pid 100\)/);
  assert.deepEqual([...b.tables.keys()], ['ctacct-200']);
  // a exits first: it must not restore acct (b still runs)
  for (const [k, v] of b.files) if (k.startsWith('/run/')) host.files.set(k, v);
  host.log.length = 0;
  await a.handle.undo();
  assert.equal(host.acct, '1\n');
  assert.equal(host.files.has(`${DIR}/acct-was-0`), true);
  assert.deepEqual(host.log.filter((l) => l.startsWith('rmdir')), [], 'the directory stays while b runs');
  // b is last
  b.files.clear();
  for (const [k, v] of host.files) b.files.set(k, v);
  b.log.length = 0;
  await hb.undo();
  assert.equal(b.acct, '0\n');
  assert.deepEqual(b.log.filter((l) => l.startsWith('rmdir')), [`rmdir ${DIR}`]);
  assert.deepEqual([...b.files.keys()].filter((k) => k.startsWith('/run/')), []);
});

test('a member killed with SIGKILL is ignored; the next run adopts acct=1 and restores 0', async () => {
  const host = new FakeHost({ acct: 1, files: { [`${DIR}/acct-was-0`]: '99\n', [`${DIR}/member-99-5-`]: 'x', [`${DIR}/member-99-5`]: '-\n' } });
  const { handle } = await prepare({}, {}, host);
  assert.deepEqual(handle.report.changes.map((c) => [c.code, c.detail]), [
    ['acct-adopted', 'left at 1 by a ctacct run that was killed; restored to 0 on exit'],
    ['table-engaged', 'engages conntrack in this network namespace; owned by this process, so the kernel removes it when ctacct exits (even if killed)'],
  ]);
  assert.equal(host.files.has(`${DIR}/member-99-5`), false);
  await handle.undo();
  assert.equal(host.acct, '0\n');
});

test('old kernel (no owner flag): a plain table named in the member record, deleted on exit or by the next run', async () => {
  const { host, handle } = await prepare({ acct: 1, nftEngageError: 'EOPNOTSUPP' });
  assert.equal(host.tables.get('ctacct-4242')?.owned, false);
  assert.equal(host.files.get(`${DIR}/member-4242-777`), 'ctacct-4242\n');
  assert.match(handle.report.changes[0]!.detail, /removed on exit \(this kernel has no owned tables\)/);
  await handle.undo();
  assert.equal(host.tables.size, 0);

  // A killed old-kernel run: the next one deletes its table.
  const next = new FakeHost({ acct: 1, nftEngageError: 'EOPNOTSUPP', files: { [`${DIR}/member-55-1`]: 'ctacct-55\n' } });
  next.tables.set('ctacct-55', { owned: false });
  const h2 = await prepareSystem(ON, { host: next });
  assert.equal(next.tables.has('ctacct-55'), false);
  await h2.undo();
});

test('--keep-acct: acct turned on and left on, no marker', async () => {
  const { host, handle } = await prepare({ acct: 0 }, { keepAcct: true });
  assert.equal(host.files.has(`${DIR}/acct-was-0`), false);
  await handle.undo();
  assert.equal(host.acct, '1\n');
});

test('--no-setup: changes nothing and says what is missing, with codes', async () => {
  const { host, handle } = await prepare({ acct: 0 }, { setup: false });
  assert.deepEqual(host.log, ['probe']);
  assert.deepEqual(handle.report.notes.map((n) => n.code), ['acct-off', 'not-tracking']);
  assert.equal(handle.report.tracking, 'not-tracking');
  assert.equal(handle.report.engaged, false);
});

test('nf_tables refuses (EPERM) as root: privilege error without "sudo" advice; acct restored', async () => {
  const host = new FakeHost({ acct: 0, nftEngageError: 'EPERM' });
  await assert.rejects(prepareSystem(ON, { host }), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.exitCode, EXIT.privilege);
    assert.doesNotMatch(e.message, /sudo/);
    return true;
  });
  assert.equal(host.acct, '0\n');
  assert.equal(host.files.has(`${DIR}/acct-was-0`), false);
  assert.equal(host.locked, false);
});

test('acct not writable as a user: privilege error with sudo advice, nothing left behind', async () => {
  const host = new FakeHost({ acct: 0, uid: 1000, writeErrors: { [ACCT]: 'EACCES' } });
  await assert.rejects(prepareSystem(ON, { host }), (e: unknown) => e instanceof UserError && e.exitCode === EXIT.privilege && /sudo/.test(e.message));
  assert.equal(host.tables.size, 0);
  assert.equal(host.files.has(`${DIR}/acct-was-0`), false);
});

test('nf_conntrack not loaded: engaging loads it, then acct goes on; undo restores 0', async () => {
  const { host, handle } = await prepare({ acct: null, moduleDefaultAcct: 0 });
  assert.equal(host.acct, '1\n');
  assert.deepEqual(handle.report.changes.map((c) => c.code), ['table-engaged', 'acct-on']);
  await handle.undo();
  assert.equal(host.acct, '0\n');
});

test('an undo that cannot restore acct names the fix once; a concurrent sync undo adds no false alarm', async () => {
  const { host, handle } = await prepare({ acct: 0 });
  host.o.writeErrors = { [ACCT]: 'EROFS' };
  const p = handle.undo();
  // The exit path runs while the async undo is in flight: it must not write again.
  assert.throws(() => handle.undoSync(), /could not undo: restoring net.netfilter.nf_conntrack_acct=0 \(EROFS\)/);
  await assert.rejects(p, /could not undo: restoring net.netfilter.nf_conntrack_acct=0 \(EROFS\) — run `sudo sysctl -w net.netfilter.nf_conntrack_acct=0`$/);
  // the mark stays for the next run to restore, so the directory does too
  assert.equal(host.files.get(`${DIR}/acct-was-0`), '4242\n');
  assert.deepEqual(host.log.filter((l) => l.startsWith('rmdir')), []);
});

test('a start sweeps directories of namespaces nothing runs in and nothing is left to undo in', async () => {
  const R = '/run/ctacct';
  const host = new FakeHost({
    acct: 1,
    alive: { 300: 31 },
    symlinks: [`${R}/net-6`],
    files: {
      [`${R}/net-1/lock`]: '', // what every run used to leave behind
      [`${R}/net-2/lock`]: '',
      [`${R}/net-2/member-300-31`]: '-\n', // a live run
      [`${R}/net-3/lock`]: '',
      [`${R}/net-3/acct-was-0`]: '77\n', // its next run restores acct
      [`${R}/net-4/lock`]: '',
      [`${R}/net-4/member-77-5`]: '-\n', // killed; nothing of it left
      [`${R}/net-4/others`]: '0\n',
      [`${R}/net-5/member-78-5`]: 'ctacct-78\n', // killed on an old kernel: its table is still to delete
      [`${R}/net-6/lock`]: '', // a symlink: never followed
      [`${R}/backup/lock`]: '', // not a namespace directory
      [`${R}/net-7/notes.txt`]: 'x', // something ctacct did not write
    },
  });
  const { handle } = await prepare({}, {}, host);
  assert.deepEqual(host.log.filter((l) => l.startsWith('rmdir') || l.includes('/net-4/')), [
    `rmdir ${R}/net-1`,
    `unlink ${R}/net-4/member-77-5`,
    `unlink ${R}/net-4/others`,
    `unlink ${R}/net-4/lock`,
    `rmdir ${R}/net-4`,
  ]);
  const left = [...host.files.keys()].filter((k) => k.startsWith(`${R}/`) && !k.startsWith(DIR)).sort();
  assert.deepEqual(left, [
    `${R}/backup/lock`,
    `${R}/net-2/lock`,
    `${R}/net-2/member-300-31`,
    `${R}/net-3/acct-was-0`,
    `${R}/net-3/lock`,
    `${R}/net-5/member-78-5`,
    `${R}/net-6/lock`,
    `${R}/net-7/notes.txt`,
  ]);
  await handle.undo();
  assert.deepEqual(host.log.filter((l) => l.startsWith(`rmdir ${DIR}`)), [`rmdir ${DIR}`]);
});

test('formatSetupReport: one line per change, then notes', async () => {
  const { handle } = await prepare({ acct: 0 });
  assert.equal(
    formatSetupReport(handle.report),
    'ctacct: changed net.netfilter.nf_conntrack_acct: 0 → 1 (restored to 0 when the last ctacct in this network namespace exits)\n' +
      'ctacct: changed nft table inet ctacct-4242: engages conntrack in this network namespace; owned by this process, so the kernel removes it when ctacct exits (even if killed)\n' +
      `ctacct: note: ${ACCT_NOTE}\nctacct: note: ${COST_NOTE}\n`,
  );
  await handle.undo();
});

function fakeLifecycle() {
  const proc = Object.assign(new EventEmitter(), { exits: [] as number[], exit: (c?: number) => void proc.exits.push(c ?? 0) });
  return { proc, lc: new Lifecycle(proc, { writeErr: () => undefined, setTimer: () => ({}) }) };
}
const fakeSystem = { stderr: { write: () => undefined } } as unknown as System;

test('withSystemSetup: body sees the report; undone after it; unregistered only after the undo finished', async () => {
  const host = new FakeHost({ acct: 0 });
  const { proc, lc } = fakeLifecycle();
  lc.install();
  const seen = await withSystemSetup(
    fakeSystem,
    ON,
    async (report) => {
      assert.equal(host.acct, '1\n');
      assert.equal(report.engagedBy, 'ctacct');
      return report.changes.length;
    },
    { host, lifecycle: lc },
  );
  assert.equal(seen, 2);
  assert.equal(host.acct, '0\n');
  assert.equal(host.tables.size, 0);
  host.log.length = 0;
  proc.emit('exit', 0); // nothing left registered
  assert.deepEqual(host.log, []);
});

test('withSystemSetup: a throwing body still undoes; a signal during the body undoes and exits 143', async () => {
  const host = new FakeHost({ acct: 0 });
  const { lc } = fakeLifecycle();
  await assert.rejects(
    withSystemSetup(fakeSystem, ON, async () => {
      throw new Error('body failed');
    }, { host, lifecycle: lc }),
    /body failed/,
  );
  assert.equal(host.acct, '0\n');
  assert.equal(host.tables.size, 0);

  const host2 = new FakeHost({ acct: 0 });
  const f = fakeLifecycle();
  f.lc.install();
  let release: () => void = () => undefined;
  const running = withSystemSetup(fakeSystem, ON, () => new Promise<void>((r) => (release = r)), { host: host2, lifecycle: f.lc });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  f.proc.emit('SIGTERM');
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(f.proc.exits, [143]);
  assert.equal(host2.acct, '0\n');
  assert.equal(host2.tables.size, 0);
  release();
  await running;
});
