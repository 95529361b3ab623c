// Range observers: running min/max and moving average over batches, NaN/Inf errors naming the tensor,
// empty batches, the factory.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { MinMaxObserver, MovingAverageMinMaxObserver, batchMinMax, createObserver } from '../../src/calib/observer.js';

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
  it('starts from the first batch and moves by the averaging constant', () => {
    const o = new MovingAverageMinMaxObserver('t', 0.5);
    o.update(f32(-2, 2));
    assert.deepEqual(o.range(), { min: -2, max: 2 });
    o.update(f32(-4, 10));
    assert.deepEqual(o.range(), { min: -3, max: 6 });
    o.update(f32(0));
    assert.deepEqual(o.range(), { min: -1.5, max: 3 });
  });

  it('an outlier batch widens the range less than with plain min/max', () => {
    const avg = new MovingAverageMinMaxObserver('t');
    const mm = new MinMaxObserver('t');
    for (const batch of [f32(-1, 1), f32(-1, 100), f32(-1, 1)]) {
      avg.update(batch);
      mm.update(batch);
    }
    assert.equal(mm.range().max, 100);
    assert.ok(avg.range().max < 3, `moving average max ${avg.range().max}`);
  });

  it('rejects a constant outside (0, 1] and non-finite data', () => {
    assert.throws(() => new MovingAverageMinMaxObserver('t', 0), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
    assert.throws(() => new MovingAverageMinMaxObserver('t', 1.5), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
    assert.throws(() => new MovingAverageMinMaxObserver('x').update(f32(NaN)), (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE');
  });
});

describe('createObserver / batchMinMax', () => {
  it('creates each kind and rejects unknown ones', () => {
    assert.ok(createObserver('minmax', 'a') instanceof MinMaxObserver);
    assert.ok(createObserver('moving-average-minmax', 'a', { averagingConstant: 0.1 }) instanceof MovingAverageMinMaxObserver);
    assert.throws(() => createObserver('entropy' as never, 'a'), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /entropy/.test(e.message));
  });

  it('batchMinMax: undefined for an empty batch, extremes otherwise', () => {
    assert.equal(batchMinMax('t', new Float32Array(0)), undefined);
    assert.deepEqual(batchMinMax('t', f32(3, -1, 2)), { min: -1, max: 3 });
  });
});
