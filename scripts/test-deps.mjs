// The system tools the tests use, and what `npm test` does when some are missing: as root on
// Debian/Ubuntu it installs them with apt-get (saying what and why); elsewhere it prints one line
// naming the missing packages (the tests that need them skip or fail loudly).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';

/** command → [Debian package, why the tests need it] */
export const TOOLS = {
  nft: ['nftables', 'firewall rules in test namespaces (the "a firewall already tracks" cases) and rule-set checks'],
  conntrack: ['conntrack', 'reading the kernel counters independently of ctacct'],
  ip: ['iproute2', 'throwaway network namespaces and veth pairs'],
  ss: ['iproute2', 'socket listings to compare `ctacct states` against'],
  sysctl: ['procps', 'per-namespace conntrack settings'],
  unshare: ['util-linux', 'a private mount namespace that hides nft'],
  setpriv: ['util-linux', 'running ctacct as an unprivileged user'],
  mount: ['mount', 'bind-mounting /dev/null over nft'],
  bash: ['bash', 'shell pipelines such as `ctacct … | head -1`'],
  python3: ['python3', 'traffic helpers'],
  tmux: ['tmux', 'driving the live screen in a real terminal'],
  iperf3: ['iperf3', 'bulk transfers for comparison tests'],
  wrk: ['wrk', 'HTTP load for the benchmarks'],
  nginx: ['nginx', 'a real multi-process server for attribution tests'],
  curl: ['curl', 'HTTP requests against nginx and the exporter'],
  prometheus: ['prometheus', 'scraping `ctacct serve` with the real server'],
  nethogs: ['nethogs', 'comparing numbers with nethogs'],
  iftop: ['iftop', 'comparing numbers with iftop'],
  iptstate: ['iptstate', 'comparing the state table with iptstate'],
};

const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/**
 * What to do about missing tools. Pure: `has(cmd)` says whether a command exists.
 * @param {{ isRoot: boolean, has: (cmd: string) => boolean, osRelease: string | null, skip?: boolean }} env
 * @returns {{ action: 'none' | 'install' | 'report', packages: string[], lines: string[] }}
 */
export function planTestDeps(env) {
  const missing = Object.entries(TOOLS).filter(([cmd]) => !env.has(cmd));
  if (!missing.length) return { action: 'none', packages: [], lines: [] };
  const packages = [...new Set(missing.map(([, [pkg]]) => pkg))].sort();
  const why = (pkg) => [...new Set(missing.filter(([, [p]]) => p === pkg).map(([, [, w]]) => w))].join('; ');
  const debian = /^(ID|ID_LIKE)=.*\b(debian|ubuntu)\b/m.test(env.osRelease ?? '');
  if (env.isRoot && debian && !env.skip && env.has('apt-get')) {
    return { action: 'install', packages, lines: ['npm test: installing the system tools the tests use:', ...packages.map((p) => `  ${p}: ${why(p)}`)] };
  }
  const how = !env.isRoot ? ' (run `sudo npm test` to install them on Debian/Ubuntu)' : env.skip ? ' (CTACCT_TEST_NO_INSTALL is set)' : '';
  return { action: 'report', packages, lines: [`npm test: missing system packages: ${packages.join(' ')}; tests that need them will fail or skip${how}`] };
}

function has(cmd) {
  for (const d of SYSTEM_DIRS) {
    try {
      accessSync(`${d}/${cmd}`, constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** Runs the plan on this machine; returns false when an install failed. */
export function ensureTestDeps() {
  let osRelease = null;
  try {
    osRelease = readFileSync('/etc/os-release', 'utf8');
  } catch {
    /* unknown system */
  }
  const plan = planTestDeps({ isRoot: process.getuid?.() === 0, has, osRelease, skip: !!process.env.CTACCT_TEST_NO_INSTALL });
  for (const l of plan.lines) process.stderr.write(`${l}\n`);
  if (plan.action !== 'install') return true;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) => spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env }).status === 0;
  if (!apt(['update', '-qq']) || !apt(['install', '-y', '-qq', '--no-install-recommends', ...plan.packages])) {
    process.stderr.write(`npm test: apt-get could not install ${plan.packages.join(' ')}; tests that need them will fail\n`);
    return false;
  }
  // Daemons the packages start are not needed: tests run their own instances.
  for (const svc of ['nginx', 'prometheus']) if (plan.packages.includes(svc)) spawnSync('systemctl', ['disable', '--now', svc], { stdio: 'ignore' });
  return true;
}

// `npm run test:deps`: only this step (CI runs it before the benchmark, which uses the same tools).
if (import.meta.url === `file://${process.argv[1]}`) process.exit(ensureTestDeps() ? 0 : 1);
