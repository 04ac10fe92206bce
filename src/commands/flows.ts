// `ctacct flows`: one snapshot of the conntrack table with counters and owners.
import type { CommandModule } from 'yargs';
import { classify, flowKey, localAddressSet, localEnds } from '../core/flow.js';
import type { FlowRecord } from '../netlink/record.js';
import { flowPasses, toFilters, toKernelFilters, type FilterArgs } from '../core/filters.js';
import { toFlowView, type AttributedEnd, type FlowView } from '../core/flowview.js';
import { EXIT, UserError, explainSystemError } from '../errors.js';
import { dumpAll } from '../netlink/source.js';
import type { System } from '../system.js';
import { formatSetupReport, withSystemSetup } from '../system/setup.js';
import { renderFlowsTable } from '../views/flows.js';
import { interfaceAddresses, makeOwnerResolver, uidOfUser } from '../wiring.js';
import { filterOptions, outputOptions, ownerFilterOptions, setupOptions } from './options.js';

interface FlowsArgs extends FilterArgs {
  json: boolean;
  setup: boolean;
  'keep-acct': boolean;
  owners: boolean;
}

export function flowsCommand(system: System): CommandModule<object, FlowsArgs> {
  return {
    command: 'flows',
    describe: 'One snapshot of tracked flows with counters and owner (needs CAP_NET_ADMIN)',
    builder: (y) =>
      setupOptions(outputOptions(ownerFilterOptions(filterOptions(y))))
        .option('owners', { type: 'boolean', default: true, describe: 'Find the owning process of each flow (--no-owners skips the /proc scan)', group: 'Output:' })
        .example('sudo ctacct flows', 'every tracked flow with counters and owner')
        .example('sudo ctacct flows --proto tcp --port 443 --json', 'HTTPS flows as a JSON array')
        .example('sudo ctacct flows --host 10.0.0.0/8 -4', 'flows whose remote end is in 10/8') as never,
    handler: async (args) => {
      const filters = toFilters(args, uidOfUser);
      const views = await withSystemSetup(
        system,
        { setup: args.setup, keepAcct: args['keep-acct'], needConntrack: true },
        async (report) => {
          if (report.tracking === 'not-tracking') {
            const why = report.notes.find((n) => n.code === 'not-tracking')?.message ?? 'conntrack does not track in this network namespace';
            throw new UserError(`${why} (exit 4: not tracking)`, EXIT.unsupported, 'ERR_NOT_TRACKING');
          }
          if (!args.json) system.stderr.write(formatSetupReport(report));
          if (!args.json && report.engagedBy === 'ctacct')
            system.stderr.write('ctacct: note: conntrack was not tracking in this namespace until now, so this snapshot cannot show earlier flows; `ctacct top` watches from now on\n');
          let flows;
          try {
            // Several kernel-filtered dumps may return one flow twice (source port = destination port).
            const seen = new Map<number | string, FlowRecord>();
            for (const f of toKernelFilters(args)) for (const r of (await dumpAll(system.conntrack(), f)).flows) seen.set(flowKey(r), r);
            flows = [...seen.values()];
          } catch (e) {
            throw explainSystemError(e, 'reading the conntrack table');
          }
          const resolver = makeOwnerResolver(system);
          const local = localAddressSet(interfaceAddresses());
          const classified = flows.map((r) => {
            const dir = classify(r, local);
            const ends = localEnds(r, dir).map((end) => ({ end, sock: args.owners ? resolver.socketFor(r.family, r.proto, end, null) : null }));
            return { r, dir, ends };
          });
          resolver.resolveInodes(classified.flatMap((c) => c.ends.map((e) => e.sock?.inode ?? 0)));
          const now = system.now();
          const out: FlowView[] = [];
          for (const c of classified) {
            const attributed: AttributedEnd[] = c.ends.map((e) => ({ end: e.end, owner: resolver.ownerOf(e.sock) }));
            if (!flowPasses(filters, c.r, attributed)) continue;
            out.push(toFlowView(c.r, c.dir, attributed, now));
          }
          return out;
        },
      );
      system.stdout.write(args.json ? `${JSON.stringify(views)}\n` : renderFlowsTable(views));
    },
  };
}
