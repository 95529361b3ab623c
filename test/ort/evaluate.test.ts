// evaluate(): accuracy / agreement / fidelity on tiny models whose answers are known by construction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';
import { bindToModelInputs, dataSourceFromArrays } from '../../src/data/calib-data.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { evaluate, normalizeLabels } from '../../src/pipeline/evaluate.js';
import type { ProgressEvent } from '../../src/pipeline/options.js';
import { Session } from '../../src/runtime/session.js';

// Ten logit rows; top-1 = [0, 1, 2, 0, 1, 0, 1, 0, 2, 1].
const LOGITS = [
  [5, 0, 0], [0, 5, 0], [0, 0, 5], [2, 0, 1], [0, 2, 1],
  [4, 1, 0], [1, 4, 0], [3, 0, 2], [0, 1, 3], [1, 3, 2],
];
// Right for all but samples 5, 6 and 7: 7/10.
const LABELS = Int32Array.from([0, 1, 2, 0, 1, 2, 2, 2, 2, 1]);
// Adding 3 to class 2 flips samples 3, 4, 7 and 9 to class 2: agreement 6/10; that model gets
// samples 0, 1, 2, 7, 8 right: 5/10.
const BOOST = [0, 0, 3];

/** out = x (op 'Identity') or x * k / x + k (op 'Mul' / 'Add' with constant k of shape [3]). */
function classifier(op: 'Identity' | 'Mul' | 'Add', k: number[] = [1, 1, 1], fixedBatch = false): Uint8Array {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, [fixedBatch ? 1 : 'N', 3]);
  const y = op === 'Identity' ? b.op('Identity', [x], {}, { name: 'logits' }) : b.op(op, [x, b.initializer('k', new Float32Array(k), [3])], {}, { name: 'logits' });
  b.output(y, DataType.FLOAT);
  return encodeModel(b.build().toProto());
}

async function bound(model: Uint8Array, rows: number[][] = LOGITS) {
  const s = await Session.create(model);
  const ds = dataSourceFromArrays({ x: { dtype: 'float32', shape: [rows.length, 3], data: new Float32Array(rows.flat()) } });
  const data = bindToModelInputs(ds, s.inputs);
  await s.release();
  return data;
}

test('accuracy vs labels: 7/10, for several batch sizes and label forms', async () => {
  const model = classifier('Identity');
  const data = await bound(model);
  for (const batch of [1, 3, 4, 10, 64]) {
    const r = await evaluate({ model, data, labels: LABELS, batch });
    assert.equal(r.samples, 10);
    assert.equal(r.accuracy, 0.7, `batch ${batch}`);
    assert.equal(r.agreement, undefined);
    assert.equal(r.sqnrDb, undefined);
  }
  const oneHot = new Float32Array(30);
  LABELS.forEach((l, i) => (oneHot[i * 3 + l] = 1));
  assert.equal((await evaluate({ model, data, labels: { dtype: 'float32', shape: [10, 3], data: oneHot } })).accuracy, 0.7);
  const col: NdArray = { dtype: 'int64', shape: [10, 1], data: BigInt64Array.from([...LABELS].map(BigInt)) };
  assert.equal((await evaluate({ model, data, labels: col, batch: 4 })).accuracy, 0.7);
});

test('a model against itself: agreement 1, SQNR +Infinity, cosine 1, max error 0', async () => {
  const model = classifier('Identity');
  const r = await evaluate({ model, reference: model, data: await bound(model), labels: LABELS, batch: 4 });
  assert.equal(r.agreement, 1);
  assert.equal(r.sqnrDb, Infinity);
  assert.equal(r.cosine, 1);
  assert.equal(r.maxAbsError, 0);
  assert.equal(r.accuracy, 0.7);
  assert.equal(r.referenceAccuracy, 0.7);
});

test('against a boosted reference: agreement 6/10, reference accuracy 5/10, SQNR from the noise', async () => {
  const model = classifier('Identity');
  const reference = classifier('Add', BOOST);
  const r = await evaluate({ model, reference, data: await bound(model), labels: LABELS, batch: 3 });
  assert.equal(r.agreement, 0.6);
  assert.equal(r.accuracy, 0.7);
  assert.equal(r.referenceAccuracy, 0.5);
  // reference = x + BOOST, test = x: noise = 10 * 3^2 = 90
  let signal = 0;
  for (const row of LOGITS) row.forEach((v, c) => (signal += (v + BOOST[c]!) ** 2));
  assert.ok(Math.abs(r.sqnrDb! - 10 * Math.log10(signal / 90)) < 1e-9, `sqnr ${r.sqnrDb}`);
  assert.equal(r.maxAbsError, 3);
  assert.ok(r.cosine! > 0.5 && r.cosine! < 1);
});

test('a scaled reference: agreement 1, SQNR 10*log10(25), cosine 1', async () => {
  const model = classifier('Identity');
  const r = await evaluate({ model, reference: classifier('Mul', [1.25, 1.25, 1.25]), data: await bound(model) });
  assert.equal(r.agreement, 1);
  assert.ok(Math.abs(r.sqnrDb! - 10 * Math.log10(25)) < 1e-9);
  assert.ok(Math.abs(r.cosine! - 1) < 1e-12);
  assert.equal(r.maxAbsError, 5 * 0.25);
});

/** Two outputs: x and x * k. */
function twoOutputs(k: number): Uint8Array {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 1]);
  b.output(b.op('Identity', [x], {}, { name: 'first' }), DataType.FLOAT);
  b.output(b.op('Mul', [x, b.initializer('k', new Float32Array([k]), [])], {}, { name: 'second' }), DataType.FLOAT);
  return encodeModel(b.build().toProto());
}

test('fidelity covers all outputs; agreement is omitted for a non-classifier first output', async () => {
  const model = twoOutputs(2);
  const s = await Session.create(model);
  const data = bindToModelInputs(dataSourceFromArrays({ x: { dtype: 'float32', shape: [5, 1], data: new Float32Array([1, -2, 3, 0.5, 4]) } }), s.inputs);
  await s.release();
  const r = await evaluate({ model, reference: twoOutputs(3), data, batch: 2 });
  assert.equal(r.samples, 5);
  assert.equal(r.agreement, undefined);
  // noise = sum x^2 (second output only); signal = sum x^2 + 9 sum x^2
  assert.ok(Math.abs(r.sqnrDb! - 10) < 1e-9, `sqnr ${r.sqnrDb}`);
  assert.equal(r.perOutput!['first_out']!.sqnrDb, Infinity);
  assert.ok(Math.abs(r.perOutput!['second_out']!.sqnrDb - 10 * Math.log10(9)) < 1e-9);
  await assert.rejects(evaluate({ model, data, labels: new Int32Array(5) }), (e: unknown) => e instanceof LowbitError && e.code === 'UNSUPPORTED_MODEL' && e.message.includes('first_out'));
});

test('integer class outputs (ArgMax) count as predictions', async () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 3]);
  b.output(b.op('ArgMax', [x], { axis: 1, keepdims: 0 }), DataType.INT64);
  const model = encodeModel(b.build().toProto());
  const r = await evaluate({ model, reference: model, data: await bound(model), labels: LABELS, batch: 3 });
  assert.equal(r.accuracy, 0.7);
  assert.equal(r.agreement, 1);
});

test('label count must equal the sample count; bad labels are BAD_DATA', async () => {
  const model = classifier('Identity');
  const data = await bound(model);
  await assert.rejects(evaluate({ model, data, labels: LABELS.subarray(0, 9) }), (e: unknown) => e instanceof LowbitError && e.code === 'DATA_MISMATCH' && e.message.includes('9 labels for 10 samples'));
  assert.throws(() => normalizeLabels({ dtype: 'float32', shape: [2], data: new Float32Array([0.5, 1]) }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_DATA');
  assert.throws(() => normalizeLabels({ dtype: 'int32', shape: [1, 2, 2], data: new Int32Array(4) }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_DATA');
});

test('a reference without the model outputs is a DATA_MISMATCH', async () => {
  const model = classifier('Identity');
  await assert.rejects(evaluate({ model, reference: twoOutputs(1), data: await bound(model) }), (e: unknown) => e instanceof LowbitError && e.code === 'DATA_MISMATCH' && e.message.includes('logits_out'));
});

test('fixed batch 1, progress events, open sessions are left open', async () => {
  const model = classifier('Identity', undefined, true);
  const session = await Session.create(model);
  try {
    const data = bindToModelInputs(dataSourceFromArrays({ x: { dtype: 'float32', shape: [10, 3], data: new Float32Array(LOGITS.flat()) } }), session.inputs);
    const events: ProgressEvent[] = [];
    const r = await evaluate({ model: session, reference: session, data, labels: LABELS, batch: 4, onProgress: (e) => events.push(e) });
    assert.equal(r.accuracy, 0.7);
    assert.equal(r.agreement, 1);
    assert.equal(events.length, 10);
    assert.deepEqual(events.at(-1), { stage: 'evaluate', done: 10, total: 10 });
    // plain iterables with more samples than the fixed batch are split too
    const r2 = await evaluate({ model: session, data: { count: 10, batches: () => [{ x: { dtype: 'float32', shape: [10, 3], data: new Float32Array(LOGITS.flat()) } }] }, labels: LABELS });
    assert.equal(r2.samples, 10);
    assert.equal(r2.accuracy, 0.7);
    assert.equal((await session.run({ x: { dtype: 'float32', shape: [1, 3], data: new Float32Array(3) } })).logits_out!.shape.length, 2);
  } finally {
    await session.release();
  }
});
