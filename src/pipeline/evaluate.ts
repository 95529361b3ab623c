// Evaluation of a model on a data stream: top-1 accuracy against labels and, against a reference
// model, top-1 agreement and output fidelity (SQNR, cosine, max abs error), accumulated per batch
// so memory does not grow with the sample count. File/CLI parsing lives in cli/.

import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import { ErrorStats, type ErrorSummary } from '../quant/metrics.js';
import { argmaxLastAxis, asNumbers, fmtDims } from '../runtime/arrays.js';
import { batchSizeOf, runBatch } from '../runtime/batching.js';
import { Session } from '../runtime/session.js';
import type { ProgressEvent } from './options.js';

/** What evaluate() reads: a DataSource or BoundDataSource (batches keyed by model input name). */
export interface EvalData {
  readonly count: number;
  batches(batchSize: number): Iterable<Record<string, NdArray>> | AsyncIterable<Record<string, NdArray>>;
}

export interface EvaluateOptions {
  /** Model to evaluate: file path, bytes, or an open Session (left open). */
  model: string | Uint8Array | Session;
  /** Samples, keyed by model input name (bind files with data/calib-data.ts bindToModelInputs). */
  data: EvalData;
  /**
   * One class label per sample: integers ([N] or [N, 1]) or one-hot / scores ([N, C], argmax taken).
   * Enables `accuracy`.
   */
  labels?: Int32Array | NdArray;
  /** Reference model (usually the float original): enables agreement, sqnrDb, cosine, maxAbsError. */
  reference?: string | Uint8Array | Session;
  /** Samples per run (default 1; a BoundDataSource substitutes the model's fixed batch size). */
  batch?: number;
  /** ORT intra-op threads per session (default: Session's, 2). */
  threads?: number;
  /** Called after each batch with stage 'evaluate'. */
  onProgress?: (event: ProgressEvent) => void;
}

export interface EvaluateResult {
  /** Samples evaluated (a model with a fixed batch size > 1 skips a trailing partial batch). */
  samples: number;
  /** Top-1 accuracy (0..1) of the first output vs the labels. */
  accuracy?: number;
  /** Top-1 accuracy of the reference model, when both labels and a reference are given. */
  referenceAccuracy?: number;
  /**
   * Fraction (0..1) of top-1 predictions equal to the reference's: per sample, or per position for
   * outputs like [N, T, classes]. Only for a classifier-like first output (rank 2 or 3 with last
   * axis > 1, or integer class ids); not for maps such as [N, 1, H, W].
   */
  agreement?: number;
  /** Fidelity over all outputs together vs the reference (see ErrorStats). */
  sqnrDb?: number;
  cosine?: number;
  maxAbsError?: number;
  mse?: number;
  /** The same metrics per output name. */
  perOutput?: Record<string, ErrorSummary>;
}

const INT_DTYPES = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64']);

/**
 * Top-1 predictions of a batch of output `arr` holding `samples` samples: argmax over the last axis
 * of a float output whose last axis is > 1, or the values of an integer output with one value per
 * sample; undefined when the output is not classifier-like.
 */
export function top1(arr: NdArray, samples: number): Int32Array | undefined {
  const per = samples > 0 ? arr.data.length / samples : 0;
  if (INT_DTYPES.has(arr.dtype) && per === 1) return Int32Array.from(asNumbers(arr));
  const last = arr.shape[arr.shape.length - 1] ?? 1;
  if (INT_DTYPES.has(arr.dtype) || arr.dtype === 'bool' || last <= 1) return undefined;
  // Rank-4+ float outputs are maps (segmentation, detection heat maps): an argmax over their last
  // (spatial) axis is not a class decision.
  if (arr.shape.length > 3) return undefined;
  return argmaxLastAxis(arr);
}

/**
 * Labels as one class index per sample.
 * @throws LowbitError('BAD_DATA') for labels that are not class indices / one-hot rows.
 */
export function normalizeLabels(labels: Int32Array | NdArray): Int32Array {
  if (labels instanceof Int32Array) return labels;
  const { shape } = labels;
  const rank = shape.length;
  if (rank === 2 && shape[1]! > 1) return argmaxLastAxis(labels);
  if (rank === 1 || (rank === 2 && shape[1] === 1)) {
    const values = asNumbers(labels);
    const out = new Int32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
        throw new LowbitError('BAD_DATA', `label ${i} is ${v}, not a class index`, 'labels are non-negative integers (or one-hot rows [N, classes])');
      }
      out[i] = v;
    }
    return out;
  }
  throw new LowbitError('BAD_DATA', `labels have shape ${fmtDims(shape)}`, 'pass one integer label per sample ([N]) or one-hot rows ([N, classes])');
}

async function open(m: string | Uint8Array | Session, threads: number | undefined): Promise<{ s: Session; own: boolean }> {
  if (m instanceof Session) return { s: m, own: false };
  return { s: await Session.create(m, threads === undefined ? {} : { threads }), own: true };
}

/**
 * Runs the model (and the reference) over `data` and scores it.
 * @throws LowbitError('DATA_MISMATCH') when the label count differs from the sample count, or the
 *   reference lacks an output / gives it another shape; LowbitError('UNSUPPORTED_MODEL') when
 *   labels are given but the first output is not a classifier output with one prediction per
 *   sample; LowbitError('BAD_DATA') for bad labels or no samples; LowbitError('RUNTIME') from ORT.
 */
export async function evaluate(opts: EvaluateOptions): Promise<EvaluateResult> {
  const { data } = opts;
  const batch = opts.batch ?? 1;
  if (!Number.isSafeInteger(batch) || batch < 1) throw new LowbitError('BAD_OPTION', `batch must be a positive integer, got ${batch}`);
  if (data.count === 0) throw new LowbitError('BAD_DATA', 'the evaluation data holds 0 samples', 'provide at least one sample');
  const labels = opts.labels === undefined ? undefined : normalizeLabels(opts.labels);
  if (labels && labels.length !== data.count) {
    throw new LowbitError('DATA_MISMATCH', `${labels.length} labels for ${data.count} samples`, 'give exactly one label per sample, in the order of the data');
  }
  const model = await open(opts.model, opts.threads);
  let ref: { s: Session; own: boolean } | undefined;
  try {
    ref = opts.reference === undefined ? undefined : await open(opts.reference, opts.threads);
    return await score(model.s, ref?.s, data, batch, labels, opts.onProgress);
  } finally {
    if (model.own) await model.s.release();
    if (ref?.own) await ref.s.release();
  }
}

async function score(
  model: Session,
  ref: Session | undefined,
  data: EvalData,
  batch: number,
  labels: Int32Array | undefined,
  onProgress: ((e: ProgressEvent) => void) | undefined,
): Promise<EvaluateResult> {
  const outputs = model.outputNames;
  const first = outputs[0]!;
  if (ref) {
    const missing = outputs.filter((o) => !ref.outputNames.includes(o));
    if (missing.length) {
      throw new LowbitError('DATA_MISMATCH', `the reference ${ref.label} has no output ${missing.map((m) => `'${m}'`).join(', ')} (its outputs: ${ref.outputNames.join(', ')})`, 'compare a model with the model it was derived from');
    }
  }
  const total = new ErrorStats();
  const per = new Map(outputs.map((o) => [o, new ErrorStats()]));
  let samples = 0;
  let correct = 0;
  let refCorrect = 0;
  let agree = 0;
  let positions = 0;
  let classifier = true;
  for await (const feeds of data.batches(batch) as AsyncIterable<Record<string, NdArray>>) {
    const n = batchSizeOf(model.inputs, feeds);
    const out = await runBatch(model, feeds);
    const pred = top1(out[first]!, n);
    if (labels) {
      if (!pred || pred.length !== n) {
        throw new LowbitError('UNSUPPORTED_MODEL', `${model.label}: output '${first}' has shape ${fmtDims(out[first]!.shape)} for ${n} sample(s); top-1 accuracy needs one score row [N, classes] (classes > 1) or one integer class per sample`, 'evaluate without labels (use --reference for fidelity)');
      }
      for (let i = 0; i < n; i++) if (pred[i] === labels[samples + i]) correct++;
    }
    if (ref) {
      const r = await runBatch(ref, feeds, outputs);
      for (const o of outputs) {
        const a = out[o]!;
        const b = r[o]!;
        if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
          throw new LowbitError('DATA_MISMATCH', `output '${o}' has shape ${fmtDims(a.shape)} but the reference's has ${fmtDims(b.shape)}`, 'compare a model with the model it was derived from');
        }
        const bn = asNumbers(b);
        const an = asNumbers(a);
        per.get(o)!.add(bn, an);
        total.add(bn, an);
      }
      const refPred = top1(r[first]!, n);
      if (!pred || !refPred || pred.length !== refPred.length) classifier = false;
      else {
        for (let i = 0; i < pred.length; i++) if (pred[i] === refPred[i]) agree++;
        positions += pred.length;
        if (labels && refPred.length === n) for (let i = 0; i < n; i++) if (refPred[i] === labels[samples + i]) refCorrect++;
      }
    }
    samples += n;
    onProgress?.({ stage: 'evaluate', done: Math.min(samples, data.count), total: data.count });
  }
  const result: EvaluateResult = { samples };
  if (samples === 0) return result;
  if (labels) result.accuracy = correct / samples;
  if (ref) {
    if (classifier && positions > 0) {
      result.agreement = agree / positions;
      if (labels) result.referenceAccuracy = refCorrect / samples;
    }
    const s = total.summary();
    result.sqnrDb = s.sqnrDb;
    result.cosine = s.cosine;
    result.maxAbsError = s.maxAbsError;
    result.mse = s.mse;
    result.perOutput = Object.fromEntries([...per].map(([o, st]) => [o, st.summary()]));
  }
  return result;
}
