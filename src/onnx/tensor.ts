// TensorProto helpers: shapes, per-DataType storage widths, typed-array views of tensor data
// (raw_data, the typed *_data fields per onnx.proto, or deferred data read at that moment), makeTensor,
// deferTensor and int4 packing.
// Pure; anyone may import. fp16/bf16 <-> fp32 conversion lives in src/quant/float16.ts.

import { LowbitError } from '../errors.js';
import { deferredData, readDeferred, setDeferred } from './deferred.js';
import { DataLocation, DataType, type TensorProto } from './proto.js';
import { LITTLE_ENDIAN } from './wire.js';

/** The typed array a tensor's elements are stored in (see STORAGE). */
export type TensorStorage = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

type StorageCtor = { new (n: number): TensorStorage; new (b: ArrayBuffer, off: number, n: number): TensorStorage; BYTES_PER_ELEMENT: number };
type TypedField = 'floatData' | 'int32Data' | 'int64Data' | 'doubleData' | 'uint64Data';

interface Storage {
  /** Bits per element (4 for the packed 4-bit types, 2 for the 2-bit ones). */
  bits: number;
  /** Typed array over the raw little-endian bytes. */
  ctor: StorageCtor;
  /** The typed field that may hold the values instead of raw_data (onnx.proto rules). */
  field: TypedField;
  /** Storage elements per tensor element (2 for complex types: real, imaginary). */
  lanes?: number;
}

// DataTypes newer than proto.ts: FLOAT8E8M0 = 24, UINT2 = 25, INT2 = 26 (ONNX 1.18+).
const FLOAT8E8M0 = 24;
const UINT2 = 25;
const INT2 = 26;

/** Storage layout per DataType. STRING and UNDEFINED have none (strings live in string_data). */
export const STORAGE: Readonly<Record<number, Storage>> = {
  [DataType.FLOAT]: { bits: 32, ctor: Float32Array, field: 'floatData' },
  [DataType.UINT8]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [DataType.INT8]: { bits: 8, ctor: Int8Array, field: 'int32Data' },
  [DataType.UINT16]: { bits: 16, ctor: Uint16Array, field: 'int32Data' },
  [DataType.INT16]: { bits: 16, ctor: Int16Array, field: 'int32Data' },
  [DataType.INT32]: { bits: 32, ctor: Int32Array, field: 'int32Data' },
  [DataType.INT64]: { bits: 64, ctor: BigInt64Array, field: 'int64Data' },
  [DataType.BOOL]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [DataType.FLOAT16]: { bits: 16, ctor: Uint16Array, field: 'int32Data' },
  [DataType.DOUBLE]: { bits: 64, ctor: Float64Array, field: 'doubleData' },
  [DataType.UINT32]: { bits: 32, ctor: Uint32Array, field: 'uint64Data' },
  [DataType.UINT64]: { bits: 64, ctor: BigUint64Array, field: 'uint64Data' },
  [DataType.COMPLEX64]: { bits: 64, ctor: Float32Array, field: 'floatData', lanes: 2 },
  [DataType.COMPLEX128]: { bits: 128, ctor: Float64Array, field: 'doubleData', lanes: 2 },
  [DataType.BFLOAT16]: { bits: 16, ctor: Uint16Array, field: 'int32Data' },
  [DataType.FLOAT8E4M3FN]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [DataType.FLOAT8E4M3FNUZ]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [DataType.FLOAT8E5M2]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [DataType.FLOAT8E5M2FNUZ]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [DataType.UINT4]: { bits: 4, ctor: Uint8Array, field: 'int32Data' },
  [DataType.INT4]: { bits: 4, ctor: Uint8Array, field: 'int32Data' },
  [DataType.FLOAT4E2M1]: { bits: 4, ctor: Uint8Array, field: 'int32Data' },
  [FLOAT8E8M0]: { bits: 8, ctor: Uint8Array, field: 'int32Data' },
  [UINT2]: { bits: 2, ctor: Uint8Array, field: 'int32Data' },
  [INT2]: { bits: 2, ctor: Uint8Array, field: 'int32Data' },
};

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DataType).map(([k, v]) => [v, k]));
TYPE_NAMES[FLOAT8E8M0] = 'FLOAT8E8M0';
TYPE_NAMES[UINT2] = 'UINT2';
TYPE_NAMES[INT2] = 'INT2';

/** ONNX name of a DataType value, e.g. 1 -> "FLOAT"; unknown values as "DataType(99)". */
export function dataTypeName(dataType: number | undefined): string {
  return (dataType !== undefined && TYPE_NAMES[dataType]) || `DataType(${dataType})`;
}

function storageOf(dataType: number | undefined, what: string): Storage {
  const s = dataType === undefined ? undefined : STORAGE[dataType];
  if (!s) {
    throw new LowbitError('UNSUPPORTED_MODEL', `${what} has data type ${dataTypeName(dataType)}, which has no numeric storage`, 'string and undefined tensors have no typed-array storage; this tensor cannot be processed numerically');
  }
  return s;
}

/** Bits per element of a DataType (4 for INT4/UINT4/FLOAT4E2M1). @throws LowbitError UNSUPPORTED_MODEL for STRING/unknown */
export function bitWidth(dataType: number): number {
  return storageOf(dataType, 'the tensor').bits;
}

/** Bytes per element; fractional (0.5, 0.25) for sub-byte types. @throws LowbitError as bitWidth */
export function bytesPerElement(dataType: number): number {
  return bitWidth(dataType) / 8;
}

/** Bytes `count` elements of `dataType` take in raw_data (sub-byte types packed, rounded up). @throws LowbitError as bitWidth */
export function storageByteLength(dataType: number, count: number): number {
  return Math.ceil((count * bitWidth(dataType)) / 8);
}

const label = (t: TensorProto) => (t.name ? `tensor '${t.name}'` : 'an unnamed tensor');

/** The shape as numbers. @throws LowbitError BAD_DATA for negative or huge dims */
export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => {
    if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER)) throw new LowbitError('BAD_DATA', `${label(t)} has an invalid dimension ${d}`, 'tensor dimensions must be non-negative; the model file is probably corrupt');
    return Number(d);
  });
}

/** Number of elements of a shape (1 for a scalar []). */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Reinterprets little-endian bytes as `ctor`: a view when aligned (LE host), else one copy. */
function viewBytes(bytes: Uint8Array, ctor: StorageCtor): TensorStorage {
  const size = ctor.BYTES_PER_ELEMENT;
  const n = bytes.byteLength / size;
  if (size === 1 || (LITTLE_ENDIAN && bytes.byteOffset % size === 0)) return new ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  const copy = bytes.slice();
  if (!LITTLE_ENDIAN) for (let i = 0; i < copy.length; i += size) copy.subarray(i, i + size).reverse();
  return new ctor(copy.buffer, 0, n);
}

/**
 * The tensor's elements as a typed array of its storage kind (FLOAT -> Float32Array, FLOAT16 and
 * BFLOAT16 -> Uint16Array bit patterns, INT4/UINT4/FLOAT4E2M1 -> packed Uint8Array, ...).
 * From raw_data the result is a zero-copy view of the model bytes when aligned, so writes to it
 * change the tensor; from the typed fields it is converted per the onnx.proto rules. A deferred
 * tensor (src/onnx/deferred.ts: streamed from external data, or made by deferTensor) is read or
 * produced now into a fresh array that the tensor does not keep: writes to it change nothing.
 * @throws LowbitError BAD_DATA when the data does not match the shape, EXTERNAL_DATA when the
 *   data is still in an external file (or a streamed data file cannot be read), UNSUPPORTED_MODEL
 *   for STRING tensors
 */
export function tensorStorage(t: TensorProto): TensorStorage {
  const s = storageOf(t.dataType, label(t));
  const count = elementCount(dimsOf(t));
  const lanes = s.lanes ?? 1;
  const expectBytes = Math.ceil((count * s.bits) / 8);
  const mismatch = (have: string, need: string): never => {
    throw new LowbitError('BAD_DATA', `${label(t)} (${dataTypeName(t.dataType)}, shape [${dimsOf(t).join(', ')}]) has ${have}, its shape needs ${need}`, 'the model file is corrupt or was written by a buggy exporter');
  };
  if (t.rawData) {
    if (t.rawData.length !== expectBytes) mismatch(`${t.rawData.length} bytes of raw_data`, `${expectBytes}`);
    return viewBytes(t.rawData, s.ctor);
  }
  const deferred = deferredData(t);
  if (deferred) {
    if (deferred.byteLength !== expectBytes) mismatch(`${deferred.byteLength} bytes of deferred data`, `${expectBytes}`);
    return viewBytes(readDeferred(t), s.ctor);
  }
  if (t.dataLocation === DataLocation.EXTERNAL) {
    throw new LowbitError('EXTERNAL_DATA', `${label(t)} keeps its data in an external file that was not loaded`, 'load the model with loadModel() so that external data is read');
  }
  const field = t[s.field];
  if (!field || field.length === 0) {
    if (count === 0) return new s.ctor(0);
    return mismatch('no data', `${count} elements`);
  }
  // Sub-byte types: each int32_data entry holds one packed byte (2 or 4 elements).
  const want = s.bits < 8 ? expectBytes : count * lanes;
  if (field.length !== want) mismatch(`${field.length} values in ${s.field}`, `${want}`);
  if (field instanceof s.ctor) return field;
  const out = new s.ctor(want) as { [i: number]: number | bigint };
  if (s.ctor === BigInt64Array || s.ctor === BigUint64Array) for (let i = 0; i < want; i++) out[i] = BigInt(field[i]);
  else for (let i = 0; i < want; i++) out[i] = Number(field[i]);
  return out as TensorStorage;
}

/**
 * Builds a TensorProto holding `data` in raw_data. `data` is the storage typed array (as
 * tensorStorage returns it; packed bytes for 4-bit types). raw_data is a view of data's bytes
 * on little-endian hosts: do not modify `data` afterwards.
 * @throws LowbitError BAD_DATA when data does not fit dims/dataType, UNSUPPORTED_MODEL for STRING
 */
export function makeTensor(name: string, dataType: number, dims: readonly number[], data: TensorStorage): TensorProto {
  const s = storageOf(dataType, `tensor '${name}'`);
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new LowbitError('BAD_DATA', `tensor '${name}' has an invalid dimension ${d}`, 'dimensions must be non-negative integers');
  }
  const need = Math.ceil((elementCount(dims) * s.bits) / 8);
  if (data.byteLength !== need || data.BYTES_PER_ELEMENT !== s.ctor.BYTES_PER_ELEMENT) {
    throw new LowbitError('BAD_DATA', `tensor '${name}' (${dataTypeName(dataType)}, shape [${dims.join(', ')}]) needs ${need} bytes of ${s.ctor.name}-like data, got ${data.byteLength} bytes of ${data.constructor.name}`, 'pass a typed array of the storage kind (packed bytes for 4-bit types)');
  }
  return { dims: dims.map((d) => BigInt(d)), dataType, name, rawData: leBytes(data), externalData: [], metadataProps: [] };
}

/** Little-endian raw bytes of a storage typed array (a view on little-endian hosts). */
function leBytes(data: TensorStorage): Uint8Array {
  let raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!LITTLE_ENDIAN && data.BYTES_PER_ELEMENT > 1) {
    raw = raw.slice();
    for (let i = 0; i < raw.length; i += data.BYTES_PER_ELEMENT) raw.subarray(i, i + data.BYTES_PER_ELEMENT).reverse();
  }
  return raw;
}

/**
 * Builds a TensorProto whose data is produced only when it is read (tensorStorage, tensorBytes, the
 * encoder) or saved (saveModel writes it straight to external data), and never kept: a pass can
 * emit every converted weight without holding them all. `produce` returns the storage typed array
 * (as for makeTensor) and may be called more than once, so it must give the same values each time.
 * Copies made with object spread keep the producer (see src/onnx/deferred.ts).
 * @throws LowbitError BAD_DATA for invalid dims (and, at read time, when `produce` gives the wrong
 *   size or kind), UNSUPPORTED_MODEL for STRING
 */
export function deferTensor(name: string, dataType: number, dims: readonly number[], produce: () => TensorStorage): TensorProto {
  const s = storageOf(dataType, `tensor '${name}'`);
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new LowbitError('BAD_DATA', `tensor '${name}' has an invalid dimension ${d}`, 'dimensions must be non-negative integers');
  }
  const need = Math.ceil((elementCount(dims) * s.bits) / 8);
  const t: TensorProto = { dims: dims.map((d) => BigInt(d)), dataType, name, externalData: [], metadataProps: [] };
  return setDeferred(t, {
    byteLength: need,
    read: () => {
      const data = produce();
      if (data.byteLength !== need || data.BYTES_PER_ELEMENT !== s.ctor.BYTES_PER_ELEMENT) {
        throw new LowbitError('BAD_DATA', `deferred tensor '${name}' (${dataTypeName(dataType)}, shape [${dims.join(', ')}]) needs ${need} bytes of ${s.ctor.name}-like data, its producer gave ${data.byteLength} bytes of ${data.constructor.name}`, 'the producer must return a typed array of the storage kind (packed bytes for 4-bit types)');
      }
      return leBytes(data);
    },
  });
}

/**
 * The size in bytes the tensor's data takes as raw_data, without reading it (raw_data, deferred
 * data, typed fields or an external tensor with a numeric type: from its shape). Undefined for
 * STRING tensors and tensors of unknown type.
 */
export function tensorByteLength(t: TensorProto): number | undefined {
  if (t.rawData) return t.rawData.length;
  const d = deferredData(t);
  if (d) return d.byteLength;
  const s = t.dataType === undefined ? undefined : STORAGE[t.dataType];
  if (!s) return undefined;
  return Math.ceil((elementCount(dimsOf(t)) * s.bits) / 8);
}

/**
 * The tensor's data as little-endian raw bytes: raw_data itself, deferred data read now (not kept), or the typed
 * fields converted. @throws LowbitError as tensorStorage
 */
export function tensorBytes(t: TensorProto): Uint8Array {
  if (t.rawData) return t.rawData;
  if (deferredData(t)) return readDeferred(t);
  return leBytes(tensorStorage(t));
}

/** Unpacks `count` 4-bit values (first element in the low nibble), sign-extending when `signed`. @throws LowbitError BAD_DATA when bytes are too few */
export function unpackInt4(bytes: Uint8Array, count: number, signed: boolean): Int8Array {
  if (bytes.length < Math.ceil(count / 2)) throw new LowbitError('BAD_DATA', `${count} 4-bit values need ${Math.ceil(count / 2)} bytes, got ${bytes.length}`, 'the tensor data is shorter than its shape');
  const out = new Int8Array(count);
  for (let i = 0; i < count; i++) {
    const nib = (bytes[i >> 1] >> ((i & 1) * 4)) & 0x0f;
    out[i] = signed ? (nib << 28) >> 28 : nib;
  }
  return out;
}

/** Packs values into 4-bit pairs (first element in the low nibble; odd counts padded with 0). Values are taken mod 16. */
export function packInt4(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(values.length / 2));
  for (let i = 0; i < values.length; i++) out[i >> 1] |= (values[i] & 0x0f) << ((i & 1) * 4);
  return out;
}
