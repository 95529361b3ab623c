// QAT graphs in ONNX Runtime: the fake-quantized model (calibrated, untrained) emulates static PTQ, and its
// export is PTQ's model: same outputs, same fused integer kernels (int8) or DequantizeLinear + float
// Conv/Gemm (int4), the int4 file smaller than the int8 one.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { exportQat, insertFakeQuant, planFakeQuant } from '../../src/passes/qat.js';
import { quantizeStatic } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { optimizedOpTypes } from '../../src/runtime/optimized.js';
import { Session, type OptimizationLevel } from '../../src/runtime/session.js';
import { arraySource, buildSmallCnn, buildTransformer, normalArray } from './quantize-static-fixtures.js';

async function run(model: Model, feeds: Record<string, NdArray>, level: OptimizationLevel = 'all'): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2, optimizationLevel: level });
  try {
    const out = await s.run(feeds);
    return out[model.graph.outputs[0]!.name!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** calibrate -> insertFakeQuant, and PTQ from the same ranges. */
async function prepare(model: Model, calib: NdArray, bits: 8 | 4) {
  const plan = planFakeQuant(model, { weightBits: bits });
  const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 8 });
  const fq = insertFakeQuant(plan.model, ranges, { weightBits: bits });
  const ptq = quantizeStatic(plan.model, ranges, { activationType: 'uint8', weightType: bits === 4 ? 'int4' : 'int8', perChannel: true });
  return { fq, ptq: ptq.model };
}

const sorted = (m: Map<string, number>): [string, number][] => [...m].sort(([a], [b]) => a.localeCompare(b));

describe('QAT export of the small CNN', () => {
  const model = buildSmallCnn(1);
  const calib = normalArray([32, 3, 32, 32], 11);
  const heldOut = normalArray([16, 3, 32, 32], 12);
  const sizes = new Map<number, number>();

  for (const bits of [8, 4] as const) {
    it(`${bits}-bit: the fake-quantized model emulates PTQ, and its export is PTQ's model`, async (t) => {
      const { fq, ptq } = await prepare(model, calib, bits);
      const x = { x: heldOut };
      const ref = await run(ptq, x);
      // Optimizations off: ORT runs every Q/DQ in float (the emulation a trainer differentiates).
      const emulated = await run(fq.model, x, 'disabled');
      const exported = exportQat(fq.model);
      const out = await run(exported.model, x);
      const [sEmu, sExp] = [sqnrDb(ref, emulated), sqnrDb(ref, out)];
      t.diagnostic(`SQNR vs PTQ: fake-quant (float emulation) ${sEmu.toFixed(1)} dB, export ${sExp === Infinity ? 'identical' : `${sExp.toFixed(1)} dB`}`);
      assert.ok(sEmu > 30, `fake-quant vs PTQ ${sEmu} dB`);
      assert.ok(sExp > 60, `export vs PTQ ${sExp} dB`);
      // ORT makes the same kernels of both.
      const [a, b] = [await optimizedOpTypes(encodeModel(exported.model.toProto()), 2), await optimizedOpTypes(encodeModel(ptq.toProto()), 2)];
      assert.deepEqual(sorted(a), sorted(b));
      if (bits === 8) {
        assert.equal(a.get('QLinearConv'), 6);
        assert.equal(a.get('com.microsoft:QGemm'), 1);
        assert.equal(a.get('Conv'), undefined);
      } else {
        assert.equal(a.get('QLinearConv'), undefined);
        assert.equal(a.get('Conv'), 6, 'int4 weights: DequantizeLinear + float Conv');
      }
      assert.equal(exported.report.counts.weights, 7);
      assert.equal(exported.report.counts.biases, 7);
      sizes.set(bits, encodeModel(exported.model.toProto()).length);
      if (bits === 4) assert.ok(sizes.get(4)! < sizes.get(8)!, `int4 ${sizes.get(4)} bytes vs int8 ${sizes.get(8)}`);
    });
  }
});

describe('QAT export of a transformer block (rescaled attention scores)', () => {
  it('folds the learned rescale and matches PTQ', async () => {
    const model = buildTransformer(2, { hidden: 32, seq: 8, heads: 2, layers: 1 });
    const calib = normalArray([16, 8, 32], 3);
    const { fq, ptq } = await prepare(model, calib, 8);
    const exported = exportQat(fq.model);
    assert.equal(exported.report.counts.scales, 1);
    const x = { x: normalArray([4, 8, 32], 4) };
    const ref = await run(ptq, x);
    assert.ok(sqnrDb(ref, await run(exported.model, x)) > 60);
    assert.ok(sqnrDb(ref, await run(fq.model, x, 'disabled')) > 25);
  });
});
