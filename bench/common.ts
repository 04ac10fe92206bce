// Helpers shared by the stand-alone benches (collect.ts, serve.ts) and the memory-over-time bench:
// command-line numbers, /proc readings of one process, a throwaway namespace, a paced client.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** `--name N` from argv, or d. */
export function numArg(name: string, d: number, argv: string[] = process.argv): number {
  const i = argv.indexOf(`--${name}`);
  return i > 0 ? Number(argv[i + 1]) : d;
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
}
export const CLK_TCK = clockTicks();

/** Fields of /proc/PID/stat after the command name (state is [0], ppid [1], utime [11], stime [12]). */
export function statFields(pid: number): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime + stime of the process itself, in seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / CLK_TCK : NaN;
}

/** The kB fields of /proc/PID/status (VmRSS, RssAnon, RssFile, VmHWM, VmData, …), in bytes. */
export function statusBytes(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const m of readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(\w+):\s+(\d+) kB$/gm)) out[m[1]!] = Number(m[2]) * 1024;
  } catch {
    /* gone */
  }
  return out;
}

export function rssBytes(pid: number): number {
  return statusBytes(pid).VmRSS ?? 0;
}

/** A fresh network namespace with lo up; run(cmd, args) runs in it; remove() kills what is left and deletes it. */
export function throwawayNamespace(name: string): { name: string; run: (cmd: string, args: string[]) => string; remove: () => void } {
  execFileSync('ip', ['netns', 'add', name]);
  const run = (cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', name, cmd, ...args]).toString();
  run('ip', ['link', 'set', 'lo', 'up']);
  return {
    name,
    run,
    remove: () => {
      try {
        execFileSync('sh', ['-c', `for p in $(ip netns pids ${name}); do kill -9 $p; done; ip netns del ${name}`]);
      } catch {
        /* already gone */
      }
    },
  };
}

// A paced client for `node -e`: RATE connections/s to 127.0.0.1:7400 in 10 ms slices, each sends
// 200 bytes and closes; args RATE SECONDS; prints {"made":…,"ok":…} a second after the end.
export const PACED_CLIENT = `const net=require('net');const rate=+process.argv[1],dur=+process.argv[2];let made=0,ok=0;const t0=Date.now();
const iv=setInterval(()=>{const due=Math.floor((Date.now()-t0)/1000*rate);while(made<due){made++;const s=net.connect(7400,'127.0.0.1',()=>s.end(Buffer.alloc(200)));s.on('error',()=>{});s.on('data',()=>{});s.on('close',()=>ok++)}
if(Date.now()-t0>=dur*1000){clearInterval(iv);setTimeout(()=>{console.log(JSON.stringify({made,ok}));process.exit(0)},1000)}},10);`;

/** The test helpers' TCP server on 127.0.0.1:7400 in namespace ns, gone by itself after timeoutS. */
export function loopbackServer(ns: string, root: string, timeoutS: number): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, `${root}test/helpers/traffic.mjs`, 'tcp-server', '7400', '--host', '127.0.0.1', '--timeout-ms', String(timeoutS * 1000)], { stdio: 'ignore' });
}

/** PACED_CLIENT in namespace ns; done resolves to its summary once it exits. */
export function pacedClient(ns: string, rate: number, seconds: number): { child: ChildProcess; done: Promise<{ made?: number; ok?: number }> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', PACED_CLIENT, String(rate), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  const done = new Promise<{ made?: number; ok?: number }>((r) => child.on('exit', () => r(JSON.parse(out || '{}') as { made?: number; ok?: number })));
  return { child, done };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
