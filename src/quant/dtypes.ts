// The integer quantization types: ONNX code, value range, reduce_range and symmetric ranges.
// Pure; imported by every quant/ module and by calib/, passes/ and above.

import { LowbitError } from '../errors.js';
import { DataType } from '../onnx/proto.js';

/** Names of the integer types lowbit quantizes to. */
export type QuantTypeName = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int4' | 'uint4' | 'int32';

/** A typed array that holds quantized values, one per element (int4/uint4 stay unpacked, one per byte). */
export type QuantArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array;

/** Static facts about one quantization type. */
export interface QuantTypeInfo {
  readonly name: QuantTypeName;
  /** TensorProto.DataType code. */
  readonly dataType: number;
  readonly bits: number;
  readonly signed: boolean;
  /** Full range of the type (what QuantizeLinear saturates to). */
  readonly qmin: number;
  readonly qmax: number;
  /** reduce_range range (ORT's table: one bit less for 8-bit types, to keep u8*s8 pair sums in int16). */
  readonly reducedMin: number;
  readonly reducedMax: number;
  /** Whether symmetric quantization drops the most negative value by default (ORT: int8 [-127,127]). */
  readonly narrowWhenSymmetric: boolean;
}

const row = (
  name: QuantTypeName,
  dataType: number,
  bits: number,
  signed: boolean,
  reducedMin: number,
  reducedMax: number,
  narrowWhenSymmetric: boolean,
): QuantTypeInfo => {
  const qmin = signed ? -(2 ** (bits - 1)) : 0;
  const qmax = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  return Object.freeze({ name, dataType, bits, signed, qmin, qmax, reducedMin, reducedMax, narrowWhenSymmetric });
};

/**
 * One row per type. reduced ranges follow onnxruntime.quantization.quant_utils.ONNX_INT_TYPE_REDUCED_RANGE
 * (note int8 is [-64, 64], not [-64, 63]: ORT keeps it symmetric so a symmetric zero point stays 0;
 * |w| <= 64 with u8 activations still keeps 2*255*64 < 32767). Symmetric narrowing follows
 * ONNX_INT_TYPE_SYMMETRIC_RANGE for the signed types (int8 [-127,127], int16 [-32767,32767]); unsigned
 * types keep their full range so the symmetric zero point is 128 / 32768 / 8 (pass `narrow: true` for
 * ORT >= 1.18's [0, 254] uint8 symmetric range, zero point 127).
 */
export const QUANT_TYPES: Readonly<Record<QuantTypeName, QuantTypeInfo>> = Object.freeze({
  int8: row('int8', DataType.INT8, 8, true, -64, 64, true),
  uint8: row('uint8', DataType.UINT8, 8, false, 0, 127, false),
  int16: row('int16', DataType.INT16, 16, true, -16384, 16384, true),
  uint16: row('uint16', DataType.UINT16, 16, false, 0, 32767, false),
  int4: row('int4', DataType.INT4, 4, true, -4, 3, false),
  uint4: row('uint4', DataType.UINT4, 4, false, 0, 7, false),
  int32: row('int32', DataType.INT32, 32, true, -(2 ** 30), 2 ** 30, true),
});

const BY_DATA_TYPE = new Map<number, QuantTypeInfo>(Object.values(QUANT_TYPES).map((t) => [t.dataType, t]));

/**
 * Looks a quantization type up by name, ONNX DataType code, or passes an info row through.
 * @throws LowbitError BAD_OPTION for an unknown name or a non-integer ONNX type.
 */
export function quantType(t: QuantTypeName | number | QuantTypeInfo): QuantTypeInfo {
  if (typeof t === 'object' && t !== null) return t;
  const info = typeof t === 'number' ? BY_DATA_TYPE.get(t) : Object.hasOwn(QUANT_TYPES, t) ? QUANT_TYPES[t] : undefined;
  if (info === undefined) {
    throw new LowbitError(
      'BAD_OPTION',
      `unknown quantization type ${JSON.stringify(t)}`,
      `use one of ${Object.keys(QUANT_TYPES).join(', ')}`,
    );
  }
  return info;
}

/** True when `name` is one of the quantization type names. */
export function isQuantTypeName(name: string): name is QuantTypeName {
  return Object.hasOwn(QUANT_TYPES, name);
}

/** How the usable integer range is chosen. */
export interface RangeOptions {
  /** Use the reduced range (takes precedence over everything else, as in ORT). */
  reduceRange?: boolean;
  /** Symmetric quantization: for the signed types this narrows to [-qmax, qmax] unless `narrow` says otherwise. */
  symmetric?: boolean;
  /**
   * Drop one end of the range: signed types lose qmin (int8 [-127,127]), unsigned types lose qmax (uint8 [0,254]).
   * Default: `symmetric && info.narrowWhenSymmetric`.
   */
  narrow?: boolean;
}

/** The integer range [qmin, qmax] quantization parameters are computed for. */
export function quantRange(
  t: QuantTypeName | number | QuantTypeInfo,
  opts: RangeOptions = {},
): { qmin: number; qmax: number } {
  const info = quantType(t);
  if (opts.reduceRange === true) return { qmin: info.reducedMin, qmax: info.reducedMax };
  const narrow = opts.narrow ?? (opts.symmetric === true && info.narrowWhenSymmetric);
  if (!narrow) return { qmin: info.qmin, qmax: info.qmax };
  return info.signed ? { qmin: info.qmin + 1, qmax: info.qmax } : { qmin: info.qmin, qmax: info.qmax - 1 };
}

/** Allocates a zeroed typed array able to hold `n` values of the type (int4/uint4: one value per byte). */
export function allocQuantArray(t: QuantTypeName | number | QuantTypeInfo, n: number): QuantArray {
  const info = quantType(t);
  switch (info.bits) {
    case 4:
    case 8:
      return info.signed ? new Int8Array(n) : new Uint8Array(n);
    case 16:
      return info.signed ? new Int16Array(n) : new Uint16Array(n);
    default:
      return new Int32Array(n);
  }
}
