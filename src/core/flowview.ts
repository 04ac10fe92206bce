// One flow as `ctacct flows --json` prints it (the README contract: fields may be added, never renamed). Pure.
import { ctTcpStateName, protoName, type FlowRecord } from '../netlink/record.js';
import type { Direction, FlowEnd } from './flow.js';
import { endBytes, formatHostPort } from './flow.js';
import type { Owner } from './owners.js';
import type { ContainerRef } from './model.js';

export interface FlowSide {
  src: string;
  dst: string;
  sport: number | null;
  dport: number | null;
  packets: number | null;
  bytes: number | null;
  icmp?: { type: number; code: number; id: number };
}

export interface FlowView {
  id: number | null;
  family: 'ipv4' | 'ipv6';
  proto: string;
  state: string | null;
  direction: Direction | null;
  orig: FlowSide;
  reply: FlowSide | null;
  local: string | null;
  remote: string | null;
  sent_bytes: number | null;
  recv_bytes: number | null;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  mark: number | null;
  zone: number | null;
  age_s: number | null;
  /** Added: the other local process of a loopback flow (the server end). */
  peer?: { pid: number | null; comm: string | null; uid: number | null; local: string; sent_bytes: number | null; recv_bytes: number | null };
  /** Added: the flow's socket is shared by several processes; pid is the lowest. */
  shared?: boolean;
  /** Added: where the owner lives (network namespace inode, container, systemd unit). */
  netns?: number | null;
  container?: ContainerRef | null;
  unit?: string | null;
  timeout_s?: number | null;
}

function side(r: FlowRecord, which: 'orig' | 'reply'): FlowSide | null {
  const t = which === 'orig' ? r.orig : r.reply;
  if (!t) return null;
  const c = which === 'orig' ? r.origCounters : r.replyCounters;
  const s: FlowSide = { src: t.src, dst: t.dst, sport: t.sport, dport: t.dport, packets: c?.packets ?? null, bytes: c?.bytes ?? null };
  if (t.icmp) s.icmp = t.icmp;
  return s;
}

export interface AttributedEnd {
  end: FlowEnd;
  owner: Owner | null;
}

export function toFlowView(r: FlowRecord, direction: Direction | null, ends: AttributedEnd[], nowMs: number): FlowView {
  const o = r.origCounters?.bytes ?? null;
  const p = r.replyCounters?.bytes ?? null;
  const main = ends[0] ?? null;
  const bytes = (e: AttributedEnd | null) => (e && o !== null && p !== null ? endBytes(e.end.side, o, p) : null);
  const b = bytes(main);
  const v: FlowView = {
    id: r.ctId,
    family: r.family === 4 ? 'ipv4' : 'ipv6',
    proto: protoName(r.proto),
    state: r.proto === 6 ? ctTcpStateName(r.tcpState) : null,
    direction,
    orig: side(r, 'orig')!,
    reply: side(r, 'reply'),
    local: main ? formatHostPort(main.end.localAddr, main.end.localPort) : null,
    remote: main ? formatHostPort(main.end.remoteAddr, main.end.remotePort) : null,
    sent_bytes: b?.sent ?? null,
    recv_bytes: b?.recv ?? null,
    pid: main?.owner?.pid ?? null,
    comm: main?.owner?.comm ?? null,
    uid: main?.owner?.uid ?? null,
    mark: r.mark,
    zone: r.zone,
    age_s: r.startMs !== null ? Math.max(0, (nowMs - r.startMs) / 1000) : null,
    timeout_s: r.timeout,
  };
  if (main?.owner?.shared) v.shared = true;
  if (main?.owner?.netns !== undefined) {
    v.netns = main.owner.netns;
    v.container = main.owner.container ?? null;
    v.unit = main.owner.unit ?? null;
  }
  const peer = ends[1];
  if (peer) {
    const pb = bytes(peer);
    v.peer = {
      pid: peer.owner?.pid ?? null,
      comm: peer.owner?.comm ?? null,
      uid: peer.owner?.uid ?? null,
      local: formatHostPort(peer.end.localAddr, peer.end.localPort),
      sent_bytes: pb?.sent ?? null,
      recv_bytes: pb?.recv ?? null,
    };
  }
  return v;
}
