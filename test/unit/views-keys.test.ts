// Raw stdin bytes → key names → UI state.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { effectiveGroupBy, inDrill, initialUiState, matchesFilter, parseKeys, reduceKey, type Drill, type UiState } from '../../src/views/keys.js';
import { row } from '../fakes/snapshots.js';

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

test('b cycles the group-by forward; B toggles bits/bytes', () => {
  let ui = initialUiState();
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    ui = reduceKey(ui, 'b');
    seen.push(ui.groupBy);
  }
  assert.deepEqual(seen, ['conn', 'remote', 'port', 'user', 'process']);
  assert.equal(reduceKey(initialUiState(), 'B').groupBy, 'process');
  assert.equal(reduceKey(initialUiState(), 'B').bits, true);
  assert.equal(reduceKey(reduceKey(initialUiState(), 'B'), 'B').bits, false);
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
  for (const k of ['z', 'left', 'enter', 'up', 'home', 'ctrl-z', 'escape', 'backspace']) assert.equal(reduceKey(ui, k, { page: 5, maxScroll: 0 }), ui, k);
  assert.equal(reduceKey(ui, 't'), ui, 'already sorted by total at the top');
});

test('initial state takes the command-line choices', () => {
  const ui = initialUiState({ groupBy: 'remote', sort: 'recv' });
  assert.deepEqual(ui, {
    groupBy: 'remote', sort: 'recv', mode: 'rate', paused: false, showHelp: false, scroll: 0, selected: 0, quit: false,
    bits: false, window: 'refresh', filter: '', editing: false, drill: null, keepExited: false,
  });
});

test('w cycles the rate window: refresh, 2s, 10s, 40s', () => {
  let ui = initialUiState();
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) seen.push((ui = reduceKey(ui, 'w')).window);
  assert.deepEqual(seen, ['2s', '10s', '40s', 'refresh']);
});

test('/ types a filter: letters go in, Backspace deletes, Enter keeps it, Esc clears it; q is text while typing', () => {
  let ui = reduceKey(initialUiState({ selected: 4, scroll: 2 }), '/');
  assert.equal(ui.editing, true);
  for (const k of ['n', 'g', 'x', 'backspace', 'i', 'n', 'x', 'q']) ui = reduceKey(ui, k);
  assert.equal(ui.filter, 'nginxq');
  assert.equal(ui.quit, false);
  assert.deepEqual([ui.selected, ui.scroll], [0, 0]);
  for (const k of ['\x1b[A', 'ctrl-a', 'up']) assert.equal(reduceKey(ui, k).filter, 'nginxq', `${JSON.stringify(k)} is not text`);
  const kept = reduceKey(reduceKey(ui, 'backspace'), 'enter');
  assert.deepEqual([kept.filter, kept.editing], ['nginx', false]);
  // Not typing: Esc clears the filter; while typing, Esc drops it at once.
  assert.equal(reduceKey(kept, 'escape').filter, '');
  assert.deepEqual([reduceKey(ui, 'escape').filter, reduceKey(ui, 'escape').editing], ['', false]);
  assert.equal(reduceKey(ui, 'ctrl-c').quit, true);
});

test('the cursor moves over the rows; Enter opens the selected row, Esc and Backspace go back', () => {
  const rows = [row({ key: '10', pid: 10, comm: 'a' }), row({ key: '20', pid: 20, comm: 'b', cmdline: '/usr/bin/b --flag' }), row({ key: '30', pid: 30 })];
  const view = { page: 1, maxScroll: 1, visible: 2, rows };
  let ui = reduceKey(initialUiState(), 'down', view);
  assert.deepEqual([ui.selected, ui.scroll], [1, 0]);
  assert.deepEqual([reduceKey(ui, 'down', view).selected, reduceKey(ui, 'down', view).scroll], [2, 1]);
  assert.equal(reduceKey(reduceKey(ui, 'down', view), 'down', view).selected, 2, 'stops at the last row');
  ui = reduceKey(ui, 'enter', view);
  assert.equal(ui.drill?.pid, 20);
  assert.equal(ui.drill?.cmdline, '/usr/bin/b --flag');
  assert.equal(ui.drill?.groupBy, 'process');
  assert.equal(effectiveGroupBy(ui), 'conn');
  assert.deepEqual([ui.selected, ui.scroll], [0, 0]);
  assert.equal(reduceKey(ui, 'enter', view), ui, 'no drill-down inside a drill-down');
  assert.equal(reduceKey(ui, 'escape').drill, null);
  assert.equal(reduceKey(ui, 'backspace').drill, null);
  assert.equal(effectiveGroupBy(reduceKey(ui, 'escape')), 'process');
  assert.equal(reduceKey(ui, 'b').drill, null, 'b leaves the drill-down for the next group-by');
});

test('a drill-down matches connections by pid, remote host, port or uid', () => {
  const c = row({ key: 'tcp 10.0.0.5:40000 203.0.113.7:443', pid: 7, uid: 33, proto: 'tcp', local: '10.0.0.5:40000', remote: '203.0.113.7:443' });
  const v6 = row({ key: 'tcp [2001:db8::5]:40001 [2001:db8::7]:443', pid: 8, proto: 'tcp', local: '[2001:db8::5]:40001', remote: '[2001:db8::7]:443' });
  const d = (groupBy: Drill['groupBy'], o: Partial<Drill>): Drill => ({ groupBy, key: '', pid: null, comm: null, cmdline: null, uid: null, user: null, remote: null, port: null, proto: null, ...o });
  assert.equal(inDrill(d('process', { pid: 7 }), c), true);
  assert.equal(inDrill(d('process', { pid: 8 }), c), false);
  assert.equal(inDrill(d('remote', { remote: '203.0.113.7' }), c), true);
  assert.equal(inDrill(d('remote', { remote: '2001:db8::7' }), v6), true);
  assert.equal(inDrill(d('remote', { remote: '203.0.113.70' }), c), false);
  assert.equal(inDrill(d('port', { port: 443, proto: 'tcp' }), c), true);
  assert.equal(inDrill(d('port', { port: 443, proto: 'udp' }), c), false);
  assert.equal(inDrill(d('port', { port: 4000, proto: 'tcp' }), c), false);
  assert.equal(inDrill(d('user', { uid: 33 }), c), true);
});

test('the filter matches names, command lines, users and addresses, case-insensitively', () => {
  const r = row({ key: '5', pid: 5, comm: 'nginx', cmdline: 'nginx: worker process', user: 'www-data', uid: 33 });
  for (const f of ['NGINX', 'worker', 'www', '5']) assert.equal(matchesFilter(r, f), true, f);
  assert.equal(matchesFilter(r, 'postgres'), false);
  assert.equal(matchesFilter(r, ''), true);
});

test('x keeps exited processes', () => {
  assert.equal(reduceKey(initialUiState(), 'x').keepExited, true);
});
