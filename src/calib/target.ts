// The integer grid calibrated ranges are chosen for: the histogram methods (percentile, entropy, MSE)
// weigh clipping against rounding on it. Pure.

import { quantRange, quantType, type QuantTypeName } from '../quant/dtypes.js';

/** The integer type and mode activation ranges will be quantized with (as computeQParams sees them). */
export interface QuantTarget {
  readonly type: QuantTypeName;
  /** Integer range used (int8 symmetric is narrowed to [-127, 127], as computeQParams does). */
  readonly qmin: number;
  readonly qmax: number;
  /** Symmetric: the range is [-T, T] around 0; asymmetric: any [lo, hi] that includes 0. */
  readonly symmetric: boolean;
}

/**
 * The grid of `type` (default uint8, lowbit's activation type) in the given mode.
 * @throws LowbitError BAD_OPTION for an unknown type.
 */
export function quantTarget(type: QuantTypeName = 'uint8', symmetric = false): QuantTarget {
  const info = quantType(type);
  const { qmin, qmax } = quantRange(info, { symmetric });
  return Object.freeze({ type: info.name, qmin, qmax, symmetric });
}
