// MSE calibration: the chosen range minimises the histogram error model over every candidate pair (brute
// force here, written out plainly), and is near the best range for the true quantize-dequantize error of
// the raw values (grid search in float64), below min-max's error; one-sided and symmetric targets.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { foldAbs, type HistogramView } from '../../src/calib/histogram.js';
import { MseObserver, expectedQuantError, mseRange } from '../../src/calib/mse.js';
import { quantTarget, type QuantTarget } from '../../src/calib/target.js';
import { computeQParams } from '../../src/quant/qparams.js';
import { mulberry32 } from '../../src/rng.js';

const U8 = quantTarget('uint8');
const S8 = quantTarget('int8', true);

/** The error model of mse.ts written out: values at bin centres, w²/12 spread, s²/12 rounding inside. */
function modelError(h: HistogramView, target: QuantTarget, lo: number, hi: number): number {
  const view = target.symmetric ? foldAbs(h) : h;
  if (target.symmetric) [lo, hi] = [0, Math.max(-lo, hi)];
  const steps = target.symmetric ? (target.qmax - target.qmin) / 2 : target.qmax - target.qmin;
  const s = (hi - lo) / steps;
  const w = view.width;
  let err = 0;
  view.counts.forEach((count, j) => {
    const c = j === Math.min(-view.offset, view.counts.length - 1) ? count - h.zeros : count;
    const x = (view.offset + j + 0.5) * w;
    if (x < lo) err += c * ((x - lo) ** 2 + (w * w) / 12);
    else if (x > hi) err += c * ((x - hi) ** 2 + (w * w) / 12);
    else err += (c * s * s) / 12;
  });
  return err;
}

/** Best model error over every (lo, hi) candidate: bin edges on each side of 0, or the exact extremes. */
function bruteForce(h: HistogramView, target: QuantTarget): { lo: number; hi: number; err: number } {
  const edges = (from: number, to: number): number[] => {
    const out: number[] = [];
    for (let j = 0; j <= h.counts.length; j++) {
      const e = (h.offset + j) * h.width;
      if (e >= from && e <= to) out.push(e);
    }
    return out;
  };
  const los = target.symmetric ? [0] : [Math.min(0, h.min), ...edges(h.min, 0)];
  const his = target.symmetric ? [Math.max(-h.min, h.max), ...edges(0, Math.max(-h.min, h.max))] : [Math.max(0, h.max), ...edges(0, h.max)];
  let best = { lo: 0, hi: 0, err: Infinity };
  for (const lo of los) for (const hi of his) {
    if (hi <= lo) continue;
    const err = modelError(h, target, lo, hi);
    if (err < best.err) best = { lo, hi, err };
  }
  return best;
}

/** Mean squared error of quantizing then dequantizing every value with the range [lo, hi]. */
function trueMse(values: Float32Array, lo: number, hi: number, target: QuantTarget): number {
  const { scale, zeroPoint } = computeQParams(lo, hi, target.type, { symmetric: target.symmetric });
  let sum = 0;
  for (const x of values) {
    const q = Math.min(target.qmax, Math.max(target.qmin, Math.round(x / scale) + zeroPoint));
    sum += ((q - zeroPoint) * scale - x) ** 2;
  }
  return sum / values.length;
}

function gaussian(seed: number, n: number, outliers: number[]): Float32Array {
  const rng = mulberry32(seed);
  const d = Float32Array.from({ length: n }, () => rng.normal());
  outliers.forEach((v, i) => (d[i * 997 + 13] = v));
  return d;
}

function observe(values: Float32Array, opts: ConstructorParameters<typeof MseObserver>[1], batches = 10): MseObserver {
  const o = new MseObserver('t', opts);
  const per = Math.ceil(values.length / batches);
  for (let b = 0; b < batches; b++) o.update(values.subarray(b * per, (b + 1) * per));
  return o;
}

describe('MseObserver', () => {
  for (const [label, target] of [['uint8 asymmetric', U8], ['int8 symmetric', S8]] as const) {
    it(`${label}: the range minimises the error model over every candidate pair`, () => {
      const o = observe(gaussian(1, 40000, [9, -7, 6.5]), { numBins: 256, target });
      const r = o.range();
      const brute = bruteForce(o.histogram, target);
      const got = modelError(o.histogram, target, r.min < 0 || target.symmetric ? r.min : 0, r.max);
      assert.ok(Math.abs(got - brute.err) <= 1e-9 * brute.err, `model error ${got} vs brute force ${brute.err} at [${brute.lo}, ${brute.hi}]`);
      assert.ok(Math.abs(expectedQuantError(o.histogram, target, r.min, r.max) - got) <= 1e-9 * got, 'expectedQuantError agrees');
    });
  }

  it('near the best range for the true quantization error of the raw values, well below min-max', () => {
    const values = gaussian(2, 100000, [8, 7.5, -8, -7]);
    const o = observe(values, {});
    const r = o.range();
    const got = trueMse(values, r.min, r.max, U8);
    let best = Infinity;
    for (let a = 0; a <= 40; a++) {
      for (let b = 0; b <= 40; b++) best = Math.min(best, trueMse(values, -2.5 - a * 0.15, 2.5 + b * 0.15, U8));
    }
    const minmax = trueMse(values, -8, 8, U8);
    assert.ok(got <= best * 1.03, `MSE range [${r.min}, ${r.max}]: ${got} vs grid best ${best}`);
    assert.ok(got < minmax * 0.9, `${got} vs min-max ${minmax}`);
    assert.ok(r.max < 7 && r.min > -7, `outliers clipped: ${JSON.stringify(r)}`);
  });

  it('one-sided values keep lo = min; exact zeros cost nothing', () => {
    const relu = gaussian(3, 60000, [12]).map((v) => Math.max(0, v));
    const o = observe(relu, {});
    const r = o.range();
    assert.equal(r.min, 0);
    assert.ok(r.max > 3 && r.max < 12, `max ${r.max}`);
    const positive = relu.filter((v) => v > 0);
    const p = observe(positive, {}).range();
    assert.ok(Math.abs(p.max - r.max) <= o.histogram.width, `${p.max} vs ${r.max}: zeros do not pull the range`);
  });

  it('mseRange on a histogram without clipping candidates returns [min, max]; bad bins are BAD_OPTION', () => {
    const o = observe(Float32Array.of(-1, 2, 0.5, 1.5), { numBins: 64 });
    const r = mseRange(o.histogram, U8);
    assert.ok(r.min >= -1 && r.max <= 2);
    assert.throws(() => new MseObserver('t', { numBins: 2 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /numBins/.test(e.message));
  });
});
