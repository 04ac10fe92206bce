// The engine of every live command (top, record, serve, collect), bound to the System: its
// conntrack, owners from /proc and sock_diag, this namespace's addresses, its clocks.
import type { EngineDeps, TopEngine } from '../core/engine.js';
import type { OwnerOptions } from '../core/owners.js';
import { explainSystemError } from '../errors.js';
import type { ConntrackSource } from '../netlink/source.js';
import type { System } from '../system.js';
import { interfaceAddresses, makeOwnerResolver } from '../wiring.js';

/** Owner lookups of long-running commands: a few candidate processes, full /proc scans for at most 2% of misses. */
export const LOW_OVERHEAD_LOOKUP: OwnerOptions = { candidates: 4, fullScanMaxShare: 0.02 };

export function engineDeps(system: System, lookup: OwnerOptions, source: ConntrackSource = system.conntrack()): EngineDeps {
  return {
    source,
    owners: makeOwnerResolver(system, lookup),
    localAddresses: interfaceAddresses,
    monotonic: () => system.monotonic(),
    now: () => system.now(),
  };
}

/** Starts `engine`; when it cannot, closes it and says why in ctacct's words. */
export async function startEngine(engine: TopEngine): Promise<void> {
  try {
    await engine.start();
  } catch (e) {
    engine.close();
    throw explainSystemError(e, 'reading conntrack');
  }
}
