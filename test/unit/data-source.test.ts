// Calibration data sources: opening .npy/.npz, batching, slicing/splitting, binding to model inputs
// (names, dtypes + conversions, shapes, batch axis), NaN/Inf detection while streaming.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LowbitError } from '../../src/errors.js';
import { DataType } from '../../src/onnx/proto.js';
import { bindToModelInputs, dataSourceFromArrays, openDataSource, split, UNNAMED, type ModelInput } from '../../src/data/calib-data.js';
import { throwsLowbit } from '../helpers.js';

const FIX = fileURLToPath(new URL('../fixtures/data/', import.meta.url));
const fx = (name: string): string => join(FIX, name);


const f32 = (i: number): number => Math.fround(i / 10); // float32.npy holds i / 10, shape [5, 2, 3]
const input = (name: string, elemType: number, dims: ModelInput['dims']): ModelInput => ({ name, elemType, dims });

test('a .npy source: one unnamed array, batches stream in order', () => {
  const ds = openDataSource(fx('float32.npy'));
  assert.equal(ds.kind, 'npy');
  assert.equal(ds.count, 5);
  assert.deepEqual(ds.arrays, [{ dtype: 'float32', shape: [5, 2, 3] }]);
  const batches = [...ds.batches(2)];
  assert.deepEqual(batches.map((b) => Object.keys(b)), [[UNNAMED], [UNNAMED], [UNNAMED]]);
  assert.deepEqual(batches.map((b) => b[UNNAMED]!.shape), [[2, 2, 3], [2, 2, 3], [1, 2, 3]]);
  assert.deepEqual([...batches[2]![UNNAMED]!.data], [24, 25, 26, 27, 28, 29].map(f32));
  assert.deepEqual([...ds.batches(10, { start: 3, end: 4 })].map((b) => [...b[UNNAMED]!.data]), [[18, 19, 20, 21, 22, 23].map(f32)]);
  throwsLowbit(() => ds.batches(0), 'BAD_OPTION', 'batch size');
  throwsLowbit(() => ds.batches(2, { start: 4, end: 6 }), 'BAD_OPTION', 'float32.npy', '[4, 6)');
});

test('an .npz source: named arrays, all of one sample count', () => {
  for (const file of ['savez.npz', 'savez_compressed.npz']) {
    const ds = openDataSource(fx(file));
    assert.equal(ds.kind, 'npz');
    assert.equal(ds.count, 4);
    assert.deepEqual(ds.arrays.map((a) => [a.name, a.dtype, a.shape]), [['x', 'float32', [4, 1, 2, 2]], ['mask', 'int64', [4, 3]], ['labels', 'int32', [4]]]);
    const [b0, b1] = [...ds.batches(3)];
    assert.deepEqual(Object.keys(b0!), ['x', 'mask', 'labels']);
    assert.deepEqual([...b1!.labels!.data], [1]);
    assert.deepEqual([...b1!.mask!.data], [9n, 10n, 11n]);
  }
  throwsLowbit(() => openDataSource(fx('uneven.npz')), 'DATA_MISMATCH', 'uneven.npz', "'x': 4", "'y': 3");
  throwsLowbit(() => openDataSource(fx('scalar.npy')), 'BAD_DATA', 'scalar.npy', '0-d');
  throwsLowbit(() => openDataSource(fx('make.py')), 'BAD_DATA', 'make.py', 'not a NumPy');
  throwsLowbit(() => openDataSource(fx('absent.npz')), 'FILE_NOT_FOUND', 'absent.npz');
});

test('slice and split hold out the last samples', () => {
  const ds = openDataSource(fx('float32.npy'));
  const { head, tail } = split(ds, { count: 2 });
  assert.deepEqual([head.count, tail.count], [3, 2]);
  assert.deepEqual([...[...tail.batches(8)][0]![UNNAMED]!.data].slice(0, 1), [f32(18)]);
  assert.deepEqual([...[...head.batches(8)][0]![UNNAMED]!.shape], [3, 2, 3]);
  assert.deepEqual([split(ds, { fraction: 0.4 }).tail.count, split(ds, { fraction: 0 }).tail.count, split(ds, { fraction: 1 }).head.count], [2, 0, 0]);
  const inner = ds.slice(1, 4).slice(1, 2);
  assert.deepEqual([...[...inner.batches(4)][0]![UNNAMED]!.data].slice(0, 1), [f32(12)]);
  throwsLowbit(() => split(ds, { count: 6 }), 'BAD_OPTION', '6 of 5');
  throwsLowbit(() => split(ds, { fraction: 1.5 }), 'BAD_OPTION');
  throwsLowbit(() => ds.slice(2, 9), 'BAD_OPTION', '[2, 9)');
});

test('NaN in a float batch -> NON_FINITE with file, array and sample index', () => {
  const ds = openDataSource(fx('nan.npy'));
  const it = ds.batches(2)[Symbol.iterator]();
  assert.equal(it.next().done, false); // samples 0-1 are clean
  throwsLowbit(() => it.next(), 'NON_FINITE', 'nan.npy', 'sample 2', 'NaN');
  const b = bindToModelInputs(ds, [input('pixels', DataType.FLOAT, ['N', 2])]);
  throwsLowbit(() => [...b.batches(1)], 'NON_FINITE', 'nan.npy', "input 'pixels'", 'sample 2');
  // The samples before it stream fine.
  assert.equal([...b.batches(1, { end: 2 })].length, 2);
  const inf = dataSourceFromArrays({ '': { dtype: 'float16', shape: [2, 1], data: Uint16Array.from([0x3c00, 0xfc00]) } }, 'half');
  throwsLowbit(() => [...inf.batches(2)], 'NON_FINITE', 'half', 'sample 1', '-Infinity');
});

test('bind .npy: exactly one model input, any name', () => {
  const ds = openDataSource(fx('float32.npy'));
  const b = bindToModelInputs(ds, [input('images', DataType.FLOAT, ['batch', 2, 3])]);
  assert.equal(b.count, 5);
  assert.equal(b.maxBatch, Infinity);
  assert.equal(b.fixedBatch, undefined);
  assert.deepEqual(b.inputs.map((i) => [i.name, i.dtype, i.conversion, i.sampleShape, i.batched]), [['images', 'float32', 'none', [2, 3], true]]);
  const batches = [...b.batches(4)];
  assert.deepEqual(batches.map((x) => Object.keys(x)), [['images'], ['images']]);
  assert.deepEqual(batches.map((x) => x.images!.shape[0]), [4, 1]);
  const e = throwsLowbit(
    () => bindToModelInputs(ds, [input('input_ids', DataType.INT64, ['N', 8]), input('attention_mask', DataType.INT64, ['N', 8])]),
    'DATA_MISMATCH', 'float32.npy', "'input_ids'", "'attention_mask'", '2 inputs',
  );
  assert.match(e.hint ?? '', /\.npz.*np\.savez\(path, input_ids=\.\.\., attention_mask=\.\.\.\)/);
});

test('bind .npz: by input name; extra arrays ignored; missing names listed', () => {
  const ds = openDataSource(fx('savez.npz'));
  const b = bindToModelInputs(ds, [input('mask', DataType.INT64, ['N', 3]), input('x', DataType.FLOAT, ['N', 1, 2, 'w'])]);
  assert.deepEqual(b.ignored, ['labels']);
  const [first] = [...b.batches(2)];
  assert.deepEqual(Object.keys(first!), ['mask', 'x']);
  assert.deepEqual([...first!.mask!.data], [0n, 1n, 2n, 3n, 4n, 5n]);
  throwsLowbit(
    () => bindToModelInputs(ds, [input('x', DataType.FLOAT, ['N', 1, 2, 2]), input('pixel_values', DataType.FLOAT, ['N', 3])]),
    'DATA_MISMATCH', 'savez.npz', "'pixel_values'", "arrays in file: 'x', 'mask', 'labels'", "unused: 'mask', 'labels'",
  );
});

test('bind: dtype mismatches and safe conversions', () => {
  const npz = openDataSource(fx('savez.npz'));
  throwsLowbit(() => bindToModelInputs(npz, [input('mask', DataType.FLOAT, ['N', 3])]), 'DATA_MISMATCH', 'savez.npz', "input 'mask'", 'FLOAT', 'int64');
  throwsLowbit(() => bindToModelInputs(npz, [input('x', DataType.FLOAT16, ['N', 1, 2, 2])]), 'DATA_MISMATCH', "input 'x'", 'FLOAT16', 'float32');
  throwsLowbit(() => bindToModelInputs(npz, [input('x', DataType.STRING, ['N'])]), 'UNSUPPORTED_MODEL', 'STRING');
  // float64 -> FLOAT rounds to float32.
  const f64 = bindToModelInputs(openDataSource(fx('float64.npy')), [input('v', DataType.FLOAT, ['N', 3])]);
  assert.equal(f64.inputs[0]!.conversion, 'round');
  const v = [...f64.batches(4)][0]!.v!;
  assert.ok(v.data instanceof Float32Array);
  assert.deepEqual([...v.data], Array.from({ length: 12 }, (_, i) => i * 0.25 - 1));
  // int32 labels -> INT64 widen; int64 mask -> INT32 checked.
  const ints = bindToModelInputs(npz, [input('labels', DataType.INT64, ['N']), input('mask', DataType.INT32, ['N', 3])]);
  const ib = [...ints.batches(4)][0]!;
  assert.deepEqual([...ib.labels!.data], [3n, 1n, 4n, 1n]);
  assert.ok(ib.mask!.data instanceof Int32Array);
  assert.deepEqual([...ib.mask!.data], Array.from({ length: 12 }, (_, i) => i));
  // A value that does not fit is named with its sample.
  const big = dataSourceFromArrays({ ids: { dtype: 'int64', shape: [3, 1], data: BigInt64Array.from([1n, 2n, 2n ** 40n]) } }, 'ids.npz');
  const bb = bindToModelInputs(big, [input('ids', DataType.INT32, ['N', 1])]);
  throwsLowbit(() => [...bb.batches(3)], 'DATA_MISMATCH', 'ids.npz', "input 'ids'", 'sample 2', '1099511627776');
  // float64 overflowing float32 is reported as non-finite after conversion.
  const huge = dataSourceFromArrays({ '': { dtype: 'float64', shape: [2], data: Float64Array.from([1, 1e300]) } }, 'huge.npy');
  throwsLowbit(() => [...bindToModelInputs(huge, [input('x', DataType.FLOAT, ['N'])]).batches(2)], 'NON_FINITE', 'huge.npy', 'sample 1', 'Infinity', 'float64 -> float32');
});

test('bind: per-sample shape checks, symbolic dims, rank', () => {
  const ds = openDataSource(fx('float32.npy')); // [5, 2, 3]
  throwsLowbit(() => bindToModelInputs(ds, [input('img', DataType.FLOAT, ['N', 3, 2])]), 'DATA_MISMATCH', 'float32.npy', "'img'", '[3, 2]', '[2, 3]', '[5, 2, 3]');
  throwsLowbit(() => bindToModelInputs(ds, [input('img', DataType.FLOAT, ['N', 6])]), 'DATA_MISMATCH', '[6]', '[2, 3]');
  throwsLowbit(() => bindToModelInputs(ds, [input('img', DataType.FLOAT, ['N', 1, 2, 3])]), 'DATA_MISMATCH', '[1, 2, 3]');
  assert.equal(bindToModelInputs(ds, [input('img', DataType.FLOAT, [undefined, 'h', undefined])]).count, 5);
  // The same symbolic name must get one size across inputs.
  const two = dataSourceFromArrays({
    a: { dtype: 'int64', shape: [2, 4], data: new BigInt64Array(8) },
    b: { dtype: 'int64', shape: [2, 5], data: new BigInt64Array(10) },
  }, 'pair.npz');
  throwsLowbit(() => bindToModelInputs(two, [input('a', DataType.INT64, ['N', 'seq']), input('b', DataType.INT64, ['N', 'seq'])]), 'DATA_MISMATCH', 'pair.npz', "'seq'", '4', '5');
  assert.equal(bindToModelInputs(two, [input('a', DataType.INT64, ['N', 'seq']), input('b', DataType.INT64, ['N', 'other'])]).count, 2);
});

test('bind: fixed batch dimension and inputs without a batch axis', () => {
  const ds = openDataSource(fx('float32.npy')); // 5 samples of [2, 3]
  const one = bindToModelInputs(ds, [input('img', DataType.FLOAT, [1, 2, 3])]);
  assert.deepEqual([one.fixedBatch, one.maxBatch], [1, 1]);
  assert.deepEqual([...one.batches(32)].map((b) => b.img!.shape), Array(5).fill([1, 2, 3]));
  const two = bindToModelInputs(ds, [input('img', DataType.FLOAT, [2, 2, 3])]);
  // 5 samples, fixed batch 2: the trailing single sample cannot be fed.
  assert.deepEqual([...two.batches(1)].map((b) => [...b.img!.data][0]), [f32(0), f32(12)]);
  const flat = bindToModelInputs(ds, [input('img', DataType.FLOAT, [2, 3])]);
  assert.deepEqual([flat.inputs[0]!.batched, flat.maxBatch], [false, 1]);
  const fb = [...flat.batches(8, { start: 4 })];
  assert.deepEqual(fb.map((b) => b.img!.shape), [[2, 3]]);
  assert.deepEqual([...fb[0]!.img!.data], [24, 25, 26, 27, 28, 29].map(f32));
  throwsLowbit(() => one.batches(0), 'BAD_OPTION');
  const both = dataSourceFromArrays({ a: { dtype: 'float32', shape: [2, 1], data: new Float32Array(2) }, b: { dtype: 'float32', shape: [2, 1], data: new Float32Array(2) } });
  throwsLowbit(() => bindToModelInputs(both, [input('a', DataType.FLOAT, [1, 1]), input('b', DataType.FLOAT, [2, 1])]), 'UNSUPPORTED_MODEL', 'batch');
});

test('bound sources slice and split like raw ones', () => {
  const b = bindToModelInputs(openDataSource(fx('float32.npy')), [input('img', DataType.FLOAT, ['N', 2, 3])]);
  const { head, tail } = split(b, { count: 1 });
  assert.deepEqual([head.count, tail.count], [4, 1]);
  assert.deepEqual([...[...tail.batches(4)][0]!.img!.data].slice(0, 2), [f32(24), f32(25)]);
  assert.deepEqual([...head.batches(3)].map((x) => x.img!.shape[0]), [3, 1]);
  throwsLowbit(() => bindToModelInputs(openDataSource(fx('empty.npy')), [input('x', DataType.FLOAT, ['N', 3])]), 'BAD_DATA', 'empty.npy', '0 samples');
});
