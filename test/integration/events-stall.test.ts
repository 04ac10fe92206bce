// The event path under a stalled JavaScript thread: the reader stops at its queue bound, the
// kernel's buffer overflows into a counted overrun, and process memory stays bounded.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Netns, rootSkip } from '../helpers/netns.js';

const PROBE = fileURLToPath(new URL('../helpers/stall-probe.ts', import.meta.url));
let ns: Netns;

before(async () => {
  if (rootSkip) return;
  ns = await Netns.create('stall');
  await ns.engageConntrack();
});
after(async () => {
  await ns?.destroy();
});

test('a 2.5 s stall of the JS thread during 3,000 new connections: bounded memory, the loss counted', { skip: rootSkip }, async () => {
  // 256 KiB of kernel buffer (~200 events) and 64 KiB of queue to JavaScript.
  const out = await ns.exec(process.execPath, ['--import', 'tsx', PROBE, '18080', '3000', '2500', String(256 << 10), String(64 << 10)]);
  const r = JSON.parse(out.trim().split('\n').pop()!) as {
    before: number; peak: number; after: number; stalledNews: number; news: number; overruns: number; clientExit: number;
    stats: { overruns: number; pauses: number; queuedPeakBytes: number; records: number };
  };
  assert.equal(r.clientExit, 0, 'the client made its 3,000 connections');
  assert.equal(r.stalledNews, 0, 'nothing reached JavaScript during the stall');
  // The reader paused at its bound instead of queueing every event.
  assert.ok(r.stats.pauses >= 1, `reader pauses: ${r.stats.pauses}`);
  assert.ok(r.stats.queuedPeakBytes <= (64 << 10) + 220 * 1024, `queue peak ${r.stats.queuedPeakBytes} B`);
  // The kernel buffer overflowed: counted by the reader and reported to the callback (the resync cue).
  assert.ok(r.stats.overruns >= 1, `overruns: ${r.stats.overruns}`);
  assert.equal(r.overruns, r.stats.overruns);
  assert.ok(r.news < 3000, `events delivered: ${r.news} of 3000 (the rest were lost and counted)`);
  // Memory: the growth over the stall is bounded by the queue, not by the number of events (an
  // unbounded queue grew VmData by ~390 MB here). The bound leaves room for V8's own heap growth
  // (up to ~19 MB seen on a quiet machine).
  assert.ok(r.peak - r.before < 32 * 1024, `VmData ${r.before} → ${r.peak} kB during the stall`);
});
