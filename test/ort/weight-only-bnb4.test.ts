// NF4/FP4 weights (com.microsoft MatMulBnb4) run in onnxruntime-node 1.30 (CPU) and equal a float model built
// from the dequantized weights, including shapes whose blocks run across rows and an odd element count.
// Inputs: seeded gaussian activations; weights seeded gaussian.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { floatAttr } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { mulberry32 } from '../../src/rng.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { dequantizeBnb4, quantizeBnb4, type Bnb4QuantType } from '../../src/quant/nf4.js';
import { Session } from '../../src/runtime/session.js';
import { quantizeMatMulBnb4 } from '../../src/passes/weight-only-bnb4.js';
import { maxRelError } from '../helpers.js';

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** x [M, K] -> MatMul(W1 [K, H]) -> Relu -> MatMul(W2 [H, N]) -> y */
function mlp(w1: Float32Array, w2: Float32Array, K: number, H: number, N: number): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['M', K]);
  const h = b.op('Relu', [b.op('MatMul', [x, b.initializer('W1', w1, [K, H])], {}, { name: 'fc1' })]);
  b.output(b.op('MatMul', [h, b.initializer('W2', w2, [H, N])], {}, { name: 'fc2' }), DataType.FLOAT);
  return b.build();
}

async function run(m: Model, x: Float32Array, K: number): Promise<Float32Array> {
  const s = await Session.create(encodeModel(m.toProto()));
  const o = await s.run({ x: { dtype: 'float32', shape: [x.length / K, K], data: x } });
  await s.release();
  return Object.values(o)[0]!.data as Float32Array;
}

describe('quantizeMatMulBnb4 in ONNX Runtime', () => {
  // [K, H, N, blockSize]: 96x80 / 80x33 blocks of 64 run across rows of B^T; 33x7 has an odd element count.
  const shapes: [number, number, number, number][] = [
    [96, 80, 33, 64],
    [33, 7, 5, 16],
    [128, 256, 64, 256],
  ];
  for (const quantType of ['nf4', 'fp4'] as Bnb4QuantType[]) {
    for (const [K, H, N, blockSize] of shapes) {
      it(`${quantType} ${K}x${H}x${N} block ${blockSize}: equals the dequantized float model`, async () => {
        const w1 = randn(K * H, 1, 1 / Math.sqrt(K));
        const w2 = randn(H * N, 2, 1 / Math.sqrt(H));
        const fm = mlp(w1, w2, K, H, N);
        const { model: qm, report } = quantizeMatMulBnb4(fm, { quantType, blockSize });
        assert.deepEqual(qm.graph.nodes.map((n) => n.opType), ['MatMulBnb4', 'Relu', 'MatMulBnb4']);
        assert.equal(report.quantized.length, 2);
        assert.equal(qm.graph.initializers.size, 4, 'float weights removed');
        const d1 = dequantizeBnb4(quantizeBnb4(w1, K, H, { quantType, blockSize }));
        const d2 = dequantizeBnb4(quantizeBnb4(w2, H, N, { quantType, blockSize }));
        const x = randn(4 * K, 3);
        const [ref, got, flt] = [await run(mlp(d1, d2, K, H, N), x, K), await run(qm, x, K), await run(fm, x, K)];
        const rel = maxRelError(got, ref);
        assert.ok(rel < 1e-4, `relative error vs dequantized ${rel}`);
        const sqnr = sqnrDb(flt, got);
        console.log(`${quantType} ${K}x${H}x${N} block ${blockSize}: SQNR vs float ${sqnr.toFixed(1)} dB`);
        // Measured on these seeds: NF4 16.3-17.5 dB, FP4 13.4-15.4 dB (NF4 above FP4 at every shape).
        const floor = quantType === 'nf4' ? 15 : 12;
        assert.ok(sqnr > floor && sqnr < floor + 15, `SQNR ${sqnr}`);
      });
    }
  }
});

describe('quantizeMatMulBnb4 on Gemm', () => {
  it('transB, alpha and beta·C folded: equals Gemm on the dequantized weight', async () => {
    const [K, N] = [64, 24];
    const wt = randn(N * K, 5, 1 / Math.sqrt(K)); // B as Gemm stores it with transB: [N, K]
    const c = randn(N, 6, 0.5);
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['M', K]);
    const y = b.op('Gemm', [x, b.initializer('B', wt, [N, K]), b.initializer('C', c, [N])], { transB: 1, alpha: 0.5, beta: floatAttr(2) }, { name: 'fc' });
    b.output(y, DataType.FLOAT, ['M', N]);
    const fm = b.build();
    const { model: qm, report } = quantizeMatMulBnb4(fm, { quantType: 'nf4', blockSize: 64 });
    assert.deepEqual(report.quantized.map((q) => [q.node, q.opType, q.form]), [['fc', 'Gemm', 'MatMulBnb4 (NF4, block 64) + Add']]);
    assert.deepEqual(qm.graph.nodes.map((n) => n.opType), ['MatMulBnb4', 'Add']);
    assert.ok(!qm.graph.initializers.has('B') && !qm.graph.initializers.has('C'), 'float B and C removed');
    // Reference: the [K, N] weight the product uses (alpha·B^T), quantized and dequantized, through a float MatMul + 2·C.
    const w = new Float32Array(K * N);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) w[k * N + n] = 0.5 * wt[n * K + k]!;
    const d = dequantizeBnb4(quantizeBnb4(w, K, N, { quantType: 'nf4', blockSize: 64 }));
    const r = new ModelBuilder({ opset: 17 });
    const rx = r.input('x', DataType.FLOAT, ['M', K]);
    r.output(r.op('Add', [r.op('MatMul', [rx, r.initializer('W', d, [K, N])]), r.initializer('C2', Float32Array.from(c, (v) => 2 * v), [N])]), DataType.FLOAT, ['M', N]);
    const xs = randn(3 * K, 7);
    const [ref, got] = [await run(r.build(), xs, K), await run(qm, xs, K)];
    const rel = maxRelError(got, ref);
    assert.ok(rel < 1e-4, `relative error vs dequantized ${rel}`);
  });
});
