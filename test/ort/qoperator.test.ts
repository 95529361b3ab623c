// QOperator output (src/passes/qdq-to-qoperator.ts) in ONNX Runtime: on the fixture CNN, a dense CNN, the
// transformer fixture and PP-OCR cls, the QOperator model gives bit for bit the QDQ model's outputs (ORT's
// QDQ fuser makes the same kernels), gives them without ORT's optimizer too, and with optimizations disabled
// has no float Conv/MatMul/Gemm left where the QDQ model had units. Then quantize({ format: 'qoperator' }).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { ocrClsBatch } from '../../src/data/realistic-ocr.js';
import { realModelPath } from '../../src/data/realistic-models.js';
import { loadModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { qdqToQOperator } from '../../src/passes/qdq-to-qoperator.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { optimizedOpTypes } from '../../src/runtime/optimized.js';
import { Session, type OptimizationLevel } from '../../src/runtime/session.js';
import { arraySource, buildDenseCnn, buildSmallCnn, buildTransformer, normalArray } from './quantize-static-fixtures.js';

// No speed policy: every Conv/MatMul/Gemm becomes a unit (the pipeline test below runs with it).
const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: false };
const FLOAT_COMPUTE = ['Conv', 'MatMul', 'Gemm'];

async function outputOf(bytes: Uint8Array, x: NdArray, level?: OptimizationLevel): Promise<Float32Array> {
  const s = await Session.create(bytes, { threads: 2, ...(level ? { optimizationLevel: level } : {}) });
  try {
    return (await s.run({ x }))[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

const floatCompute = (counts: Map<string, number>): number => FLOAT_COMPUTE.reduce((n, op) => n + (counts.get(op) ?? 0), 0);

interface Case {
  name: string;
  float: () => Promise<Model> | Model;
  calib: () => NdArray;
  test: () => NdArray;
  /** Float Conv/MatMul/Gemm nodes of the QDQ model (before ORT fuses them); all become QLinear ops. */
  units: number;
  /** Expected converted units per op type, where the case exists to cover them. */
  converted?: Record<string, number>;
}

/** x -> Sigmoid -> LeakyRelu, Where(x > 0, that, x), AveragePool: the unary and Where kernels no fixture has. */
function buildUnaryOps(): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', DataType.FLOAT, ['N', 4, 8, 8]);
  const sig = b.op('Sigmoid', [x], {}, { name: 'sigmoid' });
  const lr = b.op('LeakyRelu', [sig], { alpha: 0.2 }, { name: 'leaky' });
  const cond = b.op('Greater', [x, b.initializer('zero', Float32Array.of(0), [])], {}, { name: 'positive' });
  const w = b.op('Where', [cond, lr, x], {}, { name: 'where' });
  b.output(b.op('AveragePool', [w], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'avg' }), DataType.FLOAT, ['N', 4, 4, 4]);
  return b.build();
}

const cases: Case[] = [
  { name: 'Sigmoid, LeakyRelu, Where, AveragePool', float: buildUnaryOps, calib: () => normalArray([16, 4, 8, 8], 11), test: () => normalArray([4, 4, 8, 8], 5), units: 0,
    converted: { 'com.microsoft:QLinearSigmoid': 1, 'com.microsoft:QLinearLeakyRelu': 1, 'com.microsoft:QLinearWhere': 1, 'com.microsoft:QLinearAveragePool': 1 } },
  { name: 'fixture CNN', float: () => buildSmallCnn(1), calib: () => normalArray([16, 3, 32, 32], 11), test: () => normalArray([4, 3, 32, 32], 5), units: 7 },
  { name: 'dense CNN (32-128 channels)', float: () => buildDenseCnn(1, { channels: 32 }), calib: () => normalArray([16, 3, 32, 32], 11), test: () => normalArray([4, 3, 32, 32], 5), units: 6 },
  { name: 'transformer (2 x 64, seq 16)', float: () => buildTransformer(1, { hidden: 64, seq: 16, layers: 2 }), calib: () => normalArray([8, 16, 64], 11), test: () => normalArray([4, 16, 64], 5), units: 16 },
  {
    name: 'PP-OCR cls',
    float: async () => new Model((await loadModel(realModelPath('ocrCls'))).model),
    calib: () => ocrClsBatch(8, 1).input,
    test: () => ocrClsBatch(8, 2).input,
    units: 54,
  },
];

describe('QOperator vs QDQ in ONNX Runtime', () => {
  for (const c of cases) {
    it(`${c.name}: same outputs bit for bit, with and without ORT's optimizer; no float Conv/MatMul/Gemm unoptimized`, async () => {
      const float = await c.float();
      const plan = planQdq(float, OPTS);
      const ranges = await calibrate(plan.model, arraySource('x', c.calib()), { tensors: plan.tensors, batch: 8 });
      const q = quantizeStatic(plan.model, ranges, OPTS).model;
      const { model, report } = qdqToQOperator(q);
      const qdqBytes = encodeModel(q.toProto());
      const qopBytes = encodeModel(model.toProto());
      assert.deepEqual(report.keptQdq, []);
      if (c.converted) assert.deepEqual(report.converted, c.converted);

      const x = c.test();
      const ref = await outputOf(qdqBytes, x);
      const got = await outputOf(qopBytes, x);
      // Measured: identical on all four models (ORT 1.30, x86, default optimization level).
      assert.deepEqual(got, ref);
      // The QLinear ops need no fusion: ORT's optimizer off changes nothing (the QDQ model would run float ops).
      assert.deepEqual(await outputOf(qopBytes, x, 'disabled'), ref);

      const qdqRaw = await optimizedOpTypes(qdqBytes, 2, { level: 'disabled' });
      const qopRaw = await optimizedOpTypes(qopBytes, 2, { level: 'disabled' });
      assert.equal(floatCompute(qdqRaw), c.units, JSON.stringify([...qdqRaw]));
      assert.equal(floatCompute(qopRaw), 0, JSON.stringify([...qopRaw]));
      const qlinear = (qopRaw.get('QLinearConv') ?? 0) + (qopRaw.get('QLinearMatMul') ?? 0) + (qopRaw.get('com.microsoft:QGemm') ?? 0);
      assert.equal(qlinear, c.units);
    });
  }
});

describe("quantize({ format: 'qoperator' })", () => {
  it('writes QLinear ops, and the model agrees with the QDQ one from the same data', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowbit-qoperator-'));
    const input = join(dir, 'cnn.onnx');
    const { saveModel } = await import('../../src/io/model-file.js');
    await saveModel(buildSmallCnn(1).toProto(), input);
    const calib = join(dir, 'calib.npy');
    writeNpy(calib, normalArray([24, 3, 32, 32], 7));
    const qdq = await quantize({ input, output: join(dir, 'qdq.onnx'), calib, threads: 2 });
    const qop = await quantize({ input, output: join(dir, 'qop.onnx'), calib, threads: 2, format: 'qoperator' });
    const raw = await optimizedOpTypes(join(dir, 'qop.onnx'), 2, { level: 'disabled' });
    const qdqRaw = await optimizedOpTypes(join(dir, 'qdq.onnx'), 2, { level: 'disabled' });
    // The speed policy keeps 3 of the 6 convs float (narrow stem, 16-channel depthwise, ...) in both models;
    // every other unit is a QLinear op, with a QuantizeLinear only in front of the model and after the float convs.
    assert.equal(raw.get('QLinearConv'), 3, JSON.stringify([...raw]));
    assert.equal((raw.get('Conv') ?? 0) + raw.get('QLinearConv')!, qdqRaw.get('Conv'));
    for (const op of ['Add', 'Mul', 'Gemm', 'Concat', 'AveragePool', 'GlobalAveragePool', 'Softmax']) assert.equal(raw.get(op), undefined, op);
    assert.ok(raw.get('QuantizeLinear')! < qdqRaw.get('QuantizeLinear')!);
    assert.deepEqual(qop.fidelity, qdq.fidelity);
    const x = normalArray([2, 3, 32, 32], 3);
    const { readFileSync } = await import('node:fs');
    assert.deepEqual(await outputOf(readFileSync(join(dir, 'qop.onnx')), x), await outputOf(readFileSync(join(dir, 'qdq.onnx')), x));
  });

  it('rejects an unknown format, listing the valid ones, and qoperator in dynamic mode', async () => {
    await assert.rejects(quantize({ input: 'm.onnx', output: 'o.onnx', calib: 'c.npy', format: 'qlinear' as never }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /format must be one of qdq, qoperator/.test(e.message));
    await assert.rejects(quantize({ input: 'm.onnx', output: 'o.onnx', mode: 'dynamic', format: 'qoperator' }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /static mode only/.test(e.message));
  });
});
