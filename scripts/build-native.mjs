// Builds the N-API addon with node-gyp against the local Node headers, never a download.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = ['rebuild', '--directory', join(root, 'native')];
// Headers installed with the distribution's Node (e.g. /usr/include/node): use them so a clean HOME builds offline.
const prefix = dirname(dirname(process.execPath));
for (const dir of [process.env.CTACCT_NODEDIR, prefix, '/usr'].filter(Boolean)) {
  if (existsSync(join(dir, 'include', 'node', 'node_api.h'))) {
    args.push(`--nodedir=${dir}`);
    break;
  }
}
// npm puts its bundled node-gyp on PATH for lifecycle scripts; fall back to the one next to npm.
const candidates = ['node-gyp', join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')];
let last;
for (const cmd of candidates) {
  const isJs = cmd.endsWith('.js');
  if (isJs && !existsSync(cmd)) continue;
  const r = spawnSync(isJs ? process.execPath : cmd, isJs ? [cmd, ...args] : args, { stdio: 'inherit' });
  if (r.error && r.error.code === 'ENOENT') { last = r.error; continue; }
  process.exit(r.status ?? 1);
}
console.error(`ctacct: cannot find node-gyp to build the native addon (${last?.message ?? 'not found'})`);
process.exit(1);
