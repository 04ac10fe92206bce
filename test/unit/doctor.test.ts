import assert from 'node:assert/strict';
import { test } from 'node:test';
import { doctorFailure, doctorResult, renderDoctor } from '../../src/commands/doctor.js';
import { EXIT } from '../../src/errors.js';
import { detect } from '../../src/system/detect.js';
import { FakeHost } from '../fakes/host.js';

const SUDO = 'run ctacct with sudo, or grant the capability: sudo setcap cap_net_admin+ep $(readlink -f $(which node))';
const firewall = { rule: { family: 'inet', table: 'fw', chain: 'in', expr: [{ match: { left: { ct: { key: 'state' } }, right: 'invalid' } }] } };

test('doctor: everything in place', async () => {
  const r = doctorResult(await detect(new FakeHost({ acct: 1, timestamp: 1, events: 1, otherRules: [firewall], count: 10, max: 1000 })));
  assert.equal(r.ok, true);
  assert.deepEqual(
    r.checks.map((c) => [c.name, c.status, c.fix]),
    [
      ['privileges', 'ok', null],
      ['namespaces', 'ok', null],
      ['proc', 'ok', null],
      ['conntrack_module', 'ok', null],
      ['ctnetlink', 'ok', null],
      ['nft', 'ok', null],
      ['tracking', 'ok', null],
      ['accounting', 'ok', null],
      ['events', 'ok', null],
      ['timestamp', 'ok', null],
      ['table_size', 'ok', null],
    ],
  );
  assert.equal(r.checks.find((c) => c.name === 'tracking')?.detail, 'conntrack tracks in this network namespace: nft table inet fw: ct expression');
  assert.equal(doctorFailure(r), null);
  assert.equal(renderDoctor(r).split('\n').at(-2), 'ctacct top can work here');
  assert.equal(renderDoctor(r).split('\n')[0], '✓ privileges        CAP_NET_ADMIN (uid 0)');
  assert.equal(
    renderDoctor(r).split('\n')[1],
    '✓ namespaces        CAP_SYS_ADMIN: flows of processes in other network namespaces (containers) are attributed; --netns works',
  );
});

const NO_SYS_ADMIN =
  "no CAP_SYS_ADMIN: flows of processes in other network namespaces (containers) show as unknown (reason no_permission), and --netns cannot be used; the host's own flows are not affected";

test('doctor: root with CAP_NET_ADMIN but not CAP_SYS_ADMIN (a container): a warning on namespaces, still ok', async () => {
  // CapEff with only bit 12 (CAP_NET_ADMIN) set: as `docker run --cap-add NET_ADMIN` gives
  const r = doctorResult(await detect(new FakeHost({ acct: 1, capEff: '0000000000001000', otherRules: [firewall] })));
  assert.equal(r.ok, true);
  const byName = Object.fromEntries(r.checks.map((c) => [c.name, c]));
  assert.equal(byName.privileges?.status, 'ok');
  assert.deepEqual(byName.namespaces, {
    name: 'namespaces',
    ok: true,
    status: 'warn',
    detail: NO_SYS_ADMIN,
    fix: 'give the process CAP_SYS_ADMIN (a container: `docker run --cap-add SYS_ADMIN …`; systemd: AmbientCapabilities=CAP_SYS_ADMIN)',
  });
  assert.equal(doctorFailure(r), null);
  assert.match(renderDoctor(r), /^! namespaces {8}no CAP_SYS_ADMIN: .* — fix: give the process CAP_SYS_ADMIN /m);
  assert.equal(renderDoctor(r).split('\n').at(-2), 'ctacct top can work here');
});

test('doctor: fresh namespace as root: warnings with their fixes, still ok', async () => {
  const r = doctorResult(await detect(new FakeHost({ acct: 0 })));
  assert.equal(r.ok, true);
  const byName = Object.fromEntries(r.checks.map((c) => [c.name, c]));
  assert.deepEqual(byName.accounting, {
    name: 'accounting',
    ok: true,
    status: 'warn',
    detail:
      'net.netfilter.nf_conntrack_acct=0: ctacct top turns it on while it runs (flows begun before have no counters); with --no-setup counters are null',
    fix: 'sudo sysctl -w net.netfilter.nf_conntrack_acct=1',
  });
  assert.equal(byName.tracking?.status, 'warn');
  assert.equal(byName.timestamp?.fix, 'sudo sysctl -w net.netfilter.nf_conntrack_timestamp=1');
  assert.match(renderDoctor(r), /^! accounting {8}net\.netfilter\.nf_conntrack_acct=0: .* — fix: sudo sysctl -w net\.netfilter\.nf_conntrack_acct=1$/m);
});

test('doctor: unprivileged: privilege failures, exit code 3', async () => {
  const r = doctorResult(
    await detect(
      new FakeHost({ uid: 65534, capEff: '0', netlinkError: 'EPERM', nftFail: { match: /list ruleset/, stderr: 'Error: Operation not permitted' } }),
    ),
  );
  assert.equal(r.ok, false);
  const failed = r.checks.filter((c) => c.status === 'fail');
  assert.deepEqual(
    failed.map((c) => [c.name, c.fix]),
    [
      ['privileges', SUDO],
      ['ctnetlink', SUDO],
    ],
  );
  const err = doctorFailure(r);
  assert.equal(err?.exitCode, EXIT.privilege);
  assert.equal(err?.message, 'doctor: 2 checks failed (privileges, ctnetlink)');
  assert.match(renderDoctor(r), /^✗ privileges {8}no CAP_NET_ADMIN \(uid 65534\)/m);
  // a warning, not a failure: sudo gives it
  assert.deepEqual(
    r.checks.filter((c) => c.name === 'namespaces').map((c) => [c.status, c.detail, c.fix]),
    [['warn', NO_SYS_ADMIN, 'run ctacct with sudo']],
  );
  assert.equal(renderDoctor(r).split('\n').at(-2), '2 checks failed: ctacct top cannot work here until fixed');
});

test('doctor: missing netlink module, missing nft, stale table, full table, events off', async () => {
  const r = doctorResult(
    await detect(
      new FakeHost({ acct: 1, events: 0, netlinkError: 'EPROTONOSUPPORT', nft: false, count: 950, max: 1000 }),
    ),
  );
  const byName = Object.fromEntries(r.checks.map((c) => [c.name, c]));
  assert.deepEqual([byName.ctnetlink?.status, byName.ctnetlink?.fix], ['fail', 'sudo modprobe nf_conntrack_netlink']);
  // nft is not needed any more: ctacct speaks nf_tables netlink itself
  assert.deepEqual([byName.nft?.status, byName.nft?.fix, byName.nft?.detail], ['ok', null, 'nft is not installed (not needed: ctacct talks to nf_tables directly)']);
  assert.deepEqual([byName.events?.status, byName.events?.fix], ['warn', 'sudo sysctl -w net.netfilter.nf_conntrack_events=1']);
  assert.deepEqual([byName.table_size?.status, byName.table_size?.fix], ['warn', 'sudo sysctl -w net.netfilter.nf_conntrack_max=2000']);
  assert.equal(doctorFailure(r)?.exitCode, EXIT.unsupported);

  const stale = doctorResult(await detect(new FakeHost({ acct: 1, ctacctTable: { comment: 'ctacct pid=999 start=5 acct=0' } })));
  const t = stale.checks.find((c) => c.name === 'tracking');
  assert.deepEqual([t?.status, t?.fix], ['warn', 'sudo nft delete table inet ctacct']);
  assert.match(t?.detail ?? '', /\(pid 999\)/);
});

test('doctor: root without CAP_NET_ADMIN is not told to use sudo', async () => {
  const r = doctorResult(await detect(new FakeHost({ acct: 1, uid: 0, capEff: '0000000000000000', netlinkError: 'EPERM' })));
  const byName = Object.fromEntries(r.checks.map((c) => [c.name, c]));
  assert.equal(byName.privileges?.status, 'fail');
  assert.doesNotMatch(byName.privileges?.fix ?? '', /sudo/);
  assert.match(byName.privileges?.fix ?? '', /--cap-add NET_ADMIN/);
  assert.doesNotMatch(byName.ctnetlink?.fix ?? '', /sudo/);
  assert.doesNotMatch(byName.tracking?.fix ?? '', /sudo/);
  assert.equal(doctorFailure(r)?.exitCode, EXIT.privilege);
});

test('doctor: entries left although nothing tracks and no ctacct runs are reported as leftovers', async () => {
  const r = doctorResult(await detect(new FakeHost({ acct: 1, count: 3 })));
  const left = r.checks.find((c) => c.name === 'leftovers');
  assert.equal(left?.status, 'warn');
  assert.match(left?.detail ?? '', /^3 conntrack entries remain although nothing tracks here/);
  // while a ctacct runs (it engages), the entries are its live flows, not leftovers
  const running = doctorResult(await detect(new FakeHost({ acct: 1, count: 3, alive: { 77: 5 }, files: { '/run/ctacct/net-4026532999/member-77-5': '-\n' } })));
  assert.equal(running.checks.find((c) => c.name === 'leftovers'), undefined);
});

test('close tracker: ok when it loads, a warning with the fix when privileges are missing, nothing when not probed', async () => {
  const d = await detect(new FakeHost({ acct: 1 }));
  assert.equal(doctorResult(d).checks.find((c) => c.name === 'close_tracker'), undefined);
  const yes = doctorResult({ ...d, closeTracker: { ok: true, message: 'loaded' } }).checks.find((c) => c.name === 'close_tracker')!;
  assert.equal(yes.status, 'ok');
  const no = doctorResult({ ...d, closeTracker: { ok: false, code: 'EPERM', message: 'cannot load the close tracker: operation not permitted' } });
  const c = no.checks.find((x) => x.name === 'close_tracker')!;
  assert.equal(c.status, 'warn');
  assert.equal(c.ok, true, 'a warning: top still works');
  assert.match(c.fix!, /CAP_BPF/);
  assert.match(renderDoctor(no), /^! close_tracker .*stays with its listening process/m);
});
