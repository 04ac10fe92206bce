// The live loop with a fake terminal, a manual clock and a fake engine: no sleeps, no real timers.
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { TopSnapshot } from '../../src/core/model.js';
import type { UiState } from '../../src/views/keys.js';
import {
  ENTER_SCREEN,
  LEAVE_SCREEN,
  nodeTerminal,
  runLive,
  runStream,
  screenUpdate,
  type LiveClock,
  type LiveDeps,
  type LiveTerminal,
} from '../../src/views/live.js';
import { displayWidth } from '../../src/views/format.js';
import { manyRowsSnapshot, snapshot } from '../fakes/snapshots.js';

class FakeTerminal implements LiveTerminal {
  out = '';
  cols = 80;
  height = 24;
  raw: boolean[] = [];
  private data = new Set<(b: Buffer) => void>();
  private resizes = new Set<() => void>();
  write(s: string): void {
    this.out += s;
  }
  columns(): number {
    return this.cols;
  }
  rows(): number {
    return this.height;
  }
  setRawMode(on: boolean): void {
    this.raw.push(on);
  }
  onData(cb: (b: Buffer) => void): () => void {
    this.data.add(cb);
    return () => this.data.delete(cb);
  }
  onResize(cb: () => void): () => void {
    this.resizes.add(cb);
    return () => this.resizes.delete(cb);
  }
  get listeners(): number {
    return this.data.size + this.resizes.size;
  }
  press(s: string): void {
    for (const cb of [...this.data]) cb(Buffer.from(s));
  }
  resize(cols: number, rows: number): void {
    this.cols = cols;
    this.height = rows;
    for (const cb of [...this.resizes]) cb();
  }
  /** Frames drawn: each starts by clearing row 1. */
  get frames(): number {
    return this.out.split('\x1b[1;1H\x1b[2K').length - 1;
  }
  /** The screen's rows as last drawn (colour off, so no escapes inside rows). */
  screen(): string[] {
    const last = this.out.slice(this.out.lastIndexOf('\x1b[1;1H\x1b[2K'));
    const rows: string[] = [];
    for (const m of last.matchAll(/\x1b\[(\d+);1H\x1b\[2K([^\x1b]*)/g)) rows[Number(m[1]) - 1] = m[2]!;
    return rows;
  }
}

class ManualClock implements LiveClock {
  t = 0;
  private seq = 0;
  timers = new Map<number, { cb: () => void; ms: number; at: number }>();
  now(): number {
    return this.t;
  }
  setInterval(cb: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { cb, ms, at: this.t + ms });
    return id;
  }
  clearInterval(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.values()].filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = due.at;
      due.at += due.ms;
      due.cb();
      await flush();
    }
    this.t = end;
  }
}

/** Lets queued promise callbacks run (microtasks only: no timers). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

function setup(over: Partial<LiveDeps> = {}, snaps: (ui: UiState, n: number) => TopSnapshot = (ui) => snapshot(ui.groupBy)) {
  const terminal = new FakeTerminal();
  const clock = new ManualClock();
  const calls: UiState[] = [];
  const next = (ui: UiState) => {
    calls.push(ui);
    return snaps(ui, calls.length);
  };
  const handle = runLive({ terminal, clock, next, intervalMs: 1000, color: false, ...over });
  return { terminal, clock, calls, handle };
}

test('the escape sequences: alternate screen + hidden cursor on entry, all undone on exit', () => {
  assert.equal(ENTER_SCREEN, '\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J');
  assert.equal(LEAVE_SCREEN, '\x1b[0m\x1b[?25h\x1b[?1049l');
});

test('starts in raw mode on the alternate screen, waiting for the first refresh', async () => {
  const { terminal, calls, handle } = setup();
  assert.ok(terminal.out.startsWith(ENTER_SCREEN));
  assert.deepEqual(terminal.raw, [true]);
  assert.equal(calls.length, 0, 'rates need two readings: the first pull is one interval in');
  assert.equal(terminal.screen()[0], 'ctacct top  waiting for the first refresh');
  handle.stop();
  await handle.done;
});

test('one pull and one frame per interval, with the snapshot on screen', async () => {
  const { terminal, clock, calls, handle } = setup();
  const before = terminal.frames;
  await clock.advance(1000);
  assert.equal(calls.length, 1);
  assert.equal(terminal.frames, before + 1);
  const screen = terminal.screen();
  assert.equal(screen.length, 24);
  assert.equal(screen[0], 'ctacct top  09:26:53 UTC  by process  sort sent+recv/s  every 1s');
  assert.ok(screen.some((l) => l.startsWith('  30411  deploy ')));
  await clock.advance(3000);
  assert.equal(calls.length, 4);
  assert.equal(terminal.frames, before + 4);
  assert.ok(!terminal.out.includes('\n'), 'rows are positioned, never scrolled with newlines');
  handle.stop();
  const r = await handle.done;
  assert.equal(r.refreshes, 4);
  assert.equal(r.last?.group_by, 'process');
});

test('keys redraw at once and change the group-by and sort passed to next', async () => {
  const { terminal, clock, calls, handle } = setup();
  await clock.advance(1000);
  const frames = terminal.frames;
  terminal.press('s');
  assert.equal(terminal.frames, frames + 1, 'redrawn without waiting for a refresh');
  assert.equal(calls.length, 1, 'no extra pull');
  assert.match(terminal.screen()[0]!, /sort sent\/s/);
  assert.ok(terminal.screen()[5]!.startsWith('   2816+'), 'nginx sends most');
  terminal.press('b');
  assert.match(terminal.screen()[0]!, /by process \(→ conn next refresh\)/);
  await clock.advance(1000);
  assert.deepEqual(
    calls.map((u) => [u.groupBy, u.sort]),
    [
      ['process', 'total'],
      ['conn', 'sent'],
    ],
  );
  assert.match(terminal.screen()[0]!, /by conn {2}sort sent\/s/);
  terminal.press('m');
  assert.match(terminal.screen()[0]!, /sort total sent/);
  terminal.press('h');
  assert.ok(terminal.screen().some((l) => l === 'Keys'));
  terminal.press('\x1b');
  assert.ok(!terminal.screen().some((l) => l === 'Keys'));
  handle.stop();
  const r = await handle.done;
  assert.equal(r.ui.groupBy, 'conn');
  assert.equal(r.ui.mode, 'total');
});

for (const [name, key] of [
  ['q', 'q'],
  ['Ctrl-C', '\x03'],
] as const) {
  test(`${name} quits and restores the terminal exactly`, async () => {
    const { terminal, clock, calls, handle } = setup();
    await clock.advance(2000);
    terminal.press(key);
    const r = await handle.done;
    assert.ok(terminal.out.endsWith(LEAVE_SCREEN), JSON.stringify(terminal.out.slice(-40)));
    assert.deepEqual(terminal.raw, [true, false]);
    assert.equal(terminal.listeners, 0, 'stdin and resize listeners removed');
    assert.equal(clock.timers.size, 0, 'interval cleared');
    assert.equal(r.ui.quit, true);
    assert.equal(r.refreshes, 2);
    assert.equal(r.last?.time, '2025-03-14T09:26:53.000Z');
    await clock.advance(5000);
    assert.equal(calls.length, 2, 'nothing pulled after quitting');
  });
}

test('--count N stops after N refreshes', async () => {
  const { terminal, clock, calls, handle } = setup({ count: 3 });
  await clock.advance(10_000);
  const r = await handle.done;
  assert.equal(calls.length, 3);
  assert.equal(r.refreshes, 3);
  assert.equal(r.ui.quit, false);
  assert.ok(terminal.out.endsWith(LEAVE_SCREEN));
  assert.deepEqual(terminal.raw, [true, false]);
});

for (const [name, fail] of [
  ['throws', (): TopSnapshot => { throw Object.assign(new Error('dump failed'), { code: 'EPERM' }); }],
  ['rejects', (): Promise<TopSnapshot> => Promise.reject(Object.assign(new Error('dump failed'), { code: 'EPERM' }))],
] as const) {
  test(`an error from next (${name}) restores the terminal, then is rethrown`, async () => {
    const terminal = new FakeTerminal();
    const clock = new ManualClock();
    let n = 0;
    const handle = runLive({ terminal, clock, intervalMs: 1000, color: false, next: () => (++n === 2 ? fail() : snapshot()) });
    await clock.advance(2000);
    await assert.rejects(handle.done, (e: NodeJS.ErrnoException) => e.code === 'EPERM');
    assert.ok(terminal.out.endsWith(LEAVE_SCREEN));
    assert.deepEqual(terminal.raw, [true, false]);
    assert.equal(clock.timers.size, 0);
    assert.equal(terminal.listeners, 0);
  });
}

test('stop() from a signal handler restores once, however often it is called', async () => {
  const exits: unknown[] = [];
  const { terminal, clock, handle } = setup({ onExit: (r, e) => exits.push([r.refreshes, e, terminal.out.endsWith(LEAVE_SCREEN)]) });
  await clock.advance(1000);
  handle.stop();
  handle.stop();
  const r = await handle.done;
  assert.equal(terminal.out.split(LEAVE_SCREEN).length - 1, 1);
  assert.deepEqual(terminal.raw, [true, false]);
  assert.equal(r.refreshes, 1);
  assert.deepEqual(exits, [[1, undefined, true]], 'onExit once, after the terminal is restored');
});

test('pause stops pulling but keeps drawing; unpause resumes', async () => {
  const { terminal, clock, calls, handle } = setup();
  await clock.advance(1000);
  terminal.press('p');
  assert.match(terminal.screen()[0]!, /^ctacct top {2}PAUSED/);
  await clock.advance(5000);
  assert.equal(calls.length, 1);
  terminal.press('r');
  assert.match(terminal.screen()[0]!, /PAUSED.*sort recv\/s/);
  terminal.press('p');
  await clock.advance(1000);
  assert.equal(calls.length, 2);
  assert.equal(calls[1]!.sort, 'recv');
  handle.stop();
  await handle.done;
});

test('resize redraws at the new size', async () => {
  const { terminal, clock, handle } = setup();
  await clock.advance(1000);
  const frames = terminal.frames;
  terminal.resize(60, 10);
  assert.equal(terminal.frames, frames + 1);
  const screen = terminal.screen();
  assert.equal(screen.length, 10);
  for (const l of screen) assert.ok(displayWidth(l) <= 60, l);
  assert.equal(screen[7], '↓ 7 more');
  handle.stop();
  await handle.done;
});

test('arrow keys move the cursor; the view scrolls to keep it on screen and stays in range when rows shrink', async () => {
  let big = true;
  const { terminal, clock, handle } = setup({}, () => (big ? manyRowsSnapshot(40) : snapshot()));
  await clock.advance(1000);
  // 16 table rows on screen at 80x24: the cursor walks down without scrolling, then the view follows.
  terminal.press('\x1b[B\x1b[B');
  assert.ok(terminal.screen().includes('↓ 24 more'), terminal.screen().join('\n'));
  terminal.press('\x1b[6~'); // cursor 2 → 17: one past the screen, the view scrolls by 2
  assert.ok(terminal.screen().includes('↑ 2 above  ↓ 22 more'), terminal.screen().join('\n'));
  terminal.press('\x1b[F');
  assert.ok(terminal.screen().includes('↑ 24 above'));
  terminal.press('\x1b[A');
  assert.ok(terminal.screen().includes('↑ 24 above'), 'moving up inside the screen does not scroll');
  terminal.press('\x1b[H');
  assert.ok(terminal.screen().includes('↓ 24 more'));
  terminal.press('\x1b[F');
  big = false;
  await clock.advance(1000);
  assert.ok(terminal.screen().some((l) => l.startsWith('  30411 ')), 'scroll clamped to the smaller table');
  handle.stop();
  const { ui } = await handle.done;
  assert.equal(ui.scroll, 0);
  assert.equal(ui.selected, 9, 'cursor clamped to the last of the 10 rows');
});

test('a slow engine: ticks while a pull is in flight are skipped, not stacked', async () => {
  const terminal = new FakeTerminal();
  const clock = new ManualClock();
  let release!: (s: TopSnapshot) => void;
  let pulls = 0;
  const handle = runLive({
    terminal,
    clock,
    intervalMs: 1000,
    color: false,
    next: () => {
      pulls++;
      return new Promise<TopSnapshot>((r) => (release = r));
    },
  });
  await clock.advance(3000);
  assert.equal(pulls, 1);
  release(snapshot());
  await flush();
  assert.equal(terminal.screen()[0], 'ctacct top  09:26:53 UTC  by process  sort sent+recv/s  every 1s');
  await clock.advance(1000);
  assert.equal(pulls, 2);
  terminal.press('q');
  release(snapshot('remote'));
  const r = await handle.done;
  assert.equal(r.last?.group_by, 'process', 'a pull that lands after quitting is ignored');
});

test('colour on: frames carry SGR codes', async () => {
  const { terminal, clock, handle } = setup({ color: true });
  await clock.advance(1000);
  assert.ok(terminal.out.includes('\x1b[1mctacct top\x1b[0m'));
  handle.stop();
  await handle.done;
});

test('screenUpdate clears and writes every row at an absolute position, never a newline', () => {
  assert.equal(screenUpdate('a\nb', 3), '\x1b[1;1H\x1b[2Ka\x1b[2;1H\x1b[2Kb\x1b[3;1H\x1b[2K');
});

test('runStream: trace/json output per refresh, count, stop and errors', async () => {
  const clock = new ManualClock();
  let out = '';
  const seen: [string, string | null][] = [];
  const h = runStream({
    write: (s) => (out += s),
    clock,
    intervalMs: 2000,
    count: 2,
    ui: { groupBy: 'port', sort: 'recv' },
    next: (ui) => snapshot(ui.groupBy),
    render: (s, prev) => {
      seen.push([s.group_by, prev ? prev.group_by : null]);
      return `${s.group_by}\n`;
    },
  });
  await clock.advance(1999);
  assert.equal(out, '');
  await clock.advance(10_000);
  const r = await h.done;
  assert.equal(out, 'port\nport\n');
  assert.deepEqual(seen, [
    ['port', null],
    ['port', 'port'],
  ]);
  assert.equal(r.refreshes, 2);
  assert.equal(clock.timers.size, 0);

  const epipe = runStream({
    write: () => {
      throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    },
    clock,
    intervalMs: 1000,
    next: () => snapshot(),
    render: () => 'x\n',
  });
  await clock.advance(1000);
  await assert.rejects(epipe.done, (e: NodeJS.ErrnoException) => e.code === 'EPIPE');

  const stopped = runStream({ write: () => {}, clock, intervalMs: 1000, next: () => snapshot(), render: () => '' });
  await clock.advance(3000);
  stopped.stop();
  assert.equal((await stopped.done).refreshes, 3);
});

test('nodeTerminal adapts stdin/stdout streams and stops reading stdin on unsubscribe', () => {
  const stdin = Object.assign(new EventEmitter(), {
    isTTY: true,
    modes: [] as boolean[],
    reading: false,
    setRawMode(m: boolean) {
      this.modes.push(m);
    },
    resume() {
      this.reading = true;
    },
    pause() {
      this.reading = false;
    },
  });
  const written: string[] = [];
  const stdout = Object.assign(new EventEmitter(), { columns: 0, rows: 40, write: (s: string) => written.push(s) });
  const t = nodeTerminal(stdin, stdout);
  assert.equal(t.columns(), 80, 'unknown width falls back to 80');
  assert.equal(t.rows(), 40);
  t.setRawMode!(true);
  assert.deepEqual(stdin.modes, [true]);
  const keys: string[] = [];
  const off = t.onData((b) => keys.push(b.toString()));
  assert.equal(stdin.reading, true);
  stdin.emit('data', Buffer.from('q'));
  off();
  stdin.emit('data', Buffer.from('x'));
  assert.deepEqual(keys, ['q']);
  assert.equal(stdin.reading, false);
  let resized = 0;
  const offResize = t.onResize(() => resized++);
  stdout.emit('resize');
  offResize();
  stdout.emit('resize');
  assert.equal(resized, 1);
  t.write('hi');
  assert.deepEqual(written, ['hi']);
  const notTty = nodeTerminal(Object.assign(new EventEmitter(), { isTTY: false, resume() {}, pause() {} }), stdout);
  assert.equal(notTty.setRawMode, undefined);
});
