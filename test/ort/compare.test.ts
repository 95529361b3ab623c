// compare(): per-layer error of QDQ models against their float originals, run in ONNX Runtime. A builder
// CNN with one deliberately mis-calibrated layer, the same model under ORT-style QDQ names, the error
// paths, and the real PaddleOCR direction classifier (synthetic inputs: MNIST digits rendered as lines).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dataSourceFromArrays } from '../../src/data/calib-data.js';
import { realModelPath } from '../../src/data/realistic-models.js';
import { ocrClsBatch } from '../../src/data/realistic-ocr.js';
import { LowbitError } from '../../src/errors.js';
import { loadModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { tensorStorage } from '../../src/onnx/tensor.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { quantizeWeightOnly } from '../../src/passes/weight-only.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { compare, type CompareResult } from '../../src/pipeline/compare.js';
import { evaluate } from '../../src/pipeline/evaluate.js';
import { arraySource, buildSmallCnn, normalArray } from './quantize-static-fixtures.js';
import { toOrtNaming } from '../helpers.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
/** The mis-calibrated tensor: conv3's output (Relu folded), quantized with its own range. */
const BAD = 'relu3_out';

/** The scale of the activation pair of `tensor` in a lowbit QDQ model. */
function pairScale(quant: Model, tensor: string): number {
  const dq = quant.graph.producer(tensor)!;
  assert.equal(dq.opType, 'DequantizeLinear', `${tensor} has no pair`);
  return (tensorStorage(quant.graph.initializers.get(dq.input[1]!)!) as Float32Array)[0]!;
}

/** The small CNN quantized statically; with `shrink`, the BAD tensor's calibrated range is scaled by it. */
async function quantizedCnn(shrink?: number, weightType: StaticQuantOptions['weightType'] = 'int8'): Promise<{ float: Model; quant: Model }> {
  const float = buildSmallCnn(1);
  const opts = { ...OPTS, weightType };
  const plan = planQdq(float, opts);
  const ranges = await calibrate(plan.model, arraySource('x', normalArray([32, 3, 32, 32], 5)), { tensors: plan.tensors, batch: 16 });
  const r = ranges.get(BAD)!;
  if (shrink !== undefined) ranges.set(BAD, { min: r.min * shrink, max: r.max * shrink });
  const quant = quantizeStatic(float, ranges, opts).model;
  // The tensor must really be quantized with its own range (not shared with a neighbour's).
  assert.ok(Math.abs(pairScale(quant, BAD) - (r.max * (shrink ?? 1)) / 255) < 1e-6, `${BAD} does not use its own range any more: pick another tensor`);
  return { float, quant };
}

/** Activation pairs (QuantizeLinear nodes) and quantized constants (non-int32 DequantizeLinear of initializers). */
function pairCounts(quant: Model): { activations: number; weights: number } {
  const g = quant.graph;
  const dqs = g.nodes.filter((n) => n.opType === 'DequantizeLinear');
  return {
    activations: g.nodes.filter((n) => n.opType === 'QuantizeLinear').length,
    weights: dqs.filter((n) => g.initializers.get(n.input[0]!) && g.initializers.get(n.input[0]!)!.dataType !== DataType.INT32).length,
  };
}

const testData = () => arraySource('x', normalArray([16, 3, 32, 32], 9));
const layerOf = (r: CompareResult, tensor: string) => r.layers.find((l) => l.tensor === tensor)!;


describe('compare on a builder CNN with one mis-calibrated layer', () => {
  it('puts the clipped layer first, with its clipping and low local SQNR; a clean calibration does not', async () => {
    const bad = await quantizedCnn(0.05);
    const good = await quantizedCnn();
    const [rb, rg] = [await compare({ ...bad, data: testData() }), await compare({ ...good, data: testData() })];
    assert.equal(rb.samples, 16);
    assert.deepEqual(rb.notes, []);
    // One row per activation pair and per quantized constant.
    assert.deepEqual({ activations: rb.layers.length, weights: rb.weights.length }, pairCounts(bad.quant));
    const first = rb.layers[0]!;
    assert.equal(first.tensor, BAD);
    assert.deepEqual([first.node, first.opType], ['relu3', 'Relu']);
    // Measured: 40% clipped, 1.1 dB local SQNR; the next layer 36.6 dB.
    assert.ok(first.clippedFraction > 0.3, `clipped ${first.clippedFraction}`);
    assert.ok(first.localSqnrDb < 5, `local ${first.localSqnrDb}`);
    assert.ok(rb.layers[1]!.localSqnrDb > 30, `second ${rb.layers[1]!.localSqnrDb}`);
    assert.ok(first.quantRange[1] < first.floatRange[1] / 10, JSON.stringify(first));
    for (let i = 1; i < rb.layers.length; i++) assert.ok(rb.layers[i - 1]!.localSqnrDb <= rb.layers[i]!.localSqnrDb);
    // Clean: the same tensor barely clips and is not first.
    const clean = layerOf(rg, BAD);
    assert.ok(clean.clippedFraction < 0.01 && clean.localSqnrDb > 35, JSON.stringify(clean));
    assert.notEqual(rg.layers[0]!.tensor, BAD);
    // The damage propagates: the pooled tensor downstream carries it (accumulated), though its own error is small.
    const cb = layerOf(rb, 'gap_out');
    assert.ok(cb.accumulatedSqnrDb < layerOf(rg, 'gap_out').accumulatedSqnrDb - 10, `${cb.accumulatedSqnrDb}`);
    assert.ok(cb.localSqnrDb > 30);
    assert.ok(rb.output.sqnrDb < rg.output.sqnrDb);
    // Weights are not affected by activation ranges: the same per-weight figures.
    assert.deepEqual(rb.weights, rg.weights);
    for (const w of rb.weights) assert.ok(w.sqnrDb > 30 && w.worstChannelSqnrDb! <= w.sqnrDb, JSON.stringify(w));
  });

  it('the output row matches evaluate(); statistics do not depend on the batch size (streaming sums)', async () => {
    const { float, quant } = await quantizedCnn(0.05);
    const r8 = await compare({ float, quant, data: testData(), batch: 8 });
    const r5 = await compare({ float, quant, data: testData(), batch: 5 });
    const e = await evaluate({ model: encodeModel(quant.toProto()), reference: encodeModel(float.toProto()), data: testData(), batch: 4 });
    assert.ok(Math.abs(r8.output.sqnrDb - e.sqnrDb!) < 0.01, `${r8.output.sqnrDb} vs ${e.sqnrDb}`);
    assert.ok(Math.abs(r8.output.cosine - e.cosine!) < 1e-4);
    assert.equal(r8.output.agreement, e.agreement);
    assert.equal(r5.samples, 16);
    assert.deepEqual(r5.layers.map((l) => l.tensor), r8.layers.map((l) => l.tensor));
    for (const [i, l] of r8.layers.entries()) {
      const m = r5.layers[i]!;
      assert.ok(Math.abs(l.localSqnrDb - m.localSqnrDb) < 1e-6 && Math.abs(l.accumulatedSqnrDb - m.accumulatedSqnrDb) < 1e-3, l.tensor);
      assert.equal(l.clippedFraction, m.clippedFraction);
      assert.deepEqual(l.floatRange, m.floatRange);
    }
  });

  it('a QDQ model under ORT-style names gives the same rows', async () => {
    const { float, quant } = await quantizedCnn(0.05);
    const ours = await compare({ float, quant, data: testData() });
    const theirs = await compare({ float, quant: toOrtNaming(quant), data: testData() });
    assert.deepEqual(theirs.notes, []);
    assert.deepEqual(theirs.layers.map((l) => l.tensor), ours.layers.map((l) => l.tensor));
    for (const [i, l] of ours.layers.entries()) assert.ok(Math.abs(l.accumulatedSqnrDb - theirs.layers[i]!.accumulatedSqnrDb) < 0.01, l.tensor);
    assert.ok(Math.abs(ours.output.sqnrDb - theirs.output.sqnrDb) < 0.01);
  });
});

describe('compare with int4 weights (opset 21)', () => {
  it('reports the int4 weights and their lower SQNR; activations as with int8', async () => {
    const { float, quant } = await quantizedCnn(undefined, 'int4');
    assert.equal(quant.opset(''), 21);
    const r = await compare({ float, quant, data: testData() });
    assert.deepEqual(r.notes, []);
    assert.deepEqual({ activations: r.layers.length, weights: r.weights.length }, pairCounts(quant));
    const convs = r.weights.filter((w) => w.opType === 'Conv' || w.opType === 'Gemm');
    assert.ok(convs.length >= 6, JSON.stringify(r.weights));
    // Measured: 19.9 to 23.9 dB (int8 per channel: above 35 dB).
    for (const w of convs) assert.ok(w.qtype === 'int4' && w.sqnrDb > 12 && w.sqnrDb < 30 && w.worstChannel !== null, JSON.stringify(w));
    // The Mul's constant operand takes the activation type; no output-channel axis for it.
    const k = r.weights.find((w) => w.opType === 'Mul')!;
    assert.deepEqual([k.name, k.qtype, k.worstChannel], ['mul_k', 'uint8', null]);
  });
});

/** in [N, 4] -> Relu -> out, with the input named `input`; quantized with a hand-made range. */
function tinyPair(input: string): { float: Model; quant: Model } {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input(input, DataType.FLOAT, ['N', 4]);
  b.output(b.op('Relu', [b.op('Add', [x, b.initializer('k', Float32Array.of(0.5, -0.5, 1, 0), [4])], {}, { name: 'add' })], {}, { name: 'relu' }), DataType.FLOAT, ['N', 4]);
  const float = b.build();
  const plan = planQdq(float, OPTS);
  return { float, quant: quantizeStatic(float, new Map(plan.tensors.map((t) => [t, { min: -2, max: 2 }])), OPTS).model };
}

const tinyData = (name: string, shape = [3, 4]): ReturnType<typeof dataSourceFromArrays> =>
  dataSourceFromArrays({ [name]: { dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((a, d) => a * d, 1) }, (_, i) => (i % 7) / 3 - 1) } as NdArray });

async function rejects(p: Promise<unknown>, code: string, message: RegExp, hint?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LowbitError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    if (hint) assert.match(e.hint ?? '', hint);
    return true;
  });
}

describe('compare: bad input', () => {
  it('accepts an unbound data source (bound to the float model inputs); runs the tiny pair', async () => {
    const { float, quant } = tinyPair('a');
    const r = await compare({ float, quant, data: tinyData('a') });
    assert.equal(r.samples, 3);
    // The Relu folds into the Add's output pair: the input and the Relu output are quantized.
    assert.deepEqual(r.layers.map((l) => l.tensor).sort(), ['a', 'relu_out']);
    // Rank-2 output with 4 classes: classifier-like, so agreement is reported.
    assert.ok(r.output.agreement! >= 0 && r.output.agreement! <= 1);
    for (const l of r.layers) assert.ok(l.localSqnrDb > 20 && l.clippedFraction < 0.5, JSON.stringify(l));
  });

  it('a QUANT without DequantizeLinear nodes, and swapped arguments: UNSUPPORTED_MODEL with a fitting hint', async () => {
    const { float, quant } = tinyPair('a');
    await rejects(compare({ float, quant: float, data: tinyData('a') }), 'UNSUPPORTED_MODEL', /no DequantizeLinear node: it is not a static \(QDQ\) quantized model/, /lowbit quantize --mode static/);
    await rejects(compare({ float: quant, quant: float, data: tinyData('a') }), 'UNSUPPORTED_MODEL', /not a static \(QDQ\)/, /pass the float model first/);
    // A weight-only model: pointed to lowbit eval.
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('a', DataType.FLOAT, ['N', 4]);
    b.output(b.op('MatMul', [x, b.initializer('w', Float32Array.from({ length: 4 * 32 }, (_, i) => Math.sin(i)), [4, 32])]), DataType.FLOAT, ['N', 32]);
    const mm = b.build();
    const q4 = quantizeWeightOnly(mm, { bits: 4, blockSize: 16 }).model;
    await rejects(compare({ float: mm, quant: q4, data: tinyData('a') }), 'UNSUPPORTED_MODEL', /not a static \(QDQ\)/, /MatMulNBits: .*lowbit eval QUANT --reference FLOAT/);
  });

  it('models with different inputs, and data that does not fit: DATA_MISMATCH', async () => {
    const a = tinyPair('a');
    const b = tinyPair('b');
    await rejects(compare({ float: a.float, quant: b.quant, data: tinyData('a') }), 'DATA_MISMATCH', /the two models take different inputs: float 'a' float32 \[N, 4\]; quantized 'b'/);
    await rejects(compare({ float: a.float, quant: a.quant, data: tinyData('a', [3, 5]) }), 'DATA_MISMATCH', /'a'/);
    await rejects(compare({ float: a.float, quant: a.quant, data: tinyData('a'), batch: 0 }), 'BAD_OPTION', /batch/);
  });
});

describe('compare on the PaddleOCR direction classifier (static, per channel)', () => {
  it('maps every activation pair and weight (BatchNormalization folded); output SQNR as evaluate() reports it', async () => {
    const float = new Model((await loadModel(realModelPath('ocrCls'))).model);
    const plan = planQdq(float, OPTS);
    const ranges = await calibrate(plan.model, arraySource('x', ocrClsBatch(32, 1).input), { tensors: plan.tensors, batch: 8 });
    const quant = quantizeStatic(float, ranges, OPTS).model;
    const test = ocrClsBatch(16, 2).input;
    const r = await compare({ float, quant, data: arraySource('x', test), batch: 8 });
    const e = await evaluate({ model: encodeModel(quant.toProto()), reference: encodeModel(float.toProto()), data: arraySource('x', test), batch: 8 });
    // Measured (ORT 1.30, x86): the same output SQNR both ways (24.1 dB with a float stem, 18.7 dB without).
    assert.ok(Math.abs(r.output.sqnrDb - e.sqnrDb!) < 0.5, `${r.output.sqnrDb} vs ${e.sqnrDb}`);
    assert.equal(r.output.agreement, e.agreement);
    assert.equal(r.samples, 16);
    assert.deepEqual(r.notes, []);
    assert.deepEqual({ activations: r.layers.length, weights: r.weights.length }, pairCounts(quant));
    assert.ok(r.layers.length > 100 && r.weights.length > 50);
    assert.ok(r.weights.some((w) => w.name.endsWith('_bn_folded')));
    // Conv/MatMul weights are int8; constant operands (the classifier bias read by an Add) take the activation type.
    for (const w of r.weights) assert.ok(w.sqnrDb > 35 && w.qtype === (w.opType === 'Add' ? 'uint8' : 'int8'), JSON.stringify(w));
    // BatchNormalization outputs (folded into their Convs when quantized) map to the float model's BN nodes.
    assert.ok(r.layers.some((l) => l.opType === 'BatchNormalization'));
    // Local error never exceeds the accumulated error by much: a tensor's own rounding is part of what it carries.
    for (const l of r.layers) assert.ok(l.accumulatedSqnrDb <= l.localSqnrDb + 3, JSON.stringify(l));
  });
});
