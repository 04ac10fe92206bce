// `ctacct doctor`: checks the kernel, privileges and settings, and says how to fix each.
// It changes nothing (reads /proc, lists the nft ruleset when nft exists, tries one empty ctnetlink
// dump, sends one loopback UDP datagram to see whether conntrack tracks it — deleting that entry —
// and loads the close tracker's BPF program, unloading it at once).
import { sanitize } from '../views/format.js';
import type { Argv, CommandModule } from 'yargs';
import { EXIT, UserError } from '../errors.js';
import type { System } from '../system.js';
import { detect, realHost, type Detection, type Host } from '../system/detect.js';
import { ENGAGE_COST } from '../system/setup.js';
import { openCloseTracker } from '../netlink/closer.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  ok: boolean;
  status: CheckStatus;
  detail: string;
  /** The command (or action) that fixes it; null when nothing needs fixing. */
  fix: string | null;
}

export interface DoctorResult {
  /** false when at least one check failed: `ctacct top` could not work here. */
  ok: boolean;
  checks: Check[];
}

const SUDO = 'run ctacct with sudo, or grant the capability: sudo setcap cap_net_admin+ep $(readlink -f $(which node))';
/** Root without CAP_NET_ADMIN: sudo cannot help (a container, or a capability bounding set). */
const ROOT_NO_CAP = 'give the process CAP_NET_ADMIN (a container: `docker run --cap-add NET_ADMIN …`; systemd: AmbientCapabilities=CAP_NET_ADMIN)';
const privilegeFix = (d: Detection) => (d.uid === 0 ? ROOT_NO_CAP : SUDO);

const ok = (name: string, detail: string): Check => ({ name, ok: true, status: 'ok', detail, fix: null });
const warn = (name: string, detail: string, fix: string | null): Check => ({ name, ok: true, status: 'warn', detail, fix });
const fail = (name: string, detail: string, fix: string): Check => ({ name, ok: false, status: 'fail', detail, fix });

/** Detection → checks, in the order they are printed. Pure. */
export function doctorChecks(d: Detection): Check[] {
  const checks: Check[] = [];
  const who = d.uid === null ? '' : ` (uid ${d.uid})`;

  checks.push(
    d.netAdmin
      ? ok('privileges', `CAP_NET_ADMIN${who}`)
      : fail('privileges', `no CAP_NET_ADMIN${who}: top, flows and states --source conntrack need it`, privilegeFix(d)),
  );

  // Not needed for the host's own flows: only containers' (other network namespaces') lookups and
  // --netns enter a namespace, so its absence is a warning.
  checks.push(
    d.sysAdmin
      ? ok('namespaces', 'CAP_SYS_ADMIN: flows of processes in other network namespaces (containers) are attributed; --netns works')
      : warn(
          'namespaces',
          'no CAP_SYS_ADMIN: flows of processes in other network namespaces (containers) show as unknown (reason no_permission), and --netns cannot be used; the host\'s own flows are not affected',
          d.uid === 0
            ? 'give the process CAP_SYS_ADMIN (a container: `docker run --cap-add SYS_ADMIN …`; systemd: AmbientCapabilities=CAP_SYS_ADMIN)'
            : 'run ctacct with sudo',
        ),
  );

  if (!d.procReadable) checks.push(fail('proc', '/proc/net/tcp is not readable: no socket table, no attribution', 'sudo mount -t proc proc /proc'));
  else if (!d.procFdsReadable)
    checks.push(
      warn('proc', "/proc readable, but not other users' /proc/PID/fd: their traffic shows as unknown", d.uid === 0 ? 'give the process CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (or run it outside this restricted container)' : 'run ctacct with sudo'),
    );
  else checks.push(ok('proc', '/proc readable, including process fds'));

  if (d.conntrackLoaded) checks.push(ok('conntrack_module', `nf_conntrack loaded${d.max !== null ? ` (max ${d.max} entries)` : ''}`));
  else if (d.conntrackAvailable)
    checks.push(warn('conntrack_module', 'nf_conntrack is not loaded (loading a ct rule, as ctacct does, loads it)', 'sudo modprobe nf_conntrack'));
  else checks.push(fail('conntrack_module', 'nf_conntrack is not loaded and this kernel does not list it', 'sudo modprobe nf_conntrack'));

  switch (d.netlinkError) {
    case null:
      checks.push(ok('ctnetlink', 'conntrack netlink dump works'));
      break;
    case 'EPERM':
    case 'EACCES':
      checks.push(fail('ctnetlink', `conntrack netlink: permission denied (${d.netlinkError})`, privilegeFix(d)));
      break;
    case 'EPROTONOSUPPORT':
    case 'ENOENT':
    case 'EOPNOTSUPP':
      checks.push(fail('ctnetlink', `conntrack netlink is not available (${d.netlinkError})`, 'sudo modprobe nf_conntrack_netlink'));
      break;
    case 'ERR_CTACCT_ADDON':
      checks.push(fail('ctnetlink', 'the native addon does not load', 'npm run build:native (in the ctacct directory)'));
      break;
    default:
      checks.push(fail('ctnetlink', `conntrack netlink failed (${d.netlinkError}${d.netlinkMessage ? `: ${d.netlinkMessage}` : ''})`, 'sudo modprobe nf_conntrack_netlink'));
  }

  const e = d.engagement;
  const table = e.ctacctTable;
  // nft is optional: ctacct engages conntrack through the kernel's nf_tables netlink API.
  if (d.nft) checks.push(ok('nft', `nft found at ${d.nft} (used only to list other rules)`));
  else checks.push(ok('nft', 'nft is not installed (not needed: ctacct talks to nf_tables directly)'));

  const probed = d.probe.v4;
  const tracks = e.byOthers === true || (probed === true && d.probe.v6 !== false);
  const runs = d.ctacctRuns.length ? `; ${d.ctacctRuns.length} ctacct process${d.ctacctRuns.length > 1 ? 'es' : ''} running here (pid ${d.ctacctRuns.join(', ')})` : '';
  if (e.byOthers === true) checks.push(ok('tracking', `conntrack tracks in this network namespace: ${e.evidence.join('; ')}${runs}`));
  else if (tracks && d.ctacctRuns.length) checks.push(ok('tracking', `engaged by running ctacct${runs.slice(1)}`));
  else if (tracks) checks.push(ok('tracking', `conntrack tracks in this network namespace (a loopback probe was tracked)${e.evidence.length ? `: ${e.evidence.join('; ')}` : ''}`));
  else if (table)
    checks.push(
      warn(
        'tracking',
        `a table inet ctacct left by an older ctacct run that ended without cleaning up${table.record ? ` (pid ${table.record.pid})` : ''} engages conntrack`,
        'sudo nft delete table inet ctacct',
      ),
    );
  else if (probed === false || e.byOthers === false)
    checks.push(
      warn(
        'tracking',
        `no rule uses conntrack in this network namespace: ctacct top engages it while it runs (an nf_tables table owned by the ctacct process), costing ${ENGAGE_COST}`,
        'nothing to run: ctacct engages it (or add a stateful firewall rule such as `ct state established,related accept`)',
      ),
    );
  else
    checks.push(
      warn(
        'tracking',
        `cannot tell whether conntrack tracks here${e.evidence.length ? `: ${e.evidence.join('; ')}` : ''}`,
        d.uid === 0 ? 'fix the ctnetlink check above (the probe reads conntrack)' : 'run ctacct doctor with sudo',
      ),
    );

  // Entries left behind: nothing tracks, no ctacct runs, yet the table holds entries (e.g. a
  // ctacct run killed before it could remove what it made trackable). They keep frozen counters
  // until their timeout (5 days for ESTABLISHED).
  if (probed === false && !d.ctacctRuns.length && (d.count ?? 0) > 0)
    checks.push(
      warn(
        'leftovers',
        `${d.count} conntrack entr${d.count === 1 ? 'y remains' : 'ies remain'} although nothing tracks here: left by an engager that is gone (frozen counters; they show as unknown … open); they expire on their own`,
        'sudo conntrack -D (deletes them now), or let them time out',
      ),
    );
  if (d.acct === 1) checks.push(ok('accounting', 'net.netfilter.nf_conntrack_acct=1: flows get byte and packet counters'));
  else if (d.acct === 0)
    checks.push(
      warn(
        'accounting',
        'net.netfilter.nf_conntrack_acct=0: ctacct top turns it on while it runs (flows begun before have no counters); with --no-setup counters are null',
        'sudo sysctl -w net.netfilter.nf_conntrack_acct=1',
      ),
    );
  else checks.push(warn('accounting', 'net.netfilter.nf_conntrack_acct unknown (nf_conntrack not loaded)', 'sudo modprobe nf_conntrack'));

  if (d.events === 0)
    checks.push(
      warn('events', 'net.netfilter.nf_conntrack_events=0: no NEW/DESTROY events, so flows that end between refreshes may be missed', 'sudo sysctl -w net.netfilter.nf_conntrack_events=1'),
    );
  else if (d.events !== null) checks.push(ok('events', `net.netfilter.nf_conntrack_events=${d.events}${d.events === 2 ? ' (on once a listener subscribes)' : ''}`));

  if (d.timestamp === 1) checks.push(ok('timestamp', 'net.netfilter.nf_conntrack_timestamp=1: flow ages are known'));
  else if (d.timestamp === 0)
    checks.push(warn('timestamp', 'net.netfilter.nf_conntrack_timestamp=0: flow ages (age_s) are unknown; optional', 'sudo sysctl -w net.netfilter.nf_conntrack_timestamp=1'));

  if (d.count !== null && d.max !== null && d.max > 0) {
    const share = d.count / d.max;
    checks.push(
      share >= 0.9
        ? warn('table_size', `${d.count} of ${d.max} entries (${Math.round(share * 100)}%): new connections may be dropped`, `sudo sysctl -w net.netfilter.nf_conntrack_max=${d.max * 2}`)
        : ok('table_size', `${d.count} of ${d.max} entries`),
    );
  }
  if (d.closeTracker) {
    checks.push(
      d.closeTracker.ok
        ? ok('close_tracker', 'the close tracker loads: a connection accepted and closed between two looks keeps its exact process')
        : warn(
            'close_tracker',
            `${d.closeTracker.message}: a connection accepted and closed between two looks stays with its listening process`,
            d.closeTracker.code === 'EPERM' || d.closeTracker.code === 'EACCES' ? 'run as root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)' : null,
          ),
    );
  }
  return checks;
}

/** Loads the close tracker and unloads it at once (nothing stays behind). */
export function probeCloseTracker(): NonNullable<Detection['closeTracker']> {
  const r = openCloseTracker();
  if (r.tracker) {
    r.tracker.close();
    return { ok: true, message: 'loaded' };
  }
  return { ok: false, code: r.code, message: r.message };
}

export function doctorResult(d: Detection): DoctorResult {
  const checks = doctorChecks(d);
  return { ok: checks.every((c) => c.ok), checks };
}

const MARK: Record<CheckStatus, string> = { ok: '✓', warn: '!', fail: '✗' };

/** One line per check: mark, name, detail, and the fix when there is one. Pure. */
export function renderDoctor(r: DoctorResult): string {
  const width = Math.max(...r.checks.map((c) => c.name.length));
  const lines = r.checks.map((c) => `${MARK[c.status]} ${c.name.padEnd(width)}  ${sanitize(c.detail)}${c.fix ? ` — fix: ${sanitize(c.fix)}` : ''}`);
  const failed = r.checks.filter((c) => c.status === 'fail').length;
  lines.push(failed ? `${failed} check${failed > 1 ? 's' : ''} failed: ctacct top cannot work here until fixed` : 'ctacct top can work here');
  return `${lines.join('\n')}\n`;
}

/** The error that gives doctor a non-zero exit after it printed its report. */
export function doctorFailure(r: DoctorResult): UserError | null {
  const failed = r.checks.filter((c) => c.status === 'fail');
  if (!failed.length) return null;
  const names = failed.map((c) => c.name);
  const code = names.includes('privileges') || failed.some((c) => c.name === 'ctnetlink' && /permission/.test(c.detail))
    ? EXIT.privilege
    : names.some((n) => n === 'conntrack_module' || n === 'ctnetlink')
      ? EXIT.unsupported
      : EXIT.failure;
  return new UserError(`doctor: ${failed.length} check${failed.length > 1 ? 's' : ''} failed (${names.join(', ')})`, code, 'ERR_DOCTOR');
}

export function doctorCommand(
  system: System,
  hostOf: (s: System) => Host = realHost,
  probe: () => Detection['closeTracker'] = probeCloseTracker,
): CommandModule<object, { json: boolean }> {
  return {
    command: 'doctor',
    describe: 'Check kernel, privileges and settings; say how to fix each (changes nothing)',
    builder: (y: Argv) =>
      y
        .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output', group: 'Output:' })
        .example('$0 doctor', 'one line per check: ✓ ok, ! warning, ✗ failure with the command that fixes it')
        .example('sudo $0 doctor --json', '{"ok":true,"checks":[{"name":"privileges","ok":true,"status":"ok",...}]}'),
    handler: async (argv) => {
      const d = await detect(hostOf(system));
      const tracker = probe();
      const result = doctorResult(tracker ? { ...d, closeTracker: tracker } : d);
      system.stdout.write(argv.json ? `${JSON.stringify(result)}\n` : renderDoctor(result));
      const err = doctorFailure(result);
      if (err) throw err;
    },
  };
}
