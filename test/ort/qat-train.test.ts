// QAT end to end in ONNX Runtime on a tiny task: insertFakeQuant -> buildTrainingGraph (weights, biases and
// LSQ scales as params) -> plain SGD written here -> exportQat. Gradients reach every weight and scale
// (int8 and int4), training with 4-bit weights lowers the loss, and the exported int4 model reproduces the
// trained fake-quantized model with the learned scales.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTrainingGraph } from '../../src/grad/engine.js';
import type { NdArray } from '../../src/ndarray.js';
import { makeAttribute } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model, makeNode, makeValueInfo } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../../src/onnx/tensor.js';
import { exportQat, insertFakeQuant, planFakeQuant, type FakeQuantResult } from '../../src/passes/qat.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { mulberry32 } from '../../src/rng.js';
import { Session, type OptimizationLevel } from '../../src/runtime/session.js';

const BATCH = 16;
const CLASSES = 4;

/** 8x8 "digits": class k lights up quadrant k, plus noise. */
function batch(seed: number): { x: NdArray; labels: NdArray } {
  const rng = mulberry32(seed);
  const x = new Float32Array(BATCH * 64);
  const labels = new Float32Array(BATCH * CLASSES);
  for (let n = 0; n < BATCH; n++) {
    const k = n % CLASSES;
    labels[n * CLASSES + k] = 1;
    for (let i = 0; i < 64; i++) {
      const lit = Math.floor(Math.floor(i / 8) / 4) * 2 + Math.floor((i % 8) / 4) === k;
      x[n * 64 + i] = (lit ? 1 : 0) + 0.3 * rng.normal();
    }
  }
  return { x: { dtype: 'float32', shape: [BATCH, 1, 8, 8], data: x }, labels: { dtype: 'float32', shape: [BATCH, CLASSES], data: labels } };
}

/** Conv-Relu-MaxPool x2, Flatten, Gemm: x [N, 1, 8, 8] -> logits [N, 4]. He-initialized. */
function cnn(): Model {
  const b = new ModelBuilder({ opset: 17 });
  const rng = mulberry32(3);
  const w = (name: string, dims: number[], fanIn: number): string =>
    b.initializer(name, Float32Array.from({ length: dims.reduce((a, c) => a * c, 1) }, () => rng.normal() * Math.sqrt(2 / fanIn)), dims);
  const zeros = (name: string, n: number): string => b.initializer(name, new Float32Array(n), [n]);
  const x = b.input('x', DataType.FLOAT, ['N', 1, 8, 8]);
  const block = (v: string, cin: number, i: number): string =>
    b.op('MaxPool', [b.op('Relu', [b.op('Conv', [v, w(`w${i}`, [8, cin, 3, 3], cin * 9), zeros(`b${i}`, 8)], { pads: [1, 1, 1, 1] }, { name: `conv${i}` })])], { kernel_shape: [2, 2], strides: [2, 2] });
  const logits = b.op('Gemm', [b.op('Flatten', [block(block(x, 1, 1), 8, 2)]), w('fc_w', [CLASSES, 32], 32), zeros('fc_b', CLASSES)], { transB: 1 }, { name: 'fc' });
  b.output(logits, DataType.FLOAT, ['N', CLASSES]);
  return b.build();
}

/** The model plus a labels input and the mean softmax cross-entropy as output 'loss'. */
function withLoss(m: Model): Model {
  const out = new Model(m.toProto());
  const g = out.graph;
  const logits = g.outputs[0]!.name!;
  g.inputs.push(makeValueInfo('labels', DataType.FLOAT, ['N', CLASSES]));
  g.setInitializer(makeTensor('loss_axes', DataType.INT64, [1], BigInt64Array.of(1n)));
  const keep0 = [makeAttribute('keepdims', 0)];
  g.addNodes([
    makeNode('LogSoftmax', [logits], ['log_probs'], { name: 'log_softmax' }),
    makeNode('Mul', ['log_probs', 'labels'], ['picked'], { name: 'pick' }),
    makeNode('ReduceSum', ['picked', 'loss_axes'], ['per_sample'], { name: 'per_sample_sum', attribute: keep0 }),
    makeNode('ReduceMean', ['per_sample'], ['mean'], { name: 'batch_mean', attribute: [makeAttribute('keepdims', 0)] }),
    makeNode('Neg', ['mean'], ['loss'], { name: 'neg' }),
  ]);
  g.outputs.push(makeValueInfo('loss', DataType.FLOAT, []));
  return out;
}

const floats = (m: Model, name: string): Float32Array => Float32Array.from(tensorStorage(m.graph.initializer(name)!) as Float32Array);

async function fakeQuant(bits: 8 | 4, data: { x: NdArray }): Promise<FakeQuantResult> {
  const model = cnn();
  const plan = planFakeQuant(model, { weightBits: bits });
  const ranges = await calibrate(plan.model, { *batches() { yield { x: data.x }; } }, { tensors: plan.tensors });
  return insertFakeQuant(plan.model, ranges, { weightBits: bits });
}

async function runOnce(model: Model, feeds: Record<string, NdArray>, output: string, level: OptimizationLevel): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 1, optimizationLevel: level });
  try {
    return (await s.run(feeds))[output]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('QAT training graph', () => {
  const data = batch(21);

  for (const bits of [8, 4] as const) {
    it(`${bits}-bit: every weight, bias and scale param gets a finite, non-zero gradient`, async () => {
      const fq = await fakeQuant(bits, data);
      assert.equal(fq.weightParams.length, 3);
      assert.equal(fq.weightScaleParams.length, 3);
      assert.ok(fq.activationScaleParams.length >= 4, fq.activationScaleParams.join(', '));
      const train = buildTrainingGraph(withLoss(fq.model), { loss: 'loss', params: fq.params });
      const feeds: Record<string, NdArray> = { ...data };
      for (const p of fq.params) feeds[p] = { dtype: 'float32', shape: dimsOf(fq.model.graph.initializer(p)!), data: floats(fq.model, p) };
      const s = await Session.create(encodeModel(train.model.toProto()), { threads: 1 });
      try {
        const out = await s.run(feeds);
        for (const p of fq.params) {
          const g = out[train.gradients.get(p)!]!.data as Float32Array;
          assert.ok(g.every(Number.isFinite), `gradient of ${p} is finite`);
          assert.ok(g.some((v) => v !== 0), `gradient of ${p} is not zero`);
        }
      } finally {
        await s.release();
      }
    });
  }

  it('4-bit: SGD lowers the loss, and the exported int4 model reproduces the trained fake-quantized one', async (t) => {
    const fq = await fakeQuant(4, data);
    const train = buildTrainingGraph(withLoss(fq.model), { loss: 'loss', params: fq.params });
    const params = new Map(fq.params.map((p) => [p, floats(fq.model, p)]));
    const scales = new Set(fq.scaleParams);
    const losses: number[] = [];
    const s = await Session.create(encodeModel(train.model.toProto()), { threads: 1 });
    try {
      for (let step = 0; step < 20; step++) {
        const feeds: Record<string, NdArray> = { ...data };
        for (const [p, v] of params) feeds[p] = { dtype: 'float32', shape: dimsOf(fq.model.graph.initializer(p)!), data: v };
        const out = await s.run(feeds);
        losses.push((out.loss!.data as Float32Array)[0]!);
        for (const [p, v] of params) {
          const g = out[train.gradients.get(p)!]!.data as Float32Array;
          const lr = scales.has(p) ? 1e-4 : 0.05; // scales take small steps and stay positive
          for (let i = 0; i < v.length; i++) v[i]! -= lr * g[i]!;
        }
      }
    } finally {
      await s.release();
    }
    t.diagnostic(`losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    assert.ok(losses[losses.length - 1]! < 0.5 * losses[0]!, `losses ${losses.join(' ')}`);

    // Write the learned values back, as a trainer does, and export.
    const trained = new Model(fq.model.toProto());
    for (const [p, v] of params) trained.graph.setInitializer(makeTensor(p, DataType.FLOAT, dimsOf(trained.graph.initializer(p)!), v));
    const moved = fq.weightScaleParams.filter((p) => floats(fq.model, p).some((v, i) => v !== params.get(p)![i]));
    assert.equal(moved.length, 3, 'weight scales were learned');
    const { model: exported, report } = exportQat(trained);
    assert.deepEqual(report.weightTypes, { int4: 3 });
    for (const p of fq.weightScaleParams) {
      const dq = exported.graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.input[1] === p)!;
      assert.deepEqual(floats(exported, dq.input[1]!), params.get(p), `${p}: the exported weight scale is the learned one`);
    }
    const output = fq.model.graph.outputs[0]!.name!;
    const emulated = await runOnce(trained, { x: data.x }, output, 'disabled');
    const deployed = await runOnce(exported, { x: data.x }, output, 'all');
    const sqnr = sqnrDb(emulated, deployed);
    t.diagnostic(`exported int4 vs trained fake-quant logits: SQNR ${sqnr.toFixed(1)} dB`);
    assert.ok(sqnr > 30, `SQNR ${sqnr} dB`);
    const labels = data.labels.data as Float32Array;
    let correct = 0;
    for (let n = 0; n < BATCH; n++) {
      const row = Array.from(deployed.subarray(n * CLASSES, (n + 1) * CLASSES));
      if (labels[n * CLASSES + row.indexOf(Math.max(...row))] === 1) correct++;
    }
    assert.ok(correct >= 14, `exported model: ${correct}/${BATCH} correct`);
  });
});
