// NdArray helpers the runtime and pipeline need: dtype <-> ONNX DataType, views and concatenation
// along axis 0 (batches), numeric views for metrics, top-1 along the last axis.
// No onnxruntime and no node: imports; pipeline/ and runtime/ import it.

import { LowbitError } from '../errors.js';
import { sizeOf, type DType, type NdArray, type TypedArray } from '../ndarray.js';
import { DataType } from '../onnx/proto.js';
import { float16ArrayToFloat32 } from '../quant/float16.js';

type Ctor = { new (n: number): TypedArray; BYTES_PER_ELEMENT: number };

/** Storage class and ONNX DataType of each dtype (ORT's tensor type names equal the dtype names). */
export const DTYPE_INFO: Readonly<Record<DType, { ctor: Ctor; elemType: number }>> = {
  float32: { ctor: Float32Array, elemType: DataType.FLOAT },
  float64: { ctor: Float64Array, elemType: DataType.DOUBLE },
  float16: { ctor: Uint16Array, elemType: DataType.FLOAT16 },
  int8: { ctor: Int8Array, elemType: DataType.INT8 },
  uint8: { ctor: Uint8Array, elemType: DataType.UINT8 },
  int16: { ctor: Int16Array, elemType: DataType.INT16 },
  uint16: { ctor: Uint16Array, elemType: DataType.UINT16 },
  int32: { ctor: Int32Array, elemType: DataType.INT32 },
  uint32: { ctor: Uint32Array, elemType: DataType.UINT32 },
  int64: { ctor: BigInt64Array, elemType: DataType.INT64 },
  uint64: { ctor: BigUint64Array, elemType: DataType.UINT64 },
  bool: { ctor: Uint8Array, elemType: DataType.BOOL },
};

const BY_ELEM_TYPE = new Map<number, DType>(Object.entries(DTYPE_INFO).map(([d, i]) => [i.elemType, d as DType]));

/** The dtype of an ONNX DataType, or undefined for types an NdArray cannot hold (string, int4, bfloat16, ...). */
export function dtypeOfElemType(elemType: number | undefined): DType | undefined {
  return elemType === undefined ? undefined : BY_ELEM_TYPE.get(elemType);
}

/** '[4, 1, 28, 28]' for messages ('?' for unknown dims). */
export function fmtDims(dims: readonly (number | string | undefined)[]): string {
  return `[${dims.map((d) => (d === undefined || d === '' ? '?' : String(d))).join(', ')}]`;
}

/**
 * Checks that `arr` is a well-formed NdArray (storage class matches dtype, length matches shape).
 * @throws LowbitError('BAD_DATA') naming `what`.
 */
export function checkArray(arr: NdArray, what: string): void {
  const info = arr && typeof arr === 'object' ? DTYPE_INFO[arr.dtype] : undefined;
  if (!info || !Array.isArray(arr.shape) || !arr.data) {
    throw new LowbitError('BAD_DATA', `${what} is not an NdArray ({ dtype, shape, data })`, 'build arrays with a dtype name such as float32 and a typed array');
  }
  if (!(arr.data instanceof info.ctor)) {
    throw new LowbitError('BAD_DATA', `${what} has dtype ${arr.dtype} but its data is a ${arr.data.constructor.name}`, `store ${arr.dtype} data in a ${info.ctor.name}`);
  }
  if (arr.shape.some((d) => !Number.isSafeInteger(d) || d < 0) || sizeOf(arr.shape) !== arr.data.length) {
    throw new LowbitError('BAD_DATA', `${what} has shape ${fmtDims(arr.shape)} but ${arr.data.length} elements`, 'the product of the shape must equal the data length');
  }
}

/** Samples [start, end) along axis 0, as a view sharing `arr`'s storage (no copy). */
export function sliceAxis0(arr: NdArray, start: number, end: number): NdArray {
  const n = arr.shape[0];
  if (n === undefined) throw new LowbitError('INTERNAL', 'sliceAxis0 of a 0-d array');
  if (!(start >= 0 && start <= end && end <= n)) throw new LowbitError('INTERNAL', `sliceAxis0 [${start}, ${end}) outside [0, ${n})`);
  const per = sizeOf(arr.shape.slice(1));
  return { dtype: arr.dtype, shape: [end - start, ...arr.shape.slice(1)], data: arr.data.subarray(start * per, end * per) as TypedArray };
}

/** Splits `arr` along axis 0 into chunks of `size` samples (the last may be shorter); views, no copy. */
export function splitAxis0(arr: NdArray, size = 1): NdArray[] {
  const n = arr.shape[0] ?? 0;
  const out: NdArray[] = [];
  for (let s = 0; s < n; s += size) out.push(sliceAxis0(arr, s, Math.min(n, s + size)));
  return out;
}

/**
 * Concatenates arrays along axis 0 (all of one dtype, equal trailing dims). 0-d parts are stacked
 * into a 1-d result. One part is returned as is.
 * @throws LowbitError('DATA_MISMATCH') for mixed dtypes or trailing dims.
 */
export function concatAxis0(parts: readonly NdArray[]): NdArray {
  if (parts.length === 0) throw new LowbitError('INTERNAL', 'concatAxis0 of no arrays');
  const first = parts[0]!;
  if (parts.length === 1) return first;
  const tail = first.shape.length === 0 ? [] : first.shape.slice(1);
  let rows = 0;
  for (const p of parts) {
    const pTail = p.shape.length === 0 ? [] : p.shape.slice(1);
    if (p.dtype !== first.dtype || pTail.length !== tail.length || pTail.some((d, i) => d !== tail[i]) || p.shape.length !== first.shape.length) {
      throw new LowbitError('DATA_MISMATCH', `cannot concatenate ${p.dtype} ${fmtDims(p.shape)} to ${first.dtype} ${fmtDims(first.shape)} along axis 0`);
    }
    rows += p.shape.length === 0 ? 1 : p.shape[0]!;
  }
  const data = new DTYPE_INFO[first.dtype].ctor(rows * sizeOf(tail));
  let at = 0;
  for (const p of parts) {
    (data as Float32Array).set(p.data as Float32Array, at);
    at += p.data.length;
  }
  return { dtype: first.dtype, shape: [rows, ...tail], data };
}

/**
 * The elements as numbers for metrics: float32/float64/int/bool storage is returned as is (no
 * copy); float16 bits are decoded; 64-bit integers are converted with Number() (exact below 2^53).
 */
export function asNumbers(arr: NdArray): ArrayLike<number> {
  if (arr.dtype === 'float16') return float16ArrayToFloat32(arr.data as Uint16Array);
  if (arr.data instanceof BigInt64Array || arr.data instanceof BigUint64Array) {
    const src = arr.data;
    const out = new Float64Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
    return out;
  }
  return arr.data as ArrayLike<number>;
}

/**
 * Index of the largest element along the last axis, per position of the other axes
 * (`shape[0] * ... * shape[rank-2]` results). Ties take the first index; NaN never wins.
 */
export function argmaxLastAxis(arr: NdArray): Int32Array {
  const classes = arr.shape.length === 0 ? 1 : arr.shape[arr.shape.length - 1]!;
  const values = asNumbers(arr);
  const rows = classes === 0 ? 0 : values.length / classes;
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * classes;
    let best = 0;
    let bestV = -Infinity;
    for (let c = 0; c < classes; c++) {
      const v = values[base + c]!;
      if (v > bestV) {
        bestV = v;
        best = c;
      }
    }
    out[r] = best;
  }
  return out;
}

/** An input or output as ORT reports it. */
export interface ValueMeta {
  name: string;
  /** false for sequences, maps and optionals. */
  isTensor: boolean;
  /** ORT's type name ('float32', 'int64', 'string', 'int4', ...); '' for non-tensors. */
  type: string;
  /** ONNX DataType (0 when unknown or not a tensor). */
  elemType: number;
  /**
   * Dims: numbers fixed, strings symbolic, undefined unknown. ORT reports [] both for a 0-d
   * tensor and for an unknown rank.
   */
  dims: (number | string | undefined)[];
}

/** ONNX DataType of each ORT tensor type name. */
const ORT_ELEM_TYPE: Readonly<Record<string, number>> = {
  ...Object.fromEntries(Object.entries(DTYPE_INFO).map(([d, i]) => [d, i.elemType])),
  string: DataType.STRING,
  int4: DataType.INT4,
  uint4: DataType.UINT4,
};

/** ONNX DataType of an ORT tensor type name ('float32' -> 1), or undefined. */
export function elemTypeOfOrtType(type: string): number | undefined {
  return ORT_ELEM_TYPE[type];
}

/** ORT's metadata of an input or output (onnxruntime-node and -web report the same shape). */
export interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

/** ORT's metadata -> ValueMeta. */
export function toMeta(m: OrtValueMetadata): ValueMeta {
  if (!m.isTensor) return { name: m.name, isTensor: false, type: '', elemType: 0, dims: [] };
  const type = m.type ?? '';
  return {
    name: m.name,
    isTensor: true,
    type,
    elemType: ORT_ELEM_TYPE[type] ?? 0,
    dims: (m.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : typeof d === 'string' && d !== '' ? d : undefined)),
  };
}
