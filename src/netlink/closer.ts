// The close tracker: which process closed each TCP socket, remembered by the kernel (a BPF program
// on the sock:inet_sock_set_state tracepoint, native/ct_bpf.c) so that a connection whose socket
// was accepted and closed before any lookup could see it still names its holder. Only
// close()/shutdown() move a socket from ESTABLISHED to FIN_WAIT1 or from CLOSE_WAIT to LAST_ACK,
// and they run in the closing process: the tracepoint's current task is the socket's last holder.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { structOffsets } from './btf.js';
import { findTool } from '../system/tools.js';
import { getAddon, type Addon, type CloserHit, type TracepointOffsets } from './addon.js';
import { writeAddr16 } from './lookup.js';

export type { CloserHit } from './addon.js';

const TRACEPOINT = 'sock/inet_sock_set_state';
const TRACEFS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];
/** Map size: at 5,000 connections/s (two closes each on loopback) about 3 s of closes; LRU. */
export const CLOSER_ENTRIES = 32_768;

export interface CloseTracker {
  lookup(family: 4 | 6, localAddr: string, localPort: number, remoteAddr: string, remotePort: number): CloserHit | null;
  close(): void;
}

export type CloserOpen = { tracker: CloseTracker } | { tracker: null; code: string; message: string };

/** Field offsets from a tracepoint's tracefs `format` text; null when a field is missing or the
 *  record does not have the shape the program reads. */
export function parseTracepointFormat(text: string): TracepointOffsets | null {
  const f = new Map<string, { offset: number; size: number }>();
  for (const m of text.matchAll(/field:[^;]*?([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])?;\s*offset:(\d+);\s*size:(\d+);/g)) {
    f.set(m[1]!, { offset: Number(m[2]), size: Number(m[3]) });
  }
  const want: [keyof TracepointOffsets, number][] = [
    ['newstate', 4],
    ['protocol', 2],
    ['sport', 2],
    ['dport', 2],
    ['saddr_v6', 16],
    ['daddr_v6', 16],
  ];
  const out = {} as TracepointOffsets;
  for (const [name, size] of want) {
    const x = f.get(name);
    // The program loads fields with aligned loads of their size (4-byte words for addresses).
    if (!x || x.size !== size || x.offset % Math.min(size, 4) !== 0) return null;
    out[name] = x.offset;
  }
  return out;
}

/** Whether this process lives in a pid namespace below the initial one (NSpid lists several ids). */
export function nestedPidNamespace(status: () => string): boolean {
  try {
    const m = /^NSpid:\s*(.*)$/m.exec(status());
    return m !== null && m[1]!.trim().split(/\s+/).length > 1;
  } catch {
    return false;
  }
}

export interface TracepointInfo {
  id: number;
  format: string;
}

/** Where the closing task's process start time lives (BTF of the running kernel), or {} when
 *  unknown: hits then carry startNs 0 and the process is named by pid alone once it is gone. */
export function taskOffsets(read: () => Uint8Array = () => readFileSync('/sys/kernel/btf/vmlinux')): Pick<TracepointOffsets, 'group_leader' | 'start_boottime'> {
  try {
    const o = structOffsets(read(), 'task_struct', ['group_leader', 'start_boottime']);
    return o && o.group_leader! < 32768 && o.start_boottime! < 32768 ? { group_leader: o.group_leader!, start_boottime: o.start_boottime! } : {};
  } catch {
    return {};
  }
}

/** The tracepoint's id and format from tracefs; where tracefs is not mounted, from a private mount
 *  of it in a short-lived child (unshare -m), so the host's mounts are never changed. */
export function readTracepoint(): TracepointInfo | { error: string } {
  for (const dir of TRACEFS) {
    try {
      const id = Number(readFileSync(`${dir}/events/${TRACEPOINT}/id`, 'utf8').trim());
      const format = readFileSync(`${dir}/events/${TRACEPOINT}/format`, 'utf8');
      if (Number.isInteger(id) && id > 0) return { id, format };
    } catch {
      /* not mounted here */
    }
  }
  const unshare = findTool('unshare');
  if (!unshare) return { error: 'tracefs is not mounted and unshare(1) was not found' };
  const ev = `/sys/kernel/tracing/events/${TRACEPOINT}`;
  const r = spawnSync(unshare, ['--mount', '--propagation', 'private', '/bin/sh', '-c', `mount -t tracefs tracefs /sys/kernel/tracing && cat ${ev}/id && cat ${ev}/format`], {
    encoding: 'utf8',
    timeout: 5000,
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  if (r.status !== 0) return { error: `tracefs: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]}` };
  const nl = r.stdout.indexOf('\n');
  const id = Number(r.stdout.slice(0, nl).trim());
  if (!Number.isInteger(id) || id <= 0) return { error: 'tracefs: no tracepoint id' };
  return { id, format: r.stdout.slice(nl + 1) };
}

const LOCAL = Buffer.alloc(16);
const REMOTE = Buffer.alloc(16);

/** Loads the tracker; never throws: without it (no CAP_BPF/CAP_PERFMON, no tracepoint, a kernel
 *  that refuses the program) ctacct works as before and says why in `message`. */
export function openCloseTracker(
  addon: () => Addon = getAddon,
  tracepoint: () => TracepointInfo | { error: string } = readTracepoint,
  task: () => Pick<TracepointOffsets, 'group_leader' | 'start_boottime'> = taskOffsets,
  status: () => string = () => readFileSync('/proc/self/status', 'utf8'),
): CloserOpen {
  // The program records pids as the initial pid namespace numbers them; inside a nested one (a
  // container without --pid=host) they would name other processes than this /proc does.
  if (nestedPidNamespace(status)) return { tracker: null, code: 'ENOTSUP', message: 'ctacct runs in a nested pid namespace (its /proc does not number processes as the kernel does)' };
  const tp = tracepoint();
  if ('error' in tp) return { tracker: null, code: /not permitted|denied/i.test(tp.error) ? 'EPERM' : 'ENOENT', message: tp.error };
  const off = parseTracepointFormat(tp.format);
  if (!off) return { tracker: null, code: 'EINVAL', message: `tracepoint ${TRACEPOINT} has an unexpected format` };
  let a: Addon;
  let h: ReturnType<Addon['closerOpen']>;
  try {
    a = addon();
    h = a.closerOpen(tp.id, { ...off, ...task() }, CLOSER_ENTRIES);
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { tracker: null, code: err.code ?? 'EINVAL', message: `cannot load the close tracker: ${err.message ?? String(e)}` };
  }
  let open = true;
  return {
    tracker: {
      lookup(family, localAddr, localPort, remoteAddr, remotePort) {
        if (!open) return null;
        if (!writeAddr16(localAddr, family, LOCAL) || !writeAddr16(remoteAddr, family, REMOTE)) return null;
        try {
          return a.closerLookup(h, family, LOCAL, localPort, REMOTE, remotePort);
        } catch {
          return null;
        }
      },
      close() {
        if (!open) return;
        open = false;
        a.closerClose(h);
      },
    },
  };
}
