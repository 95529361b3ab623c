// QDQ rules for the ops with weights: Conv, MatMul, Gemm (per-channel weights, int32 bias); ConvTranspose
// (kept float: ORT has no integer kernel for it).
// Pure; merged into the table in rules/qdq/index.ts.

import { attrFloat, attrInt } from '../../../onnx/attributes.js';
import { keepFloat, type QdqRuleTable } from './types.js';

/**
 * Conv: DQ(x), DQ(W, per output channel = axis 0), DQ(bias int32) -> Conv -> Q  ==>  QLinearConv.
 * MatMul: DQ(A), DQ(B, per column = axis 1 of a 2-D B) -> MatMul -> Q  ==>  QLinearMatMul
 *   (a non-constant B is quantized as a second activation).
 * Gemm: DQ(A), DQ(B, per output column: axis 0 when transB else 1), DQ(C int32) -> Gemm -> Q  ==>  QGemm;
 *   ORT needs beta = 1 with a quantized C, and lowbit keeps alpha = 1 so the bias scale is a_scale*b_scale
 *   (preprocess folds alpha into B and beta into C where they are constants).
 * These rules quantize every Conv. With the speed policy on (the quantize() pipeline), rules/qdq/speed.ts
 * keeps narrow RGB stems (<= 16 filters, <= 3x3) and slow depthwise convs float; a wide stem stays int8
 * (keeping the 3->64 stem of the bench CNN float cost more overall: 0.68x vs 1.57x).
 * ConvTranspose: ORT's quantizer writes DQ(x), DQ(W, per channel on axis 1: W is [C_in, C_out/group, k...]),
 *   DQ(bias int32) -> ConvTranspose -> Q, but ORT 1.30's CPU provider has no selector for it (QLinearConvTranspose
 *   exists for the XNNPACK provider only): the unit runs as a float ConvTranspose between DequantizeLinear and
 *   QuantizeLinear (measured: ConvTranspose stays, 'extended' and 'all' levels). So it stays float; the weight
 *   spec records ORT's layout for a runtime that fuses it.
 */
export const COMPUTE_RULES: QdqRuleTable = {
  Conv: {
    activations: [0],
    weight: { slot: 1, axis: () => 0 },
    bias: { slot: 2, input: 0 },
    output: { kind: 'own' },
    fusesTo: 'QLinearConv',
  },
  MatMul: {
    activations: [0],
    weight: { slot: 1, axis: (_n, rank) => (rank === 2 ? 1 : undefined) },
    output: { kind: 'own' },
    fusesTo: 'QLinearMatMul',
  },
  Gemm: {
    activations: [0],
    weight: { slot: 1, axis: (n) => (attrInt(n, 'transB', 0) ? 0 : 1) },
    bias: { slot: 2, input: 0 },
    output: { kind: 'own' },
    check: (n) => {
      if (attrFloat(n, 'alpha', 1) !== 1) return 'alpha is not 1 and B is not a constant to fold it into';
      if (n.input[2] && attrFloat(n, 'beta', 1) !== 1) return 'beta is not 1 and C is not a constant to fold it into';
      return undefined;
    },
    fusesTo: 'QGemm',
  },
  ConvTranspose: keepFloat('ONNX Runtime has no integer ConvTranspose on CPU: a Q/DQ pair would run the float op with extra work', {
    activations: [0],
    weight: { slot: 1, axis: () => 1 },
    bias: { slot: 2, input: 0 },
  }),
};
