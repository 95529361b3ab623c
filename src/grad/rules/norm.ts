// Gradient rules of BatchNormalization (training mode: batch statistics; inference mode: the affine map
// of the given statistics) and LayerNormalization. Statistics are recomputed from X in the backward
// pass (opset 14+ BatchNormalization outputs only the running statistics). Pure.

import { attrFloat, attrInt } from '../../onnx/attributes.js';
import type { NodeProto } from '../../onnx/proto.js';
import type { GradContext, GradTable } from '../types.js';
import { normAxis, range, reduceMean, reduceSum } from './util.js';

interface Normalized {
  /** (x - mean) / sqrt(var + epsilon). */
  xhat: string;
  invstd: string;
}

/** Mean and variance of `x` over `axes` (population variance, as ONNX's ReduceVar), and x normalized. */
function normalize(c: GradContext, x: string, axes: number[], epsilon: number): Normalized {
  const centered = c.emit('Sub', [x, reduceMean(c, x, axes, true)]);
  const variance = reduceMean(c, c.emit('Mul', [centered, centered]), axes, true);
  const invstd = c.emit('Reciprocal', [c.emit('Sqrt', [c.emit('Add', [variance, c.scalar(epsilon, x)])])]);
  return { xhat: c.emit('Mul', [centered, invstd]), invstd };
}

/** dX of a normalization whose statistics depend on X: invstd * (g - mean(g) - xhat * mean(g * xhat)). */
function normInputGrad(c: GradContext, g: string, nz: Normalized, axes: number[]): string {
  const meanG = reduceMean(c, g, axes, true);
  const meanGx = reduceMean(c, c.emit('Mul', [g, nz.xhat]), axes, true);
  const inner = c.emit('Sub', [c.emit('Sub', [g, meanG]), c.emit('Mul', [nz.xhat, meanGx])]);
  return c.emit('Mul', [nz.invstd, inner]);
}

/** BatchNormalization runs on batch statistics with training_mode=1 (opset 14+), or with extra outputs before 14. */
const isTraining = (n: NodeProto, c: GradContext): boolean =>
  c.opset >= 14 ? attrInt(n, 'training_mode', 0) === 1 : n.output.filter(Boolean).length > 1;

export const NORM_GRADS: GradTable = {
  // Channel axis 1; per-channel inputs [C] are reshaped to [C, 1, ...] to broadcast over X.
  // Training mode: gradients for X, scale and B (the running mean/var inputs do not affect Y). Inference
  // mode: Y is affine in X, and the given mean and var get gradients too. Gradients reaching the
  // running-statistics outputs are ignored: they are state for the next step, not part of the loss.
  BatchNormalization: {
    saves: { inputs: [0, 1, 3, 4] },
    grad: (n, [dy], c) => {
      const [x, scale, , mean, variance] = n.input as [string, string, string, string, string];
      const rank = c.rank(x, 'the BatchNormalization gradient');
      const axes = [0, ...range(rank, 2)];
      const perChannel = c.ints([-1, ...new Array(rank - 2).fill(1)]);
      const asColumn = (v: string) => c.emit('Reshape', [v, perChannel]);
      const epsilon = attrFloat(n, 'epsilon', 1e-5);
      const dB = c.wants(2) || c.wants(3) ? reduceSum(c, dy!, axes, false) : null;
      if (isTraining(n, c)) {
        const nz = normalize(c, x, axes, epsilon);
        const dx = c.wants(0) ? normInputGrad(c, c.emit('Mul', [dy!, asColumn(scale)]), nz, axes) : null;
        const dScale = c.wants(1) ? reduceSum(c, c.emit('Mul', [dy!, nz.xhat]), axes, false) : null;
        return [dx, dScale, dB, null, null];
      }
      const invstd = c.emit('Reciprocal', [c.emit('Sqrt', [c.emit('Add', [variance, c.scalar(epsilon, x)])])]);
      const gain = c.emit('Mul', [scale, invstd]);
      const dx = c.wants(0) ? c.emit('Mul', [dy!, asColumn(gain)]) : null;
      const sumDyXc = c.wants(1) || c.wants(4) ? reduceSum(c, c.emit('Mul', [dy!, c.emit('Sub', [x, asColumn(mean)])]), axes, false) : null;
      const dScale = c.wants(1) ? c.emit('Mul', [sumDyXc!, invstd]) : null;
      const dMean = c.wants(3) ? c.emit('Neg', [c.emit('Mul', [dB!, gain])]) : null;
      // dY/dvar = -0.5 * scale * (x - mean) * invstd^3.
      const dVar = c.wants(4)
        ? c.emit('Mul', [c.emit('Mul', [sumDyXc!, gain]), c.emit('Mul', [c.emit('Mul', [invstd, invstd]), c.scalar(-0.5, x)])])
        : null;
      return [dx, dScale, c.wants(2) ? dB : null, dMean, dVar];
    },
  },
  // Normalized over axes [axis, rank); Scale and B broadcast over the leading axes (the engine sums them).
  LayerNormalization: {
    saves: { inputs: [0, 1] },
    broadcast: [1, 2],
    grad: (n, [dy], c) => {
      const [x, scale] = [n.input[0]!, n.input[1]!];
      const rank = c.rank(x, 'the LayerNormalization gradient');
      const axes = range(rank, normAxis(attrInt(n, 'axis', -1), rank));
      const nz = normalize(c, x, axes, attrFloat(n, 'epsilon', 1e-5));
      const dx = c.wants(0) ? normInputGrad(c, c.emit('Mul', [dy!, scale]), nz, axes) : null;
      const dScale = c.wants(1) ? c.emit('Mul', [dy!, nz.xhat]) : null;
      const out = [dx, dScale];
      if (n.input.length > 2) out.push(n.input[2] && c.wants(2) ? dy! : null);
      return out;
    },
  },
};
