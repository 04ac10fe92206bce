#!/usr/bin/env node
// Puts TCP/UDP sockets into known states on loopback and holds them until stdin closes or SIGTERM.
// Usage: node tcp-states.mjs '<json plan>'; prints one line `READY {"pid":…,"ports":{…}}` once every socket is in place.
// Plan (all fields optional, counts bounded by the caller):
//   host          address to use (default 127.0.0.1; "::1" for IPv6, "::ffff:127.0.0.1" for v4-mapped)
//   listen        ports to listen on, kept idle (LISTEN)
//   established   connections held open (2 ESTABLISHED sockets each: client + accepted)
//   timeWait      connections the client closes first (client TIME_WAIT, server fully closed)
//   halfClosed    client shuts down its write side, server never closes (client FIN_WAIT2, server CLOSE_WAIT)
//   synSent       connects to `synPort` whose SYNs the caller's nft rule drops (SYN_SENT)
//   synPort       see synSent
//   listenHost    address the server listens on (default: host; "::" for a dual-stack wildcard)
//   udp           [{host, port, connect?: {host, port}}] UDP sockets (wildcard binds allowed)
//   fanout        extra connections for benchmarks (kept ESTABLISHED), opened in batches
import net from 'node:net';
import dgram from 'node:dgram';

const plan = JSON.parse(process.argv[2] ?? '{}');
const host = plan.host ?? '127.0.0.1';
const listenHost = plan.listenHost ?? host;
const keep = [];
/** Ports chosen by the kernel, reported on the READY line. */
const ports = {};
const DEADLINE_MS = plan.deadlineMs ?? 60000;
const deadline = setTimeout(() => {
  process.stderr.write('tcp-states: timed out before reaching every state\n');
  process.exit(3);
}, DEADLINE_MS);

function listen(port, opts = {}) {
  return new Promise((res, rej) => {
    const srv = net.createServer({ allowHalfOpen: true, ...opts });
    srv.on('error', rej);
    srv.listen({ port, host: listenHost, backlog: 4096 }, () => res(srv));
    keep.push(srv);
  });
}

function connect(port) {
  return new Promise((res, rej) => {
    const c = net.connect({ port, host, allowHalfOpen: true });
    c.once('connect', () => res(c));
    c.once('error', rej);
    keep.push(c);
  });
}

/** Resolves when the server has accepted `n` connections. */
function accepted(srv, n, onConn) {
  return new Promise((res) => {
    if (n === 0) return res();
    let seen = 0;
    srv.on('connection', (s) => {
      keep.push(s);
      s.on('error', () => {});
      onConn?.(s);
      if (++seen === n) res();
    });
  });
}

async function main() {
  for (const p of plan.listen ?? []) await listen(p);

  if (plan.established) {
    const srv = await listen(0);
    const port = srv.address().port;
    ports.established = port;
    const got = accepted(srv, plan.established);
    for (let i = 0; i < plan.established; i++) await connect(port);
    await got;
  }

  if (plan.fanout) {
    const srv = await listen(0);
    const port = srv.address().port;
    ports.fanout = port;
    const got = accepted(srv, plan.fanout);
    const batch = 500;
    for (let i = 0; i < plan.fanout; i += batch) {
      const n = Math.min(batch, plan.fanout - i);
      await Promise.all(Array.from({ length: n }, () => connect(port)));
    }
    await got;
  }

  if (plan.timeWait) {
    // Client closes first → client socket ends in TIME_WAIT; server answers with its own FIN at once.
    const srv = await listen(0, { allowHalfOpen: false });
    const port = srv.address().port;
    const closed = [];
    const got = accepted(srv, plan.timeWait, (s) => closed.push(new Promise((r) => s.on('close', r))));
    const clients = [];
    for (let i = 0; i < plan.timeWait; i++) clients.push(await connect(port));
    await got;
    const done = clients.map((c) => new Promise((r) => c.on('close', r)));
    for (const c of clients) c.end();
    await Promise.all([...done, ...closed]);
    srv.close();
  }

  if (plan.halfClosed) {
    // Server never ends its side: client FIN_WAIT2, server CLOSE_WAIT (both held open by us).
    const srv = await listen(0);
    const port = srv.address().port;
    const ended = [];
    const got = accepted(srv, plan.halfClosed, (s) => ended.push(new Promise((r) => s.once('end', r))));
    const clients = [];
    for (let i = 0; i < plan.halfClosed; i++) clients.push(await connect(port));
    await got;
    for (const c of clients) c.end();
    await Promise.all(ended);
    srv.close();
  }

  for (let i = 0; i < (plan.synSent ?? 0); i++) {
    const c = net.connect({ port: plan.synPort, host });
    c.on('error', () => {});
    keep.push(c);
  }

  for (const u of plan.udp ?? []) {
    const type = u.host.includes(':') ? 'udp6' : 'udp4';
    const s = dgram.createSocket({ type, ipv6Only: Boolean(u.ipv6Only) });
    await new Promise((res) => s.bind(u.port ?? 0, u.host, res));
    if (u.connect) await new Promise((res) => s.connect(u.connect.port, u.connect.host, res));
    keep.push(s);
  }

  clearTimeout(deadline);
  process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, ports })}\n`);
}

main().catch((e) => {
  process.stderr.write(`tcp-states: ${e.message}\n`);
  process.exit(2);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
