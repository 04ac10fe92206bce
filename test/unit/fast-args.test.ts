// The fast start-up path for one-shot commands (src/commands/fast.ts) yields the very object yargs
// hands the command's handler, for every plain argument vector it accepts, and sends everything
// else (help, errors, unknown or doubtful input) to yargs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCli } from '../../src/cli.js';
import { fastParse, recordOptions } from '../../src/commands/fast.js';
import { lazyCommands } from '../../src/commands/index.js';
import type { System } from '../../src/system.js';

const term = { write: () => {}, isTTY: false, columns: () => 80, rows: () => 24 };
const sys = { stdout: term, stderr: term, procRoot: '/proc', env: {} } as unknown as System;

class Stop extends Error {
  override name = 'Stop';
}

/** What yargs hands the handler (captured by a middleware that runs after validation, before the handler), or the error yargs raised. */
async function viaYargs(argv: string[]): Promise<{ args: Record<string, unknown> } | { error: string }> {
  let args: Record<string, unknown> | null = null;
  try {
    await buildCli(sys)
      .exitProcess(false)
      .middleware((a) => {
        args = { ...a };
        throw new Stop();
      })
      .parseAsync(argv);
  } catch (e) {
    if (!(e instanceof Stop)) return { error: (e as Error).message };
  }
  if (!args) return { error: 'no handler reached (help or version)' };
  return { args };
}

async function viaFast(argv: string[]): Promise<Record<string, unknown> | null> {
  const entry = lazyCommands.find((c) => c.command === argv[0])!;
  const table = recordOptions((await entry.load())(sys).builder);
  assert.ok(table, `the ${argv[0]} builder is recorded`);
  return fastParse(argv[0]!, table, argv);
}

const me = String(process.pid);

/** Plain vectors: the fast path must take them and agree with yargs exactly. */
const PLAIN: string[][] = [
  ['states'],
  ['states', '--json'],
  ['states', '--by', 'port'],
  ['states', '--by', 'port', '--top', '3', '--json'],
  ['states', '--by=remote', '--limit', '5'],
  ['states', '--by', 'process', '--udp', '-4'],
  ['states', '--source', 'conntrack', '-6', '--json'],
  ['states', '--no-listening', '--json'],
  ['states', '--listening'],
  ['states', '--port', '80', '--json'],
  ['states', '--port', '80', '443', '--port', '22,25'],
  ['states', '--host', '10.0.0.0/8', 'fd00::1', '--by', 'remote'],
  ['states', '--watch', '0.5', '--count', '2', '--json'],
  ['states', '-d', '2', '-c', '3'],
  ['states', '--interval=1', '--count=1'],
  ['states', '--delay', '1', '-c', '1'],
  ['states', '--top', '05'],
  ['states', '--top', '0'],
  ['states', '--netns', 'blue', '--json'],
  ['states', '--netns=1234'],
  ['states', '--json', '--debug'],
  ['flows'],
  ['flows', '--json'],
  ['flows', '--json', '--proto', 'tcp'],
  ['flows', '--proto=udp', '-4', '--json'],
  ['flows', '--port', '80,443', '--port', '22', '--json'],
  ['flows', '--host', '10.0.0.0/8', '--no-owners'],
  ['flows', '--no-setup', '--keep-acct', '--resolve'],
  ['flows', '--pid', me, '--json'],
  ['flows', '--user', '0', '--json'],
  ['flows', '--user', 'root'],
  ['flows', '--netns', '/run/netns/x', '--json', '--debug'],
  ['flows', '-6', '--proto', 'icmp'],
];

/** Vectors the fast path must leave to yargs (help, errors, forms it does not model). */
const TO_YARGS: string[][] = [
  ['states', '--help'],
  ['states', '-h'],
  ['states', '--version'],
  ['states', '--bogus'],
  ['states', 'extra'],
  ['states', '--json', '--', 'x'],
  ['states', '--by', 'nope'],
  ['states', '--by'],
  ['states', '--by', 'port', '--by', 'remote'],
  ['states', '--top', '-3'],
  ['states', '--top', 'abc'],
  ['states', '--top', '1e1'],
  ['states', '--top', '0x10'],
  ['states', '--watch', ''],
  ['states', '--json=true'],
  ['states', '--json', '--json'],
  ['states', '--json', '--no-json'],
  ['states', '--port', '80', '-4'],
  ['states', '--port'],
  ['states', '--port', ''],
  ['states', '--host='],
  ['states', '--netns', '-4'],
  ['states', '-46'],
  ['states', '--no-by'],
  ['states', '--keepAcct'],
  ['states', '--4'],
  ['flows', '--proto', 'sctp'],
  ['flows', '--proto', '6'],
  ['flows', '--port', 'http'],
  ['flows', '--port', '70000'],
  ['flows', '-4', '-6'],
  ['flows', '--pid', '999999999'],
  ['flows', '--pid', 'abc'],
  ['flows', '--user', 'no-such-user-here'],
  ['flows', '--user', 'root', '-4'],
  ['flows', '--help'],
  ['top'],
  ['doctor'],
];

test('fast path: each plain vector gives the very object yargs hands the handler', async () => {
  for (const argv of PLAIN) {
    const y = await viaYargs(argv);
    assert.ok('args' in y, `yargs accepts ${argv.join(' ')}: ${'error' in y ? y.error : ''}`);
    const f = await viaFast(argv);
    assert.notEqual(f, null, `fast path takes ${argv.join(' ')}`);
    assert.deepStrictEqual(f, y.args, argv.join(' '));
  }
});

test('fast path: help, errors and forms it does not model go to yargs', async () => {
  for (const argv of TO_YARGS) {
    const entry = lazyCommands.find((c) => c.command === argv[0]);
    if (!entry || (argv[0] !== 'states' && argv[0] !== 'flows')) {
      // Not a fast command at all: main.ts only tries states and flows.
      assert.ok(argv[0] === 'top' || argv[0] === 'doctor');
      continue;
    }
    assert.equal(await viaFast(argv), null, `left to yargs: ${argv.join(' ')}`);
  }
});

test('fast path: a vector it leaves to yargs but yargs accepts is still parsed the same by yargs (sanity of the table)', async () => {
  // Forms the fast path declines although yargs accepts them: the decline costs only speed.
  const accepted = [
    ['states', '--top', '1e1'],
    ['states', '--json', '--json'],
    ['states', '--by', 'port', '--by', 'remote'],
  ];
  for (const argv of accepted) {
    const y = await viaYargs(argv);
    assert.ok('args' in y, argv.join(' '));
    assert.equal(await viaFast(argv), null);
  }
  // And yargs' own errors stay yargs' (ctacct's wording, exit 2).
  const bad = await viaYargs(['states', '--by', 'nope']);
  assert.ok('error' in bad);
  assert.equal(bad.error, "--by: 'nope' is not one of state, port, process, remote (see `ctacct --help`)");
});

test('recordOptions: declines builders with methods it does not model', () => {
  assert.equal(recordOptions(undefined), null);
  assert.equal(recordOptions((y) => y.positional('x', { type: 'string' })), null);
  assert.equal(recordOptions((y) => y.conflicts('a', 'b')), null);
  const t = recordOptions((y) => y.option('a', { type: 'boolean' }).example('x', 'y').check(() => true));
  assert.ok(t);
  assert.deepEqual(t.options, [['a', { type: 'boolean' }]]);
  assert.equal(t.checks.length, 1);
});

test('fastParse: an option key it does not model sends the vector to yargs', () => {
  const t = recordOptions((y) => y.option('xx', { type: 'string', requiresArg: true }));
  assert.ok(t);
  assert.equal(fastParse('states', t, ['states']), null);
  const ok = recordOptions((y) => y.option('xx', { type: 'string' }));
  assert.deepEqual(fastParse('states', ok!, ['states', '--xx', 'v']), { _: ['states'], xx: 'v', debug: false, $0: 'ctacct' });
  assert.equal(fastParse('flows', ok!, ['states']), null);
});
