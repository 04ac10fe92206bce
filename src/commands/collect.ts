// `ctacct collect`: per-minute usage roll-ups in a SQLite database (docs/history.md). The builder
// is light; the handler loads the collector (and better-sqlite3) only when the command runs.
import type { CommandModule } from 'yargs';
import type { System } from '../system.js';
import type { CollectArgs } from '../history/collect-run.js';
import { EXIT, UserError } from '../errors.js';
import { setupOptions } from './options.js';

const usage = (m: string) => new UserError(m, EXIT.usage, 'ERR_USAGE');

export const DEFAULT_DB = '/var/lib/ctacct/usage.db';

export function collectCommand(system: System): CommandModule<object, CollectArgs> {
  return {
    command: 'collect',
    describe: `Keep per-process usage history: per-minute roll-ups in a SQLite database (default ${DEFAULT_DB}; needs CAP_NET_ADMIN)`,
    builder: (y) =>
      setupOptions(y)
        .option('db', { type: 'string', default: DEFAULT_DB, describe: 'The usage database (created with mode 0640)', group: 'History:' })
        .option('keep-minutes', { type: 'number', default: 2880, describe: 'Minutes kept at minute resolution (48 h), then folded into hours', group: 'History:' })
        .option('keep-hours', { type: 'number', default: 2160, describe: 'Hours kept at hour resolution (90 days), then folded into days', group: 'History:' })
        .option('keep-days', { type: 'number', default: 1825, describe: 'Days kept (5 years), then deleted', group: 'History:' })
        .option('top-remotes', { type: 'number', default: 100, describe: 'Remote addresses kept per minute (the busiest); the rest are summed as "other" (0: all)', group: 'History:' })
        .option('listen', { type: 'string', describe: 'Also serve /metrics and /healthz on ADDR:PORT, as `ctacct serve` does, from the same counters', group: 'History:' })
        .option('interval', { type: 'number', default: 10, describe: 'Seconds between full conntrack dumps (must divide a minute; events settle ended flows in between)', group: 'Cost:' })
        .option('rcvbuf', { type: 'number', default: 64, describe: 'Event socket receive buffer in MiB (grows after an overrun)', group: 'Cost:' })
        .option('minute-seconds', { type: 'number', default: 60, hidden: true, describe: 'Length of a "minute" (tests)' })
        .check((a) => {
          // Validation lives with the runner's types but must not load it: the same rules, inline.
          for (const k of ['keep-minutes', 'keep-hours', 'keep-days', 'top-remotes'] as const)
            if (!(Number.isInteger(a[k]) && a[k] >= 0)) throw usage(`--${k} must be a whole number ≥ 0`);
          if (!(a.interval > 0)) throw usage('--interval must be a positive number of seconds');
          if (!(Number.isInteger(a['minute-seconds']) && a['minute-seconds'] >= 1)) throw usage('--minute-seconds must be a whole number ≥ 1');
          if ((a['minute-seconds'] * 1000) % Math.round(a.interval * 1000) !== 0) throw usage(`--interval must divide the minute (${a['minute-seconds']} s)`);
          return true;
        })
        .example('sudo ctacct collect', `history in ${DEFAULT_DB}`)
        .example('sudo ctacct collect --listen 127.0.0.1:9477', 'history and Prometheus metrics from one process') as never,
    handler: async (args) => (await import('../history/collect-run.js')).runCollect(system, args),
  };
}
