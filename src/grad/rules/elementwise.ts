// Gradient rules of elementwise arithmetic (numpy broadcasting is undone by the engine). Pure.

import type { GradTable } from '../types.js';
import { binary, castLike, maskOr0, unary } from './util.js';

export const ELEMENTWISE_GRADS: GradTable = {
  Add: binary({}, (dy) => dy, (dy) => dy),
  Sub: binary({}, (dy) => dy, (dy, _n, c) => c.emit('Neg', [dy])),
  Mul: binary(
    { inputs: [0, 1] },
    (dy, n, c) => c.emit('Mul', [dy, n.input[1]!]),
    (dy, n, c) => c.emit('Mul', [dy, n.input[0]!]),
  ),
  // y = a / b: da = dy / b, db = -dy * y / b.
  Div: binary(
    { inputs: [1], outputs: [0] },
    (dy, n, c) => c.emit('Div', [dy, n.input[1]!]),
    (dy, n, c) => c.emit('Neg', [c.emit('Div', [c.emit('Mul', [dy, n.output[0]!]), n.input[1]!])]),
  ),
  // y = a ^ b: da = dy * b * a^(b-1); db = dy * y * ln(a) where a > 0 (0 elsewhere, where ln is undefined).
  Pow: binary(
    { inputs: [0, 1], outputs: [0] },
    (dy, n, c) => {
      const [a, b] = [n.input[0]!, castLike(c, n.input[1]!, n.input[0]!)];
      const pow = c.emit('Pow', [a, c.emit('Sub', [b, c.scalar(1, a)])]);
      return c.emit('Mul', [dy, c.emit('Mul', [b, pow])]);
    },
    (dy, n, c) => {
      const a = n.input[0]!;
      const ln = maskOr0(c, c.emit('Greater', [a, c.scalar(0, a)]), c.emit('Log', [a]), a);
      return c.emit('Mul', [c.emit('Mul', [dy, n.output[0]!]), ln]);
    },
  ),
  // Variadic: every input gets dy (Sum) or dy / count (Mean), reduced to its shape.
  Sum: { saves: {}, broadcast: 'all', grad: (n, [dy]) => n.input.map(() => dy!) },
  Mean: {
    saves: {},
    broadcast: 'all',
    grad: (n, [dy], c) => {
      const g = c.emit('Mul', [dy!, c.scalar(1 / n.input.length, dy!)]);
      return n.input.map(() => g);
    },
  },
  // Where(cond, a, b): the condition is boolean (no gradient).
  Where: {
    saves: { inputs: [0] },
    broadcast: [1, 2],
    grad: (n, [dy], c) => [null, maskOr0(c, n.input[0]!, dy!, dy!), c.emit('Where', [n.input[0]!, c.scalar(0, dy!), dy!])],
  },
  Neg: unary({}, (dy, _n, c) => c.emit('Neg', [dy])),
  Exp: unary({ outputs: [0] }, (dy, n, c) => c.emit('Mul', [dy, n.output[0]!])),
  Log: unary({ inputs: [0] }, (dy, n, c) => c.emit('Div', [dy, n.input[0]!])),
  // y = sqrt(x): dx = dy * 0.5 / y.
  Sqrt: unary({ outputs: [0] }, (dy, n, c) => c.emit('Div', [c.emit('Mul', [dy, c.scalar(0.5, dy)]), n.output[0]!])),
  // y = 1 / x: dx = -dy * y^2.
  Reciprocal: unary({ outputs: [0] }, (dy, n, c) => {
    const y = n.output[0]!;
    return c.emit('Neg', [c.emit('Mul', [dy, c.emit('Mul', [y, y])])]);
  }),
  Abs: unary({ inputs: [0] }, (dy, n, c) => c.emit('Mul', [dy, c.emit('Sign', [n.input[0]!])])),
  // erf'(x) = 2/sqrt(pi) * exp(-x^2).
  Erf: unary({ inputs: [0] }, (dy, n, c) => {
    const x = n.input[0]!;
    const e = c.emit('Exp', [c.emit('Neg', [c.emit('Mul', [x, x])])]);
    return c.emit('Mul', [dy, c.emit('Mul', [e, c.scalar(2 / Math.sqrt(Math.PI), x)])]);
  }),
};
