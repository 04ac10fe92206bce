// A tiny ctacct stand-in for set-up tests: prepares the system, installs the lifecycle handlers,
// prints `ready <report JSON>` and waits — for a signal, or `quit` on stdin (normal end).
// Usage: node --import tsx test/helpers/setup-runner.ts [--no-setup] [--keep-acct] [--state-dir DIR] [--crash]
// --crash: throw an uncaught error right after `ready` (the uncaught-error exit path).
// --throwing-cleanup: a cleanup that throws runs before the set-up undo.
import { realSystem } from '../../src/system.js';
import { realHost } from '../../src/system/detect.js';
import { installSignalHandlers } from '../../src/system/lifecycle.js';
import { prepareSystem } from '../../src/system/setup.js';

const args = process.argv.slice(2);
const stateDir = args.includes('--state-dir') ? args[args.indexOf('--state-dir') + 1] : undefined;
const system = realSystem();
const lc = installSignalHandlers(system);

try {
  const handle = await prepareSystem(
    { setup: !args.includes('--no-setup'), keepAcct: args.includes('--keep-acct'), needConntrack: true },
    {
      host: realHost(system),
      ...(stateDir ? { stateDir } : {}),
      onHandle: (h) => void lc.onShutdown(() => h.undo(), () => h.undoSync()),
    },
  );
  if (args.includes('--throwing-cleanup'))
    // Registered after set-up, so it runs first (newest first): the undo behind it must still run.
    lc.onShutdown(
      () => {
        throw new Error('restoring the terminal failed on purpose');
      },
      () => {
        throw new Error('restoring the terminal failed on purpose (sync)');
      },
    );
  process.stdout.write(`ready ${JSON.stringify(handle.report)}\n`);
  if (args.includes('--crash'))
    setTimeout(() => {
      throw new Error('runner crashed on purpose');
    }, 50);
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let buf = '';
  process.stdin.on('data', (d) => {
    buf += String(d);
    if (buf.includes('quit')) {
      clearInterval(keepAlive);
      void lc.shutdown().then(() => process.stdout.write('done\n'));
      process.stdin.pause();
    }
  });
} catch (e) {
  process.stderr.write(`runner: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
