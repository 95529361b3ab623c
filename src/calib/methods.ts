// Calibration methods and their options: names, defaults, validation. An option given for a method
// that does not use it is an error, never ignored. Pure; pipeline/options.ts and calibrate.ts use it.

import { LowbitError } from '../errors.js';
import { checkNumBins, DEFAULT_NUM_BINS } from './histogram-observer.js';
import { checkPercentile, DEFAULT_PERCENTILE } from './percentile.js';
import { DEFAULT_ENTROPY_BINS, MIN_ENTROPY_BINS } from './entropy.js';

/** How observed activations become quantization ranges. */
export const CALIBRATION_METHODS = ['minmax', 'percentile', 'entropy', 'mse'] as const;
export type CalibrationMethod = (typeof CALIBRATION_METHODS)[number];

/** A calibration method and its options, as callers give them (all optional). */
export interface CalibrationSettings {
  /** Default 'minmax'. */
  method?: CalibrationMethod;
  /** minmax: average per-batch min/max instead of the running extremes (ORT's moving_average). */
  movingAverage?: boolean;
  /** minmax with movingAverage: exponential weight of each new batch in (0, 1]; absent: the plain mean. */
  averagingConstant?: number;
  /** percentile: % of values the range keeps, in (0, 100] (default 99.999, ORT's). */
  percentile?: number;
  /** percentile, entropy, mse: histogram bins (default 2048; entropy: 4096, at least 512). */
  numBins?: number;
}

/** Settings with the method's defaults filled in; only the method's own options are present. */
export type ResolvedCalibration =
  | { method: 'minmax'; movingAverage: boolean; averagingConstant?: number }
  | { method: 'percentile'; percentile: number; numBins: number }
  | { method: 'entropy'; numBins: number }
  | { method: 'mse'; numBins: number };

type OptionKey = Exclude<keyof CalibrationSettings, 'method'>;

/** Which methods take each option, and its command-line flag (named in errors). */
const OPTIONS: Readonly<Record<OptionKey, { methods: readonly CalibrationMethod[]; flag: string }>> = {
  movingAverage: { methods: ['minmax'], flag: '--moving-average' },
  averagingConstant: { methods: ['minmax'], flag: '--averaging-constant' },
  percentile: { methods: ['percentile'], flag: '--percentile' },
  numBins: { methods: ['percentile', 'entropy', 'mse'], flag: '--num-bins' },
};

/** The option keys of CalibrationSettings besides `method`. */
export const CALIBRATION_OPTION_KEYS = Object.keys(OPTIONS) as readonly OptionKey[];

/** Options of `settings` that are set (not undefined), besides `method`. */
export function givenCalibrationOptions(settings: CalibrationSettings): OptionKey[] {
  return CALIBRATION_OPTION_KEYS.filter((k) => settings[k] !== undefined);
}

function bad(message: string, hint?: string): LowbitError {
  return new LowbitError('BAD_OPTION', message, hint);
}

/**
 * Checks a method and its options and fills in the defaults.
 * @throws LowbitError BAD_OPTION for an unknown method (listing the valid ones), an option the method does
 *   not use, averagingConstant without movingAverage, or a value of the wrong type or out of range.
 */
export function resolveCalibration(settings: CalibrationSettings = {}): ResolvedCalibration {
  const method = settings.method ?? 'minmax';
  if (!(CALIBRATION_METHODS as readonly string[]).includes(method)) {
    throw bad(`unknown calibration method ${JSON.stringify(method)}`, `use one of ${CALIBRATION_METHODS.join(', ')}`);
  }
  for (const key of givenCalibrationOptions(settings)) {
    const o = OPTIONS[key];
    if (!o.methods.includes(method)) {
      throw bad(
        `${key} (${o.flag}) is an option of the ${o.methods.join(', ')} method${o.methods.length > 1 ? 's' : ''}, not of ${method}`,
        `drop ${o.flag}, or pass --method ${o.methods[0]}`,
      );
    }
  }
  switch (method) {
    case 'minmax': {
      const { movingAverage, averagingConstant } = settings;
      if (movingAverage !== undefined && typeof movingAverage !== 'boolean') throw bad(`movingAverage must be true or false (got ${JSON.stringify(movingAverage)})`);
      if (averagingConstant !== undefined) {
        if (movingAverage !== true) throw bad('averagingConstant (--averaging-constant) needs movingAverage (--moving-average)', 'add --moving-average, or drop --averaging-constant');
        if (typeof averagingConstant !== 'number' || !(averagingConstant > 0 && averagingConstant <= 1)) {
          throw bad(`averagingConstant must be a number in (0, 1] (got ${JSON.stringify(averagingConstant)})`, 'use e.g. 0.01 (ORT\'s default weight), or leave it out for the plain mean');
        }
        return { method, movingAverage: true, averagingConstant };
      }
      return { method, movingAverage: movingAverage === true };
    }
    case 'percentile': {
      const percentile = settings.percentile ?? DEFAULT_PERCENTILE;
      checkPercentile(percentile);
      const numBins = settings.numBins ?? DEFAULT_NUM_BINS;
      checkNumBins(numBins);
      return { method, percentile, numBins };
    }
    case 'entropy': {
      const numBins = settings.numBins ?? DEFAULT_ENTROPY_BINS;
      checkNumBins(numBins, MIN_ENTROPY_BINS, ' for entropy calibration (twice the 256 levels of an 8-bit grid)');
      return { method, numBins };
    }
    case 'mse': {
      const numBins = settings.numBins ?? DEFAULT_NUM_BINS;
      checkNumBins(numBins);
      return { method, numBins };
    }
  }
}
