// Gradient rules of reductions: dY is put back in the reduced axes and broadcast over them (divided by
// the count for a mean). Axes are an attribute before the opset in `since` and an input from it. Pure.

import { attrInt, attrInts } from '../../onnx/attributes.js';
import type { NodeProto } from '../../onnx/proto.js';
import type { GradContext, GradRule, GradTable } from '../types.js';
import { normAxis } from './util.js';

/** The reduced axes: a list, [] for "all" (or none with noop_with_empty_axes), or 'dynamic'. */
function reducedAxes(n: NodeProto, c: GradContext, since: number): number[] | 'dynamic' {
  if (c.opset < since) return attrInts(n, 'axes', []);
  if (!n.input[1]) return [];
  return c.constantValues(n.input[1]) ?? 'dynamic';
}

function reduceRule(since: number, mean: boolean): GradRule {
  return {
    saves: {},
    grad: (n, [dy], c) => {
      const x = n.input[0]!;
      const keep = attrInt(n, 'keepdims', 1) === 1;
      const axes = reducedAxes(n, c, since);
      const rest = n.input.slice(1).map(() => null);
      if (Array.isArray(axes) && axes.length === 0 && attrInt(n, 'noop_with_empty_axes', 0) === 1) return [dy!, ...rest];
      let g = dy!;
      // Without keepdims the reduced axes are put back as 1s; reducing every axis leaves a scalar, which
      // Expand broadcasts as it is.
      if (!keep && !(Array.isArray(axes) && axes.length === 0)) {
        if (axes === 'dynamic') return c.fail('axes are computed at run time and keepdims=0', 'make the axes a constant');
        const rank = c.rank(x, 'a reduction with keepdims=0');
        g = c.emit('Unsqueeze', [g, c.ints(axes.map((a) => normAxis(a, rank)).sort((a, b) => a - b))]);
      }
      const xShape = c.shapeOf(x);
      g = c.emit('Expand', [g, c.shapeCat(xShape)]);
      if (!mean) return [g, ...rest];
      const yShape = c.shapeOf(dy!);
      if (typeof xShape !== 'string' && typeof yShape !== 'string') {
        const count = xShape.reduce((a, b) => a * b, 1) / yShape.reduce((a, b) => a * b, 1);
        return [c.emit('Mul', [g, c.scalar(1 / count, dy!)]), ...rest];
      }
      const size = (s: typeof xShape) => c.emit('ReduceProd', [c.shapeCat(s)], { keepdims: 0 });
      const count = c.emit('Cast', [c.emit('Div', [size(xShape), size(yShape)])], { to: c.elemType(dy!) ?? 1 });
      return [c.emit('Div', [g, count]), ...rest];
    },
  };
}

export const REDUCE_GRADS: GradTable = {
  ReduceSum: reduceRule(13, false),
  ReduceMean: reduceRule(18, true),
};
