// QDQ rules for value-preserving ops (reshapes, transposes, gathers, Split, MaxPool, Resize): the outputs
// share the input's scale / zero point, so no requantization happens; ArgMax reads the 8-bit tensor; Pad
// stays float. Pure; merged in rules/qdq/index.ts.

import { keepFloat, singleOutput, type QdqRule, type QdqRuleTable } from './types.js';

/**
 * ORT drops DQ -> op -> Q when Q and DQ carry the same constant scale and zero point (DropQDQNodes rules),
 * so the op runs on the 8-bit tensor directly. lowbit applies these only when the input is already
 * quantized: placing a pair in front of a float input would buy nothing. Gather / GatherElements share
 * the data input (slot 0; the indices are integers). Split: ORT's SplitSelector wants every output's Q with
 * the input's parameters, then runs Split on the 8-bit tensor. ArgMax: ORT drops the DQ in front of it
 * (DropDQNodes) and its int64 output needs no Q. Pad: no drop rule in ORT 1.30 (measured: DQ -> Pad -> Q
 * stays), so it stays float and its readers quantize its output.
 */
const share: QdqRule = { activations: [], output: { kind: 'share', input: 0 }, fusesTo: '(8-bit passthrough)' };

export const LAYOUT_RULES: QdqRuleTable = {
  Reshape: share,
  Transpose: share,
  Flatten: share,
  Squeeze: share,
  Unsqueeze: share,
  Slice: share,
  Resize: share,
  Gather: share,
  GatherElements: share,
  Split: share,
  ArgMax: { activations: [], output: { kind: 'none', input: 0 }, fusesTo: 'ArgMax on the 8-bit tensor (DequantizeLinear dropped)' },
  Pad: keepFloat('ONNX Runtime has no rule to drop Q/DQ around Pad: a pair would run the float op with extra work'),
  MaxPool: {
    ...share,
    // int8/uint8 MaxPool exists from opset 12; the indices output has no quantized form. ORT runs it as
    // NhwcMaxPool between integer convs; elsewhere its NCHW uint8 MaxPool is slow (speed.ts maxPoolHead).
    check: (n, ctx) => (ctx.opset < 12 ? `MaxPool on 8-bit tensors needs opset 12 (model has ${ctx.opset})` : singleOutput(n)),
  },
};
