// A fake Host for detection/set-up unit tests: an in-memory /proc and a tiny nft model.
import type { Host, RunResult } from '../../src/system/detect.js';
import type { NftSession, TrackingProbe } from '../../src/system/engage.js';

export interface FakeHostOptions {
  /** acct sysctl: a number, or null when nf_conntrack is not loaded. */
  acct?: number | null;
  events?: number;
  timestamp?: number;
  count?: number;
  max?: number;
  capEff?: string;
  uid?: number;
  nft?: boolean;
  /** Other tables' JSON items (`{"rule": ...}` objects) in `nft -j list ruleset`. */
  otherRules?: object[];
  /** An existing `inet ctacct` table, with this comment (null: no comment). */
  ctacctTable?: { comment: string | null } | null;
  /** Extra files (absolute path → content). */
  files?: Record<string, string>;
  /** ctnetlink probe error code, or null for success. */
  netlinkError?: string | null;
  /** nft invocations whose joined args+input match this fail with this stderr. */
  nftFail?: { match: RegExp; stderr: string } | null;
  /** Errors thrown by writeFile for these paths. */
  writeErrors?: Record<string, string>;
  /** iptables-legacy-save output (the command exists when set). */
  iptablesLegacy?: string;
  pid?: number;
  /** Loading a ct rule loads nf_conntrack with this acct value (when acct is null). */
  moduleDefaultAcct?: number;
  /** What the loopback probe finds before any ctacct table exists (default: not tracked). */
  trackedByOthers?: TrackingProbe;
  /** nf_tables refuses engage with this code (e.g. EPERM); EOPNOTSUPP only for owner tables (old kernel). */
  nftEngageError?: string | null;
  /** Conntrack ids in the table (entryIds) at start. */
  entries?: number[];
  /** Paths that are symlinks rather than directories. */
  symlinks?: string[];
  /** Processes alive: pid → start time (for reference-count members). */
  alive?: Record<number, number>;
}

const PROC = '/proc';
const NETNS = 'net:[4026532999]';

export class FakeHost implements Host {
  readonly procRoot = PROC;
  readonly pid: number;
  readonly files = new Map<string, string>();
  readonly log: string[] = [];
  table: { comment: string | null } | null;
  /** nf_tables tables by name → owned by a session. */
  readonly tables = new Map<string, { owned: boolean }>();
  entries: number[];
  removedEntries: number[] = [];
  locked = false;
  constructor(readonly o: FakeHostOptions = {}) {
    this.pid = o.pid ?? 4242;
    this.table = o.ctacctTable ?? null;
    this.entries = [...(o.entries ?? [])];
    for (const [pid, start] of Object.entries(o.alive ?? {}))
      this.files.set(`${PROC}/${pid}/stat`, `${pid} (ctacct) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 7 0 ${start} 1000 100`);
    const f = this.files;
    if (o.acct !== null) this.loadModule(o.acct ?? 0);
    f.set(`${PROC}/self/status`, `Name:\tnode\nUid:\t${o.uid ?? 0}\t${o.uid ?? 0}\t0\t0\nCapEff:\t${o.capEff ?? '000001ffffffffff'}\n`);
    f.set(`${PROC}/self/stat`, `${this.pid} (node) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 7 0 777 1000 100`);
    f.set(`${PROC}/net/tcp`, '  sl  local_address rem_address\n');
    for (const [k, v] of Object.entries(o.files ?? {})) f.set(k, v);
  }

  private loadModule(acct: number): void {
    const f = this.files;
    const o = this.o;
    f.set(`${PROC}/sys/net/netfilter/nf_conntrack_acct`, `${acct}\n`);
    f.set(`${PROC}/sys/net/netfilter/nf_conntrack_events`, `${o.events ?? 2}\n`);
    f.set(`${PROC}/sys/net/netfilter/nf_conntrack_timestamp`, `${o.timestamp ?? 0}\n`);
    f.set(`${PROC}/sys/net/netfilter/nf_conntrack_count`, `${o.count ?? 0}\n`);
    f.set(`${PROC}/sys/net/netfilter/nf_conntrack_max`, `${o.max ?? 262144}\n`);
  }

  get acct(): string | undefined {
    return this.files.get(`${PROC}/sys/net/netfilter/nf_conntrack_acct`);
  }

  private enoent(p: string): Error {
    return Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
  }

  readFile(p: string): string {
    const v = this.files.get(p);
    if (v === undefined) throw this.enoent(p);
    return v;
  }
  writeFile(p: string, d: string): void {
    const code = this.o.writeErrors?.[p];
    if (code) throw Object.assign(new Error(code), { code });
    if (p.startsWith(`${PROC}/sys/`) && !this.files.has(p)) throw this.enoent(p);
    this.log.push(`write ${p} ${d.trim()}`);
    this.files.set(p, d);
  }
  writeFileAtomic(p: string, d: string): void {
    this.log.push(`write ${p} ${d.trim()}`);
    this.files.set(p, d);
  }
  unlink(p: string): void {
    if (!this.files.delete(p)) throw this.enoent(p);
    this.log.push(`unlink ${p}`);
  }
  readdir(p: string): string[] {
    if (p === `${PROC}/1/fd` && (this.o.uid ?? 0) === 0) return ['0', '1'];
    if (!p.startsWith(PROC)) {
      // Files and the directories that hold them (a directory exists while a file is under it).
      const names = [...this.files.keys()].filter((k) => k.startsWith(`${p}/`)).map((k) => k.slice(p.length + 1).split('/')[0]!);
      return [...new Set(names)];
    }
    throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
  }
  mkdir(p: string): void {
    this.log.push(`mkdir ${p}`);
  }
  rmdir(p: string): void {
    if ([...this.files.keys()].some((k) => k.startsWith(`${p}/`))) throw Object.assign(new Error(`ENOTEMPTY: ${p}`), { code: 'ENOTEMPTY' });
    this.log.push(`rmdir ${p}`);
  }
  isDir(p: string): boolean {
    return !(this.o.symlinks ?? []).includes(p);
  }
  lock(p: string): () => void {
    if (this.locked) throw new Error(`fake: ${p} locked twice`);
    this.locked = true;
    return () => {
      this.locked = false;
    };
  }
  openNft(): NftSession {
    const owned = new Set<string>();
    let open = true;
    return {
      engage: (name, owner) => {
        const code = this.o.nftEngageError;
        if (code && (code !== 'EOPNOTSUPP' || owner)) throw Object.assign(new Error(`nft newtable ${code}`), { code });
        if (this.tables.has(name)) throw Object.assign(new Error('EEXIST'), { code: 'EEXIST' });
        this.tables.set(name, { owned: owner });
        if (owner) owned.add(name);
        this.log.push(`nft engage ${name}${owner ? ' owner' : ''}`);
        if (!this.files.has(`${PROC}/sys/net/netfilter/nf_conntrack_acct`)) this.loadModule(this.o.moduleDefaultAcct ?? 0);
      },
      remove: (name) => {
        this.log.push(`nft delete ${name}`);
        return this.tables.delete(name);
      },
      close: () => {
        if (!open) return;
        open = false;
        for (const name of owned) if (this.tables.delete(name)) this.log.push(`nft owner closed ${name}`);
      },
    };
  }
  async probeTracking(): Promise<TrackingProbe> {
    this.log.push('probe');
    if (this.o.netlinkError) return { v4: null, v6: null };
    if (this.tables.size) return { v4: true, v6: true };
    return this.o.trackedByOthers ?? (this.o.otherRules?.length || this.o.iptablesLegacy ? { v4: true, v6: true } : { v4: false, v6: false });
  }
  async entryIds(): Promise<number[]> {
    return [...this.entries];
  }
  async removeEntriesExcept(keep: ReadonlySet<number>): Promise<number> {
    const gone = this.entries.filter((id) => !keep.has(id));
    this.entries = this.entries.filter((id) => keep.has(id));
    this.removedEntries.push(...gone);
    this.log.push(`remove entries ${gone.join(',')}`);
    return gone.length;
  }
  readlink(p: string): string {
    if (p === `${PROC}/self/ns/net`) return NETNS;
    throw this.enoent(p);
  }
  which(cmd: string): string | null {
    if (cmd === 'nft') return this.o.nft === false ? null : '/usr/sbin/nft';
    if (cmd === 'iptables-legacy-save' && this.o.iptablesLegacy !== undefined) return '/usr/sbin/iptables-legacy-save';
    return null;
  }
  async probeCtnetlink(): Promise<void> {
    const code = this.o.netlinkError ?? null;
    if (code) throw Object.assign(new Error(`probe: ${code}`), { code, errno: 1, syscall: 'sendmsg' });
  }
  async run(cmd: string, args: string[], input?: string): Promise<RunResult> {
    return this.runSync(cmd, args, input);
  }
  runSync(cmd: string, args: string[], input?: string): RunResult {
    const line = `${cmd} ${args.join(' ')}${input ? ` <<${input}` : ''}`;
    this.log.push(`run ${cmd.replace(/.*\//, '')} ${args.join(' ')}`);
    if (cmd.endsWith('iptables-legacy-save')) return { status: 0, stdout: this.o.iptablesLegacy ?? '', stderr: '' };
    if (!cmd.endsWith('nft')) return { status: null, stdout: '', stderr: '', errorCode: 'ENOENT' };
    const f = this.o.nftFail;
    if (f && f.match.test(line)) return { status: 1, stdout: '', stderr: f.stderr };
    const a = args.join(' ');
    if (a === '-j list ruleset') {
      const items: object[] = [{ metainfo: { version: '1.0.6' } }, ...(this.o.otherRules ?? [])];
      // nft 1.0.6 leaves the table comment out of JSON
      if (this.table) items.push({ table: { family: 'inet', name: 'ctacct', handle: 9 } });
      return { status: 0, stdout: JSON.stringify({ nftables: items }), stderr: '' };
    }
    if (a === 'list table inet ctacct') {
      if (!this.table) return { status: 1, stdout: '', stderr: 'Error: No such file or directory' };
      const c = this.table.comment === null ? '' : `\tcomment "${this.table.comment}"\n`;
      return { status: 0, stdout: `table inet ctacct {\n${c}\tchain track {\n\t}\n}\n`, stderr: '' };
    }
    if (a === 'delete table inet ctacct') {
      if (!this.table) return { status: 1, stdout: '', stderr: 'Error: Could not process rule: No such file or directory' };
      this.table = null;
      return { status: 0, stdout: '', stderr: '' };
    }
    if (a === '-f -' && input) {
      if (/^delete table inet ctacct$/m.test(input)) {
        if (!this.table) return { status: 1, stdout: '', stderr: 'Error: No such file or directory' };
        this.table = null;
      }
      if (/^table inet ctacct \{/m.test(input)) {
        this.table = { comment: /comment "([^"]*)"/.exec(input)?.[1] ?? null };
        if (!this.files.has(`${PROC}/sys/net/netfilter/nf_conntrack_acct`)) this.loadModule(this.o.moduleDefaultAcct ?? 0);
      }
      return { status: 0, stdout: '', stderr: '' };
    }
    return { status: 1, stdout: '', stderr: `fake nft: unexpected ${a}` };
  }
}

export const FAKE_NETNS = NETNS;
