// Static (QDQ) quantization end to end in ONNX Runtime on builder-made models: calibrate -> quantize ->
// run; fidelity against the float model on held-out inputs, ORT's fused integer kernels (optimizedOpTypes),
// constant activations, exclusions, calibration streaming and errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { cosineSimilarity } from '../../src/quant/metrics.js';
import { optimizedOpTypes } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';
import { runWithTaps } from '../../src/runtime/tapped.js';
import { arraySource, buildSmallCnn, normalArray } from './quantize-static-fixtures.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const FLOAT_COMPUTE = ['Conv', 'MatMul', 'Gemm', 'com.microsoft:FusedConv', 'com.microsoft:FusedMatMul', 'com.microsoft:FusedGemm'];

async function run(model: Model, feeds: Record<string, NdArray>): Promise<Record<string, NdArray>> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** plan -> calibrate -> quantize, as the pipeline does it. */
async function quantizeWith(model: Model, input: string, calib: NdArray, opts: StaticQuantOptions = OPTS) {
  const plan = planQdq(model, opts);
  const ranges = await calibrate(plan.model, arraySource(input, calib), { tensors: plan.tensors, batch: 8 });
  return { ...quantizeStatic(plan.model, ranges, opts), plan, ranges };
}

const argmaxRows = (a: NdArray): number[] => {
  const cols = a.shape[a.shape.length - 1]!;
  const out: number[] = [];
  for (let r = 0; r < a.data.length / cols; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if ((a.data[r * cols + c] as number) > (a.data[r * cols + best] as number)) best = c;
    out.push(best);
  }
  return out;
};

describe('static quantization of the small CNN', () => {
  const model = buildSmallCnn(1);
  const calib = normalArray([64, 3, 32, 32], 11);
  const heldOut = normalArray([32, 3, 32, 32], 12);

  it('matches the float model on held-out inputs', async () => {
    const { model: q, report } = await quantizeWith(model, 'x', calib);
    const f = (await run(model, { x: heldOut })).softmax_out!;
    const g = (await run(q, { x: heldOut })).softmax_out!;
    const cos = cosineSimilarity(f.data as Float32Array, g.data as Float32Array);
    assert.ok(cos > 0.99, `cosine ${cos}`);
    const fa = argmaxRows(f);
    const ga = argmaxRows(g);
    const agree = fa.filter((v, i) => v === ga[i]).length;
    assert.ok(agree >= 29, `top-1 agreement ${agree}/32`);
    assert.equal(report.nodes.filter((n) => !n.quantized).length, 0, JSON.stringify(report.nodes.filter((n) => !n.quantized)));
  });

  it('leaves no float Conv/Gemm after ORT optimization: every node unit becomes an integer kernel', async () => {
    const { model: q } = await quantizeWith(model, 'x', calib);
    const counts = await optimizedOpTypes(encodeModel(q.toProto()), 2);
    for (const op of FLOAT_COMPUTE) assert.equal(counts.get(op), undefined, `float ${op} remains: ${JSON.stringify([...counts])}`);
    assert.equal(counts.get('QLinearConv'), 6);
    assert.equal(counts.get('com.microsoft:QGemm'), 1);
    for (const op of ['QLinearAdd', 'QLinearMul', 'QLinearConcat', 'QLinearAveragePool', 'QLinearGlobalAveragePool', 'QLinearSoftmax']) {
      assert.equal(counts.get(`com.microsoft:${op}`), 1, op);
    }
    // Relu/Clip were folded away; one Q at the input and one DQ at the output are all that is left.
    assert.equal(counts.get('Relu'), undefined);
    assert.equal(counts.get('Clip'), undefined);
    assert.equal(counts.get('QuantizeLinear'), 1);
    assert.equal(counts.get('DequantizeLinear'), 1);
    assert.equal(counts.get('MaxPool'), 1, 'MaxPool runs on uint8 between dropped Q/DQ pairs');
  });

  it('keeps excluded nodes float (their outputs stay float so ORT cannot fuse them)', async () => {
    const opts = { ...OPTS, excludeNodes: ['conv3'], excludeOps: ['Concat'] };
    const { model: q, report } = await quantizeWith(model, 'x', calib, opts);
    const counts = await optimizedOpTypes(encodeModel(q.toProto()), 2);
    assert.equal((counts.get('Conv') ?? 0) + (counts.get('com.microsoft:FusedConv') ?? 0), 1, JSON.stringify([...counts]));
    assert.equal(counts.get('QLinearConv'), 5);
    assert.equal(counts.get('Concat'), 1);
    assert.equal(counts.get('com.microsoft:QLinearConcat'), undefined);
    const why = new Map(report.nodes.filter((n) => !n.quantized).map((n) => [n.name, n.reason]));
    assert.equal(why.get('conv3'), 'excluded by name');
    assert.equal(why.get('concat'), 'excluded by op type');
    assert.match(why.get('avgpool')!, /excluded node 'concat'/, 'a reader of an excluded output stays float too');
    const f = (await run(model, { x: heldOut })).softmax_out!;
    const g = (await run(q, { x: heldOut })).softmax_out!;
    assert.ok(cosineSimilarity(f.data as Float32Array, g.data as Float32Array) > 0.99);
  });

  it('int8 activations work but do not fuse fully on this CPU (why uint8 is the default fast path)', async () => {
    const { model: q, report } = await quantizeWith(model, 'x', calib, { ...OPTS, activationType: 'int8' });
    const f = (await run(model, { x: heldOut })).softmax_out!;
    const g = (await run(q, { x: heldOut })).softmax_out!;
    assert.ok(cosineSimilarity(f.data as Float32Array, g.data as Float32Array) > 0.99);
    assert.ok(report.notes.some((n) => /uint8/.test(n)), report.notes.join('\n'));
  });
});

describe('static quantization of classifier heads (per-channel weights, Relu folded)', () => {
  for (const kind of ['Gemm transB=0', 'Gemm transB=1', 'MatMul 2-D', 'MatMul 3-D input'] as const) {
    it(`${kind}: fused into one integer kernel and close to float`, async () => {
      const b = new ModelBuilder({ opset: 13 });
      const is3d = kind === 'MatMul 3-D input';
      const transB = kind === 'Gemm transB=1';
      const x = b.input('x', DataType.FLOAT, is3d ? ['N', 5, 16] : ['N', 16]);
      const W = b.initializer('W', normalArray(transB ? [8, 16] : [16, 8], 2, 0.3).data as Float32Array, transB ? [8, 16] : [16, 8]);
      const y = kind.startsWith('Gemm')
        ? b.op('Gemm', [x, W, b.initializer('C', Float32Array.from({ length: 8 }, (_, i) => i / 10), [8])], { transB: transB ? 1 : 0 }, { name: 'head' })
        : b.op('MatMul', [x, W], {}, { name: 'head' });
      b.output(b.op('Relu', [y], {}, { name: 'relu' }), DataType.FLOAT);
      const model = b.build();
      const { model: q } = await quantizeWith(model, 'x', normalArray(is3d ? [64, 5, 16] : [64, 16], 3));
      const counts = await optimizedOpTypes(encodeModel(q.toProto()), 1);
      const kernel = kind.startsWith('Gemm') ? 'com.microsoft:QGemm' : 'QLinearMatMul';
      assert.deepEqual([...counts].sort(), [[kernel, 1], ['DequantizeLinear', 1], ['QuantizeLinear', 1]].sort());
      const t = normalArray(is3d ? [8, 5, 16] : [8, 16], 4);
      const f = (await run(model, { x: t })).relu_out!;
      const g = (await run(q, { x: t })).relu_out!;
      assert.ok(cosineSimilarity(f.data as Float32Array, g.data as Float32Array) > 0.999);
    });
  }
});

describe('static quantization edge cases', () => {
  it('a constant (range 0) activation gives no NaN', async () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, ['N', 2, 4, 4]);
    const zero = b.op('Mul', [x, b.initializer('k0', Float32Array.of(0), [])], {}, { name: 'zero' });
    const w = b.initializer('W', Float32Array.from({ length: 2 * 2 * 9 }, (_, i) => (i % 5) - 2), [2, 2, 3, 3]);
    const conv = b.op('Conv', [zero, w, b.initializer('B', Float32Array.of(0.5, -0.25), [2])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv' });
    b.output(b.op('Add', [conv, x], {}, { name: 'add' }), DataType.FLOAT);
    const model = b.build();
    const { model: q, ranges } = await quantizeWith(model, 'x', normalArray([8, 2, 4, 4], 3));
    assert.deepEqual(ranges.get('zero_out'), { min: 0, max: 0 });
    const feeds = { x: normalArray([4, 2, 4, 4], 4) };
    const f = (await run(model, feeds)).add_out!;
    const g = (await run(q, feeds)).add_out!;
    assert.ok((g.data as Float32Array).every(Number.isFinite), 'no NaN/Inf');
    assert.ok(cosineSimilarity(f.data as Float32Array, g.data as Float32Array) > 0.99);
  });

  it('calibration streams: ranges do not depend on the batch size and equal the true min/max', async () => {
    const model = buildSmallCnn(2);
    const plan = planQdq(model);
    const data = normalArray([20, 3, 32, 32], 5);
    const small = await calibrate(plan.model, arraySource('x', data), { tensors: plan.tensors, batch: 3 });
    const big = await calibrate(plan.model, arraySource('x', data), { tensors: plan.tensors, batch: 20 });
    // ORT's kernels may round differently at another batch size: compare to float32 precision.
    const close = (a: { min: number; max: number } | undefined, b: { min: number; max: number }, what: string) => {
      assert.ok(a, what);
      for (const k of ['min', 'max'] as const) assert.ok(Math.abs(a[k] - b[k]) <= 1e-5 * Math.max(1, Math.abs(b[k])), `${what}.${k}: ${a[k]} vs ${b[k]}`);
    };
    assert.deepEqual([...small.keys()], [...big.keys()]);
    for (const [t, r] of big) close(small.get(t), r, t);
    let direct: Record<string, NdArray> = {};
    await runWithTaps(plan.model, ['relu1_out', 'gap_out'], [{ x: data }], (r) => {
      direct = r.taps;
    });
    for (const t of ['relu1_out', 'gap_out']) {
      const d = direct[t]!.data as Float32Array;
      close(small.get(t), { min: d.reduce((a, v) => Math.min(a, v)), max: d.reduce((a, v) => Math.max(a, v)) }, t);
    }
    assert.equal(small.get('relu1_out')!.min, 0, 'a Relu output starts at 0');
    let calls = 0;
    await calibrate(plan.model, arraySource('x', data), { tensors: ['x'], batch: 8, onProgress: () => calls++ });
    assert.equal(calls, 3);
  });

  it('calibration reports a NaN/Inf produced by the model, naming the tensor', async () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, ['N', 2]);
    b.output(b.op('Log', [x], {}, { name: 'log' }), DataType.FLOAT);
    const data: NdArray = { dtype: 'float32', shape: [2, 2], data: Float32Array.of(1, 2, 0, 3) };
    await assert.rejects(
      calibrate(b.build(), arraySource('x', data), { tensors: ['log_out'] }),
      (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE' && /'log_out'/.test(e.message),
    );
    await assert.rejects(calibrate(b.build(), arraySource('x', data), { tensors: ['nope'] }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
  });
});
