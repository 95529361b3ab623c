// QDQ rules for Relu and Clip: folded into the producer's output quantization; HardSigmoid stays float.
// Pure; merged in index.ts.

import { readFloatConstant } from '../../quant-weight.js';
import { keepFloat, type QdqRuleTable } from './types.js';

/**
 * Conv -> Relu -> Q(range of the Relu output, zero point = the type's minimum): ORT removes the Relu
 * (a Q whose zero point is qmin already clamps at 0) and fuses Conv + Q into QLinearConv. Clip is removed
 * the same way when its bounds cover the Q range, which needs constant bounds with min <= 0 <= max (the
 * range always contains 0). So the producer's output gets no pair of its own; the activation's output gets
 * the single pair. When the fold does not apply (producer not quantized, several readers, symmetric
 * activations) the activation stays a float op. HardSigmoid has no QLinear kernel in ORT (measured:
 * DQ -> HardSigmoid -> Q stays), so it stays float.
 */
export const ACTIVATION_RULES: QdqRuleTable = {
  Relu: { activations: [], output: { kind: 'fold' }, fusesTo: '(removed into the producer)' },
  Clip: {
    activations: [],
    output: { kind: 'fold' },
    check: (n, ctx) => {
      const bound = (slot: number): number | undefined | 'dynamic' => {
        const name = n.input[slot];
        if (!name) return undefined;
        if (!ctx.graph.initializer(name)) return 'dynamic';
        const c = readFloatConstant(ctx.graph, name);
        return c.data.length === 1 ? c.data[0] : 'dynamic';
      };
      const min = bound(1);
      const max = bound(2);
      if (min === 'dynamic' || max === 'dynamic') return 'its bounds are not constant scalars';
      if ((min ?? 0) > 0 || (max ?? 0) < 0) return 'its bounds exclude 0, so a Q range cannot make it redundant';
      return undefined;
    },
    fusesTo: '(removed into the producer)',
  },
  HardSigmoid: keepFloat('ONNX Runtime has no integer HardSigmoid: a Q/DQ pair would run the float op with extra work'),
};
