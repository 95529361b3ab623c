// Range observers: running min/max and moving average over batches (ORT's mean, or an exponential
// average), NaN/Inf errors naming the tensor, empty batches; the factory and the method options.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { MinMaxObserver, MovingAverageMinMaxObserver, batchMinMax } from '../../src/calib/observer.js';
import { createObserver } from '../../src/calib/create.js';
import { EntropyObserver } from '../../src/calib/entropy.js';
import { resolveCalibration } from '../../src/calib/methods.js';
import { MseObserver } from '../../src/calib/mse.js';
import { PercentileObserver } from '../../src/calib/percentile.js';
import { quantTarget } from '../../src/calib/target.js';

const f32 = (...v: number[]) => Float32Array.from(v);

describe('MinMaxObserver', () => {
  it('keeps the running minimum and maximum over batches', () => {
    const o = new MinMaxObserver('t');
    o.update(f32(1, 2, 3));
    assert.deepEqual(o.range(), { min: 1, max: 3 });
    o.update(f32(-4, 0.5));
    o.update(f32(2.5));
    assert.deepEqual(o.range(), { min: -4, max: 3 });
    assert.equal(o.batches, 3);
  });

  it('gives the exact float32 extremes, not rounded values', () => {
    const o = new MinMaxObserver('t');
    o.update(f32(0.1, -0.3));
    assert.deepEqual(o.range(), { min: Math.fround(-0.3), max: Math.fround(0.1) });
  });

  it('ignores empty batches; only empty batches give [0, 0]', () => {
    const o = new MinMaxObserver('t');
    o.update(new Float32Array(0));
    assert.deepEqual(o.range(), { min: 0, max: 0 });
    o.update(f32(5, 7));
    o.update(new Float32Array(0));
    assert.deepEqual(o.range(), { min: 5, max: 7 });
  });

  it('throws BAD_DATA when nothing was observed', () => {
    assert.throws(() => new MinMaxObserver('never').range(), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_DATA' && /'never'/.test(e.message));
  });

  for (const bad of [NaN, Infinity, -Infinity]) {
    it(`throws NON_FINITE naming the tensor for ${bad}`, () => {
      const o = new MinMaxObserver('conv1_out');
      assert.throws(
        () => o.update(f32(1, 2, bad, 4)),
        (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE' && /'conv1_out'/.test(e.message) && /element 2/.test(e.message),
      );
    });
  }

  it('memory does not grow with batches: state is two numbers', () => {
    const o = new MinMaxObserver('t');
    for (let i = 0; i < 1000; i++) o.update(f32(i, -i));
    assert.deepEqual(o.range(), { min: -999, max: 999 });
    assert.deepEqual(Object.keys(o).sort(), ['batches', 'max', 'min', 'tensor']);
  });
});

describe('MovingAverageMinMaxObserver', () => {
  it('without a constant: the mean of per-batch min and max (ORT moving_average, max_intermediate_outputs unset)', () => {
    const o = new MovingAverageMinMaxObserver('t');
    o.update(f32(-2, 2));
    assert.deepEqual(o.range(), { min: -2, max: 2 });
    o.update(f32(-4, 10));
    o.update(f32(0));
    o.update(new Float32Array(0)); // empty batches do not count
    assert.deepEqual(o.range(), { min: -2, max: 4 });
    assert.equal(o.batches, 4);
  });

  it('with a constant: an exponential average started by the first batch', () => {
    const o = new MovingAverageMinMaxObserver('t', 0.5);
    o.update(f32(-2, 2));
    assert.deepEqual(o.range(), { min: -2, max: 2 });
    o.update(f32(-4, 10));
    assert.deepEqual(o.range(), { min: -3, max: 6 });
    o.update(f32(0));
    assert.deepEqual(o.range(), { min: -1.5, max: 3 });
  });

  it('an outlier batch widens the range less than with plain min/max', () => {
    const mean = new MovingAverageMinMaxObserver('t');
    const ema = new MovingAverageMinMaxObserver('t', 0.01);
    const mm = new MinMaxObserver('t');
    for (let b = 0; b < 100; b++) {
      const batch = b === 50 ? f32(-1, 100) : f32(-1, 1);
      for (const o of [mean, ema, mm]) o.update(batch);
    }
    assert.equal(mm.range().max, 100);
    assert.ok(Math.abs(mean.range().max - 1.99) < 1e-9, `mean max ${mean.range().max}`);
    assert.ok(ema.range().max < 2, `exponential max ${ema.range().max}`);
  });

  it('rejects a constant outside (0, 1] and non-finite data; [0, 0] after empty batches only', () => {
    assert.throws(() => new MovingAverageMinMaxObserver('t', 0), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
    assert.throws(() => new MovingAverageMinMaxObserver('t', 1.5), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
    assert.throws(() => new MovingAverageMinMaxObserver('x').update(f32(NaN)), (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE');
    const o = new MovingAverageMinMaxObserver('t');
    o.update(new Float32Array(0));
    assert.deepEqual(o.range(), { min: 0, max: 0 });
    assert.throws(() => new MovingAverageMinMaxObserver('t').range(), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_DATA');
  });
});

const badOption = (re: RegExp) => (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && re.test(e.message);

describe('createObserver / resolveCalibration / batchMinMax', () => {
  it('creates the observer of each method with its options and target', () => {
    assert.ok(createObserver('a') instanceof MinMaxObserver);
    assert.ok(createObserver('a', { method: 'minmax' }) instanceof MinMaxObserver);
    const mean = createObserver('a', { movingAverage: true });
    assert.ok(mean instanceof MovingAverageMinMaxObserver && mean.averagingConstant === undefined);
    const ema = createObserver('a', { movingAverage: true, averagingConstant: 0.1 });
    assert.ok(ema instanceof MovingAverageMinMaxObserver && ema.averagingConstant === 0.1);
    const p = createObserver('a', { method: 'percentile', percentile: 99.9, numBins: 512 }, quantTarget('int8', true));
    assert.ok(p instanceof PercentileObserver && p.percentile === 99.9 && p.histogram.numBins === 512 && p.target.symmetric && p.target.qmin === -127);
    const e = createObserver('a', { method: 'entropy' });
    assert.ok(e instanceof EntropyObserver && e.histogram.numBins === 4096 && e.target.type === 'uint8');
    assert.ok(createObserver('a', { method: 'mse', numBins: 1000 }) instanceof MseObserver);
  });

  it('fills in the defaults of each method and nothing else', () => {
    assert.deepEqual(resolveCalibration(), { method: 'minmax', movingAverage: false });
    assert.deepEqual(resolveCalibration({ method: 'percentile' }), { method: 'percentile', percentile: 99.999, numBins: 2048 });
    assert.deepEqual(resolveCalibration({ method: 'entropy' }), { method: 'entropy', numBins: 4096 });
    assert.deepEqual(resolveCalibration({ method: 'mse', numBins: 512 }), { method: 'mse', numBins: 512 });
    assert.deepEqual(resolveCalibration({ movingAverage: true, averagingConstant: 0.01 }), { method: 'minmax', movingAverage: true, averagingConstant: 0.01 });
  });

  it('rejects unknown methods (listing the valid ones) and options the method does not use', () => {
    assert.throws(() => createObserver('a', { method: 'kl' as never }), badOption(/unknown calibration method "kl"/));
    assert.throws(() => resolveCalibration({ method: 'kl' as never }), (e: unknown) => e instanceof LowbitError && /minmax, percentile, entropy, mse/.test(e.hint ?? ''));
    assert.throws(() => resolveCalibration({ method: 'entropy', percentile: 99 }), badOption(/percentile \(--percentile\) is an option of the percentile method, not of entropy/));
    assert.throws(() => resolveCalibration({ numBins: 1024 }), badOption(/numBins \(--num-bins\) is an option of the percentile, entropy, mse methods, not of minmax/));
    assert.throws(() => resolveCalibration({ method: 'mse', movingAverage: true }), badOption(/movingAverage \(--moving-average\) is an option of the minmax method, not of mse/));
    assert.throws(() => resolveCalibration({ averagingConstant: 0.1 }), badOption(/needs movingAverage/));
    assert.throws(() => resolveCalibration({ movingAverage: true, averagingConstant: 2 }), badOption(/averagingConstant must be a number in \(0, 1\]/));
    assert.throws(() => resolveCalibration({ method: 'percentile', percentile: 0 }), badOption(/percentile must be a number in \(0, 100\]/));
    assert.throws(() => resolveCalibration({ method: 'entropy', numBins: 300 }), badOption(/numBins must be an integer in \[512, /));
    assert.throws(() => resolveCalibration({ method: 'mse', numBins: 1.5 }), badOption(/numBins must be an integer/));
    assert.throws(() => resolveCalibration({ movingAverage: 'yes' as never }), badOption(/movingAverage must be true or false/));
  });

  it('batchMinMax: undefined for an empty batch, extremes otherwise', () => {
    assert.equal(batchMinMax('t', new Float32Array(0)), undefined);
    assert.deepEqual(batchMinMax('t', f32(3, -1, 2)), { min: -1, max: 3 });
  });
});
