import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXIT, UserError } from '../../src/errors.js';
import { EventEmitter } from 'node:events';
import type { System } from '../../src/system.js';
import { Lifecycle } from '../../src/system/lifecycle.js';
import {
  COST_NOTE,
  formatSetupReport,
  prepareSystem,
  stateFilePath,
  tableRuleset,
  withSystemSetup,
  type SetupOptions,
} from '../../src/system/setup.js';
import { FakeHost, type FakeHostOptions } from '../fakes/host.js';

const ACCT = '/proc/sys/net/netfilter/nf_conntrack_acct';
const STATE = '/run/ctacct/net-4026532999.state';
const ON: SetupOptions = { setup: true, keepAcct: false, needConntrack: true };
const firewall = {
  rule: { family: 'inet', table: 'fw', chain: 'in', handle: 2, expr: [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: 'invalid' } }, { counter: null }] },
};
const ACCT_NOTE = 'accounting was off: flows that began before now have no counters (shown as null)';
const READS = ['run nft -j list ruleset'];

async function prepare(o: FakeHostOptions, opts: Partial<SetupOptions> = {}) {
  const host = new FakeHost(o);
  const handle = await prepareSystem({ ...ON, ...opts }, { host });
  return { host, handle };
}

test('stateFilePath and tableRuleset', () => {
  assert.equal(stateFilePath('/run/ctacct', 'net:[4026532999]'), STATE);
  assert.equal(
    tableRuleset({ pid: 7, start: 9, acctWas: 0 }, false),
    'table inet ctacct {\n\tcomment "ctacct pid=7 start=9 acct=0"\n\tchain track {\n\t\ttype filter hook output priority 300; policy accept;\n\t\tct state new\n\t}\n}\n',
  );
  assert.match(tableRuleset(null, true), /^delete table inet ctacct\ntable inet ctacct \{\n\tchain track/);
});

test('needConntrack false: nothing is looked at or changed', async () => {
  const { host, handle } = await prepare({ acct: 0 }, { needConntrack: false });
  assert.deepEqual(host.log, []);
  assert.deepEqual(handle.report, { changes: [], notes: [], accounting: false, engaged: null, engagedBy: 'none', acctWasOff: false });
});

test('fresh namespace: record, acct on, table; undo reverses it exactly once', async () => {
  const { host, handle } = await prepare({ acct: 0 });
  assert.deepEqual(host.log, [
    ...READS,
    `write ${STATE} ctacct pid=4242 start=777 acct=0`,
    `write ${ACCT} 1`,
    'run nft -f -',
  ]);
  assert.deepEqual(host.table, { comment: 'ctacct pid=4242 start=777 acct=0' });
  assert.deepEqual(handle.report, {
    changes: [
      { what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 on exit)' },
      { what: 'nft table inet ctacct', detail: 'engages conntrack in this network namespace; removed on exit' },
    ],
    notes: [ACCT_NOTE, COST_NOTE],
    accounting: true,
    engaged: true,
    engagedBy: 'ctacct',
    acctWasOff: true,
  });
  host.log.length = 0;
  await handle.undo();
  assert.deepEqual(host.log, ['run nft delete table inet ctacct', `write ${ACCT} 0`, `unlink ${STATE}`]);
  assert.equal(host.table, null);
  assert.equal(host.acct, '0\n');
  host.log.length = 0;
  await handle.undo();
  handle.undoSync();
  assert.deepEqual(host.log, []);
});

test('undoSync does the same as undo', async () => {
  const { host, handle } = await prepare({ acct: 0 });
  host.log.length = 0;
  handle.undoSync();
  assert.deepEqual(host.log, ['run nft delete table inet ctacct', `write ${ACCT} 0`, `unlink ${STATE}`]);
  host.log.length = 0;
  await handle.undo();
  assert.deepEqual(host.log, []);
});

test('a firewall already engages conntrack: no table, only acct', async () => {
  const { host, handle } = await prepare({ acct: 0, otherRules: [firewall] });
  assert.equal(host.table, null);
  assert.deepEqual(host.log, [...READS, `write ${STATE} ctacct pid=4242 start=777 acct=0`, `write ${ACCT} 1`]);
  assert.deepEqual(handle.report, {
    changes: [{ what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 on exit)' }],
    notes: [ACCT_NOTE],
    accounting: true,
    engaged: true,
    engagedBy: 'existing',
    acctWasOff: true,
  });
  host.log.length = 0;
  await handle.undo();
  assert.deepEqual(host.log, [`write ${ACCT} 0`, `unlink ${STATE}`]);
});

test('everything already in place: nothing changes', async () => {
  const { host, handle } = await prepare({ acct: 1, otherRules: [firewall] });
  assert.deepEqual(host.log, READS);
  assert.deepEqual(handle.report, { changes: [], notes: [], accounting: true, engaged: true, engagedBy: 'existing', acctWasOff: false });
  await handle.undo();
  assert.deepEqual(host.log, READS);
});

test('--keep-acct: acct turned on and left on; no record needed', async () => {
  const { host, handle } = await prepare({ acct: 0, otherRules: [firewall] }, { keepAcct: true });
  assert.deepEqual(host.log, [...READS, `write ${ACCT} 1`]);
  assert.deepEqual(handle.report.changes, [{ what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (kept at 1 on exit: --keep-acct)' }]);
  await handle.undo();
  assert.equal(host.acct, '1\n');
});

test('acct already on, nothing engaged: table only, its record says acct untouched', async () => {
  const { host, handle } = await prepare({ acct: 1 });
  assert.deepEqual(host.log, [...READS, 'run nft -f -']);
  assert.deepEqual(host.table, { comment: 'ctacct pid=4242 start=777 acct=-' });
  assert.equal(handle.report.acctWasOff, false);
  assert.equal(handle.report.engagedBy, 'ctacct');
  await handle.undo();
  assert.equal(host.table, null);
  assert.equal(host.acct, '1\n');
});

test('stale table from a SIGKILLed run: reused atomically, its acct=0 record honoured, removed on exit', async () => {
  const { host, handle } = await prepare({
    acct: 1,
    ctacctTable: { comment: 'ctacct pid=999 start=5 acct=0' },
    files: { [STATE]: 'ctacct pid=999 start=5 acct=0\n' },
  });
  assert.deepEqual(host.log, [
    ...READS,
    'run nft list table inet ctacct',
    `write ${STATE} ctacct pid=4242 start=777 acct=0`,
    'run nft -f -',
  ]);
  assert.deepEqual(host.table, { comment: 'ctacct pid=4242 start=777 acct=0' });
  assert.deepEqual(handle.report, {
    changes: [
      { what: 'net.netfilter.nf_conntrack_acct', detail: 'left at 1 by a crashed ctacct run (pid 999); restored to 0 on exit' },
      { what: 'nft table inet ctacct', detail: 'reused the table an earlier ctacct run (pid 999) left; removed on exit' },
    ],
    notes: [COST_NOTE],
    accounting: true,
    engaged: true,
    engagedBy: 'ctacct',
    acctWasOff: true,
  });
  await handle.undo();
  assert.equal(host.table, null);
  assert.equal(host.acct, '0\n');
  assert.equal(host.files.has(STATE), false);
});

test('stale state file only (a firewall engages): acct record adopted and restored', async () => {
  const { host, handle } = await prepare({ acct: 1, otherRules: [firewall], files: { [STATE]: 'ctacct pid=999 start=5 acct=0\n' } });
  assert.deepEqual(handle.report.changes, [
    { what: 'net.netfilter.nf_conntrack_acct', detail: 'left at 1 by a crashed ctacct run (pid 999); restored to 0 on exit' },
  ]);
  assert.equal(host.files.get(STATE), 'ctacct pid=4242 start=777 acct=0\n');
  await handle.undo();
  assert.equal(host.acct, '0\n');
  assert.equal(host.files.has(STATE), false);
});

test('stale table while a firewall engages: removed at once', async () => {
  const { host, handle } = await prepare({ acct: 1, otherRules: [firewall], ctacctTable: { comment: 'ctacct pid=999 start=5 acct=-' } });
  assert.equal(host.table, null);
  assert.deepEqual(handle.report.changes, [
    { what: 'nft table inet ctacct', detail: 'removed the table an earlier ctacct run left (other rules engage conntrack)' },
  ]);
  assert.equal(handle.report.engagedBy, 'existing');
  await handle.undo();
  assert.equal(host.acct, '1\n');
});

test('another ctacct runs here: use its set-up, change nothing, undo nothing', async () => {
  const { host, handle } = await prepare({
    acct: 1,
    ctacctTable: { comment: 'ctacct pid=999 start=5 acct=0' },
    files: { '/proc/999/stat': '999 (node) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 7 0 5 1000 100' },
  });
  assert.deepEqual(handle.report, {
    changes: [],
    notes: ['another ctacct (pid 999) is running in this network namespace and made the system changes; it undoes them when it exits'],
    accounting: true,
    engaged: true,
    engagedBy: 'existing',
    acctWasOff: false,
  });
  await handle.undo();
  assert.deepEqual(host.table, { comment: 'ctacct pid=999 start=5 acct=0' });
  assert.deepEqual(host.log, [...READS, 'run nft list table inet ctacct']);
});

test('--no-setup: changes nothing and says what is missing', async () => {
  const { host, handle } = await prepare({ acct: 0 }, { setup: false });
  assert.deepEqual(host.log, READS);
  assert.deepEqual(handle.report, {
    changes: [],
    notes: [
      'accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null — run without --no-setup, or `sudo sysctl -w net.netfilter.nf_conntrack_acct=1`',
      'conntrack does not track in this network namespace (no rule uses it): no flows will appear — run without --no-setup to engage it',
    ],
    accounting: false,
    engaged: false,
    engagedBy: 'none',
    acctWasOff: true,
  });
  assert.equal(
    formatSetupReport(handle.report),
    'ctacct: note: accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null — run without --no-setup, or `sudo sysctl -w net.netfilter.nf_conntrack_acct=1`\n' +
      'ctacct: note: conntrack does not track in this network namespace (no rule uses it): no flows will appear — run without --no-setup to engage it\n',
  );
});

test('no nft: rules unknown and nothing can engage: goes on with acct and a note', async () => {
  const { host, handle } = await prepare({ acct: 0, nft: false });
  assert.deepEqual(host.log, [`write ${STATE} ctacct pid=4242 start=777 acct=0`, `write ${ACCT} 1`]);
  assert.deepEqual(handle.report, {
    changes: [{ what: 'net.netfilter.nf_conntrack_acct', detail: '0 → 1 (restored to 0 on exit)' }],
    notes: [
      ACCT_NOTE,
      'cannot tell whether conntrack tracks here and cannot engage it (nft is not installed: nft rules unknown): flows may be missing — `sudo apt-get install nftables`',
    ],
    accounting: true,
    engaged: null,
    engagedBy: 'none',
    acctWasOff: true,
  });
  await handle.undo();
  assert.equal(host.acct, '0\n');
  assert.equal(host.files.has(STATE), false);
});

test('nft refuses (EPERM): privilege error, acct restored, record removed', async () => {
  const host = new FakeHost({ acct: 0, nftFail: { match: /-f -/, stderr: 'Error: Could not process rule: Operation not permitted' } });
  await assert.rejects(prepareSystem(ON, { host }), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.exitCode, EXIT.privilege);
    assert.equal(e.code, 'EPERM');
    return true;
  });
  assert.equal(host.acct, '0\n');
  assert.equal(host.table, null);
  assert.equal(host.files.has(STATE), false);
});

test('acct not writable: privilege error, nothing left behind', async () => {
  const host = new FakeHost({ acct: 0, writeErrors: { [ACCT]: 'EACCES' } });
  await assert.rejects(prepareSystem(ON, { host }), (e: unknown) => e instanceof UserError && e.exitCode === EXIT.privilege);
  assert.equal(host.acct, '0\n');
  assert.equal(host.table, null);
  assert.equal(host.files.has(STATE), false);
});

test('nf_conntrack not loaded: the table loads it, then acct goes on; undo restores 0', async () => {
  const { host, handle } = await prepare({ acct: null });
  assert.deepEqual(host.log, [
    ...READS,
    `write ${STATE} ctacct pid=4242 start=777 acct=0`,
    'run nft -f -',
    `write ${ACCT} 1`,
  ]);
  assert.equal(handle.report.accounting, true);
  assert.equal(handle.report.acctWasOff, true);
  await handle.undo();
  assert.equal(host.acct, '0\n');
  assert.equal(host.table, null);
});

test('undo that cannot remove the table names the fix, still restores acct and keeps the record', async () => {
  const { host, handle } = await prepare({ acct: 0 });
  host.o.nftFail = { match: /delete table/, stderr: 'Error: Operation not permitted' };
  await assert.rejects(handle.undo(), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.code, 'ERR_UNDO');
    assert.equal(
      e.message,
      'could not undo: removing nft table inet ctacct (Error: Operation not permitted) — run `sudo nft delete table inet ctacct`',
    );
    return true;
  });
  assert.equal(host.acct, '0\n');
  assert.equal(host.files.has(STATE), true);
  host.o.nftFail = null;
  await handle.undo();
  assert.equal(host.table, null);
  assert.equal(host.files.has(STATE), false);
});

test('formatSetupReport: one line per change, then notes', async () => {
  const { handle } = await prepare({ acct: 0 });
  assert.equal(
    formatSetupReport(handle.report),
    'ctacct: changed net.netfilter.nf_conntrack_acct: 0 → 1 (restored to 0 on exit)\n' +
      'ctacct: changed nft table inet ctacct: engages conntrack in this network namespace; removed on exit\n' +
      `ctacct: note: ${ACCT_NOTE}\nctacct: note: ${COST_NOTE}\n`,
  );
  await handle.undo();
});

function fakeLifecycle() {
  const proc = Object.assign(new EventEmitter(), { exits: [] as number[], exit: (c?: number) => void proc.exits.push(c ?? 0) });
  return { proc, lc: new Lifecycle(proc, { writeErr: () => undefined, setTimer: () => ({}) }) };
}
const fakeSystem = { stderr: { write: () => undefined } } as unknown as System;

test('withSystemSetup: body sees the report; undone after it, and registered while it runs', async () => {
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
  assert.equal(host.table, null);
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
  assert.equal(host.table, null);

  const host2 = new FakeHost({ acct: 0 });
  const f = fakeLifecycle();
  f.lc.install();
  let release: () => void = () => undefined;
  const running = withSystemSetup(fakeSystem, ON, () => new Promise<void>((r) => (release = r)), { host: host2, lifecycle: f.lc });
  await new Promise((r) => setImmediate(r));
  f.proc.emit('SIGTERM');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(f.proc.exits, [143]);
  assert.equal(host2.acct, '0\n');
  assert.equal(host2.table, null);
  release();
  await running;
});
