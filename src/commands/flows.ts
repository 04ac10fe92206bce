// `ctacct flows`: one snapshot of the conntrack table with counters and owners.
// `--json` streams: the dump is kept as the addon's raw record buffers (200 bytes a flow, not a
// JavaScript object per flow), owners are resolved in one batch, then each record is decoded,
// attributed and written as one element of the JSON array, a chunk at a time.
import type { CommandModule } from 'yargs';
import { classify, flowKey, localAddressSet, localEnds, type FlowEnd, type FlowId } from '../core/flow.js';
import { flowPasses, toFilters, toKernelFilters, type FilterArgs } from '../core/filters.js';
import { toFlowView, type AttributedEnd, type FlowView } from '../core/flowview.js';
import { OwnerResolver, type SockInfo } from '../core/owners.js';
import { EXIT, UserError, explainSystemError } from '../errors.js';
import { decodeOne, RECORD_SIZE } from '../netlink/record.js';
import { dumpSocketTable } from '../netlink/sockets.js';
import type { System } from '../system.js';
import { formatSetupReport, withSystemSetup } from '../system/setup.js';
import { renderFlowsTable } from '../views/flows.js';
import { interfaceAddresses, realOwnerDeps, uidOfUser } from '../wiring.js';
import { filterOptions, outputOptions, ownerFilterOptions, setupOptions } from './options.js';

interface FlowsArgs extends FilterArgs {
  json: boolean;
  setup: boolean;
  'keep-acct': boolean;
  owners: boolean;
}

/** One batch of the dump as the addon delivered it, plus what attribution found for its ends. */
interface Chunk {
  buf: Buffer;
  count: number;
  /** Records seen in an earlier chunk (several kernel-filtered dumps can return one flow twice). */
  dup: Uint8Array | null;
  /** Socket of each local end, in record order then end order: inode (0 = none) and uid, kept in
   *  typed arrays rather than an object per end (they live until the output is written). */
  inodes: Uint32Array;
  uids: Uint32Array;
  ends: number;
}

/** Output is written in pieces of about this many characters. */
const WRITE_CHUNK = 1 << 16;

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
      const table: FlowView[] = [];
      await withSystemSetup(
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
          const chunks: Chunk[] = [];
          try {
            for (const f of toKernelFilters(args))
              await system.conntrack().dumpRaw(f, (buf, count) => chunks.push({ buf, count, dup: null, inodes: NONE, uids: NONE, ends: 0 }));
          } catch (e) {
            throw explainSystemError(e, 'reading the conntrack table');
          }
          // A one-shot snapshot: the listener on a local port does not change within it, so each
          // service (listener) lookup is made once per address and port, not once per flow.
          const deps = realOwnerDeps(system);
          const resolver = new OwnerResolver({ ...deps, lookupSocket: memoServiceLookups(deps.lookupSocket) });
          const local = localAddressSet(interfaceAddresses());
          const sockets = args.owners ? socketIndex(system) : null;
          const seen = chunks.length > 1 && toKernelFilters(args).length > 1 ? new Set<FlowId>() : null;
          const inodes = new Set<number>();
          for (const c of chunks) {
            const dv = new DataView(c.buf.buffer, c.buf.byteOffset, c.buf.byteLength);
            if (seen) c.dup = new Uint8Array(c.count);
            c.inodes = new Uint32Array(2 * c.count); // at most two local ends per flow
            c.uids = new Uint32Array(2 * c.count);
            // One record decoded at a time: each dies young (an array of a batch's records would
            // outlive the nursery and grow the old generation).
            for (let i = 0; i < c.count; i++) {
              const r = decodeOne(dv, c.buf, i * RECORD_SIZE);
              if (seen) {
                const k = flowKey(r);
                if (seen.has(k)) {
                  c.dup![i] = 1;
                  continue;
                }
                seen.add(k);
              }
              for (const end of localEnds(r, classify(r, local))) {
                const sock = args.owners ? resolver.socketFor(r.family, r.proto, end, sockets?.get(exactKey(r.family, r.proto, end)) ?? null) : null;
                c.inodes[c.ends] = sock?.inode ?? 0;
                c.uids[c.ends++] = sock?.uid ?? 0;
                if (sock && sock.inode) inodes.add(sock.inode);
              }
            }
          }
          seen?.clear();
          resolver.resolveInodes(inodes);
          const now = system.now();
          let out = args.json ? '[' : '';
          let first = true;
          for (const c of chunks) {
            const dv = new DataView(c.buf.buffer, c.buf.byteOffset, c.buf.byteLength);
            let s = 0;
            for (let i = 0; i < c.count; i++) {
              if (c.dup?.[i]) continue;
              const r = decodeOne(dv, c.buf, i * RECORD_SIZE);
              const dir = classify(r, local);
              const attributed: AttributedEnd[] = localEnds(r, dir).map((end) => {
                const inode = c.inodes[s]!;
                const uid = c.uids[s++]!;
                return { end, owner: inode ? resolver.ownerOf({ inode, uid, state: 0 }) : null };
              });
              if (!flowPasses(filters, r, attributed)) continue;
              const view = toFlowView(r, dir, attributed, now);
              if (!args.json) {
                table.push(view);
                continue;
              }
              out += `${first ? '' : ','}${JSON.stringify(view)}`;
              first = false;
              if (out.length >= WRITE_CHUNK) {
                system.stdout.write(out);
                out = '';
              }
            }
            // Done with this batch: its memory can go before the next is decoded.
            c.buf = EMPTY;
            c.inodes = NONE;
            c.uids = NONE;
          }
          if (args.json) system.stdout.write(`${out}]\n`);
        },
      );
      if (!args.json) system.stdout.write(renderFlowsTable(table));
    },
  };
}

const EMPTY = Buffer.alloc(0);
const NONE = new Uint32Array(0);

function exactKey(family: 4 | 6, proto: number, end: { localAddr: string; localPort: number | null; remoteAddr: string; remotePort: number | null }): string {
  return `${family}|${proto}|${end.localAddr}|${end.localPort}|${end.remoteAddr}|${end.remotePort}`;
}

/**
 * Every TCP and UDP socket of the namespace, from one sock_diag dump, by exact 4-tuple: a flow end
 * whose own socket is in it needs no lookup of its own (at 100k flows, one lookup per flow costs
 * more than the whole dump). An end that is not in it (its socket is gone, or only a listener or
 * an unconnected UDP socket can take it) is still looked up in the kernel, whose answer for those
 * depends on the 4-tuple (SO_REUSEPORT groups). A 4-tuple held by two sockets is left out.
 * IPv4 connections on dual-stack IPv6 sockets are listed under their IPv4 form too.
 */
function socketIndex(system: System): Map<string, SockInfo | null> | null {
  if (system.procRoot !== '/proc') return null; // a fixture tree: per-flow lookups only
  let entries;
  try {
    entries = dumpSocketTable({ tcp: true, udp: true });
  } catch {
    return null; // no inet sock_diag: per-flow lookups, as before
  }
  const index = new Map<string, SockInfo | null>();
  const put = (k: string, v: SockInfo) => index.set(k, index.has(k) ? null : v);
  for (const e of entries) {
    if (e.remotePort === 0) continue; // listeners and unconnected sockets: the kernel chooses
    const proto = e.proto === 'tcp' ? 6 : 17;
    const v: SockInfo = { inode: e.inode, uid: e.uid, state: e.stateNum };
    put(exactKey(e.family, proto, e), v);
    if (e.family === 6 && e.localAddr.startsWith('::ffff:') && e.remoteAddr.startsWith('::ffff:') && e.localAddr.includes('.'))
      put(exactKey(4, proto, { ...e, localAddr: e.localAddr.slice(7), remoteAddr: e.remoteAddr.slice(7) }), v);
  }
  return index;
}

type Lookup = (family: 4 | 6, proto: number, end: FlowEnd) => SockInfo | null;

/**
 * The lookup of a service's listener (the wildcard remote end 0.0.0.0:0 or [::]:0, asked when a
 * reply end's own socket is gone or not accepted yet) is remembered per local address and port:
 * it is the same for every flow to that service. Exact 4-tuple lookups are not remembered.
 */
export function memoServiceLookups(lookup: Lookup): Lookup {
  const listeners = new Map<string, SockInfo | null>();
  return (family, proto, end) => {
    if (end.remotePort !== 0 || (end.remoteAddr !== '0.0.0.0' && end.remoteAddr !== '::')) return lookup(family, proto, end);
    const k = `${family}|${proto}|${end.localAddr}|${end.localPort}`;
    let s = listeners.get(k);
    if (s === undefined) listeners.set(k, (s = lookup(family, proto, end)));
    return s;
  };
}
