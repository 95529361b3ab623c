// MSE calibration: the clipping range that minimises the expected squared quantization error of the
// observed values on the target grid (as pytorch's HistogramObserver and NVIDIA pytorch-quantization's
// method='mse' do, with an exact search instead of their greedy / sampled one). Pure.
//
// Error model, values spread evenly inside each histogram bin: a range [lo, hi] with step
// s = (hi - lo) / (qmax - qmin) costs
//   s²/12 per value inside (rounding noise of a uniform grid), plus
//   (x - lo)² / (x - hi)² per value clipped below / above (centre of its bin, plus width²/12 for the
//   spread inside the bin).
// Candidate ends are bin edges (and the exact min/max for "no clipping" on that side), every lo <= 0 <=
// hi pair for an asymmetric target, [-T, T] for a symmetric one. Prefix sums of counts, x·count and
// x²·count make each candidate O(1). Exact zeros are left out: 0 is exactly representable. The zero
// point's rounding (a shift of the grid by under half a step) is not modelled.

import { checkNumBins, DEFAULT_NUM_BINS, HistogramObserver } from './histogram-observer.js';
import { foldAbs, type HistogramView } from './histogram.js';
import type { Range } from './observer.js';
import { quantTarget, type QuantTarget } from './target.js';

/** Above this many (lo, hi) pairs, a coarse pass with a stride then a fine pass around its best. */
const MAX_PAIRS = 1 << 22;

/** Counts with exact zeros removed from the bin holding 0, and sums of count, x·count, x²·count. */
function moments(view: HistogramView, zeros: number): { n: number; c0: Float64Array; c1: Float64Array; c2: Float64Array } {
  const n = view.counts.length;
  const w = view.width;
  const zeroBin = Math.min(-view.offset, n - 1);
  const c0 = new Float64Array(n + 1);
  const c1 = new Float64Array(n + 1);
  const c2 = new Float64Array(n + 1);
  for (let j = 0; j < n; j++) {
    let c = view.counts[j]!;
    if (j === zeroBin) c = Math.max(0, c - zeros);
    const x = (view.offset + j + 0.5) * w;
    c0[j + 1] = c0[j]! + c;
    c1[j + 1] = c1[j]! + c * x;
    c2[j + 1] = c2[j]! + c * x * x;
  }
  return { n, c0, c1, c2 };
}

/**
 * Expected squared error of quantizing the histogram's values with the range [lo, hi] on the target
 * grid, summed over values (the model above). For tests and diagnostics; the search uses the same terms.
 */
export function expectedQuantError(h: HistogramView, target: QuantTarget, lo: number, hi: number): number {
  const view = target.symmetric ? foldAbs(h) : h;
  if (target.symmetric) {
    hi = Math.max(-lo, hi);
    lo = 0;
  }
  const steps = target.symmetric ? (target.qmax - target.qmin) / 2 : target.qmax - target.qmin;
  const s = (hi - lo) / steps;
  const w = view.width;
  const zeroBin = Math.min(-view.offset, view.counts.length - 1);
  let err = 0;
  for (let j = 0; j < view.counts.length; j++) {
    let c = view.counts[j]!;
    if (j === zeroBin) c = Math.max(0, c - h.zeros);
    if (c === 0) continue;
    const x = (view.offset + j + 0.5) * w;
    if (x < lo) err += c * ((x - lo) ** 2 + (w * w) / 12);
    else if (x > hi) err += c * ((x - hi) ** 2 + (w * w) / 12);
    else err += (c * s * s) / 12;
  }
  return err;
}

/** Coarse-to-fine argmin over a grid of na × nb candidates (index 0 = widest on each side). */
function argminGrid(na: number, nb: number, errOf: (a: number, b: number) => number): [number, number] {
  const step = Math.max(1, Math.ceil(Math.sqrt((na * nb) / MAX_PAIRS)));
  let best: [number, number] = [0, 0];
  let bestErr = Infinity;
  const scan = (a0: number, a1: number, b0: number, b1: number, st: number): void => {
    for (let a = a0; a <= a1; a += st) {
      for (let b = b0; b <= b1; b += st) {
        const e = errOf(a, b);
        if (e < bestErr) {
          bestErr = e;
          best = [a, b];
        }
      }
    }
  };
  scan(0, na - 1, 0, nb - 1, step);
  if (step > 1) {
    const [a, b] = best;
    scan(Math.max(0, a - step + 1), Math.min(na - 1, a + step - 1), Math.max(0, b - step + 1), Math.min(nb - 1, b + step - 1), 1);
  }
  return best;
}

/**
 * The range minimising the expected squared quantization error (see the file comment), within the
 * observed [min, max].
 */
export function mseRange(h: HistogramView, target: QuantTarget): Range {
  const view = target.symmetric ? foldAbs(h) : h;
  const { n, c0, c1, c2 } = moments(view, h.zeros);
  const total = c0[n]!;
  if (total === 0) return { min: h.min, max: h.max };
  const w = view.width;
  const bin2 = (w * w) / 12;
  // squared error of the values in bins [j0, j1) clipped to e
  const clip = (j0: number, j1: number, e: number): number => {
    const m0 = c0[j1]! - c0[j0]!;
    if (m0 === 0) return 0;
    const v = c2[j1]! - c2[j0]! - 2 * e * (c1[j1]! - c1[j0]!) + e * e * m0;
    return Math.max(0, v) + bin2 * m0;
  };
  if (target.symmetric) {
    const steps = (target.qmax - target.qmin) / 2;
    const absMax = view.max;
    let kTop = n - 1;
    while (kTop > 0 && c0[kTop + 1] === c0[kTop]) kTop--;
    // candidate 0: T = absMax (no clipping); candidate b >= 1: T = (kTop + 1 - b)·w clips bins above it
    const [, b] = argminGrid(1, kTop + 1, (_a, b) => {
      const k = kTop + 1 - b;
      const t = b === 0 ? absMax : k * w;
      const s = t / steps;
      return (s * s * (c0[k]! - c0[0]!)) / 12 + (b === 0 ? 0 : clip(k, n, t));
    });
    const t = b === 0 ? absMax : (kTop + 1 - b) * w;
    return { min: Math.max(-t, h.min), max: Math.min(t, h.max) };
  }
  const steps = target.qmax - target.qmin;
  const z = -view.offset;
  let first = 0;
  while (c0[first + 1] === 0) first++;
  let last = n - 1;
  while (c0[last] === total) last--;
  const lo0 = Math.min(0, h.min);
  const hi0 = Math.max(0, h.max);
  // lo candidates: a = 0 is lo0 (no clipping), a >= 1 the edge (first + a); only edges <= 0
  const na = Math.max(0, z - first) + 1;
  const nb = Math.max(0, last + 1 - z) + 1;
  const loOf = (a: number): { e: number; j: number } => (a === 0 ? { e: lo0, j: 0 } : { e: (view.offset + first + a) * w, j: first + a });
  const hiOf = (b: number): { e: number; j: number } => (b === 0 ? { e: hi0, j: n } : { e: (view.offset + last + 1 - b) * w, j: last + 1 - b });
  const [a, b] = argminGrid(na, nb, (a, b) => {
    const l = loOf(a);
    const u = hiOf(b);
    const s = (u.e - l.e) / steps;
    return clip(0, l.j, l.e) + clip(u.j, n, u.e) + (s * s * (c0[u.j]! - c0[l.j]!)) / 12;
  });
  return { min: Math.max(h.min, loOf(a).e), max: Math.min(h.max, hiOf(b).e) };
}

/** MSE observer over a fixed-size streaming histogram. */
export class MseObserver extends HistogramObserver {
  /** @throws LowbitError BAD_OPTION for a bad bin count. */
  constructor(tensor: string, opts: { numBins?: number; target?: QuantTarget } = {}) {
    const numBins = opts.numBins ?? DEFAULT_NUM_BINS;
    checkNumBins(numBins);
    super(tensor, numBins, opts.target ?? quantTarget(), mseRange);
  }
}
