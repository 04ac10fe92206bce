// SocketIndex answers for a flow end only when a kernel lookup could return nothing else (the end's
// own socket, the one listener or unconnected socket that can take it, or none), and leaves the
// rest (reuseport groups, device-bound sockets, unknown IPV6_V6ONLY, shared 4-tuples) to a lookup.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FlowEnd } from '../../src/core/flow.js';
import { NO_SOCKET, SocketIndex } from '../../src/core/sockindex.js';
import type { SocketEntry } from '../../src/proc/parse.js';

const V6ONLY = 2;
const KNOWN = 4;
const DEV = 1;

function sock(o: Partial<SocketEntry> & Pick<SocketEntry, 'localAddr' | 'localPort'>): SocketEntry {
  const family = o.localAddr.includes(':') ? 6 : 4;
  return { proto: 'tcp', family, remoteAddr: family === 4 ? '0.0.0.0' : '::', remotePort: 0, state: 'LISTEN', stateNum: 10, uid: 0, inode: 1, txQueue: 0, rxQueue: 0, diagFlags: family === 6 ? KNOWN : 0, ...o } as SocketEntry;
}
const reply = (localAddr: string, localPort: number, remoteAddr = '10.0.0.9', remotePort = 40000): FlowEnd => ({ side: 'reply', localAddr, localPort, remoteAddr, remotePort });

test('the end own socket, by exact 4-tuple; a 4-tuple two sockets share is left to a lookup', () => {
  const est = sock({ localAddr: '10.0.0.1', localPort: 80, remoteAddr: '10.0.0.9', remotePort: 40000, state: 'ESTABLISHED', stateNum: 1, inode: 7, uid: 33 });
  const idx = new SocketIndex([est, sock({ localAddr: '0.0.0.0', localPort: 80, inode: 5 })]);
  assert.deepEqual(idx.find(4, 6, reply('10.0.0.1', 80)), { inode: 7, uid: 33, state: 1 });
  const dup = new SocketIndex([est, { ...est, inode: 8 }]);
  assert.equal(dup.find(4, 6, reply('10.0.0.1', 80)), null);
  // An IPv4 connection on a dual-stack socket, under its IPv4 form.
  const mapped = new SocketIndex([sock({ localAddr: '::ffff:10.0.0.1', localPort: 80, remoteAddr: '::ffff:10.0.0.9', remotePort: 40000, stateNum: 1, inode: 9 })]);
  assert.equal(mapped.find(4, 6, reply('10.0.0.1', 80))!.inode, 9);
});

test('no socket of its own: the one listener that can take the end, or none', () => {
  const idx = new SocketIndex([sock({ localAddr: '0.0.0.0', localPort: 80, inode: 5 }), sock({ localAddr: '127.0.0.1', localPort: 81, inode: 6 })]);
  assert.deepEqual(idx.find(4, 6, reply('10.0.0.1', 80)), { inode: 5, uid: 0, state: 10 });
  assert.equal(idx.find(4, 6, reply('10.0.0.1', 81)), NO_SOCKET); // bound elsewhere: the kernel finds none
  assert.equal(idx.find(4, 6, reply('10.0.0.1', 82)), NO_SOCKET);
  assert.equal(idx.find(6, 6, reply('fd00::1', 80)), NO_SOCKET); // an IPv4 socket takes no IPv6
  assert.equal(idx.find(4, 17, reply('10.0.0.1', 80)), NO_SOCKET); // another protocol
  assert.equal(idx.find(4, 1, { side: 'reply', localAddr: '10.0.0.1', localPort: null, remoteAddr: '10.0.0.9', remotePort: null }), null);
});

test('two sockets that could take the end (reuseport group, address and wildcard) go to a lookup', () => {
  const group = new SocketIndex([sock({ localAddr: '0.0.0.0', localPort: 80, inode: 5 }), sock({ localAddr: '0.0.0.0', localPort: 80, inode: 6 })]);
  assert.equal(group.find(4, 6, reply('10.0.0.1', 80)), null);
  const both = new SocketIndex([sock({ localAddr: '10.0.0.1', localPort: 80, inode: 5 }), sock({ localAddr: '0.0.0.0', localPort: 80, inode: 6 })]);
  assert.equal(both.find(4, 6, reply('10.0.0.1', 80)), null);
  // The other address's listener cannot take 10.0.0.2: the wildcard is the only one.
  assert.equal(both.find(4, 6, reply('10.0.0.2', 80))!.inode, 6);
});

test('IPv6 sockets and IPv4 ends: by IPV6_V6ONLY when the kernel said it, else a lookup', () => {
  const dual = new SocketIndex([sock({ localAddr: '::', localPort: 80, inode: 5, diagFlags: KNOWN })]);
  assert.equal(dual.find(4, 6, reply('10.0.0.1', 80))!.inode, 5);
  assert.equal(dual.find(6, 6, reply('fd00::1', 80, 'fd00::9'))!.inode, 5);
  const only = new SocketIndex([sock({ localAddr: '::', localPort: 80, inode: 5, diagFlags: KNOWN | V6ONLY }), sock({ localAddr: '0.0.0.0', localPort: 80, inode: 6 })]);
  assert.equal(only.find(4, 6, reply('10.0.0.1', 80))!.inode, 6);
  assert.equal(only.find(6, 6, reply('fd00::1', 80, 'fd00::9'))!.inode, 5);
  const unknown = new SocketIndex([sock({ localAddr: '::', localPort: 80, inode: 5, diagFlags: 0 })]);
  assert.equal(unknown.find(4, 6, reply('10.0.0.1', 80)), null);
  const mappedListener = new SocketIndex([sock({ localAddr: '::ffff:10.0.0.1', localPort: 80, inode: 5, diagFlags: KNOWN })]);
  assert.equal(mappedListener.find(4, 6, reply('10.0.0.1', 80))!.inode, 5);
  assert.equal(mappedListener.find(4, 6, reply('10.0.0.2', 80)), NO_SOCKET);
});

test('device-bound sockets and entries not from sock_diag go to a lookup', () => {
  assert.equal(new SocketIndex([sock({ localAddr: '0.0.0.0', localPort: 80, diagFlags: DEV })]).find(4, 6, reply('10.0.0.1', 80)), null);
  assert.equal(new SocketIndex([sock({ localAddr: '0.0.0.0', localPort: 80, diagFlags: undefined })]).find(4, 6, reply('10.0.0.1', 80)), null);
  // A device-bound socket that cannot take the address anyway changes nothing.
  assert.equal(new SocketIndex([sock({ localAddr: '127.0.0.1', localPort: 80, diagFlags: DEV })]).find(4, 6, reply('10.0.0.1', 80)), NO_SOCKET);
});

test('UDP: unconnected sockets take the end; connected ones only their own 4-tuple', () => {
  const u = (o: Partial<SocketEntry> & Pick<SocketEntry, 'localAddr' | 'localPort'>) => sock({ proto: 'udp', state: 'UNCONN', stateNum: 7, ...o });
  const idx = new SocketIndex([u({ localAddr: '0.0.0.0', localPort: 53, inode: 5 }), u({ localAddr: '10.0.0.1', localPort: 5000, remoteAddr: '10.0.0.7', remotePort: 53, state: 'ESTABLISHED', stateNum: 1, inode: 6 })]);
  assert.equal(idx.find(4, 17, reply('10.0.0.1', 53))!.inode, 5);
  assert.equal(idx.find(4, 17, { side: 'orig', localAddr: '10.0.0.1', localPort: 5000, remoteAddr: '10.0.0.7', remotePort: 53 })!.inode, 6);
  assert.equal(idx.find(4, 17, { side: 'orig', localAddr: '10.0.0.1', localPort: 5000, remoteAddr: '10.0.0.8', remotePort: 53 }), NO_SOCKET);
  // TCP sockets that are bound but not listening are never returned by a lookup.
  assert.equal(new SocketIndex([sock({ localAddr: '0.0.0.0', localPort: 80, state: 'CLOSE', stateNum: 7 })]).find(4, 6, reply('10.0.0.1', 80)), NO_SOCKET);
});

test('usesPort: a port no TCP/UDP socket uses needs no end object (find says NO_SOCKET)', () => {
  const idx = new SocketIndex([sock({ localAddr: '0.0.0.0', localPort: 80 }), sock({ proto: 'udp', localAddr: '0.0.0.0', localPort: 53, stateNum: 7 })]);
  assert.equal(idx.usesPort(6, 80), true);
  assert.equal(idx.usesPort(17, 80), false);
  assert.equal(idx.usesPort(17, 53), true);
  assert.equal(idx.find(4, 6, reply('10.0.0.1', 81)), NO_SOCKET);
});
