// The observer of a calibration method for one tensor. Pure.

import { EntropyObserver } from './entropy.js';
import { resolveCalibration, type CalibrationSettings, type ResolvedCalibration } from './methods.js';
import { MseObserver } from './mse.js';
import { MinMaxObserver, MovingAverageMinMaxObserver, type RangeObserver } from './observer.js';
import { PercentileObserver } from './percentile.js';
import { quantTarget, type QuantTarget } from './target.js';

/**
 * A fresh observer for `tensor`: min-max (running, or moving average), percentile, entropy or MSE.
 * `target` is the grid the range is for (default uint8 asymmetric); the histogram methods use it.
 * @throws LowbitError BAD_OPTION for an unknown method or bad options (see resolveCalibration).
 */
export function createObserver(tensor: string, settings: CalibrationSettings | ResolvedCalibration = {}, target: QuantTarget = quantTarget()): RangeObserver {
  const c = resolveCalibration(settings);
  switch (c.method) {
    case 'minmax':
      return c.movingAverage ? new MovingAverageMinMaxObserver(tensor, c.averagingConstant) : new MinMaxObserver(tensor);
    case 'percentile':
      return new PercentileObserver(tensor, { percentile: c.percentile, numBins: c.numBins, target });
    case 'entropy':
      return new EntropyObserver(tensor, { numBins: c.numBins, target });
    case 'mse':
      return new MseObserver(tensor, { numBins: c.numBins, target });
  }
}
