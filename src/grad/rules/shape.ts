// Gradient rules of data-movement ops: reshapes, Transpose, Concat/Split, Slice, Gather, Expand, Cast,
// Identity, Dropout. Shape, axes and index inputs get no gradient. Pure.

import { type AttrValue, attrInt, attrInts } from '../../onnx/attributes.js';
import type { NodeProto } from '../../onnx/proto.js';
import type { GradContext, GradTable, ShapeLike } from '../types.js';
import { castLike, passthrough, reshapeBack, unary, zerosLike } from './util.js';

/** Dims [axis, axis+1) of `v` for a possibly negative axis. */
const dimAt = (c: GradContext, v: string, axis: number): ShapeLike => c.shapeOf(v, axis, axis === -1 ? undefined : axis + 1);

/**
 * Routes `dy` back to the positions of `x` that a gather-like op picked: the op is replayed on a tensor
 * of flat positions (0..size-1 in x's shape), and dy is scattered to the positions it yields (added up
 * when `add`, for ops that may pick a position twice).
 */
function scatterBack(c: GradContext, x: string, dy: string, pick: (positions: string) => string, add: boolean): string {
  const shape = c.shapeCat(c.shapeOf(x));
  const size = c.emit('ReduceProd', [shape], { keepdims: 1 });
  const scalarSize = c.emit('Reshape', [size, c.ints([])]);
  const positions = c.emit('Reshape', [c.emit('Range', [c.ints([0], []), scalarSize, c.ints([1], [])]), shape]);
  const flat = c.ints([-1]);
  const zeros = c.emit('Expand', [c.scalar(0, dy), size]);
  const picked = c.emit('Reshape', [pick(positions), flat]);
  const attrs: Record<string, AttrValue> = add ? { axis: 0, reduction: 'add' } : { axis: 0 };
  return c.emit('Reshape', [c.emit('ScatterElements', [zeros, picked, c.emit('Reshape', [dy, flat])], attrs), shape]);
}

/** The node's optional inputs from `from` on, with absent ones kept as ''. */
const inputsFrom = (n: NodeProto, from: number): string[] => n.input.slice(from);

export const SHAPE_GRADS: GradTable = {
  Identity: passthrough,
  Reshape: reshapeBack,
  Flatten: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,
  // Expand broadcasts like numpy: the engine sums dY back to X's shape.
  Expand: { saves: {}, broadcast: [0], grad: (n, [dy]) => [dy!, null] },
  // Float-to-float casts pass the gradient back in X's type; casts from integers carry none.
  Cast: unary({}, (dy, n, c) => castLike(c, dy, n.input[0]!)),
  // Inference Dropout is the identity. With training_mode a constant true, dX = dY * mask / (1 - ratio).
  Dropout: {
    saves: { outputs: [1] },
    grad: (n, [dy], c) => {
      const training = (n.input[2] ? c.constantValues(n.input[2]) : [0]) ?? c.fail('training_mode is not a constant');
      if (!training[0]) return passthrough.grad(n, [dy], c);
      if (!n.output[1]) c.fail('a training Dropout needs its mask output for the gradient', 'add the mask output to the Dropout node');
      const ratio = (n.input[1] ? c.constantValues(n.input[1])?.[0] : 0.5) ?? c.fail('ratio is not a constant');
      const kept = c.emit('Mul', [dy!, castLike(c, n.output[1]!, dy!)]);
      return n.input.map((_, i) => (i === 0 ? c.emit('Mul', [kept, c.scalar(1 / (1 - ratio), dy!)]) : null));
    },
  },
  // The inverse permutation (the default reversal is its own inverse).
  Transpose: unary({}, (dy, n, c) => {
    const perm = attrInts(n, 'perm');
    if (!perm) return c.emit('Transpose', [dy]);
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return c.emit('Transpose', [dy], { perm: inv });
  }),
  // dY is split back into the inputs' extents along the axis.
  Concat: {
    saves: {},
    grad: (n, [dy], c) => {
      if (n.input.length === 1) return [dy!];
      const axis = attrInt(n, 'axis', 0);
      const sizes = c.shapeCat(...n.input.map((v) => dimAt(c, v, axis)));
      return c.emitMulti('Split', [dy!, sizes], { axis }, n.input.length);
    },
  },
  // dX = Concat of the outputs' gradients along the axis (zeros for outputs with none).
  Split: {
    saves: {},
    grad: (n, dys, c) => {
      const like = dys.find((g) => g !== undefined)!;
      const parts = n.output.map((o, k) => dys[k] ?? zerosLike(c, o, like));
      return [c.emit('Concat', parts, { axis: attrInt(n, 'axis', 0) }), ...n.input.slice(1).map(() => null)];
    },
  },
  // Any starts/ends/axes/steps (negative steps included): positions picked by the same Slice.
  Slice: {
    saves: { inputs: [1, 2, 3, 4] },
    grad: (n, [dy], c) => [
      scatterBack(c, n.input[0]!, dy!, (pos) => c.emit('Slice', [pos, ...inputsFrom(n, 1)]), false),
      ...n.input.slice(1).map(() => null),
    ],
  },
  // Indices may repeat, so picked positions are summed (ScatterElements reduction=add, opset 16+).
  Gather: {
    saves: { inputs: [1] },
    grad: (n, [dy], c) => {
      if (c.opset < 16) c.fail('the gradient of Gather needs ScatterElements with reduction=add (opset 16+)', 'raise the model opset to 16 or newer');
      const pick = (pos: string) => c.emit('Gather', [pos, n.input[1]!], { axis: attrInt(n, 'axis', 0) });
      return [scatterBack(c, n.input[0]!, dy!, pick, true), null];
    },
  },
};
