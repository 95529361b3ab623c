// qdq-map.ts (which float tensor / constant each DequantizeLinear stands for, and their errors) and the
// compare report, on builder-made models quantized by quantizeStatic or written by hand (ORT-style
// names, int4 weights at opset 21). No ONNX Runtime.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { packInt4, tensorStorage } from '../../src/onnx/tensor.js';
import { ActivationErrorStats, mapQdq, quantizedInterval, readDqParams, weightError, type DqParams } from '../../src/passes/qdq-map.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { QUANT_TYPES } from '../../src/quant/dtypes.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { dequantizeLinear, quantizeLinear } from '../../src/quant/quantize.js';
import { formatValue, renderCompareReport } from '../../src/report/compare-report.js';
import { mulberry32 } from '../../src/rng.js';
import { toOrtNaming } from '../helpers.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };

function fill(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** x [N,6,6,6] -> Conv -> BatchNormalization -> Relu -> Flatten -> Gemm (transB) -> y [N,3] (6 input channels: not a float-kept stem). */
function convBnGemm(): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', DataType.FLOAT, ['N', 6, 6, 6]);
  const w = b.initializer('conv_W', fill(4 * 6 * 9, 1, 0.3), [4, 6, 3, 3]);
  const conv = b.op('Conv', [x, w, b.initializer('conv_B', fill(4, 2, 0.1), [4])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv' });
  const bn = b.op(
    'BatchNormalization',
    [conv, b.initializer('bn_g', Float32Array.of(0.5, 2, 1, 3), [4]), b.initializer('bn_b', Float32Array.of(0.1, -0.2, 0, 0.3), [4]), b.initializer('bn_m', Float32Array.of(0.1, 0, -0.1, 0.2), [4]), b.initializer('bn_v', Float32Array.of(1, 2, 0.5, 4), [4])],
    {},
    { name: 'bn' },
  );
  const relu = b.op('Relu', [bn], {}, { name: 'relu' });
  const flat = b.op('Flatten', [relu], { axis: 1 }, { name: 'flatten' });
  const y = b.op('Gemm', [flat, b.initializer('fc_W', fill(3 * 144, 3, 0.1), [3, 144]), b.initializer('fc_B', fill(3, 4, 0.1), [3])], { transB: 1 }, { name: 'fc' });
  b.output(y, DataType.FLOAT, ['N', 3]);
  return b.build();
}

/** quantizeStatic with hand-made ranges: [0, 4] for Relu outputs, [-4, 4] elsewhere. */
function quantizeWithRanges(float: Model): Model {
  const plan = planQdq(float, OPTS);
  const ranges = new Map(plan.tensors.map((t) => [t, /relu/.test(t) ? { min: 0, max: 4 } : { min: -4, max: 4 }]));
  return quantizeStatic(float, ranges, OPTS).model;
}


describe('mapQdq on quantizeStatic output', () => {
  const float = convBnGemm();
  const quant = quantizeWithRanges(float);
  const map = mapQdq(quant, float);

  it('maps every activation pair to the float tensor of the same name, with its Q/DQ parameters', () => {
    const qNodes = quant.graph.nodes.filter((n) => n.opType === 'QuantizeLinear');
    assert.equal(map.activations.length, qNodes.length);
    assert.deepEqual(map.missing, []);
    assert.deepEqual(map.unmapped, []);
    // A produced tensor keeps its name on the DQ output; its producer is the float model's node.
    const relu = map.activations.find((a) => a.opType === 'Relu')!;
    assert.equal(relu.dequantized, relu.tensor);
    assert.equal(relu.node, 'relu');
    for (const a of map.activations) {
      const q = quant.graph.producer(a.quantized)!;
      assert.equal(q.opType, 'QuantizeLinear');
      const scale = tensorStorage(quant.graph.initializers.get(q.input[1]!)!) as Float32Array;
      assert.equal(a.params.scale[0], scale[0]);
      assert.equal(a.params.qtype.name, 'uint8');
      assert.ok(float.graph.producer(a.tensor) || float.graph.isGraphInput(a.tensor), a.tensor);
    }
    assert.deepEqual(quantizedInterval(relu.params), [0, Math.fround(255 * relu.params.scale[0]!)]);
  });

  it('finds each weight source: the BatchNormalization-folded Conv weight, the Gemm weight; biases are counted, not compared', () => {
    assert.equal(map.biasCount, 2);
    assert.equal(map.weights.length, 2);
    const conv = map.weights.find((w) => w.opType === 'Conv')!;
    const fc = map.weights.find((w) => w.opType === 'Gemm')!;
    assert.deepEqual([conv.node, conv.slot, conv.channelAxis], ['conv', 1, 0]);
    assert.deepEqual([fc.node, fc.slot, fc.channelAxis], ['fc', 1, 0]);
    assert.deepEqual(conv.candidates.map((c) => c.name).sort(), ['conv_W', 'conv_W_bn_folded']);
    const ce = weightError(conv)!;
    // The folded weight is what was quantized: per-channel int8 keeps it at ~40 dB; the unfolded one is far off.
    assert.equal(ce.name, 'conv_W_bn_folded');
    assert.ok(ce.sqnrDb > 35, `${ce.sqnrDb}`);
    const unfolded = conv.candidates.find((c) => c.name === 'conv_W')!;
    const deq = dequantizeLinear(conv.values, conv.params.scale, conv.params.zeroPoint, { axis: 0, dims: conv.dims });
    assert.ok(sqnrDb(unfolded.data, deq) < 10);
    assert.equal(ce.sqnrDb, sqnrDb(conv.candidates.find((c) => c.name === 'conv_W_bn_folded')!.data, deq));
    const fe = weightError(fc)!;
    assert.equal(fe.name, 'fc_W');
    assert.ok(fe.worstChannel! >= 0 && fe.worstChannel! < 3);
    assert.ok(fe.worstChannelSqnrDb! <= fe.sqnrDb + 1e-9);
  });

  it('maps the same pairs under ORT-style names (DQ outputs read by the consumers, Q reading the float tensor)', () => {
    const ort = toOrtNaming(quantizeWithRanges(float));
    const m = mapQdq(ort, float);
    assert.deepEqual(m.missing, []);
    assert.deepEqual(m.activations.map((a) => a.tensor).sort(), map.activations.map((a) => a.tensor).sort());
    for (const a of m.activations) if (!ort.graph.isGraphOutput(a.dequantized)) assert.equal(a.dequantized, `${a.tensor}_DequantizeLinear_Output`);
    assert.deepEqual(m.weights.map((w) => weightError(w)!.name).sort(), ['conv_W_bn_folded', 'fc_W']);
  });

  it('a quantized graph input (DQ output renamed, Q reading the input) maps to the input', () => {
    const build = (qdq: boolean): Model => {
      const b = new ModelBuilder({ opset: 13 });
      const x = b.input('x', DataType.FLOAT, ['N', 4]);
      let h = x;
      if (qdq) {
        b.initializer('x_scale', Float32Array.of(0.02), []);
        b.initializer('x_zero_point', Uint8Array.of(128), []);
        const q = b.op('QuantizeLinear', [x, 'x_scale', 'x_zero_point'], {}, { name: 'x_QuantizeLinear' });
        h = b.op('DequantizeLinear', [q, 'x_scale', 'x_zero_point'], {}, { name: 'x_DequantizeLinear' });
      }
      b.output(b.op('Sigmoid', [h], {}, { name: 'sig' }), DataType.FLOAT);
      return b.build();
    };
    const m = mapQdq(build(true), build(false));
    assert.equal(m.activations.length, 1);
    const x = m.activations[0]!;
    assert.deepEqual([x.tensor, x.node, x.opType, x.quantized], ['x', '', 'input', 'x_QuantizeLinear_out']);
    assert.notEqual(x.dequantized, 'x');
    assert.deepEqual([[...x.params.scale], [...x.params.zeroPoint], x.params.qtype.name], [[Math.fround(0.02)], [128], 'uint8']);
  });

  it('a model without QDQ nodes maps nothing; a tensor the float model lacks is listed as missing', () => {
    assert.equal(mapQdq(float, float).dqCount, 0);
    const q = quantizeWithRanges(float);
    const dq = q.graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.output[0] === 'relu_out')!;
    // Rename the pair's tensor to something the float model does not have.
    q.graph.replaceAllUses('relu_out', 'renamed');
    dq.output[0] = 'renamed';
    const qn = q.graph.producer(dq.input[0]!)!;
    q.graph.producer(qn.input[0]!)!.output[0] = 'renamed_float';
    qn.input[0] = 'renamed_float';
    q.graph.touch();
    const m = mapQdq(q, float);
    assert.deepEqual(m.missing, ['renamed']);
    assert.equal(m.activations.length, map.activations.length - 1);
  });
});

/** float x [1,4] -> MatMul(W [4,3]) -> y, and its quantized form with W as an INT4 initializer (opset 21). */
function int4MatMul(scale: Float32Array, zeroPoint: Int8Array, opts: { blockSize?: number; axis: number; scaleDims: number[] }) {
  const w = fill(12, 7, 0.5);
  const fb = new ModelBuilder({ opset: 21 });
  const fx = fb.input('x', DataType.FLOAT, [1, 4]);
  fb.output(fb.op('MatMul', [fx, fb.initializer('W', w, [4, 3])], {}, { name: 'mm' }), DataType.FLOAT);
  const float = fb.build();
  const q = quantizeLinear(w, scale, zeroPoint, 'int4', { axis: opts.axis, dims: [4, 3], ...(opts.blockSize ? { blockSize: opts.blockSize } : {}) });
  const qb = new ModelBuilder({ opset: 21 });
  const qx = qb.input('x', DataType.FLOAT, [1, 4]);
  qb.initializer('W_quantized', packInt4(q), [4, 3], DataType.INT4);
  qb.initializer('W_scale', scale, opts.scaleDims);
  qb.initializer('W_zero_point', packInt4(zeroPoint), opts.scaleDims, DataType.INT4);
  const dq = qb.op('DequantizeLinear', ['W_quantized', 'W_scale', 'W_zero_point'], { axis: opts.axis, ...(opts.blockSize ? { block_size: opts.blockSize } : {}) }, { name: 'W_DequantizeLinear' });
  qb.output(qb.op('MatMul', [qx, dq], {}, { name: 'mm' }), DataType.FLOAT);
  const expected = dequantizeLinear(q, scale, zeroPoint, { axis: opts.axis, dims: [4, 3], ...(opts.blockSize ? { blockSize: opts.blockSize } : {}) });
  return { float, quant: qb.build(), w, expected };
}

describe('weightError on int4 weights (opset 21)', () => {
  it('per axis: unpacks the INT4 initializer, SQNR as computed directly, worst channel is the clipped one', () => {
    // Channel 1 gets a scale far too small: it saturates at 7 * 0.01.
    const scale = Float32Array.of(0.2, 0.01, 0.2);
    const { float, quant, w, expected } = int4MatMul(scale, new Int8Array(3), { axis: 1, scaleDims: [3] });
    const m = mapQdq(quant, float);
    assert.equal(m.weights.length, 1);
    const link = m.weights[0]!;
    assert.equal(link.params.qtype, QUANT_TYPES.int4);
    assert.deepEqual([link.node, link.opType, link.channelAxis], ['mm', 'MatMul', 1]);
    const e = weightError(link)!;
    assert.equal(e.name, 'W');
    assert.equal(e.sqnrDb, sqnrDb(w, expected));
    assert.equal(e.worstChannel, 1);
    const col = (a: Float32Array, c: number) => [0, 1, 2, 3].map((r) => a[r * 3 + c]!);
    assert.ok(Math.abs(e.worstChannelSqnrDb! - sqnrDb(col(w, 1), col(expected, 1))) < 1e-9);
  });

  it('blocked (block_size 2 along axis 0) with non-zero zero points', () => {
    const scale = Float32Array.of(0.15, 0.2, 0.1, 0.12, 0.3, 0.25);
    const zp = Int8Array.of(1, 0, -1, 0, 2, 0);
    const { float, quant, w, expected } = int4MatMul(scale, zp, { axis: 0, blockSize: 2, scaleDims: [2, 3] });
    const link = mapQdq(quant, float).weights[0]!;
    assert.deepEqual([link.params.blockSize, link.params.axis, [...link.params.zeroPoint]], [2, 0, [1, 0, -1, 0, 2, 0]]);
    // MatMul weights [K, N]: output channels along the last axis.
    assert.equal(link.channelAxis, 1);
    assert.equal(weightError(link)!.sqnrDb, sqnrDb(w, expected));
  });
});

describe('weightError: dead channels', () => {
  it('a channel of denormals (quantized to zeros) is not reported as the worst channel', () => {
    const w = fill(12, 9, 0.5);
    for (let r = 0; r < 4; r++) w[r * 3 + 2] = 1e-40 * (r + 1);
    const fb = new ModelBuilder({ opset: 13 });
    fb.output(fb.op('MatMul', [fb.input('x', DataType.FLOAT, [1, 4]), fb.initializer('W', w, [4, 3])], {}, { name: 'mm' }), DataType.FLOAT);
    const scale = Float32Array.of(0.01, 0.005, 1);
    const q = quantizeLinear(w, scale, 0, 'int8', { axis: 1, dims: [4, 3] }) as Int8Array;
    const qb = new ModelBuilder({ opset: 13 });
    const x = qb.input('x', DataType.FLOAT, [1, 4]);
    qb.initializer('W_quantized', q, [4, 3]);
    qb.initializer('W_scale', scale, [3]);
    qb.initializer('W_zero_point', new Int8Array(3), [3]);
    qb.output(qb.op('MatMul', [x, qb.op('DequantizeLinear', ['W_quantized', 'W_scale', 'W_zero_point'], { axis: 1 })], {}, { name: 'mm' }), DataType.FLOAT);
    const e = weightError(mapQdq(qb.build(), fb.build()).weights[0]!)!;
    // Channel 2 is all zeros after quantization (0 dB against its denormals); channel 1 clips at 127 * 0.005.
    assert.equal(e.worstChannel, 1);
    assert.ok(e.worstChannelSqnrDb! > 0 && e.worstChannelSqnrDb! < e.sqnrDb + 1e-9);
  });
});

describe('weights quantized at run time (QAT fake-quantized form: float constant -> QuantizeLinear -> DequantizeLinear)', () => {
  it('are weights, quantized here as ORT would; the float source is the constant of the same name', () => {
    const w = fill(12, 8, 0.5);
    const fb = new ModelBuilder({ opset: 13 });
    fb.output(fb.op('MatMul', [fb.input('x', DataType.FLOAT, [1, 4]), fb.initializer('W', w, [4, 3])], {}, { name: 'mm' }), DataType.FLOAT);
    const float = fb.build();
    const trained = w.map((v, i) => v + (i % 2 ? 0.01 : -0.01));
    const qb = new ModelBuilder({ opset: 13 });
    const x = qb.input('x', DataType.FLOAT, [1, 4]);
    qb.initializer('W', trained, [4, 3]);
    qb.initializer('W_scale', Float32Array.of(0.01, 0.02, 0.03), [3]);
    qb.initializer('W_zero_point', new Int8Array(3), [3]);
    const wq = qb.op('QuantizeLinear', ['W', 'W_scale', 'W_zero_point'], { axis: 1 }, { name: 'W_QuantizeLinear' });
    const dq = qb.op('DequantizeLinear', [wq, 'W_scale', 'W_zero_point'], { axis: 1 }, { name: 'W_DequantizeLinear' });
    qb.output(qb.op('MatMul', [x, dq], {}, { name: 'mm' }), DataType.FLOAT);
    const m = mapQdq(qb.build(), float);
    assert.deepEqual([m.activations.length, m.weights.length, m.unmapped.length], [0, 1, 0]);
    const link = m.weights[0]!;
    assert.deepEqual([link.quantized, link.params.qtype.name, link.channelAxis], ['W', 'int8', 1]);
    const scale = Float32Array.of(0.01, 0.02, 0.03);
    const q = quantizeLinear(trained, scale, 0, 'int8', { axis: 1, dims: [4, 3] });
    assert.deepEqual([...link.values], [...q]);
    const e = weightError(link)!;
    assert.equal(e.name, 'W');
    // Compared with the float model's weight, so it includes what training changed.
    assert.equal(e.sqnrDb, sqnrDb(w, dequantizeLinear(q, scale, 0, { axis: 1, dims: [4, 3] })));
  });
});

describe('ActivationErrorStats', () => {
  const params: DqParams = { qtype: QUANT_TYPES.uint8, scale: Float32Array.of(0.1), zeroPoint: Int32Array.of(10), axis: 1, blockSize: 0 };

  it('clipped fraction counts exactly the values QuantizeLinear saturates; ranges; local SQNR by hand', () => {
    // quant range [(0 - 10) * 0.1, (255 - 10) * 0.1] = [-1, 24.5]
    const f = Float32Array.of(-2, -1, 0, 0.05, 24.5, 24.56, 30, 1.23);
    const q = quantizeLinear(f, 0.1, 10, 'uint8') as Uint8Array;
    const s = new ActivationErrorStats(params).add(f, [8], q).summary();
    // -2 -> -20 + 10 < 0; 24.56 -> 246 + 10 > 255; 30 -> saturated. 24.5 -> 255 exactly: not clipped.
    assert.equal(s.clippedFraction, 3 / 8);
    assert.deepEqual(s.floatRange, [-2, 30]);
    assert.deepEqual(s.quantRange, [Math.fround(-1), Math.fround(24.5)]);
    const qdq = dequantizeLinear(q, 0.1, 10);
    assert.equal(s.localSqnrDb, sqnrDb(f, qdq));
    // The quantized model's tensor is exactly QDQ(f) here, so accumulated = local.
    assert.equal(s.accumulatedSqnrDb, s.localSqnrDb);
    assert.equal(s.count, 8);
  });

  it('accumulated error uses the quantized model tensor; batches stream into the same sums as one batch', () => {
    const f = fill(200, 11, 3);
    // A quantized model whose tensor is off by one step on every fifth element.
    const q = quantizeLinear(f, 0.1, 10, 'uint8') as Uint8Array;
    for (let i = 0; i < q.length; i += 5) q[i] = Math.min(255, q[i]! + 1);
    const one = new ActivationErrorStats(params).add(f, [200], q).summary();
    const two = new ActivationErrorStats(params).add(f.subarray(0, 80), [80], q.subarray(0, 80)).add(f.subarray(80), [120], q.subarray(80)).summary();
    assert.ok(Math.abs(one.localSqnrDb - two.localSqnrDb) < 1e-9);
    assert.ok(Math.abs(one.accumulatedSqnrDb - two.accumulatedSqnrDb) < 1e-9);
    assert.equal(one.clippedFraction, two.clippedFraction);
    assert.deepEqual(one.floatRange, two.floatRange);
    assert.equal(one.accumulatedSqnrDb, sqnrDb(f, dequantizeLinear(q, 0.1, 10)));
    assert.ok(one.accumulatedSqnrDb < one.localSqnrDb);
  });

  it('per-tensor fast path equals the kernel path (per-axis parameters with equal scales), ties included', () => {
    // s = 0.5, z = 10: quantized range [-10, 245] after subtracting z. 122.75 / 0.5 = 245.5 rounds to 246
    // (saturated); -5.25 / 0.5 = -10.5 rounds to -10 (not saturated); -5.75 -> -11.5 -> -12 (saturated).
    const ties = [122.75, -5.25, -5.75, 123.25, 122.5, -5];
    const f = Float32Array.from([...ties, ...fill(594, 12, 40)]);
    const dims = [100, 3, 2];
    const perTensor: DqParams = { ...params, scale: Float32Array.of(0.5), zeroPoint: Int32Array.of(10) };
    const perAxis: DqParams = { ...params, scale: Float32Array.of(0.5, 0.5, 0.5), zeroPoint: Int32Array.of(10, 10, 10), axis: 1 };
    const q = quantizeLinear(f.map((v) => v * 0.9), 0.5, 10, 'uint8') as Uint8Array;
    const a = new ActivationErrorStats(perTensor).add(f, dims, q).summary();
    const b = new ActivationErrorStats(perAxis).add(f, dims, q).summary();
    assert.deepEqual(a, { ...b, quantRange: a.quantRange });
    assert.deepEqual(a.quantRange, b.quantRange);
    const tieStats = new ActivationErrorStats(perTensor).add(Float32Array.from(ties), [6], new Uint8Array(6)).summary();
    assert.equal(tieStats.clippedFraction, 3 / 6);
    const wide = quantizeLinear(f, 0.5, 10, 'int32') as Int32Array;
    assert.equal(a.clippedFraction, wide.filter((v) => v < 0 || v > 255).length / f.length);
    assert.ok(a.clippedFraction > 0.1 && a.clippedFraction < 0.9);
  });

  it('readDqParams: default zero point and type, and reasons for what it cannot read', () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, [2]);
    b.initializer('s', Float32Array.of(0.5), []);
    const y = b.op('QuantizeLinear', [x, 's'], {}, { name: 'q' });
    const z = b.op('DequantizeLinear', [y, 's'], {}, { name: 'dq' });
    b.output(b.op('DequantizeLinear', [y, x], {}, { name: 'dq2' }), DataType.FLOAT);
    b.output(z, DataType.FLOAT);
    const g = b.build().graph;
    const p = readDqParams(g, g.nodes.find((n) => n.name === 'dq')!) as DqParams;
    assert.deepEqual([p.qtype.name, [...p.scale], [...p.zeroPoint]], ['uint8', [0.5], [0]]);
    assert.match(readDqParams(g, g.nodes.find((n) => n.name === 'dq2')!) as string, /scale 'x' is not a constant/);
  });
});

describe('renderCompareReport', () => {
  const layer = (tensor: string, local: number, clipped: number) => ({
    tensor, node: `${tensor}_node`, opType: 'Conv', localSqnrDb: local, accumulatedSqnrDb: local - 3, cosine: 0.99, floatRange: [-1.23456, 7.5] as [number, number], quantRange: [-1, 6] as [number, number], clippedFraction: clipped,
  });
  const result = {
    samples: 1234,
    output: { sqnrDb: 21.04, cosine: 0.9951, agreement: 0.975 },
    layers: [layer('a', 10, 0.25), layer('b', 20, 5e-7), layer('c', 30, 0)],
    weights: [{ name: 'w1', node: 'conv', opType: 'Conv', qtype: 'int4', sqnrDb: 18.2, worstChannel: 3, worstChannelSqnrDb: 12.1 }, { name: 'bias_like', node: 'add', opType: 'Add', qtype: 'int8', sqnrDb: Infinity, worstChannel: null, worstChannelSqnrDb: null }],
    notes: ['one note'],
  };

  it('top K rows worst first, the model output as the last row, weights, notes', () => {
    const text = renderCompareReport(result, { top: 2, float: 'f.onnx', quant: 'q.onnx' });
    assert.match(text, /q\.onnx vs f\.onnx, 1,234 samples\. Quantized activations, worst 2 of 3/);
    const rows = text.split('\n').filter((l) => l.startsWith('│'));
    assert.match(rows[1]!, /│ 1 │ a +│ a_node \(Conv\) +│ +10\.0 dB │ +7\.0 dB │ 0\.9900 │ \[-1\.23, 7\.5\] +│ \[-1, 6\] +│ 25\.00% +│/);
    assert.match(rows[2]!, /│ +2 │ b .*<0\.01%/);
    assert.match(rows[3]!, /│ +│ model output +│ top-1 agreement 97\.5% +│ +│ +21\.0 dB │ 0\.9951 │/);
    assert.ok(!text.includes("│ 3 │ c"));
    assert.match(text, /│ +1 │ w1 +│ conv \(Conv\) +│ int4 │ 18\.2 dB │ +3 │ +12\.1 dB │/);
    assert.match(text, /│ +2 │ bias_like .*│ +inf dB │ +- │ +- │/);
    assert.match(text, /note: one note/);
  });

  it('formatValue: three significant digits, exponent only for extreme magnitudes', () => {
    assert.deepEqual([0, 7.6182, -0.035118, 13.9348, 1234.5, 1e-6, 2e6].map(formatValue), ['0', '7.62', '-0.0351', '13.9', '1230', '1.00e-6', '2.00e+6']);
  });
});
