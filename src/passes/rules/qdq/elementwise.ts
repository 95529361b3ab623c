// QDQ rules for ops that requantize their output with their own range (Add, Mul, Concat, Where, pools,
// Sigmoid, LeakyRelu) or a fixed one (Softmax); normalizations, which ORT cannot run quantized, stay float.
// Pure; merged into the table in rules/qdq/index.ts.

import { readFloatConstant } from '../../quant-weight.js';
import { keepFloat, singleOutput, type QdqRuleTable, type RuleContext } from './types.js';
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

/** Largest constant Where operand quantized with the output: beyond it is a mask fill (-1e9), not data. */
const WHERE_CONSTANT_LIMIT = 1e4;

/** Where: a constant value operand that would blow up the output range (a mask fill such as -inf or -1e9). */
function whereCheck(n: NodeProto, ctx: RuleContext): string | undefined {
  for (const slot of [1, 2]) {
    const name = n.input[slot];
    if (!name || !ctx.graph.initializers.has(name) || ctx.graph.inputs.some((v) => v.name === name)) continue;
    const k = readFloatConstant(ctx.graph, name);
    if (k.data.some((v) => !Number.isFinite(v) || Math.abs(v) >= WHERE_CONSTANT_LIMIT)) {
      return `its constant operand '${name}' holds a fill value of magnitude >= ${WHERE_CONSTANT_LIMIT} (a mask): 8 bits cannot hold it with the data`;
    }
  }
  return undefined;
}

/**
 * ORT fuses DQ(inputs...) -> op -> Q into: Add/Mul -> QLinearAdd/QLinearMul (both inputs and the output
 * of one 8-bit type; a constant operand is quantized like an activation), Concat -> QLinearConcat
 * (every input a DQ), Where -> QLinearWhere (DQ on both value inputs, one type with the output; the bool
 * condition stays as it is), AveragePool / GlobalAveragePool / Sigmoid / LeakyRelu / Softmax -> the com.microsoft
 * QLinear* unary kernels. Softmax's output lies in [0, 1] whatever the data, so it needs no calibration.
 * A Mul by a positive scalar constant on a quantized tensor is not a kernel at all: the quantized values
 * stay, only the scale changes (measured on PP-OCR cls: removes 18 of 45 QLinearMul).
 * InstanceNormalization and LayerNormalization: ORT's quantizer puts pairs around them, but ORT 1.30 has no
 * selector for them (measured: DQ -> op -> Q stays), so they stay float here.
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
  Where: { activations: [1, 2], output: { kind: 'own' }, check: whereCheck, fusesTo: 'QLinearWhere' },
  InstanceNormalization: keepFloat('ONNX Runtime has no integer InstanceNormalization: a Q/DQ pair would run the float op with extra work'),
  LayerNormalization: keepFloat('ONNX Runtime has no integer LayerNormalization: a Q/DQ pair would run the float op with extra work'),
};
