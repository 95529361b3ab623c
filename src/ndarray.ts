// A plain n-dimensional array: the unit of data between data/, runtime/, calib/ and pipeline/.
// Pure; anyone may import.

/** Element storage of an {@link NdArray}. */
export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** dtype names follow NumPy: 'float32', 'float64', 'float16' (Uint16Array storage), 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'bool' (Uint8Array). */
export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool';

/** Row-major (C order) array: `data.length === shape.reduce(*)`. */
export interface NdArray {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
