// The only place that touches process.argv and process.exitCode, and prints fatal errors.
import { hideBin } from 'yargs/helpers';
import { buildCli } from './cli.js';
import { UserError } from './errors.js';
import { realSystem } from './system.js';

const argv = hideBin(process.argv);
const debug = argv.includes('--debug');

function fatal(err: unknown): void {
  if (err instanceof UserError) {
    process.stderr.write(`ctacct: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err.exitCode;
    return;
  }
  const e = err as Error;
  process.stderr.write(`ctacct: ${e?.message?.split('\n')[0] ?? String(err)}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
  process.exitCode = 1;
}

try {
  await buildCli(realSystem()).parseAsync(argv);
} catch (err) {
  fatal(err);
}
