// Optimizers against hand-computed PyTorch formulas (SGD with momentum / Nesterov / coupled weight decay,
// AdamW with bias correction and decoupled decay), the default weight-decay rule (rank >= 2 only), the
// per-param learning-rate multiplier, and option errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createOptimizer, type ParamTensor } from '../../src/train/optim.js';
import { throwsLowbit } from '../helpers.js';

const close = (a: ArrayLike<number>, b: readonly number[], tol = 1e-6): void => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!)), `[${i}] ${a[i]} vs ${b[i]}`);
};

const param = (name: string, dims: number[], values: number[]): ParamTensor => ({ name, dims, data: Float32Array.from(values) });

describe('SGD', () => {
  it('follows buf = m*buf + g, w -= lr*buf (buf = g on the first step)', () => {
    const w = param('w', [2, 1], [1, -2]);
    const opt = createOptimizer([w], { kind: 'sgd', momentum: 0.9 });
    const grads = [[0.5, 1], [0.25, -1], [-1, 0.5]];
    // By hand, lr 0.1: step 1 buf = g1; step 2 buf = 0.9*g1 + g2; step 3 buf = 0.9*buf2 + g3.
    let ref = [1, -2];
    let buf = [0, 0];
    grads.forEach((g, t) => {
      buf = buf.map((b, i) => (t === 0 ? g[i]! : 0.9 * b + g[i]!));
      ref = ref.map((x, i) => x - 0.1 * buf[i]!);
      opt.step([Float32Array.from(g)], 0.1);
    });
    close(w.data, ref);
    assert.equal(opt.steps, 3);
    // Spelled out for the first coordinate: 1 - 0.1*0.5 - 0.1*(0.45+0.25) - 0.1*(0.63-1) = 0.917
    close([w.data[0]!], [0.917]);
  });

  it('uses g + m*buf with nesterov, and adds wd*w to the gradient of rank >= 2 weights only', () => {
    const w = param('w', [1, 2], [1, 2]);
    const b = param('b', [2], [1, 2]);
    const opt = createOptimizer([w, b], { kind: 'sgd', momentum: 0.5, nesterov: true, weightDecay: 0.1 });
    const g = Float32Array.of(1, 1);
    opt.step([g, g], 1);
    // w: g' = g + 0.1 w = [1.1, 1.2]; buf = g'; update = g' + 0.5 buf = 1.5 g'.
    close(w.data, [1 - 1.65, 2 - 1.8]);
    // b (rank 1, no decay): update = 1.5 g.
    close(b.data, [1 - 1.5, 2 - 1.5]);
    opt.step([g, g], 1);
    // b step 2: buf = 0.5*1 + 1 = 1.5; update = 1 + 0.5*1.5 = 1.75.
    close(b.data, [-0.5 - 1.75, 0.5 - 1.75]);
  });

  it('with momentum 0 is plain gradient descent', () => {
    const w = param('w', [3], [1, 2, 3]);
    const opt = createOptimizer([w], { kind: 'sgd', momentum: 0 });
    opt.step([Float32Array.of(1, -1, 2)], 0.5);
    opt.step([Float32Array.of(1, -1, 2)], 0.5);
    close(w.data, [0, 3, 1]);
  });
});

describe('AdamW', () => {
  it('matches the bias-corrected Adam update with decoupled weight decay', () => {
    const w = param('w', [2, 2], [0.5, -0.5, 1, 2]);
    const bias = param('b', [2], [0.1, 0.2]);
    const opt = createOptimizer([w, bias], { kind: 'adamw', betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1 });
    const gs = [[0.1, -0.2, 0.3, 0], [0.2, 0.1, -0.3, 1], [-0.1, 0.4, 0.3, -1]];
    const lr = 0.01;
    const run = (x0: number[], decay: number, grads: number[][]): number[] => {
      const x = [...x0];
      const m = x.map(() => 0);
      const v = x.map(() => 0);
      grads.forEach((g, t) => {
        for (let i = 0; i < x.length; i++) {
          x[i] = x[i]! * (1 - lr * decay);
          m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
          v[i] = 0.99 * v[i]! + 0.01 * g[i]! * g[i]!;
          const mh = m[i]! / (1 - 0.9 ** (t + 1));
          const vh = v[i]! / (1 - 0.99 ** (t + 1));
          x[i] = x[i]! - (lr * mh) / (Math.sqrt(vh) + 1e-8);
        }
      });
      return x;
    };
    for (const g of gs) opt.step([Float32Array.from(g), Float32Array.from(g.slice(0, 2))], lr);
    close(w.data, run([0.5, -0.5, 1, 2], 0.1, gs), 1e-5);
    close(bias.data, run([0.1, 0.2], 0, gs.map((g) => g.slice(0, 2))), 1e-5);
    // First step of Adam moves each coordinate by about lr (sign of g): a sanity anchor for the formula.
    const one = param('one', [1], [0]);
    createOptimizer([one], { kind: 'adamw' }).step([Float32Array.of(123)], 0.01);
    close(one.data, [-0.01], 1e-4);
  });

  it('scales each param by its learning-rate multiplier (a zero multiplier freezes it)', () => {
    const a = param('a', [2], [1, 1]);
    const s = param('a_scale', [2], [1, 1]);
    const opt = createOptimizer([a, s], { kind: 'sgd', momentum: 0, lrMultiplier: (p) => (p.name.endsWith('_scale') ? 0.01 : 1) });
    opt.step([Float32Array.of(1, 2), Float32Array.of(1, 2)], 1);
    close(a.data, [0, -1]);
    close(s.data, [0.99, 0.98]);
    const frozen = param('f', [1], [3]);
    createOptimizer([frozen], { kind: 'adamw', lrMultiplier: () => 0 }).step([Float32Array.of(5)], 1);
    close(frozen.data, [3]);
  });
});

describe('optimizer options', () => {
  const p = [param('w', [2, 2], [0, 0, 0, 0])];
  it('rejects bad values and misplaced options', () => {
    throwsLowbit(() => createOptimizer(p, { kind: 'rmsprop' as 'sgd' }), 'BAD_OPTION', "unknown optimizer 'rmsprop'");
    throwsLowbit(() => createOptimizer(p, { kind: 'sgd', momentum: 1 }), 'BAD_OPTION', 'momentum');
    throwsLowbit(() => createOptimizer(p, { kind: 'sgd', momentum: 0, nesterov: true }), 'BAD_OPTION', 'Nesterov');
    throwsLowbit(() => createOptimizer(p, { kind: 'adamw', weightDecay: -1 }), 'BAD_OPTION', 'weightDecay');
    throwsLowbit(() => createOptimizer(p, { kind: 'adamw', momentum: 0.9 }), 'BAD_OPTION', 'momentum');
    throwsLowbit(() => createOptimizer(p, { kind: 'adamw', lrMultiplier: () => -1 }), 'BAD_OPTION', "'w'");
  });
  it('rejects gradients that do not match the params', () => {
    const opt = createOptimizer(p, { kind: 'sgd' });
    throwsLowbit(() => opt.step([new Float32Array(3)], 0.1), 'INTERNAL', "'w'");
    throwsLowbit(() => opt.step([], 0.1), 'INTERNAL', '0 gradients');
  });
});
