// The only place that touches process.argv and process.exitCode, and prints fatal errors.
// `ctacct --version` answers before yargs and the command modules are loaded (they cost ~3× a bare
// `node -e 0`); everything else builds the CLI, which loads only the module of the command run.
import { readFileSync } from 'node:fs';
import { UserError } from './errors.js';
import { EXIT_PIPE, installSignalHandlers, isEpipe } from './system/lifecycle.js';

const argv = process.argv.slice(2);
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

if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`${pkg.version}\n`);
} else {
  try {
    const [{ buildCli }, { realSystem }] = await Promise.all([import('./cli.js'), import('./system.js')]);
    const system = realSystem();
    // Every exit path (signals, a closed output, uncaught errors) runs the registered cleanup.
    installSignalHandlers(system);
    await buildCli(system).parseAsync(argv);
  } catch (err) {
    fatal(err);
  }
}
