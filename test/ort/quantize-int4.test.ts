// Static PTQ with int4 weights in ONNX Runtime: the opset-21 model with packed INT4 weights runs, stays
// close to the float model, is smaller than int8, and ORT executes DequantizeLinear + float Conv/Gemm for
// those nodes (no 4-bit integer kernel in QDQ form) while the other quantized ops still fuse. Also
// quantize() end to end with weightType 'int4'.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { cosineSimilarity } from '../../src/quant/metrics.js';
import { optimizedOpTypes } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';
import { arraySource, buildDenseCnn, buildSmallCnn, normalArray } from './quantize-static-fixtures.js';

const INT8: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const INT4: StaticQuantOptions = { ...INT8, weightType: 'int4' };

async function run(model: Model, feeds: Record<string, NdArray>): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    return (await s.run(feeds)).softmax_out!.data as Float32Array;
  } finally {
    await s.release();
  }
}

async function quantizeWith(model: Model, calib: NdArray, opts: StaticQuantOptions) {
  const plan = planQdq(model, opts);
  const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 8 });
  return quantizeStatic(plan.model, ranges, opts);
}

const argmax = (a: Float32Array, cols: number): number[] =>
  Array.from({ length: a.length / cols }, (_, r) => {
    let best = 0;
    for (let c = 1; c < cols; c++) if (a[r * cols + c]! > a[r * cols + best]!) best = c;
    return best;
  });

describe('static quantization with int4 weights in ORT', () => {
  const calib = normalArray([32, 3, 32, 32], 11);
  const heldOut = normalArray([32, 3, 32, 32], 12);

  it('small CNN: runs, close to float, float Conv/Gemm on dequantized INT4 weights, other ops still fused', async (t) => {
    const model = buildSmallCnn(1);
    const { model: q, report } = await quantizeWith(model, calib, INT4);
    const f = await run(model, { x: heldOut });
    const g = await run(q, { x: heldOut });
    const cos = cosineSimilarity(f, g);
    const agree = argmax(f, 10).filter((v, i) => v === argmax(g, 10)[i]).length;
    t.diagnostic(`cosine ${cos.toFixed(5)}, top-1 agreement ${agree}/32`);
    assert.ok(cos > 0.99, `cosine ${cos}`);
    assert.ok(agree >= 27, `top-1 agreement ${agree}/32`);
    const int4 = [...q.graph.initializers.values()].filter((t) => t.dataType === DataType.INT4);
    assert.equal(int4.length, 14, '7 weights and their 7 zero points');
    const counts = await optimizedOpTypes(encodeModel(q.toProto()), 2);
    assert.equal(counts.get('QLinearConv'), undefined, 'no integer Conv for 4-bit weights');
    assert.equal((counts.get('Conv') ?? 0) + (counts.get('com.microsoft:FusedConv') ?? 0), 6, JSON.stringify([...counts]));
    assert.equal(counts.get('Gemm'), 1);
    for (const op of ['QLinearAdd', 'QLinearConcat', 'QLinearAveragePool', 'QLinearSoftmax']) assert.equal(counts.get(`com.microsoft:${op}`), 1, op);
    assert.ok(report.notes.some((n) => /DequantizeLinear \+ float op/.test(n)));
  });

  it('dense CNN: the int4 file is about half the int8 file, with MSE clipping beating min-max', async (t) => {
    const model = buildDenseCnn(1, { channels: 32 });
    const i8 = await quantizeWith(model, calib, INT8);
    const i4 = await quantizeWith(model, calib, INT4);
    const i4mm = await quantizeWith(model, calib, { ...INT4, weightClip: 'minmax' });
    const [b8, b4] = [encodeModel(i8.model.toProto()).length, encodeModel(i4.model.toProto()).length];
    assert.ok(b4 < 0.6 * b8, `int4 ${b4} bytes vs int8 ${b8} bytes`);
    const f = await run(model, { x: heldOut });
    const [c8, c4, c4mm] = [cosineSimilarity(f, await run(i8.model, { x: heldOut })), cosineSimilarity(f, await run(i4.model, { x: heldOut })), cosineSimilarity(f, await run(i4mm.model, { x: heldOut }))];
    t.diagnostic(`bytes int8 ${b8}, int4 ${b4}; cosine vs float: int8 ${c8.toFixed(5)}, int4 mse ${c4.toFixed(5)}, int4 minmax ${c4mm.toFixed(5)}`);
    assert.ok(c8 > 0.999 && c4 > 0.98, `cosine int8 ${c8}, int4 ${c4}`);
    assert.ok(1 - c4 < 1 - c4mm, `int4 output error with MSE clipping ${1 - c4} vs min-max ${1 - c4mm}`);
  });
});

describe('quantize() with weightType int4', () => {
  it('writes an opset-21 model with INT4 weights and reports the float kernels', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowbit-int4-'));
    const input = join(dir, 'cnn.onnx');
    await saveModel(buildDenseCnn(2, { channels: 16 }).toProto(), input);
    const calib = join(dir, 'calib.npy');
    writeNpy(calib, normalArray([24, 3, 32, 32], 5));
    const output = join(dir, 'cnn.int4.onnx');
    const r = await quantize({ input, output, calib, weightType: 'int4' });
    assert.ok(r.sizeBytes.after < r.sizeBytes.before / 3, JSON.stringify(r.sizeBytes));
    assert.ok((r.fidelity.cosine ?? 0) > 0.98, JSON.stringify(r.fidelity));
    assert.equal(r.nodes.find((n) => n.node === 'conv1')?.detail, 'float Conv on DequantizeLinear(int4 weight)');
    const saved = (await loadModel(output)).model;
    assert.equal(saved.opsetImport.find((o) => !o.domain)?.version, 21n);
    assert.ok(saved.graph!.initializer.some((t) => t.dataType === DataType.INT4));
  });
});
