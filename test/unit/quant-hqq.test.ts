// HQQ (src/quant/hqq.ts): per block never worse than RTN (squared error, error sum, largest error), a clear gain
// on gaussian weights with outliers, determinism.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dequantizeBlockwise, kBlocks, quantizeBlockwiseRtn, type BlockBits } from '../../src/quant/blockwise.js';
import { quantizeBlockwiseHqq } from '../../src/quant/hqq.js';
import { mulberry32 } from '../../src/rng.js';

const normal = (n: number, seed: number, outliers = 0): Float32Array => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r.normal() * 0.02 * (r.chance(outliers) ? 10 : 1));
};
const mse = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0) / a.length;

/** Per block of column n: squared error, |sum of errors|, largest |error|. */
function blockErrors(w: Float32Array, d: Float32Array, K: number, N: number, blockSize: number): { sse: number; sum: number; max: number }[] {
  const out = [];
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks(K, blockSize); b++) {
      let sse = 0;
      let sum = 0;
      let max = 0;
      for (let k = b * blockSize; k < Math.min(K, (b + 1) * blockSize); k++) {
        const e = d[k * N + n]! - w[k * N + n]!;
        sse += e * e;
        sum += e;
        max = Math.max(max, Math.abs(e));
      }
      out.push({ sse, sum: Math.abs(sum), max });
    }
  }
  return out;
}

describe('quantizeBlockwiseHqq guard', () => {
  for (const bits of [2, 4, 8] as BlockBits[]) {
    for (const blockSize of [32, 128]) {
      it(`${bits}-bit block ${blockSize}: every block's squared error, error sum and largest error are <= RTN's (K = 200)`, () => {
        const K = 200;
        const N = 48;
        const w = normal(K * N, 7 + bits, 0.005);
        const r = blockErrors(w, dequantizeBlockwise(quantizeBlockwiseRtn(w, K, N, { bits, blockSize, symmetric: false })), K, N, blockSize);
        const h = blockErrors(w, dequantizeBlockwise(quantizeBlockwiseHqq(w, K, N, { bits, blockSize })), K, N, blockSize);
        let better = 0;
        h.forEach((e, i) => {
          const tol = 1e-12;
          assert.ok(e.sse <= r[i]!.sse * (1 + 1e-6) + tol, `block ${i}: sse ${e.sse} > rtn ${r[i]!.sse}`);
          assert.ok(e.sum <= r[i]!.sum * (1 + 1e-6) + tol, `block ${i}: |sum| ${e.sum} > rtn ${r[i]!.sum}`);
          assert.ok(e.max <= r[i]!.max * (1 + 1e-6) + tol, `block ${i}: max ${e.max} > rtn ${r[i]!.max}`);
          if (e.sse < r[i]!.sse * 0.999) better++;
        });
        assert.ok(better > 0, 'HQQ should improve some blocks');
      });
    }
  }
});

describe('quantizeBlockwiseHqq gain', () => {
  it('2-bit block 32, gaussian weights with 1% outliers: weight MSE clearly below RTN (< 0.98x)', () => {
    const K = 256;
    const N = 64;
    const w = normal(K * N, 21, 0.01);
    const rtn = mse(dequantizeBlockwise(quantizeBlockwiseRtn(w, K, N, { bits: 2, blockSize: 32, symmetric: false })), w);
    const hqq = mse(dequantizeBlockwise(quantizeBlockwiseHqq(w, K, N, { bits: 2, blockSize: 32 })), w);
    assert.ok(hqq < rtn * 0.98, `hqq ${hqq} vs rtn ${rtn}`);
  });
  it('4-bit block 32: weight MSE below RTN (< 0.995x)', () => {
    const K = 256;
    const N = 64;
    const w = normal(K * N, 21, 0.01);
    const rtn = mse(dequantizeBlockwise(quantizeBlockwiseRtn(w, K, N, { bits: 4, blockSize: 32, symmetric: false })), w);
    const hqq = mse(dequantizeBlockwise(quantizeBlockwiseHqq(w, K, N, { bits: 4, blockSize: 32 })), w);
    assert.ok(hqq < rtn * 0.995, `hqq ${hqq} vs rtn ${rtn}`);
  });
});

describe('quantizeBlockwiseHqq inputs', () => {
  it('leaves the weight untouched (a FLOAT weight may be a view of the model bytes)', () => {
    const w = normal(96 * 20, 3, 0.01);
    const copy = w.slice();
    quantizeBlockwiseHqq(w, 96, 20, { bits: 4, blockSize: 32 });
    assert.deepEqual(w, copy);
  });
});
