// Every command, in the order --help lists them. A command's module (and everything it imports:
// the addon loader, accounting, prom-client…) is loaded only when that command runs or its --help
// is asked for; the name and one-line description needed for `ctacct --help` live here.
// yargs awaits a builder that returns a promise.
import type { Argv, CommandModule } from 'yargs';
import type { System } from '../system.js';

export type CommandFactory = (system: System) => CommandModule<any, any>;

interface LazyCommand {
  command: string | readonly string[];
  describe: string;
  load: () => Promise<CommandFactory>;
}

export const lazyCommands: LazyCommand[] = [
  {
    command: ['top', '$0'],
    describe: 'Live traffic per process, connection, remote host, port or user (the default; needs CAP_NET_ADMIN)',
    load: async () => (await import('./top.js')).topCommand,
  },
  {
    command: 'states',
    describe: 'TCP state counts, like `netstat -ant | awk` / `ss -s` (works without root)',
    load: async () => (await import('./states.js')).statesCommand,
  },
  {
    command: 'flows',
    describe: 'One snapshot of tracked flows with counters and owner (needs CAP_NET_ADMIN)',
    load: async () => (await import('./flows.js')).flowsCommand,
  },
  {
    command: 'doctor',
    describe: 'Check kernel, privileges and settings; say how to fix each (changes nothing)',
    load: async () => (await import('./doctor.js')).doctorCommand,
  },
  {
    command: 'serve',
    describe: 'Prometheus exporter: per-process bytes and flows at /metrics (listens on 127.0.0.1:9477; needs CAP_NET_ADMIN)',
    load: async () => (await import('./serve.js')).serveCommand,
  },
  {
    command: 'record',
    describe: 'Flow log: one JSON line per finished connection, with its process and bytes (needs CAP_NET_ADMIN)',
    load: async () => (await import('./record.js')).recordCommand,
  },
  {
    command: 'collect',
    describe: 'Keep per-process usage history: per-minute roll-ups in a SQLite database (default /var/lib/ctacct/usage.db; needs CAP_NET_ADMIN)',
    load: async () => (await import('./collect.js')).collectCommand,
  },
  {
    command: 'report',
    describe: 'Usage history: who sent and received how much over a period (reads the `collect` database, no root needed)',
    load: async () => (await import('./report.js')).reportCommand,
  },
];

/** A command whose builder and handler import its module on first use. */
export function lazyCommand(c: LazyCommand): CommandFactory {
  return (system) => {
    let real: Promise<CommandModule<any, any>> | undefined;
    const module = () => (real ??= c.load().then((make) => make(system)));
    return {
      command: c.command as string | string[],
      describe: c.describe,
      builder: async (y: Argv<any>) => {
        const m = await module();
        return typeof m.builder === 'function' ? m.builder(y) : m.builder ? y.options(m.builder) : y;
      },
      handler: async (args) => (await module()).handler(args),
    };
  };
}

export const commands: CommandFactory[] = lazyCommands.map(lazyCommand);
