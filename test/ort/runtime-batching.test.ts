// Batching: axis-0 views/concatenation, batch sizes, models with a fixed batch dim of 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { argmaxLastAxis, concatAxis0, sliceAxis0, splitAxis0 } from '../../src/runtime/arrays.js';
import { batchSizeOf, runBatch, runBatched, runBatches } from '../../src/runtime/batching.js';
import { Session } from '../../src/runtime/session.js';

const f32 = (shape: number[], values: number[]): NdArray => ({ dtype: 'float32', shape, data: new Float32Array(values) });

test('sliceAxis0 / splitAxis0 are views; concatAxis0 joins them back', () => {
  const a = f32([3, 2], [1, 2, 3, 4, 5, 6]);
  const mid = sliceAxis0(a, 1, 2);
  assert.deepEqual(mid.shape, [1, 2]);
  assert.equal(mid.data.buffer, a.data.buffer);
  assert.deepEqual([...mid.data], [3, 4]);
  const parts = splitAxis0(a, 2);
  assert.deepEqual(parts.map((p) => p.shape), [[2, 2], [1, 2]]);
  const back = concatAxis0(parts);
  assert.deepEqual(back.shape, [3, 2]);
  assert.deepEqual([...back.data], [1, 2, 3, 4, 5, 6]);
  const scalars = concatAxis0([{ dtype: 'int64', shape: [], data: new BigInt64Array([4n]) }, { dtype: 'int64', shape: [], data: new BigInt64Array([5n]) }]);
  assert.deepEqual(scalars.shape, [2]);
  assert.deepEqual([...scalars.data], [4n, 5n]);
  assert.throws(() => concatAxis0([a, f32([1, 3], [0, 0, 0])]), (e: unknown) => e instanceof LowbitError && e.code === 'DATA_MISMATCH');
});

test('argmaxLastAxis: first index wins ties, NaN never wins', () => {
  assert.deepEqual([...argmaxLastAxis(f32([3, 3], [0, 5, 5, NaN, 1, 0, -3, -2, -1]))], [1, 1, 2]);
});

function fixedBatchModel(): Uint8Array {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, [1, 3]);
  const two = b.initializer('two', new Float32Array([2]), []);
  const y = b.op('Mul', [x, two]);
  b.output(y, DataType.FLOAT, [1, 3]);
  b.output(b.op('ReduceSum', [y], { keepdims: 0 }), DataType.FLOAT, []);
  return encodeModel(b.build().toProto());
}

test('a fixed batch dim of 1: a batch of 3 runs sample by sample and is concatenated', async () => {
  const s = await Session.create(fixedBatchModel());
  try {
    const x = f32([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // a plain run refuses the batch
    await assert.rejects(s.run({ x }), (e: unknown) => e instanceof LowbitError && e.code === 'RUNTIME' && e.message.includes("'x'"));
    const out = await runBatch(s, { x });
    const [y, sum] = s.outputNames;
    assert.deepEqual(out[y!]!.shape, [3, 3]);
    assert.deepEqual([...out[y!]!.data], [2, 4, 6, 8, 10, 12, 14, 16, 18]);
    assert.deepEqual(out[sum!]!.shape, [3]);
    assert.deepEqual([...out[sum!]!.data], [12, 30, 48]);
    assert.equal(batchSizeOf(s.inputs, { x }), 3);
  } finally {
    await s.release();
  }
});

test('runBatches / runBatched over sync and async streams track starts and sizes', async () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 2]);
  b.output(b.op('Neg', [x]), DataType.FLOAT);
  const s = await Session.create(encodeModel(b.build().toProto()));
  try {
    const batches = [f32([2, 2], [1, 2, 3, 4]), f32([1, 2], [5, 6])].map((a) => ({ x: a }));
    const seen: [number, number, number, number[]][] = [];
    for await (const r of runBatches(s, batches)) seen.push([r.index, r.start, r.size, [...(Object.values(r.outputs)[0]!.data as Float32Array)]]);
    assert.deepEqual(seen, [
      [0, 0, 2, [-1, -2, -3, -4]],
      [1, 2, 1, [-5, -6]],
    ]);
    async function* gen(): AsyncGenerator<Record<string, NdArray>> {
      for (const batch of batches) yield batch;
    }
    let sizes = 0;
    const r = await runBatched(s, gen(), async (run) => {
      sizes += run.size;
    });
    assert.deepEqual(r, { batches: 2, samples: 3 });
    assert.equal(sizes, 3);
  } finally {
    await s.release();
  }
});
