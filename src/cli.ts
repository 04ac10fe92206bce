// Builds a fresh yargs CLI from a System; tests drive it with exitProcess(false) and parseAsync.
import yargs, { type Argv } from 'yargs';
import { createRequire } from 'node:module';
import { commands } from './commands/index.js';
import { ownWords } from './commands/options.js';
import { EXIT, UserError } from './errors.js';
import type { System } from './system.js';

const require = createRequire(import.meta.url);
export const VERSION: string = (require('../package.json') as { version: string }).version;

export function buildCli(system: System): Argv {
  let cli = yargs()
    .scriptName('ctacct')
    .usage(
      'ctacct — which process uses the network, how much, and with whom, from the kernel\'s conntrack counters (no packet capture).\n\nUsage: $0 <command> [options]',
    )
    .version(VERSION)
    .alias('version', 'V')
    .option('debug', { type: 'boolean', default: false, describe: 'Print stack traces on errors', global: true })
    .strict()
    .recommendCommands()
    .demandCommand(0)
    .wrap(Math.min(system.stdout.columns(), 110))
    .epilogue(
      'Conntrack views need root or CAP_NET_ADMIN. `ctacct doctor` checks the kernel, privileges and settings and says how to fix each.\nDocs: README.md, docs/.',
    )
    .fail((msg, err) => {
      // Errors from our handlers pass through; yargs' own (and coerce errors it re-wraps as YError)
      // are usage errors, told on one line.
      if (err && !(err.name === 'YError')) throw err;
      const text = ownWords((msg ?? err?.message ?? 'invalid arguments').replace(/\s*\n\s*/g, ' ').trim());
      throw new UserError(`${text} (see \`ctacct --help\`)`, EXIT.usage, 'ERR_USAGE');
    })
    .help()
    .alias('help', 'h');
  for (const make of commands) cli = cli.command(make(system));
  skipHelpCache(cli);
  return cli;
}

/**
 * Before a subcommand's handler runs, yargs renders that command's whole help text and caches it
 * for a later `showHelp()` (usage.cacheHelpMessage). ctacct never shows help after a handler
 * started (usage errors go through .fail above), and rendering it measures every cell's display
 * width — about a quarter of a one-shot command's CPU after node's own start-up. Without the
 * cache, yargs would render help on demand, so `--help` is unchanged.
 */
function skipHelpCache(cli: Argv): void {
  const internal = (cli as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }).getInternalMethods?.();
  const usage = internal?.getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
}
