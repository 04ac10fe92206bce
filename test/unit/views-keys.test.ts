// Raw stdin bytes → key names → UI state.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { initialUiState, parseKeys, reduceKey, type UiState } from '../../src/views/keys.js';

test('parseKeys: letters, control keys and escape sequences', () => {
  assert.deepEqual(parseKeys(Buffer.from('q')), ['q']);
  assert.deepEqual(parseKeys(Buffer.from([3])), ['ctrl-c']);
  assert.deepEqual(parseKeys('\x1b[A\x1b[B\x1b[C\x1b[D'), ['up', 'down', 'right', 'left']);
  assert.deepEqual(parseKeys('\x1bOA\x1bOB\x1bOH\x1bOF'), ['up', 'down', 'home', 'end']); // application cursor mode
  assert.deepEqual(parseKeys('\x1b[5~\x1b[6~'), ['pageup', 'pagedown']);
  assert.deepEqual(parseKeys('\x1b[H\x1b[F\x1b[1~\x1b[4~\x1b[7~\x1b[8~'), ['home', 'end', 'home', 'end', 'home', 'end']);
  assert.deepEqual(parseKeys('\x1b[1;5A'), ['up']); // Ctrl+Up: modifier ignored
  assert.deepEqual(parseKeys('\x1b'), ['escape']);
  assert.deepEqual(parseKeys('\x1bq'), ['escape', 'q']); // Alt+q
  assert.deepEqual(parseKeys('sbm'), ['s', 'b', 'm']); // several keys in one read
  assert.deepEqual(parseKeys(' \r\t\x7f\x04\x1a\x01'), ['space', 'enter', 'tab', 'backspace', 'ctrl-d', 'ctrl-z', 'ctrl-a']);
  assert.deepEqual(parseKeys('\x1b[3~'), ['delete']);
  assert.deepEqual(parseKeys('é'), ['é']);
});

test('q and Ctrl-C quit', () => {
  assert.equal(reduceKey(initialUiState(), 'q').quit, true);
  assert.equal(reduceKey(initialUiState(), 'Q').quit, true);
  assert.equal(reduceKey(initialUiState(), 'ctrl-c').quit, true);
});

test('s r t c n pick the sort and go back to the top', () => {
  const ui = initialUiState({ scroll: 7 });
  assert.equal(ui.sort, 'total');
  assert.deepEqual(
    ['s', 'r', 't', 'c', 'n'].map((k) => reduceKey(ui, k).sort),
    ['sent', 'recv', 'total', 'conns', 'new'],
  );
  assert.equal(reduceKey(ui, 's').scroll, 0);
  assert.equal(reduceKey(ui, 'S').sort, 'sent');
});

test('b cycles the group-by forward, B backward', () => {
  let ui = initialUiState();
  const seen: string[] = [];
  for (let i = 0; i < 7; i++) {
    ui = reduceKey(ui, 'b');
    seen.push(ui.groupBy);
  }
  assert.deepEqual(seen, ['conn', 'remote', 'port', 'user', 'container', 'unit', 'process']);
  assert.equal(reduceKey(initialUiState(), 'B').groupBy, 'unit');
  assert.equal(reduceKey(initialUiState({ scroll: 3 }), 'b').scroll, 0);
});

test('m toggles rate/total, p pauses, h and ? toggle help, Esc closes it', () => {
  const ui = initialUiState();
  assert.equal(reduceKey(ui, 'm').mode, 'total');
  assert.equal(reduceKey(reduceKey(ui, 'm'), 'm').mode, 'rate');
  assert.equal(reduceKey(ui, 'p').paused, true);
  assert.equal(reduceKey(reduceKey(ui, 'p'), 'p').paused, false);
  assert.equal(reduceKey(ui, 'h').showHelp, true);
  assert.equal(reduceKey(ui, '?').showHelp, true);
  assert.equal(reduceKey(reduceKey(ui, 'h'), 'escape').showHelp, false);
  assert.equal(reduceKey(ui, 'escape'), ui);
});

test('scroll keys move within [0, maxScroll]', () => {
  const view = { page: 10, maxScroll: 25 };
  const at = (scroll: number, key: string) => reduceKey(initialUiState({ scroll }), key, view).scroll;
  assert.equal(at(0, 'down'), 1);
  assert.equal(at(0, 'j'), 1);
  assert.equal(at(5, 'up'), 4);
  assert.equal(at(5, 'k'), 4);
  assert.equal(at(0, 'up'), 0);
  assert.equal(at(25, 'down'), 25);
  assert.equal(at(3, 'pagedown'), 13);
  assert.equal(at(20, 'pagedown'), 25);
  assert.equal(at(20, 'space'), 25);
  assert.equal(at(13, 'pageup'), 3);
  assert.equal(at(3, 'pageup'), 0);
  assert.equal(at(12, 'home'), 0);
  assert.equal(at(0, 'end'), 25);
});

test('keys that change nothing return the same state object (no redraw)', () => {
  const ui: UiState = initialUiState();
  for (const k of ['x', 'left', 'enter', 'up', 'home', 'ctrl-z']) assert.equal(reduceKey(ui, k, { page: 5, maxScroll: 0 }), ui, k);
  assert.equal(reduceKey(ui, 't'), ui, 'already sorted by total at the top');
});

test('initial state takes the command-line choices', () => {
  const ui = initialUiState({ groupBy: 'remote', sort: 'recv' });
  assert.deepEqual(ui, { groupBy: 'remote', sort: 'recv', mode: 'rate', paused: false, showHelp: false, scroll: 0, quit: false });
});
