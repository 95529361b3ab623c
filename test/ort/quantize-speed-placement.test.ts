// Where the QDQ pairs end up in the graph ONNX Runtime actually runs (its optimized graph at the default
// level, NHWC layout included), with the speed policy on as quantize() uses it. Structural checks only: every
// Conv is an integer kernel or reported as kept float by the speed table, and no QuantizeLinear /
// DequantizeLinear is left between two integer kernels (each one costs a pass over memory). No timing.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ocrClsBatch } from '../../src/data/realistic-ocr.js';
import { realModelPath } from '../../src/data/realistic-models.js';
import { loadModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import type { ModelProto, NodeProto } from '../../src/onnx/proto.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { cosineSimilarity } from '../../src/quant/metrics.js';
import { opTypeCounts, optimizedModel } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';
import { arraySource, buildSmallCnn, normalArray } from './quantize-static-fixtures.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: true };
/** Float convolutions as ORT names them after its fusions (NCHWc layout at level 'all'). */
const FLOAT_CONV = ['Conv', 'com.microsoft:FusedConv', 'com.microsoft.nchwc:Conv'];
/** Ops that move 8-bit data without computing (ORT runs them on the quantized tensor). */
const MOVES = new Set(['Transpose', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Slice', 'MaxPool', 'NhwcMaxPool']);

async function quantizeModel(model: Model, calib: NdArray, opts: StaticQuantOptions = OPTS) {
  const plan = planQdq(model, opts);
  const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 8 });
  return quantizeStatic(plan.model, ranges, opts);
}

/** QuantizeLinear nodes that read a DequantizeLinear (directly or through 8-bit data moves): requantizations. */
function requantizations(m: ModelProto): string[] {
  const nodes = m.graph?.node ?? [];
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output) producer.set(o, n);
  const out: string[] = [];
  for (const q of nodes.filter((n) => n.opType === 'QuantizeLinear')) {
    let p = producer.get(q.input[0]!);
    while (p && MOVES.has(p.opType ?? '')) p = producer.get(p.input[0]!);
    if (p?.opType === 'DequantizeLinear') out.push(`${p.name} -> ${q.name}`);
  }
  return out;
}

async function firstOutput(model: Model, x: NdArray): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    return (await s.run({ x }))[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('speed policy: placement in the graph ORT runs', () => {
  it('16-channel CNN: pairs only where the float stem / depthwise block meets int8, nothing between integer kernels', async () => {
    const float = buildSmallCnn(1);
    const { model, report } = await quantizeModel(float, normalArray([64, 3, 32, 32], 11));
    const kept = report.nodes.filter((n) => /^kept float for speed/.test(n.reason ?? ''));
    assert.deepEqual(kept.map((n) => n.name), ['conv1', 'dwconv'], 'the 3->16 3x3 stem and the 16-channel depthwise conv');
    // The stem's Relu and the depthwise conv's Clip and reader (the pointwise conv) run float with them.
    assert.deepEqual(report.nodes.filter((n) => !n.quantized).map((n) => n.name), ['conv1', 'relu1', 'dwconv', 'clip_dw', 'pwconv']);
    const opt = await optimizedModel(encodeModel(model.toProto()), { threads: 2, level: 'all' });
    const counts = opTypeCounts(opt);
    assert.equal(counts.get('com.microsoft:QLinearConv'), 3, JSON.stringify([...counts]));
    assert.equal(FLOAT_CONV.reduce((s, op) => s + (counts.get(op) ?? 0), 0), 3);
    // Q after the stem (read by the residual Add), DQ into the depthwise block, Q out of it, DQ at the output.
    assert.equal(counts.get('QuantizeLinear'), 2);
    assert.equal(counts.get('DequantizeLinear'), 2);
    assert.deepEqual(requantizations(opt), []);
    const x = normalArray([16, 3, 32, 32], 12);
    // Measured: 0.9998 (ORT 1.30, x86).
    assert.ok(cosineSimilarity(await firstOutput(float, x), await firstOutput(model, x)) > 0.99);
  });

  it('PP-OCR cls: every Conv is QLinearConv or kept float by the speed table; Q/DQ only around float nodes', async () => {
    const float = new Model((await loadModel(realModelPath('ocrCls'))).model);
    const { model, report } = await quantizeModel(float, ocrClsBatch(32, 1).input);
    const convs = report.nodes.filter((n) => n.opType === 'Conv');
    assert.equal(convs.length, 53);
    const kept = convs.filter((n) => !n.quantized);
    // The 88-, 104- and 200-channel depthwise convs are padded to 96 / 112 / 208 (passes/pad-channels.ts) and run int8.
    const dw = ['p2o.Conv.2', 'p2o.Conv.7', 'p2o.Conv.10', 'p2o.Conv.13', 'p2o.Conv.28', 'p2o.Conv.33'];
    assert.deepEqual(kept.filter((n) => /^kept float for speed/.test(n.reason!)).map((n) => n.name), ['p2o.Conv.0', ...dw], 'the 3->8 3x3/2 stem and the 6 depthwise convs of 8-48 channels');
    // Pointwise convs reading a Relu'd depthwise output run float with it; every other Conv is int8.
    const readers = kept.filter((n) => !/^kept float for speed/.test(n.reason!));
    for (const n of readers) assert.match(n.reason!, /comes from node 'p2o\.Conv\.\d+' kept float for speed/, n.name);
    assert.deepEqual(readers.map((n) => n.name), ['p2o.Conv.8', 'p2o.Conv.11']);
    // The head after the last Conv (hardswish, MaxPool) stays float with the MaxPool; the pooling reads it float.
    const head = report.nodes.filter((n) => n.opType !== 'Conv' && /kept float for speed with|MaxPool/.test(n.reason ?? ''));
    assert.deepEqual(head.map((n) => n.name), ['p2o.Add.84', 'p2o.Clip.34', 'p2o.Mul.52', 'p2o.Div.17', 'p2o.MaxPool.0', 'p2o.GlobalAveragePool.18']);
    const opt = await optimizedModel(encodeModel(model.toProto()), { threads: 2, level: 'all' });
    const counts = opTypeCounts(opt);
    assert.equal(counts.get('com.microsoft:QLinearConv'), 53 - kept.length, JSON.stringify([...counts]));
    assert.equal(FLOAT_CONV.reduce((s, op) => s + (counts.get(op) ?? 0), 0), kept.length);
    assert.equal(counts.get('MaxPool'), 1, 'the float MaxPool of the head');
    assert.equal(counts.get('com.microsoft:NhwcMaxPool'), undefined);
    // Pairs only where float meets int8 (each float island, the HardSigmoids that have no integer form in
    // ORT): no QuantizeLinear reads a DequantizeLinear.
    assert.deepEqual(requantizations(opt), []);
    const test = ocrClsBatch(16, 2).input;
    // Measured: 0.993 (ORT 1.30, x86), as with every Conv quantized.
    assert.ok(cosineSimilarity(await firstOutput(float, test), await firstOutput(model, test)) > 0.98);
  });
});
