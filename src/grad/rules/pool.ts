// Gradient rules of pooling: MaxPool (through the indices of a recomputed MaxPool), AveragePool (a
// ConvTranspose with a constant kernel), GlobalAveragePool. Pure.

import { attrInt, attrInts } from '../../onnx/attributes.js';
import type { GradTable } from '../types.js';
import { copyAttrs } from './util.js';
import { windowOf, windowTranspose } from './conv.js';

const POOL_ATTRS = ['kernel_shape', 'strides', 'pads', 'dilations', 'ceil_mode', 'auto_pad'];

export const POOL_GRADS: GradTable = {
  // A MaxPool with the same settings is rerun for its Indices output (flat positions in X, batch and
  // channel included, storage_order 0), so the forward node stays as it is; dY is scattered back to
  // those positions, added up where windows overlap (ScatterElements' reduction, opset 16+).
  MaxPool: {
    saves: { inputs: [0] },
    grad: (n, [dy], c) => {
      const x = n.input[0]!;
      const kernel = attrInts(n, 'kernel_shape') ?? c.fail('MaxPool has no kernel_shape');
      const win = windowOf(n, c, kernel);
      const overlap = kernel.some((k, i) => win.strides[i]! < (k - 1) * win.dilations[i]! + 1);
      if (overlap && c.opset < 16) c.fail('overlapping windows (stride < kernel) need ScatterElements with reduction=add (opset 16+)', 'raise the model opset to 16 or newer');
      const [, idx] = c.emitMulti('MaxPool', [x], { ...copyAttrs(n, POOL_ATTRS), storage_order: 0 }, 2);
      const flat = c.ints([-1]);
      const shape = c.shapeCat(c.shapeOf(x));
      const zeros = c.emit('Expand', [c.scalar(0, dy!), c.emit('ReduceProd', [shape], { keepdims: 1 })]);
      const scatter = c.emit('ScatterElements', [zeros, c.emit('Reshape', [idx!, flat]), c.emit('Reshape', [dy!, flat])], overlap ? { axis: 0, reduction: 'add' } : { axis: 0 });
      return [c.emit('Reshape', [scatter, shape])];
    },
  },
  // Y = (window sums) / divisor; the transpose spreads dY / divisor over each window. The divisor is the
  // kernel size, or with count_include_pad=0 and pads the number of real (unpadded) elements, read off an
  // AveragePool of ones. Channels are folded into the batch so one 1-channel kernel serves all.
  AveragePool: {
    saves: {},
    grad: (n, [dy], c) => {
      const x = n.input[0]!;
      const kernel = attrInts(n, 'kernel_shape') ?? c.fail('AveragePool has no kernel_shape');
      if (attrInt(n, 'ceil_mode', 0) === 1) c.fail('ceil_mode=1 is not supported', 'export the model with ceil_mode=0');
      const win = windowOf(n, c, kernel);
      const sp = kernel.length;
      const size = kernel.reduce((a, b) => a * b, 1);
      let g = c.emit('Reshape', [dy!, c.ints([-1, 1, ...new Array(sp).fill(0)])]);
      if (attrInt(n, 'count_include_pad', 0) === 0 && win.pads.some((p) => p > 0)) {
        const ones = c.emit('Expand', [c.scalar(1, dy!), c.shapeCat([1, 1], c.shapeOf(x, 2))]);
        const frac = c.emit('AveragePool', [ones], { ...copyAttrs(n, POOL_ATTRS), pads: win.pads, auto_pad: 'NOTSET', count_include_pad: 1 });
        g = c.emit('Div', [g, frac]);
      }
      const w = c.constant(new Array(size).fill(1 / size), [1, 1, ...kernel], dy!);
      const dx = windowTranspose(c, g, w, win, 1, x);
      return [c.emit('Reshape', [dx, c.shapeCat(c.shapeOf(x))])];
    },
  },
  GlobalAveragePool: {
    saves: {},
    grad: (n, [dy], c) => {
      const x = n.input[0]!;
      const spatial = c.shapeOf(x, 2);
      const wide = c.emit('Expand', [dy!, c.shapeCat(c.shapeOf(x))]);
      if (typeof spatial !== 'string') return [c.emit('Mul', [wide, c.scalar(1 / spatial.reduce((a, b) => a * b, 1), dy!)])];
      const count = c.emit('Cast', [c.emit('ReduceProd', [spatial], { keepdims: 0 })], { to: c.elemType(dy!) ?? 1 });
      return [c.emit('Div', [wide, count])];
    },
  },
};
