// Scale / zero-point computation from a float range (per tensor, per axis, per block), ORT's math.
// Pure; imported by calib/, passes/ and above.

import { LowbitError } from '../errors.js';
import {
  allocQuantArray,
  quantRange,
  quantType,
  type QuantArray,
  type QuantTypeInfo,
  type QuantTypeName,
  type RangeOptions,
} from './dtypes.js';
import { roundHalfEven, splitAtAxis } from './util.js';

/** Options for computing quantization parameters. */
export interface QParamsOptions extends RangeOptions {
  /** Symmetric: the range becomes [-absmax, absmax] and the zero point the middle of the integer range. */
  symmetric?: boolean;
}

/** Per-tensor quantization parameters. `scale` is a float32 value (ONNX stores float32 scales). */
export interface QParams {
  scale: number;
  zeroPoint: number;
}

/** Per-axis or per-block quantization parameters; `zeroPoint` has the quantized type's array type. */
export interface QParamsArray {
  scale: Float32Array;
  zeroPoint: QuantArray;
}

/** float32's smallest normal: ORT treats scales below it as a zero range. */
const FLOAT32_TINY = 2 ** -126;

/**
 * Computes scale and zero point so that [rmin, rmax] maps onto the type's integer range
 * (onnxruntime.quantization.quant_utils.compute_scale_zp, reimplemented):
 * - the range is first extended to include 0 (so 0 is always exactly representable) and rounded to float32;
 * - symmetric: range [-absmax, absmax], scale = 2*absmax/(qmax-qmin), zeroPoint = roundHalfEven((qmin+qmax)/2)
 *   (int8 -> 0, uint8 -> 128, uint16 -> 32768, uint4 -> 8);
 * - asymmetric: scale = (rmax-rmin)/(qmax-qmin), zeroPoint = roundHalfEven(qmin - rmin/scale), clamped;
 * - a zero range (all-zero tensor; scale below float32's smallest normal) gives scale = 1: any scale represents
 *   the only value, 0, exactly. zeroPoint is then 0 (asymmetric, as ORT) or the symmetric middle (so per-channel
 *   symmetric zero points stay equal across channels; ORT uses 0 here).
 * The scale is computed in float64 then rounded to float32; the zero point uses the float64 scale, as ORT does.
 * @throws LowbitError NON_FINITE when rmin or rmax is NaN or infinite; BAD_OPTION for rmin > rmax or a bad type.
 */
export function computeQParams(
  rmin: number,
  rmax: number,
  qtype: QuantTypeName | number | QuantTypeInfo,
  opts: QParamsOptions = {},
): QParams {
  if (!Number.isFinite(rmin) || !Number.isFinite(rmax)) {
    throw new LowbitError(
      'NON_FINITE',
      `cannot quantize the range [${rmin}, ${rmax}]: it is not finite`,
      'the tensor holds NaN or Infinity; check the model or calibration data',
    );
  }
  if (rmin > rmax) {
    throw new LowbitError('BAD_OPTION', `range minimum ${rmin} is above its maximum ${rmax}`, 'pass rmin <= rmax');
  }
  const info = quantType(qtype);
  const { qmin, qmax } = quantRange(info, opts);
  return qparamsFor(Math.fround(rmin), Math.fround(rmax), qmin, qmax, opts.symmetric === true);
}

/** The core of computeQParams on float32 inputs and a resolved integer range (no validation). */
function qparamsFor(rmin: number, rmax: number, qmin: number, qmax: number, symmetric: boolean): QParams {
  let lo = rmin < 0 ? rmin : 0;
  let hi = rmax > 0 ? rmax : 0;
  if (symmetric) {
    const absmax = Math.max(-lo, hi);
    lo = -absmax;
    hi = absmax;
  }
  // ORT subtracts in float32; fall back to float64 where float32 would overflow.
  let dr = Math.fround(hi - lo);
  if (!Number.isFinite(dr)) dr = hi - lo;
  const scale64 = dr / (qmax - qmin);
  const middle = roundHalfEven((qmin + qmax) / 2);
  if (scale64 < FLOAT32_TINY) {
    return { scale: 1, zeroPoint: symmetric ? middle : Math.min(qmax, Math.max(qmin, 0)) };
  }
  let zeroPoint = symmetric ? middle : roundHalfEven(qmin - lo / scale64);
  zeroPoint = Math.min(qmax, Math.max(qmin, zeroPoint)) + 0; // + 0 turns -0 into 0
  return { scale: Math.fround(scale64), zeroPoint };
}

function nonFinite(index: number, value: number): LowbitError {
  return new LowbitError(
    'NON_FINITE',
    `element ${index} of the tensor is ${value}; quantization needs finite values`,
    'check the model weights or the calibration data for NaN/Infinity',
  );
}

/**
 * Minimum and maximum of the data (0 for an empty array).
 * @throws LowbitError NON_FINITE when an element is NaN or infinite.
 */
export function minMax(data: Float32Array): { min: number; max: number } {
  const n = data.length;
  if (n === 0) return { min: 0, max: 0 };
  let mn = data[0]!;
  let mx = mn;
  if (mn !== mn) throw nonFinite(0, mn);
  for (let i = 1; i < n; i++) {
    const v = data[i]!;
    // mn <= mx always, so one comparison settles most elements; NaN fails both and is caught in the rare branch
    if (v > mx) mx = v;
    else if (!(v >= mn)) {
      if (v !== v) throw nonFinite(i, v);
      mn = v;
    }
  }
  if (!Number.isFinite(mn) || !Number.isFinite(mx)) throw firstNonFinite(data);
  return { min: mn, max: mx };
}

function firstNonFinite(data: Float32Array): LowbitError {
  let i = 0;
  while (i < data.length && Number.isFinite(data[i]!)) i++;
  return nonFinite(i, data[i]!);
}

/** Infinite elements end up as a range end: report the first one. (NaN is caught while scanning.) */
function assertFiniteRanges(data: Float32Array, mins: Float64Array, maxs: Float64Array): void {
  for (let k = 0; k < mins.length; k++) {
    if (!Number.isFinite(mins[k]!) || !Number.isFinite(maxs[k]!)) throw firstNonFinite(data);
  }
}

/**
 * Per-tensor parameters computed from the data's min/max (the range always includes 0).
 * @throws LowbitError NON_FINITE when the data holds NaN or Infinity.
 */
export function computeQParamsFromData(
  data: Float32Array,
  qtype: QuantTypeName | number | QuantTypeInfo,
  opts: QParamsOptions = {},
): QParams & { rmin: number; rmax: number } {
  const { min, max } = minMax(data);
  return { ...computeQParams(min, max, qtype, opts), rmin: min, rmax: max };
}

/**
 * Per-channel parameters: one scale / zero point per index along `axis` (negative counts from the end),
 * each from the min/max of that slice (ORT's per-channel weight quantization).
 * @throws LowbitError NON_FINITE for NaN/Infinity in the data; BAD_OPTION / DATA_MISMATCH for a bad axis or shape.
 */
export function computeQParamsPerAxis(
  data: Float32Array,
  dims: readonly number[],
  axis: number,
  qtype: QuantTypeName | number | QuantTypeInfo,
  opts: QParamsOptions = {},
): QParamsArray {
  const info = quantType(qtype);
  const { outer, dim, inner } = splitAtAxis(dims, axis, data.length);
  const mins = new Float64Array(dim); // starts at 0: the range includes 0 anyway
  const maxs = new Float64Array(dim);
  let p = 0;
  for (let o = 0; o < outer; o++) {
    for (let d = 0; d < dim; d++) {
      let mn = mins[d]!;
      let mx = maxs[d]!;
      const end = p + inner;
      for (; p < end; p++) {
        const v = data[p]!;
        if (v > mx) mx = v;
        else if (!(v >= mn)) {
          if (v !== v) throw nonFinite(p, v);
          mn = v;
        }
      }
      mins[d] = mn;
      maxs[d] = mx;
    }
  }
  assertFiniteRanges(data, mins, maxs);
  return fromRanges(mins, maxs, info, opts);
}

/**
 * Blocked parameters (ONNX opset 21 blocked quantization): along `axis`, each run of `blockSize` elements
 * shares one scale / zero point; the parameter tensor has x's shape with dims[axis] -> ceil(dims[axis]/blockSize).
 * Returns the parameter shape as `dims`.
 * @throws LowbitError NON_FINITE for NaN/Infinity; BAD_OPTION for a bad axis, shape or blockSize.
 */
export function computeQParamsBlocked(
  data: Float32Array,
  dims: readonly number[],
  axis: number,
  blockSize: number,
  qtype: QuantTypeName | number | QuantTypeInfo,
  opts: QParamsOptions = {},
): QParamsArray & { dims: number[] } {
  const info = quantType(qtype);
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new LowbitError('BAD_OPTION', `blockSize ${blockSize} is not a positive integer`, 'use e.g. 32 or 128');
  }
  const s = splitAtAxis(dims, axis, data.length);
  const nb = Math.ceil(s.dim / blockSize);
  const count = s.outer * nb * s.inner;
  const mins = new Float64Array(count);
  const maxs = new Float64Array(count);
  let p = 0;
  for (let o = 0; o < s.outer; o++) {
    for (let d = 0; d < s.dim; d++) {
      const q = (o * nb + Math.floor(d / blockSize)) * s.inner;
      for (let i = 0; i < s.inner; i++, p++) {
        const v = data[p]!;
        if (v > maxs[q + i]!) maxs[q + i] = v;
        else if (!(v >= mins[q + i]!)) {
          if (v !== v) throw nonFinite(p, v);
          mins[q + i] = v;
        }
      }
    }
  }
  assertFiniteRanges(data, mins, maxs);
  const out = fromRanges(mins, maxs, info, opts);
  const pdims = dims.slice();
  pdims[s.axis] = nb;
  return { ...out, dims: pdims };
}

function fromRanges(mins: Float64Array, maxs: Float64Array, info: QuantTypeInfo, opts: QParamsOptions): QParamsArray {
  const { qmin, qmax } = quantRange(info, opts);
  const symmetric = opts.symmetric === true;
  const n = mins.length;
  const scale = new Float32Array(n);
  const zeroPoint = allocQuantArray(info, n);
  for (let k = 0; k < n; k++) {
    const r = qparamsFor(mins[k]!, maxs[k]!, qmin, qmax, symmetric);
    scale[k] = r.scale;
    zeroPoint[k] = r.zeroPoint;
  }
  return { scale, zeroPoint };
}
