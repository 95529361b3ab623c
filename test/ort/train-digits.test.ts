// The bundled digit model (models/digits-cnn.onnx, written by scripts/train-digits.ts) on the 2,000 held-out
// MNIST digits in ORT, and a short real training run of the untrained digit CNN.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadMnist, splitMnist } from '../../src/data/mnist.js';
import { buildDigitCnn } from '../../src/models/digits.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { train } from '../../src/pipeline/train.js';
import { checkBundledDigitModel, digitAccuracy, digitImages } from './digits-helpers.js';

const MODEL = new URL('../../models/digits-cnn.onnx', import.meta.url).pathname;
const { train: trainSet, test } = splitMnist(loadMnist(), 2000);


describe('digit CNN', () => {
  it('models/digits-cnn.onnx reaches >= 98.5% on the 2,000 held-out digits', async (t) => {
    const acc = await checkBundledDigitModel(MODEL, 'node --import tsx scripts/train-digits.ts', test, 0.985);
    t.diagnostic(`held-out accuracy ${(100 * acc).toFixed(2)}%`);
  });

  it('one epoch on 4,000 digits already reaches > 90% on the held-out digits', async (t) => {
    const n = 4000;
    const r = await train(
      buildDigitCnn({ seed: 2 }),
      { inputs: { dtype: 'float32', shape: [n, 1, 28, 28], data: trainSet.images.subarray(0, n * 784) }, labels: trainSet.labels.subarray(0, n) },
      { epochs: 1, batch: 32, lr: 3e-3, schedule: 'constant', threads: 2 },
    );
    const acc = await digitAccuracy(encodeModel(r.model.toProto()), test);
    t.diagnostic(`held-out accuracy after one epoch ${(100 * acc).toFixed(2)}%, ${Math.round(r.samplesPerSec)} samples/s`);
    assert.ok(acc > 0.9, `held-out accuracy ${acc}`);
  });
});
