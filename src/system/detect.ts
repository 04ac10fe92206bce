// What the kernel and this network namespace offer ctacct: conntrack, ctnetlink, tracking,
// accounting, privileges, tools. Every side effect goes through `Host`, so tests hand in fakes.
import { execFile, execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dumpAll } from '../netlink/source.js';
import { findTool, realToolEnv as toolEnv } from './tools.js';
import { entryIds, lockPath, openNftSession, probeTracking, removeEntriesExcept, type NftSession, type TrackingProbe } from './engage.js';
import type { System } from '../system.js';

export interface RunResult {
  /** Exit status; null when the command could not start or was killed. */
  status: number | null;
  stdout: string;
  stderr: string;
  /** Set when the command could not start (e.g. ENOENT: not installed). */
  errorCode?: string;
}

/** Coded error the way Node's fs errors look (`code` is what callers branch on). */
export interface CodedError extends Error {
  code: string;
}

/** Every side effect detection and set-up need. Paths are absolute; /proc paths are under procRoot. */
export interface Host {
  procRoot: string;
  /** Throws a coded error (ENOENT, EACCES...). */
  readFile(path: string): string;
  writeFile(path: string, data: string): void;
  /** Writes a file atomically (temp + rename), creating its directory. */
  writeFileAtomic(path: string, data: string): void;
  unlink(path: string): void;
  readdir(path: string): string[];
  readlink(path: string): string;
  /** Runs a command by absolute path or PATH name; never throws. */
  run(cmd: string, args: string[], input?: string): Promise<RunResult>;
  runSync(cmd: string, args: string[], input?: string): RunResult;
  /** Absolute path of an executable found in PATH or the sbin directories, or null. */
  which(cmd: string): string | null;
  /** One ctnetlink dump round trip; rejects with the addon's coded error. */
  probeCtnetlink(): Promise<void>;
  /** nf_tables over netlink (no binary); throws the addon's coded error. */
  openNft(): NftSession;
  /** Whether conntrack tracks loopback UDP here now, per family (null: cannot tell). */
  probeTracking(): Promise<TrackingProbe>;
  /** Conntrack ids in the table now. */
  entryIds(): Promise<number[]>;
  /** Deletes TCP/UDP entries not in `keep`; how many went. */
  removeEntriesExcept(keep: ReadonlySet<number>): Promise<number>;
  /** Exclusive lock on a file (created 0600, never through a symlink); returns release. Throws ESTALE when the file was unlinked while this waited. */
  lock(path: string): () => void;
  mkdir(path: string): void;
  /** Removes an empty directory (never follows a symlink: rmdir fails on one). */
  rmdir(path: string): void;
  /** `path` is a directory itself, not a symlink to one. */
  isDir(path: string): boolean;
  pid: number;
}


function runResultOf(err: (Error & { code?: unknown; status?: number | null }) | null, stdout: string, stderr: string): RunResult {
  if (!err) return { status: 0, stdout, stderr };
  if (typeof err.code === 'string') return { status: null, stdout, stderr, errorCode: err.code };
  const status = typeof err.code === 'number' ? err.code : (err.status ?? null);
  return { status, stdout, stderr };
}

/** The real host: node:fs, execFile and the addon of `system`. */
export function realHost(system: Pick<System, 'conntrack' | 'procRoot' | 'env' | 'pid'>): Host {
  const env = { ...system.env, LC_ALL: 'C' } as NodeJS.ProcessEnv;
  // As root only trusted system paths (src/system/tools.ts); PATH is not consulted.
  const which = (cmd: string): string | null => findTool(cmd, { ...toolEnv(), path: system.env.PATH ?? '' });
  return {
    procRoot: system.procRoot,
    pid: system.pid,
    readFile: (p) => readFileSync(p, 'utf8'),
    writeFile: (p, d) => writeFileSync(p, d),
    writeFileAtomic(p, d) {
      mkdirSync(join(p, '..'), { recursive: true, mode: 0o755 });
      const tmp = `${p}.${system.pid}.tmp`;
      try {
        unlinkSync(tmp); // a crashed run with the same pid
      } catch {
        /* none */
      }
      writeFileSync(tmp, d, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, p);
    },
    unlink: (p) => unlinkSync(p),
    readdir: (p) => readdirSync(p),
    readlink: (p) => readlinkSync(p),
    which,
    run(cmd, args, input) {
      const path = which(cmd);
      if (!path) return Promise.resolve({ status: null, stdout: '', stderr: '', errorCode: 'ENOENT' });
      return new Promise((res) => {
        const child = execFile(path, args, { env, maxBuffer: 64 << 20, timeout: 10_000 }, (err, stdout, stderr) =>
          res(runResultOf(err as never, String(stdout), String(stderr))),
        );
        child.stdin?.on('error', () => undefined);
        child.stdin?.end(input ?? '');
      });
    },
    runSync(cmd, args, input) {
      const path = which(cmd);
      if (!path) return { status: null, stdout: '', stderr: '', errorCode: 'ENOENT' };
      try {
        const stdout = execFileSync(path, args, { env, input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 });
        return { status: 0, stdout: String(stdout), stderr: '' };
      } catch (e) {
        const err = e as Error & { code?: unknown; status?: number | null; stdout?: Buffer; stderr?: Buffer };
        return runResultOf(err, String(err.stdout ?? ''), String(err.stderr ?? ''));
      }
    },
    openNft: () => openNftSession(),
    probeTracking: () => probeTracking(system.conntrack()),
    entryIds: () => entryIds(system.conntrack()),
    removeEntriesExcept: (keep) => removeEntriesExcept(system.conntrack(), keep),
    lock: (p) => lockPath(p),
    mkdir: (p) => void mkdirSync(p, { recursive: true, mode: 0o700 }),
    rmdir: (p) => rmdirSync(p),
    isDir(p) {
      try {
        return lstatSync(p).isDirectory();
      } catch {
        return false;
      }
    },
    async probeCtnetlink() {
      // A mark no flow carries: the kernel walks the table but copies nothing to us.
      await dumpAll(system.conntrack(), { mark: 0x43544143, markMask: 0xffffffff });
    },
  };
}

// ---------------------------------------------------------------------------------------------

export const SYSCTL = {
  acct: 'sys/net/netfilter/nf_conntrack_acct',
  events: 'sys/net/netfilter/nf_conntrack_events',
  timestamp: 'sys/net/netfilter/nf_conntrack_timestamp',
  count: 'sys/net/netfilter/nf_conntrack_count',
  max: 'sys/net/netfilter/nf_conntrack_max',
} as const;

export type Tristate = boolean | null;

/** What the `inet ctacct` table, or the state file, says about the run that made it. */
export interface SetupRecord {
  pid: number;
  /** Process start time (clock ticks since boot, /proc/PID/stat field 22): tells a reused pid apart. */
  start: number;
  /** 0 when that run turned accounting on and meant to restore 0; null when it did not change it. */
  acctWas: 0 | null;
}

export interface CtacctTable {
  /** The table's comment, parsed; null when it has none we understand. */
  record: SetupRecord | null;
  /** The run named by the record is still alive (another ctacct in this namespace). */
  ownerAlive: boolean;
}

export interface Engagement {
  /** Conntrack tracks in this namespace because of rules other than ctacct's own. null: cannot tell. */
  byOthers: Tristate;
  /** What made us decide (rule kinds found, or why we could not look). */
  evidence: string[];
  /** The `inet ctacct` table, if one exists (ours, from a live run or a crashed one). */
  ctacctTable: CtacctTable | null;
  /** The ruleset could be read (nft present and permitted). */
  rulesetRead: boolean;
}

export interface Detection {
  /** Whether the close tracker loads (probed by doctor only; absent: not probed). */
  closeTracker?: { ok: boolean; code?: string; message: string };
  /** `${procRoot}/net/tcp` readable (socket table). */
  procReadable: boolean;
  /** Other processes' fds are readable (attribution beyond our own uid). */
  procFdsReadable: boolean;
  /** nf_conntrack is loaded (its sysctls exist). */
  conntrackLoaded: boolean;
  /** nf_conntrack is not loaded but the kernel has it as a module or built in. */
  conntrackAvailable: boolean;
  /** ctnetlink dump: null when it worked, else the error code (EPERM, EPROTONOSUPPORT, ERR_CTACCT_ADDON...). */
  netlinkError: string | null;
  netlinkMessage: string | null;
  netAdmin: boolean;
  /** CAP_SYS_ADMIN: setns into other network namespaces (containers' flows, --netns). */
  sysAdmin: boolean;
  uid: number | null;
  nft: string | null;
  acct: number | null;
  events: number | null;
  timestamp: number | null;
  count: number | null;
  max: number | null;
  engagement: Engagement;
  /** Network namespace identity, e.g. `net:[4026531840]`; null when unreadable. */
  netns: string | null;
  /** The loopback probe (no rule set needed): does conntrack track each family here now? */
  probe: TrackingProbe;
  /** nf_tables tables of running ctacct processes (`inet ctacct-PID`), from the reference count. */
  ctacctRuns: number[];
}

export const CAP_NET_ADMIN = 12;
export const CAP_SYS_ADMIN = 21;

/** CapEff from /proc/self/status text → whether bit `cap` is set. */
export function hasCapability(statusText: string, cap: number): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(statusText);
  if (!m?.[1]) return false;
  return ((BigInt(`0x${m[1]}`) >> BigInt(cap)) & 1n) === 1n;
}

export function uidOf(statusText: string): number | null {
  const m = /^Uid:\s*(\d+)\s+(\d+)/m.exec(statusText);
  return m?.[2] !== undefined ? Number(m[2]) : null;
}

/** Field 22 of /proc/PID/stat (start time in clock ticks); the comm may contain spaces and ')'. */
export function startTimeOf(statText: string): number | null {
  const rest = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state) → field 22 is rest[19]
  const v = Number(rest[19]);
  return Number.isFinite(v) && rest.length > 19 ? v : null;
}

const RECORD_RE = /^ctacct pid=(\d+) start=(\d+) acct=(0|-)$/;

export function encodeRecord(r: SetupRecord): string {
  return `ctacct pid=${r.pid} start=${r.start} acct=${r.acctWas === 0 ? '0' : '-'}`;
}

export function decodeRecord(text: string | null | undefined): SetupRecord | null {
  const m = RECORD_RE.exec((text ?? '').trim());
  if (!m) return null;
  return { pid: Number(m[1]), start: Number(m[2]), acctWas: m[3] === '0' ? 0 : null };
}

// Rule kinds whose presence makes the kernel track connections in the namespace: every nft
// expression that calls nf_ct_netns_get() when loaded (ct match/statement, ct count/helper/
// timeout/expectation, NAT statements, flow offload, synproxy). Not `notrack`, and not an empty
// NAT chain (verified: a `type nat` chain with no rule tracks nothing).
const NFT_CT_KEYS = new Set([
  'ct',
  'ct count',
  'ct helper',
  'ct timeout',
  'ct expectation',
  'snat',
  'dnat',
  'masquerade',
  'redirect',
  'flow',
  'synproxy',
]);
// iptables(-nft/-legacy) matches and targets that need conntrack.
const XT_CT_NAMES = /^(conntrack|state|connbytes|connlimit|connmark|helper|cluster|CT|CONNMARK|MASQUERADE|SNAT|DNAT|REDIRECT|NETMAP|SYNPROXY)$/;

interface NftRulesetScan {
  byOthers: boolean;
  evidence: string[];
  ctacctComment: string | null;
  ctacctPresent: boolean;
}

function walkForCt(node: unknown, found: Set<string>): void {
  if (Array.isArray(node)) {
    for (const n of node) walkForCt(n, found);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    if (NFT_CT_KEYS.has(k)) found.add(k === 'ct' ? 'ct expression' : k);
    if (k === 'xt' && v && typeof v === 'object') {
      const name = (v as { name?: unknown }).name;
      if (typeof name === 'string' && XT_CT_NAMES.test(name)) found.add(`xt ${name}`);
    }
    walkForCt(v, found);
  }
}

/** Scans `nft -j list ruleset` output: tracking is on if any rule outside `inet ctacct` uses conntrack. Pure. */
export function scanNftRuleset(json: string): NftRulesetScan {
  const out: NftRulesetScan = { byOthers: false, evidence: [], ctacctComment: null, ctacctPresent: false };
  let doc: { nftables?: Record<string, unknown>[] };
  try {
    doc = JSON.parse(json) as typeof doc;
  } catch {
    throw new Error('unparseable nft JSON');
  }
  const found = new Map<string, Set<string>>(); // table → kinds
  for (const item of doc.nftables ?? []) {
    const [kind, body] = Object.entries(item)[0] ?? [];
    if (!body || typeof body !== 'object') continue;
    const b = body as { family?: string; table?: string; name?: string; type?: string; comment?: string; expr?: unknown };
    const table = kind === 'table' ? `${b.family} ${b.name}` : `${b.family} ${b.table}`;
    if (/^inet ctacct-\d+$/.test(table)) continue; // a running ctacct's own (kernel-owned) table
    if (table === 'inet ctacct') {
      if (kind === 'table') {
        out.ctacctPresent = true;
        out.ctacctComment = b.comment ?? null;
      }
      continue;
    }
    const kinds = found.get(table) ?? new Set<string>();
    if (kind === 'rule') walkForCt(b.expr, kinds);
    if (kinds.size) found.set(table, kinds);
  }
  for (const [table, kinds] of found) out.evidence.push(`nft table ${table}: ${[...kinds].sort().join(', ')}`);
  out.byOthers = found.size > 0;
  return out;
}

/** The comment of a table in `nft list table` text output, or null. */
export function tableCommentOf(text: string): string | null {
  const m = /^\s*comment "([^"]*)"\s*$/m.exec(text);
  return m?.[1] ?? null;
}

/**
 * Scans `iptables-legacy-save` / `ip6tables-legacy-save` output for conntrack matches and CT/NAT
 * targets. An empty nat table is not counted (as with nft, a NAT chain alone tracks nothing;
 * erring this way only costs a redundant ctacct table). Pure.
 */
export function scanIptablesSave(text: string, label: string): string[] {
  const kinds = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('-A ')) continue;
    for (const m of line.matchAll(/(?:^|\s)-m\s+(\S+)/g)) if (m[1] && XT_CT_NAMES.test(m[1])) kinds.add(`-m ${m[1]}`);
    const j = /(?:^|\s)-j\s+(\S+)/.exec(line);
    if (j?.[1] && XT_CT_NAMES.test(j[1])) kinds.add(`-j ${j[1]}`);
  }
  return kinds.size ? [`${label}: ${[...kinds].sort().join(', ')}`] : [];
}

/** A number from a /proc file, or null when unreadable or not a number. */
export function readNumber(host: Host, path: string): number | null {
  try {
    const v = Number(host.readFile(path).trim());
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/** A file's text, or null when it cannot be read. */
export function readText(host: Host, path: string): string | null {
  try {
    return host.readFile(path);
  } catch {
    return null;
  }
}

/** The names in a directory, or null when it cannot be listed. */
export function readNames(host: Host, dir: string): string[] | null {
  try {
    return host.readdir(dir);
  } catch {
    return null;
  }
}

/** Whether the process a record names is still running (same pid and start time). */
export function recordOwnerAlive(host: Host, r: SetupRecord): boolean {
  if (r.pid === host.pid) return false;
  const stat = readText(host, join(host.procRoot, String(r.pid), 'stat'));
  return stat !== null && startTimeOf(stat) === r.start;
}

/** Finds out whether conntrack tracks in this namespace, and who made it so. */
export async function detectEngagement(host: Host, nft: string | null, count: number | null): Promise<Engagement> {
  const evidence: string[] = [];
  let byOthers: Tristate = false;
  let rulesetRead = false;
  let ctacctTable: CtacctTable | null = null;
  if (nft) {
    const r = await host.run(nft, ['-j', 'list', 'ruleset']);
    if (r.status === 0) {
      try {
        const scan = scanNftRuleset(r.stdout);
        rulesetRead = true;
        evidence.push(...scan.evidence);
        byOthers = scan.byOthers;
        if (scan.ctacctPresent) {
          let comment = scan.ctacctComment;
          if (comment === null) {
            // nft 1.0.6 leaves table comments out of its JSON; the text listing has them.
            const t = await host.run(nft, ['list', 'table', 'inet', 'ctacct']);
            comment = t.status === 0 ? tableCommentOf(t.stdout) : null;
          }
          const record = decodeRecord(comment);
          ctacctTable = { record, ownerAlive: record ? recordOwnerAlive(host, record) : false };
        }
      } catch {
        evidence.push('nft printed a ruleset ctacct cannot parse');
        byOthers = null;
      }
    } else {
      byOthers = null;
      const why = /Operation not permitted|Permission denied/i.test(r.stderr) ? 'needs CAP_NET_ADMIN' : r.stderr.trim().split('\n')[0];
      evidence.push(`cannot read the nft ruleset (${why || `exit ${r.status}`})`);
    }
  } else {
    byOthers = null;
    evidence.push('nft is not installed: nft rules unknown');
  }
  // Legacy iptables keeps rules outside nftables; iptables-nft rules already showed up above.
  for (const [cmd, label] of [
    ['iptables-legacy-save', 'iptables-legacy'],
    ['ip6tables-legacy-save', 'ip6tables-legacy'],
  ] as const) {
    const path = host.which(cmd);
    if (!path) continue;
    const r = await host.run(path, []);
    if (r.status !== 0) continue;
    const found = scanIptablesSave(r.stdout, label);
    if (found.length) {
      evidence.push(...found);
      byOthers = true;
    }
  }
  // Entries in the table are weak evidence (they linger after the rules that made them are
  // gone); used only when the rules could not be read.
  if (byOthers === null && count !== null && count > 0) evidence.push(`the table holds ${count} entries (rules unknown)`);
  return { byOthers, evidence, ctacctTable, rulesetRead };
}

/** Where the per-namespace reference counts live. */
export const STATE_DIR = '/run/ctacct';

/** `net:[4026532285]` → `/run/ctacct/net-4026532285` */
export function namespaceDir(stateDir: string, netns: string): string {
  return join(stateDir, netns.replace(/[^0-9a-z]+/gi, '-').replace(/-+$/, ''));
}

/** A member of a namespace's reference count: `member-<pid>-<start>`; its content names its table. */
export interface Member {
  file: string;
  pid: number;
  start: number;
  /** A table without the owner flag (kernel < 5.12) that must be deleted when the member is gone. */
  table: string | null;
  /** The process is still running (this process always is). */
  alive: boolean;
}

export const MEMBER_RE = /^member-(\d+)-(\d+)$/;

/** The members recorded in the reference count directory `dir` ([] when unreadable). */
export function namespaceMembers(host: Host, dir: string): Member[] {
  const out: Member[] = [];
  for (const name of readNames(host, dir) ?? []) {
    const m = MEMBER_RE.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const start = Number(m[2]);
    const table = (readText(host, join(dir, name)) ?? '').trim();
    const stat = pid === host.pid ? null : readText(host, join(host.procRoot, String(pid), 'stat'));
    const alive = pid === host.pid || (stat !== null && startTimeOf(stat) === start);
    out.push({ file: join(dir, name), pid, start, table: table && table !== '-' ? table : null, alive });
  }
  return out;
}

/** Pids of other running ctacct processes in the reference count directory `dir`. */
export function liveCtacctRuns(host: Host, dir: string): number[] {
  return namespaceMembers(host, dir)
    .filter((m) => m.alive && m.pid !== host.pid)
    .map((m) => m.pid)
    .sort((a, b) => a - b);
}

function conntrackAvailable(host: Host): boolean {
  const release = readText(host, join(host.procRoot, 'sys/kernel/osrelease'))?.trim();
  if (!release) return false;
  for (const f of ['modules.builtin', 'modules.dep']) {
    const t = readText(host, `/lib/modules/${release}/${f}`);
    if (t && /(^|\/)nf_conntrack\.ko/m.test(t)) return true;
  }
  return false;
}

export async function detect(host: Host): Promise<Detection> {
  const p = (rel: string) => join(host.procRoot, rel);
  const status = readText(host, p('self/status')) ?? '';
  const count = readNumber(host, p(SYSCTL.count));
  const max = readNumber(host, p(SYSCTL.max));
  const conntrackLoaded = max !== null || readText(host, p(SYSCTL.acct)) !== null;
  let procFdsReadable = false;
  try {
    host.readdir(p('1/fd'));
    procFdsReadable = true;
  } catch {
    /* not root */
  }
  let netlinkError: string | null = null;
  let netlinkMessage: string | null = null;
  try {
    await host.probeCtnetlink();
  } catch (e) {
    const err = e as { code?: unknown; message?: unknown };
    netlinkError = typeof err.code === 'string' ? err.code : 'UNKNOWN';
    netlinkMessage = typeof err.message === 'string' ? (err.message.split('\n')[0] ?? null) : null;
  }
  let netns: string | null = null;
  try {
    netns = host.readlink(p('self/ns/net'));
  } catch {
    /* unreadable */
  }
  const nft = host.which('nft');
  return {
    procReadable: readText(host, p('net/tcp')) !== null,
    procFdsReadable,
    conntrackLoaded,
    conntrackAvailable: conntrackLoaded || conntrackAvailable(host),
    netlinkError,
    netlinkMessage,
    netAdmin: hasCapability(status, CAP_NET_ADMIN),
    sysAdmin: hasCapability(status, CAP_SYS_ADMIN),
    uid: uidOf(status),
    nft,
    acct: readNumber(host, p(SYSCTL.acct)),
    events: readNumber(host, p(SYSCTL.events)),
    timestamp: readNumber(host, p(SYSCTL.timestamp)),
    count,
    max,
    engagement: await detectEngagement(host, nft, count),
    netns,
    probe: netlinkError === null ? await host.probeTracking().catch(() => ({ v4: null, v6: null })) : { v4: null, v6: null },
    ctacctRuns: netns ? liveCtacctRuns(host, namespaceDir(STATE_DIR, netns)) : [],
  };
}
