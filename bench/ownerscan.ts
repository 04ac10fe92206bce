// The owner search, native (native/ct_owners.c through the addon) vs the JavaScript fallback, on
// this machine's /proc: CPU time of the calling thread per call, and what each call read.
//
//   node --import tsx bench/ownerscan.ts [--rounds 20]      (root reads every fd table)
//
// Cases: a full scan of every pid in our network namespace (the owner cache refresh), the same
// over every namespace, a search for one inode held by the
// lowest-pid process that has a socket (newest-first order reads almost everything), and the
// candidate search the attribution path makes per miss (one known process's table). Rounds
// alternate native and JavaScript so a change of machine load hits both alike; medians are printed.
import { readdirSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { findSocketOwners, findSocketOwnersJs, ownNetns, type FindResult } from '../src/proc/find.js';
import { readFamily, readFamilyJs } from '../src/proc/reader.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg('rounds', 20);
const ROOT = '/proc';
const netns = ownNetns(ROOT);

/** CPU µs (user + system) of this process for one call, and its result. */
function cpuOf<T>(f: () => T): { us: number; r: T } {
  const t = process.cpuUsage();
  const r = f();
  const d = process.cpuUsage(t);
  return { us: d.user + d.system, r };
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The lowest pid holding a socket, and one of its socket inodes. */
function lowestSocket(): { pid: number; inode: number } | null {
  const pids = readdirSync(ROOT)
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    try {
      for (const fd of readdirSync(`${ROOT}/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${ROOT}/${pid}/fd/${fd}`));
        if (m) return { pid, inode: Number(m[1]) };
      }
    } catch {
      /* gone or not ours */
    }
  }
  return null;
}

interface Case {
  name: string;
  native: () => FindResult | unknown;
  js: () => FindResult | unknown;
  repeat: number; // calls per round (small cases are timed over many calls)
}

async function main(): Promise<void> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const low = lowestSocket();
  const cases: Case[] = [
    { name: 'full scan (every pid, want nothing)', native: () => findSocketOwners(ROOT, new Set(), undefined, Infinity, netns), js: () => findSocketOwnersJs(ROOT, new Set(), undefined, Infinity, netns), repeat: 1 },
    { name: 'full scan, every namespace', native: () => findSocketOwners(ROOT, new Set(), undefined, Infinity, null), js: () => findSocketOwnersJs(ROOT, new Set(), undefined, Infinity, null), repeat: 1 },
    ...(low
      ? [
          {
            name: `search for one inode of pid ${low.pid} (newest first)`,
            native: () => findSocketOwners(ROOT, new Set([low.inode]), undefined, Infinity, netns),
            js: () => findSocketOwnersJs(ROOT, new Set([low.inode]), undefined, Infinity, netns),
            repeat: 1,
          },
        ]
      : []),
    { name: 'candidate search: this process (one table)', native: () => findSocketOwners(ROOT, new Set([1]), [process.pid]), js: () => findSocketOwnersJs(ROOT, new Set([1]), [process.pid]), repeat: 200 },
    { name: 'family of this process', native: () => readFamily(ROOT, process.pid), js: () => readFamilyJs(ROOT, process.pid), repeat: 200 },
  ];
  const pids = readdirSync(ROOT).filter((n) => /^\d+$/.test(n)).length;
  const full = findSocketOwners(ROOT, new Set(), undefined, Infinity, netns);
  const all = findSocketOwners(ROOT, new Set(), undefined, Infinity, null);
  console.log(`/proc: ${pids} pids; in our namespace ${full.scanned.size} fd tables, ${full.fds} fds, ${full.owners.size} socket inodes; in all ${all.scanned.size} tables, ${all.fds} fds, ${all.owners.size} sockets; ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${ROUNDS} rounds`);
  console.log('| case | native µs CPU | JavaScript µs CPU | JS / native |');
  console.log('|---|---:|---:|---:|');
  for (const c of cases) {
    const n: number[] = [];
    const j: number[] = [];
    for (let i = 0; i < 3; i++) (c.native(), c.js()); // warm-up (JIT, dentry cache)
    for (let i = 0; i < ROUNDS; i++) {
      const a = cpuOf(() => {
        for (let k = 0; k < c.repeat; k++) c.native();
      });
      const b = cpuOf(() => {
        for (let k = 0; k < c.repeat; k++) c.js();
      });
      n.push(a.us / c.repeat);
      j.push(b.us / c.repeat);
    }
    const mn = median(n);
    const mj = median(j);
    console.log(`| ${c.name} | ${mn.toFixed(1)} | ${mj.toFixed(1)} | ${(mj / mn).toFixed(1)}× |`);
  }
  console.log(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  server.close();
}

await main();
