// Preloaded into a ctacct process by the memory-over-time bench (`node --import THIS bin/ctacct.js …`):
// appends process.memoryUsage() and V8's malloced memory to $CTB_MEMPROBE every $CTB_MEMPROBE_MS
// (10 s), so RSS growth can be split into JavaScript heap, external buffers and native memory.
// One unref'd timer and one small append: nothing the command does changes.
import { appendFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';

const file = process.env.CTB_MEMPROBE;
if (file) {
  const write = () => {
    try {
      const h = getHeapStatistics();
      appendFileSync(file, `${JSON.stringify({ at: Date.now(), ...process.memoryUsage(), malloced: h.malloced_memory })}\n`);
    } catch {
      /* the bench reads what is there */
    }
  };
  write();
  setInterval(write, Number(process.env.CTB_MEMPROBE_MS) || 10_000).unref();
}
