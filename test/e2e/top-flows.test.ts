// End to end: the built `ctacct` (bin/ctacct.js → dist/) run as a user would, inside a throwaway
// network namespace with known traffic: `flows --json`, `top --json/--trace/--by remote`, the live
// screen under tmux (keys, q restores the terminal), and the namespace left as found.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { hasCommand, Netns, rootSkip } from '../helpers/netns.js';
import { BIN, moreSnapshots, runCtacct, startCtacct, stopTop } from '../helpers/ctacct.js';
import { ROOT, startTraffic, type JsonLines } from '../helpers/procs.js';

const execFileP = promisify(execFile);
const CONTRACT_ROW = ['key', 'pid', 'comm', 'cmdline', 'uid', 'user', 'remote', 'port', 'proto', 'sent_bytes', 'recv_bytes', 'sent_bps', 'recv_bps', 'sent_total', 'recv_total', 'flows', 'new_flows', 'closed_flows'];
const CONTRACT_FLOW = ['id', 'family', 'proto', 'state', 'direction', 'orig', 'reply', 'local', 'remote', 'sent_bytes', 'recv_bytes', 'pid', 'comm', 'uid', 'mark', 'zone', 'age_s'];

describe('ctacct CLI end to end', { skip: rootSkip }, () => {
  let ns: Netns;
  let server: JsonLines;
  let client: JsonLines;
  before(async () => {
    ns = await Netns.create('e2e');
    await ns.engageConntrack();
    await ns.sysctl('net.netfilter.nf_conntrack_acct', '1');
    server = await startTraffic(ns, ['tcp-server', '9100', '--reply', '50000']);
    // A long connection that stays open while the tests look at it.
    client = await startTraffic(ns, ['tcp-client', '127.0.0.1', '9100', '120000', '--hold-ms', '60000']);
    await new Promise((r) => setTimeout(r, 300));
  });
  after(async () => {
    await ns?.destroy();
  });

  test('flows --json: the documented shape, owners and exact counters', async () => {
    const r = await runCtacct(ns, ['flows', '--json', '--port', '9100']);
    assert.equal(r.code, 0, r.stderr);
    const flows = JSON.parse(r.stdout);
    assert.equal(flows.length, 1);
    const f = flows[0];
    for (const k of CONTRACT_FLOW) assert.ok(k in f, `field ${k}`);
    assert.equal(f.family, 'ipv4');
    assert.equal(f.proto, 'tcp');
    assert.equal(f.state, 'ESTABLISHED');
    assert.equal(f.direction, 'local');
    assert.equal(f.orig.dport, 9100);
    assert.equal(f.pid, client.lines[0].pid, 'the client owns the orig end');
    assert.equal(f.peer.pid, server.lines[0].pid, 'the server owns the reply end');
    assert.equal(f.sent_bytes, f.orig.bytes);
    assert.equal(f.recv_bytes, f.reply.bytes);
    const ct = await ns.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '9100']);
    const bytes = [...ct.matchAll(/bytes=(\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual([f.orig.bytes, f.reply.bytes], bytes);
    assert.ok(f.orig.bytes >= 120000);
  });

  test('flows (human table) names the owner and counts', async () => {
    const r = await runCtacct(ns, ['flows', '--port', '9100']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^PROTO\s+STATE\s+DIR/m);
    assert.match(r.stdout, new RegExp(`${client.lines[0].pid}/node`));
    assert.match(r.stdout, /^1 flow$/m);
  });

  test('top --json --count 2: two lines of the contract, rows per process, the namespace left as found', async () => {
    const rulesBefore = await ns.nftRuleset();
    const r = await runCtacct(ns, ['top', '--json', '--count', '2', '--interval', '0.3']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    for (const s of lines) {
      assert.deepEqual(Object.keys(s).slice(0, 7), ['time', 'interval_s', 'group_by', 'rows', 'unattributed', 'health', 'self']);
      assert.equal(s.group_by, 'process');
      assert.deepEqual(Object.keys(s.health).slice(0, 5), ['flows_tracked', 'events', 'lost_events', 'resyncs', 'flows_without_counters']);
      assert.ok(s.self.rss_bytes > 0);
      for (const row of s.rows) {
        assert.deepEqual(Object.keys(row).slice(0, CONTRACT_ROW.length), CONTRACT_ROW);
        // Whole bytes per second, under a unit-named field; *_bps kept as the same-valued alias.
        assert.equal(row.sent_bytes_per_s, row.sent_bps);
        assert.equal(row.recv_bytes_per_s, row.recv_bps);
        assert.ok(Number.isInteger(row.sent_bytes_per_s) && Number.isInteger(row.recv_bytes_per_s), JSON.stringify(row));
      }
    }
    const last = lines[1];
    // Both processes own a long flow that existed before ctacct started: no new bytes, but rows.
    assert.ok(last.rows.some((x: any) => x.pid === server.lines[0].pid && x.flows === 1));
    assert.ok(last.rows.some((x: any) => x.pid === client.lines[0].pid && x.flows === 1));
    assert.equal(await ns.nftRuleset(), rulesBefore);
  });

  test('top --trace: nethogs-style lines on stdout, the summary on stderr', async () => {
    const r = await runCtacct(ns, ['top', '--trace', '--count', '2', '--interval', '0.3']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.match(/^Refreshing:$/gm)?.length, 2);
    assert.match(r.stdout, new RegExp(`^node/${server.lines[0].pid}/0\\t[0-9.e+-]+\\t[0-9.e+-]+$`, 'm'));
    // The summary goes to stderr: stdout stays pure nethogs trace lines for parsers.
    assert.match(r.stderr, /^=== Summary ===$/m);
    assert.doesNotMatch(r.stdout, /Summary/);
    for (const l of r.stdout.split('\n')) assert.match(l, /^$|^Refreshing:$|^[^\t]+\t[0-9.e+-]+\t[0-9.e+-]+$/);
  });

  test('top --by remote --port P: rows keyed by remote address, no pid', async () => {
    const top = startCtacct(ns, ['top', '--json', '--interval', '0.3', '--by', 'remote', '--port', '9100']);
    await moreSnapshots(top, 1);
    const c2 = await startTraffic(ns, ['tcp-client', '127.0.0.1', '9100', '30000']);
    await c2.next((o) => o.done);
    await moreSnapshots(top, 2);
    const s = await stopTop(top);
    assert.equal(s.group_by, 'remote');
    const row = s.rows.find((x: any) => x.key === '127.0.0.1');
    assert.ok(row, JSON.stringify(s.rows));
    assert.equal(row.remote, '127.0.0.1');
    assert.equal(row.pid, null);
    // Both ends of the new loopback connection talk to 127.0.0.1: 30,000 payload bytes each way seen.
    assert.ok(row.sent_total >= 30000 && row.recv_total >= 30000);
  });

  test('bad arguments: one line, exit 2', async () => {
    const r = await runCtacct(ns, ['top', '--sort', 'nope']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /^ctacct: /);
  });

  test('live view under a terminal (tmux): header, rows, keys, q restores the screen and prints the summary', { skip: hasCommand('tmux') ? false : 'SKIPPED: tmux is not installed (.ci/run installs it)' }, async () => {
    const session = `ctt${process.pid}`;
    const tmux = (...args: string[]) => execFileP('tmux', args).then((r) => r.stdout);
    const screen = () => tmux('capture-pane', '-p', '-t', session);
    const waitFor = async (re: RegExp, ms = 10000) => {
      const end = Date.now() + ms;
      for (;;) {
        const text = await screen();
        if (re.test(text)) return text;
        if (Date.now() > end) throw new Error(`screen never matched ${re}:\n${text}`);
        await new Promise((r) => setTimeout(r, 150));
      }
    };
    await tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '30', `cd ${ROOT} && ip netns exec ${ns.name} env NO_COLOR=1 ${process.execPath} ${BIN} top --interval 0.5; echo EXIT=$?; sleep 30`);
    try {
      const first = await waitFor(/PID\s+USER\s+PROGRAM/);
      assert.match(first, /q quit/);
      await waitFor(new RegExp(`\\b${server.lines[0].pid}\\b.*node`));
      await tmux('send-keys', '-t', session, 'b');
      await waitFor(/LOCAL\s+REMOTE|REMOTE/);
      await tmux('send-keys', '-t', session, 'h');
      await waitFor(/help/i);
      await tmux('send-keys', '-t', session, 'q');
      const after = await waitFor(/EXIT=0/);
      assert.match(after, /=== Summary ===/);
      assert.doesNotMatch(after, /q quit/, 'the alternate screen is gone');
    } finally {
      await tmux('kill-session', '-t', session).catch(() => undefined);
    }
  });

  test('live view under tmux: / filters the rows, Enter opens a process\'s connections, Esc goes back', { skip: hasCommand('tmux') ? false : 'SKIPPED: tmux is not installed (.ci/run installs it)' }, async () => {
    // A connection of our own to the server, held open while the screen is driven. A loopback
    // connection is listed once, under its answering end: the server's drill-down shows it.
    const mine = await startTraffic(ns, ['tcp-client', '127.0.0.1', '9100', '5000', '--hold-ms', '30000']);
    const pid = String(server.lines[0].pid);
    const session = `ctt${process.pid}d`;
    const tmux = (...args: string[]) => execFileP('tmux', args).then((r) => r.stdout);
    const screen = () => tmux('capture-pane', '-p', '-t', session);
    const waitFor = async (ok: (text: string) => boolean, what: string, ms = 10000) => {
      const end = Date.now() + ms;
      for (;;) {
        const text = await screen();
        if (ok(text)) return text;
        if (Date.now() > end) throw new Error(`screen never showed ${what}:\n${text}`);
        await new Promise((r) => setTimeout(r, 150));
      }
    };
    const rowsOf = (text: string) => text.split('\n').filter((l) => /^\s+\d+\+?\s/.test(l));
    await tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '30', `cd ${ROOT} && ip netns exec ${ns.name} env NO_COLOR=1 ${process.execPath} ${BIN} top --interval 0.5; echo EXIT=$?; sleep 30`);
    try {
      await waitFor((t) => t.includes(' node ') && new RegExp(`^\\s+${pid}\\s`, 'm').test(t), `the row of pid ${pid}`);
      // Several node processes are on screen (server, clients): the filter keeps only ours.
      await tmux('send-keys', '-t', session, '/');
      await waitFor((t) => /^\/▏/m.test(t), 'the filter prompt');
      await tmux('send-keys', '-t', session, '-l', pid);
      await tmux('send-keys', '-t', session, 'Enter');
      const filtered = await waitFor((t) => t.includes(`filter "${pid}": 1 of`) && rowsOf(t).length === 1, 'one filtered row');
      assert.match(rowsOf(filtered)[0]!, new RegExp(`^\\s+${pid}\\s+root\\s+node `));
      // Enter opens the selected (only) row: its connection, with state and remote, and its full command line.
      await tmux('send-keys', '-t', session, 'Enter');
      const drill = await waitFor((t) => t.includes(`process ${pid} node › connections`) && /ESTABLISHED/.test(t), 'the drill-down');
      assert.match(drill, /PROTO\s+LOCAL\s+REMOTE\s+STATE\s+PID\/PROGRAM/);
      assert.match(drill, new RegExp(`^tcp\\s+127\\.0\\.0\\.1:9100\\s+127\\.0\\.0\\.1:\\d+\\s+ESTABLISHED\\s+${pid}/node`, 'm'));
      assert.match(drill, /^▸ .*traffic.* tcp-server 9100 --reply 50000/m);
      await tmux('send-keys', '-t', session, 'Escape');
      await waitFor((t) => t.includes('by process') && !t.includes('› connections') && /PID\s+USER\s+PROGRAM/.test(t), 'back to the process table');
      await tmux('send-keys', '-t', session, 'q');
      await waitFor((t) => t.includes('EXIT=0'), 'exit');
    } finally {
      await tmux('kill-session', '-t', session).catch(() => undefined);
      mine.child.kill('SIGTERM');
    }
  });
});
