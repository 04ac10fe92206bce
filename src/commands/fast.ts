// A start-up path for one-shot commands that does not load yargs (about half of a one-shot
// command's CPU after node's own start-up). It accepts only plain argument vectors made of the
// command's own options, read from the command's yargs builder itself (run against a recorder, so
// the two cannot drift apart), and yields the very object yargs would hand the handler. Anything
// else — --help, --version, an unknown or repeated option, a missing or doubtful value, a value
// the option's coerce or check refuses — returns null, and the caller runs yargs, which stays the
// parser of record: its messages, defaults and validation are unchanged.
import type { CommandModule } from 'yargs';

/** The parts of a yargs option the fast path understands; anything else in it means "ask yargs". */
interface OptionDef {
  type?: 'boolean' | 'string' | 'number';
  choices?: readonly unknown[];
  default?: unknown;
  alias?: string | readonly string[];
  array?: boolean;
  coerce?: (v: unknown) => unknown;
  describe?: string;
  group?: string;
}

const KNOWN_KEYS = new Set(['type', 'choices', 'default', 'alias', 'array', 'coerce', 'describe', 'group']);

export interface OptionTable {
  options: [string, OptionDef][];
  checks: ((argv: Record<string, unknown>) => unknown)[];
  /** A builder method the fast path does not model was called (positional, conflicts, …). */
  unsupported: boolean;
}

/** Options yargs adds to every command in cli.ts (help and version are left to yargs). */
const GLOBAL: [string, OptionDef][] = [['debug', { type: 'boolean', default: false }]];

/**
 * Runs a command's builder against a stand-in for yargs that only records what is declared.
 * Builder methods that do not change parsing (examples, epilogue, usage text) are ignored.
 */
export function recordOptions(builder: CommandModule['builder']): OptionTable | null {
  const table: OptionTable = { options: [], checks: [], unsupported: false };
  if (typeof builder !== 'function') return null;
  const ignored = new Set(['example', 'epilogue', 'epilog', 'usage', 'group', 'wrap']);
  const proxy: unknown = new Proxy(
    {},
    {
      get(_t, name) {
        if (name === 'then') return undefined; // not a promise
        return (...args: unknown[]) => {
          if (name === 'option' || name === 'options') {
            if (typeof args[0] === 'string' && typeof args[1] === 'object' && args[1] !== null) table.options.push([args[0], args[1] as OptionDef]);
            else table.unsupported = true;
          } else if (name === 'check' && typeof args[0] === 'function') table.checks.push(args[0] as (a: Record<string, unknown>) => unknown);
          else if (!ignored.has(String(name))) table.unsupported = true;
          return proxy;
        };
      },
    },
  );
  try {
    const r = builder(proxy as never);
    if (r !== proxy || (r as unknown) instanceof Promise) return null;
  } catch {
    return null;
  }
  return table.unsupported ? null : table;
}

const camel = (s: string) => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
const aliasesOf = (d: OptionDef): string[] => (d.alias === undefined ? [] : typeof d.alias === 'string' ? [d.alias] : [...d.alias]);
/** Numbers as yargs reads them for a `number` option, restricted to plain decimals. */
const DECIMAL = /^\d+(\.\d+)?$/;

/**
 * argv (after the program name) → the handler's arguments as yargs builds them, or null when the
 * vector is not plain. `command` is the command's name, which must be argv[0].
 */
export function fastParse(command: string, table: OptionTable, argv: readonly string[]): Record<string, unknown> | null {
  if (argv[0] !== command) return null;
  const defs: [string, OptionDef][] = [...GLOBAL, ...table.options];
  for (const [, d] of defs) for (const k of Object.keys(d)) if (!KNOWN_KEYS.has(k)) return null;
  const byName = new Map<string, [string, OptionDef]>();
  for (const entry of defs) for (const n of [entry[0], ...aliasesOf(entry[1])]) byName.set(n, entry);
  const given = new Map<string, unknown>();
  const value = (d: OptionDef, raw: string): unknown => {
    if (raw === '' || raw.startsWith('-')) return undefined;
    if (d.type === 'number') return DECIMAL.test(raw) ? Number(raw) : undefined;
    if (d.choices && !d.choices.includes(raw)) return undefined;
    if (!d.choices && d.type !== 'string') return undefined; // untyped: yargs would guess numbers
    return raw;
  };
  for (let i = 1; i < argv.length; i++) {
    const tok = argv[i]!;
    let name: string;
    let inline: string | undefined;
    if (/^--[a-z][a-z0-9-]*(=.*)?$/.test(tok)) {
      const eq = tok.indexOf('=');
      name = tok.slice(2, eq < 0 ? undefined : eq);
      inline = eq < 0 ? undefined : tok.slice(eq + 1);
      if (name.length < 2) return null;
    } else if (/^-[a-zA-Z0-9]$/.test(tok)) name = tok.slice(1);
    else return null; // positional, `--`, bundled short flags, -n=V: yargs
    let negated = false;
    let entry = byName.get(name);
    if (!entry && name.startsWith('no-') && inline === undefined) {
      entry = byName.get(name.slice(3));
      negated = true;
      if (!entry || entry[1].type !== 'boolean' || name.length < 5) return null;
    }
    if (!entry) return null;
    const [key, d] = entry;
    if (d.type === 'boolean') {
      if (inline !== undefined || given.has(key)) return null;
      given.set(key, !negated);
      continue;
    }
    if (d.array) {
      if (inline !== undefined) return null;
      const list = (given.get(key) as unknown[] | undefined) ?? [];
      let n = 0;
      // yargs takes every following word up to the next option, and a word like -4 as a value.
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) {
        const v = value(d, argv[++i]!);
        if (v === undefined) return null;
        list.push(v);
        n++;
      }
      if (n === 0 || (i + 1 < argv.length && /^-[0-9.]/.test(argv[i + 1]!))) return null;
      given.set(key, list);
      continue;
    }
    if (given.has(key)) return null; // yargs would make an array of it
    const raw = inline ?? argv[++i];
    if (raw === undefined) return null;
    const v = value(d, raw);
    if (v === undefined) return null;
    given.set(key, v);
  }
  const out: Record<string, unknown> = { _: [command] };
  for (const [key, d] of defs) {
    let v = given.has(key) ? given.get(key) : d.default;
    if (v === undefined) continue;
    if (d.coerce) {
      try {
        v = d.coerce(v);
      } catch {
        return null; // yargs reports it
      }
    }
    for (const n of [key, ...aliasesOf(d)]) {
      out[n] = v;
      if (n.includes('-')) out[camel(n)] = v;
    }
  }
  out.$0 = 'ctacct';
  for (const check of table.checks) {
    try {
      if (check(out) !== true) return null;
    } catch {
      return null;
    }
  }
  return out;
}
