// `ctacct states`: TCP (and UDP) state counts from the socket tables, or from conntrack as root.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { parseCidr, type Cidr } from '../core/addr.js';
import { countStates, DEFAULT_EPHEMERAL, diffStates, flowItems, socketItems, type StateItem, type StatesBy, type StatesQuery, type StatesResult, type StatesSource } from '../core/states.js';
import { EXIT, explainSystemError, UserError } from '../errors.js';
import { countSocketStates, dumpSocketTable } from '../netlink/sockets.js';
import { tcpStateName, udpStateName, type SocketEntry } from '../proc/parse.js';
import type { System } from '../system.js';
import { statesJson } from '../views/states-json.js';
import { checkFamilies, netnsOptions, parsePorts } from './options.js';
// Modules only some runs need (the /proc fallback, conntrack, owners, text tables, --netns) are
// imported where used: a plain `ctacct states --json` loads none of them.

/** Raw arguments as yargs gives them; validated in the handler (see checkArgs). */
interface RawStatesArgs {
  netns?: string;
  source: StatesSource;
  by: StatesBy;
  listening: boolean;
  udp: boolean;
  port?: string[];
  host?: string[];
  top?: number;
  watch?: number;
  count?: number;
  json: boolean;
  '4'?: boolean;
  '6'?: boolean;
}

interface StatesArgs extends Omit<RawStatesArgs, 'port' | 'host'> {
  port?: number[];
  host?: Cidr[];
}

/** `--host 10.0.0.0/8 --host fd00::1` → CIDRs; anything else is a usage error. */
export function parseHosts(values: unknown): Cidr[] {
  const list = (Array.isArray(values) ? values : [values]).flatMap((v) => String(v).split(','));
  return list
    .filter((s) => s.trim() !== '')
    .map((s) => {
      const c = parseCidr(s.trim());
      if (!c) throw new UserError(`--host: '${s}' is not an address or ADDR/PREFIX`, EXIT.usage, 'ERR_USAGE');
      return c;
    });
}

function checkNumber(name: string, v: number | undefined, integer: boolean, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new UserError(`--${name}: '${String(v)}' is not ${integer ? 'a whole number' : 'a number'} >= ${min}`, EXIT.usage, 'ERR_USAGE');
  }
  return n;
}

/**
 * Validation lives here, not in yargs `coerce`: yargs rewraps errors thrown from coerce into a
 * plain YError, which would lose the usage exit code (2).
 */
export function checkArgs(a: RawStatesArgs): StatesArgs {
  const out: StatesArgs = { ...a, port: undefined, host: undefined };
  checkFamilies(a);
  if (a.port !== undefined) out.port = parsePorts(a.port);
  if (a.host !== undefined) out.host = parseHosts(a.host);
  out.top = checkNumber('top', a.top, true, 1);
  out.watch = checkNumber('watch', a.watch, false, 0.1);
  out.count = checkNumber('count', a.count, true, 1);
  if (a.source === 'conntrack' && a.by === 'process') {
    throw new UserError('--by process needs --source sockets (conntrack flows are attributed to processes by `ctacct top`)', EXIT.usage, 'ERR_USAGE');
  }
  if (out.count !== undefined && out.watch === undefined) throw new UserError('--count needs --watch', EXIT.usage, 'ERR_USAGE');
  return out;
}

export function statesOptions<T>(y: Argv<T>) {
  return y
    .option('source', {
      choices: ['sockets', 'conntrack'] as const,
      default: 'sockets' as const,
      describe: 'sockets: the view of netstat/ss (no root needed); conntrack: one entry per tracked connection, incl. forwarded/NATed (root)',
    })
    .option('by', { choices: ['state', 'port', 'process', 'remote'] as const, default: 'state' as const, describe: 'One row per state, or per port/process/remote address with a column per state' })
    .option('listening', { type: 'boolean', default: true, describe: 'Include LISTEN (and unconnected UDP) sockets, as netstat -a does; --no-listening leaves them out' })
    .option('udp', { type: 'boolean', default: false, describe: 'Count UDP sockets too (shown apart), as ss -s does' })
    .option('port', { type: 'string', array: true, describe: 'Only sockets with this port at either end (N or N,M,...)', group: 'Filters:' })
    .option('host', { type: 'string', array: true, describe: 'Only sockets whose remote end is in ADDR[/PREFIX] (IPv4 or IPv6)', group: 'Filters:' })
    .option('4', { type: 'boolean', describe: 'IPv4 only', group: 'Filters:' })
    .option('6', { type: 'boolean', describe: 'IPv6 only (v4-mapped sockets are in the IPv6 tables)', group: 'Filters:' })
    .option('top', { alias: 'limit', type: 'number', describe: 'Only the N largest groups (with --by)' })
    .option('watch', { alias: ['interval', 'd', 'delay'], type: 'number', describe: 'Refresh every SECONDS (in place on a terminal; one JSON object per line with --json)' })
    .option('count', { alias: 'c', type: 'number', describe: 'With --watch: stop after N refreshes' })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output', group: 'Output:' });
}

function localAddresses(): Set<string> {
  const out = new Set<string>(['127.0.0.1', '::1']);
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(a.address.split('%')[0]!);
  return out;
}

/** net.ipv4.ip_local_port_range, for telling client ports from service ports in --by port. */
function ephemeralRange(procRoot: string): readonly [number, number] {
  try {
    const [lo, hi] = readFileSync(join(procRoot, 'sys/net/ipv4/ip_local_port_range'), 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo!, hi!];
  } catch {
    /* not readable or a fixture tree without it: the kernel default */
  }
  return DEFAULT_EPHEMERAL;
}

/**
 * `read` through sock_diag in the addon (binary, unprivileged, 2.5× less CPU than parsing the
 * /proc/net text at 50k sockets), or null when the proc root is not the live /proc (a fixture
 * tree) or the kernel has no sock_diag for inet (inet_diag not loaded): then the text is read.
 */
function viaSockDiag<T>(system: System, read: () => T): T | null {
  if (system.procRoot !== '/proc') return null;
  try {
    return read();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EINVAL' && code !== 'EOPNOTSUPP' && code !== 'EPROTONOSUPPORT' && code !== 'ERR_DLOPEN_FAILED' && code !== 'ERR_CTACCT_ADDON')
      throw explainSystemError(e, 'reading the socket tables (sock_diag)');
    return null;
  }
}

async function readSockets(system: System, opts: { tcp: boolean; udp: boolean; families: (4 | 6)[] }): Promise<{ entries: SocketEntry[] }> {
  const entries = viaSockDiag(system, () => dumpSocketTable(opts));
  if (entries) return { entries };
  const { readSocketTable } = await import('../proc/reader.js');
  try {
    return readSocketTable(system.procRoot, opts);
  } catch (e) {
    throw explainSystemError(e, `reading ${system.procRoot}/net`);
  }
}

/**
 * Counting by state alone needs no address, port or owner: the addon counts each state during the
 * dump, and each (protocol, state) becomes one item standing for that many sockets, so countStates
 * applies the same rules (--no-listening, --udp) without an object per socket.
 */
function stateOnlyItems(dumps: { proto: 'tcp' | 'udp'; counts: Uint32Array }[]): StateItem[] {
  const out: StateItem[] = [];
  for (const { proto, counts } of dumps) {
    const name = proto === 'tcp' ? tcpStateName : udpStateName;
    counts.forEach((count, n) => {
      if (count > 0) out.push({ proto, state: name(n), localPort: 0, remoteAddr: '', remotePort: 0, servicePort: 0, owner: 'unknown', count });
    });
  }
  return out;
}

/** One snapshot: read the kernel's tables and count. */
async function snapshot(system: System, a: StatesArgs, q: StatesQuery): Promise<StatesResult> {
  const families: (4 | 6)[] = a['4'] ? [4] : a['6'] ? [6] : [4, 6];
  if (a.source === 'conntrack') {
    let flows;
    const { dumpAll } = await import('../netlink/source.js');
    try {
      flows = (await dumpAll(system.conntrack())).flows;
    } catch (e) {
      throw explainSystemError(e, 'reading the conntrack table');
    }
    return countStates(flowItems(flows.filter((f) => families.includes(f.family)), localAddresses()), 'conntrack', q);
  }
  if (a.by === 'state' && !a.port?.length && !a.host?.length) {
    const dumps = viaSockDiag(system, () => countSocketStates({ tcp: true, udp: a.udp, families }));
    if (dumps) return countStates(stateOnlyItems(dumps), 'sockets', q);
  }
  const table = await readSockets(system, { tcp: true, udp: a.udp, families });
  const eph = ephemeralRange(system.procRoot);
  if (a.by !== 'process') return countStates(socketItems(table.entries, undefined, undefined, eph), 'sockets', q);
  // Owners: one fd scan, then comm/uid only for the pids that hold a socket in the table.
  const { readProcessInfo, scanSocketOwners } = await import('../proc/reader.js');
  const scan = scanSocketOwners(system.procRoot);
  const procs = new Map<number, { comm: string; uid: number }>();
  for (const e of table.entries) {
    const pid = scan.owners.get(e.inode)?.[0];
    if (pid === undefined || procs.has(pid)) continue;
    const info = readProcessInfo(system.procRoot, pid);
    if (info) procs.set(pid, { comm: info.comm, uid: info.uid });
  }
  return countStates(socketItems(table.entries, scan.owners, procs, eph), 'sockets', q);
}

/** The text renderer, with the full display widths loaded only when `r` has text beyond ASCII. */
async function textRenderer(r: StatesResult): Promise<(typeof import('../views/states.js'))['renderStates']> {
  const [views, text] = await Promise.all([import('../views/states.js'), import('../views/text.js')]);
  if (views.rendersWide(r)) await text.loadWideWidths();
  return views.renderStates;
}

function colorOn(system: System): boolean {
  return system.stdout.isTTY && system.env.NO_COLOR === undefined;
}

async function watch(system: System, a: StatesArgs, q: StatesQuery): Promise<void> {
  const interval = (a.watch ?? 1) * 1000;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const inPlace = system.stdout.isTTY && !a.json;
  // Interactive: q (or Ctrl-C, which raw mode turns into a byte) quits, as in `top`.
  const keys = inPlace && system.stdin?.isTTY ? system.stdin : null;
  const onKey = (b: Buffer) => {
    const k = b.toString('utf8');
    if (k === 'q' || k === 'Q' || k === '\x03') stop.abort();
  };
  if (keys) {
    keys.setRawMode?.(true);
    keys.on('data', onKey);
    keys.resume();
  }
  let prev: StatesResult | null = null;
  try {
    for (let n = 0; a.count === undefined || n < a.count; n++) {
      if (n > 0) {
        await new Promise<void>((res) => {
          const t = setTimeout(res, interval);
          stop.signal.addEventListener('abort', () => (clearTimeout(t), res()), { once: true });
        });
      }
      if (stop.signal.aborted) break;
      const r = await snapshot(system, a, q);
      const renderStates = a.json ? null : await textRenderer(r);
      const time = new Date(system.now()).toISOString();
      if (a.json) {
        const line: Record<string, unknown> = { time, ...statesJson(r) };
        if (prev) line.change = diffStates(prev, r);
        system.stdout.write(`${JSON.stringify(line)}\n`);
      } else {
        const head = `ctacct states (${r.source}) every ${a.watch}s — ${time}${inPlace ? (keys ? ' — q to quit' : ' — Ctrl-C to quit') : ''}\n`;
        const body = renderStates!(r, { width: system.stdout.columns(), color: colorOn(system), privileged: system.isRoot });
        // In place: home + clear below, so the block redraws without scrolling.
        system.stdout.write(inPlace ? `\x1b[H\x1b[J${head}\n${body}` : `${n > 0 ? '\n' : ''}${head}${body}`);
      }
      prev = r;
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (keys) {
      keys.off('data', onKey);
      keys.setRawMode?.(false);
      keys.pause();
    }
  }
}

// Two lines per entry so the help stays readable at 80 columns (yargs wraps example columns badly).
const REPLACES = [
  'The pipelines it replaces:',
  "  netstat -ant | awk '{print $6}' | sort | uniq -c",
  '      ctacct states',
  '  ss -tan state time-wait | wc -l',
  '      ctacct states --json | jq .states.TIME_WAIT',
  '  netstat -antp | grep :80 | grep ESTABLISHED -c',
  '      ctacct states --port 80 --json | jq .states.ESTABLISHED',
  '  ss -s',
  '      ctacct states --udp',
  "  netstat -antp | awk '{print $7, $6}' | sort | uniq -c | sort -rn | head",
  '      ctacct states --by process --top 10',
  "  netstat -ant | awk '{print $5}' | cut -d: -f1 | sort | uniq -c",
  '      ctacct states --by remote            (--host 10.0.0.0/8 to narrow)',
  "  conntrack -L -p tcp | awk '{print $4}' | sort | uniq -c",
  '      sudo ctacct states --source conntrack',
  "  watch -n2 'netstat -ant | ...'",
  '      ctacct states --watch 2',
  'Counts are exact: no header lines, IPv4 and IPv6 together. Docs: docs/states.md',
].join('\n');

export function statesCommand(system: System): CommandModule<object, RawStatesArgs> {
  return {
    command: 'states',
    describe: 'TCP state counts, like `netstat -ant | awk` / `ss -s` (works without root)',
    builder: (y) =>
      netnsOptions(statesOptions(y)).epilogue(REPLACES) as unknown as Argv<RawStatesArgs>,
    handler: async (raw) => {
      if (raw.netns !== undefined) (await import('../wiring.js')).enterNetns(system, raw.netns);
      const a = checkArgs(raw);
      const q: StatesQuery = {
        by: a.by,
        listening: a.listening,
        udp: a.udp,
        ...(a.port ? { ports: a.port } : {}),
        ...(a.host ? { hosts: a.host } : {}),
        ...(a.top !== undefined ? { top: a.top } : {}),
      };
      if (a.watch !== undefined) return watch(system, a, q);
      const r = await snapshot(system, a, q);
      if (a.json) system.stdout.write(`${JSON.stringify(statesJson(r))}\n`);
      else {
        const renderStates = await textRenderer(r);
        system.stdout.write(renderStates(r, { width: system.stdout.columns(), color: colorOn(system), privileged: system.isRoot }));
      }
    },
  };
}
