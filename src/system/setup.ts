// Applies only the system changes ctacct needs (accounting on, conntrack engaged), says what it
// changed, and undoes exactly that (docs/system-changes.md). Several ctacct processes in one
// network namespace share a reference count; the last one out restores.
import { join } from 'node:path';
import { EXIT, UserError } from '../errors.js';
import type { System } from '../system.js';
import { installSignalHandlers, type Lifecycle } from './lifecycle.js';
import { STATE_DIR, SYSCTL, namespaceDir, namespaceMembers, readNumber, readText, startTimeOf, uidOf, type Host, type Member, realHost } from './detect.js';
import { LOCK, lockNamespace, removeIfUnused, sweepStale } from './statedir.js';
import type { NftSession } from './engage.js';

export interface SetupOptions {
  /** false (`--no-setup`): change nothing, only report what is missing. */
  setup: boolean;
  /** Leave nf_conntrack_acct=1 on exit. */
  keepAcct: boolean;
  /** The command reads conntrack at all (`states --source sockets` does not). */
  needConntrack: boolean;
}

export interface SetupChange {
  /** Stable identifier for scripts: `acct-on`, `acct-adopted`, `table-engaged`. */
  code: string;
  what: string;
  detail: string;
}

export interface SetupNote {
  /** Stable identifier for scripts (e.g. `not-tracking`, `acct-off`, `engage-cost`, `shared`). */
  code: string;
  message: string;
}

export type Tracking = 'engaged-by-ctacct' | 'engaged-by-others' | 'not-tracking';

export interface SetupReport {
  /** What ctacct changed: printed once on start, listed under `health` in JSON. */
  changes: SetupChange[];
  /** Warnings: costs, what is missing with --no-setup. */
  notes: SetupNote[];
  /** Accounting is on now (new flows get counters). */
  accounting: boolean;
  /** Conntrack tracks in this namespace now (null: could not tell). */
  engaged: boolean | null;
  engagedBy: 'ctacct' | 'existing' | 'none';
  tracking: Tracking;
  /** Accounting was off before this run (or a crashed run had turned it on from 0). */
  acctWasOff: boolean;
}

export interface SetupHandle {
  report: SetupReport;
  /** Undoes every change once; later and concurrent calls share the first. Throws a UserError naming what it could not undo. */
  undo(): Promise<void>;
  /** What the async undo has not done yet, synchronously (process 'exit' path). */
  undoSync(): void;
}

export interface SetupDeps {
  host: Host;
  /** Where the per-namespace reference count lives; default /run/ctacct. */
  stateDir?: string;
  /** Called with the handle before the first change, so a signal during set-up still undoes it. */
  onHandle?(handle: SetupHandle): void;
}

export const TABLE_FAMILY = 'inet';
/** Each process engages through its own table, so none can undo another's. */
export const tableName = (pid: number) => `ctacct-${pid}`;
/** The measured cost of engaging conntrack where nothing did (docs/benchmarks.md). */
export const ENGAGE_COST = 'about 10% of the maximum new-connection rate (15.5k → 14.0k conn/s measured on a 2-core machine)';
export const COST_NOTE = `conntrack engaged by ctacct: costs ${ENGAGE_COST} while ctacct runs`;

export { namespaceDir };

function privilegeError(what: string, root: boolean): UserError {
  return new UserError(
    root
      ? `${what}: permission denied although running as root — a security module or a read-only /proc/sys may refuse it (or use --no-setup to change nothing)`
      : `${what}: permission denied — run with sudo or grant CAP_NET_ADMIN (or use --no-setup to change nothing)`,
    EXIT.privilege,
    'EPERM',
  );
}

const noop: SetupHandle['undo'] = async () => undefined;

/** One line per change and note, for the human views to print once on start. */
export function formatSetupReport(report: SetupReport): string {
  const lines = report.changes.map((c) => `ctacct: changed ${c.what}: ${c.detail}`);
  for (const n of report.notes) lines.push(`ctacct: note: ${n.message}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

const ACCT_MARK = 'acct-was-0';
const OTHERS = 'others';
const BEFORE = 'entries-before';

function tryUnlink(host: Host, path: string): void {
  try {
    host.unlink(path);
  } catch {
    /* gone */
  }
}

/**
 * Live members after dropping the records of dead ones (deleting a dead member's table when the
 * kernel could not own it). Caller holds the lock.
 */
function pruneMembers(host: Host, dir: string, nft: () => NftSession | null): Member[] {
  const live: Member[] = [];
  for (const m of namespaceMembers(host, dir)) {
    if (m.alive) {
      live.push(m);
      continue;
    }
    if (m.table) {
      try {
        nft()?.remove(m.table);
      } catch {
        /* doctor reports what is left */
      }
    }
    tryUnlink(host, m.file);
  }
  return live;
}

export async function prepareSystem(opts: SetupOptions, deps: SetupDeps): Promise<SetupHandle> {
  const { host } = deps;
  const report: SetupReport = { changes: [], notes: [], accounting: false, engaged: null, engagedBy: 'none', tracking: 'not-tracking', acctWasOff: false };
  if (!opts.needConntrack) return { report, undo: noop, undoSync: () => undefined };

  const proc = (rel: string) => join(host.procRoot, rel);
  const acctPath = proc(SYSCTL.acct);
  const status = readText(host, proc('self/status')) ?? '';
  const root = uidOf(status) === 0;
  let acct = readNumber(host, acctPath);
  report.accounting = acct === 1;
  report.acctWasOff = acct === 0;

  let netns: string | null = null;
  try {
    netns = host.readlink(proc('self/ns/net'));
  } catch {
    /* no reference count then */
  }
  const stateDir = deps.stateDir ?? STATE_DIR;
  const dir = netns ? namespaceDir(stateDir, netns) : null;
  const selfStart = startTimeOf(readText(host, proc('self/stat')) ?? '') ?? 0;

  if (!opts.setup) {
    const probe = await host.probeTracking().catch(() => ({ v4: null, v6: null }));
    const tracked = probe.v4 === true && probe.v6 !== false;
    report.engaged = probe.v4 === null ? null : tracked;
    if (tracked) {
      report.engagedBy = 'existing';
      report.tracking = 'engaged-by-others';
    }
    if (acct === 0)
      report.notes.push({ code: 'acct-off', message: 'accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null — run without --no-setup, or `sudo sysctl -w net.netfilter.nf_conntrack_acct=1`' });
    if (acct === null) report.notes.push({ code: 'no-conntrack', message: 'nf_conntrack is not loaded: no flows are tracked' });
    if (probe.v4 === false || probe.v6 === false)
      report.notes.push({ code: 'not-tracking', message: 'conntrack does not track in this network namespace (no rule uses it): no flows will appear — run without --no-setup to engage it' });
    else if (probe.v4 === null) report.notes.push({ code: 'tracking-unknown', message: 'cannot tell whether conntrack tracks here (the probe needs CAP_NET_ADMIN)' });
    return { report, undo: noop, undoSync: () => undefined };
  }

  // Everything below runs under the namespace lock: two runs started at the same instant take
  // turns, and the second sees the first as a member.
  let release: () => void = () => undefined;
  if (dir) {
    // Directories of namespaces no ctacct runs in any more would pile up (one per container).
    sweepStale(host, stateDir, dir);
    try {
      release = lockNamespace(host, dir);
    } catch {
      release = () => undefined; // /run not writable (unprivileged user namespace): no sharing
    }
    // Read again under the lock: a run started at the same instant may have just turned it on.
    acct = readNumber(host, acctPath);
    report.accounting = acct === 1;
    report.acctWasOff = acct === 0;
  }
  let session: NftSession | null = null;
  const nft = (): NftSession | null => {
    if (!session) session = host.openNft();
    return session;
  };

  const plan = {
    table: null as string | null,
    owned: false,
    member: null as string | null,
    restoreAcct: false,
    keepAcct: opts.keepAcct,
    /** Nothing but ctacct made conntrack track here when the first member engaged it. */
    othersAbsent: false,
  };
  let undoing: Promise<void> | null = null;
  const failures: string[] = [];
  const failed = () => new UserError(`could not undo: ${failures.join('; ')}`, EXIT.failure, 'ERR_UNDO');

  // Steps shared by both undo paths; each clears its plan entry when done, so neither path repeats
  // what the other did. Returns the async remainder (leftover entries) or null.
  const undoCore = (): { lastOut: boolean } => {
    let relock: (() => void) | null = null;
    let lastOut = false;
    try {
      if (dir) relock = host.lock(join(dir, LOCK));
    } catch {
      /* go on unlocked (and leave the directory) */
    }
    try {
      if (plan.table) {
        try {
          if (!plan.owned) nft()?.remove(plan.table);
          plan.table = null;
        } catch (e) {
          failures.push(`removing nft table inet ${plan.table} (${(e as { code?: string }).code ?? e}) — run \`sudo nft delete table inet ${plan.table}\``);
        }
      }
      // Closing the socket makes the kernel drop an owned table (it also goes if we are killed).
      try {
        session?.close();
      } catch {
        /* closed */
      }
      session = null;
      plan.owned = false;
      if (plan.member && dir) {
        tryUnlink(host, plan.member);
        plan.member = null;
        const live = pruneMembers(host, dir, nft);
        lastOut = live.length === 0;
        if (lastOut) {
          if (readText(host, join(dir, ACCT_MARK)) !== null) {
            try {
              host.writeFile(acctPath, '0\n');
              tryUnlink(host, join(dir, ACCT_MARK));
            } catch (e) {
              failures.push(`restoring net.netfilter.nf_conntrack_acct=0 (${(e as { code?: string }).code ?? e}) — run \`sudo sysctl -w net.netfilter.nf_conntrack_acct=0\``);
            }
          }
          tryUnlink(host, join(dir, OTHERS));
          tryUnlink(host, join(dir, BEFORE)); // the async path read it first
          // Only under the lock: a run starting now waits on it, then sees the file gone and retries.
          if (relock) removeIfUnused(host, dir);
        }
      } else if (plan.restoreAcct) {
        // No reference count (state dir not writable): this run alone restores what it changed.
        try {
          host.writeFile(acctPath, '0\n');
          plan.restoreAcct = false;
        } catch (e) {
          failures.push(`restoring net.netfilter.nf_conntrack_acct=0 (${(e as { code?: string }).code ?? e}) — run \`sudo sysctl -w net.netfilter.nf_conntrack_acct=0\``);
        }
      }
    } finally {
      relock?.();
      try {
        session?.close();
      } catch {
        /* closed */
      }
      session = null;
    }
    return { lastOut };
  };

  const handle: SetupHandle = {
    report,
    undo() {
      undoing ??= (async () => {
        const before = dir ? readText(host, join(dir, BEFORE)) : null;
        const { lastOut } = undoCore();
        if (lastOut && plan.othersAbsent && dir) {
          // Entries made trackable only by ctacct would stay for days with frozen counters: remove
          // them, unless something else started tracking meanwhile (then they may be needed).
          try {
            const probe = await host.probeTracking();
            if (probe.v4 === false && probe.v6 !== true) {
              const keep = new Set((before ?? '').split(/\s+/).filter(Boolean).map(Number));
              await host.removeEntriesExcept(keep);
            }
          } catch {
            /* doctor reports leftovers */
          }
        }
        if (failures.length) throw failed();
      })();
      return undoing;
    },
    undoSync() {
      if (undoing) {
        // The async undo ran its synchronous core already; nothing is left but the entries.
        if (failures.length) throw failed();
        return;
      }
      undoing = Promise.resolve();
      undoCore();
      if (failures.length) throw failed();
    },
  };

  deps.onHandle?.(handle);
  try {
    const live = dir ? pruneMembers(host, dir, nft) : [];
    const first = live.length === 0;
    // Join the reference count before changing anything: whatever happens next, the undo (of
    // this run, or of the last member) sees what to restore.
    if (dir) {
      const file = join(dir, `member-${host.pid}-${selfStart}`);
      try {
        host.writeFileAtomic(file, '-\n');
        plan.member = file;
      } catch {
        /* not writable: this run restores alone (plan.restoreAcct) */
      }
    }

    // 1. Accounting before tracking starts, so flows ctacct makes trackable get counters.
    const marked = dir ? readText(host, join(dir, ACCT_MARK)) !== null : false;
    const enableAcct = () => {
      if (acct !== 0) return;
      const restore = !opts.keepAcct;
      if (restore) {
        if (plan.member) host.writeFileAtomic(join(dir!, ACCT_MARK), `${host.pid}\n`); // before the write: a crash still restores
        else plan.restoreAcct = true;
      }
      try {
        host.writeFile(acctPath, '1\n');
      } catch (e) {
        plan.restoreAcct = false;
        if (dir) tryUnlink(host, join(dir, ACCT_MARK));
        const code = (e as { code?: string }).code;
        if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw privilegeError('enabling conntrack accounting', root);
        throw new UserError(`enabling conntrack accounting: ${code ?? String(e)}`, EXIT.failure, code ?? 'ERR_CTACCT');
      }
      report.accounting = true;
      report.acctWasOff = true;
      report.changes.push({
        code: 'acct-on',
        what: 'net.netfilter.nf_conntrack_acct',
        detail: `0 → 1 (${restore ? 'restored to 0 when the last ctacct in this network namespace exits' : 'kept at 1 on exit: --keep-acct'})`,
      });
      report.notes.push({ code: 'acct-was-off', message: 'accounting was off: flows that began before now have no counters (shown as null)' });
    };
    if (first && marked && acct === 1) {
      report.acctWasOff = true;
      if (opts.keepAcct) tryUnlink(host, join(dir!, ACCT_MARK));
      report.changes.push({
        code: 'acct-adopted',
        what: 'net.netfilter.nf_conntrack_acct',
        detail: `left at 1 by a ctacct run that was killed; ${opts.keepAcct ? 'kept at 1 (--keep-acct)' : 'restored to 0 on exit'}`,
      });
    }
    enableAcct();
    if (!first) {
      report.notes.push({
        code: 'shared',
        message: `${live.length} other ctacct process${live.length === 1 ? '' : 'es'} (pid ${live.map((m) => m.pid).join(', ')}) run in this network namespace; the last one to exit restores the settings`,
      });
    }

    // 2. Does anything else make conntrack track here? A loopback probe answers without reading
    //    any rule set (and without nft). The first member decides; later ones trust its answer,
    //    as their own probe would see the first member's table.
    let others: boolean | null;
    if (first) {
      const probe = await host.probeTracking();
      others = probe.v4 === null ? null : probe.v4 && probe.v6 !== false;
      if (dir) {
        try {
          host.writeFileAtomic(join(dir, OTHERS), `${others === true ? 1 : others === false ? 0 : '-'}\n`);
          // An empty table needs no dump to know that nothing was there before.
          const count = readNumber(host, proc(SYSCTL.count));
          if (others === false) host.writeFileAtomic(join(dir, BEFORE), `${count === 0 ? '' : (await host.entryIds()).join(' ')}\n`);
        } catch {
          /* best effort: without it leftovers are not removed */
        }
      }
    } else {
      const t = dir ? (readText(host, join(dir, OTHERS)) ?? '').trim() : '';
      others = t === '1' ? true : t === '0' ? false : null;
    }
    plan.othersAbsent = others === false;

    // 3. Engage with a table of this process where nothing else tracks.
    const name = tableName(host.pid);
    if (others !== true) {
      plan.table = name;
      plan.owned = true;
      try {
        const s = nft()!;
        // A transient refusal (EBUSY/EAGAIN/ENOBUFS from a busy nf_tables transaction) is tried again
        // twice before ctacct reports that it cannot engage; privilege errors are final at once.
        for (let attempt = 1; ; attempt++) {
          try {
            try {
              s.engage(name, true);
            } catch (e) {
              if ((e as { code?: string }).code !== 'EOPNOTSUPP') throw e;
              plan.owned = false; // Linux < 5.12: no owner flag; the member record names the table
              s.engage(name, false);
            }
            break;
          } catch (e) {
            const code = (e as { code?: string }).code;
            if (attempt >= 3 || code === 'EPERM' || code === 'EACCES' || code === 'ENOENT' || code === 'EAFNOSUPPORT' || code === 'EPROTONOSUPPORT') throw e;
            await new Promise((r) => setTimeout(r, 50 * attempt));
          }
        }
      } catch (e) {
        plan.table = null;
        const code = (e as { code?: string }).code;
        if (code === 'EPERM' || code === 'EACCES') throw privilegeError('engaging conntrack (nf_tables)', root);
        // No nf_tables (module missing, kernel without it…): go on, and say so everywhere.
        report.engaged = others === false ? false : null;
        report.notes.push({
          code: 'not-tracking',
          message: `conntrack ${others === false ? 'does not track' : 'may not track'} in this network namespace and ctacct cannot engage it (nf_tables: ${code ?? (e as Error).message}): no flows will appear — load nf_tables (\`modprobe nf_tables\`) or add a rule that uses conntrack`,
        });
        if (others === false) report.tracking = 'not-tracking';
      }
    }
    if (others !== true && plan.table) {
      report.engaged = true;
      report.engagedBy = 'ctacct';
      report.tracking = 'engaged-by-ctacct';
      report.changes.push({
        code: 'table-engaged',
        what: `nft table inet ${name}`,
        detail: plan.owned
          ? 'engages conntrack in this network namespace; owned by this process, so the kernel removes it when ctacct exits (even if killed)'
          : 'engages conntrack in this network namespace; removed on exit (this kernel has no owned tables)',
      });
      report.notes.push({ code: 'engage-cost', message: COST_NOTE });
    } else if (others === true) {
      report.engaged = true;
      report.engagedBy = 'existing';
      report.tracking = 'engaged-by-others';
    }

    // 4. Engaging may have loaded nf_conntrack only now.
    if (acct === null) {
      acct = readNumber(host, acctPath);
      report.acctWasOff = acct === 0;
      enableAcct();
      if (acct === 1) report.accounting = true;
    }

    // 5. A table the kernel does not own is named in the member record, so a later run can delete it.
    if (plan.member && plan.table && !plan.owned) host.writeFileAtomic(plan.member, `${plan.table}\n`);
  } catch (e) {
    release();
    try {
      await handle.undo();
    } catch {
      /* report the first error; the undo one names its own fix */
    }
    throw e;
  }
  release();
  return handle;
}

/**
 * Runs `body` with the system prepared, undoing on every exit path: normal end, throw, signals,
 * uncaught errors, process exit. The way `flows`/`top` use set-up.
 */
export async function withSystemSetup<T>(
  system: System,
  opts: SetupOptions,
  body: (report: SetupReport) => Promise<T>,
  deps: Partial<SetupDeps> & { lifecycle?: Lifecycle } = {},
): Promise<T> {
  const lc = deps.lifecycle ?? installSignalHandlers(system);
  let off: () => void = () => undefined;
  let handle: SetupHandle;
  try {
    handle = await prepareSystem(opts, {
      host: deps.host ?? realHost(system),
      ...(deps.stateDir ? { stateDir: deps.stateDir } : {}),
      onHandle: (h) => {
        off = lc.onShutdown(() => h.undo(), () => h.undoSync());
      },
    });
  } catch (e) {
    off(); // prepareSystem already undid what it had done
    throw e;
  }
  let result: T;
  try {
    result = await body(handle.report);
  } catch (e) {
    // The body's error is the one to show; an undo failure still gets its line. The cleanup
    // stays registered until the undo has finished, so a signal meanwhile cannot skip it.
    await handle.undo().catch((u: unknown) => system.stderr.write(`ctacct: ${(u as Error).message}\n`));
    off();
    throw e;
  }
  try {
    await handle.undo();
  } finally {
    off();
  }
  return result;
}
