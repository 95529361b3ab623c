// Percentile calibration: known quantiles of known data (within one bin), one-sided tensors spend the
// whole tail on the open end, symmetric targets use |x|, 100 gives min/max, streaming = one batch.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { PercentileObserver, percentileRange } from '../../src/calib/percentile.js';
import { quantTarget } from '../../src/calib/target.js';
import { mulberry32 } from '../../src/rng.js';

const U8 = quantTarget('uint8');
const S8 = quantTarget('int8', true);

/** -offset .. count-1-offset, in `batches` shuffled batches. */
function integers(count: number, offset: number, batches: number, seed = 1): Float32Array[] {
  const v = Float32Array.from({ length: count }, (_, i) => i - offset);
  const rng = mulberry32(seed);
  for (let i = v.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  const per = Math.ceil(count / batches);
  return Array.from({ length: batches }, (_, b) => v.slice(b * per, (b + 1) * per));
}

function observe(parts: Float32Array[], opts: ConstructorParameters<typeof PercentileObserver>[1]): PercentileObserver {
  const o = new PercentileObserver('t', opts);
  for (const p of parts) o.update(p);
  return o;
}

describe('PercentileObserver', () => {
  it('one-sided values: the whole tail is cut from the top', () => {
    // 0..9999: 99% of the values lie below 9900
    const o = observe(integers(10000, 0, 7), { percentile: 99, numBins: 1000 });
    const r = o.range();
    assert.equal(r.min, 0);
    assert.ok(Math.abs(r.max - 9900) <= o.histogram.width, `max ${r.max}, bin ${o.histogram.width}`);
  });

  it('two-sided values: half of the tail from each end (ORT)', () => {
    // -5000..4999: 0.5% below -4950, 0.5% above 4950
    const o = observe(integers(10000, 5000, 5), { percentile: 99, numBins: 1000 });
    const r = o.range();
    const w = o.histogram.width;
    assert.ok(Math.abs(r.min - -4950) <= w, `min ${r.min}`);
    assert.ok(Math.abs(r.max - 4950) <= w, `max ${r.max}`);
  });

  it('symmetric target: the percentile of |x|, clamped to [min, max]', () => {
    // |x| for -2000..7999: 99% of |x| lie below 7900
    const o = observe(integers(10000, 2000, 4), { percentile: 99, numBins: 1000, target: S8 });
    const r = o.range();
    assert.ok(Math.abs(r.max - 7900) <= o.histogram.width, `max ${r.max}`);
    assert.equal(r.min, -2000, 'the negative end is the observed min');
    // with a low percentile both ends are cut to T
    const low = observe(integers(10000, 5000, 4), { percentile: 50, numBins: 1000, target: S8 }).range();
    assert.ok(Math.abs(low.max - 2500) <= 10 && low.min === -low.max, JSON.stringify(low));
  });

  it('percentile 100 gives exactly min and max; outliers are cut at the default 99.999', () => {
    const rng = mulberry32(4);
    const parts = Array.from({ length: 20 }, () => Float32Array.from({ length: 10000 }, () => rng.normal()));
    parts[3]![17] = 50;
    parts[11]![5] = -40;
    const all = observe(parts, { percentile: 100 }).range();
    assert.deepEqual(all, { min: -40, max: 50 });
    const d = observe(parts, {});
    assert.equal(d.percentile, 99.999);
    const r = d.range();
    assert.ok(r.max > 3.5 && r.max < 5.5 && r.min < -3.5 && r.min > -5.5, JSON.stringify(r));
  });

  it('streaming gives the range of one big batch within one bin', () => {
    const parts = integers(20000, 3000, 40, 5);
    const one = new Float32Array(20000);
    let o = 0;
    for (const p of parts) {
      one.set(p, o);
      o += p.length;
    }
    const streamed = observe(parts, { percentile: 99.5, numBins: 512 });
    const whole = observe([one], { percentile: 99.5, numBins: 512 });
    const w = Math.max(streamed.histogram.width, whole.histogram.width);
    assert.ok(Math.abs(streamed.range().min - whole.range().min) <= w);
    assert.ok(Math.abs(streamed.range().max - whole.range().max) <= w);
  });

  it('percentileRange is pure on a view; bad percentiles and bin counts are BAD_OPTION', () => {
    const o = observe(integers(1000, 0, 1), { numBins: 100 });
    assert.deepEqual(percentileRange(o.histogram, 100, U8), { min: 0, max: 999 });
    for (const p of [0, -1, 100.5, Number.NaN]) {
      assert.throws(() => new PercentileObserver('t', { percentile: p }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /percentile/.test(e.message));
    }
    assert.throws(() => new PercentileObserver('t', { numBins: 10 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /numBins/.test(e.message));
    assert.throws(() => new PercentileObserver('t', { numBins: 100.5 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
  });

  it('empty and all-zero tensors give [0, 0]; NaN names the tensor', () => {
    const o = new PercentileObserver('act');
    o.update(new Float32Array(0));
    assert.deepEqual(o.range(), { min: 0, max: 0 });
    o.update(new Float32Array(5));
    assert.deepEqual(o.range(), { min: 0, max: 0 });
    assert.throws(() => o.update(Float32Array.of(1, Number.NaN)), (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE' && /'act'/.test(e.message));
    assert.throws(() => new PercentileObserver('none').range(), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_DATA');
  });
});
