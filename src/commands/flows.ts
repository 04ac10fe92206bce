// `ctacct flows`: one snapshot of the conntrack table with counters.
import type { CommandModule } from 'yargs';
import { dumpAll } from '../netlink/source.js';
import { explainSystemError } from '../errors.js';
import type { System } from '../system.js';
import { filterOptions, outputOptions, setupOptions } from './options.js';

export function flowsCommand(system: System): CommandModule {
  return {
    command: 'flows',
    describe: 'One snapshot of tracked flows with counters and owner (needs CAP_NET_ADMIN)',
    builder: (y) => setupOptions(outputOptions(filterOptions(y))),
    handler: async () => {
      let flows;
      try {
        flows = (await dumpAll(system.conntrack())).flows;
      } catch (e) {
        throw explainSystemError(e, 'reading the conntrack table');
      }
      system.stdout.write(`${JSON.stringify(flows)}\n`);
    },
  };
}
