// Element types of host-side arrays (NdArray) and their NumPy / ONNX spellings.
// Pure (no node: imports; compiles with "types": []); used by npy.ts, npz.ts, bind.ts and mnist users.

import { LowbitError } from '../errors.js';
import { DataType } from '../onnx/proto.js';

import { sizeOf as shapeSize, type DType, type NdArray, type TypedArray } from '../ndarray.js';
export type { DType, NdArray, TypedArray } from '../ndarray.js';

type TypedCtor = { new (buf: ArrayBuffer, byteOffset?: number, length?: number): TypedArray; new (n: number): TypedArray };

/** One row per dtype: NumPy kind letter + item size, typed-array constructor, ONNX DataType. */
export interface DTypeInfo {
  kind: 'f' | 'i' | 'u' | 'b';
  itemSize: number;
  ctor: TypedCtor;
  onnx: number;
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  float32: { kind: 'f', itemSize: 4, ctor: Float32Array, onnx: DataType.FLOAT },
  float64: { kind: 'f', itemSize: 8, ctor: Float64Array, onnx: DataType.DOUBLE },
  float16: { kind: 'f', itemSize: 2, ctor: Uint16Array, onnx: DataType.FLOAT16 },
  int8: { kind: 'i', itemSize: 1, ctor: Int8Array, onnx: DataType.INT8 },
  uint8: { kind: 'u', itemSize: 1, ctor: Uint8Array, onnx: DataType.UINT8 },
  int16: { kind: 'i', itemSize: 2, ctor: Int16Array, onnx: DataType.INT16 },
  uint16: { kind: 'u', itemSize: 2, ctor: Uint16Array, onnx: DataType.UINT16 },
  int32: { kind: 'i', itemSize: 4, ctor: Int32Array, onnx: DataType.INT32 },
  uint32: { kind: 'u', itemSize: 4, ctor: Uint32Array, onnx: DataType.UINT32 },
  int64: { kind: 'i', itemSize: 8, ctor: BigInt64Array, onnx: DataType.INT64 },
  uint64: { kind: 'u', itemSize: 8, ctor: BigUint64Array, onnx: DataType.UINT64 },
  bool: { kind: 'b', itemSize: 1, ctor: Uint8Array, onnx: DataType.BOOL },
};

/** True when `s` names a supported dtype. */
export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPES, s);
}

/** The dtype whose ONNX DataType is `t`, or undefined (STRING, complex, bfloat16, float8, int4...). */
export function dtypeFromOnnx(t: number): DType | undefined {
  for (const [name, info] of Object.entries(DTYPES)) if (info.onnx === t) return name as DType;
  return undefined;
}

/** Name of an ONNX DataType value for messages ('FLOAT', 'INT64', ...). */
export function onnxTypeName(t: number): string {
  for (const [name, v] of Object.entries(DataType)) if (v === t) return name;
  return `DataType(${t})`;
}

/** Product of a shape (1 for a 0-d shape). */
export { shapeSize };

/** '[4, 1, 28, 28]' — shapes in messages. */
export function fmtShape(shape: readonly (number | string | undefined)[]): string {
  return `[${shape.map((d) => (d === undefined ? '?' : String(d))).join(', ')}]`;
}

/** The typed array class a dtype must be stored in (checked by encodeNpy and friends). */
export function allocArray(dtype: DType, length: number): TypedArray {
  return new DTYPES[dtype].ctor(length);
}

/**
 * Checks that an NdArray is well formed: known dtype, integer shape, matching typed array class
 * and length.
 * @throws LowbitError('BAD_DATA') naming `what`.
 */
export function checkNdArray(arr: NdArray, what: string): void {
  if (!arr || typeof arr !== 'object' || !isDType(arr.dtype)) {
    throw new LowbitError('BAD_DATA', `${what}: unknown dtype ${JSON.stringify(arr?.dtype)}`, `use one of ${Object.keys(DTYPES).join(', ')}`);
  }
  if (!Array.isArray(arr.shape) || !arr.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new LowbitError('BAD_DATA', `${what}: shape must be non-negative integers, got ${JSON.stringify(arr.shape)}`);
  }
  const info = DTYPES[arr.dtype];
  if (!(arr.data instanceof info.ctor)) {
    throw new LowbitError('BAD_DATA', `${what}: dtype ${arr.dtype} needs a ${info.ctor.name}, got ${arr.data?.constructor?.name ?? typeof arr.data}`);
  }
  if (arr.data.length !== shapeSize(arr.shape)) {
    throw new LowbitError('BAD_DATA', `${what}: shape ${fmtShape(arr.shape)} holds ${shapeSize(arr.shape)} elements but data has ${arr.data.length}`);
  }
}

/** True on little-endian hosts (all Node targets in practice); typed arrays use host order. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses the byte order of every `itemSize`-byte item in place. */
export function byteswap(bytes: Uint8Array, itemSize: number): void {
  if (itemSize === 1) return;
  for (let i = 0; i + itemSize <= bytes.length; i += itemSize) {
    for (let a = i, b = i + itemSize - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** float16 bits -> number (exact). */
export { float16ToFloat32 as halfToFloat } from '../quant/float16.js';
