// A process's cgroup and systemd unit from /proc/PID/cgroup: which service a socket belongs to,
// for `serve` labels and `record` lines. Parsing is pure; the reader caches per process (pid, start time).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readStartTime } from './reader.js';

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
  private readonly cache = new Map<number, { info: CgroupInfo | null; start: number | null; checked: number }>();

  /**
   * `startTime(pid)` (clock ticks after boot, /proc/PID/stat field 22; null when gone) checks a
   * cached entry older than a second before it is used again: a process is (pid, start time), and a
   * reused pid is another process in another cgroup.
   */
  constructor(
    private readonly procRoot = '/proc',
    private readonly max = 20_000,
    private readonly startTime: (pid: number) => number | null = (pid) => readStartTime(procRoot, pid),
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** null when the process is gone or unreadable. */
  of(pid: number): CgroupInfo | null {
    const hit = this.cache.get(pid);
    const now = this.now();
    if (hit) {
      if (now - hit.checked < 1000) return hit.info;
      const start = this.startTime(pid);
      // Gone (null): the entry still describes the process that was. Another start: reused.
      if (start === null || start === hit.start) {
        hit.checked = now;
        return hit.info;
      }
      this.cache.delete(pid);
    }
    let info: CgroupInfo | null = null;
    const start = this.startTime(pid);
    try {
      info = parseCgroup(readFileSync(join(this.procRoot, String(pid), 'cgroup'), 'utf8'));
    } catch {
      info = null; // gone: do not cache, a later reuse of the pid may be readable
      return null;
    }
    if (this.cache.size >= this.max) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(pid, { info, start, checked: now });
    return info;
  }

  /** The cached answer only (no I/O): for processes that may be gone by now. */
  cached(pid: number): CgroupInfo | null {
    return this.cache.get(pid)?.info ?? null;
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

/** A container named by its cgroup path (see parseContainer). */
export interface ContainerInfo {
  runtime: string;
  id: string;
  name: string | null;
  pod?: string | null;
}

const HEX64 = '([0-9a-f]{64})';
// Innermost match wins: a container's processes may sit in sub-cgroups of its scope.
const CONTAINER_PATTERNS: { re: RegExp; runtime: string | ((m: RegExpExecArray) => string) }[] = [
  { re: new RegExp(`^docker-${HEX64}\\.scope$`), runtime: 'docker' }, // systemd cgroup driver
  { re: new RegExp(`^libpod-${HEX64}(?:\\.scope)?$`), runtime: 'podman' },
  { re: new RegExp(`^cri-containerd-${HEX64}\\.scope$`), runtime: 'containerd' },
  { re: new RegExp(`^crio-${HEX64}\\.scope$`), runtime: 'crio' },
  { re: new RegExp(`^nerdctl-${HEX64}\\.scope$`), runtime: 'containerd' },
];

/**
 * The container of a cgroup path, or null:
 *   /system.slice/docker-<id>.scope                       docker (systemd driver)
 *   /docker/<id>                                           docker (cgroupfs driver)
 *   /machine.slice/libpod-<id>.scope[/container]           podman (also rootless, under user@.service)
 *   /kubepods.slice/…/kubepods-…-pod<uid>.slice/cri-containerd-<id>.scope   containerd (Kubernetes)
 *   /kubepods.slice/…/crio-<id>.scope                      CRI-O
 *   /kubepods/burstable/pod<uid>/<id>                      Kubernetes, cgroupfs driver (runtime unknown: "cri")
 *   /lxc.payload.<name>/…                                  LXC
 *   /machine.slice/systemd-nspawn@<name>.service/…         systemd-nspawn
 * Runtime helpers (conmon: `libpod-conmon-<id>`, `crio-conmon-<id>`) are not the container.
 */
export function parseContainer(path: string | null): ContainerInfo | null {
  if (!path || path === '/') return null;
  const parts = path.split('/').filter(Boolean);
  let pod: string | null = null;
  for (const p of parts) {
    // kubepods-burstable-pod<uid with _>.slice (systemd) or pod<uid> (cgroupfs)
    const m = /^(?:kubepods(?:-[a-z]+)*-)?pod([0-9a-f_-]{36})(?:\.slice)?$/.exec(p);
    if (m) pod = m[1]!.replace(/_/g, '-');
  }
  for (let i = parts.length - 1; i >= 0; i--) {
    const part = parts[i]!;
    for (const { re, runtime } of CONTAINER_PATTERNS) {
      const m = re.exec(part);
      if (m) return { runtime: typeof runtime === 'string' ? runtime : runtime(m), id: m[1]!, name: null, ...(pod ? { pod } : {}) };
    }
    const prev = parts[i - 1];
    if (/^[0-9a-f]{64}$/.test(part) && prev !== undefined) {
      if (prev === 'docker') return { runtime: 'docker', id: part, name: null };
      if (pod && /^pod[0-9a-f-]{36}$/.test(prev)) return { runtime: 'cri', id: part, name: null, pod };
    }
    const lxc = /^lxc\.payload\.(.+)$/.exec(part);
    if (lxc) return { runtime: 'lxc', id: lxc[1]!, name: lxc[1]! };
    const nspawn = /^systemd-nspawn@(.+)\.service$/.exec(part);
    if (nspawn) return { runtime: 'nspawn', id: nspawn[1]!, name: nspawn[1]! };
  }
  return null;
}

/** Docker's name for a container: "Name" in config.v2.json ("/web" → "web"); null if unreadable. */
export function dockerName(configJson: string): string | null {
  try {
    const n = (JSON.parse(configJson) as { Name?: unknown }).Name;
    return typeof n === 'string' && n.length > 0 ? n.replace(/^\//, '') : null;
  } catch {
    return null;
  }
}

/** Names containers from the runtime's own files (Docker's config.v2.json), cached per id. */
export class ContainerNamer {
  private readonly names = new Map<string, string | null>();

  constructor(private readonly dockerRoot = '/var/lib/docker') {}

  name(c: ContainerInfo): ContainerInfo {
    if (c.name !== null || c.runtime !== 'docker') return c;
    let n = this.names.get(c.id);
    if (n === undefined) {
      try {
        n = dockerName(readFileSync(join(this.dockerRoot, 'containers', c.id, 'config.v2.json'), 'utf8'));
      } catch {
        n = null;
      }
      if (this.names.size > 10_000) this.names.clear();
      this.names.set(c.id, n);
    }
    return { ...c, name: n };
  }
}
