// Option groups shared by several commands, and the checks that turn bad input into one line in
// ctacct's words with exit 2 (never yargs' wording, never silence).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import { EXIT, UserError } from '../errors.js';
import { trustedTool } from '../system/tools.js';

export type { FilterArgs } from '../core/filters.js';

export function filterOptions<T>(y: Argv<T>) {
  return y
    .option('proto', { choices: ['tcp', 'udp', 'icmp'] as const, describe: 'Only this protocol', group: 'Filters:' })
    .option('port', {
      type: 'string',
      array: true,
      describe: 'Only flows with this port at either end (N or N,M,...)',
      group: 'Filters:',
      coerce: parsePorts,
    })
    .option('host', {
      type: 'string',
      array: true,
      describe: 'Only flows whose remote end is in ADDR[/PREFIX]',
      group: 'Filters:',
    })
    .option('4', { type: 'boolean', describe: 'IPv4 only', group: 'Filters:' })
    .option('6', { type: 'boolean', describe: 'IPv6 only', group: 'Filters:' })
    .check((a) => {
      checkFamilies(a as { 4?: boolean; 6?: boolean });
      return true;
    });
}

export function checkFamilies(a: { 4?: boolean; 6?: boolean }): void {
  if (a['4'] && a['6']) throw usage('-4 and -6 exclude each other: give one, or neither for both families');
}

/** yargs' own wording → ctacct's (choices, missing values). */
export function ownWords(msg: string): string {
  const choice = /^Invalid values:\s*Argument: (\S+), Given: "([^"]*)", Choices: (.*)$/.exec(msg.trim());
  if (choice) return `--${choice[1]}: '${choice[2]}' is not one of ${choice[3]!.replace(/"/g, '')}`;
  const missing = /^Not enough arguments following: (\S+)$/.exec(msg.trim());
  if (missing) return `--${missing[1]} needs a value`;
  return msg;
}

export function usage(message: string): UserError {
  return new UserError(message, EXIT.usage, 'ERR_USAGE');
}

/** `--NAME` must be a number > 0 (yargs turns `abc` into NaN silently). */
export function checkPositive(name: string, v: unknown): void {
  if (v === undefined) return;
  const values = Array.isArray(v) ? v : [v];
  for (const x of values)
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw usage(`--${name}: ${Number.isNaN(x) ? 'not a number' : `'${String(x)}' is not a positive number`}`);
}

export function ownerFilterOptions<T>(y: Argv<T>, procRoot = '/proc') {
  return y
    .option('pid', { type: 'string', array: true, describe: 'Only flows owned by this process', group: 'Filters:', coerce: (v: unknown) => parsePids(v, procRoot) })
    .option('user', {
      type: 'string',
      array: true,
      describe: 'Only flows owned by this user (name or uid; names resolve through NSS, so directory users work)',
      group: 'Filters:',
      coerce: (v: unknown) => {
        const names = (Array.isArray(v) ? v : [v]).map(String).filter((u) => u.trim() !== '');
        if (!names.length) throw usage('--user needs a value (a name or uid)');
        return names.map((u) => String(resolveUser(u.trim())));
      },
    });
}

/** `--pid 12 --pid 34,56` → [12, 34, 56]; each must be a running process. */
export function parsePids(values: unknown, procRoot = '/proc', exists: (path: string) => boolean = existsSync): number[] {
  const list = (Array.isArray(values) ? values : [values]).flatMap((v) => String(v).split(',')).filter((s) => s.trim() !== '');
  if (!list.length) throw usage('--pid needs a value (a process id)');
  return list
    .map((s) => {
      const t = s.trim();
      if (!/^\d+$/.test(t) || Number(t) < 1 || Number(t) > 4194304) throw usage(`--pid: '${s}' is not a process id`);
      if (!exists(`${procRoot}/${t}`)) throw usage(`--pid: no process ${t} is running`);
      return Number(t);
    });
}

export interface UserLookup {
  /** `getent passwd NAME` output, or null when getent is not available. */
  getent(name: string): string | null;
  /** /etc/passwd text, or null. */
  passwd(): string | null;
}

const realLookup: UserLookup = {
  getent(name) {
    const getent = trustedTool('getent');
    if (!getent) return null;
    try {
      // Loaded here: only --user needs a child process, and every one-shot command loads this module.
      const { execFileSync } = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
      return execFileSync(getent, ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    } catch (e) {
      // exit 2: no such user (a real answer)
      return (e as { status?: number }).status === 2 ? '' : null;
    }
  },
  passwd() {
    try {
      return readFileSync('/etc/passwd', 'utf8');
    } catch {
      return null;
    }
  },
};

/** A user name or uid → uid, through NSS (`getent passwd`, so LDAP/SSSD users work), else /etc/passwd. */
export function resolveUser(name: string, lookup: UserLookup = realLookup): number {
  if (/^\d+$/.test(name)) return Number(name);
  if (!/^[A-Za-z0-9._][A-Za-z0-9._@-]*\$?$/.test(name)) throw usage(`--user: '${name}' is not a user name or uid`);
  const line = lookup.getent(name) ?? (lookup.passwd() ?? '').split('\n').find((l) => l.split(':')[0] === name) ?? '';
  const uid = line.split(':')[2];
  if (line.split(':')[0] !== name || uid === undefined || !/^\d+$/.test(uid)) throw usage(`--user: no user named '${name}'`);
  return Number(uid);
}

export function outputOptions<T>(y: Argv<T>) {
  return y
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output', group: 'Output:' })
    .option('resolve', { type: 'boolean', default: false, describe: 'Reverse-resolve addresses (cached DNS)', group: 'Output:' });
}

export function setupOptions<T>(y: Argv<T>) {
  return y
    .option('setup', {
      type: 'boolean',
      default: true,
      describe: 'Enable accounting / engage conntrack if needed (undone on exit); --no-setup changes nothing',
      group: 'System:',
    })
    .option('keep-acct', {
      type: 'boolean',
      default: false,
      describe: 'Leave net.netfilter.nf_conntrack_acct=1 on exit',
      group: 'System:',
    });
}

/** `--netns NAME|PID|PATH`: run the view inside another network namespace (see enterNetns). */
export function netnsOptions<T>(y: Argv<T>) {
  return y.option('netns', {
    type: 'string',
    describe: 'Run inside this network namespace: a name in /run/netns, a pid, or a path (needs CAP_SYS_ADMIN)',
    group: 'System:',
  });
}

/** `--port 80,443 --port 22` → [80, 443, 22]; rejects anything that is not a port. */
export function parsePorts(values: unknown): number[] {
  const list = (Array.isArray(values) ? values : [values]).flatMap((v) => String(v).split(',')).filter((s) => s.trim() !== '');
  if (!list.length) throw usage('--port needs a value (N or N,M,...)');
  return list
    .map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`--port: '${s}' is not a port number (0-65535)`, EXIT.usage);
      return n;
    });
}
