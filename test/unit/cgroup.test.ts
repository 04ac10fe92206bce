// Container and unit labels from /proc/PID/cgroup text, in the layouts the runtimes write (cgroup v2
// unified lines, and hybrid hosts' name=systemd lines).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dockerName, parseCgroup, parseContainer } from '../../src/proc/cgroup.js';
import { netnsPath, parseFibTrieLocal, parseIfInet6, parseNsLink } from '../../src/proc/netns.js';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ID = 'a3f9c2e1b0d4c5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0';
const ID2 = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';
const POD = '6c0d4f1b-2a3e-4b5c-8d9e-0f1a2b3c4d5e';

function of(text: string) {
  const cg = parseCgroup(text);
  return { unit: cg.unit, container: parseContainer(cg.cgroup) };
}

test('Docker, systemd cgroup driver: docker-<id>.scope', () => {
  assert.deepEqual(of(`0::/system.slice/docker-${ID}.scope\n`), { unit: `docker-${ID}.scope`, container: { runtime: 'docker', id: ID, name: null } });
});

test('Docker, cgroupfs driver (and hybrid hosts): /docker/<id>', () => {
  assert.deepEqual(of(`0::/docker/${ID}\n`).container, { runtime: 'docker', id: ID, name: null });
  const hybrid = `12:memory:/docker/${ID}\n1:name=systemd:/docker/${ID}\n0::/\n`;
  assert.deepEqual(of(hybrid).container, { runtime: 'docker', id: ID, name: null });
});

test('Podman: rootful machine.slice, rootless under user@.service, a sub-cgroup of the container; conmon is not the container', () => {
  assert.deepEqual(of(`0::/machine.slice/libpod-${ID}.scope/container\n`).container, { runtime: 'podman', id: ID, name: null });
  const rootless = `0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope\n`;
  assert.deepEqual(of(rootless), { unit: `libpod-${ID}.scope`, container: { runtime: 'podman', id: ID, name: null } });
  assert.equal(of(`0::/machine.slice/libpod-conmon-${ID}.scope\n`).container, null);
});

test('Kubernetes with containerd (systemd driver): runtime, id and pod uid', () => {
  const p = POD.replace(/-/g, '_');
  const text = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${p}.slice/cri-containerd-${ID}.scope\n`;
  assert.deepEqual(of(text).container, { runtime: 'containerd', id: ID, name: null, pod: POD });
  const guaranteed = `0::/kubepods.slice/kubepods-pod${p}.slice/cri-containerd-${ID2}.scope\n`;
  assert.deepEqual(of(guaranteed).container, { runtime: 'containerd', id: ID2, name: null, pod: POD });
});

test('Kubernetes with CRI-O; crio-conmon is not the container', () => {
  const p = POD.replace(/-/g, '_');
  assert.deepEqual(of(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${p}.slice/crio-${ID}.scope\n`).container, {
    runtime: 'crio',
    id: ID,
    name: null,
    pod: POD,
  });
  assert.equal(of(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${p}.slice/crio-conmon-${ID}.scope\n`).container, null);
});

test('Kubernetes, cgroupfs driver: /kubepods/<qos>/pod<uid>/<id> (runtime not in the path)', () => {
  assert.deepEqual(of(`0::/kubepods/burstable/pod${POD}/${ID}\n`).container, { runtime: 'cri', id: ID, name: null, pod: POD });
  // The pod's own cgroup (pause process level) is not a container.
  assert.equal(of(`0::/kubepods/burstable/pod${POD}\n`).container, null);
});

test('LXC and systemd-nspawn name their containers in the path', () => {
  assert.deepEqual(of('0::/lxc.payload.web1/system.slice/nginx.service\n'), {
    unit: 'nginx.service',
    container: { runtime: 'lxc', id: 'web1', name: 'web1' },
  });
  assert.deepEqual(of('0::/machine.slice/systemd-nspawn@build.service/payload/system.slice/sshd.service\n').container, {
    runtime: 'nspawn',
    id: 'build',
    name: 'build',
  });
});

test('plain systemd services, sessions and the root cgroup: a unit, no container', () => {
  assert.deepEqual(of('0::/system.slice/nginx.service\n'), { unit: 'nginx.service', container: null });
  assert.deepEqual(of('0::/user.slice/user-1000.slice/session-3.scope\n'), { unit: 'session-3.scope', container: null });
  assert.deepEqual(of('0::/\n'), { unit: null, container: null });
  assert.deepEqual(of(''), { unit: null, container: null });
  // Lookalikes are not containers: wrong length, upper case, a name instead of an id.
  assert.equal(of(`0::/system.slice/docker-${ID.slice(1)}.scope\n`).container, null);
  assert.equal(of(`0::/system.slice/docker-${ID.toUpperCase()}.scope\n`).container, null);
  assert.equal(of('0::/system.slice/docker.service\n').container, null);
});

test("Docker's name comes from config.v2.json; bad JSON gives null", () => {
  assert.equal(dockerName('{"ID":"x","Name":"/web-1","State":{}}'), 'web-1');
  assert.equal(dockerName('{"ID":"x"}'), null);
  assert.equal(dockerName('not json'), null);
});

test('namespace links and --netns values', () => {
  assert.equal(parseNsLink('net:[4026531840]'), 4026531840);
  assert.equal(parseNsLink('mnt:[4026531840]'), null);
  assert.deepEqual(netnsPath(String(process.pid)), { path: `/proc/${process.pid}/ns/net` });
  assert.deepEqual(netnsPath('/proc/self/ns/net'), { path: '/proc/self/ns/net' });
  assert.match((netnsPath('') as { error: string }).error, /^--netns needs/);
  assert.match((netnsPath('no-such-ns-ctt') as { error: string }).error, /^--netns no-such-ns-ctt: \/run\/netns\/no-such-ns-ctt does not exist$/);
  assert.match((netnsPath('999999999') as { error: string }).error, /no process 999999999/);
  assert.match((netnsPath('/proc') as { error: string }).error, /is a directory/);
});

test("a namespace's addresses read from a process's /proc/PID/net (captured), without entering it", () => {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'proc', 'netns');
  assert.deepEqual(parseFibTrieLocal(readFileSync(join(dir, 'fib_trie.txt'), 'utf8')), ['10.231.250.7', '127.0.0.1']);
  assert.deepEqual(parseIfInet6(readFileSync(join(dir, 'if_inet6.txt'), 'utf8')), ['fd00:231::7', 'fe80::7ccc:1cff:feba:9f23', '::1', 'fe80::14bc:1cff:fe41:ea34']);
  assert.deepEqual(parseIfInet6('20010db8000000000001000000000000 02 40 00 80 eth0\n'), ['2001:db8:0:0:1::']);
});

test('CgroupReader: a reused pid is another process, in its own cgroup', async () => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { CgroupReader } = await import('../../src/proc/cgroup.js');
  const root = mkdtempSync(join(tmpdir(), 'ctacct-cg-'));
  try {
    mkdirSync(join(root, '500'));
    const set = (unit: string) => writeFileSync(join(root, '500', 'cgroup'), `0::/system.slice/${unit}\n`);
    let start: number | null = 100;
    let t = 0;
    const r = new CgroupReader(root, 100, () => start, () => t);
    set('nginx.service');
    assert.equal(r.of(500)?.unit, 'nginx.service');
    // Same process a second later: the cached entry stands (the file is not read again).
    set('other.service');
    t = 1500;
    assert.equal(r.of(500)?.unit, 'nginx.service');
    // The pid is reused by a process that started later: its own cgroup.
    start = 900;
    t = 3000;
    assert.equal(r.of(500)?.unit, 'other.service');
    // Gone: the last answer still describes the process that was.
    start = null;
    t = 4500;
    assert.equal(r.of(500)?.unit, 'other.service');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
