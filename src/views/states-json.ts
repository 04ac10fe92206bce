// The --json shape of `ctacct states`, apart from the text renderers so a JSON run does not load
// the display-width tables they need.
import { stateOrder, type StatesResult } from '../core/states.js';

/** UDP "states" per source: the socket's (ss) or conntrack's (`conntrack -L`). */
const UDP_STATES = { sockets: ['ESTABLISHED', 'UNCONN'], conntrack: ['ASSURED', 'REPLIED', 'UNREPLIED'] } as const;

/** Every state name of the source, 0 when none, so `jq .states.TIME_WAIT` reads 0, not null; then any others seen. */
function zeroFilled(states: Record<string, number>, names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = states[n] ?? 0;
  for (const [n, v] of Object.entries(states)) if (!Object.hasOwn(out, n)) out[n] = v;
  return out;
}

/** The --json shape README documents: fields may be added, never renamed. State maps list every state. */
export function statesJson(r: StatesResult): Record<string, unknown> {
  const tcp = stateOrder(r.source);
  const udpNames = UDP_STATES[r.source];
  const udp = <T extends { states: Record<string, number> }>(u: T): T => ({ ...u, states: zeroFilled(u.states, udpNames) });
  const out: Record<string, unknown> = { source: r.source };
  if (r.by) {
    out.by = r.by;
    out.groups = (r.groups ?? []).map((g) => {
      const o: Record<string, unknown> = { key: g.key, states: zeroFilled(g.states, tcp), total: g.total };
      if (g.udp) o.udp = udp(g.udp);
      if (r.by === 'process') {
        o.pid = g.pid ?? null;
        o.comm = g.comm ?? null;
        o.shared = g.shared ?? false;
      }
      return o;
    });
  }
  out.states = zeroFilled(r.states, tcp);
  out.total = r.total;
  if (r.udp) out.udp = udp(r.udp);
  if (r.unattributed !== undefined) out.unattributed = r.unattributed;
  if (r.omitted) out.omitted = r.omitted;
  return out;
}
