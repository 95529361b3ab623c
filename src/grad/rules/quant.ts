// Gradient rules of fake quantization: a QuantizeLinear -> DequantizeLinear pair differentiates op by op.
// Pure.
//
// QuantizeLinear's integer output "carries" a float gradient. Per op, with q = clamp(round(x/s) + zp):
//   Q:  dx = dq / s inside the clipping range [s(qmin - zp), s(qmax - zp)], 0 outside (straight-through
//       estimator for round, the true zero slope of the clamp); ds += -dq * x / s^2 inside.
//   DQ: y = (q - zp) * s, so dq = dy * s and ds += dy * (q - zp).
// Composed, dx = dy inside / 0 outside (STE), and for a scale shared by the pair (the QDQ format)
// ds = dy * (round(x/s) - x/s) inside and dy * (qmin - zp) or dy * (qmax - zp) outside: the LSQ gradient
// (Esser et al. 2019, eq. 3). [qmin, qmax] is the full range of the integer type (the zero point's type, or
// output_dtype, else uint8): int8/uint8/int16/uint16, and int4 [-8, 7] / uint4 [0, 15] at opset 21.
// Zero points are integers and get no gradient; blocked quantization (block_size, opset 21) is not supported.

import { attrInt } from '../../onnx/attributes.js';
import type { NodeProto } from '../../onnx/proto.js';
import { quantType } from '../../quant/dtypes.js';
import type { GradContext, GradTable } from '../types.js';
import { castLike, maskOr0, range, reduceSum, scaleBy } from './util.js';

interface QParams {
  /** Scale, reshaped to broadcast against x when per-axis. */
  s: string;
  /** Zero point as a float broadcasting against x, or undefined when absent (0). */
  zp: string | undefined;
  qmin: number;
  qmax: number;
  /** Sums a gradient of x's shape to the scale's shape, with LSQ's gradient scale when asked. */
  toScale: (g: string) => string;
}

/**
 * Scale, zero point and integer range of a Q or DQ node; `x` is its float (Q) or integer (DQ) data input,
 * `intValue` the integer tensor whose type gives the range.
 */
function qparams(n: NodeProto, c: GradContext, x: string, intValue: string, floatLike: string): QParams {
  if (attrInt(n, 'block_size', 0) > 0) c.fail('blocked quantization (block_size) is not supported');
  let info;
  try {
    info = quantType(c.elemType(intValue) ?? 0);
  } catch {
    return c.fail(`'${intValue}' is not an integer quantized type`, 'fake quantization trains int4/int8/int16/uint* types');
  }
  const scale = n.input[1]!;
  const sd = c.dims(scale);
  const perAxis = !(sd && (sd.length === 0 || (sd.length === 1 && sd[0] === 1)));
  const xd = c.dims(x);
  let axis = 0;
  let column = (v: string) => v;
  if (perAxis) {
    const rank = c.rank(x, 'per-axis quantization');
    axis = attrInt(n, 'axis', 1);
    if (axis < 0) axis += rank;
    const shape = c.ints([-1, ...new Array(rank - axis - 1).fill(1)]);
    column = (v) => c.emit('Reshape', [v, shape]);
  }
  const zp = n.input[2] ? column(castLike(c, n.input[2], floatLike)) : undefined;
  // LSQ: N is the number of elements one scale value covers (static dims; symbolic ones like the batch skipped).
  const covered = (xd ?? []).reduce<number>((acc, d, i) => (typeof d === 'number' && !(perAxis && i === axis) ? acc * d : acc), 1);
  const lsq = c.options.lsqGradScale ? 1 / Math.sqrt(covered * info.qmax) : 1;
  const toScale = (g: string): string => {
    const summed = perAxis ? reduceSum(c, g, range(xd!.length).filter((i) => i !== axis), false) : c.sumToShape(g, xd, scale);
    return scaleBy(c, summed, lsq, floatLike);
  };
  return { s: column(scale), zp, qmin: info.qmin, qmax: info.qmax, toScale };
}

export const QUANT_GRADS: GradTable = {
  QuantizeLinear: {
    saves: { inputs: [0, 1, 2] },
    carries: [0],
    grad: (n, [dq], c) => {
      const x = n.input[0]!;
      const p = qparams(n, c, x, n.output[0]!, x);
      const bound = (q: number) => c.emit('Mul', [p.zp ? c.emit('Sub', [c.scalar(q, x), p.zp]) : c.scalar(q, x), p.s]);
      const inside = c.emit('And', [c.emit('GreaterOrEqual', [x, bound(p.qmin)]), c.emit('LessOrEqual', [x, bound(p.qmax)])]);
      const dx = c.wants(0) ? maskOr0(c, inside, c.emit('Div', [dq!, p.s]), x) : null;
      let ds: string | null = null;
      if (c.wants(1)) {
        const xOverS2 = c.emit('Div', [c.emit('Div', [x, p.s]), p.s]);
        ds = p.toScale(maskOr0(c, inside, c.emit('Neg', [c.emit('Mul', [dq!, xOverS2])]), x));
      }
      return n.input.map((_, i) => (i === 0 ? dx : i === 1 ? ds : null));
    },
  },
  DequantizeLinear: {
    saves: { inputs: [0, 1, 2] },
    grad: (n, [dy], c) => {
      const q = n.input[0]!;
      const p = qparams(n, c, q, q, dy!);
      const dq = c.wants(0) ? c.emit('Mul', [dy!, p.s]) : null;
      let ds: string | null = null;
      if (c.wants(1)) {
        const qf = castLike(c, q, dy!);
        ds = p.toScale(c.emit('Mul', [dy!, p.zp ? c.emit('Sub', [qf, p.zp]) : qf]));
      }
      return n.input.map((_, i) => (i === 0 ? dq : i === 1 ? ds : null));
    },
  },
};
