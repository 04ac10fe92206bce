// `npm test`: builds (the e2e tests spawn bin/ctacct.js), then runs every test file with node's
// test runner. Root-only tests skip loudly when not root; CI runs as root so they run there.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTestDeps } from './test-deps.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const layers = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'integration', 'e2e'];

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

// As root on Debian/Ubuntu, install the system tools the tests use (scripts/test-deps.mjs).
if (layers.some((l) => l !== 'unit')) ensureTestDeps();

// Build dist/ (the e2e tests spawn it), then typecheck the tests and benches too.
for (const project of [join(root, 'tsconfig.json'), join(root, 'tsconfig.test.json')]) {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { stdio: 'inherit' });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
}

if (process.getuid?.() !== 0) {
  process.stderr.write('\n*** NOT ROOT: integration and end-to-end tests that need root will be SKIPPED (each says so). CI runs as root. ***\n\n');
}
const list = layers.flatMap((l) => files(join(root, 'test', l)));
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...list], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
