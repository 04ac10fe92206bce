// The only place that touches process.argv and process.exitCode, and prints fatal errors.
import { hideBin } from 'yargs/helpers';
import { buildCli } from './cli.js';
import { UserError } from './errors.js';
import { realSystem } from './system.js';
import { EXIT_PIPE, guardOutput, isEpipe } from './system/lifecycle.js';

const argv = hideBin(process.argv);
const debug = argv.includes('--debug');

function fatal(err: unknown): void {
  if (isEpipe(err)) {
    // The reader of our output went away (`| head`): quiet, like a tool killed by SIGPIPE.
    process.exitCode = EXIT_PIPE;
    return;
  }
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

const system = realSystem();
// A closed output (`| head`) ends any command quietly with 141, after the registered cleanup;
// commands that change the system also install the signal handlers (withSystemSetup).
guardOutput();
try {
  await buildCli(system).parseAsync(argv);
} catch (err) {
  fatal(err);
}
