import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { Lifecycle } from '../../src/system/lifecycle.js';

class FakeProcess extends EventEmitter {
  exits: number[] = [];
  exit(code?: number): void {
    this.exits.push(code ?? 0);
  }
}

function setup() {
  const proc = new FakeProcess();
  const errs: string[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const lc = new Lifecycle(proc, {
    writeErr: (l) => errs.push(l),
    graceMs: 3000,
    setTimer: (fn, ms) => {
      timers.push({ fn, ms });
      return {};
    },
  });
  const calls: string[] = [];
  const reg = (name: string, asyncFn?: () => Promise<void>) =>
    lc.onShutdown(asyncFn ?? (async () => void calls.push(`${name}:async`)), () => void calls.push(`${name}:sync`));
  return { proc, errs, timers, lc, calls, reg };
}

const tick = () => new Promise((r) => setImmediate(r));

test('shutdown runs every cleanup once, newest first; later paths find nothing to do', async () => {
  const { proc, lc, calls, reg } = setup();
  lc.install();
  reg('setup');
  reg('terminal');
  await lc.shutdown();
  await lc.shutdown();
  proc.emit('exit', 0);
  assert.deepEqual(calls, ['terminal:async', 'setup:async']);
  assert.deepEqual(proc.exits, []);
});

for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  test(`${sig}: async cleanup, then exit ${code}`, async () => {
    const { proc, lc, calls, reg, timers } = setup();
    lc.install();
    reg('setup');
    proc.emit(sig);
    await tick();
    assert.deepEqual(calls, ['setup:async']);
    assert.deepEqual(proc.exits, [code]);
    assert.equal(timers[0]?.ms, 3000);
    proc.emit('exit', code); // the real exit then fires 'exit': nothing runs twice
    assert.deepEqual(calls, ['setup:async']);
  });
}

test('a second signal during a slow cleanup finishes synchronously and exits at once', async () => {
  const { proc, lc, calls, reg } = setup();
  lc.install();
  reg('setup', () => new Promise(() => calls.push('setup:async-started'))); // never settles
  reg('other');
  proc.emit('SIGTERM');
  await tick();
  assert.deepEqual(calls, ['other:async', 'setup:async-started']);
  proc.emit('SIGINT');
  assert.deepEqual(calls, ['other:async', 'setup:async-started', 'setup:sync']);
  assert.deepEqual(proc.exits, [130]);
});

test('the grace timer finishes a hung async cleanup synchronously', async () => {
  const { proc, lc, calls, reg, timers } = setup();
  lc.install();
  reg('setup', () => new Promise(() => undefined));
  proc.emit('SIGHUP');
  await tick();
  assert.deepEqual(proc.exits, []);
  timers[0]?.fn();
  assert.deepEqual(calls, ['setup:sync']);
  assert.deepEqual(proc.exits, [129]);
});

test('uncaught exception / unhandled rejection: one line, sync cleanup, exit 1', () => {
  for (const ev of ['uncaughtException', 'unhandledRejection']) {
    const { proc, lc, calls, reg, errs } = setup();
    lc.install();
    reg('setup');
    proc.emit(ev, new Error('boom\n    at somewhere'));
    assert.deepEqual(errs, ['ctacct: boom (internal error)']);
    assert.deepEqual(calls, ['setup:sync']);
    assert.deepEqual(proc.exits, [1]);
  }
});

test("'exit' runs the sync path for whatever is left", () => {
  const { proc, lc, calls, reg } = setup();
  lc.install();
  reg('a');
  reg('b');
  proc.emit('exit', 0);
  assert.deepEqual(calls, ['b:sync', 'a:sync']);
});

test('unregister removes a cleanup without running it', async () => {
  const { lc, calls, reg } = setup();
  const off = reg('a');
  reg('b');
  off();
  await lc.shutdown();
  assert.deepEqual(calls, ['b:async']);
});

test('a failing cleanup: the others still run, its message is printed, the signal exit code stays', async () => {
  const { proc, lc, calls, reg, errs } = setup();
  lc.install();
  reg('a');
  reg('bad', async () => {
    throw new Error('could not undo: removing nft table inet ctacct');
  });
  proc.emit('SIGTERM');
  await tick();
  assert.deepEqual(calls, ['a:async']);
  assert.deepEqual(errs, ['ctacct: could not undo: removing nft table inet ctacct']);
  assert.deepEqual(proc.exits, [143]);
});

test('install is idempotent and uninstall removes every listener', () => {
  const { proc, lc } = setup();
  lc.install();
  lc.install();
  for (const ev of ['SIGINT', 'SIGTERM', 'SIGHUP', 'uncaughtException', 'unhandledRejection', 'exit']) assert.equal(proc.listenerCount(ev), 1, ev);
  lc.uninstall();
  for (const ev of ['SIGINT', 'SIGTERM', 'SIGHUP', 'uncaughtException', 'unhandledRejection', 'exit']) assert.equal(proc.listenerCount(ev), 0, ev);
});

test('SIGQUIT: async cleanup, then exit 131', async () => {
  const { proc, lc, calls, reg } = setup();
  lc.install();
  reg('setup');
  proc.emit('SIGQUIT');
  await tick();
  assert.deepEqual(calls, ['setup:async']);
  assert.deepEqual(proc.exits, [131]);
});

test('a closed output (EPIPE on stdout): quiet cleanup, exit 141; SIGPIPE itself is not listened to', async () => {
  const proc = Object.assign(new FakeProcess(), { stdout: new EventEmitter(), stderr: new EventEmitter() });
  const errs: string[] = [];
  const lc = new Lifecycle(proc, { writeErr: (l) => errs.push(l), setTimer: () => ({}) });
  lc.install();
  const calls: string[] = [];
  lc.onShutdown(async () => void calls.push('undo'), () => void calls.push('undo:sync'));
  assert.equal(proc.listenerCount('SIGPIPE'), 0);
  proc.stdout.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  proc.stdout.emit('error', Object.assign(new Error('write after destroy'), { code: 'ERR_STREAM_DESTROYED' }));
  await tick();
  assert.deepEqual(calls, ['undo']);
  assert.deepEqual(proc.exits, [141]);
  assert.deepEqual(errs, []);
  assert.equal(lc.outputClosed, true);
  lc.uninstall();
  assert.equal(proc.stdout.listenerCount('error'), 0);
});

test('an uncaught EPIPE is a closed output too, not an internal error', async () => {
  const { proc, lc, errs, calls, reg } = setup();
  lc.install();
  reg('setup');
  proc.emit('uncaughtException', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  await tick();
  assert.deepEqual(calls, ['setup:async']);
  assert.deepEqual(proc.exits, [141]);
  assert.deepEqual(errs, []);
});

test('a cleanup that throws: one line; the cleanups behind it still run', async () => {
  const { proc, lc, errs, calls, reg } = setup();
  lc.install();
  reg('setup');
  lc.onShutdown(
    async () => {
      throw new Error('terminal restore failed');
    },
    () => undefined,
  );
  proc.emit('SIGTERM');
  await tick();
  await tick();
  assert.deepEqual(calls, ['setup:async']);
  assert.deepEqual(errs, ['ctacct: terminal restore failed']);
  assert.deepEqual(proc.exits, [143]);
});
