// 4-bit weights in static PTQ without ORT: MSE clipping of weight ranges against min-max, INT4 weight
// initializers (packed, symmetric per channel, opset 21, IR 10), options and notes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { attrInt } from '../../src/onnx/attributes.js';
import type { Graph } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage, unpackInt4 } from '../../src/onnx/tensor.js';
import { mseClipQParams } from '../../src/passes/quant-weight.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { computeQParamsPerAxis } from '../../src/quant/qparams.js';
import { dequantizeLinear, quantizeLinear } from '../../src/quant/quantize.js';
import { mulberry32 } from '../../src/rng.js';
import { buildSmallCnn } from '../ort/quantize-static-fixtures.js';

const isErr = (code: string, re?: RegExp) => (e: unknown) => e instanceof LowbitError && e.code === code && (!re || re.test(e.message));
const INT4: StaticQuantOptions = { activationType: 'uint8', weightType: 'int4', perChannel: true };
const rangesFor = (tensors: string[]) => new Map(tensors.map((t) => [t, { min: -1, max: 2 }]));

/** Per-channel squared error of a quantize-dequantize round trip along axis 0. */
function channelErrors(w: Float32Array, dims: number[], scale: Float32Array, zp: ArrayLike<number>, qtype: 'int4' | 'int8'): number[] {
  const q = quantizeLinear(w, scale, zp, qtype, { axis: 0, dims });
  const r = dequantizeLinear(q, scale, zp, { axis: 0, dims });
  const per = w.length / dims[0]!;
  return Array.from({ length: dims[0]! }, (_, c) => {
    let e = 0;
    for (let i = c * per; i < (c + 1) * per; i++) e += (w[i]! - r[i]!) ** 2;
    return e;
  });
}

/** Gaussian weights with a few large outliers per channel (what trained conv weights look like). */
function heavyTailed(channels: number, per: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: channels * per }, (_, i) => rng.normal() * 0.05 * (i % per < 2 ? 4 : 1));
}

const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);

describe('MSE clipping of weight ranges', () => {
  it('has lower 4-bit weight error than min-max (never worse per channel, over 10% lower in total)', () => {
    const dims = [16, 8, 3, 3];
    const w = heavyTailed(16, 72, 7);
    const mm = computeQParamsPerAxis(w, dims, 0, 'int4', { symmetric: true });
    const mse = mseClipQParams(w, dims, 0, 'int4', { symmetric: true });
    const eMm = channelErrors(w, dims, mm.scale, mm.zeroPoint, 'int4');
    const eMse = channelErrors(w, dims, mse.scale, mse.zeroPoint, 'int4');
    eMse.forEach((e, c) => assert.ok(e <= eMm[c]!, `channel ${c}: ${e} > ${eMm[c]}`));
    assert.ok(sum(eMse) < 0.9 * sum(eMm), `MSE ${sum(eMse)} vs min-max ${sum(eMm)}`);
    assert.ok(Array.from(mse.zeroPoint).every((z) => z === 0), 'symmetric: zero point 0');
    // Clipping: the last level (7 × scale) sits below max|w| (= 7.5 × the min-max scale) for most channels.
    assert.ok(Array.from(mse.scale).filter((s, c) => s * 7 < 0.95 * mm.scale[c]! * 7.5).length >= 12);
  });

  it('never loses to min-max at 8 bits either, and gives an all-zero channel scale 1', () => {
    const dims = [4, 50];
    const w = heavyTailed(4, 50, 9);
    w.fill(0, 100, 150);
    const mm = computeQParamsPerAxis(w, dims, 0, 'int8', { symmetric: true });
    const mse = mseClipQParams(w, dims, 0, 'int8', { symmetric: true });
    const eMm = channelErrors(w, dims, mm.scale, mm.zeroPoint, 'int8');
    const eMse = channelErrors(w, dims, mse.scale, mse.zeroPoint, 'int8');
    eMse.forEach((e, c) => assert.ok(e <= eMm[c]!, `channel ${c}`));
    assert.equal(mse.scale[2], 1);
    // Per tensor (axis undefined) and asymmetric work too.
    const t = mseClipQParams(w, dims, undefined, 'uint8', { symmetric: false });
    assert.equal(t.scale.length, 1);
  });

  it('rejects bad search settings', () => {
    assert.throws(() => mseClipQParams(new Float32Array(4), [4], 0, 'int4', { symmetric: true, candidates: 0 }), isErr('BAD_OPTION'));
    assert.throws(() => mseClipQParams(new Float32Array(4), [4], 0, 'int4', { symmetric: true, lowestRatio: 1.5 }), isErr('BAD_OPTION'));
    assert.throws(() => mseClipQParams(Float32Array.of(1, NaN), [2], undefined, 'int4', { symmetric: true }), isErr('NON_FINITE'));
  });
});

describe('static quantization with int4 weights', () => {
  const model = buildSmallCnn(1, { channels: 8 });

  it('writes packed INT4 weights read by per-channel DequantizeLinear at opset 21 (IR 10), MSE scales by default', () => {
    const plan = planQdq(model, INT4);
    assert.equal(plan.model.opset(''), 21, 'the model is calibrated at opset 21 too');
    const { model: q, report } = quantizeStatic(plan.model, rangesFor(plan.tensors), INT4);
    const g: Graph = q.graph;
    assert.equal(q.opset(''), 21);
    assert.ok((q.rest.irVersion ?? 0n) >= 10n);
    const weightDqs = g.nodes.filter((n) => n.opType === 'DequantizeLinear' && g.initializer(n.input[0]!)?.dataType === DataType.INT4);
    assert.equal(weightDqs.length, 7);
    assert.equal(report.counts.weights, 7);
    for (const dq of weightDqs) {
      const t = g.initializer(dq.input[0]!)!;
      const n = dimsOf(t).reduce((a, b) => a * b, 1);
      assert.equal((tensorStorage(t) as Uint8Array).length, Math.ceil(n / 2), 'two values per byte');
      const zp = g.initializer(dq.input[2]!)!;
      assert.equal(zp.dataType, DataType.INT4);
      assert.ok(Array.from(unpackInt4(tensorStorage(zp) as Uint8Array, dimsOf(zp).reduce((a, b) => a * b, 1), true)).every((z) => z === 0));
      assert.equal(dimsOf(g.initializer(dq.input[1]!)!).length, 1, 'per channel');
      const values = unpackInt4(tensorStorage(t) as Uint8Array, n, true);
      assert.ok(values.some((v) => v <= -6) && values.some((v) => v >= 6), 'the 4-bit range is used');
    }
    // No float weight is left; biases are int32.
    assert.equal([...g.initializers.values()].filter((t) => t.dataType === DataType.FLOAT && dimsOf(t).length >= 2).length, 0);
    assert.equal(report.counts.biases, 7);
    assert.equal(report.weightType, 'int4');
    assert.ok(report.notes.some((n) => /int4 weights: ORT has no integer Conv\/MatMul\/Gemm kernel/.test(n)), report.notes.join('\n'));
    const conv = report.nodes.find((n) => n.name === 'conv1')!;
    assert.equal(conv.kernel, 'float Conv on DequantizeLinear(int4 weight)');
    assert.equal(report.nodes.find((n) => n.name === 'residual')!.kernel, 'QLinearAdd');
    // The Gemm weight is per column (transB: axis 0).
    const fc = g.nodes.find((n) => n.name === 'fc')!;
    assert.equal(attrInt(g.producer(fc.input[1]!)!, 'axis', 1), 0);
  });

  it('uses min-max scales when asked and per-tensor scales without perChannel', () => {
    const plan = planQdq(model, INT4);
    const ranges = rangesFor(plan.tensors);
    const scaleOf = (opts: StaticQuantOptions): number[] => {
      const g = quantizeStatic(plan.model, ranges, opts).model.graph;
      const dq = g.producer(g.nodes.find((n) => n.name === 'conv1')!.input[1]!)!;
      return Array.from(tensorStorage(g.initializer(dq.input[1]!)!) as Float32Array);
    };
    const w = tensorStorage(plan.model.graph.initializer('conv1_W')!) as Float32Array;
    const dims = dimsOf(plan.model.graph.initializer('conv1_W')!);
    assert.deepEqual(scaleOf({ ...INT4, weightClip: 'minmax' }), Array.from(computeQParamsPerAxis(w, dims, 0, 'int4', { symmetric: true }).scale));
    assert.deepEqual(scaleOf(INT4), Array.from(mseClipQParams(w, dims, 0, 'int4', { symmetric: true }).scale));
    assert.equal(scaleOf({ ...INT4, perChannel: false }).length, 1);
  });

  it('ignores reduceRange for int4 with a note, and rejects unknown weight types and clippings', () => {
    const plan = planQdq(model, INT4);
    const { report } = quantizeStatic(plan.model, rangesFor(plan.tensors), { ...INT4, reduceRange: true });
    assert.ok(report.notes.some((n) => /reduce_range .* ignored for int4/.test(n)));
    assert.throws(() => quantizeStatic(plan.model, rangesFor(plan.tensors), { ...INT4, weightType: 'int2' as 'int4' }), isErr('BAD_OPTION', /weight type 'int2'/));
    assert.throws(() => planQdq(model, { ...INT4, weightClip: 'kl' as 'mse' }), isErr('BAD_OPTION', /weight clipping 'kl'/));
  });
});
