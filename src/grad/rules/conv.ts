// Gradient rule of Conv (1-D/2-D/3-D, groups incl. depthwise, strides, pads, dilations), and the sliding-
// window helpers the pooling rules share. Pure.
//
// dX is a ConvTranspose of dY with the same weight; dW is a Conv whose "batch" is the input channels:
// dW[m, c, k] = sum over n and output positions o of dY[n, m, o] * Xpad[n, c, o*stride + k*dilation], i.e. a
// convolution of X^T (channels as batch) with dY^T as the kernel, strides and dilations swapped.

import { attrInt, attrInts, attrString } from '../../onnx/attributes.js';
import type { NodeProto } from '../../onnx/proto.js';
import type { GradContext, GradTable } from '../types.js';
import { range, reduceSum } from './util.js';

/** Sliding-window settings with auto_pad resolved to explicit pads. */
export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** [begin..., end...] as ONNX orders them. */
  pads: number[];
  /** Input spatial dims when all are known statically. */
  spatial: number[] | undefined;
}

/**
 * Reads kernel, strides, dilations and pads of a Conv/pool node; SAME_* auto_pad is resolved from the
 * static input dims.
 * @throws LowbitError (via ctx.fail) for SAME_* padding when the input's spatial dims are not static
 */
export function windowOf(n: NodeProto, c: GradContext, kernel: number[]): Window {
  const sp = kernel.length;
  const strides = attrInts(n, 'strides', new Array(sp).fill(1));
  const dilations = attrInts(n, 'dilations', new Array(sp).fill(1));
  const xd = c.dims(n.input[0]!);
  const sd = xd?.slice(2);
  const spatial = sd && sd.length === sp && sd.every((d) => typeof d === 'number') ? (sd as number[]) : undefined;
  const autoPad = attrString(n, 'auto_pad', 'NOTSET');
  let pads = attrInts(n, 'pads', new Array(2 * sp).fill(0));
  if (autoPad === 'VALID') pads = new Array(2 * sp).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    if (!spatial) c.fail(`auto_pad ${autoPad} needs static spatial input dims`, 'give the model fixed spatial input dims, or export it with explicit pads');
    pads = new Array(2 * sp).fill(0);
    kernel.forEach((k, i) => {
      const eff = (k - 1) * dilations[i]! + 1;
      const total = Math.max(0, (Math.ceil(spatial[i]! / strides[i]!) - 1) * strides[i]! + eff - spatial[i]!);
      const small = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
      pads[i + sp] = total - pads[i]!;
    });
  }
  return { kernel, strides, dilations, pads, spatial };
}

/**
 * The transpose of a sliding window: spreads `dy` back over the input positions with ConvTranspose and
 * weight `w`. With static input dims the output_padding makes the size exact; otherwise the largest
 * output_padding (stride - 1) covers every input size and a Slice cuts the result to the input's dims.
 */
export function windowTranspose(c: GradContext, dy: string, w: string, win: Window, group: number, x: string): string {
  const { kernel, strides, dilations, pads, spatial } = win;
  const sp = kernel.length;
  const outPad = kernel.map((k, i) => {
    if (!spatial) return strides[i]! - 1;
    const eff = (k - 1) * dilations[i]! + 1;
    return (spatial[i]! + pads[i]! + pads[i + sp]! - eff) % strides[i]!;
  });
  const dx = c.emit('ConvTranspose', [dy, w], { group, strides, dilations, pads, kernel_shape: kernel, output_padding: outPad });
  if (spatial || outPad.every((p) => p === 0)) return dx;
  const axes = range(sp + 2, 2);
  return c.emit('Slice', [dx, c.ints(axes.map(() => 0)), c.shapeCat(c.shapeOf(x, 2)), c.ints(axes)]);
}

/** Static kernel dims of a Conv: the kernel_shape attribute or the weight's dims. */
function convKernel(n: NodeProto, c: GradContext): number[] {
  const fromAttr = attrInts(n, 'kernel_shape');
  if (fromAttr) return fromAttr;
  const wd = c.dims(n.input[1]!)?.slice(2);
  if (!wd || !wd.every((d) => typeof d === 'number')) return c.fail('the kernel size is not known statically', 'give Conv a kernel_shape attribute or a constant weight');
  return wd as number[];
}

/** dW of a Conv: one Conv over channel-major X and dY (grouped as the forward conv), cut to the kernel size. */
function convWeightGrad(n: NodeProto, c: GradContext, dy: string, win: Window, group: number): string {
  const [x, w] = [n.input[0]!, n.input[1]!];
  const sp = win.kernel.length;
  const spatialAxes = range(sp + 2, 2);
  const swap01 = [1, 0, ...spatialAxes];
  let xT: string;
  let dyT: string;
  if (group === 1) {
    xT = c.emit('Transpose', [x], { perm: swap01 });
    dyT = c.emit('Transpose', [dy], { perm: swap01 });
  } else {
    const wd = c.dims(w);
    const [m, cg] = [wd?.[0], wd?.[1]];
    if (typeof m !== 'number' || typeof cg !== 'number') return c.fail('a grouped Conv needs static weight dims for its weight gradient');
    const og = m / group;
    // X [N, G*Cg, S] -> [Cg, G*N, S]; dY [N, G*Og, S'] -> [G*Og, N, S'] (group g's channels stay together).
    const x4 = c.emit('Transpose', [c.emit('Reshape', [x, c.ints([0, group, cg, -1])])], { perm: [2, 1, 0, 3] });
    xT = c.emit('Reshape', [x4, c.shapeCat([cg, -1], c.shapeOf(x, 2))]);
    const dy4 = c.emit('Transpose', [c.emit('Reshape', [dy, c.ints([0, group, og, -1])])], { perm: [1, 2, 0, 3] });
    dyT = c.emit('Reshape', [dy4, c.shapeCat([m, -1], c.shapeOf(dy, 2))]);
  }
  // Output [Cg, M, K'] with K' >= K (positions past the last window are cut).
  const full = c.emit('Conv', [xT, dyT], { group, strides: win.dilations, dilations: win.strides, pads: win.pads });
  const cut = c.emit('Slice', [full, c.ints(spatialAxes.map(() => 0)), c.ints(win.kernel), c.ints(spatialAxes)]);
  return c.emit('Transpose', [cut], { perm: swap01 });
}

export const CONV_GRADS: GradTable = {
  Conv: {
    saves: { inputs: [0, 1] },
    grad: (n, [dy], c) => {
      const kernel = convKernel(n, c);
      const group = attrInt(n, 'group', 1);
      const win = windowOf(n, c, kernel);
      const dx = c.wants(0) ? windowTranspose(c, dy!, n.input[1]!, win, group, n.input[0]!) : null;
      const dw = c.wants(1) ? convWeightGrad(n, c, dy!, win, group) : null;
      const out = [dx, dw];
      if (n.input.length > 2) out.push(n.input[2] && c.wants(2) ? reduceSum(c, dy!, [0, ...range(kernel.length + 2, 2)], false) : null);
      return out;
    },
  },
};
