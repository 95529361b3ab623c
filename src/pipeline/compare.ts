// Where precision was lost: runs a static (QDQ) quantized model and its float original on the same inputs
// and measures, per quantized activation, the error it carries (accumulated) and the error its own
// quantization adds (local), plus every quantized weight against its float source. Streaming: each batch's
// taps are folded into running sums and dropped. Rendering lives in report/compare-report.ts.
//
// Definitions (for a quantized tensor t with scale s and zero point z, f = t in the float model):
// - accumulated SQNR = 10·log10(Σ f² / Σ (f − d)²), d = the quantized model's DequantizeLinear output for
//   t (its integer tensor dequantized), both models fed the same inputs: all error up to and including t.
// - local SQNR = the same with d = DequantizeLinear(QuantizeLinear(f, s, z), s, z): the rounding and
//   clipping error that quantizing t alone adds, given exact float inputs.
// - clipped fraction = share of f's elements QuantizeLinear saturates (roundHalfEven(f/s) + z outside
//   [qmin, qmax]); quant range = [(qmin − z)·s, (qmax − z)·s]; float range = [min f, max f].
// Sums run over every element of every sample.

import type { DataSource } from '../data/calib-data.js';
import { bindToModelInputs } from '../data/calib-data.js';
import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import { Model } from '../onnx/ir.js';
import { ActivationErrorStats, mapQdq, weightError, type ActivationLink } from '../passes/qdq-map.js';
import type { QuantArray } from '../quant/dtypes.js';
import { float16ArrayToFloat32 } from '../quant/float16.js';
import { ErrorStats } from '../quant/metrics.js';
import { asNumbers, fmtDims } from '../runtime/arrays.js';
import { batchSizeOf } from '../runtime/batching.js';
import type { ValueMeta } from '../runtime/session.js';
import { TappedSession, modelProtoOf, type ModelRef } from '../runtime/tapped.js';
import { top1, type EvalData } from './evaluate.js';
import type { ProgressEvent } from './options.js';

/** Options of {@link compare}. */
export interface CompareOptions {
  /** The float model: path, bytes, ModelProto or Model. */
  float: ModelRef;
  /** The quantized (QDQ) model made from it. */
  quant: ModelRef;
  /**
   * Inputs: batches keyed by model input name (a BoundDataSource), or an unbound DataSource (opened
   * .npy/.npz), which is bound to the float model's inputs here.
   */
  data: EvalData | DataSource;
  /** Samples per run (default 1, as the taps of a batch are all held at once; a BoundDataSource substitutes the model's fixed batch size). */
  batch?: number;
  /** ORT intra-op threads per session (default 2). */
  threads?: number;
  /** Called after each batch with stage 'compare'. */
  onProgress?: (event: ProgressEvent) => void;
}

/** One quantized activation, float vs quantized model. */
export interface LayerComparison {
  /** The tensor's name in the float model. */
  tensor: string;
  /** The float model's node producing it ('' for a graph input) and its op type ('input' for a graph input). */
  node: string;
  opType: string;
  /** The integer type of the tensor in the quantized model. */
  qtype: string;
  /** SQNR (dB) of the float tensor vs QDQ(float tensor) with the quantized model's scale / zero point. */
  localSqnrDb: number;
  /** SQNR (dB) of the float tensor vs the quantized model's dequantized tensor, both models on the same inputs. */
  accumulatedSqnrDb: number;
  /** Cosine similarity of the same two tensors as accumulatedSqnrDb. */
  cosine: number;
  /** [min, max] of the float tensor over the data. */
  floatRange: [number, number];
  /** [min, max] of the float values the integer range covers. */
  quantRange: [number, number];
  /** Share (0..1) of float values outside the quantized range (saturated by QuantizeLinear). */
  clippedFraction: number;
}

/** One quantized weight (or other quantized constant) vs its float source. */
export interface WeightComparison {
  /** The float constant it was compared with (in the float model, or its preprocessed form, e.g. `W_bn_folded`). */
  name: string;
  /** The node reading it in the quantized model, and its op type. */
  node: string;
  opType: string;
  /** int8, uint8, int4, ... */
  qtype: string;
  /** SQNR (dB) of the float weight vs its dequantized values. */
  sqnrDb: number;
  /** The output channel with the lowest SQNR (null for scalars and vectors). */
  worstChannel: number | null;
  worstChannelSqnrDb: number | null;
}

/** Fidelity of the model outputs (all outputs together, as evaluate() measures it). */
export interface OutputComparison {
  sqnrDb: number;
  cosine: number;
  maxAbsError: number;
  /** Top-1 agreement of the first output, for classifier-like outputs only (evaluate()'s rule). */
  agreement?: number;
}

/** What {@link compare} measured. Plain data; `layers` and `weights` are sorted worst first. */
export interface CompareResult {
  samples: number;
  output: OutputComparison;
  /** Every mapped activation, by local SQNR ascending (ties: accumulated SQNR). */
  layers: LayerComparison[];
  /** Every mapped weight, by SQNR ascending. */
  weights: WeightComparison[];
  /** What was not compared, and why. */
  notes: string[];
}

const isUnbound = (d: EvalData | DataSource): d is DataSource => 'arrays' in d && 'kind' in d;

/** Sort key: NaN (broken) first, then ascending; +Infinity (exact) last. */
function worstFirst(a: number, b: number): number {
  const na = Number.isNaN(a);
  const nb = Number.isNaN(b);
  if (na || nb) return na === nb ? 0 : na ? -1 : 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

/** A tapped value as float32, or undefined for non-float tensors. */
function asFloat32(arr: NdArray): Float32Array | undefined {
  if (arr.dtype === 'float32') return arr.data as Float32Array;
  if (arr.dtype === 'float16') return float16ArrayToFloat32(arr.data as Uint16Array);
  if (arr.dtype === 'float64') return Float32Array.from(arr.data as Float64Array);
  return undefined;
}

const INTEGER_TAPS = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32']);

const describeInput = (m: ValueMeta): string => `'${m.name}' ${m.type || '?'} ${fmtDims(m.dims)}`;

/** @throws LowbitError DATA_MISMATCH when the two models do not take the same inputs. */
function checkSameInputs(float: TappedSession, quant: TappedSession): void {
  const f = float.session.inputs;
  const q = quant.session.inputs;
  const byName = new Map(q.map((m) => [m.name, m]));
  const differs =
    f.length !== q.length ||
    f.some((m) => {
      const o = byName.get(m.name);
      if (!o || o.type !== m.type || o.dims.length !== m.dims.length) return true;
      return m.dims.some((d, i) => typeof d === 'number' && typeof o.dims[i] === 'number' && d !== o.dims[i]);
    });
  if (differs) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `the two models take different inputs: float ${f.map(describeInput).join(', ')}; quantized ${q.map(describeInput).join(', ')}`,
      'compare a quantized model with the float model it was made from',
    );
  }
  const missing = quant.outputNames.filter((o) => !float.outputNames.includes(o));
  if (missing.length) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `the float model has no output ${missing.map((m) => `'${m}'`).join(', ')} (its outputs: ${float.outputNames.join(', ')})`,
      'compare a quantized model with the float model it was made from',
    );
  }
}

/** Why `model` is not a QDQ model, as an error (with a hint fitting what it is). */
function notQuantized(label: string, quant: Model, float: Model): LowbitError {
  const ops = new Set(quant.graph.nodes.map((n) => n.opType ?? ''));
  const dynamic = [...ops].filter((o) => /^(DynamicQuantize|MatMulInteger|ConvInteger|QLinear|QOrdered|MatMulNBits$|MatMulBnb4$|GatherBlockQuantized$)/.test(o));
  const swapped = float.graph.nodes.some((n) => n.opType === 'DequantizeLinear');
  const hint = dynamic.length
    ? `it uses ${dynamic.slice(0, 3).join(', ')}: compare reads static QDQ models (lowbit quantize --mode static); for other quantized models use \`lowbit eval QUANT --reference FLOAT\``
    : swapped
      ? 'the first model has DequantizeLinear nodes: pass the float model first, then the quantized one'
      : 'pass a model quantized with `lowbit quantize --mode static` (QuantizeLinear/DequantizeLinear pairs)';
  return new LowbitError('UNSUPPORTED_MODEL', `${label} has no DequantizeLinear node: it is not a static (QDQ) quantized model`, hint);
}

/**
 * Compares a static (QDQ) quantized model with its float original, layer by layer, on `data` (see the
 * module comment for the definitions). Both models run in ONNX Runtime with the mapped tensors tapped:
 * the float tensors in the float model, the integer tensors (QuantizeLinear outputs, which keep ORT's
 * fusions intact) in the quantized one. Memory does not grow with the number of samples.
 * @throws LowbitError UNSUPPORTED_MODEL when `quant` has no DequantizeLinear node; DATA_MISMATCH when the
 *   models take different inputs or produce different outputs, or the data does not fit them; BAD_DATA
 *   for empty data; BAD_OPTION for a bad batch size; RUNTIME from ONNX Runtime; model-file errors.
 */
export async function compare(opts: CompareOptions): Promise<CompareResult> {
  const batch = opts.batch ?? 1;
  if (!Number.isSafeInteger(batch) || batch < 1) throw new LowbitError('BAD_OPTION', `batch must be a positive integer, got ${batch}`, 'use e.g. --batch 8');
  const open = async (m: ModelRef): Promise<Model> => (m instanceof Model ? m : new Model((await modelProtoOf(m)).proto));
  const [float, quant] = await Promise.all([open(opts.float), open(opts.quant)]);
  const qLabel = typeof opts.quant === 'string' ? opts.quant : 'the quantized model';
  const map = mapQdq(quant, float);
  if (map.dqCount === 0) throw notQuantized(qLabel, quant, float);

  const notes: string[] = [];
  if (map.missing.length) {
    const names = map.missing.slice(0, 3).map((m) => `'${m}'`).join(', ');
    notes.push(`${map.missing.length} quantized tensor(s) have no counterpart in the float model (added by the quantizer?) and were not compared: ${names}${map.missing.length > 3 ? ', ...' : ''}`);
  }
  notes.push(...map.unmapped);
  const weights: WeightComparison[] = [];
  let noSource = 0;
  for (const w of map.weights) {
    let e: ReturnType<typeof weightError>;
    try {
      e = weightError(w);
    } catch (err) {
      if (!(err instanceof LowbitError)) throw err;
      notes.push(`weight '${w.quantized}' not compared: ${err.message}`);
      continue;
    }
    if (!e) {
      noSource++;
      continue;
    }
    weights.push({
      name: e.name,
      node: w.node,
      opType: w.opType,
      qtype: w.params.qtype.name,
      sqnrDb: e.sqnrDb,
      worstChannel: e.worstChannel ?? null,
      worstChannelSqnrDb: e.worstChannelSqnrDb ?? null,
    });
  }
  if (noSource) notes.push(`${noSource} quantized constant(s) have no float source in the float model and were not compared`);
  weights.sort((a, b) => worstFirst(a.sqnrDb, b.sqnrDb));

  const threads = opts.threads === undefined ? {} : { threads: opts.threads };
  const fLabel = typeof opts.float === 'string' ? opts.float : 'float model';
  const floatSession = await TappedSession.create(float, map.activations.map((a) => a.tensor), { ...threads, label: fLabel });
  let quantSession: TappedSession | undefined;
  try {
    quantSession = await TappedSession.create(quant, map.activations.map((a) => a.quantized), { ...threads, label: qLabel });
    checkSameInputs(floatSession, quantSession);
    const data = isUnbound(opts.data) ? bindToModelInputs(opts.data, floatSession.session.inputs) : opts.data;
    if (data.count === 0) throw new LowbitError('BAD_DATA', 'the data holds 0 samples', 'provide at least one sample');
    const run = await runBoth(floatSession, quantSession, map.activations, data, batch, opts.onProgress, notes);
    return { ...run, weights, notes };
  } finally {
    await floatSession.release();
    await quantSession?.release();
  }
}

interface Tracked {
  link: ActivationLink;
  stats: ActivationErrorStats;
  dropped?: string;
}

async function runBoth(
  float: TappedSession,
  quant: TappedSession,
  links: readonly ActivationLink[],
  data: EvalData,
  batch: number,
  onProgress: ((e: ProgressEvent) => void) | undefined,
  notes: string[],
): Promise<Omit<CompareResult, 'weights' | 'notes'>> {
  const tracked: Tracked[] = links.map((link) => ({ link, stats: new ActivationErrorStats(link.params) }));
  const outputs = quant.outputNames;
  const total = new ErrorStats();
  let samples = 0;
  let agree = 0;
  let positions = 0;
  let classifier = true;
  for await (const feeds of data.batches(batch) as AsyncIterable<Record<string, NdArray>>) {
    const n = batchSizeOf(quant.session.inputs, feeds);
    const fr = await float.run(feeds);
    const qr = await quant.run(feeds);
    for (const o of outputs) {
      const a = qr.outputs[o]!;
      const b = fr.outputs[o]!;
      if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
        throw new LowbitError('DATA_MISMATCH', `output '${o}' has shape ${fmtDims(a.shape)} in the quantized model but ${fmtDims(b.shape)} in the float model`, 'compare a quantized model with the float model it was made from');
      }
      total.add(asNumbers(b), asNumbers(a));
    }
    const first = outputs[0]!;
    const pq = top1(qr.outputs[first]!, n);
    const pf = top1(fr.outputs[first]!, n);
    if (!pq || !pf || pq.length !== pf.length) classifier = false;
    else {
      for (let i = 0; i < pq.length; i++) if (pq[i] === pf[i]) agree++;
      positions += pq.length;
    }
    for (const t of tracked) {
      if (t.dropped) continue;
      t.dropped = addBatch(t, fr.taps[t.link.tensor]!, qr.taps[t.link.quantized]!);
    }
    samples += n;
    onProgress?.({ stage: 'compare', done: Math.min(samples, data.count), total: data.count });
  }
  if (samples === 0) throw new LowbitError('BAD_DATA', 'the data produced no batches', 'provide at least one sample (a model with a fixed batch size needs at least that many)');
  const s = total.summary();
  const output: OutputComparison = { sqnrDb: s.sqnrDb, cosine: s.cosine, maxAbsError: s.maxAbsError };
  if (classifier && positions > 0) output.agreement = agree / positions;
  const layers: LayerComparison[] = [];
  for (const t of tracked) {
    if (t.dropped) {
      notes.push(`'${t.link.tensor}' not compared: ${t.dropped}`);
      continue;
    }
    const r = t.stats.summary();
    layers.push({
      tensor: t.link.tensor,
      node: t.link.node,
      opType: t.link.opType,
      qtype: t.link.params.qtype.name,
      localSqnrDb: r.localSqnrDb,
      accumulatedSqnrDb: r.accumulatedSqnrDb,
      cosine: r.cosine,
      floatRange: r.floatRange,
      quantRange: r.quantRange,
      clippedFraction: r.clippedFraction,
    });
  }
  layers.sort((a, b) => worstFirst(a.localSqnrDb, b.localSqnrDb) || worstFirst(a.accumulatedSqnrDb, b.accumulatedSqnrDb));
  return { samples, output, layers };
}

/** Folds one batch of one tensor into its statistics; returns why the tensor cannot be compared, if so. */
function addBatch(t: Tracked, f: NdArray, q: NdArray): string | undefined {
  const fv = asFloat32(f);
  if (!fv) return `the float model's tensor is ${f.dtype}, not a float tensor`;
  if (!INTEGER_TAPS.has(q.dtype)) return `the quantized model's tensor '${t.link.quantized}' is ${q.dtype}`;
  if (q.dtype !== t.link.params.qtype.name) return `'${t.link.quantized}' is ${q.dtype} but its zero point is ${t.link.params.qtype.name}`;
  if (f.shape.length !== q.shape.length || f.shape.some((d, i) => d !== q.shape[i])) {
    return `shape ${fmtDims(f.shape)} in the float model, ${fmtDims(q.shape)} in the quantized model`;
  }
  try {
    t.stats.add(fv, f.shape, q.data as QuantArray);
  } catch (e) {
    if (e instanceof LowbitError) return e.message;
    throw e;
  }
  return undefined;
}
