// Debian's nginx with two workers under wrk, end to end (the built bin/ctacct.js): every worker's
// row carries exactly the bytes of the connections it served. nginx runs in a test namespace with
// its own config, pid and logs in a temp dir; its access log names the worker ($pid) and the
// client port of every request; the kernel's per-flow counters for those ports (conntrack -L) are
// each worker's exact layer-3 count.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPair, hasCommand, rootSkip, type Netns } from '../helpers/netns.js';
import { moreSnapshots, startCtacct, stopTop } from '../helpers/ctacct.js';

const skip = rootSkip || (!hasCommand('nginx') || !hasCommand('wrk') ? 'SKIPPED: nginx and wrk are needed (apt-get install nginx-light wrk)' : false);

/** Per client port: [orig bytes, reply bytes] from the kernel's table. */
async function kernelByPort(ns: Netns, dport: number): Promise<Map<number, [number, number]>> {
  const out = await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', String(dport)]);
  const m = new Map<number, [number, number]>();
  for (const line of out.split('\n')) {
    const sport = /sport=(\d+)/.exec(line);
    const bytes = [...line.matchAll(/bytes=(\d+)/g)].map((x) => Number(x[1]));
    if (sport && bytes.length === 2) m.set(Number(sport[1]), [bytes[0]!, bytes[1]!]);
  }
  return m;
}

describe('nginx workers under wrk', { skip }, () => {
  let pair: Awaited<ReturnType<typeof createPair>>;
  let dir = '';
  before(async () => {
    pair = await createPair('ng');
    dir = mkdtempSync(join(tmpdir(), 'ctt-nginx-'));
  });
  after(async () => {
    await pair?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Measured on the loaded 2-core test machine: 53 of 56 connections moved to their worker (before:
  // all on one process); 3 stayed with the master (health.accepts_missed), 1.2% of a worker's
  // bytes. TODO until every accept is seen.
  test('2 workers: each worker row within 1% of the bytes of its own connections', async () => {
    const port = 8401;
    writeFileSync(
      join(dir, 'nginx.conf'),
      `user root;
worker_processes 2;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 256; }
http {
  log_format w '$pid $remote_port $request_length $bytes_sent';
  access_log ${dir}/access.log w;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 10.231.0.2:${port};
    location / { return 200 "${'x'.repeat(2000)}\\n"; }
  }
}
`,
    );
    const top = startCtacct(pair.b, ['top', '--json', '--interval', '0.5', '--port', String(port)]);
    const nginx = pair.b.spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);
    try {
      await moreSnapshots(top, 1);
      // Ready when its workers run (the master listens before it forks them).
      for (let i = 0; i < 100; i++) {
        const kids = await pair.b.exec('sh', ['-c', `cat ${dir}/nginx.pid 2>/dev/null | xargs -r -I{} cat /proc/{}/task/{}/children`]).catch(() => '');
        if (kids.trim().split(/\s+/).filter(Boolean).length >= 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const out = await pair.a.exec('timeout', ['20', 'wrk', '-t2', '-c16', '-d3s', `http://10.231.0.2:${port}/`]);
      assert.match(out, /requests in/);
      await moreSnapshots(top, 3);
      const kernel = await kernelByPort(pair.b, port);
      const s = await stopTop(top);
      const perWorker = new Map<number, Set<number>>();
      for (const line of readFileSync(join(dir, 'access.log'), 'utf8').split('\n').filter(Boolean)) {
        const [pid, rport] = line.split(' ').map(Number);
        if (!perWorker.has(pid!)) perWorker.set(pid!, new Set());
        perWorker.get(pid!)!.add(rport!);
      }
      const table = JSON.stringify({ rows: s.rows.map((r: any) => [r.pid, r.comm, r.recv_total, r.sent_total, r.shared ?? false]), workers: [...perWorker].map(([p, ports]) => [p, ports.size]), health: s.health });
      assert.ok(perWorker.size >= 2, `wrk reached ${perWorker.size} worker(s): ${table}`);
      for (const [pid, ports] of perWorker) {
        let recv = 0;
        let sent = 0;
        for (const p of ports) {
          const k = kernel.get(p);
          assert.ok(k, `no conntrack entry for client port ${p}`);
          recv += k[0];
          sent += k[1];
        }
        const row = s.rows.find((r: any) => r.pid === pid);
        assert.ok(row, `no row for worker ${pid}: ${table}`);
        assert.ok(Math.abs(row.recv_total - recv) <= recv * 0.01, `worker ${pid} recv: ctacct ${row.recv_total} vs ${recv}: ${table}`);
        assert.ok(Math.abs(row.sent_total - sent) <= sent * 0.01, `worker ${pid} sent: ctacct ${row.sent_total} vs ${sent}: ${table}`);
      }
    } finally {
      nginx.kill('SIGQUIT');
      if (top.child.exitCode === null) top.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
    }
  });
});
