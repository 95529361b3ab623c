// Binds a DataSource to a model's graph inputs: names, element types (with a few documented safe
// conversions), per-sample shapes, batch-axis policy; streams converted, NaN/Inf-checked batches.
// Node-side adapter (via source.ts); the public façade is calib-data.ts.

import { LowbitError } from '../errors.js';
import { allocArray, dtypeFromOnnx, fmtShape, halfToFloat, onnxTypeName, type DType, type NdArray } from './dtype.js';
import { RAW_BATCHES, UNNAMED, checkFinite, checkSlice, iterateBatches, type ArrayInfo, type BatchRange, type DataSource, type Sliceable } from './source.js';

/** A graph input as the model declares it. `dims`: numbers are fixed, strings/undefined symbolic. */
export interface ModelInput {
  name: string;
  /** ONNX TensorProto.DataType (1 = FLOAT, 7 = INT64, 6 = INT32, 9 = BOOL, ...). */
  elemType: number;
  dims: readonly (number | string | undefined)[];
}

/**
 * How data of one dtype is fed to an input of another:
 * - 'none': same dtype.
 * - 'widen': exact (float16/float32 -> float64, float16 -> float32, small ints -> wider ints).
 * - 'round': float64 -> float32, rounded to nearest. Deliberately silent: NumPy's default float is
 *   float64 and the model computes in float32 anyway. A value beyond float32 range becomes
 *   Inf and is reported as NON_FINITE.
 * - 'checked': int64/uint32 -> int32 and uint64 -> int64; exact, and a value out of range is a
 *   DATA_MISMATCH naming the sample.
 * Everything else (int -> float, float -> int, float -> float16, bool <-> number) is refused:
 * those need scaling or rounding decisions only the user can make.
 */
export type Conversion = 'none' | 'widen' | 'round' | 'checked';

/** Accepted data dtypes per model dtype. */
const ACCEPTS: Readonly<Record<DType, Partial<Record<DType, Conversion>>>> = {
  float32: { float32: 'none', float64: 'round', float16: 'widen' },
  float64: { float64: 'none', float32: 'widen', float16: 'widen' },
  float16: { float16: 'none' },
  int64: { int64: 'none', int32: 'widen', int16: 'widen', int8: 'widen', uint8: 'widen', uint16: 'widen', uint32: 'widen', uint64: 'checked' },
  int32: { int32: 'none', int16: 'widen', int8: 'widen', uint8: 'widen', uint16: 'widen', int64: 'checked', uint32: 'checked' },
  int16: { int16: 'none', int8: 'widen', uint8: 'widen' },
  int8: { int8: 'none' },
  uint8: { uint8: 'none' },
  uint16: { uint16: 'none', uint8: 'widen' },
  uint32: { uint32: 'none', uint16: 'widen', uint8: 'widen' },
  uint64: { uint64: 'none', uint32: 'widen', uint16: 'widen', uint8: 'widen' },
  bool: { bool: 'none' },
};

/** Value ranges of targets reached by 'checked' conversions. */
const CHECKED_RANGE: Partial<Record<DType, readonly [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
};

/** One model input and the array feeding it. */
export interface BoundInput {
  name: string;
  elemType: number;
  /** dtype of the batches produced (the model's). */
  dtype: DType;
  source: ArrayInfo;
  conversion: Conversion;
  /** Shape of one sample as fed (no batch axis). */
  sampleShape: number[];
  /** false when the model input has no batch axis: samples are fed one at a time, axis 0 dropped. */
  batched: boolean;
}

/** A DataSource checked against a model; batches are keyed by model input name. */
export interface BoundDataSource extends Sliceable<BoundDataSource> {
  readonly path: string;
  readonly count: number;
  readonly inputs: readonly BoundInput[];
  /** Largest batch the model accepts: its fixed batch dimension, else Infinity. */
  readonly maxBatch: number;
  /** The model's fixed batch dimension (1 for inputs without a batch axis), if any. */
  readonly fixedBatch: number | undefined;
  /** .npz arrays no model input uses (e.g. labels); the pipeline may mention them. */
  readonly ignored: readonly string[];
  /**
   * Batches keyed by model input name, converted to the model's dtypes. With a fixed batch
   * dimension, `batchSize` is replaced by it, and when it is > 1 a trailing partial batch is
   * skipped (the model cannot take it).
   * @throws LowbitError('BAD_OPTION') for a bad batch size or range; LowbitError('NON_FINITE')
   *   naming the input and sample; LowbitError('DATA_MISMATCH') for an integer out of range.
   */
  batches(batchSize: number, range?: BatchRange): Iterable<Record<string, NdArray>>;
}

const isFixed = (d: number | string | undefined): d is number => typeof d === 'number' && d >= 0;

/**
 * Checks a data source against the model inputs and returns a source keyed by input name.
 * A .npy (or a memory source with one UNNAMED array) needs a model with exactly one input; an
 * .npz needs an array named like every input (extra arrays are ignored and listed in `ignored`).
 * An array is `[samples, ...per-sample dims]`: its rank equals the model input's (batch axis
 * first), or is one more for an input without a batch axis. Fixed model dims must match exactly;
 * symbolic ones match anything, but a symbolic name used by several inputs must get one size.
 * @throws LowbitError('DATA_MISMATCH') naming the file, the input and expected vs actual
 *   names/dtype/shape; LowbitError('UNSUPPORTED_MODEL') for input types that cannot come from
 *   NumPy data or conflicting fixed batch sizes; LowbitError('BAD_DATA') for an empty source.
 */
export function bindToModelInputs(ds: DataSource, inputs: readonly ModelInput[]): BoundDataSource {
  const path = ds.path;
  if (inputs.length === 0) throw new LowbitError('UNSUPPORTED_MODEL', 'the model has no graph inputs to feed');
  if (ds.count === 0) throw new LowbitError('BAD_DATA', `${path}: holds 0 samples`, 'provide at least one sample');
  const names = inputs.map((i) => `'${i.name}'`).join(', ');
  const single = ds.arrays.length === 1 && ds.arrays[0]!.name === undefined;
  const keyOf = new Map<string, string>();
  let ignored: string[] = [];
  if (single) {
    if (inputs.length !== 1) {
      throw new LowbitError(
        'DATA_MISMATCH',
        `${path} holds one unnamed array, but the model has ${inputs.length} inputs: ${names}`,
        `use an .npz with one array per input, named like the inputs: np.savez(path, ${inputs.map((i) => `${pyKw(i.name)}=...`).join(', ')})`,
      );
    }
    keyOf.set(inputs[0]!.name, UNNAMED);
  } else {
    const have = new Set(ds.arrays.map((a) => a.name!));
    const missing = inputs.filter((i) => !have.has(i.name)).map((i) => i.name);
    ignored = [...have].filter((n) => !inputs.some((i) => i.name === n));
    if (missing.length) {
      throw new LowbitError(
        'DATA_MISMATCH',
        `${path}: no array for model input${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} (model inputs: ${names}; arrays in file: ${[...have].map((n) => `'${n}'`).join(', ')}${ignored.length ? `; unused: ${ignored.map((n) => `'${n}'`).join(', ')}` : ''})`,
        'name each array exactly like the model input it feeds: np.savez(path, **{input_name: array, ...})',
      );
    }
    for (const i of inputs) keyOf.set(i.name, i.name);
  }
  const bound = inputs.map((input) => bindOne(path, input, ds.arrays.find((a) => (a.name ?? UNNAMED) === keyOf.get(input.name))!));
  checkSymbolicDims(path, inputs, bound);
  const fixed = new Set<number>();
  for (const [k, b] of bound.entries()) {
    if (!b.batched) fixed.add(1);
    else if (isFixed(inputs[k]!.dims[0])) fixed.add(inputs[k]!.dims[0] as number);
  }
  if (fixed.size > 1) {
    throw new LowbitError('UNSUPPORTED_MODEL', `model inputs have different fixed batch sizes (${[...fixed].join(', ')})`, 'export the model with one batch dimension shared by all inputs');
  }
  const fixedBatch = fixed.size ? [...fixed][0]! : undefined;
  return makeBound(ds, bound, keyOf, fixedBatch, ignored, 0, ds.count);
}

function pyKw(name: string): string {
  return /^[A-Za-z_]\w*$/.test(name) ? name : `**{'${name}': ...}`;
}

function bindOne(path: string, input: ModelInput, src: ArrayInfo): BoundInput {
  const what = src.name === undefined ? 'the array' : `array '${src.name}'`;
  const dtype = dtypeFromOnnx(input.elemType);
  if (!dtype) {
    throw new LowbitError('UNSUPPORTED_MODEL', `input '${input.name}' has element type ${onnxTypeName(input.elemType)}, which cannot be fed from NumPy data`);
  }
  const conversion = ACCEPTS[dtype][src.dtype];
  if (!conversion) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `${path}: input '${input.name}' expects ${onnxTypeName(input.elemType)} (${dtype}) but ${what} is ${src.dtype}`,
      `convert it in NumPy: arr.astype(np.${dtype === 'bool' ? 'bool_' : dtype})${dtype.startsWith('float') && !src.dtype.startsWith('float') ? ', scaled the way the model expects (e.g. / 255)' : ''}`,
    );
  }
  const dims = input.dims;
  const sampleData = src.shape.slice(1);
  const fits = (model: readonly (number | string | undefined)[]): boolean =>
    model.length === sampleData.length && model.every((d, k) => !isFixed(d) || d === sampleData[k]);
  // Usual case: axis 0 of the model input is its batch axis. Otherwise the input has no batch
  // axis and the whole model shape is one sample.
  const batched = dims.length > 0 && fits(dims.slice(1));
  if (!batched && !fits(dims)) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `${path}: input '${input.name}' expects samples of shape ${fmtShape(dims.slice(1))} (model input shape ${fmtShape(dims)}, batch axis excluded) but ${what} has samples of shape ${fmtShape(sampleData)} (array shape ${fmtShape(src.shape)})`,
      'axis 0 of the array indexes samples; the other axes must match the model input without its batch axis (transpose or reshape in NumPy)',
    );
  }
  return { name: input.name, elemType: input.elemType, dtype, source: src, conversion, sampleShape: sampleData, batched };
}

/** The same symbolic dim name (e.g. 'sequence') must have one size across inputs. */
function checkSymbolicDims(path: string, inputs: readonly ModelInput[], bound: BoundInput[]): void {
  const seen = new Map<string, { size: number; input: string }>();
  inputs.forEach((input, k) => {
    const b = bound[k]!;
    const first = b.batched ? 1 : 0;
    input.dims.forEach((d, axis) => {
      if (typeof d !== 'string' || axis < first) return;
      const size = b.sampleShape[axis - first]!;
      const prev = seen.get(d);
      if (prev && prev.size !== size) {
        throw new LowbitError(
          'DATA_MISMATCH',
          `${path}: dimension '${d}' is ${prev.size} for input '${prev.input}' but ${size} for input '${input.name}'`,
          'inputs sharing a symbolic dimension need arrays of the same size along it',
        );
      }
      seen.set(d, { size, input: input.name });
    });
  });
}

function makeBound(ds: DataSource, inputs: BoundInput[], keyOf: Map<string, string>, fixedBatch: number | undefined, ignored: string[], offset: number, count: number): BoundDataSource {
  const path = ds.path;
  return {
    path,
    count,
    inputs,
    maxBatch: fixedBatch ?? Infinity,
    fixedBatch,
    ignored,
    batches(batchSize, range) {
      // Validate the caller's request even when a fixed batch size replaces it.
      iterateBatches({ path, offset: 0, count, batchSize, range, dropPartial: false }, () => 0);
      const size = fixedBatch ?? batchSize;
      const start = range?.start ?? 0;
      const end = range?.end ?? count;
      return iterateBatches({ path, offset: 0, count, batchSize: size, range: { start, end }, dropPartial: (fixedBatch ?? 1) > 1 }, (s, n) => {
        // One raw batch for exactly these samples; RAW_BATCHES reports file sample indices.
        const raw = ds[RAW_BATCHES](n, { start: offset + s, end: offset + s + n });
        const first = raw[Symbol.iterator]().next();
        const { start: absStart, batch } = first.value!;
        const out: Record<string, NdArray> = {};
        for (const b of inputs) out[b.name] = feed(path, b, batch[keyOf.get(b.name)!]!, absStart);
        return out;
      });
    },
    slice(start, end) {
      checkSlice(start, end, count, path);
      return makeBound(ds, inputs, keyOf, fixedBatch, ignored, offset + start, end - start);
    },
  };
}

/** Converts one raw batch for input `b`, drops the sample axis if unbatched, checks NaN/Inf. */
function feed(path: string, b: BoundInput, raw: NdArray, absStart: number): NdArray {
  const what = `input '${b.name}'`;
  let arr = raw;
  if (b.conversion !== 'none') {
    const { out, badIndex } = convert(raw, b.dtype);
    if (badIndex >= 0) {
      const per = Math.max(1, b.sampleShape.reduce((p, d) => p * d, 1));
      throw new LowbitError(
        'DATA_MISMATCH',
        `${path}: ${what}, sample ${absStart + Math.floor(badIndex / per)}: ${raw.dtype} value ${String(raw.data[badIndex])} does not fit ${b.dtype}`,
        `the model takes ${b.dtype}; store the data as ${b.dtype} with values in range`,
      );
    }
    arr = out;
  }
  const note = b.conversion === 'round' ? ' (after float64 -> float32 conversion; values beyond ±3.4e38 overflow)' : '';
  checkFinite(arr, path, what, absStart, note);
  return b.batched ? arr : { dtype: arr.dtype, shape: arr.shape.slice(1), data: arr.data };
}

/** Element-wise conversion; badIndex is the first value out of range of a 'checked' target, else -1. */
function convert(arr: NdArray, to: DType): { out: NdArray; badIndex: number } {
  const n = arr.data.length;
  const out = allocArray(to, n);
  const range = CHECKED_RANGE[to];
  const result = (badIndex: number) => ({ out: { dtype: to, shape: arr.shape, data: out }, badIndex });
  if (arr.dtype === 'float16') {
    const src = arr.data as Uint16Array;
    for (let i = 0; i < n; i++) (out as Float32Array)[i] = halfToFloat(src[i]!);
  } else if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) {
      const v = arr.data[i]!;
      const big = typeof v === 'bigint' ? v : BigInt(v);
      if (range && (big < range[0] || big > range[1])) return result(i);
      out[i] = big;
    }
  } else if (range) {
    const lo = Number(range[0]);
    const hi = Number(range[1]);
    for (let i = 0; i < n; i++) {
      const v = arr.data[i]!;
      const num = typeof v === 'bigint' ? (v < range[0] || v > range[1] ? NaN : Number(v)) : v;
      if (!(num >= lo && num <= hi)) return result(i);
      (out as Int32Array)[i] = num;
    }
  } else {
    // Number-to-number: TypedArray.prototype.set converts (rounds float64 -> float32, widens ints).
    (out as Float64Array).set(arr.data as Float64Array);
  }
  return result(-1);
}
