// `lowbit compare` spawned as users run it: --json shape and content on a builder CNN with one
// mis-calibrated layer, the human table, --help, and the error paths (exit codes, stderr, no stack).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { arraySource, buildSmallCnn, normalArray } from './quantize-static-fixtures.js';
import { lowbit, assertFails } from '../cli-helpers.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };




const tmp = mkdtempSync(join(tmpdir(), 'lowbit-compare-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const FLOAT = join(tmp, 'cnn.onnx');
const QUANT = join(tmp, 'cnn.qdq.onnx');
const DATA = join(tmp, 'x.npy');
const WRONG = join(tmp, 'wrong.npy');

before(async () => {
  const float = buildSmallCnn(1);
  const plan = planQdq(float, OPTS);
  const ranges = await calibrate(plan.model, arraySource('x', normalArray([32, 3, 32, 32], 5)), { tensors: plan.tensors, batch: 16 });
  const r = ranges.get('relu3_out')!;
  ranges.set('relu3_out', { min: 0, max: r.max * 0.05 });
  writeFileSync(FLOAT, encodeModel(float.toProto()));
  writeFileSync(QUANT, encodeModel(quantizeStatic(float, ranges, OPTS).model.toProto()));
  writeNpy(DATA, normalArray([12, 3, 32, 32], 9));
  writeNpy(WRONG, normalArray([2, 3, 16], 9));
});

describe('lowbit compare', { concurrency: 4 }, () => {
  test('--json: one object with the documented keys; the mis-calibrated layer first; --top cuts the lists', async () => {
    const r = await lowbit(['compare', FLOAT, QUANT, '--data', DATA, '--json', '--top', '5', '--batch', '4']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const s = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(s), ['samples', 'output', 'layers', 'weights', 'notes']);
    assert.equal(s.samples, 12);
    assert.deepEqual(Object.keys(s.output), ['sqnrDb', 'cosine', 'agreement']);
    assert.equal(s.layers.length, 5);
    assert.equal(s.weights.length, 5);
    assert.deepEqual(Object.keys(s.layers[0]), ['tensor', 'node', 'opType', 'localSqnrDb', 'accumulatedSqnrDb', 'cosine', 'floatRange', 'quantRange', 'clippedFraction']);
    assert.deepEqual(Object.keys(s.weights[0]), ['name', 'node', 'opType', 'qtype', 'sqnrDb', 'worstChannel', 'worstChannelSqnrDb']);
    assert.deepEqual([s.layers[0].tensor, s.layers[0].node, s.layers[0].opType], ['relu3_out', 'relu3', 'Relu']);
    assert.ok(s.layers[0].clippedFraction > 0.3 && s.layers[0].localSqnrDb < 5, JSON.stringify(s.layers[0]));
    for (let i = 1; i < 5; i++) assert.ok(s.layers[i - 1].localSqnrDb <= s.layers[i].localSqnrDb);
    for (let i = 1; i < 5; i++) assert.ok(s.weights[i - 1].sqnrDb <= s.weights[i].sqnrDb);
    assert.ok(s.output.sqnrDb > 0 && s.output.cosine > 0.5 && s.output.cosine <= 1, JSON.stringify(s.output));
    assert.deepEqual(s.notes, []);
  });

  test('human table: the worst layer in row 1, the model output row, the weight table', async () => {
    const r = await lowbit(['compare', FLOAT, QUANT, '--data', DATA, '--top', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /12 samples\. Quantized activations, worst 3 of \d+, by local SQNR/);
    assert.match(r.stdout, /│ 1 │ relu3_out +│ relu3 \(Relu\) +│/);
    assert.match(r.stdout, /│ +│ model output +│ top-1 agreement [\d.]+% +│/);
    assert.match(r.stdout, /Quantized weights, worst 3 of \d+/);
  });

  test('--help names the options and defines local and accumulated error', async () => {
    const r = await lowbit(['compare', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: lowbit compare \[options\] <FLOAT> <QUANT>/);
    for (const o of ['--data', '--batch', '--top', '--threads', '--json', 'local SQNR', 'accumulated', 'clipped']) assert.ok(r.stdout.includes(o), o);
    const top = await lowbit(['--help']);
    assert.match(top.stdout, /^ {2}compare /m);
  });

  test('errors: not a QDQ model and data not fitting -> 3; missing --data, bad --top -> 2', async () => {
    const [notQ, wrong, noData, badTop, missing] = await Promise.all([
      lowbit(['compare', FLOAT, FLOAT, '--data', DATA]),
      lowbit(['compare', FLOAT, QUANT, '--data', WRONG]),
      lowbit(['compare', FLOAT, QUANT]),
      lowbit(['compare', FLOAT, QUANT, '--data', DATA, '--top', '0']),
      lowbit(['compare', FLOAT, join(tmp, 'nope.onnx'), '--data', DATA]),
    ]);
    assertFails(notQ, 3, /has no DequantizeLinear node: it is not a static \(QDQ\) quantized model/);
    assertFails(wrong, 3, /wrong\.npy/);
    assertFails(noData, 2, /--data/);
    assertFails(badTop, 2, /--top/);
    assertFails(missing, 3, /quantized model not found/);
  });
});
