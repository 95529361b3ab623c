// QDQ rules for ops that requantize their output with their own range (Add, Mul, Concat, pools,
// Sigmoid, LeakyRelu) or a fixed one (Softmax). Pure; merged into the table in rules/qdq/index.ts.

import { readFloatConstant } from '../../quant-weight.js';
import { singleOutput, type QdqRuleTable, type RuleContext } from './types.js';
import type { NodeProto } from '../../../onnx/proto.js';

/** Mul by a positive scalar constant (either side): the factor and the other input. */
function positiveScalarFactor(n: NodeProto, ctx: RuleContext): { input: number; factor: number } | undefined {
  for (const [c, x] of [[1, 0], [0, 1]] as const) {
    const name = n.input[c];
    const t = name ? ctx.graph.initializers.get(name) : undefined;
    if (!t || ctx.graph.inputs.some((v) => v.name === name)) continue;
    const k = readFloatConstant(ctx.graph, name!);
    const f = k.data[0]!;
    // One value (scalar or [1, 1, ...]): a broadcast that keeps x's shape.
    if (k.data.length === 1 && f > 0 && Number.isFinite(f) && k.dims.length <= 1) return { input: x, factor: f };
  }
  return undefined;
}

/**
 * ORT fuses DQ(inputs...) -> op -> Q into: Add/Mul -> QLinearAdd/QLinearMul (both inputs and the output
 * of one 8-bit type; a constant operand is quantized like an activation), Concat -> QLinearConcat
 * (every input a DQ), AveragePool / GlobalAveragePool / Sigmoid / LeakyRelu / Softmax -> the com.microsoft
 * QLinear* unary kernels. Softmax's output lies in [0, 1] whatever the data, so it needs no calibration.
 * A Mul by a positive scalar constant on a quantized tensor is not a kernel at all: the quantized values
 * stay, only the scale changes (measured on PP-OCR cls: removes 18 of 45 QLinearMul).
 */
export const ELEMENTWISE_RULES: QdqRuleTable = {
  Add: { activations: [0, 1], output: { kind: 'own' }, fusesTo: 'QLinearAdd' },
  // Mul by a positive scalar (HardSwish's "/ 6" after preprocess turns Div into Mul) is a free rescale.
  Mul: { activations: [0, 1], output: { kind: 'own' }, rescale: positiveScalarFactor, fusesTo: 'QLinearMul' },
  Concat: { activations: 'all', output: { kind: 'own' }, fusesTo: 'QLinearConcat' },
  AveragePool: { activations: [0], output: { kind: 'own' }, fusesTo: 'QLinearAveragePool' },
  GlobalAveragePool: { activations: [0], output: { kind: 'own' }, fusesTo: 'QLinearGlobalAveragePool' },
  Sigmoid: { activations: [0], output: { kind: 'own' }, fusesTo: 'QLinearSigmoid' },
  LeakyRelu: { activations: [0], output: { kind: 'own' }, fusesTo: 'QLinearLeakyRelu' },
  Softmax: { activations: [0], output: { kind: 'fixed', min: 0, max: 1 }, check: singleOutput, fusesTo: 'QLinearSoftmax' },
};
