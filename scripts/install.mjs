// The package's install script. When the shipped prebuilt addon for this platform loads, there is
// nothing to do (no compiler is needed, none is called); otherwise, or with
// `npm_config_build_from_source=true` / CTACCT_BUILD_FROM_SOURCE=1, it builds the addon from source.
// ctacct does not depend on this script having run: the loader picks the prebuild at run time too
// (npm 11 does not run a dependency's install script unless it is allowed).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fromSource = process.env.npm_config_build_from_source === 'true' || process.env.CTACCT_BUILD_FROM_SOURCE === '1';
const libc = process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
const prebuild = join(root, 'prebuilds', `${process.platform}-${process.arch}`, `ctacct.${libc}.node`);

if (!fromSource && existsSync(prebuild)) {
  try {
    createRequire(import.meta.url)(prebuild);
    console.log(`ctacct: using the prebuilt addon for ${process.platform}-${process.arch} (${libc}); no build needed`);
    process.exit(0);
  } catch (e) {
    console.log(`ctacct: the prebuilt addon does not load here (${String(e.message).split('\n')[0]}); building from source`);
  }
} else if (!fromSource) {
  console.log(`ctacct: no prebuilt addon for ${process.platform}-${process.arch} (${libc}); building from source`);
}
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit' });
process.exit(r.status ?? 1);
