// calibrate()'s bounded garbage (gcEveryBytes, src/pipeline/calibrate.ts): collecting after every few bytes of taps
// changes nothing in the ranges, and a bad bound is refused before anything runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NdArray } from '../../src/ndarray.js';
import { planQdq } from '../../src/passes/quantize-qdq.js';
import { calibrate, type CalibrationData } from '../../src/pipeline/calibrate.js';
import { mulberry32 } from '../../src/rng.js';
import { buildSmallCnn } from './quantize-static-fixtures.js';

function data(count: number): CalibrationData {
  return {
    count,
    *batches(b: number): Iterable<Record<string, NdArray>> {
      const rng = mulberry32(5);
      for (let i = 0; i < count; i += b) {
        const n = Math.min(b, count - i);
        yield { x: { dtype: 'float32', shape: [n, 3, 32, 32], data: Float32Array.from({ length: n * 3 * 32 * 32 }, () => rng.normal()) } };
      }
    },
  };
}

test('calibrate: the same ranges with a collection after every batch and with none; gcEveryBytes 0 is refused', async () => {
  const plan = planQdq(buildSmallCnn(1), { activationType: 'uint8', weightType: 'int8', perChannel: true });
  for (const method of ['minmax', 'entropy'] as const) {
    const every = await calibrate(plan.model, data(40), { tensors: plan.tensors, batch: 8, threads: 1, method, gcEveryBytes: 1 });
    const never = await calibrate(plan.model, data(40), { tensors: plan.tensors, batch: 8, threads: 1, method, gcEveryBytes: Infinity });
    assert.equal(every.size, plan.tensors.length);
    assert.deepEqual([...every], [...never]);
  }
  await assert.rejects(calibrate(plan.model, data(8), { tensors: plan.tensors, gcEveryBytes: 0 }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /gcEveryBytes/.test(e.message));
});
