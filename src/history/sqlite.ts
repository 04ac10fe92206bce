// The one loader of better-sqlite3, an optional dependency: only `collect` and `report` need it,
// so the rest of ctacct installs where it cannot be built. The types cover what ctacct uses.
import { EXIT, UserError } from '../errors.js';

export interface Statement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
}

export interface Database {
  prepare(sql: string): Statement;
  exec(sql: string): Database;
  pragma(sql: string, opts?: { simple?: boolean }): unknown;
  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  close(): void;
  readonly open: boolean;
}

export interface DatabaseOptions {
  readonly?: boolean;
  fileMustExist?: boolean;
  timeout?: number;
}

export type DatabaseConstructor = new (path: string, opts?: DatabaseOptions) => Database;

let cached: DatabaseConstructor | null = null;

/** better-sqlite3's constructor, or a one-line UserError naming what to install. */
export async function loadSqlite(): Promise<DatabaseConstructor> {
  if (cached) return cached;
  try {
    // Imported on first use only: every other command runs without it.
    const name = 'better-sqlite3';
    const mod = (await import(name)) as { default: DatabaseConstructor };
    cached = mod.default;
    return cached;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' ? 'it is not installed' : `it does not load (${String((e as Error).message).split('\n')[0]})`;
    throw new UserError(
      `usage history needs the optional package better-sqlite3 12.x, and ${why}: install it with \`npm install better-sqlite3@12\` (builds from source: needs python3, make and a C++ compiler)`,
      EXIT.unsupported,
      'ERR_CTACCT_NO_SQLITE',
    );
  }
}
