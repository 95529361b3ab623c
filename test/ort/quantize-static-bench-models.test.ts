// Static (QDQ) quantization of the two bench/static.ts builder models at test size: a dense VGG-style CNN
// and a MatMul-heavy transformer encoder. Every Conv / MatMul must become an ORT integer kernel and the
// outputs must stay close to the float model's on held-out inputs.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { cosineSimilarity } from '../../src/quant/metrics.js';
import { optimizedOpTypes } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';
import { arraySource, buildDenseCnn, buildTransformer, normalArray } from './quantize-static-fixtures.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };

async function firstOutput(model: Model, x: NdArray): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    return (await s.run({ x }))[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

async function quantized(model: Model, calib: NdArray): Promise<Model> {
  const plan = planQdq(model, OPTS);
  const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 8 });
  const { model: q, report } = quantizeStatic(plan.model, ranges, OPTS);
  assert.deepEqual(report.nodes.filter((n) => !n.quantized), [], 'every node with a rule is quantized');
  return q;
}

describe('static quantization of the bench models (test size)', () => {
  it('dense CNN: every Conv becomes QLinearConv, the classifier QGemm; outputs agree', async () => {
    const float = buildDenseCnn(1, { channels: 16 });
    const q = await quantized(float, normalArray([32, 3, 32, 32], 11));
    const counts = await optimizedOpTypes(encodeModel(q.toProto()), 2);
    for (const op of ['Conv', 'Gemm', 'com.microsoft:FusedConv']) assert.equal(counts.get(op), undefined, `${op} remains: ${JSON.stringify([...counts])}`);
    assert.equal(counts.get('QLinearConv'), 5);
    assert.equal(counts.get('com.microsoft:QGemm'), 1);
    const x = normalArray([16, 3, 32, 32], 12);
    const cos = cosineSimilarity(await firstOutput(float, x), await firstOutput(q, x));
    // Measured: 0.9999 (ORT 1.30, x86).
    assert.ok(cos > 0.99, `cosine ${cos}`);
  });

  it('transformer: all 4 per-layer projections, both MLP MatMuls and q·kᵀ, p·v become QLinearMatMul; outputs agree', async () => {
    const float = buildTransformer(1, { hidden: 64, seq: 16, heads: 4, layers: 2 });
    const q = await quantized(float, normalArray([16, 16, 64], 11));
    const counts = await optimizedOpTypes(encodeModel(q.toProto()), 2);
    for (const op of ['MatMul', 'com.microsoft:FusedMatMul', 'Softmax']) assert.equal(counts.get(op), undefined, `${op} remains: ${JSON.stringify([...counts])}`);
    assert.equal(counts.get('QLinearMatMul'), 2 * 8);
    assert.equal(counts.get('com.microsoft:QLinearSoftmax'), 2);
    const x = normalArray([4, 16, 64], 12);
    const cos = cosineSimilarity(await firstOutput(float, x), await firstOutput(q, x));
    // Measured: 0.999 (ORT 1.30, x86).
    assert.ok(cos > 0.99, `cosine ${cos}`);
  });
});
