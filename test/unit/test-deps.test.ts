// `npm test`'s installer decisions with a fake command lookup (nothing is installed here).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TOOLS, planTestDeps } from '../../scripts/test-deps.mjs';

const DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n';
const UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n';
const FEDORA = 'NAME="Fedora Linux"\nID=fedora\n';
const without = (...gone: string[]) => (cmd: string) => !gone.includes(cmd);

test('everything present: nothing to do', () => {
  assert.deepEqual(planTestDeps({ isRoot: true, has: () => true, osRelease: DEBIAN }), { action: 'none', packages: [], lines: [] });
});

test('root on a fresh Debian: installs the missing packages once each, saying why', () => {
  const p = planTestDeps({ isRoot: true, has: without('nft', 'conntrack', 'prometheus', 'nginx', 'ss', 'ip'), osRelease: DEBIAN });
  assert.equal(p.action, 'install');
  assert.deepEqual(p.packages, ['conntrack', 'iproute2', 'nftables', 'nginx', 'prometheus']);
  assert.equal(p.lines[0], 'npm test: installing the system tools the tests use:');
  assert.equal(
    p.lines.find((l) => l.startsWith('  iproute2:')),
    '  iproute2: throwaway network namespaces and veth pairs; socket listings to compare `ctacct states` against',
  );
  assert.equal(p.lines.length, 6);
});

test('Ubuntu counts as Debian-like', () => {
  assert.equal(planTestDeps({ isRoot: true, has: without('tmux'), osRelease: UBUNTU }).action, 'install');
});

test('not root, another distribution, no apt-get, or opted out: one line naming the packages', () => {
  assert.deepEqual(planTestDeps({ isRoot: false, has: without('nft', 'wrk'), osRelease: DEBIAN }).lines, [
    'npm test: missing system packages: nftables wrk; tests that need them will fail or skip (run `sudo npm test` to install them on Debian/Ubuntu)',
  ]);
  const fedora = planTestDeps({ isRoot: true, has: without('nft'), osRelease: FEDORA });
  assert.deepEqual([fedora.action, fedora.lines], ['report', ['npm test: missing system packages: nftables; tests that need them will fail or skip']]);
  assert.equal(planTestDeps({ isRoot: true, has: without('nft', 'apt-get'), osRelease: DEBIAN }).action, 'report');
  assert.match(planTestDeps({ isRoot: true, has: without('nft'), osRelease: DEBIAN, skip: true }).lines[0]!, /CTACCT_TEST_NO_INSTALL is set\)$/);
});

test('the list covers the tools the tests and benches call', () => {
  for (const cmd of ['nft', 'conntrack', 'ip', 'ss', 'tmux', 'iperf3', 'wrk', 'nginx', 'prometheus', 'sysctl', 'unshare', 'setpriv', 'python3', 'curl', 'bash'])
    assert.ok(cmd in TOOLS, cmd);
  assert.equal(TOOLS.sysctl?.[0], 'procps');
  assert.equal(TOOLS.unshare?.[0], 'util-linux');
});
