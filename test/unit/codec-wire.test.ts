// Unit tests of the protobuf wire primitives (src/onnx/wire.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reader, Writer, WireType, bigVarintSize, utf8Length, varintSize } from '../../src/onnx/wire.js';
import { LowbitError } from '../../src/errors.js';

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

test('varints match the protobuf encoding for edge values', () => {
  const cases: [bigint, string][] = [
    [0n, '00'],
    [1n, '01'],
    [127n, '7f'],
    [128n, '8001'],
    [300n, 'ac02'],
    [2n ** 32n, '8080808010'],
    [2n ** 53n + 1n, '8180808080808010'],
    [INT64_MAX, 'ffffffffffffffff7f'],
    [-1n, 'ffffffffffffffffff01'],
    [-2n, 'feffffffffffffffff01'],
    [INT64_MIN, '80808080808080808001'],
  ];
  for (const [v, want] of cases) {
    const w = new Writer(1).int64(v);
    assert.equal(hex(w.finish()), want, `encode ${v}`);
    assert.equal(bigVarintSize(v), want.length / 2, `size of ${v}`);
    const r = new Reader(w.finish());
    assert.equal(r.int64(), v, `decode ${v}`);
    assert.equal(r.pos, want.length / 2);
  }
});

test('uint64 reads the full unsigned range; int32 sign-extends to 10 bytes', () => {
  const u = 2n ** 64n - 1n;
  assert.equal(new Reader(new Writer().int64(u).finish()).uint64(), u);
  const w = new Writer().int32(-5);
  assert.equal(w.finish().length, 10);
  assert.equal(new Reader(w.finish()).int32(), -5);
  assert.equal(new Reader(new Writer().int32(2 ** 31 - 1).finish()).int32(), 2 ** 31 - 1);
});

test('varintSize agrees with the writer', () => {
  for (const v of [0, 1, 127, 128, 16383, 16384, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 35, 2 ** 53 - 1]) {
    assert.equal(varintSize(v), new Writer().varint(v).finish().length, String(v));
  }
});

test('floats and doubles are little-endian', () => {
  const w = new Writer().float(1.5).double(-2.25);
  assert.equal(hex(w.finish()), '0000c03f' + '00000000000002c0');
  const r = new Reader(w.finish());
  assert.equal(r.float(), 1.5);
  assert.equal(r.double(), -2.25);
});

test('bytes are zero-copy views into the input buffer', () => {
  const buf = new Writer().bytes(new Uint8Array([9, 8, 7])).finish();
  const r = new Reader(buf);
  const b = r.bytes(buf.length);
  assert.deepEqual([...b], [9, 8, 7]);
  assert.equal(b.buffer, buf.buffer);
  assert.equal(b.byteOffset, buf.byteOffset + 1);
});

test('a Node Buffer input yields plain Uint8Array views', () => {
  const r = new Reader(Buffer.from([2, 65, 66]));
  const b = r.bytes(3);
  assert.equal(Object.getPrototypeOf(b), Uint8Array.prototype);
});

test('strings round-trip UTF-8, keep a leading BOM, and size correctly', () => {
  for (const s of ['', 'relu_1', 'ä', '名前', '😀x', '\uFEFFbom', 'x'.repeat(200) + 'é']) {
    const buf = new Writer().string(s).finish();
    assert.equal(utf8Length(s), Buffer.byteLength(s), s);
    assert.equal(new Reader(buf).string(buf.length), s);
  }
});

test('skip returns the raw field including its tag, for every wire type and groups', () => {
  const w = new Writer();
  w.tag(100, WireType.VARINT).int64(-1n);
  w.tag(101, WireType.I64).double(1);
  w.tag(102, WireType.LEN).bytes(new Uint8Array([1, 2, 3]));
  w.tag(103, WireType.I32).float(1);
  w.tag(104, WireType.SGROUP).tag(1, WireType.VARINT).varint(5).tag(2, WireType.SGROUP).tag(2, WireType.EGROUP).tag(104, WireType.EGROUP);
  const buf = w.finish();
  const r = new Reader(buf);
  const pieces: Uint8Array[] = [];
  while (r.pos < buf.length) {
    const start = r.pos;
    pieces.push(r.skip(start, r.uint32(), buf.length));
  }
  assert.equal(pieces.length, 5);
  assert.deepEqual(Buffer.concat(pieces), Buffer.from(buf));
  assert.equal(pieces[0].length, 2 + 10);
  assert.equal(pieces[2].length, 2 + 1 + 3);
});

function throwsLowbit(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected LowbitError, got ${e}`);
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

test('malformed input raises LowbitError, never RangeError', () => {
  throwsLowbit(() => new Reader(new Uint8Array([0x80, 0x80])).int64(), 'TRUNCATED', /truncated at byte 2/);
  throwsLowbit(() => new Reader(new Uint8Array([0xff])).uint32(), 'TRUNCATED', /truncated/);
  throwsLowbit(() => new Reader(new Uint8Array(11).fill(0xff)).int64(), 'NOT_ONNX', /longer than 10 bytes/);
  throwsLowbit(() => new Reader(new Uint8Array([1, 2])).float(), 'TRUNCATED', /truncated/);
  throwsLowbit(() => new Reader(new Uint8Array([1, 2, 3])).double(), 'TRUNCATED', /truncated/);
  throwsLowbit(() => new Reader(new Uint8Array([5, 1])).bytes(2), 'TRUNCATED', /truncated at byte 2/);
  // Inside the buffer but past the enclosing message.
  throwsLowbit(() => new Reader(new Uint8Array([3, 1, 1, 1])).bytes(2), 'NOT_ONNX', /past the end of its enclosing message/);
  throwsLowbit(() => new Reader(new Uint8Array([0x0e, 0])).skip(0, new Reader(new Uint8Array([0x0e])).uint32(), 2), 'NOT_ONNX', /invalid wire type 6/);
  throwsLowbit(() => new Reader(new Uint8Array([0x00, 0])).skip(0, 0, 2), 'NOT_ONNX', /field number 0/);
  // Group whose end tag names another field.
  const g = new Writer().tag(5, WireType.SGROUP).tag(6, WireType.EGROUP).finish();
  const r = new Reader(g);
  throwsLowbit(() => r.skip(0, r.uint32(), g.length), 'NOT_ONNX', /mismatched end-group/);
});

test('Writer grows from a tiny capacity and keeps earlier bytes', () => {
  const w = new Writer(1);
  const big = new Uint8Array(10000).map((_, i) => i & 0xff);
  w.tag(1, WireType.LEN).bytes(big).tag(2, WireType.VARINT).varint(7);
  const out = w.finish();
  assert.equal(out.length, 1 + 2 + 10000 + 2);
  assert.deepEqual(out.subarray(3, 10003), big);
  assert.equal(out[out.length - 1], 7);
});
