// Shared helpers for the tests of the bundled digit models (not a test file): MNIST splits as model inputs
// and held-out top-1 accuracy of a model run alone in ORT.
import type { MnistSet } from '../../src/data/mnist.js';
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
