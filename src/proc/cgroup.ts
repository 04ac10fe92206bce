// A process's cgroup and systemd unit from /proc/PID/cgroup: which service a socket belongs to,
// for `serve` labels and `record` lines. Parsing is pure; the reader caches per pid.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupInfo {
  /** The cgroup path (v2 unified line, else the name=systemd one, else the first hierarchy). */
  cgroup: string | null;
  /** Innermost systemd unit in the path (`nginx.service`, `session-3.scope`), or null. */
  unit: string | null;
}

const UNIT = /\.(service|scope|socket|mount|swap|timer|target)$/;

/** `0::/system.slice/nginx.service` → { cgroup: '/system.slice/nginx.service', unit: 'nginx.service' }. */
export function parseCgroup(text: string): CgroupInfo {
  let v2: string | null = null;
  let named: string | null = null;
  let first: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, hier, ctrls, path] = m;
    if (hier === '0' && ctrls === '') v2 = path!;
    else if (ctrls === 'name=systemd') named = path!;
    else first ??= path!;
  }
  // On hybrid hosts the v2 line can be "/" while systemd tracks the unit in name=systemd.
  const path = v2 && v2 !== '/' ? v2 : named && named !== '/' ? named : (v2 ?? named ?? first);
  if (!path || path === '/') return { cgroup: path ?? null, unit: null };
  const parts = path.split('/').filter(Boolean);
  let unit: string | null = null;
  for (let i = parts.length - 1; i >= 0; i--) {
    // Unit names in cgroup paths are escaped the systemd way; they are kept as the kernel shows them.
    if (UNIT.test(parts[i]!)) {
      unit = parts[i]!;
      break;
    }
  }
  return { cgroup: path, unit };
}

/** Cached per pid (a process does not usually move); bounded, oldest dropped first. */
export class CgroupReader {
  private readonly cache = new Map<number, CgroupInfo | null>();

  constructor(
    private readonly procRoot = '/proc',
    private readonly max = 20_000,
  ) {}

  /** null when the process is gone or unreadable. */
  of(pid: number): CgroupInfo | null {
    if (this.cache.has(pid)) return this.cache.get(pid)!;
    let info: CgroupInfo | null = null;
    try {
      info = parseCgroup(readFileSync(join(this.procRoot, String(pid), 'cgroup'), 'utf8'));
    } catch {
      info = null; // gone: do not cache, a later reuse of the pid may be readable
      return null;
    }
    if (this.cache.size >= this.max) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(pid, info);
    return info;
  }

  /** The cached answer only (no I/O): for processes that may be gone by now. */
  cached(pid: number): CgroupInfo | null {
    return this.cache.get(pid) ?? null;
  }

  forget(pid: number): void {
    this.cache.delete(pid);
  }
}

/** The `unit` label: the systemd unit, else the cgroup path, else ''. */
export function unitLabel(c: CgroupInfo | null): string {
  if (!c) return '';
  return c.unit ?? (c.cgroup && c.cgroup !== '/' ? c.cgroup : '');
}
