// Percentile calibration: the range keeps `percentile` % of the values and clips the rarest ones
// (ORT's HistogramCalibrater method='percentile'). Pure.

import { LowbitError } from '../errors.js';
import { DEFAULT_NUM_BINS, HistogramObserver } from './histogram-observer.js';
import { foldAbs, valueAtCount, type HistogramView } from './histogram.js';
import type { Range } from './observer.js';
import { quantTarget, type QuantTarget } from './target.js';

/** ORT's default (create_calibrator: percentile=99.999). */
export const DEFAULT_PERCENTILE = 99.999;

/**
 * The range holding `percentile` % of the histogram's values, for the target grid:
 * - symmetric target: T = that percentile of |x|, range [-T, T] (ORT's symmetric percentile, its default);
 * - asymmetric target, two-sided values: (100 - percentile) / 2 % is cut from each end (ORT's asymmetric
 *   percentile);
 * - asymmetric target, one-sided values (e.g. after Relu): the range includes 0 anyway, so the whole
 *   100 - percentile % is cut from the open end (ORT would spend half of it on the side that is kept).
 * Values are taken as spread evenly inside each bin (linear interpolation); the result is clamped to the
 * observed [min, max], as ORT does.
 */
export function percentileRange(h: HistogramView, percentile: number, target: QuantTarget): Range {
  const tail = h.total * (1 - percentile / 100);
  if (target.symmetric) {
    const t = valueAtCount(foldAbs(h), h.total - tail);
    return { min: Math.max(-t, h.min), max: Math.min(t, h.max) };
  }
  if (h.min >= 0) return { min: h.min, max: valueAtCount(h, h.total - tail) };
  if (h.max <= 0) return { min: valueAtCount(h, tail), max: h.max };
  return { min: valueAtCount(h, tail / 2), max: valueAtCount(h, h.total - tail / 2) };
}

/** Checks a percentile: a number in (0, 100]. @throws LowbitError BAD_OPTION. */
export function checkPercentile(percentile: number): void {
  if (typeof percentile !== 'number' || !(percentile > 0 && percentile <= 100)) {
    throw new LowbitError('BAD_OPTION', `percentile must be a number in (0, 100] (got ${JSON.stringify(percentile)})`, `use e.g. ${DEFAULT_PERCENTILE} (ORT's default) or 99.99`);
  }
}

/** Percentile observer over a fixed-size streaming histogram. */
export class PercentileObserver extends HistogramObserver {
  readonly percentile: number;

  /** @throws LowbitError BAD_OPTION for a percentile outside (0, 100] or a bad bin count. */
  constructor(tensor: string, opts: { percentile?: number; numBins?: number; target?: QuantTarget } = {}) {
    const percentile = opts.percentile ?? DEFAULT_PERCENTILE;
    checkPercentile(percentile);
    super(tensor, opts.numBins ?? DEFAULT_NUM_BINS, opts.target ?? quantTarget(), (h, t) => percentileRange(h, percentile, t));
    this.percentile = percentile;
  }
}
