// The range-observer contract of static-quantization calibration (streaming per-tensor statistics whose
// memory does not grow with the number of samples) and the min-max observers. The histogram observers
// are in percentile.ts, entropy.ts and mse.ts; create.ts picks one. Pure.

import { LowbitError } from '../errors.js';

/** A float range seen on a tensor. */
export interface Range {
  min: number;
  max: number;
}

/**
 * Streams the values of one tensor, batch by batch, and answers the range to quantize it with.
 * Histogram-based methods (percentile, entropy, MSE) implement the same interface: they keep a
 * fixed-size histogram in `update` and choose the range in `range()`.
 */
export interface RangeObserver {
  /** The tensor observed (used in error messages). */
  readonly tensor: string;
  /** Batches seen so far (empty batches included). */
  readonly batches: number;
  /**
   * Adds one batch of values.
   * @throws LowbitError NON_FINITE naming the tensor when a value is NaN or infinite.
   */
  update(data: Float32Array): void;
  /**
   * The range chosen from everything seen. A tensor whose batches were all empty has range [0, 0].
   * @throws LowbitError BAD_DATA when no batch was seen at all.
   */
  range(): Range;
}

/** Min and max of one batch, or undefined for an empty one; throws NON_FINITE naming `tensor`. */
export function batchMinMax(tensor: string, data: Float32Array): Range | undefined {
  const n = data.length;
  if (n === 0) return undefined;
  let mn = Infinity;
  let mx = -Infinity;
  let acc = 0; // x - x is NaN exactly for NaN/Inf, so one add per element finds them
  for (let i = 0; i < n; i++) {
    const v = data[i]!;
    acc += v - v;
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  if (acc !== 0) {
    let i = 0;
    while (Number.isFinite(data[i]!)) i++;
    throw new LowbitError(
      'NON_FINITE',
      `activation '${tensor}' holds ${data[i]} (element ${i} of a batch) during calibration`,
      'the model produces NaN/Infinity on this calibration data: check the data (scaling, padding) or exclude the nodes that produce this tensor',
    );
  }
  return { min: mn, max: mx };
}

/** The BAD_DATA error of `range()` on an observer that saw no batch. */
export function noDataError(tensor: string): LowbitError {
  return new LowbitError(
    'BAD_DATA',
    `no values of tensor '${tensor}' were observed`,
    'calibration must run at least one batch through the model',
  );
}

/** Running minimum and maximum over every batch (ORT's MinMax calibration). */
export class MinMaxObserver implements RangeObserver {
  readonly tensor: string;
  batches = 0;
  private min = Infinity;
  private max = -Infinity;

  constructor(tensor: string) {
    this.tensor = tensor;
  }

  update(data: Float32Array): void {
    const r = batchMinMax(this.tensor, data);
    this.batches++;
    if (!r) return;
    if (r.min < this.min) this.min = r.min;
    if (r.max > this.max) this.max = r.max;
  }

  range(): Range {
    if (this.batches === 0) throw noDataError(this.tensor);
    return this.min <= this.max ? { min: this.min, max: this.max } : { min: 0, max: 0 };
  }
}

/**
 * Moving average of per-batch min and max (ORT's MinMaxCalibrater with moving_average=True).
 * - Without `averagingConstant`: the arithmetic mean of every batch's min and of every batch's max. This is
 *   what ORT computes by default (max_intermediate_outputs unset: one np.mean over all runs' ReduceMin /
 *   ReduceMax outputs).
 * - With `averagingConstant` c: an exponential moving average, min += c * (batchMin - min), started by the
 *   first batch (ORT's merge_range between chunks of runs; pytorch's MovingAverageMinMaxObserver per batch).
 * Either way rare outlier batches widen the range less than a running min/max. "Batch" means one
 * `update` call: the result depends on how samples are grouped (quantize() feeds one sample per batch).
 * Empty batches are skipped. State: a few numbers.
 */
export class MovingAverageMinMaxObserver implements RangeObserver {
  readonly tensor: string;
  batches = 0;
  /** undefined: arithmetic mean. */
  readonly averagingConstant: number | undefined;
  private min: number | undefined;
  private max: number | undefined;
  /** Mean mode: sums of per-batch extremes and the batches with values. */
  private sumMin = 0;
  private sumMax = 0;
  private counted = 0;

  /** @throws LowbitError BAD_OPTION unless averagingConstant is undefined or in (0, 1]. */
  constructor(tensor: string, averagingConstant?: number) {
    if (averagingConstant !== undefined && !(averagingConstant > 0 && averagingConstant <= 1)) {
      throw new LowbitError('BAD_OPTION', `averaging constant ${averagingConstant} is outside (0, 1]`, 'use a small weight such as 0.01, or none for the plain mean of per-batch min/max');
    }
    this.tensor = tensor;
    this.averagingConstant = averagingConstant;
  }

  update(data: Float32Array): void {
    const r = batchMinMax(this.tensor, data);
    this.batches++;
    if (!r) return;
    this.counted++;
    const c = this.averagingConstant;
    if (c === undefined) {
      this.sumMin += r.min;
      this.sumMax += r.max;
    } else if (this.min === undefined || this.max === undefined) {
      this.min = r.min;
      this.max = r.max;
    } else {
      this.min += c * (r.min - this.min);
      this.max += c * (r.max - this.max);
    }
  }

  range(): Range {
    if (this.batches === 0) throw noDataError(this.tensor);
    if (this.counted === 0) return { min: 0, max: 0 };
    if (this.averagingConstant === undefined) return { min: this.sumMin / this.counted, max: this.sumMax / this.counted };
    return { min: this.min!, max: this.max! };
  }
}
