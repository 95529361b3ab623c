// Optimizers that update Float32Array params in place from their gradients: SGD with momentum (and
// Nesterov) and AdamW (decoupled weight decay), with PyTorch's update formulas. Weight decay applies by
// default only to weights of rank >= 2 (not biases, BatchNormalization or quantization scales); a per-param
// learning-rate multiplier lets callers train some params (e.g. QAT scales) at their own rate. Pure.

import { LowbitError } from '../errors.js';

export const OPTIMIZERS = ['sgd', 'adamw'] as const;
export type OptimizerKind = (typeof OPTIMIZERS)[number];

/** A trained tensor: its name, dims and values (updated in place). */
export interface ParamTensor {
  readonly name: string;
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

export interface OptimizerOptions {
  kind: OptimizerKind;
  /** SGD: momentum factor (default 0.9; 0 = plain SGD). */
  momentum?: number;
  /** SGD: Nesterov momentum (default false). */
  nesterov?: boolean;
  /** AdamW: (beta1, beta2), default (0.9, 0.999). */
  betas?: readonly [number, number];
  /** AdamW: denominator epsilon (default 1e-8). */
  eps?: number;
  /**
   * Weight decay: L2 added to the gradient for SGD (PyTorch's SGD), decoupled (w -= lr * wd * w) for
   * AdamW. Default 0 for SGD, 0.01 for AdamW.
   */
  weightDecay?: number;
  /** Which params weight decay applies to. Default: rank >= 2 (weights; not biases, norms or scales). */
  decay?: (p: ParamTensor) => boolean;
  /** Learning-rate multiplier per param (default 1), e.g. a smaller rate for quantization scales. */
  lrMultiplier?: (p: ParamTensor) => number;
}

/** Updates params in place; one instance per training run (it keeps momentum / moment buffers). */
export interface Optimizer {
  readonly kind: OptimizerKind;
  /** The params, in the order `step` expects gradients. */
  readonly params: readonly ParamTensor[];
  /**
   * One update with learning rate `lr`; `grads[i]` is the gradient of `params[i]` (same length).
   * @throws LowbitError INTERNAL for a gradient of the wrong length
   */
  step(grads: readonly Float32Array[], lr: number): void;
  /** Steps taken so far. */
  readonly steps: number;
}

/** The default weight-decay rule: weights of rank >= 2 only. */
export const decayWeightsOnly = (p: ParamTensor): boolean => p.dims.length >= 2;

const badOption = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);

function checkNumber(name: string, v: number, lo: number, hi: number, hiOpen = false): void {
  if (!(Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi))) throw badOption(`${name} must be in [${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`, `pass a valid ${name}`);
}

/**
 * Creates an optimizer over `params`.
 * @throws LowbitError BAD_OPTION for an unknown kind or out-of-range hyperparameters, or a negative
 *   learning-rate multiplier
 */
export function createOptimizer(params: readonly ParamTensor[], opts: OptimizerOptions): Optimizer {
  if (!(OPTIMIZERS as readonly string[]).includes(opts.kind)) throw badOption(`unknown optimizer '${String(opts.kind)}'`, `use one of ${OPTIMIZERS.join(', ')}`);
  const wd = opts.weightDecay ?? (opts.kind === 'adamw' ? 0.01 : 0);
  checkNumber('weightDecay', wd, 0, Infinity);
  const decays = params.map((p) => (wd > 0 && (opts.decay ?? decayWeightsOnly)(p) ? wd : 0));
  const mult = params.map((p) => {
    const m = opts.lrMultiplier ? opts.lrMultiplier(p) : 1;
    if (!(Number.isFinite(m) && m >= 0)) throw badOption(`learning-rate multiplier of '${p.name}' must be a non-negative number, got ${m}`, 'fix the lrMultiplier callback');
    return m;
  });
  const checkGrads = (grads: readonly Float32Array[]): void => {
    if (grads.length !== params.length) throw new LowbitError('INTERNAL', `optimizer got ${grads.length} gradients for ${params.length} params`);
    grads.forEach((g, i) => {
      if (g.length !== params[i]!.data.length) throw new LowbitError('INTERNAL', `gradient of '${params[i]!.name}' has ${g.length} elements, the param ${params[i]!.data.length}`);
    });
  };
  if (opts.kind === 'sgd') {
    const momentum = opts.momentum ?? 0.9;
    checkNumber('momentum', momentum, 0, 1, true);
    const nesterov = opts.nesterov ?? false;
    if (nesterov && momentum === 0) throw badOption('Nesterov momentum needs momentum > 0', 'set momentum, e.g. 0.9');
    const bufs = params.map((p) => (momentum > 0 ? new Float32Array(p.data.length) : undefined));
    let steps = 0;
    return {
      kind: 'sgd',
      params,
      get steps() {
        return steps;
      },
      step(grads, lr) {
        checkGrads(grads);
        params.forEach((p, k) => sgdStep(p.data, grads[k]!, bufs[k], lr * mult[k]!, momentum, nesterov, decays[k]!, steps === 0));
        steps++;
      },
    };
  }
  const [b1, b2] = opts.betas ?? [0.9, 0.999];
  checkNumber('beta1', b1, 0, 1, true);
  checkNumber('beta2', b2, 0, 1, true);
  const eps = opts.eps ?? 1e-8;
  if (!(eps > 0)) throw badOption(`eps must be positive, got ${eps}`, 'use e.g. 1e-8');
  if (opts.momentum !== undefined || opts.nesterov !== undefined) throw badOption('momentum and nesterov apply to sgd, not adamw', 'use betas for AdamW');
  const m1 = params.map((p) => new Float32Array(p.data.length));
  const m2 = params.map((p) => new Float32Array(p.data.length));
  let steps = 0;
  return {
    kind: 'adamw',
    params,
    get steps() {
      return steps;
    },
    step(grads, lr) {
      checkGrads(grads);
      steps++;
      const c1 = 1 - b1 ** steps;
      const c2 = 1 - b2 ** steps;
      params.forEach((p, k) => adamwStep(p.data, grads[k]!, m1[k]!, m2[k]!, lr * mult[k]!, b1, b2, eps, decays[k]!, c1, c2));
    },
  };
}

/**
 * PyTorch's SGD: g += wd * w; buf = momentum * buf + g (buf = g on the first step); update = nesterov ?
 * g + momentum * buf : buf; w -= lr * update.
 */
function sgdStep(w: Float32Array, g: Float32Array, buf: Float32Array | undefined, lr: number, momentum: number, nesterov: boolean, wd: number, first: boolean): void {
  const n = w.length;
  if (!buf) {
    for (let i = 0; i < n; i++) w[i] = w[i]! - lr * (g[i]! + wd * w[i]!);
    return;
  }
  for (let i = 0; i < n; i++) {
    const gi = g[i]! + wd * w[i]!;
    const b = first ? gi : momentum * buf[i]! + gi;
    buf[i] = b;
    w[i] = w[i]! - lr * (nesterov ? gi + momentum * b : b);
  }
}

/**
 * PyTorch's AdamW: w *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²;
 * w -= lr * (m / c1) / (sqrt(v / c2) + eps), with c1 = 1 - b1^t and c2 = 1 - b2^t.
 */
function adamwStep(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lr: number, b1: number, b2: number, eps: number, wd: number, c1: number, c2: number): void {
  const n = w.length;
  const shrink = 1 - lr * wd;
  const stepSize = lr / c1;
  const rc2 = 1 / Math.sqrt(c2);
  for (let i = 0; i < n; i++) {
    const gi = g[i]!;
    const mi = b1 * m[i]! + (1 - b1) * gi;
    const vi = b2 * v[i]! + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i]! * shrink - (stepSize * mi) / (Math.sqrt(vi) * rc2 + eps);
  }
}
