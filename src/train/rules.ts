// The gradient rules the trainer uses by default: src/grad's GRAD_RULES with one row replaced, Conv, whose
// weight gradient is computed as one Gemm over shifted slices of the input (im2col) instead of a Conv with the
// output gradient as its kernel. On small feature maps the latter runs as MLAS convolutions with huge kernels
// and a 3x3 output, several times slower than the forward pass (bench/train.ts --profile). Pure.
// GRAD_RULES.Conv stays the reference (simple, finite-difference checked in test/ort/grad-check.test.ts); this
// row is the fast path, checked against the reference in test/ort/train-rules.test.ts.

import { GRAD_RULES } from '../grad/rules/index.js';
import { windowOf } from '../grad/rules/conv.js';
import type { GradContext, GradRule, GradTable } from '../grad/types.js';
import { attrInt, attrInts } from '../onnx/attributes.js';
import type { NodeProto } from '../onnx/proto.js';

/** Largest im2col matrix per sample (kernel positions x input channels x output positions) built; above it the default rule runs. */
export const MAX_COLUMNS_PER_SAMPLE = 1 << 18;

/**
 * dW of a 2-D, ungrouped Conv with static spatial input dims as one Gemm: with X^T = Pad(Transpose(X)) of
 * shape [C, N, H', W'] and, per kernel position (i, j), S_ij = X^T[:, :, i*d0 : ... : s0, j*d1 : ... : s1]
 * ([C, N, Ho, Wo]), cols = Concat_ij(S_ij) reshaped to [K*C, N*Ho*Wo] and dY^T = [M, N*Ho*Wo], dW =
 * Gemm(dY^T, cols^T) ([M, K*C]) reordered to [M, C, kh, kw]. Returns undefined when the Conv does not
 * qualify (the caller falls back to the default rule).
 */
function gemmWeightGrad(n: NodeProto, c: GradContext, dy: string): string | undefined {
  const [x, w] = [n.input[0]!, n.input[1]!];
  const wd = c.dims(w);
  if (attrInt(n, 'group', 1) !== 1 || !wd || wd.length !== 4 || !wd.every((d) => typeof d === 'number')) return undefined;
  const [m, ch, kh, kw] = wd as [number, number, number, number];
  const kernel = attrInts(n, 'kernel_shape') ?? [kh, kw];
  const win = windowOf(n, c, kernel);
  if (!win.spatial) return undefined;
  const { strides, dilations, pads } = win;
  const out = win.spatial.map((size, i) => Math.floor((size + pads[i]! + pads[i + 2]! - ((kernel[i]! - 1) * dilations[i]! + 1)) / strides[i]!) + 1);
  if (out.some((o) => o < 1) || kh * kw * ch * out[0]! * out[1]! > MAX_COLUMNS_PER_SAMPLE) return undefined;
  const xt = c.emit('Transpose', [x], { perm: [1, 0, 2, 3] });
  const padded = pads.some((p) => p !== 0) ? c.emit('Pad', [xt, c.ints([0, 0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!])]) : xt;
  const slices: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const starts = [i * dilations[0]!, j * dilations[1]!];
      const ends = [starts[0]! + (out[0]! - 1) * strides[0]! + 1, starts[1]! + (out[1]! - 1) * strides[1]! + 1];
      slices.push(c.emit('Slice', [padded, c.ints(starts), c.ints(ends), c.ints([2, 3]), c.ints(strides)]));
    }
  }
  const stacked = slices.length === 1 ? slices[0]! : c.emit('Concat', slices, { axis: 0 });
  const cols = c.emit('Reshape', [stacked, c.ints([kh * kw * ch, -1])]);
  const dyT = c.emit('Reshape', [c.emit('Transpose', [dy], { perm: [1, 0, 2, 3] }), c.ints([m, -1])]);
  const g = c.emit('Gemm', [dyT, cols], { transB: 1 });
  // [M, (i, j), C] -> [M, C, (i, j)] -> [M, C, kh, kw].
  const perChannel = c.emit('Transpose', [c.emit('Reshape', [g, c.ints([m, kh * kw, ch])])], { perm: [0, 2, 1] });
  return c.emit('Reshape', [perChannel, c.ints([m, ch, kh, kw])]);
}

/** Conv with the Gemm weight gradient where it applies; dX and dB (and every other case) from GRAD_RULES.Conv. */
export const CONV_GEMM_GRAD: GradRule = {
  saves: { inputs: [0, 1] },
  grad: (n, dys, c) => {
    const base = GRAD_RULES.Conv!;
    const dw = c.wants(1) ? gemmWeightGrad(n, c, dys[0]!) : undefined;
    if (dw === undefined) return base.grad(n, dys, c);
    const rest = base.grad(n, dys, { ...c, wants: (slot) => slot !== 1 && c.wants(slot) });
    rest[1] = dw;
    return rest;
  },
};

/** GRAD_RULES with the Conv row replaced by CONV_GEMM_GRAD: the trainer's default; extend it for custom ops. */
export const TRAIN_RULES: GradTable = Object.freeze({ ...GRAD_RULES, Conv: CONV_GEMM_GRAD });
