// Parses `ss -tan` / `ss -uan` output into counts per state, with netstat's state names,
// so tests can compare ctacct with ss taken at the same moment.

/** ss state names → the netstat names ctacct uses (UDP keeps UNCONN, as ss prints it). */
export const SS_TO_NETSTAT: Readonly<Record<string, string>> = {
  ESTAB: 'ESTABLISHED',
  'SYN-SENT': 'SYN_SENT',
  'SYN-RECV': 'SYN_RECV',
  'FIN-WAIT-1': 'FIN_WAIT1',
  'FIN-WAIT-2': 'FIN_WAIT2',
  'TIME-WAIT': 'TIME_WAIT',
  UNCONN: 'UNCONN',
  'CLOSE-WAIT': 'CLOSE_WAIT',
  'LAST-ACK': 'LAST_ACK',
  LISTEN: 'LISTEN',
  CLOSING: 'CLOSING',
};

export function parseSsStates(text: string): { states: Record<string, number>; total: number } {
  const states: Record<string, number> = {};
  let total = 0;
  for (const line of text.split('\n').slice(1)) {
    const first = line.trim().split(/\s+/)[0];
    if (!first) continue;
    const name = SS_TO_NETSTAT[first];
    if (!name) throw new Error(`unknown ss state '${first}' in: ${line}`);
    states[name] = (states[name] ?? 0) + 1;
    total++;
  }
  return { states, total };
}

/** `states --json` lists every state name (0 when none); ss lists only the states it saw. */
export function nonZero(states: Record<string, number> | undefined): Record<string, number> | undefined {
  if (!states) return states;
  return Object.fromEntries(Object.entries(states).filter(([, n]) => n !== 0));
}
