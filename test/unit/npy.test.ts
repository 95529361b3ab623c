// .npy reader/writer: round trips for every dtype (in memory and streamed), NumPy-written fixtures
// (test/fixtures/data, made once by make.py), and bad files -> LowbitError naming the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LowbitError } from '../../src/errors.js';
import { DTYPES, halfToFloat, type DType, type NdArray } from '../../src/data/dtype.js';
import { encodeNpy, openNpy, parseNpy, writeNpy } from '../../src/data/npy.js';
import { throwsLowbit } from '../helpers.js';

const FIX = fileURLToPath(new URL('../fixtures/data/', import.meta.url));
const fx = (name: string): string => join(FIX, name);

function tmp(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-npy-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Asserts fn throws a LowbitError with `code` whose message contains every `parts` string. */

/** A 3x2x2 array of each dtype with edge values (min/max of the type, negative zero, fractions). */
function sample(dtype: DType): NdArray {
  const n = 12;
  const vals: Record<DType, () => NdArray['data']> = {
    float32: () => Float32Array.from({ length: n }, (_, i) => (i - 6) / 3 + (i === 11 ? 3.4e38 : 0)),
    float64: () => Float64Array.from({ length: n }, (_, i) => (i === 0 ? -0 : i === 11 ? 1.7e308 : Math.PI * (i - 5))),
    float16: () => Uint16Array.from({ length: n }, (_, i) => [0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x3555][i % 6]!),
    int8: () => Int8Array.from({ length: n }, (_, i) => [-128, 127, 0, -1][i % 4]!),
    uint8: () => Uint8Array.from({ length: n }, (_, i) => (i * 23) % 256),
    int16: () => Int16Array.from({ length: n }, (_, i) => [-32768, 32767, 5, -7][i % 4]!),
    uint16: () => Uint16Array.from({ length: n }, (_, i) => [65535, 0, 1234][i % 3]!),
    int32: () => Int32Array.from({ length: n }, (_, i) => [-(2 ** 31), 2 ** 31 - 1, 42][i % 3]!),
    uint32: () => Uint32Array.from({ length: n }, (_, i) => [2 ** 32 - 1, 0, 99][i % 3]!),
    int64: () => BigInt64Array.from({ length: n }, (_, i) => [-(2n ** 63n), 2n ** 63n - 1n, 5n][i % 3]!),
    uint64: () => BigUint64Array.from({ length: n }, (_, i) => [2n ** 64n - 1n, 0n, 2n ** 40n][i % 3]!),
    bool: () => Uint8Array.from({ length: n }, (_, i) => i % 3 === 0 ? 1 : 0),
  };
  return { dtype, shape: [3, 2, 2], data: vals[dtype]() };
}

const ALL = Object.keys(DTYPES) as DType[];

test('encodeNpy -> parseNpy round-trips every dtype, with a NumPy-compatible header', () => {
  for (const dtype of ALL) {
    const a = sample(dtype);
    const bytes = encodeNpy(a);
    assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], dtype);
    const dataOffset = 10 + (bytes[8]! | (bytes[9]! << 8));
    assert.equal(dataOffset % 64, 0, `${dtype}: data must start 64-byte aligned`);
    assert.equal(bytes[dataOffset - 1], 0x0a, `${dtype}: header ends with a newline`);
    const b = parseNpy(bytes);
    assert.equal(b.dtype, dtype);
    assert.deepEqual(b.shape, [3, 2, 2]);
    assert.equal(b.data.constructor, a.data.constructor);
    assert.deepEqual([...b.data], [...a.data], dtype);
  }
});

test('writeNpy -> openNpy streams the same rows for every dtype', () => {
  const t = tmp();
  try {
    for (const dtype of ALL) {
      const a = sample(dtype);
      const p = join(t.dir, `${dtype}.npy`);
      writeNpy(p, a);
      assert.deepEqual(readFileSync(p), Buffer.from(encodeNpy(a)), `${dtype}: writeNpy == encodeNpy`);
      const f = openNpy(p);
      assert.equal(f.dtype, dtype);
      assert.deepEqual(f.shape, [3, 2, 2]);
      assert.equal(f.count, 3);
      const rows = f.readRows(1, 2);
      assert.deepEqual(rows.shape, [2, 2, 2]);
      assert.deepEqual([...rows.data], [...a.data].slice(4, 12), dtype);
      assert.deepEqual([...f.readRows(2, 1).data], [...a.data].slice(8, 12));
      assert.deepEqual(f.readRows(3, 0).shape, [0, 2, 2]);
      assert.deepEqual([...f.readAll().data], [...a.data]);
    }
  } finally {
    t.done();
  }
});

test('readRows reads only the rows asked for, at their offset', () => {
  const t = tmp();
  try {
    const p = join(t.dir, 'big.npy');
    const rows = 1000;
    const data = Float32Array.from({ length: rows * 16 }, (_, i) => i);
    writeNpy(p, { dtype: 'float32', shape: [rows, 4, 4], data });
    const f = openNpy(p);
    // Cut the file after opening: early rows still read (they are all that is read), late ones fail.
    const full = readFileSync(p);
    writeFileSync(p, full.subarray(0, full.length - 64 * 100));
    assert.deepEqual([...f.readRows(123, 2).data], [...data.subarray(123 * 16, 125 * 16)]);
    throwsLowbit(() => f.readRows(950, 10), 'BAD_DATA', 'big.npy', 'truncated');
  } finally {
    t.done();
  }
});

test('readRows rejects ranges outside the file', () => {
  const f = openNpy(fx('float32.npy'));
  throwsLowbit(() => f.readRows(4, 2), 'BAD_OPTION', 'float32.npy', '[4, 6)');
  throwsLowbit(() => f.readRows(-1, 1), 'BAD_OPTION');
  throwsLowbit(() => f.readRows(0.5, 1), 'BAD_OPTION');
});

test('reads NumPy-written files of every dtype', () => {
  const f32 = openNpy(fx('float32.npy'));
  assert.deepEqual(f32.shape, [5, 2, 3]);
  assert.deepEqual([...f32.readRows(4, 1).data], [24, 25, 26, 27, 28, 29].map((i) => Math.fround(i / 10)));
  const f64 = parseNpy(readFileSync(fx('float64.npy')));
  assert.deepEqual(f64.shape, [4, 3]);
  assert.deepEqual([...f64.data], Array.from({ length: 12 }, (_, i) => i * 0.25 - 1));
  const f16 = openNpy(fx('float16.npy')).readAll();
  assert.equal(f16.dtype, 'float16');
  assert.deepEqual([...(f16.data as Uint16Array)].map(halfToFloat), [0.5, -2, 65504, halfToFloat(0x068e), 0, -0]);
  assert.ok(Math.abs(halfToFloat(f16.data[3] as number) - 1e-4) < 1e-7);
  for (const t of ['int8', 'int16', 'int32'] as const) {
    const a = openNpy(fx(`${t}.npy`)).readAll();
    assert.equal(a.dtype, t);
    assert.deepEqual([...a.data], [-3, -2, -1, 0, 1, 2], t);
  }
  assert.deepEqual([...openNpy(fx('int64.npy')).readAll().data], [-3n, -2n, -1n, 0n, 1n, 2n]);
  assert.deepEqual([...openNpy(fx('uint8.npy')).readAll().data], [0, 1, 255, 128, 7, 9]);
  assert.deepEqual([...openNpy(fx('uint16.npy')).readAll().data], [0, 1, 65535, 300, 7, 9]);
  assert.deepEqual([...openNpy(fx('uint32.npy')).readAll().data], [0, 1, 4294967295, 70000, 7, 9]);
  assert.deepEqual([...openNpy(fx('uint64.npy')).readAll().data], [0n, 1n, 2n ** 64n - 1n, 2n ** 40n, 7n, 9n]);
  const b = openNpy(fx('bool.npy')).readAll();
  assert.equal(b.dtype, 'bool');
  assert.deepEqual([...b.data], [1, 0, 1, 0, 0, 1]);
});

test('big-endian files are converted to host order', () => {
  const f = openNpy(fx('bigendian_f4.npy'));
  assert.equal(f.dtype, 'float32');
  assert.deepEqual([...f.readRows(1, 1).data], [3, Math.fround(1e30)]);
  assert.deepEqual([...parseNpy(readFileSync(fx('bigendian_f4.npy'))).data], [1.5, -2.25, 3, Math.fround(1e30)]);
  assert.deepEqual([...openNpy(fx('bigendian_i8.npy')).readAll().data], [1n, -2n, 2n ** 40n]);
});

test('format versions 2.0 and 3.0, 0-d and empty arrays', () => {
  for (const v of ['v2.npy', 'v3.npy']) {
    const f = openNpy(fx(v));
    assert.equal(f.version[0], Number(v[1]));
    assert.deepEqual(f.shape, [2, 4]);
    assert.deepEqual([...f.readRows(1, 1).data], [0, 1, 2, 3]);
  }
  const s = openNpy(fx('scalar.npy'));
  assert.deepEqual(s.shape, []);
  assert.equal(s.count, 1);
  assert.deepEqual(s.readAll(), { dtype: 'float32', shape: [], data: new Float32Array([2.5]) });
  const e = openNpy(fx('empty.npy'));
  assert.deepEqual([e.count, ...e.readAll().shape], [0, 0, 3]);
  // Round trip of a 0-d and a 1-d array keeps NumPy's tuple spelling: '()' and '(5,)'.
  const header = (a: NdArray) => new TextDecoder().decode(encodeNpy(a).subarray(10, 80));
  assert.match(header({ dtype: 'int8', shape: [], data: new Int8Array([7]) }), /'shape': \(\), \}/);
  assert.match(header({ dtype: 'int8', shape: [5], data: new Int8Array(5) }), /'shape': \(5,\), \}/);
});

test('bad files: truncated, trailing bytes, bad magic, Fortran order, unsupported dtypes', () => {
  const t = tmp();
  try {
    const good = readFileSync(fx('float32.npy'));
    const cut = join(t.dir, 'cut.npy');
    writeFileSync(cut, good.subarray(0, good.length - 5));
    throwsLowbit(() => openNpy(cut), 'BAD_DATA', 'cut.npy', 'truncated', '[5, 2, 3]');
    throwsLowbit(() => parseNpy(good.subarray(0, good.length - 5), 'mem.npy'), 'BAD_DATA', 'mem.npy', 'truncated');
    const inHeader = join(t.dir, 'inheader.npy');
    writeFileSync(inHeader, good.subarray(0, 40));
    throwsLowbit(() => openNpy(inHeader), 'BAD_DATA', 'inheader.npy', 'truncated');
    const long = join(t.dir, 'long.npy');
    writeFileSync(long, Buffer.concat([good, Buffer.from([1, 2, 3, 4])]));
    throwsLowbit(() => openNpy(long), 'BAD_DATA', 'long.npy', 'longer');
    const magic = join(t.dir, 'magic.npy');
    writeFileSync(magic, Buffer.concat([Buffer.from('PK'), good.subarray(2)]));
    throwsLowbit(() => openNpy(magic), 'BAD_DATA', 'magic.npy', 'magic');
    const tiny = join(t.dir, 'tiny.npy');
    writeFileSync(tiny, Buffer.from([0x93]));
    throwsLowbit(() => openNpy(tiny), 'BAD_DATA', 'tiny.npy');
    const version = join(t.dir, 'version.npy');
    writeFileSync(version, Buffer.concat([good.subarray(0, 6), Buffer.from([9, 0]), good.subarray(8)]));
    throwsLowbit(() => openNpy(version), 'BAD_DATA', 'version.npy', '9.0');
    const eq = join(t.dir, 'eq.npy');
    writeFileSync(eq, Buffer.from(good.toString('latin1').replace("'<f4'", "'=f4'"), 'latin1'));
    throwsLowbit(() => openNpy(eq), 'BAD_DATA', 'eq.npy', "'=f4'");
  } finally {
    t.done();
  }
  const fortran = throwsLowbit(() => openNpy(fx('fortran.npy')), 'BAD_DATA', 'fortran.npy', 'Fortran');
  assert.match(fortran.hint ?? '', /ascontiguousarray/);
  throwsLowbit(() => openNpy(fx('structured.npy')), 'BAD_DATA', 'structured.npy', 'structured');
  throwsLowbit(() => openNpy(join(FIX, 'missing.npy')), 'FILE_NOT_FOUND', 'missing.npy');
  throwsLowbit(() => openNpy(FIX), 'BAD_DATA', 'fixtures');
});

test('encodeNpy rejects malformed arrays instead of writing garbage', () => {
  throwsLowbit(() => encodeNpy({ dtype: 'float32', shape: [2, 2], data: new Float32Array(3) }), 'BAD_DATA', '[2, 2]');
  throwsLowbit(() => encodeNpy({ dtype: 'float32', shape: [2], data: new Float64Array(2) }), 'BAD_DATA', 'Float32Array');
  throwsLowbit(() => encodeNpy({ dtype: 'complex64' as DType, shape: [1], data: new Float32Array(2) }), 'BAD_DATA', 'complex64');
});
