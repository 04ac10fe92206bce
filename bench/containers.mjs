#!/usr/bin/env node
// Cost of attributing container flows (looked up in the container's namespace) against host flows:
// the same short-connection churn from a process in the host namespace, then from a process in a
// "container" namespace behind the host's masquerade; `ctacct top --json` runs in the host
// namespace. Prints ctacct's CPU and how much of the client's bytes it attributed.
//   sudo node bench/containers.mjs [RATE] [SECONDS]      (default 1000 connections/s for 10 s)
// Needs root, a built tree (npm run build), ip, nft, conntrack, gcc. Traffic stays between the
// namespaces it makes (10.231.N.x), removed at the end.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(REPO, 'bench', 'out');
const RATE = Number(process.argv[2] ?? 1000);
const SECS = Number(process.argv[3] ?? 10);
const tag = randomBytes(2).toString('hex');
const H = `ctb-${tag}-h`;
const E = `ctb-${tag}-e`;
const C = `ctb-${tag}-c`;
const N = 100 + 2 * Math.floor(Math.random() * 60);
const IP = { h: `10.231.${N}.1`, e: `10.231.${N}.2`, hc: `10.231.${N + 1}.1`, c: `10.231.${N + 1}.2` };

const sh = (...a) => execFileSync(a[0], a.slice(1), { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 512 << 20 });
const inNs = (ns, ...a) => sh('ip', 'netns', 'exec', ns, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cleanup() {
  for (const ns of [H, E, C]) {
    try {
      for (const p of sh('ip', 'netns', 'pids', ns).split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
    } catch {}
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {}
  }
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function scenario(from) {
  const top = spawn('ip', ['netns', 'exec', H, process.execPath, join(REPO, 'bin/ctacct.js'), 'top', '--json', '--interval', '1', '--no-setup'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  const snaps = [];
  top.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      snaps.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  while (snaps.length < 2) await sleep(100);
  const port = 9000 + (from === 'host' ? 0 : 1);
  const srv = spawn('ip', ['netns', 'exec', E, join(OUT, 'loadgen'), 'server', String(port), '100', '1000'], { stdio: 'ignore' });
  await sleep(300);
  const cpu0 = cpuSeconds(top.pid + 0) + 0; // `ip netns exec` execs node: same pid
  const t0 = performance.now();
  const ns = from === 'host' ? H : C;
  const client = spawn('ip', ['netns', 'exec', ns, 'timeout', String(SECS + 20), join(OUT, 'loadgen'), 'client', IP.e, String(port), String(RATE), String(SECS), '100', '1000', '2000', from === 'host' ? IP.h : IP.c], { stdio: ['ignore', 'pipe', 'inherit'] });
  let cout = '';
  client.stdout.on('data', (d) => (cout += d));
  await new Promise((r) => client.on('exit', r));
  const n0 = snaps.length;
  while (snaps.length < n0 + 3) await sleep(100);
  const cpu = cpuSeconds(top.pid) - cpu0;
  const wall = (performance.now() - t0) / 1000;
  // Expected: layer-3 bytes counted by nft at the server (E) for this port, both directions.
  const cnt = inNs(E, 'nft', 'list', 'table', 'inet', 'ctb_cnt');
  const counter = (dir) => Number(new RegExp(`${dir === 'in' ? 'dport' : 'sport'} ${port} counter packets \\d+ bytes (\\d+)`).exec(cnt)[1]);
  const kOrig = counter('in');
  const kReply = counter('out');
  const s = snaps[snaps.length - 1];
  top.kill('SIGTERM');
  srv.kill('SIGKILL');
  await new Promise((r) => top.on('exit', r));
  // The client is the only process sending to this port from `ns`: its rows (one pid).
  // The client: the loadgen process living in the namespace it was started in.
  const inode = statSync(`/run/netns/${ns}`).ino;
  const client_row = s.rows.find((r) => r.comm === 'loadgen' && r.netns === inode);
  return {
    from,
    client: cout.trim().split('\n').pop(),
    ctacct_cpu_cores: +(cpu / wall).toFixed(3),
    attributed_sent: client_row ? +((100 * client_row.sent_total) / kOrig).toFixed(2) : 0,
    attributed_recv: client_row ? +((100 * client_row.recv_total) / kReply).toFixed(2) : 0,
    inferred_flows: s.health.inferred_flows,
    unknown_reasons: s.unattributed.unknown.reasons,
    forwarded_bytes: s.unattributed.forwarded.sent_total + s.unattributed.forwarded.recv_total,
  };
}

mkdirSync(OUT, { recursive: true });
if (!existsSync(join(OUT, 'loadgen'))) sh('gcc', '-O2', '-Wall', '-Wextra', '-o', join(OUT, 'loadgen'), join(REPO, 'bench/loadgen.c'));
for (const ns of [H, E, C]) {
  sh('ip', 'netns', 'add', ns);
  sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
}
sh('ip', '-n', H, 'link', 'add', `bh${tag}`, 'type', 'veth', 'peer', 'name', `be${tag}`, 'netns', E);
sh('ip', '-n', H, 'link', 'add', `bc${tag}`, 'type', 'veth', 'peer', 'name', `bk${tag}`, 'netns', C);
sh('ip', '-n', H, 'addr', 'add', `${IP.h}/24`, 'dev', `bh${tag}`);
sh('ip', '-n', H, 'addr', 'add', `${IP.hc}/24`, 'dev', `bc${tag}`);
sh('ip', '-n', E, 'addr', 'add', `${IP.e}/24`, 'dev', `be${tag}`);
sh('ip', '-n', C, 'addr', 'add', `${IP.c}/24`, 'dev', `bk${tag}`);
for (const [ns, dev] of [[H, `bh${tag}`], [H, `bc${tag}`], [E, `be${tag}`], [C, `bk${tag}`]]) sh('ip', '-n', ns, 'link', 'set', dev, 'up');
sh('ip', '-n', C, 'route', 'add', 'default', 'via', IP.hc);
inNs(H, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.netfilter.nf_conntrack_acct=1');
inNs(E, 'sysctl', '-qw', 'net.core.somaxconn=8192');
for (const ns of [H, C]) inNs(ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65535');
execFileSync('ip', ['netns', 'exec', H, 'nft', '-f', '-'], {
  input: `table ip ctb_nat {\n chain post {\n type nat hook postrouting priority 100;\n ip saddr ${IP.c} masquerade\n }\n}\n`,
});
execFileSync('ip', ['netns', 'exec', E, 'nft', '-f', '-'], {
  input: `table inet ctb_cnt {\n chain i {\n type filter hook input priority 0;\n tcp dport 9000 counter\n tcp dport 9001 counter\n }\n chain o {\n type filter hook output priority 0;\n tcp sport 9000 counter\n tcp sport 9001 counter\n }\n}\n`,
});
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const results = [];
for (const from of ['host', 'container']) results.push(await scenario(from));
console.log(JSON.stringify({ rate: RATE, seconds: SECS, loadavg_before: load, loadavg_after: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), results }, null, 1));
