// Blockwise weight quantization (src/quant/blockwise.ts, src/quant/hqq.ts): RTN formulas and error bound,
// symmetric zero point, K not a multiple of the block, zero blocks, MatMulNBits / blocked DequantizeLinear packing,
// HQQ no worse than RTN (lower MSE on realistic weights), option errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { dequantizeBlockwise, kBlocks, packBits, packMatMulNBits, quantizeBlockwiseRtn, toBlockedDequantize, unpackBits, type BlockBits } from '../../src/quant/blockwise.js';
import { quantizeBlockwiseHqq } from '../../src/quant/hqq.js';
import { mulberry32 } from '../../src/rng.js';

const normal = (n: number, seed: number, outliers = 0): Float32Array => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r.normal() * 0.02 * (r.chance(outliers) ? 10 : 1));
};
const mse = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0) / a.length;

describe('quantizeBlockwiseRtn', () => {
  for (const bits of [2, 4, 8] as BlockBits[]) {
    for (const symmetric of [false, true]) {
      it(`${bits}-bit ${symmetric ? 'sym' : 'asym'}: |w - deq| <= |scale|/2 inside the range, codes in range, K=100 not a multiple of 32`, () => {
        const K = 100;
        const N = 7;
        const w = normal(K * N, bits);
        const b = quantizeBlockwiseRtn(w, K, N, { bits, blockSize: 32, symmetric });
        assert.equal(b.q.length, N * kBlocks(K, 32) * 32);
        assert.ok(b.q.every((c) => c < 1 << bits));
        const d = dequantizeBlockwise(b);
        const nb = kBlocks(K, 32);
        for (let n = 0; n < N; n++) {
          for (let k = 0; k < K; k++) {
            const i = n * nb + Math.floor(k / 32);
            const s = Math.abs(b.scales[i]!);
            // symmetric: the code range is [-2^(b-1), 2^(b-1)-1] * scale, so the value opposite the extreme may clip by one step
            const bound = symmetric ? s * 1.0001 : s / 2 + 1e-7;
            assert.ok(Math.abs(w[k * N + n]! - d[k * N + n]!) <= bound, `[${k}, ${n}] err ${Math.abs(w[k * N + n]! - d[k * N + n]!)} > ${bound}`);
          }
          // padding rows of the last block hold the zero point
          for (let k = K; k < nb * 32; k++) assert.equal(b.q[n * nb * 32 + k], b.zeroPoints[n * nb + nb - 1]);
        }
        if (symmetric) assert.ok(b.zeroPoints.every((z) => z === 1 << (bits - 1)));
      });
    }
  }

  it('symmetric: the value of largest magnitude becomes code 0 (MLAS range2scale), scale negative when it is positive', () => {
    const w = Float32Array.from({ length: 16 }, (_, i) => (i === 3 ? 2 : i === 5 ? -1 : 0.1));
    const b = quantizeBlockwiseRtn(w, 16, 1, { bits: 4, blockSize: 16, symmetric: true });
    assert.equal(b.scales[0], Math.fround(-2 / 8));
    assert.equal(b.q[3], 0);
    assert.equal(dequantizeBlockwise(b)[3], 2);
  });

  it('asymmetric: range widened to include 0, zero point round(-min/scale)', () => {
    const w = Float32Array.from({ length: 16 }, (_, i) => 1 + i / 15); // all positive: min becomes 0
    const b = quantizeBlockwiseRtn(w, 16, 1, { bits: 4, blockSize: 16, symmetric: false });
    assert.equal(b.zeroPoints[0], 0);
    assert.equal(b.scales[0], Math.fround(2 / 15));
    assert.equal(b.q[15], 15);
  });

  it('an all-zero block has a finite scale and dequantizes to exactly 0', () => {
    const w = new Float32Array(64 * 2);
    for (let i = 64; i < 128; i++) w[i] = i % 2 ? 0.5 : -0.25; // rows 32..63 non-zero, rows 0..31 zero
    for (const symmetric of [false, true]) {
      const b = quantizeBlockwiseRtn(w, 64, 2, { bits: 4, blockSize: 32, symmetric });
      assert.ok(b.scales.every((s) => Number.isFinite(s) && s !== 0));
      const d = dequantizeBlockwise(b);
      for (let i = 0; i < 64; i++) assert.equal(d[i], 0);
    }
  });

  it('K smaller than the block: one padded block', () => {
    const w = normal(10 * 3, 5);
    const b = quantizeBlockwiseRtn(w, 10, 3, { bits: 8, blockSize: 64, symmetric: false });
    assert.equal(b.scales.length, 3);
    assert.ok(mse(dequantizeBlockwise(b), w) < 1e-8);
  });

  it('refuses bad bits, block sizes, shapes and NaN', () => {
    const w = new Float32Array(64);
    const code = (f: () => unknown, c: string) => assert.throws(f, (e: unknown) => e instanceof LowbitError && e.code === c);
    code(() => quantizeBlockwiseRtn(w, 64, 1, { bits: 3 as BlockBits, blockSize: 32, symmetric: false }), 'BAD_OPTION');
    code(() => quantizeBlockwiseRtn(w, 64, 1, { bits: 4, blockSize: 48, symmetric: false }), 'BAD_OPTION');
    code(() => quantizeBlockwiseRtn(w, 64, 1, { bits: 4, blockSize: 512, symmetric: false }), 'BAD_OPTION');
    code(() => quantizeBlockwiseRtn(w, 32, 1, { bits: 4, blockSize: 32, symmetric: false }), 'BAD_DATA');
    code(() => quantizeBlockwiseRtn(Float32Array.of(...new Array(63).fill(0), NaN), 64, 1, { bits: 4, blockSize: 32, symmetric: false }), 'NON_FINITE');
  });
});

describe('packing', () => {
  it('packBits / unpackBits round trip, low bits first', () => {
    for (const bits of [2, 4, 8] as BlockBits[]) {
      const codes = Uint8Array.from({ length: 37 }, (_, i) => (i * 7) % (1 << bits));
      assert.deepEqual(unpackBits(packBits(codes, bits), bits, 37), codes);
    }
    assert.deepEqual(packBits([1, 2], 4), Uint8Array.of(0x21));
    assert.deepEqual(packBits([1, 2, 3, 0], 2), Uint8Array.of(0b00111001));
  });

  it('MatMulNBits: B [N, kBlocks, blob] per column, zero points packed per column on whole bytes', () => {
    const K = 80;
    const N = 3;
    const b = quantizeBlockwiseRtn(normal(K * N, 9), K, N, { bits: 4, blockSize: 16, symmetric: false });
    const nb = kBlocks(K, 16); // 5 blocks: 3 bytes of zero points per column
    const p = packMatMulNBits(b);
    assert.equal(p.B.length, N * nb * 8);
    assert.equal(p.zeroPoints!.length, N * 3);
    for (let n = 0; n < N; n++) {
      assert.deepEqual(unpackBits(p.B.subarray(n * nb * 8, (n + 1) * nb * 8), 4, nb * 16), b.q.subarray(n * nb * 16, (n + 1) * nb * 16));
      assert.deepEqual(unpackBits(p.zeroPoints!.subarray(n * 3, n * 3 + 3), 4, nb), b.zeroPoints.subarray(n * nb, (n + 1) * nb));
    }
    assert.equal(packMatMulNBits(quantizeBlockwiseRtn(normal(K * N, 9), K, N, { bits: 4, blockSize: 16, symmetric: true })).zeroPoints, undefined);
  });

  it('blocked DequantizeLinear form: the same values as dequantizeBlockwise', () => {
    const K = 50;
    const N = 4;
    for (const symmetric of [false, true]) {
      const b = quantizeBlockwiseRtn(normal(K * N, 2), K, N, { bits: 4, blockSize: 16, symmetric });
      const t = toBlockedDequantize(b);
      const d = dequantizeBlockwise(b);
      for (let k = 0; k < K; k++) {
        for (let n = 0; n < N; n++) {
          const j = Math.floor(k / 16) * N + n;
          assert.equal(Math.fround((t.x[k * N + n]! - (t.zeroPoint ? t.zeroPoint[j]! : 0)) * t.scale[j]!), d[k * N + n]);
        }
      }
      assert.equal(t.signed, symmetric);
    }
  });
});

describe('quantizeBlockwiseHqq', () => {
  for (const bits of [2, 4, 8] as BlockBits[]) {
    it(`${bits}-bit: lower weight MSE than RTN asymmetric on gaussian weights with outliers`, () => {
      const K = 256;
      const N = 64;
      const w = normal(K * N, 21, 0.002);
      const rtn = mse(dequantizeBlockwise(quantizeBlockwiseRtn(w, K, N, { bits, blockSize: 32, symmetric: false })), w);
      const h = quantizeBlockwiseHqq(w, K, N, { bits, blockSize: 32 });
      assert.ok(h.q.every((c) => c < 1 << bits) && h.zeroPoints.every((z) => z < 1 << bits));
      const hqq = mse(dequantizeBlockwise(h), w);
      assert.ok(hqq < rtn * 0.99, `hqq ${hqq} vs rtn ${rtn}`);
    });
  }
  it('constant and zero blocks stay exact; K not a multiple of the block', () => {
    const w = new Float32Array(40 * 2).fill(0.3);
    for (let i = 0; i < 40; i++) w[i * 2 + 1] = 0;
    const d = dequantizeBlockwise(quantizeBlockwiseHqq(w, 40, 2, { bits: 4, blockSize: 16 }));
    for (let i = 0; i < 40; i++) {
      assert.ok(Math.abs(d[i * 2]! - 0.3) < 1e-6);
      assert.equal(d[i * 2 + 1], 0);
    }
  });
});
