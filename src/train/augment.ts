// Batch augmentation done in TypeScript before a training step: random image shifts. Pure; the trainer
// calls an Augment on each freshly gathered batch.

import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import type { Rng } from '../rng.js';

/** Changes a training batch in place (arrays keyed by model input name), drawing randomness from `rng`. */
export type Augment = (batch: Record<string, NdArray>, rng: Rng) => void;

/**
 * Shifts each image of every float32 NCHW input by a random whole number of pixels in [-maxShift,
 * maxShift] along height and width (the same shift for all channels of an image), filling with 0.
 * @throws LowbitError BAD_OPTION for a negative or non-integer maxShift
 */
export function randomShift(maxShift: number): Augment {
  if (!Number.isSafeInteger(maxShift) || maxShift < 0) throw new LowbitError('BAD_OPTION', `maxShift must be a non-negative integer, got ${maxShift}`, 'use e.g. 2');
  let scratch = new Float32Array(0);
  return (batch, rng) => {
    for (const arr of Object.values(batch)) {
      if (arr.dtype !== 'float32' || arr.shape.length !== 4) continue;
      const [n, c, h, w] = arr.shape as [number, number, number, number];
      const data = arr.data as Float32Array;
      const plane = h * w;
      if (scratch.length < plane) scratch = new Float32Array(plane);
      for (let i = 0; i < n; i++) {
        const dy = rng.int(-maxShift, maxShift);
        const dx = rng.int(-maxShift, maxShift);
        if (dx === 0 && dy === 0) continue;
        for (let ch = 0; ch < c; ch++) shiftPlane(data.subarray((i * c + ch) * plane, (i * c + ch + 1) * plane), h, w, dy, dx, scratch);
      }
    }
  };
}

/** out[y][x] = in[y - dy][x - dx] (0 outside), in place through `scratch`. */
function shiftPlane(p: Float32Array, h: number, w: number, dy: number, dx: number, scratch: Float32Array): void {
  scratch.set(p);
  p.fill(0);
  const x0 = Math.max(0, dx);
  const x1 = Math.min(w, w + dx);
  if (x1 <= x0) return;
  for (let y = Math.max(0, dy); y < Math.min(h, h + dy); y++) {
    const src = (y - dy) * w;
    p.set(scratch.subarray(src + x0 - dx, src + x1 - dx), y * w + x0);
  }
}
