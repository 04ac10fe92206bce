export const TOOLS: Record<string, [string, string]>;
export function planTestDeps(env: { isRoot: boolean; has: (cmd: string) => boolean; osRelease: string | null; skip?: boolean }): {
  action: 'none' | 'install' | 'report';
  packages: string[];
  lines: string[];
};
export function ensureTestDeps(): boolean;
