// Learning-rate schedules: constant, cosine (end points, midpoint, warmup), step decay, and option errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { makeSchedule } from '../../src/train/schedule.js';
import { throwsLowbit } from '../helpers.js';

const near = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

describe('makeSchedule', () => {
  it('constant keeps the base rate', () => {
    const s = makeSchedule({ kind: 'constant' }, 0.1, 10);
    assert.deepEqual([0, 5, 9].map(s), [0.1, 0.1, 0.1]);
  });

  it('cosine goes from lr at the first step to minLr at the last, lr/2 + minLr/2 halfway', () => {
    const s = makeSchedule({ kind: 'cosine', minLr: 0.01 }, 0.1, 11);
    near(s(0), 0.1);
    near(s(5), 0.055);
    near(s(10), 0.01);
    near(s(2), 0.01 + 0.09 * (1 + Math.cos(Math.PI * 0.2)) / 2);
    for (let i = 1; i < 11; i++) assert.ok(s(i) < s(i - 1), 'decreasing');
  });

  it('warms up linearly, then runs the schedule over the remaining steps', () => {
    const s = makeSchedule({ kind: 'cosine', warmupSteps: 4 }, 1, 9);
    assert.deepEqual([0, 1, 2, 3].map(s), [0.25, 0.5, 0.75, 1]);
    near(s(4), 1);
    near(s(6), 0.5);
    near(s(8), 0);
    const c = makeSchedule({ kind: 'constant', warmupSteps: 2 }, 0.2, 5);
    assert.deepEqual([0, 1, 2, 4].map(c), [0.1, 0.2, 0.2, 0.2]);
  });

  it('step decay multiplies by gamma every stepSize steps', () => {
    const s = makeSchedule({ kind: 'step', stepSize: 3, gamma: 0.5 }, 0.8, 10);
    assert.deepEqual([0, 2, 3, 5, 6, 9].map(s), [0.8, 0.8, 0.4, 0.4, 0.2, 0.1]);
  });

  it('handles a single step', () => {
    near(makeSchedule({ kind: 'cosine' }, 0.3, 1)(0), 0.3);
  });

  it('rejects bad options', () => {
    throwsLowbit(() => makeSchedule({ kind: 'linear' as 'step' }, 0.1, 10), 'BAD_OPTION', "unknown schedule 'linear'");
    throwsLowbit(() => makeSchedule({ kind: 'constant' }, 0, 10), 'BAD_OPTION', 'learning rate');
    throwsLowbit(() => makeSchedule({ kind: 'step' }, 0.1, 10), 'BAD_OPTION', 'stepSize');
    throwsLowbit(() => makeSchedule({ kind: 'cosine', minLr: 1 }, 0.1, 10), 'BAD_OPTION', 'minLr');
    throwsLowbit(() => makeSchedule({ kind: 'constant', warmupSteps: -1 }, 0.1, 10), 'BAD_OPTION', 'warmupSteps');
    throwsLowbit(() => makeSchedule({ kind: 'constant' }, 0.1, 0), 'BAD_OPTION', 'at least one step');
  });
});
