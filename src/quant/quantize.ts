// QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, bit-exact with the ONNX spec (opsets 10-21:
// per-tensor, per-axis, blocked) and ORT's CPU kernels. Pure; imported by passes/, runtime/ and above.

import { LowbitError } from '../errors.js';
import { allocQuantArray, quantType, type QuantArray, type QuantTypeInfo, type QuantTypeName } from './dtypes.js';
import { minMax } from './qparams.js';
import {
  dequantizeAxis,
  dequantizeBlocked,
  dequantizeTensor,
  quantizeAxis,
  quantizeBlocked,
  quantizeTensor,
} from './kernels.js';
import { roundHalfEven, splitAtAxis } from './util.js';

/** Elements per Int32Array chunk between the kernels and 8/16-bit arrays (64 KiB: stays in L2). */
const CHUNK = 16384;
const SCRATCH = new Int32Array(CHUNK);

/** Granularity and output options, named after the ONNX attributes. */
export interface QuantizeOptions {
  /**
   * Axis for per-axis (1-D scale with more than one element) and blocked quantization.
   * Negative counts from the end. Default 1, as in ONNX.
   */
  axis?: number;
  /** Shape of x; needed for per-axis and blocked quantization. */
  dims?: readonly number[];
  /** Blocked quantization (opset 21): elements per block along `axis`; 0 or absent = not blocked. */
  blockSize?: number;
  /**
   * ONNX `saturate`: only meaningful for float8 targets. Integer targets always saturate (spec), so it is
   * accepted for parity and ignored.
   */
  saturate?: boolean;
  /** Write into this array (right type for the qtype, x.length long) instead of allocating. */
  out?: QuantArray;
}

/** Options of dequantizeLinear (`saturate` does not apply). */
export interface DequantizeOptions {
  axis?: number;
  dims?: readonly number[];
  blockSize?: number;
  out?: Float32Array;
}

/** A scale argument: a number or a float32 tensor (1 element = per tensor). */
export type ScaleArg = number | Float32Array;
/** A zero-point argument: absent (0), a number (broadcast), or one value per scale. */
export type ZeroPointArg = number | ArrayLike<number> | undefined | null;

/** How parameters index into x: per tensor, per axis (outer, dim, inner), or blocked along the axis. */
interface Layout {
  kind: 'tensor' | 'axis' | 'blocked';
  outer: number;
  dim: number;
  inner: number;
  blockSize: number;
  scale: Float32Array;
  zeroPoint: Float64Array;
}

function resolveLayout(
  op: string,
  n: number,
  scaleArg: ScaleArg,
  zpArg: ZeroPointArg,
  opts: { axis?: number; dims?: readonly number[]; blockSize?: number },
  checkScale: (s: number) => boolean,
): Layout {
  const scale = typeof scaleArg === 'number' ? Float32Array.of(scaleArg) : scaleArg;
  if (!(scale instanceof Float32Array) || scale.length === 0) {
    throw new LowbitError('BAD_OPTION', `${op}: scale must be a number or a non-empty Float32Array`);
  }
  for (let k = 0; k < scale.length; k++) {
    if (!checkScale(scale[k]!)) {
      throw new LowbitError(
        'NON_FINITE',
        `${op}: scale ${scale[k]} (index ${k}) is not usable`,
        'scales must be finite (and non-zero to quantize); recompute the quantization parameters',
      );
    }
  }
  const blockSize = opts.blockSize ?? 0;
  if (!Number.isInteger(blockSize) || blockSize < 0) {
    throw new LowbitError('BAD_OPTION', `${op}: blockSize ${blockSize} is not a non-negative integer`);
  }
  let layout: Layout;
  if (blockSize === 0 && scale.length === 1) {
    layout = { kind: 'tensor', outer: 1, dim: 1, inner: n, blockSize: 0, scale, zeroPoint: new Float64Array(1) };
  } else {
    if (opts.dims === undefined) {
      throw new LowbitError(
        'BAD_OPTION',
        `${op}: ${blockSize > 0 ? 'blocked' : 'per-axis'} quantization needs the shape of x`,
        'pass dims',
      );
    }
    const s = splitAtAxis(opts.dims, opts.axis ?? 1, n);
    const expected = blockSize > 0 ? s.outer * Math.ceil(s.dim / blockSize) * s.inner : s.dim;
    if (scale.length !== expected) {
      throw new LowbitError(
        'DATA_MISMATCH',
        `${op}: scale has ${scale.length} elements, ${blockSize > 0 ? 'blocked' : 'per-axis'} quantization ` +
          `of shape [${opts.dims.join(', ')}] on axis ${s.axis} needs ${expected}`,
        blockSize > 0 ? 'the scale shape is x.shape with dims[axis] -> ceil(dims[axis]/blockSize)' : 'one scale per index along axis',
      );
    }
    layout = {
      kind: blockSize > 0 ? 'blocked' : 'axis',
      ...s,
      blockSize,
      scale,
      zeroPoint: new Float64Array(scale.length),
    };
  }
  fillZeroPoints(op, layout.zeroPoint, zpArg);
  return layout;
}

function fillZeroPoints(op: string, dst: Float64Array, zp: ZeroPointArg): void {
  if (zp === undefined || zp === null) return;
  if (typeof zp === 'number') {
    dst.fill(zp);
  } else {
    if (zp.length !== dst.length) {
      throw new LowbitError(
        'DATA_MISMATCH',
        `${op}: zero point has ${zp.length} elements but scale has ${dst.length}`,
        'scale and zero point must have the same shape',
      );
    }
    for (let k = 0; k < dst.length; k++) dst[k] = zp[k]!;
  }
  for (let k = 0; k < dst.length; k++) {
    if (!Number.isInteger(dst[k])) {
      throw new LowbitError('BAD_OPTION', `${op}: zero point ${dst[k]} is not an integer`);
    }
  }
}

/**
 * ONNX QuantizeLinear: y = saturate(roundHalfEven(x / scale) + zeroPoint), the division in float32.
 * Granularity follows the scale: one element -> per tensor; 1-D -> per axis (needs `dims`, `axis` default 1);
 * `blockSize` > 0 -> blocked along `axis` (scale has x's rank, dims[axis] -> ceil(dims[axis]/blockSize)).
 * NaN inputs give the zero point (ONNX leaves it undefined); ±Infinity saturate.
 * int4/uint4 results stay unpacked, one value per Int8Array/Uint8Array element.
 * @throws LowbitError BAD_OPTION (type, axis, zero point out of range), DATA_MISMATCH (shapes), NON_FINITE (scale).
 */
export function quantizeLinear(
  x: Float32Array,
  scale: ScaleArg,
  zeroPoint: ZeroPointArg,
  qtype: QuantTypeName | number | QuantTypeInfo,
  opts: QuantizeOptions = {},
): QuantArray {
  const info = quantType(qtype);
  const n = x.length;
  const L = resolveLayout('QuantizeLinear', n, scale, zeroPoint, opts, (s) => Number.isFinite(s) && s !== 0);
  for (const z of L.zeroPoint) {
    if (z < info.qmin || z > info.qmax) {
      throw new LowbitError(
        'BAD_OPTION',
        `QuantizeLinear: zero point ${z} is outside the ${info.name} range [${info.qmin}, ${info.qmax}]`,
      );
    }
  }
  const out = opts.out ?? allocQuantArray(info, n);
  if (out.length !== n || out.constructor !== allocQuantArray(info, 0).constructor) {
    throw new LowbitError('BAD_OPTION', `QuantizeLinear: out must be a ${info.name} array of length ${n}`);
  }
  runQuantize(x, out, L, info.qmin, info.qmax);
  return out;
}

/**
 * ONNX DequantizeLinear: y = (x - zeroPoint) * scale in float32 (the difference is exact, the product
 * rounded once to float32, as ORT's kernel does). Granularity as in quantizeLinear.
 * @throws LowbitError BAD_OPTION (axis, zero point), DATA_MISMATCH (shapes), NON_FINITE (scale).
 */
export function dequantizeLinear(
  x: QuantArray,
  scale: ScaleArg,
  zeroPoint?: ZeroPointArg,
  opts: DequantizeOptions = {},
): Float32Array {
  const n = x.length;
  const L = resolveLayout('DequantizeLinear', n, scale, zeroPoint, opts, Number.isFinite);
  const out = opts.out ?? new Float32Array(n);
  if (!(out instanceof Float32Array) || out.length !== n) {
    throw new LowbitError('BAD_OPTION', `DequantizeLinear: out must be a Float32Array of length ${n}`);
  }
  if (x instanceof Int32Array) {
    runDequantize(x, 0, 0, n, out, L);
  } else {
    for (let a = 0; a < n; a += CHUNK) {
      const b = Math.min(n, a + CHUNK);
      SCRATCH.set(x.subarray(a, b));
      runDequantize(SCRATCH, a, a, b, out, L);
    }
  }
  return out;
}

/**
 * ONNX DynamicQuantizeLinear (uint8): range extended to include 0, scale = (max - min) / 255 in float32,
 * zeroPoint = roundHalfEven(clamp(0 - min / scale, 0, 255)), then quantizeLinear. An all-zero input gives
 * scale 1 (the spec would divide by 0; ORT uses 1), zero point 0.
 * @throws LowbitError NON_FINITE when x holds NaN or Infinity.
 */
export function dynamicQuantizeLinear(x: Float32Array): { y: Uint8Array; scale: number; zeroPoint: number } {
  const { min, max } = minMax(x);
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = hi === lo ? 1 : Math.fround(Math.fround(hi - lo) / 255);
  const zf = 0 - Math.fround(lo / scale);
  const zeroPoint = roundHalfEven(Math.min(255, Math.max(0, zf))) + 0;
  const y = new Uint8Array(x.length);
  const L: Layout = {
    kind: 'tensor', outer: 1, dim: 1, inner: x.length, blockSize: 0,
    scale: Float32Array.of(scale), zeroPoint: Float64Array.of(zeroPoint),
  };
  runQuantize(x, y, L, 0, 255);
  return { y, scale, zeroPoint };
}

/** Runs the layout's quantize kernel over x, straight into an Int32Array or via SCRATCH chunks otherwise. */
function runQuantize(x: Float32Array, out: QuantArray, L: Layout, qmin: number, qmax: number): void {
  const n = x.length;
  if (out instanceof Int32Array) {
    quantizeRange(x, 0, n, out, 0, L, qmin, qmax);
    return;
  }
  for (let a = 0; a < n; a += CHUNK) {
    const b = Math.min(n, a + CHUNK);
    quantizeRange(x, a, b, SCRATCH, a, L, qmin, qmax);
    out.set(SCRATCH.subarray(0, b - a), a);
  }
}

function quantizeRange(
  x: Float32Array, a: number, b: number, q: Int32Array, shift: number, L: Layout, qmin: number, qmax: number,
): void {
  if (L.kind === 'tensor') quantizeTensor(x, a, b, q, shift, L.scale[0]!, L.zeroPoint[0]!, qmin, qmax);
  else if (L.kind === 'axis') quantizeAxis(x, a, b, q, shift, L.scale, L.zeroPoint, L.dim, L.inner, qmin, qmax);
  else quantizeBlocked(x, a, b, q, shift, L.scale, L.zeroPoint, L.dim, L.inner, L.blockSize, qmin, qmax);
}

function runDequantize(q: Int32Array, shift: number, a: number, b: number, y: Float32Array, L: Layout): void {
  if (L.kind === 'tensor') dequantizeTensor(q, shift, a, b, y, L.scale[0]!, L.zeroPoint[0]!);
  else if (L.kind === 'axis') dequantizeAxis(q, shift, a, b, y, L.scale, L.zeroPoint, L.dim, L.inner);
  else dequantizeBlocked(q, shift, a, b, y, L.scale, L.zeroPoint, L.dim, L.inner, L.blockSize);
}
