// The close tracker on a real kernel: the BPF program loads, and for loopback TCP connections
// (IPv4 and IPv6) closed by a child process it names that process — pid, its /proc start time,
// name and uid — for both ends, and nothing for a connection reset by the peer's softirq.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { openCloseTracker, type CloseTracker } from '../../src/netlink/closer.js';
import { rootSkip } from '../helpers/netns.js';

/** A child that connects to a listener of its own on loopback, sends, closes both ends, and prints
 *  the ports and its pid; it then waits for stdin to close so its /proc entry can be read. */
const CHILD = `
import os, socket, sys, json
fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET
host = '::1' if sys.argv[1] == '6' else '127.0.0.1'
l = socket.socket(fam, socket.SOCK_STREAM); l.bind((host, 0)); l.listen(4)
c = socket.socket(fam, socket.SOCK_STREAM); c.connect((host, l.getsockname()[1]))
s, _ = l.accept()
c.sendall(b'x' * 1000); s.recv(1000)
cport = c.getsockname()[1]; sport = l.getsockname()[1]
s.close(); c.close()
print(json.dumps({'pid': os.getpid(), 'client': cport, 'server': sport}), flush=True)
sys.stdin.read()
`;

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

async function runChild(family: '4' | '6'): Promise<{ pid: number; client: number; server: number; start: number; done: () => void }> {
  const child = spawn('python3', ['-c', CHILD, family], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  const o = JSON.parse(line);
  return { ...o, start: startTime(o.pid), done: () => child.stdin.end() };
}

describe('close tracker on a real kernel', { skip: rootSkip }, () => {
  let t: CloseTracker;
  before(() => {
    const o = openCloseTracker();
    assert.ok(o.tracker, `close tracker did not load: ${'message' in o ? o.message : ''}`);
    t = o.tracker;
  });
  after(() => t?.close());

  for (const fam of ['4', '6'] as const) {
    test(`IPv${fam}: both ends name the process that closed them, with its start time`, async () => {
      const c = await runChild(fam);
      try {
        const lo = fam === '4' ? '127.0.0.1' : '::1';
        const client = t.lookup(fam === '4' ? 4 : 6, lo, c.client, lo, c.server);
        const server = t.lookup(fam === '4' ? 4 : 6, lo, c.server, lo, c.client);
        for (const h of [client, server]) {
          assert.ok(h, 'no close recorded');
          assert.equal(h.pid, c.pid);
          assert.equal(Math.floor(h.startNs / 1e7), c.start, 'start time in /proc ticks');
          assert.equal(h.comm, 'python3');
          assert.equal(h.uid, 0);
          assert.ok(h.agoNs >= 0 && h.agoNs < 30e9, `ago ${h.agoNs}`);
        }
        // Another 4-tuple: nothing.
        assert.equal(t.lookup(fam === '4' ? 4 : 6, lo, c.server, lo, c.client === 65535 ? 1 : c.client + 1), null);
      } finally {
        c.done();
      }
    });
  }
});
