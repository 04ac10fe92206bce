// The only place that touches process.argv and process.exitCode, and prints fatal errors.
// `ctacct --version` answers before yargs and the command modules are loaded (they cost ~3× a bare
// `node -e 0`); everything else builds the CLI, which loads only the module of the command run.
import { readFileSync } from 'node:fs';
import { EXIT, UserError } from './errors.js';
import { EXIT_PIPE, guardOutput, isEpipe } from './system/lifecycle.js';

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
  if (e?.name === 'YError') {
    // A usage error yargs raised (or re-wrapped from an option's coerce) outside its fail handler,
    // as it does with lazily loaded command builders: still one line in our words, exit 2.
    process.stderr.write(`ctacct: ${String(e.message).replace(/\s*\n\s*/g, ' ').trim()} (see \`ctacct --help\`)\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    process.exitCode = EXIT.usage;
    return;
  }
  process.stderr.write(`ctacct: ${e?.message?.split('\n')[0] ?? String(err)}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
  process.exitCode = 1;
}

/**
 * A one-shot command with plain arguments runs without yargs (commands/fast.ts): false when the
 * vector is not one the fast path knows, and yargs then parses it as always.
 */
async function runFast(args: readonly string[]): Promise<boolean> {
  const name = args[0];
  if (name !== 'states' && name !== 'flows') return false; // one-shot commands run from scripts
  const { lazyCommands } = await import('./commands/index.js');
  const entry = lazyCommands.find((c) => c.command === name);
  if (!entry) return false;
  const [{ fastParse, recordOptions }, make, { realSystem }] = await Promise.all([import('./commands/fast.js'), entry.load(), import('./system.js')]);
  const command = make(realSystem());
  const table = recordOptions(command.builder);
  const parsed = table && fastParse(name, table, args);
  if (!parsed) return false;
  await command.handler(parsed as never);
  return true;
}

if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`${pkg.version}\n`);
} else {
  // A closed output (`| head`) ends any command quietly with 141, after the registered cleanup;
  // commands that change the system also install the signal handlers (withSystemSetup).
  guardOutput();
  try {
    if (!(await runFast(argv))) {
      const [{ buildCli }, { realSystem }] = await Promise.all([import('./cli.js'), import('./system.js')]);
      await buildCli(realSystem()).parseAsync(argv);
    }
  } catch (err) {
    fatal(err);
  }
}
