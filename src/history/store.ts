// The usage database (SQLite through better-sqlite3): schema and its version, one transaction per
// minute, folding minutes → hours → days, and the grouped sums `report` reads. No policy here
// beyond the SQL: the roll-up math is in rollup.ts, the choice of keys in query.ts.
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT, UserError } from '../errors.js';
import { foldCuts, identKey, seriesKey, sizes, type Identity, type Retention, type RollupRow } from './rollup.js';
import type { Database, DatabaseConstructor, Statement } from './sqlite.js';

/** The schema this ctacct writes and reads. Bump it with a migration below. */
export const SCHEMA_VERSION = 1;

const TABLES = ['minutes', 'hours', 'days'] as const;
export type Level = (typeof TABLES)[number];

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE idents (
  id INTEGER PRIMARY KEY,
  exe TEXT, comm TEXT, uid INTEGER, user TEXT, unit TEXT, container TEXT,
  k TEXT NOT NULL UNIQUE
);
CREATE TABLE series (
  id INTEGER PRIMARY KEY,
  ident INTEGER NOT NULL REFERENCES idents(id),
  remote TEXT NOT NULL, proto TEXT NOT NULL, port INTEGER, dir TEXT NOT NULL,
  k TEXT NOT NULL UNIQUE
);
${TABLES.map(
  (t) => `CREATE TABLE ${t} (
  t INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series(id),
  sent INTEGER NOT NULL, recv INTEGER NOT NULL, flows INTEGER NOT NULL,
  PRIMARY KEY (t, series)
) WITHOUT ROWID;`,
).join('\n')}
`;

/**
 * Migrations from an older schema: MIGRATIONS[v] turns version v into v+1. None yet; a database
 * from before version 1 (or not ctacct's) is refused, as is one from a newer ctacct.
 */
const MIGRATIONS: Record<number, string> = {};

export interface OpenOptions {
  readonly?: boolean;
  /** Minute length (seconds) for a new database; an existing one must match. */
  minuteS?: number;
  /** File mode for a new database and its -wal/-shm files (default 0640). */
  mode?: number;
}

function refuse(path: string, why: string, code = 'ERR_CTACCT_DB'): UserError {
  return new UserError(`${path}: ${why}`, EXIT.failure, code);
}

export class UsageStore {
  readonly minuteS: number;
  private readonly identIds = new Map<string, number>();
  private readonly seriesIds = new Map<string, number>();
  private stmts: {
    identGet: Statement;
    identPut: Statement;
    seriesGet: Statement;
    seriesPut: Statement;
    add: Record<Level, Statement>;
  } | null = null;

  private constructor(
    readonly db: Database,
    readonly path: string,
    minuteS: number,
  ) {
    this.minuteS = minuteS;
  }

  /** Opens (and for a writer creates or migrates) the database; refuses a foreign or newer one. */
  static open(Sqlite: DatabaseConstructor, path: string, opts: OpenOptions = {}): UsageStore {
    const ro = opts.readonly ?? false;
    if (ro && !existsSync(path)) throw refuse(path, 'no usage database here (start `ctacct collect` first, or give --db PATH)', 'ENOENT');
    const fresh = !ro && !existsSync(path);
    if (fresh) {
      try {
        mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'ERR_CTACCT_DB';
        throw new UserError(`${path}: cannot create its directory (${code}): run as root, or give --db PATH in a writable directory`, code === 'EACCES' || code === 'EPERM' ? EXIT.privilege : EXIT.failure, code);
      }
    }
    let db: Database;
    try {
      db = new Sqlite(path, { readonly: ro, fileMustExist: ro, timeout: 5000 });
    } catch (e) {
      throw sqliteError(path, e);
    }
    try {
      if (!ro) {
        // WAL: readers (`report`) never block the minute's write; FULL: a committed minute survives
        // power loss (one fsync a minute).
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
      }
      const minuteS = UsageStore.checkSchema(db, path, ro, opts.minuteS);
      if (!ro) UsageStore.chmod(path, opts.mode ?? 0o640);
      return new UsageStore(db, path, minuteS);
    } catch (e) {
      db.close();
      throw e instanceof UserError ? e : sqliteError(path, e);
    }
  }

  private static chmod(path: string, mode: number): void {
    for (const p of [path, `${path}-wal`, `${path}-shm`]) {
      try {
        chmodSync(p, mode);
      } catch {
        /* -wal/-shm may not exist yet */
      }
    }
  }

  private static checkSchema(db: Database, path: string, ro: boolean, minuteS: number | undefined): number {
    const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
    const anyTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table'").get() !== undefined;
    if (!hasMeta) {
      if (anyTable) throw refuse(path, 'not a ctacct usage database (no meta table); give another --db PATH', 'ERR_CTACCT_DB_FOREIGN');
      if (ro) throw refuse(path, 'empty database: `ctacct collect` has not written to it yet', 'ERR_CTACCT_DB_EMPTY');
      db.transaction(() => {
        db.exec(SCHEMA);
        const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
        put.run('schema_version', String(SCHEMA_VERSION));
        put.run('minute_seconds', String(minuteS ?? 60));
        put.run('created', new Date().toISOString());
      })();
    }
    const meta = new Map((db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[]).map((r) => [r.key, r.value]));
    let version = Number(meta.get('schema_version'));
    if (!Number.isInteger(version)) throw refuse(path, 'not a ctacct usage database (no schema version)', 'ERR_CTACCT_DB_FOREIGN');
    if (version > SCHEMA_VERSION)
      throw refuse(path, `written by a newer ctacct (schema ${version}; this one reads schema ${SCHEMA_VERSION}): upgrade ctacct`, 'ERR_CTACCT_DB_VERSION');
    if (version < SCHEMA_VERSION) {
      if (MIGRATIONS[version] === undefined)
        throw refuse(path, `schema ${version} is too old to migrate (this ctacct uses schema ${SCHEMA_VERSION}): move the file aside and start again`, 'ERR_CTACCT_DB_VERSION');
      if (ro) throw refuse(path, `schema ${version} needs migrating to ${SCHEMA_VERSION}: run \`ctacct collect\` once to migrate it`, 'ERR_CTACCT_DB_VERSION');
      db.transaction(() => {
        while (version < SCHEMA_VERSION) {
          db.exec(MIGRATIONS[version]!);
          version++;
        }
        db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(version));
      })();
    }
    const stored = Number(meta.get('minute_seconds') ?? 60);
    if (minuteS !== undefined && minuteS !== stored)
      throw refuse(path, `its minutes are ${stored} s long, not ${minuteS} s: use another --db PATH`, 'ERR_CTACCT_DB_MINUTE');
    return stored;
  }

  private prepared() {
    if (this.stmts) return this.stmts;
    const db = this.db;
    const add = {} as Record<Level, Statement>;
    for (const t of TABLES)
      add[t] = db.prepare(
        `INSERT INTO ${t} (t, series, sent, recv, flows) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (t, series) DO UPDATE SET sent = sent + excluded.sent, recv = recv + excluded.recv, flows = flows + excluded.flows`,
      );
    this.stmts = {
      identGet: db.prepare('SELECT id FROM idents WHERE k = ?'),
      identPut: db.prepare('INSERT INTO idents (exe, comm, uid, user, unit, container, k) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      seriesGet: db.prepare('SELECT id FROM series WHERE k = ?'),
      seriesPut: db.prepare('INSERT INTO series (ident, remote, proto, port, dir, k) VALUES (?, ?, ?, ?, ?, ?)'),
      add,
    };
    return this.stmts;
  }

  private identId(i: Identity): number {
    const k = identKey(i);
    let id = this.identIds.get(k);
    if (id !== undefined) return id;
    const s = this.prepared();
    const got = s.identGet.get(k) as { id: number } | undefined;
    id = got ? got.id : Number(s.identPut.run(i.exe, i.comm, i.uid, i.user, i.unit, i.container, k).lastInsertRowid);
    if (this.identIds.size > 100_000) this.identIds.clear();
    this.identIds.set(k, id);
    return id;
  }

  private seriesId(r: RollupRow): number {
    const k = seriesKey(r);
    let id = this.seriesIds.get(k);
    if (id !== undefined) return id;
    const s = this.prepared();
    const got = s.seriesGet.get(k) as { id: number } | undefined;
    id = got ? got.id : Number(s.seriesPut.run(this.identId(r.ident), r.remote, r.proto, r.port, r.dir, k).lastInsertRowid);
    if (this.seriesIds.size > 200_000) this.seriesIds.clear();
    this.seriesIds.set(k, id);
    return id;
  }

  /**
   * Marks this process as the database's one writer: two collectors on one database would each
   * count every flow. A claim by a process that is gone (kill -9) is taken over; the process is
   * known by pid and start time, so a reused pid does not hold the claim.
   */
  claimWriter(self: { pid: number; start: string }, alive: (pid: number, start: string) => boolean): void {
    this.db.transaction(() => {
      const row = this.db.prepare("SELECT value FROM meta WHERE key = 'writer'").get() as { value: string } | undefined;
      if (row) {
        const [pid, start] = row.value.split(' ');
        if (Number(pid) !== self.pid && alive(Number(pid), start ?? ''))
          throw refuse(this.path, `another \`ctacct collect\` (pid ${pid}) is writing to it; one collector per database`, 'ERR_CTACCT_DB_BUSY');
      }
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('writer', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(`${self.pid} ${self.start}`);
    })();
  }

  releaseWriter(pid: number): void {
    this.db.prepare("DELETE FROM meta WHERE key = 'writer' AND value LIKE ?").run(`${pid} %`);
  }

  /** Adds one minute's rows in one transaction (added to what is there: a restart in the same minute adds). */
  writeMinute(t: number, rows: RollupRow[]): void {
    const s = this.prepared();
    this.db.transaction(() => {
      for (const r of rows) s.add.minutes.run(t, this.seriesId(r), r.sent, r.recv, r.flows);
    })();
  }

  /** Adds rows straight into a level (the synthetic-history generator and tests). */
  writeLevel(level: Level, t: number, rows: RollupRow[]): void {
    const s = this.prepared();
    for (const r of rows) s.add[level].run(t, this.seriesId(r), r.sent, r.recv, r.flows);
  }

  /** Folds old minutes into hours, old hours into days, drops days past retention. One transaction. */
  fold(now: number, r: Omit<Retention, 'minuteS'>): { minutes: number; hours: number; days: number } {
    const cut = foldCuts(now, { ...r, minuteS: this.minuteS });
    const sz = sizes(this.minuteS);
    const db = this.db;
    const move = (from: Level, to: Level, before: number, size: number): number => {
      db.prepare(
        `INSERT INTO ${to} (t, series, sent, recv, flows)
           SELECT (t / ${size}) * ${size} AS b, series, SUM(sent), SUM(recv), SUM(flows) FROM ${from} WHERE t < ? GROUP BY b, series
         ON CONFLICT (t, series) DO UPDATE SET sent = sent + excluded.sent, recv = recv + excluded.recv, flows = flows + excluded.flows`,
      ).run(before);
      return db.prepare(`DELETE FROM ${from} WHERE t < ?`).run(before).changes;
    };
    return db.transaction(() => ({
      minutes: move('minutes', 'hours', cut.minutesBefore, sz.hour),
      hours: move('hours', 'days', cut.hoursBefore, sz.day),
      days: db.prepare('DELETE FROM days WHERE t < ?').run(cut.daysBefore).changes,
    }))();
  }

  /** Sums over all levels (tests, and the collector's own check). */
  totals(from = -Infinity, to = Infinity): { sent: number; recv: number; flows: number } {
    const q = TABLES.map((t) => `SELECT sent, recv, flows FROM ${t} WHERE t >= ? AND t < ?`).join(' UNION ALL ');
    const lo = Number.isFinite(from) ? from : -1e15;
    const hi = Number.isFinite(to) ? to : 1e15;
    const r = this.db.prepare(`SELECT COALESCE(SUM(sent),0) AS sent, COALESCE(SUM(recv),0) AS recv, COALESCE(SUM(flows),0) AS flows FROM (${q})`).get(lo, hi, lo, hi, lo, hi) as {
      sent: number;
      recv: number;
      flows: number;
    };
    return r;
  }

  /** Rows per level (tests, docs). */
  counts(): Record<Level, number> {
    const out = {} as Record<Level, number>;
    for (const t of TABLES) out[t] = (this.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    return out;
  }

  /** The latest bucket start written at any level, or null. */
  lastMinute(): number | null {
    const r = this.db.prepare('SELECT MAX(t) AS t FROM minutes').get() as { t: number | null };
    return r.t;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /**
   * Closes leaving a plain (rollback-journal) file: in WAL mode a reader without write access to
   * the directory cannot open the database once the writer has removed its -wal/-shm files.
   * The next writer switches back to WAL.
   */
  closeForReaders(): void {
    if (!this.db.open) return;
    this.releaseWriter(process.pid);
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.pragma('journal_mode = DELETE');
    this.db.close();
  }
}

/** A process's start time (clock ticks since boot, /proc/PID/stat field 22), or '' when gone. */
export function processStart(pid: number, procRoot = '/proc'): string {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** A SQLite failure as one line naming the file. */
export function sqliteError(path: string, e: unknown): UserError {
  const err = e as { code?: string; message?: string };
  const code = err.code ?? 'ERR_CTACCT_DB';
  if (code === 'SQLITE_CANTOPEN')
    return new UserError(`${path}: cannot open the usage database (missing directory or no permission: see docs/history.md on file mode and group)`, EXIT.failure, code);
  if (code === 'SQLITE_READONLY' || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH')
    return new UserError(`${path}: permission denied (${code}): see docs/history.md on file mode and group`, EXIT.privilege, code);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') return new UserError(`${path}: not a usable SQLite database (${code})`, EXIT.failure, code);
  if (code === 'SQLITE_BUSY') return new UserError(`${path}: the database is locked by another writer (is another \`ctacct collect\` running on it?)`, EXIT.failure, code);
  return new UserError(`${path}: ${String(err.message ?? e).split('\n')[0]} (${code})`, EXIT.failure, code);
}
