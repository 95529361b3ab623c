// `lowbit train` spawned as users run it: help, the builtin digit CNN trained on a few hundred MNIST digits
// (JSON and table output), the result quantized by `lowbit quantize`, and the error paths (exit codes,
// messages on stderr, no stack traces).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist } from '../../src/data/mnist.js';
import { writeNpy } from '../../src/data/npy.js';
import { saveModel } from '../../src/io/model-file.js';
import { buildDigitCnn } from '../../src/models/digits.js';
import { lowbit, assertFails } from '../cli-helpers.js';





const tmp = mkdtempSync(join(tmpdir(), 'lowbit-train-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const p = (name: string): string => join(tmp, name);

before(async () => {
  const m = loadMnist({ limit: 800 });
  writeNpy(p('x.npy'), { dtype: 'float32', shape: [640, 1, 28, 28], data: m.images.subarray(0, 640 * 784) });
  writeNpy(p('y.npy'), { dtype: 'int64', shape: [640], data: BigInt64Array.from(m.labels.subarray(0, 640), (v) => BigInt(v)) });
  writeNpy(p('vx.npy'), { dtype: 'float64', shape: [160, 1, 28, 28], data: Float64Array.from(m.images.subarray(640 * 784)) });
  writeNpy(p('vy.npy'), { dtype: 'int32', shape: [160], data: m.labels.subarray(640) });
  writeNpy(p('y-short.npy'), { dtype: 'int32', shape: [600], data: m.labels.subarray(0, 600) });
  writeNpy(p('y-range.npy'), { dtype: 'int32', shape: [640], data: Int32Array.from(m.labels.subarray(0, 640), (v, i) => (i === 3 ? 12 : v)) });
  writeNpy(p('x-flat.npy'), { dtype: 'float32', shape: [640, 784], data: m.images.subarray(0, 640 * 784) });
  await saveModel(buildDigitCnn().toProto(), p('digits.onnx'));
});

describe('lowbit train', { concurrency: 3 }, () => {
  test('--help names the options and the builtin model', async () => {
    const r = await lowbit(['train', '--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const o of ['--data', '--labels', '-o, --output', '--epochs', '--lr', '--batch', '--optimizer', '--momentum', '--weight-decay', '--schedule', '--loss', '--val-split', '--val-data', '--val-labels', '--seed', '--threads', '--json', 'digits-cnn']) {
      assert.ok(r.stdout.includes(o), `'${o}' missing from:\n${r.stdout}`);
    }
  });

  test('trains the builtin digits-cnn (--json), and lowbit quantize takes the result', async () => {
    const out = p('trained.onnx');
    const r = await lowbit(['train', 'digits-cnn', '--data', p('x.npy'), '--labels', p('y.npy'), '-o', out, '--epochs', '2', '--lr', '0.003', '--val-data', p('vx.npy'), '--val-labels', p('vy.npy'), '--shift', '1', '--seed', '3', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const j = JSON.parse(r.stdout);
    assert.equal(j.output, out);
    assert.equal(j.epochs.length, 2);
    assert.equal(j.steps, 20);
    assert.equal(j.params, 11);
    assert.equal(j.paramValues, 16 * 9 + 32 * 16 * 9 + 64 * 32 * 9 + 2 * (16 + 32 + 64) + 576 * 10 + 10);
    assert.ok(j.samplesPerSec > 0);
    assert.ok(j.epochs[1].loss < j.epochs[0].loss);
    assert.ok(j.epochs[1].valAccuracy > 0.5, `val accuracy ${j.epochs[1].valAccuracy}`);
    assert.ok(j.timeMs.forwardBackward > 0);
    assert.ok(existsSync(out));
    const q = await lowbit(['quantize', out, '-o', p('trained.int8.onnx'), '--json']);
    assert.equal(q.code, 0, q.stderr);
    const qj = JSON.parse(q.stdout);
    assert.ok(qj.sizeBytes.after > 0 && qj.sizeBytes.after < qj.sizeBytes.before, JSON.stringify(qj.sizeBytes));
  });

  test('trains a model file with sgd and --val-split, printing the tables', async () => {
    const r = await lowbit(['train', p('digits.onnx'), '--data', p('x.npy'), '--labels', p('y.npy'), '-o', p('sgd.onnx'), '--epochs', '1', '--optimizer', 'sgd', '--lr', '0.05', '--momentum', '0.9', '--schedule', 'constant', '--val-split', '0.25', '--batch', '32']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Training of .*digits\.onnx/);
    assert.match(r.stdout, /val acc/);
    assert.match(r.stdout, /samples\/s/);
    assert.match(r.stdout, /forward \+ backward/);
    assert.match(r.stderr, /epoch 1\/1 .*val acc/);
    assert.ok(readFileSync(p('sgd.onnx')).length > 0);
  });

  test('refuses -o equal to the input', async () => {
    assertFails(await lowbit(['train', p('digits.onnx'), '--data', p('x.npy'), '--labels', p('y.npy'), '-o', p('digits.onnx')]), 2, /output path is the input model/);
  });

  test('names bad data: label count, label range, input shape', async () => {
    const base = ['train', 'digits-cnn', '--data', p('x.npy'), '-o', p('bad.onnx'), '--epochs', '1'];
    const [count, range, shape] = await Promise.all([
      lowbit([...base, '--labels', p('y-short.npy')]),
      lowbit([...base, '--labels', p('y-range.npy')]),
      lowbit(['train', 'digits-cnn', '--data', p('x-flat.npy'), '--labels', p('y.npy'), '-o', p('bad.onnx')]),
    ]);
    assertFails(count, 3, /600 labels for 640 samples/);
    assertFails(range, 3, /sample 3 has label 12, outside the 10 classes/);
    assertFails(shape, 3, /input 'input' has shape \[640, 784\]/);
    assert.ok(!existsSync(p('bad.onnx')));
  });

  test('bad command lines exit 2', async () => {
    const base = ['train', 'digits-cnn', '--data', p('x.npy'), '-o', p('bad.onnx')];
    const [noLabels, conflict, badOpt, badLr] = await Promise.all([
      lowbit(base),
      lowbit([...base, '--labels', p('y.npy'), '--val-split', '0.1', '--val-data', p('vx.npy')]),
      lowbit([...base, '--labels', p('y.npy'), '--optimizer', 'lbfgs']),
      lowbit([...base, '--labels', p('y.npy'), '--lr', '-1']),
    ]);
    assertFails(noLabels, 2, /--labels is required/);
    assert.equal(conflict.code, 2);
    assert.match(conflict.stderr, /cannot be used with/);
    assert.equal(badOpt.code, 2);
    assert.match(badOpt.stderr, /lbfgs/);
    assert.equal(badLr.code, 2);
  });

  test('a diverging run exits 4 naming the epoch and step', async () => {
    const r = await lowbit(['train', 'digits-cnn', '--data', p('x.npy'), '--labels', p('y.npy'), '-o', p('nan.onnx'), '--epochs', '1', '--optimizer', 'sgd', '--lr', '1e12', '--momentum', '0']);
    assertFails(r, 4, /epoch 1, step \d+/);
    assert.match(r.stderr, /hint: lower the learning rate/);
    assert.ok(!existsSync(p('nan.onnx')), 'no checkpoint of a failed first epoch');
  });
});
