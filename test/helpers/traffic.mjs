#!/usr/bin/env node
// Traffic of known size for integration tests, one process per role so attribution can be checked
// by pid. Only ever pointed at loopback or at namespaces the test created.
//   tcp-server PORT [--host ADDR] [--reply N] [--count K] [--stay]   accept K connections (default: forever), read all, send N back; --stay: keep running after the K-th
//   tcp-client HOST PORT SEND [--repeat K] [--linger-ms MS] [--hold-ms MS]
//   udp-server PORT [--host ADDR] [--reply N]               receive datagrams, answer each with N bytes
//   udp-client HOST PORT SIZE [--count K] [--from-port P]
//   udp-spray HOST PORT COUNT                               one datagram to each of COUNT ports: COUNT new flows at once
// Prints one JSON line when ready ({"ready":true,"pid":…}) and one with totals when done.
import net from 'node:net';
import dgram from 'node:dgram';

const [, , mode, ...rest] = process.argv;
const opt = (name, dflt) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : dflt;
};
const pos = rest.filter((a, i) => !a.startsWith('--') && !(i > 0 && rest[i - 1].startsWith('--')));
const out = (o) => process.stdout.write(`${JSON.stringify({ pid: process.pid, ...o })}\n`);
const deadline = setTimeout(() => {
  out({ error: 'timeout' });
  process.exit(3);
}, Number(opt('timeout-ms', 60000)));
deadline.unref();

if (mode === 'tcp-server') {
  const port = Number(pos[0]);
  const reply = Number(opt('reply', 0));
  let left = Number(opt('count', Infinity));
  let received = 0;
  let conns = 0;
  const srv = net.createServer({ pauseOnConnect: opt('accept-delay-ms') !== undefined }, (s) => {
    conns++;
    const start = () => {
      s.resume();
      s.on('data', (d) => (received += d.length));
      s.on('end', () => {
        if (reply > 0) s.end(Buffer.alloc(reply, 0x61));
        else s.end();
      });
      s.on('error', () => {});
      s.on('close', () => {
        if (--left === 0) {
          out({ done: true, received, conns });
          // --stay: keep listening (a server does not exit after its last connection) until SIGTERM.
          if (rest.includes('--stay')) return;
          srv.close();
          process.exit(0);
        }
      });
    };
    start();
  });
  srv.listen({ port, host: opt('host', '::'), ipv6Only: false, backlog: 4096 }, () => out({ ready: true, port }));
  process.on('SIGTERM', () => {
    out({ done: true, received, conns });
    process.exit(0);
  });
} else if (mode === 'tcp-client') {
  const [host, portS, sendS] = pos;
  const port = Number(portS);
  const send = Number(sendS);
  const repeat = Number(opt('repeat', 1));
  const holdMs = Number(opt('hold-ms', 0));
  let received = 0;
  let done = 0;
  out({ ready: true });
  const one = () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => {
        const finish = () => s.end();
        s.write(Buffer.alloc(send, 0x62), () => (holdMs ? setTimeout(finish, holdMs) : finish()));
      });
      s.on('data', (d) => (received += d.length));
      s.on('error', reject);
      s.on('close', () => resolve());
    });
  for (let i = 0; i < repeat; i++) await one();
  done = repeat;
  out({ done: true, sent: send * done, received, conns: done });
  process.exit(0);
} else if (mode === 'udp-server') {
  const port = Number(pos[0]);
  const reply = Number(opt('reply', 0));
  const sock = dgram.createSocket({ type: opt('family', '4') === '6' ? 'udp6' : 'udp4' });
  let received = 0;
  let datagrams = 0;
  sock.on('message', (m, rinfo) => {
    received += m.length;
    datagrams++;
    if (reply > 0) sock.send(Buffer.alloc(reply, 0x63), rinfo.port, rinfo.address);
  });
  sock.bind(port, opt('host', undefined), () => out({ ready: true, port }));
  process.on('SIGTERM', () => {
    out({ done: true, received, datagrams });
    process.exit(0);
  });
} else if (mode === 'udp-client') {
  const [host, portS, sizeS] = pos;
  const count = Number(opt('count', 1));
  const fam = host.includes(':') ? 'udp6' : 'udp4';
  const sock = dgram.createSocket(fam);
  let received = 0;
  sock.on('message', (m) => (received += m.length));
  const fromPort = opt('from-port');
  await new Promise((r) => sock.bind(fromPort ? Number(fromPort) : 0, r));
  out({ ready: true, localPort: sock.address().port });
  for (let i = 0; i < count; i++) await new Promise((r) => sock.send(Buffer.alloc(Number(sizeS), 0x64), Number(portS), host, r));
  await new Promise((r) => setTimeout(r, Number(opt('wait-ms', 200))));
  out({ done: true, sent: Number(sizeS) * count, received, datagrams: count });
  sock.close();
  process.exit(0);
} else if (mode === 'udp-spray') {
  const [host, portS, countS] = pos;
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise((r) => sock.bind(0, r));
  out({ ready: true });
  const count = Math.min(Number(countS), 20000);
  let left = count;
  await new Promise((resolve) => {
    for (let i = 0; i < count; i++) sock.send(Buffer.from('x'), Number(portS) + i, host, () => --left === 0 && resolve());
  });
  out({ done: true, datagrams: count });
  sock.close();
  process.exit(0);
} else {
  process.stderr.write(`traffic.mjs: unknown mode ${mode}\n`);
  process.exit(2);
}
