// Entropy (KL) calibration: the chosen window is the minimum of a brute-force KL computed here in
// float64 (TensorRT's P/Q construction, ORT's smoothing) over every candidate window, on a Gaussian with
// outliers, for asymmetric and symmetric targets; outliers are clipped; exact zeros do not move the
// threshold; options are checked.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { EntropyObserver, entropyRange, quantizedBins } from '../../src/calib/entropy.js';
import { foldAbs, type HistogramView } from '../../src/calib/histogram.js';
import { quantTarget, type QuantTarget } from '../../src/calib/target.js';
import { mulberry32 } from '../../src/rng.js';

const U8 = quantTarget('uint8');
const S8 = quantTarget('int8', true);

/** Smoothing of ORT's quant_utils.smooth_distribution; null when every entry is 0. */
function smooth(p: Float64Array, eps = 1e-4): Float64Array | null {
  let zeros = 0;
  for (const v of p) if (v === 0) zeros++;
  const nonzeros = p.length - zeros;
  if (nonzeros === 0) return null;
  const eps1 = (eps * zeros) / nonzeros;
  return p.map((v) => (v === 0 ? eps : v - eps1));
}

/** KL(P || Q) of the window [s, e) of `bins` with `nq` levels, written out plainly. */
function bruteKl(bins: Float64Array, s: number, e: number, nq: number): number {
  const i = e - s;
  const p = bins.slice(s, e);
  for (let j = 0; j < s; j++) p[0]! += bins[j]!;
  for (let j = e; j < bins.length; j++) p[i - 1]! += bins[j]!;
  const q = new Float64Array(i);
  for (let g = 0; g < nq; g++) {
    const a = Math.floor((g * i) / nq);
    const b = Math.floor(((g + 1) * i) / nq);
    let sum = 0;
    let nz = 0;
    for (let j = a; j < b; j++) {
      sum += bins[s + j]!;
      if (p[j] !== 0) nz++;
    }
    for (let j = a; j < b; j++) q[j] = p[j] !== 0 && nz > 0 ? sum / nz : 0;
  }
  const ps = smooth(p);
  const qs = smooth(q);
  if (!ps || !qs) return Infinity;
  const sp = ps.reduce((a, v) => a + v, 0);
  const sq = qs.reduce((a, v) => a + v, 0);
  let kl = 0;
  for (let j = 0; j < i; j++) kl += (ps[j]! / sp) * Math.log(ps[j]! / sp / (qs[j]! / sq));
  return kl;
}

interface Candidate {
  min: number;
  max: number;
  kl: number;
}

/** Every candidate window of the documented family with its KL, and the best (ties: the wider). */
function bruteForce(h: HistogramView, target: QuantTarget): Candidate & { all: Candidate[] } {
  const view = target.symmetric ? foldAbs(h) : h;
  const bins = Float64Array.from(view.counts);
  const zeroBin = Math.min(-view.offset, bins.length - 1);
  bins[zeroBin] = Math.max(0, bins[zeroBin]! - h.zeros);
  const nq = quantizedBins(target);
  const w = view.width;
  let first = 0;
  while (bins[first] === 0) first++;
  let last = bins.length - 1;
  while (bins[last] === 0) last--;
  const all: Candidate[] = [];
  let best: Candidate = { min: h.min, max: h.max, kl: Infinity };
  const consider = (c: Candidate): void => {
    all.push(c);
    if (c.kl <= best.kl) best = c;
  };
  if (target.symmetric) {
    for (let i = nq; i <= last + 1; i++) consider({ min: Math.max(-i * w, h.min), max: Math.min(i * w, h.max), kl: bruteKl(bins, 0, i, nq) });
    return { ...best, all };
  }
  const z = -view.offset;
  const nL = Math.max(0, z - first);
  const nR = Math.max(0, last + 1 - z);
  for (let t = 1; t <= Math.max(nL, nR); t++) {
    const s = z - Math.min(t, nL);
    const e = z + Math.min(t, nR);
    if (e - s < nq) continue;
    consider({ min: Math.max(h.min, (view.offset + s) * w), max: Math.min(h.max, (view.offset + e) * w), kl: bruteKl(bins, s, e, nq) });
  }
  return { ...best, all };
}

/** N(0, 1) batches with a few outliers at +-`far`; `relu` keeps max(0, x). */
function gaussianWithOutliers(seed: number, far: number, relu = false): Float32Array[] {
  const rng = mulberry32(seed);
  const parts: Float32Array[] = [];
  for (let b = 0; b < 20; b++) {
    const d = new Float32Array(10000);
    for (let i = 0; i < d.length; i++) d[i] = rng.normal();
    if (b % 4 === 1) {
      d[b] = far * rng.uniform(0.8, 1);
      d[b + 1] = -far * rng.uniform(0.8, 1);
    }
    parts.push(relu ? d.map((v) => Math.max(0, v)) : d);
  }
  return parts;
}

function observe(parts: Float32Array[], opts: ConstructorParameters<typeof EntropyObserver>[1]): EntropyObserver {
  const o = new EntropyObserver('t', opts);
  for (const p of parts) o.update(p);
  return o;
}

describe('EntropyObserver', () => {
  for (const [label, target] of [['uint8 asymmetric', U8], ['int8 symmetric', S8]] as const) {
    it(`${label}: the window with the smallest brute-force KL, clipping the outliers`, () => {
      const o = observe(gaussianWithOutliers(1, 12), { target });
      const brute = bruteForce(o.histogram, target);
      const exact = entropyRange(o.histogram, target, { maxCandidates: Infinity });
      assert.ok(Math.abs(exact.min - brute.min) < 1e-9 && Math.abs(exact.max - brute.max) < 1e-9, `${JSON.stringify(exact)} vs brute force ${JSON.stringify(brute)}`);
      // the outliers at +-(9.6..12) are clipped; the Gaussian bulk (|x| < 4.5 here) is kept
      assert.ok(exact.max > 3 && exact.max < 8, `max ${exact.max}`);
      assert.ok(exact.min < -3 && exact.min > -8, `min ${exact.min}`);
      // the default coarse-to-fine search lands on a window whose KL is within 5% of the best
      const coarse = o.range();
      const found = brute.all.find((c) => Math.abs(c.max - coarse.max) < 1e-9 && Math.abs(c.min - coarse.min) < 1e-9);
      assert.ok(found, `coarse range ${JSON.stringify(coarse)} is a candidate`);
      assert.ok(found.kl <= brute.kl * 1.05, `coarse KL ${found.kl} vs best ${brute.kl}`);
      assert.ok(brute.all.length > 512, 'the default search is coarse-to-fine here');
    });
  }

  it('one-sided (after Relu): window [0, T] over the 256 levels, outliers clipped', () => {
    const o = observe(gaussianWithOutliers(2, 40, true), {});
    assert.equal(o.histogram.numBins, 4096, 'default bins');
    const r = o.range();
    assert.equal(r.min, 0);
    assert.ok(r.max > 3 && r.max < 7, `max ${r.max}`);
    const brute = bruteForce(o.histogram, U8);
    const exact = entropyRange(o.histogram, U8, { maxCandidates: Infinity });
    assert.ok(Math.abs(exact.max - brute.max) < 1e-9, `${exact.max} vs ${brute.max}`);
  });

  it('exact zeros (exactly representable) do not move the threshold', () => {
    const positive = gaussianWithOutliers(3, 30).map((d) => d.filter((v) => v > 0));
    const a = observe(positive, {}).range();
    const b = observe([...positive, new Float32Array(500000)], {}).range();
    assert.equal(b.min, 0);
    assert.equal(b.max, a.max);
  });

  it('needs at least 512 bins; a histogram too coarse for 256 levels keeps [min, max]', () => {
    assert.throws(() => new EntropyObserver('t', { numBins: 256 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /512/.test(e.message));
    // values on 3 distinct points: no window holds 256 occupied levels' worth of bins
    const o = observe([Float32Array.of(-1, 0.5, 2, 2, 2)], { numBins: 512 });
    assert.ok(o.range().min === -1 && o.range().max === 2);
  });
});
