// Shared helpers for the tests of the bundled digit models (not a test file): MNIST splits as model inputs
// and held-out top-1 accuracy of a model run alone in ORT.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { MnistSet } from '../../src/data/mnist.js';
import { loadModel } from '../../src/io/model-file.js';
import { Model } from '../../src/onnx/ir.js';
import type { NdArray } from '../../src/ndarray.js';
import { Session } from '../../src/runtime/session.js';

/** The first `n` images of a set (all by default) as the models' input [n, 1, 28, 28]. */
export const digitImages = (s: MnistSet, n = s.count): NdArray => ({ dtype: 'float32', shape: [n, 1, 28, 28], data: s.images.subarray(0, n * 784) });

/** Top-1 accuracy of `model` (input `input`, output `logits` [N, 10]) on `set`. */
export async function digitAccuracy(model: Uint8Array | string, set: MnistSet): Promise<number> {
  const s = await Session.create(model, { threads: 2 });
  try {
    const logits = (await s.run({ input: digitImages(set) }))['logits']!.data as Float32Array;
    let correct = 0;
    for (let n = 0; n < set.count; n++) {
      const row = logits.subarray(n * 10, n * 10 + 10);
      if (row.indexOf(Math.max(...row)) === set.labels[n]) correct++;
    }
    return correct / set.count;
  } finally {
    await s.release();
  }
}

/**
 * Checks a bundled digit model file: it exists (`script` writes it), has input `input` and output `logits`, its
 * BatchNormalizations are in inference mode, and its held-out top-1 accuracy is at least `min`. Returns the accuracy.
 */
export async function checkBundledDigitModel(path: string, script: string, set: MnistSet, min: number): Promise<number> {
  assert.ok(existsSync(path), `${path} exists (${script} writes it)`);
  const m = new Model((await loadModel(path)).model);
  assert.deepEqual(m.graph.inputs.map((v) => v.name), ['input']);
  assert.deepEqual(m.graph.outputs.map((v) => v.name), ['logits']);
  assert.ok(m.graph.nodes.filter((n) => n.opType === 'BatchNormalization').every((n) => n.output.length === 1), 'inference-mode BatchNormalization');
  const acc = await digitAccuracy(path, set);
  assert.ok(acc >= min, `held-out accuracy ${acc}`);
  return acc;
}
