// Benchmark: one-shot commands vs their C peers, same machine, same run, medians of RUNS.
//   sudo node --import tsx bench/oneshot.ts [--quick]
// - `ctacct --version` vs `node -e 0` (start-up cost)
// - `ctacct flows --json` vs `conntrack -L -o extended` on a table of N entries (inserted with
//   `conntrack -R` in a throwaway namespace): wall, CPU (user+sys) and peak RSS (GNU time %M)
// CPU time is the figure to trust on a shared machine; wall time is given beside it.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const OUT = `${REPO}bench/out`;
const QUICK = process.argv.includes('--quick');
const RUNS = QUICK ? 1 : 3;
const N = QUICK ? 10_000 : 100_000;
const CTACCT = `${REPO}bin/ctacct.js`;
const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 256 << 20 });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface T { wall: number; cpu: number; rssMB: number }
function time(argv: string[], ns?: string): T {
  const f = `${OUT}/oneshot-time.txt`;
  const pre = ns ? ['ip', 'netns', 'exec', ns] : [];
  const t0 = performance.now();
  const r = spawnSync(pre[0] ?? '/usr/bin/time', [...pre.slice(1), ...(ns ? ['/usr/bin/time'] : []), '-f', '%U %S %M', '-o', f, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  const wall = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status} ${r.stderr}`);
  const [u, s, m] = readFileSync(f, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { wall, cpu: (u! + s!) * 1000, rssMB: m! / 1024 };
}
function med(argv: string[], ns?: string): T {
  time(argv, ns); // warm-up
  const xs = Array.from({ length: RUNS }, () => time(argv, ns));
  return { wall: median(xs.map((x) => x.wall)), cpu: median(xs.map((x) => x.cpu)), rssMB: median(xs.map((x) => x.rssMB)) };
}

mkdirSync(OUT, { recursive: true });
const rows: string[] = [];
const line = (what: string, a: T, peer: string, b: T, target: string, ok: boolean) =>
  rows.push(`| ${what} | ${a.wall.toFixed(0)} ms / ${a.cpu.toFixed(0)} ms / ${a.rssMB.toFixed(0)} MB | ${peer} | ${b.wall.toFixed(0)} ms / ${b.cpu.toFixed(0)} ms / ${b.rssMB.toFixed(0)} MB | ${target} | ${ok ? '**met**' : '**not met**'} (${(a.wall / b.wall).toFixed(2)}× wall, ${(a.cpu / b.cpu).toFixed(2)}× CPU) |`);

const ver = med(['node', CTACCT, '--version']);
const node0 = med(['node', '-e', '0']);
line('`ctacct --version`', ver, '`node -e 0`', node0, '≤ 1.5× (CPU)', ver.cpu <= 1.5 * node0.cpu);

const ns = `ctt-oneshot-${process.pid}`;
try {
  sh(`ip netns add ${ns} && ip -n ${ns} link set lo up && ip netns exec ${ns} sysctl -qw net.netfilter.nf_conntrack_acct=1`);
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: 'table inet ctoneshot {\n chain o {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n' });
  const lines: string[] = [];
  for (let i = 0; i < N; i++)
    lines.push(`-I -p tcp -s 10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255} -d 10.231.7.2 --sport ${1024 + (i % 60000)} --dport 8080 --state ESTABLISHED -t 3600 -u SEEN_REPLY,ASSURED`);
  writeFileSync(`${OUT}/oneshot-ct.txt`, `${lines.join('\n')}\n`);
  spawnSync('ip', ['netns', 'exec', ns, 'conntrack', '-R', `${OUT}/oneshot-ct.txt`], { stdio: 'ignore' });
  const count = Number(sh(`ip netns exec ${ns} conntrack -C`).trim());
  const flows = med(['node', CTACCT, 'flows', '--json', '--no-setup'], ns);
  const ct = med(['conntrack', '-L', '-o', 'extended'], ns);
  line(`\`ctacct flows --json\`, ${count} forwarded flows`, flows, '`conntrack -L -o extended`', ct, '≤ 1.2× wall', flows.wall <= 1.2 * ct.wall);
  rows.push(`| (memory) \`ctacct flows --json\`, ${count} forwarded flows | peak RSS ${flows.rssMB.toFixed(0)} MB | | | ≤ 100 MB | ${flows.rssMB <= 100 ? '**met**' : '**not met**'} |`);
  // The same flows made inbound (their destination becomes a local address): one socket lookup
  // per flow end, as on a server.
  sh(`ip -n ${ns} addr add 10.231.7.2/32 dev lo`);
  const inbound = med(['node', CTACCT, 'flows', '--json', '--no-setup'], ns);
  line(`\`ctacct flows --json\`, ${count} inbound flows`, inbound, '`conntrack -L -o extended`', ct, '≤ 1.2× wall', inbound.wall <= 1.2 * ct.wall);
  rows.push(`| (memory) \`ctacct flows --json\`, ${count} inbound flows | peak RSS ${inbound.rssMB.toFixed(0)} MB | | | ≤ 100 MB | ${inbound.rssMB <= 100 ? '**met**' : '**not met**'} |`);
  // Through a pipe to a reader slower than ctacct (as `| jq` would be): the output must wait for
  // it, not pile up in memory. %M of the shell is its largest child's peak: ctacct's.
  const piped = med(['sh', '-c', `node ${CTACCT} flows --json --no-setup | cat > /dev/null`], ns);
  rows.push(`| (memory) \`ctacct flows --json | cat\`, ${count} inbound flows | peak RSS ${piped.rssMB.toFixed(0)} MB (${piped.wall.toFixed(0)} ms wall) | | | ≤ 100 MB | ${piped.rssMB <= 100 ? '**met**' : '**not met**'} |`);
} finally {
  spawnSync('ip', ['netns', 'del', ns]);
}
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const md = [
  `Medians of ${RUNS} (after a warm-up run), ${new Date().toISOString()}, load average ${load} on ${sh('nproc').trim()} cores. Each cell: wall / CPU (user+sys) / peak RSS.`,
  '',
  '| command | ctacct | peer | peer figures | target | verdict |',
  '|---|---|---|---|---|---|',
  ...rows,
].join('\n');
writeFileSync(`${OUT}/benchmarks-oneshot.md`, `${md}\n`);
process.stdout.write(`${md}\n`);
