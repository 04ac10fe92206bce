// The addon loader: the order it tries paths in, and the CTACCT_ADDON override's safety checks when
// ctacct runs as root (ownership cases root cannot create for real are driven through a fake fs).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { addonCandidates, libc, openTrustedAddon, prebuildPath, type TrustFs } from '../../src/netlink/addon.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function fakeFs(o: { real?: string; dir?: { uid: number; mode: number }; file?: { uid: number; mode: number; regular?: boolean } }): TrustFs & { closed: number[] } {
  const closed: number[] = [];
  return {
    closed,
    realpathSync: (p) => o.real ?? p,
    statSync: () => o.dir ?? { uid: 0, mode: 0o40755 },
    openSync: () => 42,
    fstatSync: () => ({ ...(o.file ?? { uid: 0, mode: 0o100755 }), isFile: () => o.file?.regular ?? true }),
    closeSync: (fd) => void closed.push(fd),
  };
}

test('candidates: override, source build, then the prebuild for this platform and libc', () => {
  const list = addonCandidates({ CTACCT_ADDON: '/opt/x/ctacct.node' });
  assert.equal(list[0], '/opt/x/ctacct.node');
  assert.match(list[1]!, /native\/build\/Release\/ctacct\.node$/);
  assert.equal(list.at(-1), prebuildPath());
  assert.match(prebuildPath(), new RegExp(`prebuilds/${process.platform}-${process.arch}/ctacct\\.${libc()}\\.node$`));
  assert.equal(libc(), 'glibc');
  assert.equal(addonCandidates({}).length, 3);
});

test('not root: the override is loaded as given (the user runs their own code)', () => {
  assert.equal(openTrustedAddon('/home/u/ctacct.node', fakeFs({ file: { uid: 1000, mode: 0o100777 } }), 1000), null);
});

test('root: a root-owned, non-writable file in a root-owned directory is opened and checked by descriptor', () => {
  const fs = fakeFs({});
  assert.equal(openTrustedAddon('/opt/ctacct/ctacct.node', fs, 0), 42);
  assert.deepEqual(fs.closed, []);
});

test('root: refuses symlinks, foreign or writable files and directories, and non-files', () => {
  const cases: [string, Parameters<typeof fakeFs>[0], RegExp][] = [
    ['symlink', { real: '/tmp/evil.node' }, /symlink/],
    ['dir not root', { dir: { uid: 1000, mode: 0o40755 } }, /directory/],
    ['dir world-writable', { dir: { uid: 0, mode: 0o41777 } }, /directory/],
    ['dir group-writable', { dir: { uid: 0, mode: 0o40775 } }, /directory/],
    ['file not root', { file: { uid: 1000, mode: 0o100755 } }, /file is not owned by root/],
    ['file group-writable', { file: { uid: 0, mode: 0o100775 } }, /writable/],
    ['not a file', { file: { uid: 0, mode: 0o20666, regular: false } }, /regular file/],
  ];
  for (const [name, o, msg] of cases) {
    const fs = fakeFs(o);
    assert.throws(() => openTrustedAddon('/opt/ctacct/ctacct.node', fs, 0), (e: Error & { code?: string }) => e.code === 'ERR_CTACCT_ADDON_UNSAFE' && msg.test(e.message), name);
    if (name.startsWith('file') || name === 'not a file') assert.deepEqual(fs.closed, [42], `${name}: descriptor closed`);
  }
});

test('root, real files: /tmp is refused, a symlink is refused, the real addon is accepted', { skip: process.getuid?.() !== 0 ? 'NOT ROOT: needs root to check root ownership for real' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctt-addon-'));
  try {
    // mkdtemp makes a 0700 root-owned directory: acceptable; /tmp itself (sticky, world-writable) is not.
    copyFileSync(prebuildPathOrBuild(), join(dir, 'ctacct.node'));
    const fd = openTrustedAddon(join(dir, 'ctacct.node'), undefined, 0);
    assert.equal(typeof fd, 'number');
    closeSync(fd!);
    // Loaded for real through the checked descriptor (dlopen of /proc/self/fd/N).
    const load = (path: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', '-e', "import('./src/netlink/addon.ts').then((m) => { try { console.log(typeof m.getAddon().parse); } catch (e) { console.log(e.code, e.message); } })"], {
        cwd: ROOT,
        env: { ...process.env, CTACCT_ADDON: path },
        encoding: 'utf8',
      }).stdout.trim();
    assert.equal(load(join(dir, 'ctacct.node')), 'function');
    symlinkSync(join(dir, 'ctacct.node'), join(dir, 'link.node'));
    assert.throws(() => openTrustedAddon(join(dir, 'link.node'), undefined, 0), /symlink/);
    // A refused override is an error, never a silent fall back to another binary.
    assert.match(load(join(dir, 'link.node')), /^ERR_CTACCT_ADDON .*refused as root: the path goes through a symlink/);
    copyFileSync(join(dir, 'ctacct.node'), join(tmpdir(), `ctt-addon-${process.pid}.node`));
    assert.throws(() => openTrustedAddon(join(tmpdir(), `ctt-addon-${process.pid}.node`), undefined, 0), /directory/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(tmpdir(), `ctt-addon-${process.pid}.node`), { force: true });
  }
});

function prebuildPathOrBuild(): string {
  return addonCandidates({})[0]!;
}
