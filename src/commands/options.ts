// Option groups shared by several commands (DESIGN.md: the command-line contract).
import type { Argv } from 'yargs';
import { EXIT, UserError } from '../errors.js';

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
    .conflicts('4', '6');
}

export function ownerFilterOptions<T>(y: Argv<T>) {
  return y
    .option('pid', { type: 'number', array: true, describe: 'Only flows owned by this process', group: 'Filters:' })
    .option('user', { type: 'string', array: true, describe: 'Only flows owned by this user (name or uid)', group: 'Filters:' });
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
  const list = (Array.isArray(values) ? values : [values]).flatMap((v) => String(v).split(','));
  return list
    .filter((s) => s.trim() !== '')
    .map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`--port: '${s}' is not a port number (0-65535)`, EXIT.usage);
      return n;
    });
}
