// `ctacct flows`: one snapshot of the conntrack table with counters and owners.
// `--json` streams: the dump is kept as the addon's raw record buffers (200 bytes a flow, not a
// JavaScript object per flow); directions and sockets are read from those buffers, owners are
// resolved in one batch, then each flow's JSON object is written as bytes from its record (by the
// addon, native/ct_json.c; by views/flowjson.ts for values only JavaScript formats as the
// contract says), a chunk of output at a time. The table view decodes records into objects.
import type { CommandModule } from 'yargs';
import { StringDecoder } from 'node:string_decoder';
import { endOf, flowKey, localAddressSet, rawFlowKey, type Direction, type FlowEnd, type FlowId, type LocalAddresses } from '../core/flow.js';
import { flowPasses, toFilters, toKernelFilters, type FilterArgs } from '../core/filters.js';
import { toFlowView, type AttributedEnd, type FlowView } from '../core/flowview.js';
import { OwnerResolver, type Owner, type SockInfo } from '../core/owners.js';
import { NO_SOCKET, SocketIndex } from '../core/sockindex.js';
import { EXIT, UserError, explainSystemError } from '../errors.js';
import { decodeOne, formatIPv4, formatIPv6, HAS, ORIG_SRC, RECORD_SIZE, REPLY_SRC } from '../netlink/record.js';
import { dumpSocketTable } from '../netlink/sockets.js';
import type { System } from '../system.js';
import { formatSetupReport, withSystemSetup } from '../system/setup.js';
import { ageTexts, ByteSink, OwnerTexts, writeFlowJson, type EndOwner } from '../views/flowjson.js';
import { addonIfLoadable, type Addon } from '../netlink/addon.js';
import { enterNetns, interfaceAddresses, makeForeignAttributor, realOwnerDeps, uidOfUser } from '../wiring.js';
import { filterOptions, netnsOptions, outputOptions, ownerFilterOptions, setupOptions } from './options.js';

interface FlowsArgs extends FilterArgs {
  json: boolean;
  setup: boolean;
  'keep-acct': boolean;
  owners: boolean;
  netns?: string;
}

/** One batch of the dump as the addon delivered it, plus what attribution found for its ends. */
interface Chunk {
  buf: Buffer;
  count: number;
  /** Records seen in an earlier chunk (several kernel-filtered dumps can return one flow twice). */
  dup: Uint8Array | null;
  /** Direction of each record (DIRS index), from the first pass. */
  dirs: Uint8Array;
  /** Socket of each local end, in record order then end order: inode (0 = none) and uid, kept in
   *  typed arrays rather than an object per end (they live until the output is written). */
  inodes: Uint32Array;
  uids: Uint32Array;
  ends: number;
}

export function flowsCommand(system: System): CommandModule<object, FlowsArgs> {
  return {
    command: 'flows',
    describe: 'One snapshot of tracked flows with counters and owner (needs CAP_NET_ADMIN)',
    builder: (y) =>
      netnsOptions(setupOptions(outputOptions(ownerFilterOptions(filterOptions(y)))))
        .option('owners', { type: 'boolean', default: true, describe: 'Find the owning process of each flow (--no-owners skips the /proc scan)', group: 'Output:' })
        .example('sudo ctacct flows', 'every tracked flow with counters and owner')
        .example('sudo ctacct flows --proto tcp --port 443 --json', 'HTTPS flows as a JSON array')
        .example('sudo ctacct flows --host 10.0.0.0/8 -4', 'flows whose remote end is in 10/8') as never,
    handler: async (args) => {
      enterNetns(system, args.netns);
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
              await system.conntrack().dumpRaw(f, (buf, count) => chunks.push({ buf, count, dup: null, dirs: NONE8, inodes: NONE, uids: NONE, ends: 0 }));
          } catch (e) {
            throw explainSystemError(e, 'reading the conntrack table');
          }
          const att = attribute(system, args, chunks);
          const now = system.now();
          const filtering = Object.keys(filters).length > 0;
          // Output goes in chunks of bytes as they fill (process.stdout takes them as they are).
          const decoder = new StringDecoder('utf8');
          const sink = new ByteSink((chunk, written) => {
            if (system.stdout.writeBytes) return system.stdout.writeBytes(chunk, written);
            system.stdout.write(decoder.write(chunk)); // a copy: the chunk may be reused
            return true;
          });
          if (args.json) sink.byte(0x5b); // [
          let first = true;
          // Pass 2: each flow's ends with their owners; then the flows of the batch as JSON objects,
          // written by the addon from the record buffer (by writeFlowJson for the few values only
          // JavaScript formats as the contract needs), or as table rows.
          const texts = new OwnerTexts();
          const native = args.json ? nativeFormat() : null;
          for (const [ci, c] of chunks.entries()) {
            const dv = new DataView(c.buf.buffer, c.buf.byteOffset, c.buf.byteLength);
            const { skip, endSide, endOwner } = endsOfChunk(att, c, ci, texts);
            if (filtering || !args.json)
              for (let i = 0; i < c.count; i++) {
                if (skip[i]) continue;
                const r = decodeOne(dv, c.buf, i * RECORD_SIZE);
                const attributed: AttributedEnd[] = [];
                for (let e = 0; e < 2 && endSide[2 * i + e]! >= 0; e++) {
                  const side = endSide[2 * i + e] === 0 ? 'orig' : 'reply';
                  attributed.push({ end: endOf(side === 'orig' ? r.orig : r.reply!, side), owner: texts.owner(endOwner[2 * i + e]!) });
                }
                if (!flowPasses(filters, r, attributed)) skip[i] = 1;
                else if (!args.json) table.push(toFlowView(r, DIRS[c.dirs[i]!]!, attributed, now));
              }
            if (args.json) first = writeBatch(sink, native, dv, c.buf, c.count, c.dirs, skip, endSide, endOwner, texts, now, first);
            // A reader slower than us (a pipe to jq): wait for it rather than queue the output.
            if (args.json) await system.stdout.drain?.();
            // Done with this batch: its memory can go before the next is written.
            c.buf = EMPTY;
            c.dirs = NONE8;
            c.inodes = NONE;
            c.uids = NONE;
          }
          if (args.json) {
            sink.room(2);
            sink.byte(0x5d); // ]
            sink.byte(0x0a);
            sink.end();
          }
        },
      );
      if (!args.json) system.stdout.write((await import('../views/flows.js')).renderFlowsTable(table)); // loaded only for the table (display widths)
    },
  };
}

/** What pass 1 found: the owners' resolver (inodes resolved), and container ends by chunk:record. */
interface Attribution {
  resolver: OwnerResolver;
  innerOf: Map<string, { end: FlowEnd; idx: number }[]>;
  innerRes: { owner: Owner | null }[];
  /** Owner of each socket asked so far (see ownerOfSocket). */
  socketOwners: Map<number, { uid: number; owner: Owner | null }>;
}

/**
 * Pass 1, straight from the record buffers: each record's direction (chunk.dirs) and the socket of
 * each local end (chunk.inodes/uids), duplicates of several kernel-filtered dumps marked; then the
 * owners of every socket found, in one batch, and the ends in containers' namespaces.
 */
function attribute(system: System, args: FlowsArgs, chunks: Chunk[]): Attribution {
  // A one-shot snapshot: the listener on a local port does not change within it, so each
  // service (listener) lookup is made once per address and port, not once per flow.
  const deps = realOwnerDeps(system);
  const resolver = new OwnerResolver({ ...deps, lookupSocket: memoServiceLookups(deps.lookupSocket) });
  const addrs = interfaceAddresses();
  const isLocal = rawLocalCheck(addrs, localAddressSet(addrs));
  const sockets = args.owners ? socketIndex(system) : null;
  const seen = chunks.length > 1 && toKernelFilters(args).length > 1 ? new Set<FlowId>() : null;
  const inodes = new Set<number>();
  /**
   * The socket of one local end. NO_SOCKET from the index (nothing can take the end) means the
   * listener lookup socketFor would make next finds nothing either: no lookup, and no end object
   * when no socket at all uses the end's local port.
   */
  const socketOf = (dv: DataView, buf: Uint8Array, base: number, side: 'orig' | 'reply', family: 4 | 6, proto: number, present: number): SockInfo | null => {
    const reply = side === 'reply';
    if (sockets && (proto === 6 || proto === 17) && present & (reply ? HAS.replyPorts : HAS.origPorts) && !sockets.usesPort(proto, dv.getUint16(base + (reply ? 30 : 26), true)))
      return null;
    const end = rawEnd(dv, buf, base, side, family, present);
    const hit = sockets?.find(family, proto, end) ?? null;
    return hit === NO_SOCKET ? null : resolver.socketFor(family, proto, end, hit);
  };
  // Ends in containers' namespaces on this host (flows with no end here): looked up there. One
  // snapshot: the containers' addresses as they are now, asked without making text.
  const foreign = args.owners ? makeForeignAttributor(system) : null;
  const foreignAt = foreign?.snapshot() ?? null;
  const inner: { family: 4 | 6; proto: number; end: FlowEnd; netns: number[] }[] = [];
  const innerOf = new Map<string, { end: FlowEnd; idx: number }[]>();
  for (const [ci, c] of chunks.entries()) {
    const dv = new DataView(c.buf.buffer, c.buf.byteOffset, c.buf.byteLength);
    if (seen) c.dup = new Uint8Array(c.count);
    c.dirs = new Uint8Array(c.count);
    c.inodes = new Uint32Array(2 * c.count); // at most two local ends per flow
    c.uids = new Uint32Array(2 * c.count);
    for (let i = 0; i < c.count; i++) {
      const base = i * RECORD_SIZE;
      const present = dv.getUint32(base + 4, true);
      if (seen) {
        const k = rawFlowKey(dv, base, present) ?? flowKey(decodeOne(dv, c.buf, base));
        if (seen.has(k)) {
          c.dup![i] = 1;
          continue;
        }
        seen.add(k);
      }
      const family: 4 | 6 = dv.getUint8(base + 1) === 10 ? 6 : 4;
      const proto = dv.getUint8(base + 2);
      const hasReply = (present & HAS.replyTuple) !== 0;
      const oLocal = isLocal(dv, c.buf, base + ORIG_SRC, family);
      const rLocal = hasReply && isLocal(dv, c.buf, base + REPLY_SRC, family);
      const dir = oLocal && rLocal ? 'local' : oLocal ? 'outbound' : rLocal ? 'inbound' : 'forwarded';
      c.dirs[i] = DIR_CODE[dir];
      for (const side of SIDES[dir]) {
        const sock = args.owners ? socketOf(dv, c.buf, base, side, family, proto, present) : null;
        c.inodes[c.ends] = sock?.inode ?? 0;
        c.uids[c.ends++] = sock?.uid ?? 0;
        if (sock && sock.inode) inodes.add(sock.inode);
      }
      if (foreign && dir === 'forwarded' && (foreignAt!(dv, c.buf, base + ORIG_SRC, family) || (hasReply && foreignAt!(dv, c.buf, base + REPLY_SRC, family)))) {
        const r = decodeOne(dv, c.buf, base);
        const list = foreign.endsOf(r).map((f) => ({ end: f.end, idx: inner.push({ family: r.family, proto: r.proto, end: f.end, netns: f.netns }) - 1 }));
        if (list.length) innerOf.set(`${ci}:${i}`, list);
      }
    }
  }
  seen?.clear();
  resolver.resolveInodes(inodes);
  return { resolver, innerOf, innerRes: foreign && inner.length ? foreign.resolveAll(inner) : [], socketOwners: new Map() };
}

/**
 * Each record's ends (at most two: both local ones, or a forwarded flow's ends in containers),
 * as the side (-1 none, 0 orig, 1 reply) and owner text id per end, two slots per record; skip
 * marks duplicates. One owner per socket within the snapshot (a listener takes many flows).
 */
function endsOfChunk(att: Attribution, c: Chunk, ci: number, texts: OwnerTexts): { skip: Uint8Array; endSide: Int8Array; endOwner: Uint32Array } {
  const skip = c.dup ?? new Uint8Array(c.count);
  const endSide = new Int8Array(2 * c.count).fill(-1);
  const endOwner = new Uint32Array(2 * c.count);
  let s = 0;
  for (let i = 0; i < c.count; i++) {
    if (skip[i]) continue;
    let k = 0;
    const put = (side: 'orig' | 'reply', owner: Owner | null) => {
      if (k >= 2) return;
      endSide[2 * i + k] = side === 'orig' ? 0 : 1;
      endOwner[2 * i + k++] = texts.id(owner);
    };
    for (const side of SIDES[DIRS[c.dirs[i]!]!]) {
      const inode = c.inodes[s]!;
      const uid = c.uids[s++]!;
      put(side, inode ? ownerOfSocket(att, inode, uid) : null);
    }
    if (att.innerOf.size) for (const f of att.innerOf.get(`${ci}:${i}`) ?? []) put(f.end.side, att.innerRes[f.idx]?.owner ?? null);
  }
  return { skip, endSide, endOwner };
}

/** The owner of a socket, asked of the resolver once per socket and snapshot. */
function ownerOfSocket(att: Attribution, inode: number, uid: number): Owner | null {
  const known = att.socketOwners.get(inode);
  if (known && known.uid === uid) return known.owner;
  const owner = att.resolver.ownerOf({ inode, uid, state: 0 });
  att.socketOwners.set(inode, { uid, owner });
  return owner;
}

type Format = Addon['formatFlows'];

/** The addon's JSON writer, or null (a fake addon in tests, an older build): JavaScript writes all. */
function nativeFormat(): Format | null {
  const a = addonIfLoadable();
  return a && typeof a.formatFlows === 'function' ? a.formatFlows.bind(a) : null;
}

/**
 * The JSON objects of one batch (records not skipped), comma-separated, into the sink: by the
 * addon where it can (age_s texts made here), by writeFlowJson for the flows it leaves (counters
 * past 2^53).
 * Returns whether nothing has been written yet (no comma before the next object).
 */
function writeBatch(
  sink: ByteSink,
  native: Format | null,
  dv: DataView,
  buf: Buffer,
  count: number,
  dirs: Uint8Array,
  skip: Uint8Array,
  endSide: Int8Array,
  endOwner: Uint32Array,
  texts: OwnerTexts,
  now: number,
  first: boolean,
): boolean {
  const { text, off } = texts.table();
  const ages = native ? ageTexts(dv, count, skip, now) : null;
  let i = 0;
  while (i < count) {
    if (native) {
      const [next, end, status] = native(buf, i, count, dirs, skip, endSide, endOwner, text, off, sink.buf, sink.n, first, ages!.text, ages!.off);
      if (end !== sink.n) first = false;
      sink.n = end;
      i = next;
      if (status === 0) break;
      // Full: a new buffer, unless this one is empty (a flow larger than a buffer: JavaScript
      // below makes room for it).
      if (status === 2 && sink.n > 0) {
        sink.end();
        continue;
      }
    }
    // This record in JavaScript (every record when there is no native writer).
    if (!skip[i]) {
      const ends: EndOwner[] = [];
      for (let e = 0; e < 2; e++) if (endSide[2 * i + e]! >= 0) ends.push({ side: endSide[2 * i + e] === 0 ? 'orig' : 'reply', owner: texts.owner(endOwner[2 * i + e]!) });
      sink.room(1);
      if (!first) sink.byte(0x2c); // ,
      writeFlowJson(sink, dv, buf, i * RECORD_SIZE, DIRS[dirs[i]!]!, ends, now);
      first = false;
    }
    i++;
  }
  return first;
}

const EMPTY = Buffer.alloc(0);
const NONE = new Uint32Array(0);

/** Where the ends of a flow are, by direction: which tuple's source is local. */
const SIDES: Record<Direction, readonly ('orig' | 'reply')[]> = { outbound: ['orig'], inbound: ['reply'], local: ['orig', 'reply'], forwarded: [] };
const DIRS: readonly Direction[] = ['outbound', 'inbound', 'local', 'forwarded'];
const DIR_CODE: Record<Direction, number> = { outbound: 0, inbound: 1, local: 2, forwarded: 3 };
const NONE8 = new Uint8Array(0);

/** The FlowEnd of one side of the record at `base` (endOf on a decoded tuple, without decoding). */
function rawEnd(dv: DataView, buf: Uint8Array, base: number, side: 'orig' | 'reply', family: 4 | 6, present: number): FlowEnd {
  const reply = side === 'reply';
  const ports = (present & (reply ? HAS.replyPorts : HAS.origPorts)) !== 0;
  const src = base + (reply ? REPLY_SRC : ORIG_SRC);
  return {
    side,
    localAddr: addrAt(buf, src, family),
    localPort: ports ? dv.getUint16(base + (reply ? 30 : 26), true) : null,
    remoteAddr: addrAt(buf, src + 16, family),
    remotePort: ports ? dv.getUint16(base + (reply ? 32 : 28), true) : null,
  };
}

const addrAt = (buf: Uint8Array, off: number, family: 4 | 6) => (family === 4 ? formatIPv4(buf, off) : formatIPv6(buf, off));

/**
 * `local.has` (localAddressSet) on an address in a record, without making its text for IPv4:
 * loopback (127/8) or one of this namespace's IPv4 addresses.
 */
function rawLocalCheck(addrs: Iterable<string>, local: LocalAddresses): (dv: DataView, buf: Uint8Array, off: number, family: 4 | 6) => boolean {
  const v4 = new Set<number>();
  for (const a of addrs) {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
    if (m) v4.add(((+m[1]! << 24) | (+m[2]! << 16) | (+m[3]! << 8) | +m[4]!) >>> 0);
  }
  return (dv, buf, off, family) => (family === 4 ? buf[off] === 127 || v4.has(dv.getUint32(off)) : local.has(formatIPv6(buf, off)));
}

/**
 * Every TCP and UDP socket of the namespace, from one sock_diag dump: an end whose own socket is
 * in it, or whose lookup could only return one listener or none, needs no lookup of its own (at
 * 100k flows, one lookup per flow costs more than the whole dump). See core/sockindex.ts.
 */
function socketIndex(system: System): SocketIndex | null {
  if (system.procRoot !== '/proc') return null; // a fixture tree: per-flow lookups only
  try {
    return new SocketIndex(dumpSocketTable({ tcp: true, udp: true }));
  } catch {
    return null; // no inet sock_diag: per-flow lookups, as before
  }
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
