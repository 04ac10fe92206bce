// Composes the real dependencies of the core from a System: sock_diag lookups, /proc scans,
// interface addresses. Kept apart so the core only ever sees interfaces.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { OwnerResolver, type OwnerDeps, type OwnerOptions } from './core/owners.js';
import { getAddon } from './netlink/addon.js';
import { makeSocketLookup } from './netlink/lookup.js';
import { formatIPv4, formatIPv6 } from './netlink/record.js';
import { parsePasswd } from './proc/parse.js';
import { findSocketOwners, ownNetns } from './proc/find.js';
import { readFamily, readProcessInfo, readStartTime, userName } from './proc/reader.js';
import type { System } from './system.js';

export function realOwnerDeps(system: System): OwnerDeps {
  const netns = ownNetns(system.procRoot);
  return {
    lookupSocket: makeSocketLookup(),
    scanOwners: (want, pids, budgetMs) => findSocketOwners(system.procRoot, want, pids, budgetMs, netns),
    processInfo: (pid) => readProcessInfo(system.procRoot, pid),
    startTime: (pid) => readStartTime(system.procRoot, pid),
    family: (pid) => readFamily(system.procRoot, pid),
    userName,
    now: () => system.monotonic(),
  };
}

export function makeOwnerResolver(system: System, opts: OwnerOptions = {}): OwnerResolver {
  return new OwnerResolver(realOwnerDeps(system), opts);
}

/**
 * Addresses of this network namespace, from the kernel (RTM_GETADDR) whatever the link state;
 * os.networkInterfaces() leaves out links without carrier, whose addresses are still local.
 */
export function interfaceAddresses(): string[] {
  try {
    const buf = getAddon().localAddresses();
    const out: string[] = [];
    for (let off = 0; off + 17 <= buf.length; off += 17) out.push(buf[off] === 4 ? formatIPv4(buf, off + 1) : formatIPv6(buf, off + 1));
    return out;
  } catch {
    const out: string[] = [];
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.push(a.address.replace(/%.*$/, ''));
    return out;
  }
}

let passwd: Map<string, number> | null = null;
/** User name → uid from /etc/passwd (null when unknown). */
export function uidOfUser(name: string): number | null {
  if (!passwd) {
    passwd = new Map();
    try {
      for (const [uid, n] of parsePasswd(readFileSync('/etc/passwd', 'utf8'))) passwd.set(n, uid);
    } catch {
      /* no passwd file: numeric uids still work */
    }
  }
  return passwd.get(name) ?? null;
}
