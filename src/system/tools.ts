// Finding external tools (nft, conntrack, getent, iptables-legacy-save…). As root only fixed
// system directories count, and only files owned by root that nobody else can write: a PATH
// entry or a file a user can replace would run that user's code as root.
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const TRUSTED_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

export interface ToolEnv {
  euid: number;
  path: string;
  /** stat of a file: owner uid and mode; throws when missing. */
  stat(path: string): { uid: number; mode: number; isFile: boolean };
  executable(path: string): boolean;
}

export const realToolEnv = (): ToolEnv => ({
  euid: typeof process.geteuid === 'function' ? process.geteuid() : 0,
  path: process.env.PATH ?? '',
  stat(p) {
    const s = statSync(p);
    return { uid: s.uid, mode: s.mode, isFile: s.isFile() };
  },
  executable(p) {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  },
});

/** A file root may run: owned by root, not writable by group or others (after symlinks). */
export function trustedFile(env: ToolEnv, p: string): boolean {
  try {
    const s = env.stat(p);
    return s.isFile && s.uid === 0 && (s.mode & 0o022) === 0 && env.executable(p);
  } catch {
    return false;
  }
}

/** Absolute path of `name`, or null. Root: trusted system directories only; others: PATH, then sbin. */
export function findTool(name: string, env: ToolEnv = realToolEnv()): string | null {
  if (name.includes('/')) return env.euid === 0 && !trustedFile(env, name) ? null : name;
  if (env.euid === 0) {
    for (const d of TRUSTED_DIRS) {
      const p = join(d, name);
      if (trustedFile(env, p)) return p;
    }
    return null;
  }
  const dirs = [...env.path.split(delimiter).filter((d) => d.startsWith('/')), ...SBIN];
  for (const d of dirs) {
    const p = join(d, name);
    if (env.executable(p)) return p;
  }
  return null;
}

/** The process-wide lookup (real euid, PATH and file system). */
export function trustedTool(name: string): string | null {
  return findTool(name);
}
