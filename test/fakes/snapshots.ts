// Top snapshots for view tests: realistic figures for a busy web/db host (long command lines,
// a socket shared after fork, idle rows, forwarded and unknown traffic). Rows come sorted by
// total rate, as the engine sends them.
import { blankRow, compareRows, type GroupBy, type TopRow, type TopSnapshot } from '../../src/core/model.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const TIME = '2025-03-14T09:26:53.000Z';

export function row(p: Partial<TopRow> & { key: string }): TopRow {
  return {
    ...blankRow(p.key),
    ...p,
  };
}

/** A process row; this refresh's bytes follow from the rates over a 1 s interval. */
function proc(
  pid: number,
  comm: string,
  cmdline: string | null,
  uid: number,
  user: string,
  sent_bps: number,
  recv_bps: number,
  sent_total: number,
  recv_total: number,
  flows: number,
  new_flows: number,
  extra: Partial<TopRow> = {},
): TopRow {
  return row({
    key: String(pid),
    pid,
    comm,
    cmdline,
    uid,
    user,
    sent_bps,
    recv_bps,
    sent_bytes: Math.round(sent_bps),
    recv_bytes: Math.round(recv_bps),
    sent_total,
    recv_total,
    flows,
    new_flows,
    closed_flows: Math.max(0, new_flows - 2),
    ...extra,
  });
}

export function processRows(): TopRow[] {
  return [
    proc(30411, 'curl', 'curl -sS -o /var/cache/apt/archives/partial/linux-image-6.12.0-amd64_6.12.9-1_amd64.deb https://deb.debian.org/debian/pool/main/l/linux-signed-amd64/linux-image-6.12.0-amd64_6.12.9-1_amd64.deb', 1000, 'deploy', 60 * KiB, 11.4 * MiB, 1.9 * MiB, 87.3 * MiB, 1, 1),
    proc(2816, 'nginx', 'nginx: master process /usr/sbin/nginx -g daemon on; master_process on;', 0, 'root', 4.2 * MiB, 128 * KiB, 8.1 * GiB, 412 * MiB, 214, 37, { shared: true, cpu_percent: 12.5, rss_bytes: 48 * MiB }),
    proc(7702, 'node', '/usr/bin/node --max-old-space-size=4096 /srv/app/dist/server.js --port 8080 --config /etc/app/production.json', 1001, 'app', 2.3 * MiB, 1.1 * MiB, 5.42 * GiB, 2.71 * GiB, 58, 12, { cpu_percent: 41.2, rss_bytes: 612 * MiB }),
    proc(1544, 'postgres', 'postgres: 15/main: walsender replicator 10.20.0.7(51234) streaming 3/A2000148', 114, 'postgres', 900 * KiB, 12 * KiB, 31.7 * GiB, 96 * MiB, 3, 0, { cpu_percent: 3.1, rss_bytes: 210 * MiB }),
    proc(912, 'sshd', 'sshd: alice [priv]', 0, 'root', 3.2 * KiB, 420, 5.6 * MiB, 880 * KiB, 2, 0, { cpu_percent: 0, rss_bytes: 9 * MiB }),
    proc(540, 'systemd-resolve', '/usr/lib/systemd/systemd-resolved', 990, 'systemd-resolve', 1.5 * KiB, 2.25 * KiB, 1.2 * MiB, 2.9 * MiB, 1, 3),
    proc(1320, 'dnsmasq', '/usr/sbin/dnsmasq -x /run/dnsmasq/dnsmasq.pid -u dnsmasq -7 /etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new --local-service', 107, 'dnsmasq', 250, 190.5, 2.1 * MiB, 1.4 * MiB, 6, 4),
    // Idle: traffic earlier, none this refresh (rows keep every key seen since start).
    proc(15020, 'rsync', 'rsync --server --sender -vlogDtpre.iLsfxCIvu . /var/backups', 34, 'backup', 0, 0, 2.1 * GiB, 1.3 * MiB, 0, 0),
    proc(688, 'chronyd', '/usr/sbin/chronyd -F 1', 105, '_chrony', 0, 0, 1824, 1824, 0, 0),
    // A process whose cmdline is unreadable (exited, or a kernel thread): comm only.
    proc(41877, 'apt-get', null, 0, 'root', 0, 0, 412, 0, 0, 0),
  ].map((r) => ({ ...r, sent_total: Math.round(r.sent_total), recv_total: Math.round(r.recv_total) }));
}

function connRows(): TopRow[] {
  const c = (
    proto: string,
    local: string,
    remote: string,
    state: string | null,
    pid: number | null,
    comm: string | null,
    sent_bps: number,
    recv_bps: number,
    sent_total: number,
    recv_total: number,
    extra: Partial<TopRow> = {},
  ) =>
    row({
      key: `${proto} ${local} ${remote}`,
      proto,
      local,
      remote,
      state,
      pid,
      comm,
      sent_bps,
      recv_bps,
      sent_bytes: sent_bps,
      recv_bytes: recv_bps,
      sent_total,
      recv_total,
      flows: state === 'TIME_WAIT' ? 0 : 1,
      ...extra,
    });
  return [
    c('tcp', '10.20.0.5:51514', '151.101.2.132:443', 'ESTABLISHED', 30411, 'curl', 60 * KiB, 11.4 * MiB, 1992294, 91540275),
    c('tcp', '10.20.0.5:443', '203.0.113.45:51234', 'ESTABLISHED', 2816, 'nginx', 2.9 * MiB, 64 * KiB, 5_301_000_000, 210_000_000, { shared: true }),
    c('tcp', '[2001:db8:85a3::8a2e:370:7334]:443', '[2001:db8:4860:4860:0:1234:5678:9abc]:60412', 'ESTABLISHED', 2816, 'nginx', 1.3 * MiB, 64 * KiB, 2_900_000_000, 200_000_000, { shared: true }),
    c('tcp', '127.0.0.1:5432', '127.0.0.1:40022', 'ESTABLISHED', 1544, 'postgres', 900 * KiB, 12 * KiB, 34_000_000_000, 100_000_000),
    c('udp', '10.20.0.5:53', '10.20.0.9:41003', null, 1320, 'dnsmasq', 250, 190.5, 2_200_000, 1_470_000),
    c('tcp', '10.20.0.5:22', '198.51.100.23:50122', 'TIME_WAIT', 912, 'sshd', 0, 0, 5_870_000, 901_000),
    c('tcp', '10.20.0.5:38812', '192.0.2.80:80', 'CLOSE', null, null, 0, 0, 18944, 5120),
  ];
}

function remoteRows(): TopRow[] {
  const r = (remote: string, sent_bps: number, recv_bps: number, sent_total: number, recv_total: number, flows: number, new_flows: number) =>
    row({ key: remote, remote, sent_bps, recv_bps, sent_bytes: sent_bps, recv_bytes: recv_bps, sent_total, recv_total, flows, new_flows });
  return [
    r('151.101.2.132', 60 * KiB, 11.4 * MiB, 1992294, 91540275, 1, 1),
    r('203.0.113.45', 2.9 * MiB, 64 * KiB, 5_301_000_000, 210_000_000, 130, 22),
    r('2001:db8:4860:4860:0:1234:5678:9abc', 1.3 * MiB, 64 * KiB, 2_900_000_000, 200_000_000, 84, 15),
    r('127.0.0.1', 900 * KiB, 12 * KiB, 34_000_000_000, 100_000_000, 3, 0),
    r('10.20.0.9', 250, 190.5, 2_200_000, 1_470_000, 6, 4),
    r('198.51.100.23', 0, 0, 5_870_000, 901_000, 0, 0),
  ];
}

function portRows(): TopRow[] {
  const p = (proto: string, port: number | null, sent_bps: number, recv_bps: number, sent_total: number, recv_total: number, flows: number, new_flows: number) =>
    row({ key: port === null ? proto : `${proto}/${port}`, proto, port, sent_bps, recv_bps, sent_total, recv_total, flows, new_flows });
  return [
    p('tcp', 443, 4.26 * MiB, 11.5 * MiB, 8_203_000_000, 501_500_000, 215, 38),
    p('tcp', 8080, 2.3 * MiB, 1.1 * MiB, 5_819_000_000, 2_909_000_000, 58, 12),
    p('tcp', 5432, 900 * KiB, 12 * KiB, 34_000_000_000, 100_000_000, 3, 0),
    p('udp', 53, 1.75 * KiB, 2.44 * KiB, 3_400_000, 4_400_000, 7, 7),
    p('tcp', 22, 3.2 * KiB, 420, 5_870_000, 901_000, 2, 0),
    p('udp', 123, 0, 0, 1824, 1824, 0, 0),
    p('icmp', null, 0, 0, 840, 840, 0, 0),
  ];
}

function userRows(): TopRow[] {
  const u = (uid: number, user: string, sent_bps: number, recv_bps: number, sent_total: number, recv_total: number, flows: number, new_flows: number) =>
    row({ key: String(uid), uid, user, sent_bps, recv_bps, sent_total, recv_total, flows, new_flows });
  return [
    u(1000, 'deploy', 60 * KiB, 11.4 * MiB, 1992294, 91540275, 1, 1),
    u(0, 'root', 4.2 * MiB, 128.4 * KiB, 8_703_000_000, 433_000_000, 216, 37),
    u(1001, 'app', 2.3 * MiB, 1.1 * MiB, 5_819_000_000, 2_909_000_000, 58, 12),
    u(114, 'postgres', 900 * KiB, 12 * KiB, 34_000_000_000, 100_000_000, 3, 0),
    u(990, 'systemd-resolve', 1.5 * KiB, 2.25 * KiB, 1_258_291, 3_040_870, 1, 3),
    u(105, '_chrony', 0, 0, 1824, 1824, 0, 0),
  ];
}

function containerRows(): TopRow[] {
  const c = (key: string, container: TopRow['container'], netns: number | null, sent_bps: number, recv_bps: number, sent_total: number, recv_total: number, flows: number, new_flows: number) =>
    row({ key, container, netns, sent_bps, recv_bps, sent_total, recv_total, flows, new_flows });
  const id = (h: string) => h.repeat(64 / h.length);
  return [
    c(`docker/${id('3f1a')}`, { runtime: 'docker', id: id('3f1a'), name: 'web' }, 4026532301, 2.9 * MiB, 64 * KiB, 5_301_000_000, 210_000_000, 130, 22),
    c(`containerd/${id('9c')}`, { runtime: 'containerd', id: id('9c'), name: null, pod: '0b7d2a51-5e0c-4d4e-9a43-2f6a1c9e7b10' }, 4026532455, 1.3 * MiB, 64 * KiB, 2_900_000_000, 200_000_000, 84, 15),
    c('host', null, null, 960 * KiB, 11.4 * MiB, 34_001_992_294, 191_540_275, 4, 1),
    c(`podman/${id('e7')}`, { runtime: 'podman', id: id('e7'), name: null }, 4026532519, 0, 0, 5_870_000, 901_000, 0, 0),
  ];
}

function unitRows(): TopRow[] {
  const u = (unit: string, sent_bps: number, recv_bps: number, sent_total: number, recv_total: number, flows: number, new_flows: number) =>
    row({ key: unit, unit, sent_bps, recv_bps, sent_total, recv_total, flows, new_flows });
  return [
    u('nginx.service', 4.2 * MiB, 128.4 * KiB, 8_201_000_000, 410_000_000, 214, 37),
    u('session-3.scope', 60 * KiB, 11.4 * MiB, 1992294, 91540275, 1, 1),
    u('postgresql@15-main.service', 900 * KiB, 12 * KiB, 34_000_000_000, 100_000_000, 3, 0),
    u('docker-3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a3f1a.scope', 2.3 * MiB, 1.1 * MiB, 5_819_000_000, 2_909_000_000, 58, 12),
    u('-', 0, 0, 1824, 1824, 0, 0),
  ];
}

const ROWS: Record<GroupBy, () => TopRow[]> = {
  process: processRows,
  conn: connRows,
  remote: remoteRows,
  port: portRows,
  user: userRows,
  container: containerRows,
  unit: unitRows,
};

export function snapshot(groupBy: GroupBy = 'process', over: Partial<TopSnapshot> = {}): TopSnapshot {
  return {
    time: TIME,
    interval_s: 1,
    group_by: groupBy,
    rows: ROWS[groupBy]().sort(compareRows('total')),
    unattributed: {
      forwarded: { sent_total: 3_650_722_201, recv_total: 536_870_912, flows: 12 },
      unknown: { sent_total: 18944, recv_total: 5120, flows: 1 },
    },
    health: {
      flows_tracked: 1342,
      events: 58211,
      lost_events: 0,
      resyncs: 0,
      flows_without_counters: 17,
      changes: ['net.netfilter.nf_conntrack_acct=1 (restored on exit)'],
    },
    self: { cpu_percent: 0.8, rss_bytes: 45_718_528 },
    ...over,
  };
}

/** After an event overrun: lost events, resyncs, malformed messages. */
export function troubledSnapshot(): TopSnapshot {
  const s = snapshot('process');
  return {
    ...s,
    health: { ...s.health, lost_events: 1377, resyncs: 3, malformed: 2, changes: [] },
  };
}

/** `n` process rows with distinct, decreasing rates: for scrolling. */
export function manyRowsSnapshot(n: number): TopSnapshot {
  const rows = Array.from({ length: n }, (_, i) =>
    proc(10_000 + i, `worker-${i}`, `/opt/svc/bin/worker --id ${i}`, 1001, 'app', (n - i) * 10 * KiB, (n - i) * 5 * KiB, (n - i) * 10 * MiB, (n - i) * 5 * MiB, 2, 0),
  );
  return snapshot('process', { rows });
}

/** A snapshot with nothing attributed yet. */
export function emptySnapshot(): TopSnapshot {
  return snapshot('process', {
    rows: [],
    unattributed: {
      forwarded: { sent_total: 0, recv_total: 0, flows: 0 },
      unknown: { sent_total: 0, recv_total: 0, flows: 0 },
    },
  });
}
