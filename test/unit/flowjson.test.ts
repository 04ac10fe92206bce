// `flows --json` writes each flow straight from the record buffer (src/views/flowjson.ts): the text
// must be byte for byte JSON.stringify(toFlowView(decodeOne(…))), the README contract, on flows
// the kernel sent (fixtures) and on random records with every optional field present or absent.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { endOf, type Direction } from '../../src/core/flow.js';
import { toFlowView, type AttributedEnd } from '../../src/core/flowview.js';
import type { Owner } from '../../src/core/owners.js';
import { getAddon } from '../../src/netlink/addon.js';
import { decodeOne, RECORD_SIZE } from '../../src/netlink/record.js';
import { ageTexts, ByteSink, flowJson, OwnerTexts, writeFlowJson, type EndOwner } from '../../src/views/flowjson.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/netlink/${name}`, import.meta.url));

function owner(o: Partial<Owner> = {}): Owner {
  return { pid: 4242, shared: false, uid: 1000, user: 'alice', comm: 'nginx', cmdline: null, inode: 77, startTime: null, ...o };
}

const OWNERS: (Owner | null)[] = [
  null,
  owner(),
  owner({ pid: null, comm: null, uid: null }),
  owner({ comm: 'we"ird\\name\n\u0001\u2028é', shared: true }),
  owner({ comm: '', uid: 0 }),
  owner({ netns: 4026532000, container: { runtime: 'docker', id: 'abc123', name: 'web' } as never, unit: 'docker-abc.scope' }),
  owner({ netns: null }),
];

/** Every end list toFlowView can be given for a record: none, one, two, on either side. */
function endLists(hasReply: boolean, i: number): EndOwner[][] {
  const a = OWNERS[i % OWNERS.length]!;
  const b = OWNERS[(i * 3 + 1) % OWNERS.length]!;
  const lists: EndOwner[][] = [[], [{ side: 'orig', owner: a }], [{ side: 'orig', owner: null }]];
  if (hasReply) lists.push([{ side: 'reply', owner: a }], [{ side: 'orig', owner: a }, { side: 'reply', owner: b }], [{ side: 'reply', owner: b }, { side: 'orig', owner: a }]);
  return lists;
}

const DIRS: Direction[] = ['outbound', 'inbound', 'local', 'forwarded'];

function check(buf: Buffer, count: number, now: number): number {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let n = 0;
  for (let i = 0; i < count; i++) {
    const base = i * RECORD_SIZE;
    const r = decodeOne(view, buf, base);
    for (const ends of endLists(r.reply !== null, i)) {
      const dir = DIRS[(i + ends.length) % DIRS.length]!;
      const attributed: AttributedEnd[] = ends.map((e) => ({ end: endOf(e.side === 'orig' ? r.orig : r.reply!, e.side), owner: e.owner }));
      const want = JSON.stringify(toFlowView(r, dir, attributed, now));
      assert.equal(flowJson(view, buf, base, dir, ends, now), want, `record ${i}`);
      n++;
    }
  }
  return n;
}

test('flowJson: the text of JSON.stringify(toFlowView(…)) on flows the kernel sent', () => {
  let n = 0;
  for (const f of ['dump-all-acct-ts.bin', 'dump-v6-acct-ts.bin', 'dump-noacct.bin']) {
    const r = getAddon().parse(fixture(f), false);
    assert.ok(r.count > 0, f);
    // "now" before, at and long after the flows' start (age_s clamps at 0; fractions).
    for (const now of [0, 1764000000123.456, 4102444800000]) n += check(r.records, r.count, now);
  }
  assert.ok(n > 50);
});

test('flowJson: the same on random records, every optional field present or absent', () => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const count = 3000;
  const buf = Buffer.alloc(count * RECORD_SIZE);
  for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rnd() * 256);
  for (let i = 0; i < count; i++) {
    const base = i * RECORD_SIZE;
    buf[base + 1] = rnd() < 0.5 ? 2 : 10; // AF_INET / AF_INET6
    buf[base + 2] = [6, 17, 1, 58, 132, 47, 250][i % 7]!;
    buf[base + 3] = i % 13; // known TCP states and unknown ones (STATE_n)
    if (i % 5 === 0) buf.writeBigUInt64LE(2n ** 53n - 1n, base + 56); // counters up to 2^53
    if (i % 11 === 0) buf.fill(0, base + 104, base + 168); // zero addresses (0.0.0.0, ::)
    if (i % 17 === 0) buf.writeUInt32BE(0x7f000001, base + 104); // loopback
  }
  assert.ok(check(buf, count, 1764000000000) >= count * 3);
});

test('ByteSink: streams full chunks, a fresh buffer each, the text unchanged across chunk ends', () => {
  const r = getAddon().parse(fixture('dump-all-acct-ts.bin'), false);
  const view = new DataView(r.records.buffer, r.records.byteOffset, r.records.byteLength);
  const ends: EndOwner[] = [{ side: 'orig', owner: owner({ comm: 'é'.repeat(2000) }) }];
  const chunks: Buffer[] = [];
  const o = new ByteSink((c) => {
    chunks.push(c);
  }, 5000); // smaller than one flow with that name
  let want = '';
  for (let k = 0; k < 20; k++)
    for (let i = 0; i < r.count; i++) {
      writeFlowJson(o, view, r.records, i * RECORD_SIZE, 'outbound', ends, 0);
      want += flowJson(view, r.records, i * RECORD_SIZE, 'outbound', ends, 0);
    }
  o.end();
  assert.ok(chunks.length > 10);
  assert.equal(new Set(chunks.map((c) => c.buffer)).size, chunks.length, 'each chunk its own memory');
  assert.equal(Buffer.concat(chunks).toString('utf8'), want);
  // A consumer that is done with each chunk when it returns (true): one buffer written again,
  // unless a flow needs more than a buffer (then a larger one for it, and back).
  let text = '';
  let want2 = '';
  const seen = new Set<ArrayBufferLike>();
  const reuse = new ByteSink((c) => {
    text += c.toString('utf8');
    seen.add(c.buffer);
    return true;
  }, 5000);
  const small: EndOwner[] = [{ side: 'orig', owner: owner({ comm: 'nginx' }) }];
  for (let k = 0; k < 20; k++)
    for (let i = 0; i < r.count; i++) {
      writeFlowJson(reuse, view, r.records, i * RECORD_SIZE, 'outbound', small, 0);
      want2 += flowJson(view, r.records, i * RECORD_SIZE, 'outbound', small, 0);
    }
  reuse.end();
  assert.equal(seen.size, 1);
  assert.equal(text, want2);
  writeFlowJson(reuse, view, r.records, 0, 'outbound', ends, 0); // larger than a buffer
  writeFlowJson(reuse, view, r.records, 0, 'outbound', small, 0);
  reuse.end();
  assert.equal(text, want2 + flowJson(view, r.records, 0, 'outbound', ends, 0) + flowJson(view, r.records, 0, 'outbound', small, 0));
  assert.ok(want.includes('"comm":"éé'));
});

test('ByteSink: a chunk written out later (a slow pipe) gives its buffer back; one written at once is used again', () => {
  const r = getAddon().parse(fixture('dump-all-acct-ts.bin'), false);
  const view = new DataView(r.records.buffer, r.records.byteOffset, r.records.byteLength);
  const small: EndOwner[] = [{ side: 'orig', owner: owner({ comm: 'nginx' }) }];
  const pending: { copy: string; chunk: Buffer; written: () => void }[] = [];
  const sink = new ByteSink((chunk, written) => {
    pending.push({ copy: chunk.toString('utf8'), chunk, written });
    return false;
  }, 5000);
  let want = '';
  const write = (k: number) => {
    for (let j = 0; j < k; j++)
      for (let i = 0; i < r.count; i++) {
        writeFlowJson(sink, view, r.records, i * RECORD_SIZE, 'outbound', small, 0);
        want += flowJson(view, r.records, i * RECORD_SIZE, 'outbound', small, 0);
      }
  };
  write(10);
  sink.end();
  const firstBuffers = new Set(pending.map((p) => p.chunk.buffer));
  assert.equal(firstBuffers.size, pending.length, 'while nothing was written out: a fresh buffer each');
  // Every chunk so far is checked against its copy before its buffer can be written again.
  const out = pending.map((p) => (assert.equal(p.chunk.toString('utf8'), p.copy), p.copy)).join('');
  for (const p of pending.splice(0)) {
    p.written();
    p.written(); // a second call changes nothing
  }
  write(10);
  sink.end();
  const again = pending.filter((p) => firstBuffers.has(p.chunk.buffer)).length;
  assert.ok(again >= Math.min(8, pending.length) - 1, `buffers written out are used again (${again} of ${pending.length})`);
  assert.equal(out + pending.map((p) => p.chunk.toString('utf8')).join(''), want);
});

for (const withAges of [true, false])
test(`the addon writes the same objects (formatFlows), age_s from JavaScript ${withAges ? 'given' : 'not given'}; counters past 2^53 left to JavaScript`, () => {
  const addon = getAddon();
  let seed = 777;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const fixtures = ['dump-all-acct-ts.bin', 'dump-v6-acct-ts.bin', 'dump-noacct.bin'].map((f) => getAddon().parse(fixture(f), false));
  const count = 4000;
  const buf = Buffer.alloc(count * RECORD_SIZE);
  for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rnd() * 256);
  for (let i = 0; i < count; i++) {
    const base = i * RECORD_SIZE;
    const f = fixtures[i % 3]!;
    if (i % 4 === 0) f.records.copy(buf, base, (i % f.count) * RECORD_SIZE, (i % f.count) * RECORD_SIZE + RECORD_SIZE); // real records
    else {
      buf[base + 1] = rnd() < 0.5 ? 2 : 10;
      buf[base + 2] = [6, 17, 1, 58, 132, 47, 250][i % 7]!;
      buf[base + 3] = i % 13;
      let present = buf.readUInt32LE(base + 4);
      if (i % 3) present &= ~(1 << 6); // most without a start timestamp (no age_s): the addon writes them
      if (i % 5) for (const o of [48, 56, 64, 72]) buf.writeBigUInt64LE(BigInt(Math.floor(rnd() * 2 ** 53)), base + o);
      buf.writeUInt32LE(present >>> 0, base + 4);
      if (i % 11 === 0) buf.fill(0, base + 104, base + 168);
      if (i % 13 === 0) buf.fill(0, base + 110, base + 118); // zero runs inside IPv6 addresses
      if (i % 17 === 0) Buffer.from('00000000000000000000ffff0a000001', 'hex').copy(buf, base + 104); // IPv4-mapped
    }
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dirs = new Uint8Array(count).map((_, i) => i % 4);
  const skip = new Uint8Array(count).map((_, i) => (i % 29 === 0 ? 1 : 0));
  const endSide = new Int8Array(2 * count).fill(-1);
  const endOwner = new Uint32Array(2 * count);
  const texts = new OwnerTexts();
  const wantParts: string[] = [];
  let jsOnly = 0;
  for (let i = 0; i < count; i++) {
    const r = decodeOne(view, buf, i * RECORD_SIZE);
    const lists = endLists(r.reply !== null, i);
    const ends = lists[i % lists.length]!;
    ends.forEach((e, k) => {
      endSide[2 * i + k] = e.side === 'orig' ? 0 : 1;
      endOwner[2 * i + k] = texts.id(e.owner);
    });
    if (skip[i]) continue;
    wantParts.push(flowJson(view, buf, i * RECORD_SIZE, DIRS[dirs[i]!]!, ends, 1764000000000));
  }
  const { text, off } = texts.table();
  // age_s texts from JavaScript for half the runs; without them, records with a start time are
  // left to JavaScript too.
  const ages = withAges ? ageTexts(view, count, skip, 1764000000000) : { text: Buffer.alloc(0), off: new Uint32Array(0) };
  const out = Buffer.alloc(1 << 16); // small: the addon reports it full many times
  const got: string[] = [];
  let i = 0;
  let first = true;
  while (i < count) {
    const [next, end, status] = addon.formatFlows(buf, i, count, dirs, skip, endSide, endOwner, text, off, out, 0, first, ages.text, ages.off);
    if (end > 0) got.push(out.toString('utf8', 0, end));
    if (end > 0) first = false;
    i = next;
    if (status === 0) break;
    if (status === 1) {
      jsOnly++;
      const ends: EndOwner[] = [];
      for (let e = 0; e < 2; e++) if (endSide[2 * i + e]! >= 0) ends.push({ side: endSide[2 * i + e] === 0 ? 'orig' : 'reply', owner: texts.owner(endOwner[2 * i + e]!) });
      got.push(`${first ? '' : ','}${flowJson(view, buf, i * RECORD_SIZE, DIRS[dirs[i]!]!, ends, 1764000000000)}`);
      first = false;
      i++;
    }
  }
  assert.ok(withAges ? jsOnly > 10 && jsOnly < 600 : jsOnly > 600 && jsOnly < count / 2, `records left to JavaScript: ${jsOnly}`);
  const gotText = got.join('');
  const wantText = wantParts.join(',');
  if (gotText !== wantText) {
    const a = gotText.split('},{"id"');
    const b = wantText.split('},{"id"');
    const k = a.findIndex((x, j) => x !== b[j]);
    assert.equal(a[k], b[k], `first differing object: ${k}`);
  }
  assert.equal(gotText, wantText);
  assert.throws(() => addon.formatFlows(buf, 0, count + 1, dirs, skip, endSide, endOwner, text, off, out, 0, true, ages.text, ages.off), RangeError);
});
