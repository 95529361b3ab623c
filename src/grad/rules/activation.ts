// Gradient rules of activations and softmax. Pure.

import { attrFloat, attrInt } from '../../onnx/attributes.js';
import type { GradTable } from '../types.js';
import { maskOr0, unary } from './util.js';

export const ACTIVATION_GRADS: GradTable = {
  // The output tells where x > 0, so x itself need not be kept.
  Relu: unary({ outputs: [0] }, (dy, n, c) => maskOr0(c, c.emit('Greater', [n.output[0]!, c.scalar(0, dy)]), dy, dy)),
  LeakyRelu: unary({ inputs: [0] }, (dy, n, c) => {
    const alpha = c.emit('Mul', [dy, c.scalar(attrFloat(n, 'alpha', 0.01), dy)]);
    return c.emit('Where', [c.emit('Greater', [n.input[0]!, c.scalar(0, dy)]), dy, alpha]);
  }),
  // Clip(x, min, max) (opset 11+: bounds are optional inputs): dx flows inside [min, max]; a bound gets
  // the gradient of the elements it clipped (summed to the bound's shape by the engine).
  Clip: {
    saves: { inputs: [0, 1, 2] },
    broadcast: [1, 2],
    grad: (n, [dy], c) => {
      const [x, lo, hi] = [n.input[0]!, n.input[1], n.input[2]];
      const below = lo ? c.emit('Less', [x, lo]) : undefined;
      const above = hi ? c.emit('Greater', [x, hi]) : undefined;
      const out = below && above ? c.emit('Or', [below, above]) : (below ?? above);
      const dx = out ? c.emit('Where', [out, c.scalar(0, dy!), dy!]) : dy!;
      const dLo = below && c.wants(1) ? maskOr0(c, below, dy!, dy!) : null;
      const dHi = above && c.wants(2) ? maskOr0(c, above, dy!, dy!) : null;
      return n.input.map((_, i) => [dx, dLo, dHi][i] ?? null);
    },
  },
  Sigmoid: unary({ outputs: [0] }, (dy, n, c) => {
    const y = n.output[0]!;
    return c.emit('Mul', [dy, c.emit('Mul', [y, c.emit('Sub', [c.scalar(1, y), y])])]);
  }),
  Tanh: unary({ outputs: [0] }, (dy, n, c) => {
    const y = n.output[0]!;
    return c.emit('Mul', [dy, c.emit('Sub', [c.scalar(1, y), c.emit('Mul', [y, y])])]);
  }),
  // softplus'(x) = sigmoid(x).
  Softplus: unary({ inputs: [0] }, (dy, n, c) => c.emit('Mul', [dy, c.emit('Sigmoid', [n.input[0]!])])),
  // Opset 13+ normalizes over the one `axis` (default -1): dx = y * (dy - sum(dy * y, axis)).
  Softmax: unary({ outputs: [0] }, (dy, n, c) => {
    const y = n.output[0]!;
    const s = c.emit('ReduceSum', [c.emit('Mul', [dy, y]), c.ints([attrInt(n, 'axis', -1)])], { keepdims: 1 });
    return c.emit('Mul', [y, c.emit('Sub', [dy, s])]);
  }),
  // dx = dy - exp(y) * sum(dy, axis).
  LogSoftmax: unary({ outputs: [0] }, (dy, n, c) => {
    const s = c.emit('ReduceSum', [dy, c.ints([attrInt(n, 'axis', -1)])], { keepdims: 1 });
    return c.emit('Sub', [dy, c.emit('Mul', [c.emit('Exp', [n.output[0]!]), s])]);
  }),
};
