// `ctacct top --json`: one line per refresh, exactly the TopSnapshot (the contract README documents: fields may be added, never renamed).
// Keys come out in the documented order so diffs and eyeballs stay stable; fields the engine adds
// later follow the documented ones in their own order (fields may be added, never renamed).
import type { TopRow, TopSnapshot } from '../core/model.js';

const TOP = ['time', 'interval_s', 'group_by', 'rows', 'unattributed', 'health', 'self'];
const ROW = [
  'key', 'pid', 'comm', 'cmdline', 'uid', 'user', 'remote', 'port', 'proto',
  'sent_bytes', 'recv_bytes', 'sent_bps', 'recv_bps', 'sent_total', 'recv_total',
  'flows', 'new_flows', 'closed_flows',
  // Added after the documented ones, so the contract's key order stays as it was.
  'sent_bytes_per_s', 'recv_bytes_per_s',
];
const UNATTRIBUTED = ['forwarded', 'unknown'];
const BUCKET = ['sent_total', 'recv_total', 'flows'];
const HEALTH = ['flows_tracked', 'events', 'lost_events', 'resyncs', 'flows_without_counters'];
const SELF = ['cpu_percent', 'rss_bytes'];

type Obj = Record<string, unknown>;

/**
 * Rates go out as whole bytes per second: `sent_bytes_per_s`/`recv_bytes_per_s` say their unit in
 * their name; `sent_bps`/`recv_bps` (and the window/peak `*_bps_*` fields) keep their old names
 * with the same value, deprecated until 1.0 because "bps" reads as bits.
 */
function integerRates(r: TopRow): Obj {
  const out: Obj = { ...r };
  for (const [k, v] of Object.entries(r)) if (/_bps(_|$)/.test(k) && typeof v === 'number') out[k] = Math.round(v);
  out.sent_bytes_per_s = Math.round(r.sent_bps);
  out.recv_bytes_per_s = Math.round(r.recv_bps);
  return out;
}

/** A copy of `o` with `order`'s keys first (those present), then the rest as they were. */
function ordered(o: unknown, order: string[]): unknown {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return o;
  const src = o as Obj;
  const out: Obj = {};
  for (const k of order) if (Object.hasOwn(src, k)) out[k] = src[k];
  for (const k of Object.keys(src)) if (!Object.hasOwn(out, k)) out[k] = src[k];
  return out;
}

/** One JSON object, one line (JSON.stringify escapes newlines inside strings), ending in "\n". */
export function renderJsonLine(s: TopSnapshot): string {
  const top = ordered(s, TOP) as Obj;
  if (Array.isArray(s.rows)) top.rows = s.rows.map((r) => ordered(integerRates(r), ROW));
  if (s.unattributed && typeof s.unattributed === 'object') {
    const u = ordered(s.unattributed, UNATTRIBUTED) as Obj;
    for (const k of UNATTRIBUTED) if (Object.hasOwn(u, k)) u[k] = ordered(u[k], BUCKET);
    top.unattributed = u;
  }
  if (Object.hasOwn(top, 'health')) top.health = ordered(s.health, HEALTH);
  if (Object.hasOwn(top, 'self')) top.self = ordered(s.self, SELF);
  return `${JSON.stringify(top)}\n`;
}
