// `ctacct doctor --json` spawned inside fresh network namespaces, as root and as nobody.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DoctorResult } from '../../src/commands/doctor.js';
import { hasCommand, Netns, rootSkip } from '../helpers/netns.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = join(ROOT, 'bin', 'ctacct.js');
const SUDO = 'run ctacct with sudo, or grant the capability: sudo setcap cap_net_admin+ep $(readlink -f $(which node))';

function doctor(ns: Netns, prefix: string[] = []): Promise<{ code: number | null; json: DoctorResult; stderr: string }> {
  return new Promise((res, rej) => {
    execFile(
      'ip',
      ['netns', 'exec', ns.name, ...prefix, process.execPath, MAIN, 'doctor', '--json'],
      { cwd: ROOT, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        try {
          res({ code: typeof code === 'number' ? code : null, json: JSON.parse(stdout) as DoctorResult, stderr });
        } catch {
          rej(new Error(`doctor printed no JSON (exit ${code}): ${stdout} ${stderr}`));
        }
      },
    );
  });
}

const NAMESPACES_OK = 'CAP_SYS_ADMIN: flows of processes in other network namespaces (containers) are attributed; --netns works';
const NO_SYS_ADMIN =
  "no CAP_SYS_ADMIN: flows of processes in other network namespaces (containers) show as unknown (reason no_permission), and --netns cannot be used; the host's own flows are not affected";

const pick = (r: DoctorResult, name: string) => {
  const c = r.checks.find((x) => x.name === name);
  assert.ok(c, `no check ${name}`);
  return c;
};

async function snapshot(ns: Netns) {
  return { ruleset: await ns.nftRuleset(), acct: await ns.sysctl('net.netfilter.nf_conntrack_acct') };
}

test('doctor in a fresh namespace: accounting and tracking warn with their fixes; exit 0; changes nothing', { skip: rootSkip }, async () => {
  const ns = await Netns.create('dr');
  try {
    const before = await snapshot(ns);
    const { code, json, stderr } = await doctor(ns);
    assert.equal(code, 0);
    assert.equal(stderr, '');
    assert.equal(json.ok, true);
    assert.deepEqual(
      json.checks.map((c) => c.name),
      ['privileges', 'namespaces', 'proc', 'conntrack_module', 'ctnetlink', 'nft', 'tracking', 'accounting', 'events', 'timestamp', 'table_size', 'close_tracker'],
    );
    assert.deepEqual(pick(json, 'privileges'), { name: 'privileges', ok: true, status: 'ok', detail: 'CAP_NET_ADMIN (uid 0)', fix: null });
    assert.deepEqual(pick(json, 'namespaces'), { name: 'namespaces', ok: true, status: 'ok', detail: NAMESPACES_OK, fix: null });
    assert.deepEqual(pick(json, 'ctnetlink'), { name: 'ctnetlink', ok: true, status: 'ok', detail: 'conntrack netlink dump works', fix: null });
    assert.deepEqual(pick(json, 'accounting'), {
      name: 'accounting',
      ok: true,
      status: 'warn',
      detail:
        'net.netfilter.nf_conntrack_acct=0: ctacct top turns it on while it runs (flows begun before have no counters); with --no-setup counters are null',
      fix: 'sudo sysctl -w net.netfilter.nf_conntrack_acct=1',
    });
    const tracking = pick(json, 'tracking');
    assert.equal(tracking.status, 'warn');
    assert.match(tracking.detail, /^no rule uses conntrack in this network namespace: ctacct top engages it/);
    assert.deepEqual(pick(json, 'table_size'), { name: 'table_size', ok: true, status: 'ok', detail: `0 of ${await ns.sysctl('net.netfilter.nf_conntrack_max')} entries`, fix: null });
    assert.equal(pick(json, 'close_tracker')?.status, 'ok', 'as root the close tracker loads');
    assert.deepEqual(await snapshot(ns), before);
  } finally {
    await ns.destroy();
  }
});

test('doctor after acct=1 and a stateful firewall: those checks are ok', { skip: rootSkip }, async () => {
  const ns = await Netns.create('dr');
  try {
    await ns.sysctl('net.netfilter.nf_conntrack_acct', '1');
    await ns.engageConntrack();
    const { code, json } = await doctor(ns);
    assert.equal(code, 0);
    assert.equal(json.ok, true);
    assert.deepEqual(pick(json, 'accounting'), {
      name: 'accounting',
      ok: true,
      status: 'ok',
      detail: 'net.netfilter.nf_conntrack_acct=1: flows get byte and packet counters',
      fix: null,
    });
    assert.deepEqual(pick(json, 'tracking'), {
      name: 'tracking',
      ok: true,
      status: 'ok',
      detail: 'conntrack tracks in this network namespace: nft table inet ctt_fw: ct expression',
      fix: null,
    });
  } finally {
    await ns.destroy();
  }
});

test('doctor as an unprivileged user: privilege failures and exit code 3', { skip: rootSkip || (!hasCommand('setpriv') && 'SKIPPED: setpriv missing') }, async () => {
  const ns = await Netns.create('dr');
  try {
    const { code, json, stderr } = await doctor(ns, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
    assert.equal(code, 3);
    assert.equal(stderr, 'ctacct: doctor: 2 checks failed (privileges, ctnetlink)\n');
    assert.equal(json.ok, false);
    assert.deepEqual(pick(json, 'privileges'), {
      name: 'privileges',
      ok: false,
      status: 'fail',
      detail: 'no CAP_NET_ADMIN (uid 65534): top, flows and states --source conntrack need it',
      fix: SUDO,
    });
    assert.deepEqual(pick(json, 'ctnetlink'), {
      name: 'ctnetlink',
      ok: false,
      status: 'fail',
      detail: 'conntrack netlink: permission denied (EPERM)',
      fix: SUDO,
    });
    assert.equal(pick(json, 'tracking').detail, 'cannot tell whether conntrack tracks here: cannot read the nft ruleset (needs CAP_NET_ADMIN)');
    assert.deepEqual(pick(json, 'namespaces'), { name: 'namespaces', ok: true, status: 'warn', detail: NO_SYS_ADMIN, fix: 'run ctacct with sudo' });
    assert.deepEqual(
      json.checks.filter((c) => c.status === 'fail').map((c) => c.name),
      ['privileges', 'ctnetlink'],
    );
  } finally {
    await ns.destroy();
  }
});

test('doctor as root without CAP_SYS_ADMIN (dropped from the bounding set): namespaces warns, everything else as before, exit 0', { skip: rootSkip || (!hasCommand('setpriv') && 'SKIPPED: setpriv missing') }, async () => {
  const ns = await Netns.create('dr');
  try {
    const { code, json, stderr } = await doctor(ns, ['setpriv', '--bounding-set=-sys_admin', '--inh-caps=-sys_admin']);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
    assert.equal(json.ok, true);
    assert.deepEqual(pick(json, 'privileges'), { name: 'privileges', ok: true, status: 'ok', detail: 'CAP_NET_ADMIN (uid 0)', fix: null });
    assert.deepEqual(pick(json, 'namespaces'), {
      name: 'namespaces',
      ok: true,
      status: 'warn',
      detail: NO_SYS_ADMIN,
      fix: 'give the process CAP_SYS_ADMIN (a container: `docker run --cap-add SYS_ADMIN …`; systemd: AmbientCapabilities=CAP_SYS_ADMIN)',
    });
    assert.deepEqual(pick(json, 'ctnetlink'), { name: 'ctnetlink', ok: true, status: 'ok', detail: 'conntrack netlink dump works', fix: null });
  } finally {
    await ns.destroy();
  }
});
