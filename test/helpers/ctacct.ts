// Spawning the built CLI (bin/ctacct.js) inside a test namespace.
import { existsSync } from 'node:fs';
import { JsonLines, ROOT } from './procs.js';
import type { Netns } from './netns.js';

export const BIN = `${ROOT}bin/ctacct.js`;

export function assertBuilt(): void {
  if (!existsSync(`${ROOT}dist/main.js`)) throw new Error('dist/ is missing: run `npm run build` (npm test does it)');
}

/** Starts `ctacct ARGS` in the namespace; JSON lines of stdout are collected. */
export function startCtacct(ns: Netns, args: string[]): JsonLines {
  assertBuilt();
  return new JsonLines(ns.spawn(process.execPath, [BIN, ...args], { cwd: ROOT }));
}

/** Runs `ctacct ARGS` to completion: exit code, stdout, stderr. */
export async function runCtacct(ns: Netns, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  assertBuilt();
  const child = ns.spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  return { code, stdout, stderr };
}

/** Stops a `top --json` run with SIGTERM and returns its last snapshot. */
export async function stopTop(top: JsonLines): Promise<any> {
  const exited = new Promise<number | null>((res) => top.child.on('exit', (c) => res(c)));
  top.child.kill('SIGTERM');
  await exited;
  const snaps = top.lines.filter((l) => l.rows);
  if (!snaps.length) throw new Error(`no snapshot; stderr: ${top.stderrText}`);
  return snaps[snaps.length - 1];
}

/** Waits until `top --json` has printed `n` more snapshots. */
export function moreSnapshots(top: JsonLines, n: number, timeoutMs = 20000): Promise<any> {
  const target = top.lines.filter((l) => l.rows).length + n;
  return top.next(() => top.lines.filter((l) => l.rows).length >= target, timeoutMs);
}
