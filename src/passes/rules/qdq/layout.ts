// QDQ rules for value-preserving ops (reshapes, transposes, MaxPool, Resize): the output shares the
// input's scale / zero point, so no requantization happens. Pure; merged in rules/qdq/index.ts.

import { singleOutput, type QdqRule, type QdqRuleTable } from './types.js';

/**
 * ORT drops DQ -> op -> Q when Q and DQ carry the same constant scale and zero point (DropQDQNodes rules),
 * so the op runs on the 8-bit tensor directly. lowbit applies these only when the input is already
 * quantized: placing a pair in front of a float input would buy nothing.
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
  MaxPool: {
    ...share,
    // int8/uint8 MaxPool exists from opset 12; the indices output has no quantized form. ORT runs it as
    // NhwcMaxPool between integer convs; elsewhere its NCHW uint8 MaxPool is slow (speed.ts maxPoolHead).
    check: (n, ctx) => (ctx.opset < 12 ? `MaxPool on 8-bit tensors needs opset 12 (model has ${ctx.opset})` : singleOutput(n)),
  },
};
