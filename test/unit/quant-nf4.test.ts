// NF4/FP4 code books, the MatMulBnb4 packing (transposed, flattened, first value in the high nibble) and
// the bnb4 pass's structure.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { mulberry32 } from '../../src/rng.js';
import { FP4_LEVELS, NF4_LEVELS, dequantizeBnb4, fp4Code, nf4Code, quantizeBnb4 } from '../../src/quant/nf4.js';
import { quantizeMatMulBnb4 } from '../../src/passes/weight-only-bnb4.js';
import { throwsLowbit } from '../helpers.js';

function randn(n: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

describe('NF4 / FP4 code books', () => {
  it('NF4 has 16 sorted levels with 0 and ±1', () => {
    assert.equal(NF4_LEVELS.length, 16);
    for (let i = 1; i < 16; i++) assert.ok(NF4_LEVELS[i]! > NF4_LEVELS[i - 1]!);
    assert.equal(NF4_LEVELS[0], -1);
    assert.equal(NF4_LEVELS[15], 1);
    assert.equal(NF4_LEVELS[7], 0);
    // Asymmetric by design: 7 negative, 8 positive levels.
    assert.equal(NF4_LEVELS.filter((v) => v < 0).length, 7);
  });

  it('codes pick the nearest level; a value exactly between two takes the lower one', () => {
    for (let i = 0; i < 16; i++) assert.equal(nf4Code(NF4_LEVELS[i]!), i);
    const mid = Math.fround((NF4_LEVELS[8]! + NF4_LEVELS[9]!) / 2);
    assert.equal(nf4Code(mid), 8);
    assert.equal(nf4Code(mid + 1e-6), 9);
    assert.equal(nf4Code(-2), 0);
    assert.equal(nf4Code(2), 15);
    for (let c = 0; c < 16; c++) {
      const v = FP4_LEVELS[c]!;
      if (Object.is(v, -0)) continue; // -0 and +0 share magnitude; x < 0 is false for -0
      assert.equal(fp4Code(v), c, `fp4 ${v}`);
    }
    assert.equal(fp4Code(0.9), 0b0011);
    assert.equal(fp4Code(-0.3), 0b1100);
    assert.equal(fp4Code(0.001), 0b0000);
  });
});

describe('quantizeBnb4', () => {
  it('packs B^T flattened, first value in the high nibble, one absmax per block across rows', () => {
    // B [K=2, N=16]: B^T is [16, 2]; flat order t = n*2 + k. Block 16 covers columns 0..7, block 2 columns 8..15.
    const K = 2;
    const N = 16;
    const w = new Float32Array(K * N);
    for (let n = 0; n < N; n++) {
      w[0 * N + n] = n < 8 ? 1 : 4; // k = 0
      w[1 * N + n] = n < 8 ? -1 : 0; // k = 1
    }
    const q = quantizeBnb4(w, K, N, { quantType: 'nf4', blockSize: 16 });
    assert.deepEqual(Array.from(q.absmax), [1, 4]);
    assert.equal(q.packed.length, 16);
    assert.equal(q.packed[0], (15 << 4) | 0); // (w[0][0] = 1 -> +1, w[1][0] = -1 -> -1)
    assert.equal(q.packed[8], (15 << 4) | 7); // (4 / 4 -> +1, 0 -> code 7)
    assert.deepEqual(Array.from(dequantizeBnb4(q)), Array.from(w));
  });

  it('odd element count: the last byte pairs the final value with the code of 0', () => {
    const w = Float32Array.from([0.5, -1, 1]); // K = 3, N = 1
    const nf = quantizeBnb4(w, 3, 1, { quantType: 'nf4', blockSize: 16 });
    assert.equal(nf.packed.length, 2);
    assert.equal(nf.packed[1]! & 0x0f, 7);
    const fp = quantizeBnb4(w, 3, 1, { quantType: 'fp4', blockSize: 16 });
    assert.equal(fp.packed[1]! & 0x0f, 0);
    assert.equal(fp.packed[0]! >> 4, 0b0101); // 0.5
  });

  it('round trip: error within half the widest level gap times absmax; NF4 beats FP4 on gaussian weights', () => {
    const K = 96;
    const N = 40;
    const w = randn(K * N, 5);
    const mseOf = (quantType: 'nf4' | 'fp4') => {
      const q = quantizeBnb4(w, K, N, { quantType, blockSize: 64 });
      const d = dequantizeBnb4(q);
      const levels = [...(quantType === 'nf4' ? NF4_LEVELS : FP4_LEVELS)].sort((a, b) => a - b);
      let gap = 0;
      for (let i = 1; i < levels.length; i++) gap = Math.max(gap, levels[i]! - levels[i - 1]!);
      let se = 0;
      for (let t = 0; t < K * N; t++) {
        const k = Math.floor(t / N);
        const n = t % N;
        const amax = q.absmax[Math.floor((n * K + k) / 64)]!;
        const err = Math.abs(d[t]! - w[t]!);
        assert.ok(err <= (gap / 2) * amax * (1 + 1e-6), `error ${err} at ${t}`);
        se += err * err;
      }
      return se / (K * N);
    };
    const [nf, fp] = [mseOf('nf4'), mseOf('fp4')];
    assert.ok(nf < fp * 0.8, `NF4 MSE ${nf} vs FP4 ${fp}`);
    assert.ok(nf > 0.005 && nf < 0.02, `NF4 MSE ${nf}`); // 4-bit on N(0,1), block 64
  });

  it('rejects block sizes ORT lacks, unknown types, NaN', () => {
    const w = new Float32Array(64);
    throwsLowbit(() => quantizeBnb4(w, 8, 8, { quantType: 'nf4', blockSize: 48 }), 'BAD_OPTION', '48');
    throwsLowbit(() => quantizeBnb4(w, 8, 8, { quantType: 'int4' as 'nf4', blockSize: 64 }), 'BAD_OPTION', 'int4');
    throwsLowbit(() => quantizeBnb4(w, 8, 7, { quantType: 'nf4', blockSize: 64 }), 'BAD_OPTION', '[8, 7]');
    w[3] = NaN;
    throwsLowbit(() => quantizeBnb4(w, 8, 8, { quantType: 'nf4', blockSize: 64 }), 'NON_FINITE', 'NaN');
  });
});

describe('quantizeMatMulBnb4 (structure)', () => {
  function model() {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['M', 32]);
    const y = b.input('y', DataType.FLOAT, [16, 8]);
    const w = b.initializer('W', randn(32 * 16, 1), [32, 16]);
    const h1 = b.op('MatMul', [x, w], {}, { name: 'a' });
    const h2 = b.op('MatMul', [x, w], {}, { name: 'b' }); // same weight: quantized once
    const h3 = b.op('MatMul', [b.op('Add', [h1, h2]), y], {}, { name: 'act' }); // activation x activation
    const h4 = b.op('MatMul', [h3, b.initializer('W3', randn(8 * 8 * 2, 2), [2, 8, 8])], {}, { name: 'rank3' });
    const h5 = b.op('MatMul', [h4, b.initializer('Wd', new Float64Array(64), [8, 8])], {}, { name: 'double' });
    const h6 = b.op('MatMul', [h3, b.initializer('W6', randn(64, 3), [8, 8])], {}, { name: 'skipme' });
    b.output(h5, DataType.DOUBLE);
    b.output(h6, DataType.FLOAT);
    return b.build();
  }

  it('rewrites constant float32 2-D weights once, with attributes, and reports every skip', () => {
    const { model: q, report } = quantizeMatMulBnb4(model(), { quantType: 'fp4', blockSize: 32, excludeNodes: ['skipme'] });
    const bnb = q.graph.nodes.filter((n) => n.opType === 'MatMulBnb4');
    assert.equal(bnb.length, 2);
    const attrs = Object.fromEntries(bnb[0]!.attribute.map((a) => [a.name, Number(a.i)]));
    assert.deepEqual(attrs, { K: 32, N: 16, block_size: 32, quant_type: 0 });
    assert.equal(bnb[0]!.domain, 'com.microsoft');
    assert.equal(bnb[0]!.input[1], bnb[1]!.input[1], 'one packed weight for both readers');
    const packed = q.graph.initializers.get(bnb[0]!.input[1]!)!;
    const absmax = q.graph.initializers.get(bnb[0]!.input[2]!)!;
    assert.deepEqual(dimsOf(packed), [256]);
    assert.equal(packed.dataType, DataType.UINT8);
    assert.deepEqual(dimsOf(absmax), [16]);
    assert.equal((tensorStorage(absmax) as Float32Array).every((v) => v > 0), true);
    assert.ok(!q.graph.initializers.has('W'), 'float weight removed');
    assert.equal(q.opset('com.microsoft'), 1);
    const reasons = Object.fromEntries(report.skipped.map((s) => [s.node, s.reason]));
    assert.match(reasons.act!, /not a constant/);
    assert.match(reasons.rank3!, /rank 3/);
    assert.match(reasons.double!, /not float32/);
    assert.match(reasons.skipme!, /excluded/);
    assert.equal(report.quantized.length, 2);
    assert.match(report.quantized[0]!.form, /FP4, block 32/);
  });

  it('rejects bad options', () => {
    throwsLowbit(() => quantizeMatMulBnb4(model(), { quantType: 'nf4', blockSize: 512 }), 'BAD_OPTION', '512');
    throwsLowbit(() => quantizeMatMulBnb4(model(), { quantType: 'nf5' as 'nf4', blockSize: 64 }), 'BAD_OPTION', 'nf5');
  });
});
