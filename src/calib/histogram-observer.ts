// The RangeObserver shared by the histogram methods: batches stream into a fixed-size StreamingHistogram;
// range() hands it to the method's range rule. Pure.

import { LowbitError } from '../errors.js';
import { StreamingHistogram, type HistogramView } from './histogram.js';
import { batchMinMax, noDataError, type Range, type RangeObserver } from './observer.js';
import type { QuantTarget } from './target.js';

/** A range rule: the clipping range for a histogram on a target grid (total > 0, width > 0). */
export type HistogramRangeRule = (h: HistogramView, target: QuantTarget) => Range;

/** Bins of the percentile and MSE methods by default (ORT's percentile default, num_bins=2048). */
export const DEFAULT_NUM_BINS = 2048;
/** Bounds on numBins: enough resolution for an 8-bit grid; at most 512 KB per tensor and a range search of well under a second. */
export const MIN_NUM_BINS = 64;
export const MAX_NUM_BINS = 1 << 16;

/**
 * Checks a bin count: an integer in [max(MIN_NUM_BINS, min), MAX_NUM_BINS].
 * @throws LowbitError BAD_OPTION naming `why` when min is raised by a method.
 */
export function checkNumBins(numBins: number, min = MIN_NUM_BINS, why = ''): void {
  const lo = Math.max(MIN_NUM_BINS, min);
  if (typeof numBins !== 'number' || !Number.isInteger(numBins) || numBins < lo || numBins > MAX_NUM_BINS) {
    throw new LowbitError(
      'BAD_OPTION',
      `numBins must be an integer in [${lo}, ${MAX_NUM_BINS}]${why} (got ${JSON.stringify(numBins)})`,
      `use e.g. ${DEFAULT_NUM_BINS}`,
    );
  }
}

/**
 * Observes a tensor into a histogram of `numBins` bins and answers the range `rule` picks from it.
 * Memory: `numBins` float64 counts, whatever the number of samples.
 */
export class HistogramObserver implements RangeObserver {
  readonly tensor: string;
  readonly target: QuantTarget;
  readonly histogram: StreamingHistogram;
  batches = 0;
  private readonly rule: HistogramRangeRule;

  /** @throws LowbitError BAD_OPTION for a bin count outside [MIN_NUM_BINS, MAX_NUM_BINS]. */
  constructor(tensor: string, numBins: number, target: QuantTarget, rule: HistogramRangeRule) {
    checkNumBins(numBins);
    this.tensor = tensor;
    this.target = target;
    this.histogram = new StreamingHistogram(numBins);
    this.rule = rule;
  }

  /** @throws LowbitError NON_FINITE naming the tensor for NaN/Infinity. */
  update(data: Float32Array): void {
    const r = batchMinMax(this.tensor, data);
    this.batches++;
    if (r) this.histogram.add(data, r.min, r.max);
  }

  /**
   * The rule's range; [0, 0] when only empty batches or zeros were seen.
   * @throws LowbitError BAD_DATA when no batch was seen.
   */
  range(): Range {
    if (this.batches === 0) throw noDataError(this.tensor);
    const h = this.histogram;
    if (h.total === 0) return { min: 0, max: 0 };
    if (h.width === 0) return { min: h.min, max: h.max };
    return this.rule(h, this.target);
  }
}
