// End to end: `ctacct report` from the built CLI as an unprivileged user (setpriv to nobody) on a
// database root wrote, readable through its group — as docs/history.md sets it up. Also while a
// writer holds it open (WAL), and the one-line errors when it is not readable or not there.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hasCommand, rootSkip } from '../helpers/netns.js';
import type { Identity, RollupRow } from '../../src/history/rollup.js';
import { loadSqlite } from '../../src/history/sqlite.js';
import { UsageStore } from '../../src/history/store.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const NOBODY = 65534;

function asNobody(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, 'bin/ctacct.js', ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`report still running after 20 s`));
    }, 20000);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const skip = rootSkip || (hasCommand('setpriv') ? false : 'SKIPPED: setpriv (util-linux) is not installed');

describe('report as a non-root user', { skip }, () => {
  let dir: string;
  let db: string;
  const now = Math.floor(Date.now() / 1000);
  const m0 = Math.floor(now / 60) * 60 - 3600;
  const app: Identity = { exe: '/usr/bin/backup', comm: 'backup', uid: 1000, user: 'alice', unit: 'backup.service', container: null };
  const web: Identity = { exe: '/usr/sbin/nginx', comm: 'nginx', uid: 33, user: 'www-data', unit: 'nginx.service', container: null };
  const r = (ident: Identity, remote: string, sent: number, recv: number): RollupRow => ({ ident, remote, proto: 'tcp', port: 443, dir: 'out', sent, recv, flows: 2 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ctt-report-'));
    chmodSync(dir, 0o755);
    db = join(dir, 'usage.db');
    const store = UsageStore.open(await loadSqlite(), db);
    for (let i = 0; i < 30; i++) store.writeMinute(m0 + i * 60, [r(app, '192.0.2.10', 1_000_000 + i, 1000), r(web, '198.51.100.3', 5000, 70)]);
    store.closeForReaders();
    chownSync(db, 0, NOBODY); // the readers' group
    chmodSync(db, 0o640);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('reads the database through its group: JSON totals exact, table and CSV print', async () => {
    const j = await asNobody(['report', '--db', db, '--since', '2h', '--by', 'exe', '--json']);
    assert.equal(j.code, 0, j.stderr);
    const rep = JSON.parse(j.stdout);
    assert.deepEqual(
      rep.rows.map((x: any) => [x.labels[0], x.sent_bytes, x.recv_bytes, x.flows]),
      [
        ['/usr/bin/backup', 30 * 1_000_000 + (29 * 30) / 2, 30_000, 60],
        ['/usr/sbin/nginx', 150_000, 2100, 60],
      ],
    );
    const t = await asNobody(['report', '--db', db, '--since', '2h', '--by', 'user,remote']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^alice +192\.0\.2\.10 +28\.6 MiB/m);
    assert.match(t.stdout, /^TOTAL /m);
    const c = await asNobody(['report', '--db', db, '--since', '2h', '--by', 'unit', '--csv']);
    assert.equal(c.stdout.split('\n')[1], `backup.service,${30_000_435},30000,${30_030_435},60`);
  });

  test('while a writer holds the database open (WAL), a reader still reads it', async () => {
    const w = UsageStore.open(await loadSqlite(), db);
    try {
      w.writeMinute(m0 + 40 * 60, [r(web, '198.51.100.3', 1, 0)]);
      const j = await asNobody(['report', '--db', db, '--since', '2h', '--by', 'exe', '--json']);
      assert.equal(j.code, 0, j.stderr);
      assert.equal(JSON.parse(j.stdout).rows[1].sent_bytes, 150_001);
    } finally {
      w.closeForReaders();
    }
  });

  test('not readable, or not there: one line in ctacct\'s words, non-zero exit', async () => {
    chmodSync(db, 0o600);
    try {
      const r1 = await asNobody(['report', '--db', db]);
      assert.notEqual(r1.code, 0);
      assert.equal(r1.stderr.trim().split('\n').length, 1, r1.stderr);
      assert.match(r1.stderr, /^ctacct: .*usage\.db: .*(permission|cannot open)/);
    } finally {
      chmodSync(db, 0o640);
    }
    const r2 = await asNobody(['report', '--db', join(dir, 'nope.db')]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /^ctacct: .*nope\.db: no usage database here/);
    const r3 = await asNobody(['report', '--db', db, '--since', 'last tuesday']);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /^ctacct: --since 'last tuesday': not a time/);
  });
});
