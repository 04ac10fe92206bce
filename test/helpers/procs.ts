// Spawning helper processes inside namespaces and reading their JSON-line output.
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';

export const TRAFFIC = fileURLToPath(new URL('./traffic.mjs', import.meta.url));
export const PROBE = fileURLToPath(new URL('./ct-probe.ts', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Collects JSON lines from a child's stdout; `next(pred)` waits for a matching line. */
export class JsonLines {
  readonly lines: any[] = [];
  private waiters: { pred: (o: any) => boolean; resolve: (o: any) => void; reject: (e: Error) => void }[] = [];
  private buf = '';
  private stderr = '';
  private exited = false;

  constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.trim()) continue;
        let o;
        try {
          o = JSON.parse(line);
        } catch {
          continue;
        }
        this.lines.push(o);
        this.waiters = this.waiters.filter((w) => (w.pred(o) ? (w.resolve(o), false) : true));
      }
    });
    child.stderr?.on('data', (d) => (this.stderr += d));
    child.on('exit', (code) => {
      this.exited = true;
      for (const w of this.waiters) w.reject(new Error(`process exited (${code}) before the expected line; stderr: ${this.stderr.slice(-500)}`));
      this.waiters = [];
    });
  }

  next(pred: (o: any) => boolean, timeoutMs = 20000): Promise<any> {
    const found = this.lines.find(pred);
    if (found) return Promise.resolve(found);
    if (this.exited) return Promise.reject(new Error(`process already exited; stderr: ${this.stderr.slice(-500)}`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for a line; stderr: ${this.stderr.slice(-500)}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (o) => {
          clearTimeout(t);
          resolve(o);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
    });
  }

  get stderrText(): string {
    return this.stderr;
  }
}

/** Starts `traffic.mjs MODE ARGS` in the namespace and waits for its ready line. */
export async function startTraffic(ns: Netns, args: string[]): Promise<JsonLines> {
  const child = ns.spawn(process.execPath, [TRAFFIC, ...args]);
  const j = new JsonLines(child);
  await j.next((o) => o.ready || o.error);
  return j;
}

/** Runs `traffic.mjs` to completion and returns its final line. */
export async function runTraffic(ns: Netns, args: string[]): Promise<any> {
  const j = await startTraffic(ns, args);
  return j.next((o) => o.done || o.error, 60000);
}

export function startProbe(ns: Netns, args: string[]): JsonLines {
  return new JsonLines(ns.spawn(process.execPath, ['--import', 'tsx', PROBE, ...args], { cwd: ROOT }));
}

export async function probeDump(ns: Netns, filter?: object): Promise<{ flows: any[]; stats: any }> {
  const out = await ns.exec(process.execPath, ['--import', 'tsx', PROBE, 'dump', ...(filter ? ['--filter', JSON.stringify(filter)] : [])]);
  return JSON.parse(out);
}
