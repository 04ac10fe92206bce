// Applies only the system changes ctacct needs (accounting on, conntrack engaged), says what it
// changed, and undoes exactly that. DESIGN.md: "System changes ctacct may make, and must undo".
import { join } from 'node:path';
import { EXIT, UserError } from '../errors.js';
import type { System } from '../system.js';
import { installSignalHandlers, type Lifecycle } from './lifecycle.js';
import {
  SYSCTL,
  readNumber,
  readText,
  decodeRecord,
  detectEngagement,
  encodeRecord,
  recordOwnerAlive,
  startTimeOf,
  type Engagement,
  type Host,
  type SetupRecord,
  realHost,
} from './detect.js';

export interface SetupOptions {
  /** false (`--no-setup`): change nothing, only report what is missing. */
  setup: boolean;
  /** Leave nf_conntrack_acct=1 on exit. */
  keepAcct: boolean;
  /** The command reads conntrack at all (`states --source sockets` does not). */
  needConntrack: boolean;
}

export interface SetupChange {
  what: string;
  detail: string;
}

export interface SetupReport {
  /** What ctacct changed: printed once on start, listed under `health` in JSON. */
  changes: SetupChange[];
  /** Warnings: costs, what is missing with --no-setup. */
  notes: string[];
  /** Accounting is on now (new flows get counters). */
  accounting: boolean;
  /** Conntrack tracks in this namespace now (null: could not tell). */
  engaged: boolean | null;
  engagedBy: 'ctacct' | 'existing' | 'none';
  /** Accounting was off before this run (or a crashed run had turned it on from 0). */
  acctWasOff: boolean;
}

export interface SetupHandle {
  report: SetupReport;
  /** Undoes every change once; later calls do nothing. Throws a UserError naming what it could not undo. */
  undo(): Promise<void>;
  /** The same, synchronously (process 'exit' path). */
  undoSync(): void;
}

export interface SetupDeps {
  host: Host;
  /** Where the acct record lives when no table carries it; default /run/ctacct. */
  stateDir?: string;
  /** Called with the handle before the first change, so a signal during set-up still undoes it. */
  onHandle?(handle: SetupHandle): void;
}

export const TABLE_FAMILY = 'inet';
export const TABLE_NAME = 'ctacct';
/** DESIGN.md's measured cost of engaging conntrack where nothing did. */
export const ENGAGE_COST = 'about 10% of the maximum new-connection rate (15.5k → 14.0k conn/s measured on a 2-core machine)';
export const COST_NOTE = `conntrack engaged by ctacct (nft table inet ctacct): costs ${ENGAGE_COST} while ctacct runs`;

/**
 * The table that engages conntrack: one chain on output, one `ct` match with no verdict, run
 * after every other hook user (priority 300). Loading any `ct` expression makes the kernel
 * register conntrack's hooks for the whole namespace (inbound, outbound, loopback, forwarded,
 * IPv4 and IPv6 — verified in docs/decisions-system.md), so one chain is enough.
 */
export function tableRuleset(record: SetupRecord | null, replace: boolean): string {
  const comment = record ? `\tcomment "${encodeRecord(record)}"\n` : '';
  // `delete` + `table` in one nft transaction: a stale table is swapped for ours atomically,
  // so tracking never stops in between.
  return `${replace ? `delete table ${TABLE_FAMILY} ${TABLE_NAME}\n` : ''}table ${TABLE_FAMILY} ${TABLE_NAME} {
${comment}\tchain track {
\t\ttype filter hook output priority 300; policy accept;
\t\tct state new
\t}
}
`;
}

/** `net:[4026532285]` → `/run/ctacct/net-4026532285.state` */
export function stateFilePath(stateDir: string, netns: string): string {
  return join(stateDir, `${netns.replace(/[^0-9a-z]+/gi, '-').replace(/-+$/, '')}.state`);
}

const NO_TABLE = /No such file or directory|does not exist/i;
const NO_PERM = /Operation not permitted|Permission denied/i;

function privilegeError(what: string): UserError {
  return new UserError(
    `${what}: permission denied — run with sudo or grant CAP_NET_ADMIN (or use --no-setup to change nothing)`,
    EXIT.privilege,
    'EPERM',
  );
}

function nftError(what: string, stderr: string, status: number | null): UserError {
  if (NO_PERM.test(stderr)) return privilegeError(what);
  const first = stderr.trim().split('\n')[0] || `exit ${status}`;
  return new UserError(`${what}: nft failed: ${first}`, EXIT.failure, 'ERR_NFT');
}

const noop: SetupHandle['undo'] = async () => undefined;

/** One line per change and note, for the human views to print once on start. */
export function formatSetupReport(report: SetupReport): string {
  const lines = report.changes.map((c) => `ctacct: changed ${c.what}: ${c.detail}`);
  for (const n of report.notes) lines.push(`ctacct: note: ${n}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

interface Plan {
  /** Table to delete on exit. */
  ownTable: boolean;
  /** Value to write back to nf_conntrack_acct on exit. */
  restoreAcct: 0 | null;
  /** State file to remove on exit. */
  stateFile: string | null;
}

export async function prepareSystem(opts: SetupOptions, deps: SetupDeps): Promise<SetupHandle> {
  const { host } = deps;
  const report: SetupReport = { changes: [], notes: [], accounting: false, engaged: null, engagedBy: 'none', acctWasOff: false };
  if (!opts.needConntrack) return { report, undo: noop, undoSync: () => undefined };

  const proc = (rel: string) => join(host.procRoot, rel);
  const acctPath = proc(SYSCTL.acct);
  const nft = host.which('nft');
  let acct = readNumber(host, acctPath);
  const engagement: Engagement = await detectEngagement(host, nft, readNumber(host, proc(SYSCTL.count)));
  let netns: string | null = null;
  try {
    netns = host.readlink(proc('self/ns/net'));
  } catch {
    /* no state file then */
  }
  const stateFile = netns ? stateFilePath(deps.stateDir ?? '/run/ctacct', netns) : null;
  const selfStart = startTimeOf(readText(host, proc('self/stat')) ?? '') ?? 0;

  // What an earlier run left: the table's comment first (it lives and dies with this
  // namespace), else the state file (needed when ctacct changed acct but made no table).
  const table = engagement.ctacctTable;
  const fileRecord = stateFile ? decodeRecord(readText(host, stateFile)) : null;
  const fileOwnerAlive = fileRecord ? recordOwnerAlive(host, fileRecord) : false;
  const liveOwner = table?.ownerAlive ? table.record : fileOwnerAlive ? fileRecord : null;
  const staleRecord = table?.record && !table.ownerAlive ? table.record : fileRecord && !fileOwnerAlive ? fileRecord : null;

  report.accounting = acct === 1;
  report.acctWasOff = acct === 0;
  if (engagement.byOthers === true) {
    report.engaged = true;
    report.engagedBy = 'existing';
  } else if (table) {
    report.engaged = true;
    report.engagedBy = 'existing';
  } else {
    report.engaged = engagement.byOthers; // false, or null (unknown)
  }

  // Another ctacct is running in this namespace: use what it set up and leave it to undo it.
  if (liveOwner) {
    report.notes.push(
      `another ctacct (pid ${liveOwner.pid}) is running in this network namespace and made the system changes; it undoes them when it exits`,
    );
    if (!report.accounting) report.notes.push('accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null');
    return { report, undo: noop, undoSync: () => undefined };
  }

  if (!opts.setup) {
    if (acct === 0) report.notes.push('accounting off (net.netfilter.nf_conntrack_acct=0): counters will be null — run without --no-setup, or `sudo sysctl -w net.netfilter.nf_conntrack_acct=1`');
    if (acct === null) report.notes.push('nf_conntrack is not loaded: no flows are tracked');
    if (table)
      report.notes.push(
        `a table inet ctacct left by an earlier ctacct run${table.record ? ` (pid ${table.record.pid})` : ''} engages conntrack; \`sudo nft delete table inet ctacct\` removes it`,
      );
    else if (engagement.byOthers === false)
      report.notes.push('conntrack does not track in this network namespace (no rule uses it): no flows will appear — run without --no-setup to engage it');
    else if (engagement.byOthers === null) report.notes.push(`cannot tell whether conntrack tracks here: ${engagement.evidence.join('; ')}`);
    return { report, undo: noop, undoSync: () => undefined };
  }

  const plan: Plan = { ownTable: false, restoreAcct: null, stateFile: null };
  const adoptedAcct = staleRecord?.acctWas === 0 && acct === 1; // a crashed run turned it on from 0
  const willRestore = !opts.keepAcct && (acct === 0 || acct === null || adoptedAcct);
  const needTable = engagement.byOthers !== true;
  const record: SetupRecord = { pid: host.pid, start: selfStart, acctWas: willRestore ? 0 : null };

  const undoSteps = (sync: boolean) => {
    const failures: string[] = [];
    const steps: (() => Promise<void> | void)[] = [];
    if (plan.ownTable) {
      const args = ['delete', 'table', TABLE_FAMILY, TABLE_NAME];
      const check = (r: { status: number | null; stderr: string; errorCode?: string }) => {
        if (r.status === 0 || NO_TABLE.test(r.stderr)) plan.ownTable = false;
        else failures.push(`removing nft table inet ctacct (${r.stderr.trim().split('\n')[0] || r.errorCode}) — run \`sudo nft delete table inet ctacct\``);
      };
      steps.push(sync ? () => check(host.runSync(nft ?? 'nft', args)) : async () => check(await host.run(nft ?? 'nft', args)));
    }
    if (plan.restoreAcct !== null) {
      steps.push(() => {
        try {
          host.writeFile(acctPath, `${plan.restoreAcct}\n`);
          plan.restoreAcct = null;
        } catch (e) {
          failures.push(`restoring net.netfilter.nf_conntrack_acct=0 (${(e as { code?: string }).code ?? e}) — run \`sudo sysctl -w net.netfilter.nf_conntrack_acct=0\``);
        }
      });
    }
    steps.push(() => {
      if (plan.stateFile === null || plan.ownTable || plan.restoreAcct !== null) return; // keep the record until all is undone
      try {
        host.unlink(plan.stateFile);
      } catch {
        /* already gone */
      }
      plan.stateFile = null;
    });
    return { steps, failures };
  };
  const failed = (failures: string[]) => new UserError(`could not undo: ${failures.join('; ')}`, EXIT.failure, 'ERR_UNDO');
  const handle: SetupHandle = {
    report,
    async undo() {
      const { steps, failures } = undoSteps(false);
      for (const s of steps) await s();
      if (failures.length) throw failed(failures);
    },
    undoSync() {
      const { steps, failures } = undoSteps(true);
      for (const s of steps) void s();
      if (failures.length) throw failed(failures);
    },
  };

  deps.onHandle?.(handle);
  try {
    // 1. Record first, so a run killed half-way is recovered by the next one.
    if (stateFile && (willRestore || fileRecord)) {
      try {
        if (willRestore) {
          host.writeFileAtomic(stateFile, `${encodeRecord(record)}\n`);
          plan.stateFile = stateFile;
        } else {
          host.unlink(stateFile); // a stale record we no longer act on
        }
      } catch {
        // /run not writable (e.g. unprivileged user namespace): the table comment still records it.
      }
    }
    if (adoptedAcct) {
      report.acctWasOff = true;
      if (willRestore) plan.restoreAcct = 0;
      report.changes.push({
        what: 'net.netfilter.nf_conntrack_acct',
        detail: `left at 1 by a crashed ctacct run (pid ${staleRecord?.pid}); ${willRestore ? 'restored to 0 on exit' : 'kept at 1 (--keep-acct)'}`,
      });
    }

    // 2. Accounting before tracking starts, so flows ctacct makes trackable get counters.
    const enableAcct = () => {
      if (acct !== 0) return;
      // Marked before the write: a signal mid-way still restores (writing 0 over 0 is harmless).
      if (willRestore) plan.restoreAcct = 0;
      try {
        host.writeFile(acctPath, '1\n');
      } catch (e) {
        plan.restoreAcct = null; // the write did not happen
        const code = (e as { code?: string }).code;
        if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw privilegeError('enabling conntrack accounting');
        throw new UserError(`enabling conntrack accounting: ${code ?? String(e)}`, EXIT.failure, code ?? 'ERR_CTACCT');
      }
      report.accounting = true;
      report.acctWasOff = true;
      report.changes.push({
        what: 'net.netfilter.nf_conntrack_acct',
        detail: `0 → 1 (${willRestore ? 'restored to 0 on exit' : 'kept at 1 on exit: --keep-acct'})`,
      });
      report.notes.push('accounting was off: flows that began before now have no counters (shown as null)');
    };
    enableAcct();

    // 3. Engage conntrack where no rule does.
    if (needTable) {
      if (!nft) {
        // Without nft the rules cannot be read either (byOthers is null): go on and say so.
        report.notes.push(
          `cannot tell whether conntrack tracks here and cannot engage it (${engagement.evidence.join('; ')}): flows may be missing — \`sudo apt-get install nftables\``,
        );
      } else {
        plan.ownTable = true; // before nft runs: deleting a table that never came is harmless
        let r = await host.run(nft, ['-f', '-'], tableRuleset(record, table !== null));
        // nft < 0.9.7 has no table comments: engage anyway, the state file still records acct.
        if (r.status !== 0 && /comment/i.test(r.stderr)) r = await host.run(nft, ['-f', '-'], tableRuleset(null, table !== null));
        if (r.status !== 0) {
          if (table === null) plan.ownTable = false; // nothing was made; a stale table stays as found
          throw nftError('engaging conntrack (nft table inet ctacct)', r.stderr, r.status);
        }
        report.engaged = true;
        report.engagedBy = 'ctacct';
        report.changes.push({
          what: 'nft table inet ctacct',
          detail: table
            ? `reused the table an earlier ctacct run${table.record ? ` (pid ${table.record.pid})` : ''} left; removed on exit`
            : 'engages conntrack in this network namespace; removed on exit',
        });
        report.notes.push(COST_NOTE);
      }
    } else if (table) {
      // Others engage conntrack: the stale table is not needed.
      const r = await host.run(nft ?? 'nft', ['delete', 'table', TABLE_FAMILY, TABLE_NAME]);
      if (r.status !== 0 && !NO_TABLE.test(r.stderr)) throw nftError('removing a stale nft table inet ctacct', r.stderr, r.status);
      report.changes.push({ what: 'nft table inet ctacct', detail: 'removed the table an earlier ctacct run left (other rules engage conntrack)' });
    }

    // 4. Loading the table may have loaded nf_conntrack only now.
    if (acct === null) {
      acct = readNumber(host, acctPath);
      report.acctWasOff = acct === 0;
      enableAcct();
      if (acct === 1) report.accounting = true;
    }
    if (plan.stateFile && plan.restoreAcct === null) {
      // Nothing to restore after all (acct was already on): drop the record.
      try {
        host.unlink(plan.stateFile);
      } catch {
        /* gone */
      }
      plan.stateFile = null;
    }
  } catch (e) {
    try {
      await handle.undo();
    } catch {
      /* report the first error; the undo one names its own fix */
    }
    throw e;
  }
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
    off();
    // The body's error is the one to show; an undo failure still gets its line.
    await handle.undo().catch((u: unknown) => system.stderr.write(`ctacct: ${(u as Error).message}\n`));
    throw e;
  }
  off();
  await handle.undo();
  return result;
}
