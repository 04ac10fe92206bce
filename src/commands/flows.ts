// `ctacct flows`: one snapshot of the conntrack table with counters and owners.
import type { CommandModule } from 'yargs';
import { classify, flowKey, localAddressSet, localEnds } from '../core/flow.js';
import type { FlowRecord } from '../netlink/record.js';
import { toFilters, toKernelFilters, type FilterArgs } from '../core/filters.js';
import { toFlowView, type AttributedEnd, type FlowView } from '../core/flowview.js';
import { explainSystemError } from '../errors.js';
import { dumpAll } from '../netlink/source.js';
import type { System } from '../system.js';
import { withSystemSetup } from '../system/setup.js';
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
          if (!args.json) for (const c of report.changes) system.stderr.write(`ctacct: changed ${c.what}: ${c.detail}\n`);
          if (!args.json) for (const n of report.notes) system.stderr.write(`ctacct: note: ${n}\n`);
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
            if (!passes(filters, c, attributed)) continue;
            out.push(toFlowView(c.r, c.dir, attributed, now));
          }
          return out;
        },
      );
      system.stdout.write(args.json ? `${JSON.stringify(views)}\n` : renderFlowsTable(views));
    },
  };
}

function passes(f: ReturnType<typeof toFilters>, c: { r: import('../netlink/record.js').FlowRecord }, ends: AttributedEnd[]): boolean {
  const r = c.r;
  if (f.family && r.family !== f.family) return false;
  if (f.proto && !f.proto.includes(r.proto)) return false;
  if (f.ports && ![r.orig.sport, r.orig.dport].some((p) => p !== null && f.ports!.includes(p))) return false;
  if (f.host) {
    const remotes = ends.length ? ends.map((e) => e.end.remoteAddr) : [r.orig.src, r.orig.dst];
    if (!remotes.some((a) => f.host!(a))) return false;
  }
  if (f.pids && !ends.some((e) => e.owner?.pid != null && f.pids!.includes(e.owner.pid))) return false;
  if (f.users && !ends.some((e) => e.owner && f.users!(e.owner.uid, e.owner.user))) return false;
  return true;
}
