// Weight and bias quantization onto a graph: reads a float constant, adds quantized initializers with
// scale / zero point (per tensor or per channel). Pure; used by the dynamic and static (QDQ) passes.

import { LowbitError } from '../errors.js';
import type { Graph } from '../onnx/ir.js';
import { DataType, type TensorProto } from '../onnx/proto.js';
import { dataTypeName, dimsOf, makeTensor, packInt4, tensorStorage, type TensorStorage } from '../onnx/tensor.js';
import { allocQuantArray, quantType, type QuantArray, type QuantTypeInfo } from '../quant/dtypes.js';
import { bfloat16ArrayToFloat32, float16ArrayToFloat32 } from '../quant/float16.js';
import { computeQParams, computeQParamsFromData, computeQParamsPerAxis, type QParamsArray } from '../quant/qparams.js';
import { quantizeLinear } from '../quant/quantize.js';
import { normalizeAxis, roundHalfEven, splitAtAxis } from '../quant/util.js';

/** Integer types a weight may be quantized to. */
export type WeightQuantType = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int4' | 'uint4';

/**
 * How a weight's range is chosen: 'minmax' maps the extremes onto the integer range (ORT's choice, right
 * for 8 bits); 'mse' picks, per channel, the clipping of the range with the lowest squared error (better at
 * 4 bits, where a few large weights would otherwise waste most of the 16 levels). See {@link mseClipQParams}.
 */
export type WeightClip = 'minmax' | 'mse';

/** How a weight is quantized. */
export interface QuantizeWeightOptions {
  qtype: WeightQuantType;
  /** One scale / zero point per index along `axis` (else one for the whole tensor). */
  perChannel: boolean;
  /** Channel axis (negative counts from the end); ignored when `perChannel` is false. */
  axis: number;
  /** Symmetric range around 0 (int8 -> [-127, 127], zero point 0; uint8 -> zero point 128). */
  symmetric: boolean;
  /** ORT's reduce_range (7-bit weights) for CPUs without VNNI, where u8*s8 pair sums can saturate. */
  reduceRange?: boolean;
  /** Default 'minmax'. 'mse' cannot be combined with reduceRange. */
  clip?: WeightClip;
}

/** Names of the initializers a quantized weight became, and the parameter values. */
export interface QuantizedWeight {
  quantized: string;
  scale: string;
  zeroPoint: string;
  /** The normalized channel axis when per channel. */
  axis?: number;
  scaleValues: Float32Array;
  zeroPointValues: Int32Array;
}

/** A float constant read as float32. */
export interface FloatConstant {
  /** The values as float32. For a FLOAT tensor this may be a view of the model bytes: do not write to it. */
  data: Float32Array;
  dims: number[];
  /** The source DataType (FLOAT, FLOAT16, BFLOAT16 or DOUBLE). */
  dataType: number;
}

/** float32 conversions per source DataType (the float types a weight may have). */
const TO_FLOAT32: Readonly<Record<number, (s: TensorStorage) => Float32Array>> = {
  [DataType.FLOAT]: (s) => s as Float32Array,
  [DataType.FLOAT16]: (s) => float16ArrayToFloat32(s as Uint16Array),
  [DataType.BFLOAT16]: (s) => bfloat16ArrayToFloat32(s as Uint16Array),
  [DataType.DOUBLE]: (s) => Float32Array.from(s as Float64Array),
};

/** The constant tensor behind `name` (initializer here or in an enclosing graph, or a Constant node), or undefined. */
export function constantTensor(graph: Graph, name: string): TensorProto | undefined {
  return name ? graph.constant(name) : undefined;
}

/**
 * Reads the float constant `name` (FLOAT, FLOAT16, BFLOAT16 or DOUBLE) as float32.
 * @throws LowbitError BAD_OPTION when `name` is not a constant; UNSUPPORTED_MODEL when it is not a float tensor;
 *   BAD_DATA / EXTERNAL_DATA from the tensor codec.
 */
export function readFloatConstant(graph: Graph, name: string): FloatConstant {
  const t = constantTensor(graph, name);
  if (!t) {
    throw new LowbitError(
      'BAD_OPTION',
      `'${name}' is not a constant (no initializer or Constant node defines it in graph '${graph.name}')`,
      'only constant weights can be quantized ahead of time',
    );
  }
  return { data: tensorFloat32(t, name), dims: dimsOf(t), dataType: t.dataType! };
}

/**
 * A float tensor's values as float32 (FLOAT may be a view of the model bytes: do not write to it).
 * @throws LowbitError UNSUPPORTED_MODEL for a tensor that is not FLOAT, FLOAT16, BFLOAT16 or DOUBLE.
 */
export function tensorFloat32(t: TensorProto, name = t.name ?? ''): Float32Array {
  const convert = t.dataType === undefined ? undefined : TO_FLOAT32[t.dataType];
  if (!convert) {
    throw new LowbitError(
      'UNSUPPORTED_MODEL',
      `weight '${name}' is ${dataTypeName(t.dataType)}, not a float tensor`,
      'only FLOAT, FLOAT16, BFLOAT16 and DOUBLE weights can be quantized',
    );
  }
  return convert(tensorStorage(t));
}

/** A row-major [rows, cols] matrix transposed to [cols, rows]. */
export function transpose2d(m: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c]!;
  return t;
}

/** Throws NON_FINITE naming the tensor and the first bad element. */
function assertFinite(name: string, data: Float32Array): void {
  let acc = 0;
  for (let i = 0; i < data.length; i++) acc += data[i]! - data[i]!; // NaN exactly for NaN/Inf elements
  if (acc === 0) return;
  const i = data.findIndex((v) => !Number.isFinite(v));
  throw new LowbitError(
    'NON_FINITE',
    `weight '${name}' holds ${data[i]} at element ${i}; it cannot be quantized`,
    'the model weights contain NaN or Infinity; fix or re-export the model, or exclude the node',
  );
}

/** Storage for a quantized array as ONNX wants it (int4/uint4 packed two per byte). */
function storageFor(qtype: WeightQuantType, q: QuantArray): TensorStorage {
  return qtype === 'int4' || qtype === 'uint4' ? packInt4(q) : q;
}

/**
 * Quantizes float data as a weight named after `baseName` and adds three initializers to `graph`
 * (`<base>_quantized`, `<base>_scale`, `<base>_zero_point`, made unique): the quantized tensor with `dims`,
 * the float32 scale ([] or [C]) and the zero point (same type as the weight). Lets a pass quantize a
 * transformed weight (transposed, alpha folded in) without writing the float version first.
 * @throws LowbitError NON_FINITE when `data` holds NaN/Infinity (naming `baseName`); BAD_OPTION for a bad
 *   qtype or axis; DATA_MISMATCH when `data` does not match `dims`.
 */
export function addQuantizedWeight(
  graph: Graph,
  baseName: string,
  data: Float32Array,
  dims: readonly number[],
  opts: QuantizeWeightOptions,
): QuantizedWeight {
  const info = quantType(opts.qtype);
  if (info.bits === 32) throw new LowbitError('BAD_OPTION', `weights cannot be quantized to ${opts.qtype}`, 'use int8, uint8, int16, uint16, int4 or uint4');
  assertFinite(baseName, data);
  const range = { symmetric: opts.symmetric, reduceRange: opts.reduceRange === true };
  let scaleValues: Float32Array;
  let zp: QuantArray;
  let axis: number | undefined;
  if (opts.clip === 'mse') {
    if (opts.reduceRange === true) throw new LowbitError('BAD_OPTION', `weight '${baseName}': MSE clipping and reduce_range cannot be combined`, "use clip 'minmax' with reduceRange");
    axis = opts.perChannel ? normalizeAxis(opts.axis, dims.length) : undefined;
    const p = mseClipQParams(data, dims, axis, info, { symmetric: opts.symmetric });
    scaleValues = p.scale;
    zp = p.zeroPoint;
  } else if (opts.perChannel) {
    axis = normalizeAxis(opts.axis, dims.length);
    const p = computeQParamsPerAxis(data, dims, axis, info, range);
    scaleValues = p.scale;
    zp = p.zeroPoint;
  } else {
    const p = computeQParamsFromData(data, info, range);
    scaleValues = Float32Array.of(p.scale);
    zp = allocQuantArray(info, 1);
    zp[0] = p.zeroPoint;
  }
  const q = quantizeLinear(data, scaleValues, zp, info, axis === undefined ? {} : { axis, dims });
  const pdims = axis === undefined ? [] : [dims[axis]!];
  const names = {
    quantized: graph.freshName(`${baseName}_quantized`),
    scale: graph.freshName(`${baseName}_scale`),
    zeroPoint: graph.freshName(`${baseName}_zero_point`),
  };
  graph.setInitializer(makeTensor(names.quantized, info.dataType, dims, storageFor(opts.qtype, q)));
  graph.setInitializer(makeTensor(names.scale, DataType.FLOAT, pdims, scaleValues));
  graph.setInitializer(makeTensor(names.zeroPoint, info.dataType, pdims, storageFor(opts.qtype, zp)));
  return { ...names, ...(axis === undefined ? {} : { axis }), scaleValues, zeroPointValues: Int32Array.from(zp) };
}

/** Clipping ratios {@link mseClipQParams} tries by default: 100 between 0.5 and 1.0. */
const MSE_CANDIDATES = 100;
const MSE_LOWEST_RATIO = 0.5;

/**
 * Per-channel (`axis`) or per-tensor (`axis` undefined) parameters chosen by an MSE search over clipping
 * ratios: for each slice, `candidates` ratios r between `lowestRatio` and 1 clip the range to r·max|w|
 * (symmetric: scale = r·max|w| / (qmax - zeroPoint), so the clipped value lands on the last positive level)
 * or to [r·min, r·max] (asymmetric, ORT's zero point math), and the min-max parameters are tried too; the
 * one whose quantize-dequantize round trip has the lowest squared error wins (ties keep min-max, then the
 * larger ratio). The result is never worse than min-max. Values outside the clipped range saturate to
 * the type's full range, as QuantizeLinear does. All-zero slices get scale 1.
 * @throws LowbitError NON_FINITE for NaN/Infinity in the data; BAD_OPTION / DATA_MISMATCH for a bad axis or
 *   shape or a bad candidate count / ratio.
 */
export function mseClipQParams(
  data: Float32Array,
  dims: readonly number[],
  axis: number | undefined,
  qtype: WeightQuantType | QuantTypeInfo,
  opts: { symmetric: boolean; candidates?: number; lowestRatio?: number },
): QParamsArray {
  const info = quantType(qtype);
  const count = opts.candidates ?? MSE_CANDIDATES;
  const lowest = opts.lowestRatio ?? MSE_LOWEST_RATIO;
  if (!Number.isInteger(count) || count < 1 || !(lowest > 0 && lowest <= 1)) {
    throw new LowbitError('BAD_OPTION', `MSE clipping needs a positive candidate count and a lowest ratio in (0, 1] (got ${count}, ${lowest})`, 'use e.g. 100 candidates from 0.5');
  }
  const s = axis === undefined ? { outer: 1, dim: 1, inner: data.length } : splitAtAxis(dims, axis, data.length);
  const scale = new Float32Array(s.dim);
  const zeroPoint = allocQuantArray(info, s.dim);
  const slice = new Float32Array(s.outer * s.inner);
  const { qmin, qmax } = info;
  /** Squared error of quantizing `slice` with (sc, zp); stops early once above `best`. */
  const error = (sc: number, z: number, best: number): number => {
    let e = 0;
    for (let i = 0; i < slice.length && e < best; i++) {
      const v = slice[i]!;
      let q = roundHalfEven(Math.fround(v / sc)) + z;
      q = q < qmin ? qmin : q > qmax ? qmax : q;
      const d = v - Math.fround((q - z) * sc);
      e += d * d;
    }
    return e;
  };
  for (let c = 0; c < s.dim; c++) {
    let k = 0;
    for (let o = 0; o < s.outer; o++) {
      const base = (o * s.dim + c) * s.inner;
      for (let i = 0; i < s.inner; i++) slice[k++] = data[base + i]!;
    }
    const { min, max } = minMaxOf(slice);
    const mm = computeQParams(min, max, info, { symmetric: opts.symmetric });
    let best = { scale: mm.scale, zeroPoint: mm.zeroPoint, err: min === 0 && max === 0 ? 0 : error(mm.scale, mm.zeroPoint, Infinity) };
    const amax = Math.max(-min, max);
    const positive = Math.min(qmax - mm.zeroPoint, mm.zeroPoint - qmin);
    for (let j = 0; j < count && best.err > 0; j++) {
      const r = count === 1 ? 1 : 1 - ((1 - lowest) * j) / (count - 1);
      const p = opts.symmetric ? { scale: Math.fround((r * amax) / positive), zeroPoint: mm.zeroPoint } : computeQParams(r * min, r * max, info);
      if (!(p.scale >= 2 ** -126)) continue;
      const err = error(p.scale, p.zeroPoint, best.err);
      if (err < best.err) best = { ...p, err };
    }
    scale[c] = best.scale;
    zeroPoint[c] = best.zeroPoint;
  }
  return { scale, zeroPoint };
}

/** Min and max of finite data (0 for empty), including 0. @throws LowbitError NON_FINITE */
function minMaxOf(data: Float32Array): { min: number; max: number } {
  let min = 0;
  let max = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v)) throw new LowbitError('NON_FINITE', `weight element ${i} is ${v}`, 'the weights hold NaN or Infinity; fix or re-export the model');
    if (v < min) min = v;
    else if (v > max) max = v;
  }
  return { min, max };
}

/**
 * Quantizes the float constant `name` (initializer or Constant node; FLOAT/FLOAT16/BFLOAT16/DOUBLE) and adds
 * the quantized tensor, its float32 scale ([] or [C]) and zero point (same type) as new initializers with fresh
 * names. The float constant is left in place: the caller removes it when nothing reads it any more.
 * A constant channel never gets scale 0 (the range always includes 0; an all-zero channel gets scale 1).
 * @throws LowbitError NON_FINITE naming the tensor when it holds NaN/Infinity; BAD_OPTION when `name` is not a
 *   constant or the axis is bad; UNSUPPORTED_MODEL for non-float tensors.
 */
export function quantizeWeight(graph: Graph, name: string, opts: QuantizeWeightOptions): QuantizedWeight {
  const w = readFloatConstant(graph, name);
  return addQuantizedWeight(graph, name, w.data, w.dims, opts);
}

/** float32's smallest normal: a bias scale below it would overflow int32 for any non-zero bias. */
const FLOAT32_TINY = 2 ** -126;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * Quantizes a float bias to int32 with scale = inputScale * weightScales[c] (per channel when weightScales has
 * more than one element, else per tensor) and zero point 0, values rounded half to even and clamped to int32.
 * Where that product is below float32's smallest normal (e.g. inputScale 0) the scale becomes |bias[c]|/(2^31-1)
 * (1 for a zero bias) so the value stays representable. Adds `<bias>_quantized` (INT32, the bias shape) and
 * `<bias>_scale` (float32, [] or [C]).
 * @throws LowbitError BAD_OPTION when inputScale is negative or not finite or the bias is not a constant;
 *   DATA_MISMATCH when weightScales does not match the bias length; NON_FINITE for NaN/Infinity in the bias.
 */
export function quantizeBias(
  graph: Graph,
  biasName: string,
  inputScale: number,
  weightScales: Float32Array,
): { quantized: string; scale: string } {
  if (!Number.isFinite(inputScale) || inputScale < 0) {
    throw new LowbitError('BAD_OPTION', `input scale ${inputScale} for bias '${biasName}' is not a finite non-negative number`, 'pass the activation scale of the node input');
  }
  const b = readFloatConstant(graph, biasName);
  assertFinite(biasName, b.data);
  const n = b.data.length;
  const perChannel = weightScales.length > 1;
  if (weightScales.length === 0 || (perChannel && weightScales.length !== n)) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `bias '${biasName}' has ${n} elements but ${weightScales.length} weight scales were given`,
      'pass one weight scale (per tensor) or one per output channel',
    );
  }
  const scale = new Float32Array(perChannel ? n : 1);
  for (let c = 0; c < scale.length; c++) scale[c] = inputScale * weightScales[c]!;
  if (!perChannel && !(scale[0]! >= FLOAT32_TINY)) {
    let amax = 0;
    for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(b.data[i]!));
    scale[0] = amax > 0 ? amax / INT32_MAX : 1;
  }
  for (let c = 0; perChannel && c < n; c++) {
    if (!(scale[c]! >= FLOAT32_TINY)) scale[c] = b.data[c] !== 0 ? Math.abs(b.data[c]!) / INT32_MAX : 1;
  }
  const q = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = roundHalfEven(b.data[i]! / scale[perChannel ? i : 0]!);
    q[i] = v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v;
  }
  const quantized = graph.freshName(`${biasName}_quantized`);
  const scaleName = graph.freshName(`${biasName}_scale`);
  graph.setInitializer(makeTensor(quantized, DataType.INT32, b.dims, q));
  graph.setInitializer(makeTensor(scaleName, DataType.FLOAT, perChannel ? [n] : [], scale));
  return { quantized, scale: scaleName };
}

/**
 * Removes the float constant `name` from `graph` when nothing reads it any more: its initializer (and the graph
 * input of the same name, as IR < 4 models list every initializer as an input: feeding it would change nothing
 * now), or the Constant node producing it. Returns true when something was removed.
 */
export function removeIfUnused(graph: Graph, name: string): boolean {
  if (!name || graph.consumers(name).length > 0 || graph.isGraphOutput(name)) return false;
  if (graph.initializers.has(name)) {
    graph.removeInitializer(name);
    graph.inputs = graph.inputs.filter((v) => v.name !== name);
    return true;
  }
  const p = graph.producer(name);
  if (p && p.opType === 'Constant' && (p.domain ?? '') === '') {
    graph.removeNodes([p]);
    return true;
  }
  return false;
}
