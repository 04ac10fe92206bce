// `npm run prebuild` (also run by `npm pack`/`npm publish` through prepack): builds the addon from
// source and copies it to prebuilds/<platform>-<arch>/ctacct.<libc>.node, the binary the package
// ships so that installing ctacct needs no compiler. Build one per platform you publish for.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
const libc = process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
const out = join(root, 'prebuilds', `${process.platform}-${process.arch}`, `ctacct.${libc}.node`);
mkdirSync(dirname(out), { recursive: true });
copyFileSync(join(root, 'native', 'build', 'Release', 'ctacct.node'), out);
console.log(`ctacct: prebuilt addon written to ${out}`);
