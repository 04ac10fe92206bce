// A month of synthetic usage history, then the time `ctacct report --since 30d` takes on it.
// SERIES rows a minute (programs × remotes × ports, default 200: a busy host after the remote cap),
// written minute by minute as `collect` does, then folded as `collect` would (48 h of minutes,
// the rest in hours). Reports are timed on the unfolded and the folded database. Needs no root:
//   node --import tsx bench/history-fill.ts [--days 30] [--series 200] [--out bench/out/month.db]
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Identity, RollupRow } from '../src/history/rollup.js';
import { loadSqlite } from '../src/history/sqlite.js';
import { UsageStore } from '../src/history/store.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const arg = (name: string, d: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : d;
};
const DAYS = Number(arg('days', '30'));
const SERIES = Number(arg('series', '200'));
const OUT = arg('out', join(ROOT, 'bench', 'out', 'month.db'));

// Deterministic pseudo-random numbers (xorshift), so runs are comparable.
let seed = 0x2545f491;
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
};

function series(): RollupRow[] {
  const progs: Identity[] = Array.from({ length: 40 }, (_, i) => ({
    exe: `/usr/bin/prog${i}`,
    comm: `prog${i}`,
    uid: 1000 + (i % 7),
    user: `user${i % 7}`,
    unit: `svc${i % 12}.service`,
    container: null,
  }));
  return Array.from({ length: SERIES }, (_, i) => ({
    ident: progs[i % progs.length]!,
    remote: `198.51.${(i * 7) % 256}.${(i * 13) % 256}`,
    proto: 'tcp',
    port: [443, 80, 5432, 6379, 22][i % 5]!,
    dir: i % 3 === 0 ? 'in' : 'out',
    sent: 0,
    recv: 0,
    flows: 0,
  }));
}

function timeReport(db: string, by: string): number {
  const t0 = process.hrtime.bigint();
  execFileSync(process.execPath, [join(ROOT, 'bin', 'ctacct.js'), 'report', '--db', db, '--since', '30d', '--by', by], { stdio: 'ignore' });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function main() {
  mkdirSync(dirname(OUT), { recursive: true });
  for (const s of ['', '-wal', '-shm']) rmSync(OUT + s, { force: true });
  const Sqlite = await loadSqlite();
  const store = UsageStore.open(Sqlite, OUT, { minuteS: 60 });
  // Generating history: no fsync per minute (collect syncs each minute; this is not what is measured).
  store.db.pragma('synchronous = OFF');
  const base = series();
  const now = Math.floor(Date.now() / 60000) * 60;
  const start = now - DAYS * 86400;
  const t0 = Date.now();
  let sizeAfterHour = 0;
  for (let t = start, n = 0; t < now; t += 60, n++) {
    store.writeMinute(
      t,
      base.map((r) => ({ ...r, sent: Math.floor(rnd() * 5e6), recv: Math.floor(rnd() * 5e7), flows: Math.floor(rnd() * 50) })),
    );
    if (n === 59) {
      store.db.pragma('wal_checkpoint(TRUNCATE)');
      sizeAfterHour = statSync(OUT).size;
    }
  }
  const fillS = (Date.now() - t0) / 1000;
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  const rows = store.counts().minutes;
  const unfoldedBytes = statSync(OUT).size;
  store.closeForReaders();
  const unfolded = { exe: timeReport(OUT, 'exe'), exe_remote: timeReport(OUT, 'exe,remote') };
  const w = UsageStore.open(Sqlite, OUT);
  const f0 = Date.now();
  w.fold(now, { keepMinutes: 2880, keepHours: 2160, keepDays: 1825 });
  const foldMs = Date.now() - f0;
  const counts = w.counts();
  w.db.exec('VACUUM');
  w.closeForReaders();
  const folded = { exe: timeReport(OUT, 'exe'), exe_remote: timeReport(OUT, 'exe,remote') };
  console.log(
    JSON.stringify({
      days: DAYS,
      series_per_minute: SERIES,
      minute_rows: rows,
      fill_seconds: fillS,
      db_mib_first_hour_of_minutes: Math.round((sizeAfterHour / 1048576) * 10) / 10,
      db_mib_unfolded: Math.round((unfoldedBytes / 1048576) * 10) / 10,
      report_30d_ms_unfolded: unfolded,
      fold_ms: foldMs,
      rows_after_fold: counts,
      db_mib_folded: Math.round((statSync(OUT).size / 1048576) * 10) / 10,
      report_30d_ms_folded: folded,
      load_avg: (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim(),
    }),
  );
}

await main();
