// Installing ctacct needs no compiler: `npm pack` ships the prebuilt addon, and the tarball installs
// and runs `ctacct doctor` with a PATH that holds only node, npm and sh (no gcc, g++, cc, make,
// python3). The dependencies are copied from this checkout's node_modules, so npm resolves them
// offline and the test talks to no registry.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { libc } from '../../src/netlink/addon.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PREBUILD = `package/prebuilds/${process.platform}-${process.arch}/ctacct.${libc()}.node`;
const TOOLCHAIN = ['gcc', 'g++', 'cc', 'c++', 'make', 'python3', 'python', 'node-gyp'];

function which(cmd: string, path: string): string | null {
  for (const dir of path.split(':')) if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  return null;
}

describe('npm package: prebuilt addon, no toolchain needed', { timeout: 600_000 }, () => {
  let tmp: string;
  let tarball: string;
  let bin: string;
  let app: string;
  let env: NodeJS.ProcessEnv;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ctt-pack-'));
    // prepack builds the addon and copies it to prebuilds/<platform>-<arch>/.
    const out = execFileSync('npm', ['pack', '--pack-destination', tmp, '--json'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
    const info = JSON.parse(out.slice(out.indexOf('[')))[0] as { filename: string };
    tarball = join(tmp, info.filename);
    // A PATH with node, npm and a shell only (npm runs lifecycle scripts through sh).
    bin = join(tmp, 'bin');
    mkdirSync(bin);
    symlinkSync(realpathSync(process.execPath), join(bin, 'node'));
    symlinkSync(realpathSync(which('npm', process.env.PATH ?? '')!), join(bin, 'npm'));
    symlinkSync(realpathSync('/bin/sh'), join(bin, 'sh'));
    env = { HOME: process.env.HOME, PATH: bin, LANG: 'C.UTF-8' };
    // The app and ctacct's runtime dependencies, copied from this checkout (offline resolution).
    app = join(tmp, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'ctt-app', version: '1.0.0', private: true }));
    const deps = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .map((p) => relative(ROOT, p))
      .filter((p) => !/node_modules\/.*\/node_modules\//.test(p) && !/node_modules\/@[^/]+\/[^/]+\/node_modules\//.test(p));
    for (const d of deps) cpSync(join(ROOT, d), join(app, d), { recursive: true });
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the tarball holds the prebuilt addon and the sources for a fallback build', () => {
    const list = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
    assert.ok(list.includes(PREBUILD), `no ${PREBUILD} in ${list.join(' ')}`);
    assert.ok(list.includes('package/scripts/install.mjs'));
    assert.ok(list.includes('package/native/binding.gyp'));
    assert.ok(!list.some((f) => f.startsWith('package/native/build/')), 'no build directory is shipped');
  });

  test('installs with no compiler on PATH, builds nothing, and `ctacct doctor` loads the addon', () => {
    for (const t of TOOLCHAIN) assert.equal(which(t, env.PATH!), null, `${t} is reachable`);
    // Scripts allowed, so the install script runs and must find the prebuild rather than compile.
    const inst = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', '--dangerously-allow-all-scripts', tarball], {
      cwd: app,
      env,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(inst.status, 0, `${inst.stdout}\n${inst.stderr}`);
    assert.match(inst.stdout + inst.stderr, /ctacct: using the prebuilt addon for linux-x64 \(glibc\); no build needed/);
    const pkg = join(app, 'node_modules', 'ctacct');
    assert.equal(existsSync(join(pkg, 'native', 'build')), false, 'nothing was compiled');
    assert.ok(readlinkSync(join(app, 'node_modules', '.bin', 'ctacct')).endsWith('bin/ctacct.js'));

    const doc = spawnSync(join(app, 'node_modules', '.bin', 'ctacct'), ['doctor', '--json'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    assert.ok(doc.stdout.startsWith('{'), `doctor printed no JSON (exit ${doc.status}): ${doc.stdout}\n${doc.stderr}`);
    const r = JSON.parse(doc.stdout) as { checks: { name: string; status: string; detail: string }[] };
    const ctnetlink = r.checks.find((c) => c.name === 'ctnetlink');
    if (process.getuid?.() === 0) {
      assert.equal(ctnetlink?.status, 'ok', JSON.stringify(ctnetlink));
    } else {
      // Without CAP_NET_ADMIN the dump is refused by the kernel, which proves the addon loaded and ran.
      assert.match(ctnetlink?.detail ?? '', /permission|EPERM|CAP_NET_ADMIN/i, JSON.stringify(ctnetlink));
    }
    assert.doesNotMatch(doc.stdout + doc.stderr, /ERR_CTACCT_ADDON|cannot load the native addon/);
  });

  test('the toolchain really is absent: a forced source build fails in the same environment', () => {
    const r = spawnSync('npm', ['rebuild', 'ctacct', '--foreground-scripts', '--dangerously-allow-all-scripts'], {
      cwd: app,
      env: { ...env, CTACCT_BUILD_FROM_SOURCE: '1' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.notEqual(r.status, 0, `a source build succeeded without a toolchain:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout + r.stderr, /cannot find node-gyp|gyp ERR|not found|ENOENT/);
  });
});
