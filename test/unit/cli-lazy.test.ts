// The CLI lists every command without loading it; each command's own module agrees with the
// name and description listed; --version prints the version and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { lazyCommands } from '../../src/commands/index.js';
import type { System } from '../../src/system.js';

const sys = {} as System; // factories only build option tables; nothing is called on the system

test('cli: each lazily listed command matches its module (name and description)', async () => {
  assert.deepEqual(
    lazyCommands.map((c) => c.command),
    [['top', '$0'], 'states', 'flows', 'doctor', 'serve', 'record', 'collect', 'report'],
  );
  for (const c of lazyCommands) {
    const real = (await c.load())(sys);
    assert.deepEqual(real.command, c.command);
    assert.equal(real.describe, c.describe, `describe of ${String(c.command)}`);
  }
});

test('cli: --version prints the package version alone (fast path before yargs)', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const main = new URL('../../src/main.ts', import.meta.url).pathname;
  const out = execFileSync(process.execPath, ['--import', 'tsx', main, '--version'], { encoding: 'utf8' });
  assert.equal(out, `${pkg.version}\n`);
});
