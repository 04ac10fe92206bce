// Dump benchmark helper, run inside the benchmark namespace by bench/run.ts:
//   node bench/dump.mjs REPS  → one JSON line: per rep, wall and CPU (user/sys, whole process) of
//   (raw) the addon's dump with batches ignored — the kernel's dump plus the copy into buffers — and
//   (records) KernelConntrackSource + dumpAll: the same dump decoded into an array of JS records.
// Uses the built dist/ (what bin/ctacct.js runs). One warm-up of each first (addon load, JIT).
import { getAddon } from '../dist/netlink/addon.js';
import { KernelConntrackSource, dumpAll } from '../dist/netlink/source.js';

const reps = Number(process.argv[2] ?? 3);
const addon = getAddon();
const source = new KernelConntrackSource();

function rawDump() {
  return new Promise((resolve, reject) => {
    let n = 0;
    // Close the finished handle: without it, the next dump of a 100k table never completed here.
    const h = addon.dump({}, (err, _buf, count, done) => {
      n += count > 0 ? count : 0;
      if (err) reject(err);
      else if (done) {
        setImmediate(() => addon.close(h));
        resolve(n);
      }
    });
  });
}

async function timed(fn) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const records = await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall_ms: wall, user_ms: c.user / 1000, sys_ms: c.system / 1000, records };
}

const out = { raw: [], records: [] };
await rawDump();
await dumpAll(source);
for (let i = 0; i < reps; i++) {
  out.raw.push(await timed(rawDump));
  out.records.push(await timed(async () => (await dumpAll(source)).flows.length));
  globalThis.gc?.();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
