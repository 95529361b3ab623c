// Depthwise channel padding (passes/pad-channels.ts) run in ONNX Runtime: exact in float on a builder
// MobileNet block and on PP-OCR cls, and after static quantization the padded depthwise convs become
// QLinearConv with the fidelity of the float model kept.

import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { ocrClsBatch } from '../../src/data/realistic-ocr.js';
import { realModelPath } from '../../src/data/realistic-models.js';
import { loadModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { getAttribute } from '../../src/onnx/attributes.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { padDepthwiseChannels } from '../../src/passes/pad-channels.js';
import { preprocessForQuantization } from '../../src/passes/preprocess.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { cosineSimilarity } from '../../src/quant/metrics.js';
import { optimizedModel } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';
import { buildMobileBlock } from '../unit/pad-channels-fixtures.js';
import { arraySource, normalArray } from './quantize-static-fixtures.js';
import { maxRelError } from '../helpers.js';

async function run(model: Model, x: NdArray): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    const out = await s.run({ x });
    return Object.values(out)[0]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Channel counts (group) of the QLinearConv nodes ORT makes of a model, depthwise ones only. */
async function qlinearDepthwiseGroups(model: Model): Promise<number[]> {
  const opt = await optimizedModel(encodeModel(model.toProto()), { threads: 2, level: 'all' });
  return opt.graph!.node
    .filter((n) => n.opType === 'QLinearConv')
    .map((n) => Number(getAttribute(n, 'group')?.i ?? 1n))
    .filter((g) => g > 1)
    .sort((a, b) => a - b);
}

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: true };

test('padding a MobileNet block (88 -> 96; 104 -> 112 with SE and HardSwish) changes no output', async () => {
  for (const opts of [{ channels: 88 }, { channels: 104, se: true, hardSwish: true }]) {
    const m = buildMobileBlock(opts);
    const r = padDepthwiseChannels(m);
    assert.equal(r.padded.length, 1);
    const x = normalArray([4, 16, 12, 12], 3);
    const a = await run(m, x);
    const b = await run(r.model, x);
    assert.ok(maxRelError(b, a) < 1e-5, `${opts.channels}: relative error ${maxRelError(b, a)}`);
    assert.ok(a.some((v) => v !== 0));
  }
});

test('the padded block quantizes its depthwise conv (QLinearConv, group 96); unpadded it stays float', async () => {
  const m = buildMobileBlock({ channels: 88 });
  const calib = normalArray([16, 16, 12, 12], 4);
  const quantize = async (padChannels: boolean): Promise<Model> => {
    const opts = { ...OPTS, padChannels };
    const plan = planQdq(m, opts);
    const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 8 });
    return quantizeStatic(m, ranges, opts).model;
  };
  const padded = await quantize(true);
  const unpadded = await quantize(false);
  assert.deepEqual(await qlinearDepthwiseGroups(padded), [96]);
  assert.deepEqual(await qlinearDepthwiseGroups(unpadded), []);
  const x = normalArray([8, 16, 12, 12], 5);
  const f = await run(m, x);
  const cos = cosineSimilarity(f, await run(padded, x));
  assert.ok(cos > 0.99, `cosine ${cos}`);
});

test('PP-OCR cls: five depthwise groups padded (88, 104, 200 channels), outputs unchanged, int8 fidelity kept', async () => {
  const float = new Model((await loadModel(realModelPath('ocrCls'))).model);
  const pre = preprocessForQuantization(float).model;
  const r = padDepthwiseChannels(pre);
  assert.deepEqual(
    r.padded.map((g) => `${g.depthwise.join('+')}:${g.from}->${g.to}`),
    ['p2o.Conv.18:88->96', 'p2o.Conv.23:88->96', 'p2o.Conv.38:104->112', 'p2o.Conv.43:200->208', 'p2o.Conv.48:200->208'],
  );
  // Each group: the expanding 1x1 Conv and the SE block's excitation Conv grow filters; the projecting 1x1
  // Conv and the SE squeeze Conv grow input channels.
  for (const g of r.padded) {
    assert.equal(g.producers.length, 2);
    assert.equal(g.consumers.length, 2);
  }
  assert.deepEqual(r.skipped, []);
  const data = ocrClsBatch(32, 1).input;
  const x: NdArray = { ...data, shape: [8, ...data.shape.slice(1)], data: (data.data as Float32Array).slice(0, (data.data.length / 32) * 8) };
  const f = await run(float, x);
  const p = await run(r.model, x);
  assert.ok(maxRelError(p, f) < 1e-4, `relative error ${maxRelError(p, f)}`);

  const plan = planQdq(float, OPTS);
  const ranges = await calibrate(plan.model, arraySource('x', data), { tensors: plan.tensors, batch: 8 });
  const q = quantizeStatic(float, ranges, OPTS);
  assert.ok(q.report.preprocess.some((c) => /padded p2o\.Conv\.43 from 200 to 208/.test(c)));
  const groups = await qlinearDepthwiseGroups(q.model);
  assert.deepEqual(groups, [96, 96, 112, 208, 208]);
  const cos = cosineSimilarity(f, await run(q.model, x));
  assert.ok(cos > 0.99, `cosine ${cos}`);
});
