// Entropy (KL-divergence) calibration: the clipping range whose quantized histogram loses the least
// information, as TensorRT's 8-bit calibration (Migacz, "8-bit inference with TensorRT", GTC 2017) and
// ORT's HistogramCalibrater method='entropy'. Pure.
//
// For each candidate window of histogram bins: P is the window's counts with the values outside it added
// to its first and last bins; Q is the window split into as many equal groups as the target grid has
// levels, each group's count spread evenly over the group's bins where P is not 0. Both are smoothed as
// ORT's smooth_distribution (eps 1e-4 moved onto zero entries), normalized, and KL(P || Q) is computed;
// the window with the smallest KL wins.
//
// Differences from ORT, all for the target grid (lowbit quantizes activations asymmetric by default):
// - the number of groups is the grid's level count: 256 for an asymmetric 8-bit window, 128 for the
//   |x| side of a symmetric one (ORT: num_quantized_bins=128 across the whole [-T, T] window, i.e. 7 bits);
// - an asymmetric window [-T, T] is cut to the values seen before its levels are counted, so a one-sided
//   tensor (after Relu) gets windows [0, T] over all 256 levels instead of 128 on the empty half and 128
//   on the other (the end result of ORT's symmetric windows is also clipped to [min, max], but its KL is
//   computed on the uncut window);
// - exact zeros are left out of P (0 is exactly representable: they carry no quantization error), so the
//   spike of zeros after Relu does not pull the window in;
// - groups split the window evenly (ORT and TensorRT put the remainder bins into the last group) and Q is
//   float (ORT truncates it to integers).

import { checkNumBins, HistogramObserver } from './histogram-observer.js';
import { foldAbs, type HistogramView } from './histogram.js';
import type { Range } from './observer.js';
import { quantTarget, type QuantTarget } from './target.js';

/** ORT's smooth_distribution eps. */
const EPS = 1e-4;
/** Above this many candidate windows: a coarse pass with a stride, then full resolution around the best
 * REFINE coarse ones (measured: it finds the exhaustive optimum on Gaussians with outliers). */
const MAX_CANDIDATES = 512;
/** Coarse minima refined at full resolution. */
const REFINE = 8;

/**
 * Levels of the target grid inside one candidate window: qmax - qmin + 1 for an asymmetric window, the
 * levels from 0 to T (half the grid, plus 0) for the |x| window of a symmetric target.
 */
export function quantizedBins(target: QuantTarget): number {
  const steps = target.qmax - target.qmin;
  return target.symmetric ? Math.floor(steps / 2) + 1 : steps + 1;
}

/** Fewest bins entropy calibration accepts: twice the levels of an 8-bit grid. */
export const MIN_ENTROPY_BINS = 512;

/**
 * Default bins for entropy: 16 times the 256 levels of an asymmetric 8-bit window, TensorRT's ratio (2048
 * bins for 128 levels). The narrowest window holds one level per bin, so a range can shrink to 1/16 of
 * the histogram's extent; with 2048 bins a one-sided tensor could not be clipped below max/8.
 */
export const DEFAULT_ENTROPY_BINS = 4096;

/**
 * KL(P || Q) of the window [s, e) of `bins` quantized into `nq` groups; `left`/`right` are the counts
 * outside the window (they join its first/last bin in P). Infinity when Q would be all zero.
 */
export function windowKl(bins: Float64Array, s: number, e: number, nq: number, left: number, right: number): number {
  const i = e - s;
  const gSum = new Float64Array(nq);
  const gNz = new Int32Array(nq);
  // P is the window with the outside counts added to its end bins
  const pFirst = bins[s]! + left + (i === 1 ? right : 0);
  const pLast = i === 1 ? pFirst : bins[e - 1]! + right;
  let nzP = 0;
  let nzQ = 0;
  let sliced = 0;
  for (let g = 0, a = s; g < nq; g++) {
    const b = s + Math.floor(((g + 1) * i) / nq);
    let sum = 0;
    let nz = 0;
    for (let j = a; j < b; j++) {
      const c = bins[j]!;
      sum += c;
      if ((j === s ? pFirst : j === e - 1 ? pLast : c) !== 0) nz++;
    }
    gSum[g] = sum;
    gNz[g] = nz;
    nzP += nz;
    if (sum > 0) nzQ += nz;
    sliced += sum;
    a = b;
  }
  if (nzQ === 0 || nzP === 0) return Infinity;
  const sp = sliced + left + right;
  const ratio = sliced / sp;
  const eps1P = (EPS * (i - nzP)) / nzP;
  const eps1Q = (EPS * (i - nzQ)) / nzQ;
  const floor = EPS * 1e-6;
  // a bin where P is 0 has Q = 0 too: both smooth to eps
  const zeroTerm = EPS * Math.log(ratio);
  let kl = 0;
  for (let g = 0, a = s; g < nq; g++) {
    const b = s + Math.floor(((g + 1) * i) / nq);
    const qv = gSum[g]! > 0 ? gSum[g]! / gNz[g]! : 0;
    // smoothing keeps each sum; the floor only guards against a tiny q below eps1 (ORT asserts there)
    const qNz = qv > 0 ? Math.max(qv - eps1Q, floor) : EPS;
    for (let j = a; j < b; j++) {
      const p = j === s ? pFirst : j === e - 1 ? pLast : bins[j]!;
      if (p === 0) kl += zeroTerm;
      else {
        const ps = Math.max(p - eps1P, floor);
        kl += ps * Math.log((ps * ratio) / qNz);
      }
    }
    a = b;
  }
  return kl / sp;
}

/**
 * Smallest-KL candidate among `count` candidates (0..count-1). Above `max`, every step-th candidate
 * first, then every candidate within a step of the REFINE best coarse ones (the KL curve is bumpy at the
 * bin scale, so one coarse minimum can sit in the wrong dip).
 */
function argminKl(count: number, max: number, klOf: (c: number) => number): number {
  const step = Math.max(1, Math.ceil(count / max));
  const kls = new Map<number, number>();
  const visit = (c: number): number => {
    let kl = kls.get(c);
    if (kl === undefined) {
      kl = klOf(c);
      kls.set(c, kl);
    }
    return kl;
  };
  for (let c = count - 1; c >= 0; c -= step) visit(c);
  if (step > 1) {
    const coarse = [...kls].sort((a, b) => a[1] - b[1] || b[0] - a[0]).slice(0, REFINE);
    for (const [center] of coarse) {
      for (let c = Math.min(count - 1, center + step - 1); c >= Math.max(0, center - step + 1); c--) visit(c);
    }
  }
  // smallest KL; ties keep the wider window
  let best = 0;
  let bestKl = Infinity;
  for (const [c, kl] of kls) {
    if (kl < bestKl || (kl === bestKl && c > best)) {
      bestKl = kl;
      best = c;
    }
  }
  return best;
}

function prefixSums(bins: Float64Array): Float64Array {
  const p = new Float64Array(bins.length + 1);
  for (let j = 0; j < bins.length; j++) p[j + 1] = p[j]! + bins[j]!;
  return p;
}

/**
 * The KL-optimal clipping range of a histogram for the target grid (see the file comment). Candidate
 * windows, in bins of width w:
 * - symmetric target: [0, i·w) of the |x| histogram, i from the level count (128) to the last occupied
 *   bin; range [-T, T] with T = i·w;
 * - asymmetric target: with nL/nR the occupied bins left/right of 0, the windows [-t·w, t·w) cut to the
 *   occupied bins, [-min(t, nL)·w, min(t, nR)·w), for every t whose window holds at least 256 bins (ORT's
 *   symmetric windows clipped to [min, max], but with the grid's levels spread over the clipped window).
 * The result is clamped to the observed [min, max]. A histogram too coarse to hold a window of the
 * level count gives [min, max]. Above `maxCandidates` windows (default 512), every step-th window is
 * tried, then every window within a step of the 8 best (pass Infinity for an exhaustive search).
 */
export function entropyRange(h: HistogramView, target: QuantTarget, opts: { maxCandidates?: number } = {}): Range {
  const maxCandidates = opts.maxCandidates ?? MAX_CANDIDATES;
  const full = { min: h.min, max: h.max };
  const view = target.symmetric ? foldAbs(h) : h;
  const bins = Float64Array.from(view.counts);
  const n = bins.length;
  // exact zeros sit in the bin starting at 0 (the last bin when every value is <= 0)
  const zeroBin = Math.min(-view.offset, n - 1);
  if (h.zeros > 0) bins[zeroBin] = Math.max(0, bins[zeroBin]! - h.zeros);
  let first = 0;
  while (first < n && bins[first] === 0) first++;
  if (first === n) return full;
  let last = n - 1;
  while (bins[last] === 0) last--;
  const nq = quantizedBins(target);
  const pre = prefixSums(bins);
  const total = pre[n]!;
  const w = view.width;
  if (target.symmetric) {
    const k = last + 1;
    if (k < nq) return full;
    const best = argminKl(k - nq + 1, maxCandidates, (c) => windowKl(bins, 0, nq + c, nq, 0, total - pre[nq + c]!)) + nq;
    const t = best * w;
    return { min: Math.max(-t, h.min), max: Math.min(t, h.max) };
  }
  const z = -view.offset;
  const nL = Math.max(0, z - first);
  const nR = Math.max(0, last + 1 - z);
  if (nL + nR < nq) return full;
  // the window of threshold t bins: [-t, t) around 0, cut to the occupied bins
  const window = (t: number): [number, number] => [z - Math.min(t, nL), z + Math.min(t, nR)];
  const width = (t: number): number => Math.min(t, nL) + Math.min(t, nR);
  // smallest t whose window holds nq bins
  let t0 = Math.ceil(nq / 2);
  while (width(t0) < nq) t0++;
  const tMax = Math.max(nL, nR);
  const best = argminKl(tMax - t0 + 1, maxCandidates, (c) => {
    const [s, e] = window(t0 + c);
    return windowKl(bins, s, e, nq, pre[s]!, total - pre[e]!);
  }) + t0;
  const [s, e] = window(best);
  return { min: Math.max(h.min, Math.min(0, (view.offset + s) * w)), max: Math.min(h.max, Math.max(0, (view.offset + e) * w)) };
}

/** Entropy (KL) observer over a fixed-size streaming histogram. */
export class EntropyObserver extends HistogramObserver {
  /** @throws LowbitError BAD_OPTION for fewer than MIN_ENTROPY_BINS bins or too many. */
  constructor(tensor: string, opts: { numBins?: number; target?: QuantTarget } = {}) {
    const numBins = opts.numBins ?? DEFAULT_ENTROPY_BINS;
    checkNumBins(numBins, MIN_ENTROPY_BINS, ' for entropy calibration (twice the 256 levels of an 8-bit grid)');
    super(tensor, numBins, opts.target ?? quantTarget(), (h, t) => entropyRange(h, t));
  }
}
