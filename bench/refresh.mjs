// Refresh benchmark helper, run inside the benchmark namespace by bench/run.ts:
//   node bench/refresh.mjs REPS → one JSON line with the cost of TopEngine refreshes (dump +
//   attribution + aggregation + JSON render, as `ctacct top --json` does minus pidusage) on the
//   table as it is, and of the raw addon dump (kernel dump alone) in the same process.
// Uses the built dist/ (what bin/ctacct.js runs).
import { getAddon } from '../dist/netlink/addon.js';
import { TopEngine } from '../dist/core/engine.js';
import { realSystem } from '../dist/system.js';
import { renderJsonLine } from '../dist/views/json.js';
import { interfaceAddresses, makeOwnerResolver } from '../dist/wiring.js';

const reps = Number(process.argv[2] ?? 3);
const system = realSystem();
const addon = getAddon();

function rawDump() {
  return new Promise((resolve, reject) => {
    const h = addon.dump({}, (err, _buf, _count, done) => {
      if (err) reject(err);
      else if (done) {
        setImmediate(() => addon.close(h));
        resolve();
      }
    });
  });
}

async function timed(fn) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall_ms: wall, cpu_ms: (c.user + c.system) / 1000, user_ms: c.user / 1000, sys_ms: c.system / 1000, r };
}

const engine = new TopEngine(
  {
    source: system.conntrack(),
    owners: makeOwnerResolver(system),
    localAddresses: interfaceAddresses,
    monotonic: () => system.monotonic(),
    now: () => system.now(),
  },
  {},
);
const view = { groupBy: 'process', sort: 'total' };
const start = await timed(() => engine.start());
const refreshes = [];
let rows = 0;
let tracked = 0;
for (let i = 0; i <= reps; i++) {
  const t = await timed(async () => {
    const snap = await engine.refresh(view);
    return { line: renderJsonLine(snap), snap };
  });
  rows = t.r.snap.rows.length;
  tracked = t.r.snap.health.flows_tracked;
  refreshes.push({ wall_ms: t.wall_ms, cpu_ms: t.cpu_ms, user_ms: t.user_ms, sys_ms: t.sys_ms });
  await new Promise((r) => setTimeout(r, 200));
}
engine.close();
await rawDump();
const raw = [];
for (let i = 0; i < reps; i++) {
  const t = await timed(rawDump);
  raw.push({ wall_ms: t.wall_ms, cpu_ms: t.cpu_ms, user_ms: t.user_ms, sys_ms: t.sys_ms });
}
const { r: _s, ...startCost } = start;
process.stdout.write(`${JSON.stringify({ start: startCost, first: refreshes[0], refreshes: refreshes.slice(1), raw, rows, tracked })}\n`);
process.exit(0);
