// The flow log's sinks: size-based rotation keeps every line (never split) across FILE, FILE.1 …,
// drops the oldest beyond --keep, appends to an existing file, fails early on a bad path, and a
// stdout write survives partial writes and EAGAIN.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FdSink, RotatingFile, UnsafeOutputError, openLogFile, parseSize, writeAllSync, type Fs } from '../../src/system/rotate.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctacct-rotate-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const line = (i: number) => `${JSON.stringify({ v: 1, i, pad: 'x'.repeat(i % 37) })}\n`;
const files = (base: string) => readdirSync(dir).filter((f) => f.startsWith(base)).sort();
function allLines(base: string): string[] {
  // Oldest first: FILE.N … FILE.1, FILE.
  const names = files(base).sort((a, b) => suffix(b) - suffix(a));
  return names.flatMap((n) => readFileSync(join(dir, n), 'utf8').split('\n').filter(Boolean));
}
function suffix(name: string): number {
  const m = /\.(\d+)$/.exec(name);
  return m ? Number(m[1]) : 0;
}

describe('RotatingFile', () => {
  test('1,000 lines through a 2 KiB limit: every line kept once, in order, none split, none over the limit', () => {
    const path = join(dir, 'flows.jsonl');
    const sink = new RotatingFile(path, { maxBytes: 2048, keep: 1000 });
    for (let i = 0; i < 1000; i++) sink.write(line(i));
    sink.close();
    const got = allLines('flows.jsonl');
    assert.equal(got.length, 1000);
    assert.deepEqual(got.map((l) => JSON.parse(l).i), [...Array(1000).keys()]);
    for (const f of files('flows.jsonl')) {
      const text = readFileSync(join(dir, f), 'utf8');
      assert.ok(Buffer.byteLength(text) <= 2048, `${f} is ${text.length} bytes`);
      assert.ok(text.endsWith('\n'), `${f} ends with a whole line`);
    }
    assert.equal(sink.rotations, files('flows.jsonl').length - 1);
  });

  test('--keep N: only the N newest rotated files stay; the newest lines are all there', () => {
    const path = join(dir, 'f.log');
    const sink = new RotatingFile(path, { maxBytes: 500, keep: 2 });
    for (let i = 0; i < 200; i++) sink.write(line(i));
    sink.close();
    assert.deepEqual(files('f.log'), ['f.log', 'f.log.1', 'f.log.2']);
    const got = allLines('f.log').map((l) => JSON.parse(l).i);
    assert.equal(got.at(-1), 199);
    assert.deepEqual(got, [...Array(got.length).keys()].map((k) => 200 - got.length + k), 'a contiguous run of the newest lines');
  });

  test('appends to an existing file and counts its size', () => {
    const path = join(dir, 'a.log');
    writeFileSync(path, 'x'.repeat(900) + '\n');
    const sink = new RotatingFile(path, { maxBytes: 1000, keep: 3 });
    sink.write('y'.repeat(199) + '\n');
    sink.close();
    assert.equal(readFileSync(`${path}.1`, 'utf8'), 'x'.repeat(900) + '\n');
    assert.equal(readFileSync(path, 'utf8'), 'y'.repeat(199) + '\n');
  });

  test('a line longer than the limit gets a file of its own', () => {
    const path = join(dir, 'big.log');
    const sink = new RotatingFile(path, { maxBytes: 10, keep: 5 });
    sink.write('short\n');
    sink.write('a much longer line than ten bytes\n');
    sink.write('end\n');
    sink.close();
    assert.deepEqual(allLines('big.log'), ['short', 'a much longer line than ten bytes', 'end']);
  });

  test('nothing reaches the file before flush (buffered), everything after', () => {
    const path = join(dir, 'b.log');
    const sink = new RotatingFile(path, { maxBytes: 1 << 20, keep: 1 });
    sink.write(line(1));
    assert.equal(readFileSync(path, 'utf8'), '');
    sink.flush();
    assert.equal(readFileSync(path, 'utf8'), line(1));
    sink.close();
  });

  test('an unwritable path fails at open with its errno code', () => {
    assert.throws(() => new RotatingFile(join(dir, 'missing', 'x.log'), { maxBytes: 100, keep: 1 }), { code: 'ENOENT' });
    assert.throws(() => new RotatingFile(dir, { maxBytes: 100, keep: 1 }), { code: 'EISDIR' });
  });
});

describe('writeAllSync and FdSink', () => {
  test('partial writes and EAGAIN (a full non-blocking pipe) still write every byte once', () => {
    let out = Buffer.alloc(0);
    let calls = 0;
    const fake = {
      writeSync: (_fd: number, buf: Buffer, off: number, len: number) => {
        calls++;
        if (calls % 3 === 0) throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' });
        const n = Math.min(len, 7);
        out = Buffer.concat([out, buf.subarray(off, off + n)]);
        return n;
      },
    } as unknown as Fs;
    const sink = new FdSink(99, fake);
    const lines = Array.from({ length: 20 }, (_, i) => line(i));
    for (const l of lines) sink.write(l);
    sink.close();
    assert.equal(out.toString(), lines.join(''));
  });

  test('other write errors (EPIPE) are thrown with their code', () => {
    const fake = { writeSync: () => { throw Object.assign(new Error('EPIPE'), { code: 'EPIPE' }); } } as unknown as Fs;
    assert.throws(() => writeAllSync(fake, 1, Buffer.from('x\n')), { code: 'EPIPE' });
  });

  test('real fs works as the default', () => {
    const path = join(dir, 'fd.log');
    const fd = fs.openSync(path, 'w');
    const sink = new FdSink(fd);
    sink.write('one\n');
    sink.close();
    fs.closeSync(fd);
    assert.equal(readFileSync(path, 'utf8'), 'one\n');
  });
});

test('parseSize', () => {
  assert.equal(parseSize('100M'), 100 * 1024 * 1024);
  assert.equal(parseSize('500k'), 500 * 1024);
  assert.equal(parseSize('1GiB'), 1024 ** 3);
  assert.equal(parseSize('2048'), 2048);
  assert.equal(parseSize('1.5m'), 1572864);
  assert.equal(parseSize('0'), null);
  assert.equal(parseSize('ten'), null);
  assert.equal(parseSize('-5M'), null);
});

describe('openLogFile: what a root daemon may append to', () => {
  test('a new file is created 0600; an existing own file is appended to', () => {
    const path = join(dir, 'new.jsonl');
    const sink = new RotatingFile(path, { maxBytes: 1 << 20, keep: 1 });
    sink.write('a\n');
    sink.close();
    assert.equal(fs.statSync(path).mode & 0o777, 0o600);
    const again = new RotatingFile(path, { maxBytes: 1 << 20, keep: 1 });
    again.write('b\n');
    again.close();
    assert.equal(readFileSync(path, 'utf8'), 'a\nb\n');
  });

  test('a symlink planted at the path (or at FILE after rotation) is refused, its target untouched', () => {
    const target = join(dir, 'precious');
    writeFileSync(target, 'keep me\n');
    const path = join(dir, 'flows.jsonl');
    fs.symlinkSync(target, path);
    assert.throws(() => new RotatingFile(path, { maxBytes: 100, keep: 1 }), (e: unknown) => e instanceof UnsafeOutputError && /symbolic link/.test(e.message));
    fs.unlinkSync(path);
    // The race a rotation opens: FILE is renamed away and someone plants a symlink before it is reopened.
    const racy: Fs = {
      ...fs,
      renameSync: (a: fs.PathLike, b: fs.PathLike) => {
        fs.renameSync(a, b);
        if (a === path) fs.symlinkSync(target, path);
      },
    };
    const sink = new RotatingFile(path, { maxBytes: 10, keep: 1 }, racy);
    sink.write('0123456789\n');
    sink.flush();
    assert.throws(() => {
      sink.write('0123456789\n');
      sink.flush();
    }, UnsafeOutputError);
    assert.equal(readFileSync(target, 'utf8'), 'keep me\n');
  });

  test('refuses a directory writable by others without the sticky bit, a hard-linked file, a non-regular file', () => {
    const open = join(dir, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    assert.throws(() => openLogFile(fs, join(open, 'f')), /writable by every user and has no sticky bit/);
    fs.chmodSync(open, 0o1777);
    fs.closeSync(openLogFile(fs, join(open, 'f'))); // /tmp-like: allowed
    const a = join(dir, 'a');
    writeFileSync(a, '');
    fs.linkSync(a, join(dir, 'b'));
    assert.throws(() => openLogFile(fs, a), /other hard links/);
    assert.throws(() => openLogFile(fs, dir), (e: unknown) => (e as { code?: string }).code === 'EISDIR' || e instanceof UnsafeOutputError);
  });

  test('refuses a file owned by another user', () => {
    const path = join(dir, 'theirs');
    writeFileSync(path, '');
    assert.throws(() => openLogFile(fs, path, 12345), /owned by another user/);
  });
});
