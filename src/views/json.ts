// `ctacct top --json`: one line per refresh, exactly the TopSnapshot (DESIGN.md "Command-line contract").
// Keys come out in the documented order so diffs and eyeballs stay stable; fields the engine adds
// later follow the documented ones in their own order (fields may be added, never renamed).
import type { TopSnapshot } from '../core/model.js';

const TOP = ['time', 'interval_s', 'group_by', 'rows', 'unattributed', 'health', 'self'];
const ROW = [
  'key', 'pid', 'comm', 'cmdline', 'uid', 'user', 'remote', 'port', 'proto',
  'sent_bytes', 'recv_bytes', 'sent_bps', 'recv_bps', 'sent_total', 'recv_total',
  'flows', 'new_flows', 'closed_flows',
];
const UNATTRIBUTED = ['forwarded', 'unknown'];
const BUCKET = ['sent_total', 'recv_total', 'flows'];
const HEALTH = ['flows_tracked', 'events', 'lost_events', 'resyncs', 'flows_without_counters'];
const SELF = ['cpu_percent', 'rss_bytes'];

type Obj = Record<string, unknown>;

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
  if (Array.isArray(s.rows)) top.rows = s.rows.map((r) => ordered(r, ROW));
  if (s.unattributed && typeof s.unattributed === 'object') {
    const u = ordered(s.unattributed, UNATTRIBUTED) as Obj;
    for (const k of UNATTRIBUTED) if (Object.hasOwn(u, k)) u[k] = ordered(u[k], BUCKET);
    top.unattributed = u;
  }
  if (Object.hasOwn(top, 'health')) top.health = ordered(s.health, HEALTH);
  if (Object.hasOwn(top, 'self')) top.self = ordered(s.self, SELF);
  return `${JSON.stringify(top)}\n`;
}
