// `ctacct record`: one finished flow → its JSON lines (one per local end; one for a forwarded flow).
// Pure: the flow's state, the record that settled it and the times ctacct saw it in; lines out.
// The line format is versioned (docs/record.md): fields may be added, never renamed or retyped.
import type { ContainerRef } from './model.js';
import { ctTcpStateName, protoName } from '../netlink/record.js';
import type { Filters, FlowState } from './accounting.js';
import { flowPasses } from './filters.js';
import { endBytes } from './flow.js';

export const FLOWLOG_VERSION = 1;

/** Why the line was written: the kernel's DESTROY event; dumps stopped showing it and no DESTROY
 *  came (events lost); at shutdown, finished (TCP TIME_WAIT/CLOSE) or still open (--include-open). */
export type EndReason = 'destroy' | 'vanished' | 'closed' | 'open';

export interface FlowLine {
  v: number;
  /** ISO times. `started` is the flow's first packet and comes only from the kernel
   *  (nf_conntrack_timestamp); otherwise it is null and `first_seen` says when ctacct first saw
   *  the flow, which may be long after its first byte (the counters cover the whole flow).
   *  `time_source` says whose clock `ended` and `duration_s` are. */
  started: string | null;
  first_seen: string;
  ended: string;
  time_source: 'conntrack' | 'ctacct';
  duration_s: number;
  end_reason: EndReason;
  ct_id: number | null;
  family: 'ipv4' | 'ipv6';
  proto: string;
  state: string | null;
  direction: string;
  /** client: this end sent the first packet; server: it answered. null for forwarded flows. */
  side: 'client' | 'server' | null;
  local_addr: string;
  local_port: number | null;
  remote_addr: string;
  remote_port: number | null;
  /** The flow's kernel counters (whole flow, from its first packet); null without accounting. */
  sent_bytes: number | null;
  recv_bytes: number | null;
  sent_packets: number | null;
  recv_packets: number | null;
  pid: number | null;
  /** With pid, the process identity (clock ticks after boot, /proc/PID/stat field 22). */
  start_time: number | null;
  comm: string | null;
  cmdline: string | null;
  uid: number | null;
  user: string | null;
  unit: string | null;
  cgroup: string | null;
  /** Added: the owner's network namespace inode and container (null: none / unknown). */
  netns?: number | null;
  container?: ContainerRef | null;
  shared: boolean;
  inferred: boolean;
  mark: number | null;
  zone: number | null;
}

export interface LineContext {
  reason: EndReason;
  /** Wall-clock ms when ctacct first and last saw the flow (NEW event / dump; DESTROY / last dump). */
  firstSeenMs: number | null;
  lastSeenMs: number;
  cgroupOf(pid: number): { cgroup: string | null; unit: string | null } | null;
}

/** The kernel leaves a zero mark or zone out of events but puts it in dumps: both mean "none", null. */
function nonZero(n: number | null | undefined): number | null {
  return n === null || n === undefined || n === 0 ? null : n;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function flowLines(st: FlowState, ctx: LineContext, filters: Filters = {}): FlowLine[] {
  // The accounting keeps the latest reading in st.rec (with keepRecords): a DESTROY's counters,
  // stop and event times.
  const r = st.rec;
  if (!r) throw new Error('flow log: the accounting keeps no flow records (keepRecords is off)');
  const kStart = r.startMs;
  const kStop = ctx.reason === 'destroy' ? r.stopMs : null;
  const kernel = kStart !== null && kStop !== null;
  const firstSeenMs = ctx.firstSeenMs ?? ctx.lastSeenMs;
  const startMs = kernel ? kStart : firstSeenMs;
  const endMs = kernel ? kStop : ctx.lastSeenMs;
  const origBytes = st.hasCounters ? st.lastOrig : null;
  const replyBytes = st.hasCounters ? st.lastReply : null;
  const origPkts = st.hasCounters ? (r.origCounters?.packets ?? null) : null;
  const replyPkts = st.hasCounters ? (r.replyCounters?.packets ?? null) : null;
  const state = r.proto === 6 ? ctTcpStateName(r.tcpState) : null;
  const base = {
    v: FLOWLOG_VERSION,
    started: kStart !== null ? iso(kStart) : null,
    first_seen: iso(firstSeenMs),
    ended: iso(Math.max(endMs, startMs)),
    time_source: kernel ? ('conntrack' as const) : ('ctacct' as const),
    duration_s: Math.max(0, Math.round(endMs - startMs) / 1000),
    end_reason: ctx.reason,
    ct_id: r.ctId,
    family: r.family === 4 ? ('ipv4' as const) : ('ipv6' as const),
    proto: protoName(r.proto),
    state,
    direction: st.dir,
  };
  if (st.ends.length === 0) {
    if (!flowPasses(filters, r, [])) return [];
    return [
      {
        ...base,
        side: null,
        local_addr: r.orig.src,
        local_port: r.orig.sport,
        remote_addr: r.orig.dst,
        remote_port: r.orig.dport,
        sent_bytes: origBytes,
        recv_bytes: replyBytes,
        sent_packets: origPkts,
        recv_packets: replyPkts,
        pid: null,
        start_time: null,
        comm: null,
        cmdline: null,
        uid: null,
        user: null,
        unit: null,
        cgroup: null,
        shared: false,
        inferred: false,
        mark: nonZero(r.mark),
        zone: nonZero(r.zone),
      },
    ];
  }
  const lines: FlowLine[] = [];
  for (const e of st.ends) {
    if (!flowPasses(filters, r, [e])) continue;
    const o = e.owner;
    const b = origBytes !== null && replyBytes !== null ? endBytes(e.end.side, origBytes, replyBytes) : null;
    const p = origPkts !== null && replyPkts !== null ? endBytes(e.end.side, origPkts, replyPkts) : null;
    const cg = o?.pid != null ? ctx.cgroupOf(o.pid) : null;
    lines.push({
      ...base,
      side: e.end.side === 'orig' ? 'client' : 'server',
      local_addr: e.end.localAddr,
      local_port: e.end.localPort,
      remote_addr: e.end.remoteAddr,
      remote_port: e.end.remotePort,
      sent_bytes: b?.sent ?? null,
      recv_bytes: b?.recv ?? null,
      sent_packets: p?.sent ?? null,
      recv_packets: p?.recv ?? null,
      pid: o?.pid ?? null,
      start_time: o?.startTime ?? null,
      comm: o?.comm ?? null,
      cmdline: o?.cmdline ?? null,
      uid: o?.uid ?? null,
      user: o?.user ?? null,
      unit: cg?.unit || null,
      // The root cgroup ("/") is what an unreadable or kernel-thread cgroup looks like: no information.
      cgroup: cg?.cgroup && cg.cgroup !== '/' ? cg.cgroup : null,
      netns: o?.netns ?? e.netns?.[0] ?? null,
      container: o?.container ?? null,
      shared: o?.shared ?? false,
      inferred: e.inferred ?? false,
      mark: nonZero(r.mark),
      zone: nonZero(r.zone),
    });
  }
  return lines;
}

/** One line of text: JSON.stringify escapes newlines inside strings (cmdlines can hold any byte). */
export function renderFlowLine(l: FlowLine): string {
  return `${JSON.stringify(l)}\n`;
}
