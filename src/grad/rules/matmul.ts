// Gradient rules of Gemm and MatMul (batched, broadcasting, 1-D operands). Pure.

import { attrFloat, attrInt, floatAttr } from '../../onnx/attributes.js';
import type { Dims, GradContext, GradTable } from '../types.js';
import { range, scaleBy } from './util.js';

/** Swaps the last two axes of a value of rank `rank`. */
function swapLast(c: GradContext, v: string, rank: number): string {
  const perm = range(rank);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return c.emit('Transpose', [v], { perm });
}

export const MATMUL_GRADS: GradTable = {
  // Y = alpha * A' B' + beta * C with A' = transA ? A^T : A (B' likewise). Each gradient is one Gemm:
  // dA = alpha * dY B'^T (transposed back when transA), dB = alpha * A'^T dY (likewise), dC = beta * dY.
  Gemm: {
    saves: { inputs: [0, 1] },
    broadcast: [2],
    grad: (n, [dy], c) => {
      const [a, b] = [n.input[0]!, n.input[1]!];
      const transA = attrInt(n, 'transA', 0);
      const transB = attrInt(n, 'transB', 0);
      const alpha = floatAttr(attrFloat(n, 'alpha', 1));
      const da = !c.wants(0) ? null
        : transA ? c.emit('Gemm', [b, dy!], { alpha, transA: transB, transB: 1 })
        : c.emit('Gemm', [dy!, b], { alpha, transB: transB ? 0 : 1 });
      const db = !c.wants(1) ? null
        : transB ? c.emit('Gemm', [dy!, a], { alpha, transA: 1, transB: transA })
        : c.emit('Gemm', [a, dy!], { alpha, transA: transA ? 0 : 1 });
      const out = [da, db];
      if (n.input.length > 2) out.push(n.input[2] && c.wants(2) ? scaleBy(c, dy!, attrFloat(n, 'beta', 1), dy!) : null);
      return out;
    },
  },
  // Y = A @ B with numpy batch broadcasting; a 1-D A is [1, K] and a 1-D B is [K, 1] with that axis
  // dropped from Y. dA = dY @ B^T and dB = A^T @ dY at the broadcast batch shape, summed to A's / B's.
  MatMul: {
    saves: { inputs: [0, 1] },
    grad: (n, [dy], c) => {
      const [a, b, y] = [n.input[0]!, n.input[1]!, n.output[0]!];
      const ra = c.rank(a, 'the MatMul gradient');
      const rb = c.rank(b, 'the MatMul gradient');
      const a2 = ra === 1 ? c.emit('Unsqueeze', [a, c.ints([0])]) : a;
      const b2 = rb === 1 ? c.emit('Unsqueeze', [b, c.ints([1])]) : b;
      let dy2 = dy!;
      if (ra === 1 && rb === 1) dy2 = c.emit('Reshape', [dy2, c.ints([1, 1])]);
      else if (ra === 1) dy2 = c.emit('Unsqueeze', [dy2, c.ints([-2])]);
      else if (rb === 1) dy2 = c.emit('Unsqueeze', [dy2, c.ints([-1])]);
      const batchRank = Math.max(ra, rb, 2) - 2;
      const batch = c.dims(y)?.slice(0, batchRank);
      const ad = c.dims(a);
      const bd = c.dims(b);
      const a2d: Dims | undefined = ad && (ra === 1 ? [1, ad[0]] : ad.slice(-2));
      const b2d: Dims | undefined = bd && (rb === 1 ? [bd[0], 1] : bd.slice(-2));
      const da = c.wants(0)
        ? c.sumToShape(c.emit('MatMul', [dy2, swapLast(c, b2, Math.max(rb, 2))]), batch && a2d && [...batch, ...a2d], a)
        : null;
      let db: string | null = null;
      if (c.wants(1)) {
        let g = c.emit('MatMul', [swapLast(c, a2, Math.max(ra, 2)), dy2]);
        let gd: Dims | undefined = batch && b2d && [...batch, ...b2d];
        if (rb === 1) {
          g = c.emit('Squeeze', [g, c.ints([-1])]);
          gd = gd?.slice(0, -1);
        }
        db = c.sumToShape(g, gd, b);
      }
      return [da, db];
    },
  },
};
