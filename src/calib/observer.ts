// Range observers for static-quantization calibration: streaming per-tensor statistics whose memory
// does not grow with the number of samples. Pure; imported by pipeline/calibrate.ts and above.

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

/** Observer kinds {@link createObserver} knows. */
export type ObserverKind = 'minmax' | 'moving-average-minmax';

/** Options of {@link createObserver}. */
export interface ObserverOptions {
  /** Moving-average weight of each new batch's min/max (moving-average-minmax only; ORT's default 0.01). */
  averagingConstant?: number;
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

function noData(tensor: string): LowbitError {
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
    if (this.batches === 0) throw noData(this.tensor);
    return this.min <= this.max ? { min: this.min, max: this.max } : { min: 0, max: 0 };
  }
}

/**
 * Exponential moving average of per-batch min and max (ORT's MinMax calibration with
 * moving_average): the first batch sets the range, each later one moves it by `averagingConstant`
 * towards its own min/max, so rare outliers widen the range less than with a plain running min/max.
 */
export class MovingAverageMinMaxObserver implements RangeObserver {
  readonly tensor: string;
  batches = 0;
  private readonly c: number;
  private min: number | undefined;
  private max: number | undefined;

  /** @throws LowbitError BAD_OPTION unless 0 < averagingConstant <= 1. */
  constructor(tensor: string, averagingConstant = 0.01) {
    if (!(averagingConstant > 0 && averagingConstant <= 1)) {
      throw new LowbitError('BAD_OPTION', `averaging constant ${averagingConstant} is outside (0, 1]`, 'use a small weight such as 0.01');
    }
    this.tensor = tensor;
    this.c = averagingConstant;
  }

  update(data: Float32Array): void {
    const r = batchMinMax(this.tensor, data);
    this.batches++;
    if (!r) return;
    if (this.min === undefined || this.max === undefined) {
      this.min = r.min;
      this.max = r.max;
      return;
    }
    this.min += this.c * (r.min - this.min);
    this.max += this.c * (r.max - this.max);
  }

  range(): Range {
    if (this.batches === 0) throw noData(this.tensor);
    return this.min === undefined || this.max === undefined ? { min: 0, max: 0 } : { min: this.min, max: this.max };
  }
}

const FACTORIES: Readonly<Record<ObserverKind, (tensor: string, opts: ObserverOptions) => RangeObserver>> = {
  minmax: (t) => new MinMaxObserver(t),
  'moving-average-minmax': (t, o) => new MovingAverageMinMaxObserver(t, o.averagingConstant),
};

/**
 * An observer of `kind` for `tensor`.
 * @throws LowbitError BAD_OPTION for an unknown kind or bad options.
 */
export function createObserver(kind: ObserverKind, tensor: string, opts: ObserverOptions = {}): RangeObserver {
  const make = Object.hasOwn(FACTORIES, kind) ? FACTORIES[kind] : undefined;
  if (!make) {
    throw new LowbitError('BAD_OPTION', `unknown calibration method '${String(kind)}'`, `use one of ${Object.keys(FACTORIES).join(', ')}`);
  }
  return make(tensor, opts);
}
