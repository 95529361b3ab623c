// Calibration: streams batches through the float model with the needed tensors tapped and feeds each
// batch's values to one range observer per tensor; nothing is kept per sample. Node-side (runtime/).

import { createObserver } from '../calib/create.js';
import { resolveCalibration, type CalibrationSettings } from '../calib/methods.js';
import type { Range, RangeObserver } from '../calib/observer.js';
import { quantTarget } from '../calib/target.js';
import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import type { Model } from '../onnx/ir.js';
import { exposeSubgraphValues } from '../passes/taps-subgraph.js';
import { float16ArrayToFloat32 } from '../quant/float16.js';
import { runWithTaps } from '../runtime/tapped.js';

/** Batches keyed by model input name (a BoundDataSource fits). */
export interface CalibrationData {
  /** Samples, when known (for progress). */
  readonly count?: number;
  batches(batchSize: number): Iterable<Record<string, NdArray>> | AsyncIterable<Record<string, NdArray>>;
}

/** Progress after each batch. */
export interface CalibrationProgress {
  batches: number;
  samples: number;
  /** Total samples when the data knows it. */
  total: number | undefined;
}

/**
 * Options of {@link calibrate}: the method and its options (CalibrationSettings: method, movingAverage,
 * averagingConstant, percentile, numBins), the grid the ranges are for, and how to run.
 */
export interface CalibrateOptions extends CalibrationSettings {
  /** Tensors to observe (e.g. planQdq(model).tensors). */
  tensors: readonly string[];
  /**
   * Samples per run (default 16). A moving average averages per run: pass 1 for per-sample averages
   * (what quantize() does).
   */
  batch?: number;
  /** ORT intra-op threads (default 2). */
  threads?: number;
  /** Activation type the ranges are for (default 'uint8'); the histogram methods fit its grid. */
  activationType?: 'uint8' | 'int8' | 'uint16' | 'int16';
  /** Symmetric activation ranges (StaticQuantOptions.symmetricActivations); default false. */
  symmetric?: boolean;
  onProgress?: (p: CalibrationProgress) => void;
  /**
   * Tapped bytes between two full garbage collections (default 16 MiB; Infinity: never force one, which
   * is faster on small models but lets peak RSS creep up with the number of batches). ORT's
   * Node binding returns each batch's taps in new buffers, which V8 otherwise lets pile up.
   */
  gcEveryBytes?: number;
}

/**
 * Default tapped bytes between two garbage collections. ORT's Node binding hands each batch's taps over
 * in new buffers that V8 would otherwise let pile up (tens of MiB, more the longer calibration runs);
 * collecting after every 16 MiB keeps peak RSS independent of the number of samples (bench/calib.ts).
 */
const GC_EVERY_BYTES = 16 * 2 ** 20;

/** A tapped value as float32, or undefined for non-float tensors (those are not ranged). */
function asFloat32(arr: NdArray): Float32Array | undefined {
  if (arr.dtype === 'float32') return arr.data as Float32Array;
  if (arr.dtype === 'float16') return float16ArrayToFloat32(arr.data as Uint16Array);
  if (arr.dtype === 'float64') return Float32Array.from(arr.data as Float64Array);
  return undefined;
}

/**
 * Runs `model` over `data` and returns the observed range of every float tensor in `opts.tensors`
 * (tensors that turn out not to be float are left out of the map). Tensors inside If/Loop/Scan bodies are
 * observed too (every Loop/Scan iteration); one in an If branch no batch took is left out of the map. Memory does not grow with the
 * number of samples: each batch's taps are reduced to running statistics and dropped, and a garbage
 * collection runs after every `gcEveryBytes` (16 MiB) of taps so that the dropped buffers do not pile up.
 * @throws LowbitError BAD_OPTION for a bad batch size, gcEveryBytes, calibration method or option (before anything
 *   runs), or a tensor not in the model; NON_FINITE naming the tensor when the model produces
 *   NaN/Infinity; BAD_DATA when the data has no batches; RUNTIME from ONNX Runtime; data-layer errors
 *   pass through.
 */
export async function calibrate(model: Model, data: CalibrationData, opts: CalibrateOptions): Promise<Map<string, Range>> {
  const batch = opts.batch ?? 16;
  if (!Number.isSafeInteger(batch) || batch < 1) {
    throw new LowbitError('BAD_OPTION', `calibration batch size must be a positive integer, got ${batch}`, 'use e.g. 16');
  }
  const gcEveryBytes = opts.gcEveryBytes ?? GC_EVERY_BYTES;
  if (typeof gcEveryBytes !== 'number' || !(gcEveryBytes > 0)) {
    throw new LowbitError('BAD_OPTION', `gcEveryBytes must be a positive number of bytes, got ${String(gcEveryBytes)}`, 'use e.g. 16777216 (16 MiB), or Infinity to leave collection to V8');
  }
  const settings = resolveCalibration({
    method: opts.method,
    movingAverage: opts.movingAverage,
    averagingConstant: opts.averagingConstant,
    percentile: opts.percentile,
    numBins: opts.numBins,
  });
  const target = quantTarget(opts.activationType ?? 'uint8', opts.symmetric === true);
  const observers = new Map<string, RangeObserver>();
  for (const t of opts.tensors) if (!observers.has(t)) observers.set(t, createObserver(t, settings, target));
  const nonFloat = new Set<string>();
  // Tensors inside If/Loop/Scan bodies are threaded out to main-graph outputs (passes/taps-subgraph.ts). An empty
  // value there is an If branch that did not run: skipped, and a tensor never seen non-empty gets no range.
  const exposed = exposeSubgraphValues(model, [...observers.keys()]);
  for (const t of exposed.untapped) nonFloat.add(t);
  const seen = new Set<string>();
  const total = data.count;
  let samples = 0;
  const runs = await runWithTaps(
    exposed.model,
    [...new Set(exposed.carriers.values())],
    data.batches(batch),
    (run) => {
      for (const [t, obs] of observers) {
        const carrier = exposed.carriers.get(t);
        const v = carrier === undefined ? undefined : run.taps[carrier];
        const f = v ? asFloat32(v) : undefined;
        if (!f) nonFloat.add(t);
        else if (!exposed.inBodies.has(t)) obs.update(f);
        else if (f.length) {
          obs.update(f);
          seen.add(t);
        }
      }
      samples += run.size;
      opts.onProgress?.({ batches: run.index + 1, samples, total });
    },
    { threads: opts.threads ?? 2, outputs: false, label: 'calibration', gcEveryBytes },
  );
  if (runs.batches === 0) {
    throw new LowbitError('BAD_DATA', 'calibration data produced no batches', 'provide at least one calibration sample');
  }
  const ranges = new Map<string, Range>();
  for (const [t, obs] of observers) if (!nonFloat.has(t) && (!exposed.inBodies.has(t) || seen.has(t))) ranges.set(t, obs.range());
  return ranges;
}
