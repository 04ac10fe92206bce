// Network namespaces on this host: which ones exist (/proc/*/ns/net, /run/netns), which addresses
// each holds (RTM_GETADDR inside it), and a sock_diag socket opened inside each for exact lookups.
// Flows of containers reach the host's conntrack with their inner address; this is how ctacct
// finds the namespace, and through it the socket and process, behind that address.
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface NetnsEntry {
  inode: number;
  /** An nsfs file that opens it: /run/netns/NAME when it has one, else /proc/PID/ns/net. */
  path: string;
  /** Names under /run/netns. */
  names: string[];
  /** A process living in it, if any (its /proc/PID/net shows the namespace's tables). */
  pid: number | null;
}

/** "net:[4026531840]" → 4026531840. */
export function parseNsLink(link: string): number | null {
  const m = /^net:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : null;
}

/** Inode of a process's network namespace, or null (gone, or not ours to read). */
export function netnsOfPid(procRoot: string, pid: number | 'self'): number | null {
  try {
    return parseNsLink(readlinkSync(join(procRoot, String(pid), 'ns', 'net')));
  } catch {
    return null;
  }
}

/** Every network namespace a process lives in or /run/netns names (one path each). */
export function discoverNetns(procRoot = '/proc', runDir = '/run/netns'): Map<number, NetnsEntry> {
  const out = new Map<number, NetnsEntry>();
  try {
    for (const name of readdirSync(runDir)) {
      const path = join(runDir, name);
      try {
        const ino = statSync(path).ino;
        const e = out.get(ino);
        if (e) e.names.push(name);
        else out.set(ino, { inode: ino, path, names: [name], pid: null });
      } catch {
        /* a stale name (not mounted): skip */
      }
    }
  } catch {
    /* no /run/netns */
  }
  let names: string[] = [];
  try {
    names = readdirSync(procRoot);
  } catch {
    return out;
  }
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const ino = netnsOfPid(procRoot, Number(name));
    if (ino === null) continue;
    const e = out.get(ino);
    if (e) e.pid ??= Number(name);
    else out.set(ino, { inode: ino, path: join(procRoot, name, 'ns', 'net'), names: [], pid: Number(name) });
  }
  return out;
}

/**
 * Local IPv4 addresses from /proc/PID/net/fib_trie (the `/32 host LOCAL` leaves) and IPv6 ones
 * from /proc/PID/net/if_inet6: a namespace's addresses without entering it (no CAP_SYS_ADMIN).
 */
export function parseFibTrieLocal(text: string): string[] {
  const out = new Set<string>();
  let last: string | null = null;
  for (const line of text.split('\n')) {
    const leaf = /\|-- (\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (leaf) last = leaf[1]!;
    else if (last && /\/32 host LOCAL/.test(line)) out.add(last);
  }
  return [...out];
}

export function parseIfInet6(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const hex = line.trim().split(/\s+/)[0];
    if (!hex || !/^[0-9a-f]{32}$/.test(hex)) continue;
    const groups = hex.match(/.{4}/g)!.map((g) => g.replace(/^0{1,3}/, ''));
    // Shortest form, as the addon's formatter writes it (longest zero run → "::").
    let best = -1;
    let len = 0;
    for (let i = 0; i < 8; i++) {
      if (groups[i] !== '0') continue;
      let j = i;
      while (j < 8 && groups[j] === '0') j++;
      if (j - i > len && j - i > 1) {
        best = i;
        len = j - i;
      }
      i = j;
    }
    out.push(best < 0 ? groups.join(':') : `${groups.slice(0, best).join(':')}::${groups.slice(best + len).join(':')}`);
  }
  return out;
}

export interface NetnsRegistryDeps {
  discover(): Map<number, NetnsEntry>;
  /** Addresses configured inside the namespace (throws when it can be neither entered nor read). */
  addresses(e: NetnsEntry): string[];
  /** Monotonic ms. */
  now(): number;
}

export interface NetnsRegistryStats {
  namespaces: number;
  refreshes: number;
  refreshMs: number;
  /** Namespaces whose addresses could not be read (setns refused: no CAP_SYS_ADMIN). */
  denied: number;
}

/**
 * Address → namespaces holding it, for every namespace but ours. Built on first use, rebuilt when
 * an address is not found (a container started since), at most once per `minRefreshMs`, and at
 * least every `maxAgeMs` (addresses move when containers restart).
 */
export class NetnsRegistry {
  private byAddr = new Map<string, number[]>();
  private entries = new Map<number, NetnsEntry>();
  private builtAt: number | null = null;
  readonly stats: NetnsRegistryStats = { namespaces: 0, refreshes: 0, refreshMs: 0, denied: 0 };

  constructor(
    private readonly deps: NetnsRegistryDeps,
    private readonly self: number | null,
    private readonly minRefreshMs = 1000,
    private readonly maxAgeMs = 10_000,
  ) {}

  private refresh(now: number): void {
    this.builtAt = now;
    this.stats.refreshes++;
    const byAddr = new Map<string, number[]>();
    let denied = 0;
    this.entries = this.deps.discover();
    this.entries.delete(this.self ?? -1);
    for (const e of this.entries.values()) {
      let addrs: string[];
      try {
        addrs = this.deps.addresses(e);
      } catch {
        denied++;
        continue;
      }
      for (const a of addrs) {
        // Loopback and link-local addresses exist in every namespace: they name none.
        if (a.startsWith('127.') || a === '::1' || a.toLowerCase().startsWith('fe80:')) continue;
        const list = byAddr.get(a);
        if (list) list.push(e.inode);
        else byAddr.set(a, [e.inode]);
      }
    }
    this.byAddr = byAddr;
    this.stats.namespaces = this.entries.size;
    this.stats.denied = denied;
    this.stats.refreshMs += this.deps.now() - now;
  }

  /** Namespaces (not ours) where `addr` is configured; usually one. */
  namespacesOf(addr: string): number[] {
    const now = this.deps.now();
    if (this.builtAt === null || now - this.builtAt >= this.maxAgeMs) this.refresh(now);
    let hit = this.byAddr.get(addr);
    if (!hit && now - this.builtAt! >= this.minRefreshMs) {
      this.refresh(now);
      hit = this.byAddr.get(addr);
    }
    return hit ?? [];
  }

  /** Every address some other namespace holds, from a table built at most `maxAgeMs` ago. */
  addresses(): string[] {
    const now = this.deps.now();
    if (this.builtAt === null || now - this.builtAt >= this.maxAgeMs) this.refresh(now);
    return [...this.byAddr.keys()];
  }

  entry(inode: number): NetnsEntry | null {
    return this.entries.get(inode) ?? null;
  }
}

/**
 * What `--netns NAME|PID|PATH` names: a number is a pid (/proc/PID/ns/net), a value with a slash
 * a path, anything else a name under /run/netns. Returns the path, or an error in ctacct's words.
 */
export function netnsPath(value: string, procRoot = '/proc', runDir = '/run/netns'): { path: string } | { error: string } {
  const v = value.trim();
  if (v === '') return { error: '--netns needs a name (/run/netns/NAME), a pid or a path' };
  let path: string;
  if (/^\d+$/.test(v)) path = join(procRoot, v, 'ns', 'net');
  else if (v.includes('/')) path = v;
  else if (v === '.' || v === '..') return { error: `--netns ${v}: not a namespace name` };
  else path = join(runDir, v);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === 'EACCES' || code === 'EPERM' ? `${path}: permission denied` : /^\d+$/.test(v) ? `no process ${v}` : `${path} does not exist`;
    return { error: `--netns ${v}: ${what}` };
  }
  if (st.isDirectory()) return { error: `--netns ${v}: ${path} is a directory, not a namespace file` };
  return { path };
}
