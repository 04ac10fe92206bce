// `ctacct report`: usage history from the database `collect` writes; reads it without root.
// The builder is light; the handler loads the report code (and better-sqlite3) when it runs.
import type { CommandModule } from 'yargs';
import type { System } from '../system.js';
import type { ReportArgs } from '../history/report-run.js';
import { DEFAULT_DB } from './collect.js';

export function reportCommand(system: System): CommandModule<object, ReportArgs> {
  return {
    command: 'report',
    describe: 'Usage history: who sent and received how much over a period (reads the `collect` database, no root needed)',
    builder: (y) =>
      y
        .option('db', { type: 'string', default: DEFAULT_DB, describe: 'The usage database', group: 'History:' })
        .option('since', { type: 'string', default: '24h', describe: 'Start: 1h, 24h, 7d, 30d, a date (2026-11-01) or date and time', group: 'History:' })
        .option('until', { type: 'string', describe: 'End (default now), same forms as --since', group: 'History:' })
        .option('by', { type: 'string', array: true, default: ['process'], describe: 'Group by process|exe|user|unit|container|remote|port; two keys allowed (--by exe,remote)', group: 'History:' })
        .option('top', { type: 'number', default: 20, describe: 'Rows shown (the rest summed in one line; 0: all)', group: 'History:' })
        .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output', group: 'Output:' })
        .option('csv', { type: 'boolean', default: false, describe: 'CSV output (exact byte counts)', group: 'Output:' })
        .option('resolve', { type: 'boolean', default: false, describe: 'Reverse-resolve the remote addresses shown (cached DNS)', group: 'Output:' })
        .example('ctacct report --since 30d --by exe', 'how much each program sent and received in the last 30 days')
        .example('ctacct report --since 2026-11-01 --until 2026-12-01 --by exe,remote --csv', 'a month by program and remote, for a spreadsheet') as never,
    handler: async (args) => (await import('../history/report-run.js')).runReport(system, args),
  };
}
