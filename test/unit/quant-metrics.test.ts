// Unit tests: error metrics and the streaming ErrorStats accumulator (src/quant/metrics).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { ErrorStats, cosineSimilarity, errorSummary, maxAbsError, mse, sqnrDb } from '../../src/quant/index.js';

const close = (a: number, b: number, tol = 1e-12): void => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test('one-shot metrics on hand-computed vectors', () => {
  const ref = [1, 2, 3, 4];
  const out = [1, 2.5, 2, 4];
  // errors 0, -0.5, 1, 0: noise 1.25, signal 30
  close(mse(ref, out), 1.25 / 4);
  close(sqnrDb(ref, out), 10 * Math.log10(30 / 1.25));
  close(maxAbsError(ref, out), 1);
  const dot = 1 + 5 + 6 + 16;
  close(cosineSimilarity(ref, out), dot / (Math.sqrt(30) * Math.sqrt(1 + 6.25 + 4 + 16)));
  close(cosineSimilarity([1, 0], [0, 1]), 0);
  close(cosineSimilarity([1, 2], [-2, -4]), -1);
  close(cosineSimilarity(Float32Array.of(3, 4), Float64Array.of(6, 8)), 1);
});

test('edge cases: exact match, zero vectors, empty input, NaN', () => {
  assert.equal(sqnrDb([1, 2], [1, 2]), Infinity);
  assert.equal(sqnrDb([0, 0], [0, 0]), Infinity);
  assert.equal(sqnrDb([0, 0], [1, 0]), -Infinity);
  assert.equal(cosineSimilarity([0, 0], [0, 0]), 1);
  assert.equal(cosineSimilarity([0, 0], [0, 1]), 0);
  assert.equal(cosineSimilarity([1, 0], [0, 0]), 0);
  assert.deepEqual(errorSummary([], []), { count: 0, mse: 0, sqnrDb: Infinity, cosine: 1, maxAbsError: 0 });
  const nan = errorSummary([1, 2, 3], [1, NaN, 3]);
  assert.ok(Number.isNaN(nan.mse) && Number.isNaN(nan.sqnrDb) && Number.isNaN(nan.cosine) && Number.isNaN(nan.maxAbsError));
  assert.ok(Number.isNaN(mse([NaN], [1])));
  assert.equal(maxAbsError([0, 1], [0, Infinity]), Infinity);
  assert.throws(() => mse([1, 2], [1]), (e: unknown) => e instanceof LowbitError && e.code === 'DATA_MISMATCH');
});

test('ErrorStats: batches and merges give the one-shot result', () => {
  const n = 10000;
  const ref = new Float32Array(n).map((_, i) => Math.sin(i * 0.37) * 5);
  const out = ref.map((v, i) => v + Math.cos(i * 1.3) * 0.01);
  const whole = errorSummary(ref, out);
  const s = new ErrorStats();
  for (let a = 0; a < n; a += 777) s.add(ref.subarray(a, a + 777), out.subarray(a, a + 777));
  const part = s.summary();
  assert.equal(part.count, n);
  close(part.mse, whole.mse, 1e-9);
  close(part.sqnrDb, whole.sqnrDb, 1e-9);
  close(part.cosine, whole.cosine, 1e-12);
  assert.equal(part.maxAbsError, whole.maxAbsError);
  const left = new ErrorStats().add(ref.subarray(0, 5000), out.subarray(0, 5000));
  const right = new ErrorStats().add(ref.subarray(5000), out.subarray(5000));
  const merged = left.merge(right).summary();
  close(merged.mse, whole.mse, 1e-9);
  assert.equal(merged.maxAbsError, whole.maxAbsError);
  // a NaN batch poisons the stream
  s.add([1], [NaN]);
  assert.ok(Number.isNaN(s.summary().mse));
  assert.equal(s.count, n + 1);
  // float64 accumulation: 1e6 small errors do not vanish against a large signal
  const big = new ErrorStats();
  for (let k = 0; k < 100; k++) big.add(new Float32Array(10000).fill(1000), new Float32Array(10000).fill(1000.0001220703125));
  close(big.summary().mse, 1.220703125e-4 ** 2, 1e-9);
});
