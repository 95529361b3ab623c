// Calibration / evaluation data sources over .npy, .npz or in-memory arrays: sample counts, batch
// streaming (rows read on demand, NaN/Inf checked as they stream), slicing and hold-out splits.
// Node-side adapter; the public façade is calib-data.ts.

import { closeSync } from 'node:fs';
import { LowbitError } from '../errors.js';
import { fmtShape, shapeSize, type DType, type NdArray } from './dtype.js';
import { memoryRowReader, openFile, openNpy, readAt, type RowReader } from './npy.js';
import { openNpz } from './npz.js';

/**
 * Unchecked batch stream (no NaN/Inf check), for bind.ts, which checks after converting so that
 * errors name the model input. Not part of the public API.
 */
export const RAW_BATCHES: unique symbol = Symbol('lowbit.rawBatches');

/** A batch plus the file index of its first sample. */
export interface RawBatch {
  start: number;
  batch: Record<string, NdArray>;
}

/** Batch key of the single, unnamed array of a .npy source. */
export const UNNAMED = '';

/** One array of a source. `name` is absent for the array of a .npy file. */
export interface ArrayInfo {
  name?: string;
  dtype: DType;
  shape: readonly number[];
}

/** A sample range relative to the source (view): [start, end), defaults [0, count). */
export interface BatchRange {
  start?: number;
  end?: number;
}

/** A stream of samples stored along axis 0 of one or more arrays. */
export interface DataSource {
  /** File path, or the label given to dataSourceFromArrays. */
  readonly path: string;
  readonly kind: 'npy' | 'npz' | 'memory' | 'images';
  /** Samples in this source (after slicing). */
  readonly count: number;
  /** The arrays, with their full on-disk shapes (axis 0 = all samples of the file). */
  readonly arrays: readonly ArrayInfo[];
  /**
   * Consecutive batches of up to `batchSize` samples, keyed by array name (UNNAMED for .npy).
   * Rows are read when the iterator reaches them; each batch is freshly allocated.
   * @throws LowbitError('BAD_OPTION') for a bad batch size or range; LowbitError('NON_FINITE')
   *   naming the array and sample index when a float batch holds NaN or Inf.
   */
  batches(batchSize: number, range?: BatchRange): Iterable<Record<string, NdArray>>;
  /** The samples [start, end) of this source as a new source. @throws LowbitError('BAD_OPTION') */
  slice(start: number, end: number): DataSource;
  /** @internal see RAW_BATCHES */
  readonly [RAW_BATCHES]: (batchSize: number, range?: BatchRange) => Iterable<RawBatch>;
}

/** Anything with a sample count that can be sliced (DataSource, BoundDataSource). */
export interface Sliceable<T> {
  readonly count: number;
  slice(start: number, end: number): T;
}

/**
 * Opens a .npy (one unnamed array) or .npz (named arrays) as a DataSource; the format is sniffed
 * from the magic bytes, not the extension.
 * @throws LowbitError('FILE_NOT_FOUND') if missing; LowbitError('BAD_DATA') naming the file if it is
 *   neither format, is damaged, holds no arrays or a 0-d array; LowbitError('DATA_MISMATCH') if the
 *   arrays of an .npz have different sample counts.
 */
export function openDataSource(path: string): DataSource {
  const fd = openFile(path, 'r');
  let magic: Uint8Array;
  try {
    magic = readAt(fd, 0, 4, path);
  } catch {
    magic = new Uint8Array(0);
  } finally {
    closeSync(fd);
  }
  const isZip = magic[0] === 0x50 && magic[1] === 0x4b; // 'PK'
  const isNpy = magic[0] === 0x93 && magic[1] === 0x4e; // '\x93N'
  if (isNpy) return makeSource(path, 'npy', [{ key: UNNAMED, reader: openNpy(path) }]);
  if (isZip) {
    const npz = openNpz(path);
    return makeSource(path, 'npz', npz.names.map((name) => ({ key: name, name, reader: npz.array(name) })));
  }
  throw new LowbitError('BAD_DATA', `${path}: not a NumPy .npy or .npz file`, 'save calibration data with numpy.save (one input) or numpy.savez (one array per model input)');
}

/**
 * A DataSource over arrays already in memory (e.g. MNIST images). Key UNNAMED ('') makes it
 * behave like a .npy source. Batches are copies.
 * @throws as openDataSource for empty input, 0-d arrays or unequal sample counts.
 */
export function dataSourceFromArrays(arrays: Record<string, NdArray>, label = '<memory>'): DataSource {
  const feeds = Object.entries(arrays).map(([key, arr]) => ({
    key,
    ...(key === UNNAMED ? {} : { name: key }),
    reader: memoryRowReader(arr, key === UNNAMED ? label : `${label} (array '${key}')`),
  }));
  if (feeds.some((f) => f.key === UNNAMED) && feeds.length > 1) {
    throw new LowbitError('BAD_DATA', `${label}: an unnamed array ('') must be the only array`);
  }
  return makeSource(label, 'memory', feeds);
}

/**
 * Splits off the last samples (e.g. to verify on data not used for calibration).
 * `{count}` holds out exactly that many; `{fraction}` holds out round(fraction * count).
 * @throws LowbitError('BAD_OPTION') for a negative/too large count or a fraction outside [0, 1].
 */
export function split<T extends Sliceable<T>>(ds: T, holdout: { count: number } | { fraction: number }): { head: T; tail: T } {
  let n: number;
  if ('count' in holdout) {
    n = holdout.count;
    if (!Number.isSafeInteger(n) || n < 0 || n > ds.count) {
      throw new LowbitError('BAD_OPTION', `cannot hold out ${n} of ${ds.count} samples`, `use a whole number between 0 and ${ds.count}`);
    }
  } else {
    const f = holdout.fraction;
    if (!(f >= 0 && f <= 1)) throw new LowbitError('BAD_OPTION', `hold-out fraction must be within [0, 1], got ${f}`);
    n = Math.round(f * ds.count);
  }
  return { head: ds.slice(0, ds.count - n), tail: ds.slice(ds.count - n, ds.count) };
}

/** One array being streamed: its batch key, its name for messages, and where rows come from. */
export interface Feed {
  key: string;
  name?: string;
  reader: RowReader;
}

function makeSource(path: string, kind: DataSource['kind'], feeds: Feed[]): DataSource {
  if (feeds.length === 0) throw new LowbitError('BAD_DATA', `${path}: holds no arrays`, 'save at least one array with numpy.savez');
  for (const f of feeds) {
    if (f.reader.shape.length === 0) {
      throw new LowbitError('BAD_DATA', `${path}: ${describe(f)} is a 0-d scalar; calibration data needs a leading sample axis`, 'save arrays shaped [samples, ...input dims]');
    }
  }
  const counts = feeds.map((f) => f.reader.count);
  if (counts.some((c) => c !== counts[0])) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `${path}: arrays hold different numbers of samples (${feeds.map((f) => `'${f.key}': ${f.reader.count}`).join(', ')})`,
      'axis 0 of every array indexes samples, so all arrays need the same length along axis 0',
    );
  }
  const arrays: ArrayInfo[] = feeds.map((f) => ({ ...(f.name === undefined ? {} : { name: f.name }), dtype: f.reader.dtype, shape: f.reader.shape }));
  const view = (offset: number, count: number): DataSource => ({
    path,
    kind,
    count,
    arrays,
    batches: (batchSize, range) =>
      iterateBatches({ path, offset, count, batchSize, range, dropPartial: false }, (s, n) => {
        const batch: Record<string, NdArray> = {};
        for (const f of feeds) batch[f.key] = checkFinite(f.reader.readRows(s, n), path, describe(f), s);
        return batch;
      }),
    [RAW_BATCHES]: (batchSize, range) =>
      iterateBatches({ path, offset, count, batchSize, range, dropPartial: false }, (s, n) => {
        const batch: Record<string, NdArray> = {};
        for (const f of feeds) batch[f.key] = f.reader.readRows(s, n);
        return { start: s, batch };
      }),
    slice: (start, end) => {
      checkSlice(start, end, count, path);
      return view(offset + start, end - start);
    },
  });
  return view(0, counts[0]!);
}

function describe(f: { key: string; name?: string }): string {
  return f.name === undefined ? 'the array' : `array '${f.name}'`;
}

/** @throws LowbitError('BAD_OPTION') unless 0 <= start <= end <= count (integers). */
export function checkSlice(start: number, end: number, count: number, path: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > count) {
    throw new LowbitError('BAD_OPTION', `${path}: sample range [${start}, ${end}) is outside [0, ${count})`);
  }
}

/** What iterateBatches needs: the view window, the batch policy. */
export interface BatchPlan {
  path: string;
  /** First sample of the view in the underlying arrays. */
  offset: number;
  count: number;
  batchSize: number;
  range: BatchRange | undefined;
  /** Skip a trailing batch shorter than batchSize (models with a fixed batch dimension > 1). */
  dropPartial: boolean;
}

/**
 * Yields `build(absStart, n)` for consecutive batches over the plan's range (absStart = index of the
 * batch's first sample in the underlying arrays), so rows are read only when the iterator reaches
 * them. Options are validated eagerly (when called, not on the first `next()`).
 * @throws LowbitError('BAD_OPTION') for a bad batch size or range.
 */
export function iterateBatches<T>(plan: BatchPlan, build: (absStart: number, n: number) => T): Iterable<T> {
  const { path, offset, count, batchSize, range, dropPartial } = plan;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new LowbitError('BAD_OPTION', `batch size must be a positive integer, got ${batchSize}`);
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? count;
  checkSlice(start, end, count, path);
  return {
    *[Symbol.iterator]() {
      for (let s = start; s < end; s += batchSize) {
        const n = Math.min(batchSize, end - s);
        if (n < batchSize && dropPartial) return;
        yield build(offset + s, n);
      }
    },
  };
}

/** Bit tests for float16 (exponent all ones = Inf/NaN). */
const nonFiniteAt = (arr: NdArray): number => {
  const d = arr.data;
  if (arr.dtype === 'float32' || arr.dtype === 'float64') {
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i] as number)) return i;
  } else if (arr.dtype === 'float16') {
    for (let i = 0; i < d.length; i++) if (((d[i] as number) & 0x7c00) === 0x7c00) return i;
  }
  return -1;
};

/**
 * Returns `arr` unchanged if every float element is finite.
 * @param absStart sample index (in the file) of row 0 of `arr`.
 * @throws LowbitError('NON_FINITE') naming the file, `what` and the sample index.
 */
export function checkFinite(arr: NdArray, path: string, what: string, absStart: number, note = ''): NdArray {
  const i = nonFiniteAt(arr);
  if (i < 0) return arr;
  const perSample = Math.max(1, shapeSize(arr.shape.slice(1)));
  const h = arr.data[i] as number;
  const v = arr.dtype === 'float16' ? (h & 0x3ff ? NaN : h & 0x8000 ? -Infinity : Infinity) : h;
  throw new LowbitError(
    'NON_FINITE',
    `${path}: ${what}, sample ${absStart + Math.floor(i / perSample)} contains ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} (element ${i % perSample} of shape ${fmtShape(arr.shape.slice(1))})${note}`,
    'clean the data (e.g. np.nan_to_num) or drop that sample',
  );
}
