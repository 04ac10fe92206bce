// Inside a test namespace: subscribes to conntrack events with a small kernel buffer and a small
// queue to JavaScript, listens on 127.0.0.1:PORT, starts a client child that makes N connections,
// and busy-loops the JavaScript thread for STALL ms while they happen. Prints one JSON line:
// VmData before/after, the reader's stats, the overruns the callback saw, and how many NEW events
// arrived after the stall (the kernel's buffer held them, or they were lost and counted).
//   node --import tsx stall-probe.ts PORT N STALL_MS RCVBUF QUEUE_MAX
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { KernelConntrackSource } from '../../src/netlink/source.js';

const [port, n, stallMs, rcvbuf, queueMax] = process.argv.slice(2).map(Number) as [number, number, number, number, number];
const vmDataKB = () => Number(/^VmData:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);

let news = 0;
let overruns = 0;
const sub = new KernelConntrackSource().subscribe(
  { new: true, destroy: false, rcvbuf, rcvbufMax: rcvbuf, queueMax },
  {
    records: (b) => (news += b.filter((r) => r.kind === 'new').length),
    overrun: () => overruns++,
    error: (e) => {
      process.stdout.write(`${JSON.stringify({ error: e.code })}\n`);
      process.exit(1);
    },
  },
);
const server = createServer((s) => s.destroy());
await new Promise<void>((res) => server.listen({ port, host: '127.0.0.1', backlog: 8192 }, res));
const before = vmDataKB();
const client = spawn(
  process.execPath,
  ['-e', `const net=require('net');let left=${n},open=0;function one(){if(left<=0)return;left--;open++;const s=net.connect(${port},'127.0.0.1');s.on('error',()=>{});s.on('connect',()=>s.destroy());s.on('close',()=>{open--;if(left>0)one();else if(!open)process.exit(0)});}for(let i=0;i<64;i++)one();setTimeout(()=>process.exit(2),20000);`],
  { stdio: 'ignore' },
);
const clientDone = new Promise<number>((res) => client.on('exit', (c) => res(c ?? -1)));
// Stall the JavaScript thread: no batch is taken from the reader while this runs.
const until = Date.now() + stallMs;
let peak = before;
// Sample every 20 ms: reading /proc in a tight loop allocates enough to make V8 grow its own heap,
// which is not what this measures.
let sampleAt = 0;
while (Date.now() < until) {
  for (let i = 0; i < 1e5; i++);
  if (Date.now() >= sampleAt) {
    sampleAt = Date.now() + 20;
    peak = Math.max(peak, vmDataKB());
  }
}
const stalledNews = news;
const clientExit = await clientDone;
// Let the reader catch up (bounded).
const t0 = Date.now();
let last = -1;
while (Date.now() - t0 < 5000) {
  await new Promise((r) => setTimeout(r, 200));
  if (news === last) break;
  last = news;
}
const stats = sub.stats();
sub.close();
server.close();
process.stdout.write(`${JSON.stringify({ before, peak, after: vmDataKB(), stalledNews, news, overruns, clientExit, stats })}\n`);
process.exit(0);
