// qat(): quantization-aware training end to end, and the trade-off it buys.
//
//   load -> planFakeQuant (BN folded, opset raised) -> calibrate -> insertFakeQuant -> train (weights,
//   biases, scales; labels or distillation from the float model) -> exportQat -> save atomically
//   -> float | PTQ | QAT on the held-out samples (accuracy or agreement, SQNR, size, latency)
//
// PTQ here is the same calibration and the same placement without training (quantizeStatic on the same
// ranges), so the table shows exactly what training added.

import { resolve } from 'node:path';
import { dataSourceFromArrays, UNNAMED } from '../data/calib-data.js';
import { LowbitError } from '../errors.js';
import { loadModel, saveModel } from '../io/model-file.js';
import type { NdArray } from '../ndarray.js';
import { encodeModel } from '../onnx/encode.js';
import { Model } from '../onnx/ir.js';
import { exportQat, insertFakeQuant, planFakeQuant, type FakeQuantOptions } from '../passes/qat.js';
import { quantizeStatic } from '../passes/quantize-qdq.js';
import { sliceAxis0 } from '../runtime/arrays.js';
import type { Augment } from '../train/augment.js';
import { compareLatency } from './bench.js';
import { calibrate } from './calibrate.js';
import { evaluate } from './evaluate.js';
import type { ProgressEvent } from './options.js';
import { train, type EpochStats, type TrainResult, type TrainProgress } from './train.js';

export interface QatOptions {
  /** The float model (a file); never modified. */
  input: string;
  /** Where the QDQ model is written (atomically). Must differ from `input`. */
  output: string;
  /** Training samples (axis 0), one array or one per input name. */
  data: NdArray | Record<string, NdArray>;
  /** One integer class per sample: trains with cross-entropy and reports accuracy. */
  labels?: NdArray | Int32Array;
  /** Train against the float model's outputs (KL divergence, temperature `temperature`) instead of labels. */
  distill?: boolean;
  temperature?: number;
  /** Weight bits: 8 (int8, integer kernels) or 4 (int4 weights, DequantizeLinear + float kernels). Default 8. */
  bits?: 8 | 4;
  activationType?: 'uint8' | 'int8';
  perChannel?: boolean;
  excludeNodes?: string[];
  excludeOps?: string[];
  /** Samples used to calibrate the initial activation scales (default 512, from the training part). */
  calibSamples?: number;
  /** Fraction of `data` held out for validation and the final table (its last samples; default 0.1). */
  valSplit?: number;
  /** Fine-tuning (defaults: 3 epochs, batch 64, AdamW, lr 1e-4 with a cosine schedule). */
  epochs?: number;
  batch?: number;
  lr?: number;
  optimizer?: 'adamw' | 'sgd';
  /** Learning-rate multiplier of the quantization scales (default 0.1). */
  scaleLr?: number;
  augment?: Augment;
  seed?: number;
  threads?: number;
  /** Also quantize with PTQ (same calibration, no training) and measure latencies (default true). */
  compare?: boolean;
  onProgress?: (event: ProgressEvent) => void;
  onEpoch?: (stats: EpochStats) => void;
}

/** One row of the float | PTQ | QAT table. */
export interface QatRow {
  name: string;
  sizeBytes: number;
  /** Top-1 accuracy on the held-out samples (labels given). */
  accuracy?: number;
  /** Top-1 agreement, SQNR (dB) and cosine against the float model (not for the float row). */
  agreement?: number;
  sqnrDb?: number;
  cosine?: number;
  /** Median latency, batch 1 and batch 32, and speedup over float (measured interleaved with float). */
  latencyMs?: { batch1: number; batch32: number };
  speedup?: { batch1: number; batch32: number };
}

export interface QatResult {
  output: string;
  bits: 8 | 4;
  /** float, then PTQ (when compared), then QAT. */
  rows: QatRow[];
  /** Samples trained on / held out. */
  trainSamples: number;
  heldOutSamples: number;
  training: Omit<TrainResult, 'model'>;
  /** What the planner and the export said (kept-float nodes, opset changes, int4 notes). */
  notes: string[];
}

const badOption = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);

function asRecord(data: NdArray | Record<string, NdArray>): Record<string, NdArray> {
  return 'dtype' in data && 'shape' in data ? { [UNNAMED]: data as NdArray } : (data as Record<string, NdArray>);
}

function countOf(data: Record<string, NdArray>): number {
  const counts = new Set(Object.values(data).map((a) => a.shape[0] ?? 0));
  if (counts.size !== 1) throw new LowbitError('DATA_MISMATCH', `the data arrays hold different sample counts (${[...counts].join(', ')})`, 'give every input array the same number of samples on axis 0');
  return [...counts][0]!;
}

const sliceAll = (data: Record<string, NdArray>, a: number, b: number): Record<string, NdArray> =>
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, sliceAxis0(v, a, b)]));

const sliceLabels = (labels: NdArray | Int32Array, a: number, b: number): NdArray | Int32Array =>
  labels instanceof Int32Array ? labels.subarray(a, b) : sliceAxis0(labels, a, b);

/** Feeds keyed by the model's input names (an unnamed array goes to the only input). */
function named(data: Record<string, NdArray>, inputNames: string[]): Record<string, NdArray> {
  if (Object.hasOwn(data, UNNAMED)) {
    if (inputNames.length !== 1) throw new LowbitError('DATA_MISMATCH', `the model has ${inputNames.length} inputs (${inputNames.join(', ')}) but one unnamed array was given`, 'pass an .npz / a record with one array per input name');
    return { [inputNames[0]!]: data[UNNAMED]! };
  }
  return data;
}

function checkOptions(o: QatOptions): { bits: 8 | 4; valSplit: number; calibSamples: number } {
  const bits = o.bits ?? 8;
  if (bits !== 8 && bits !== 4) throw badOption(`bits must be 8 or 4, got ${String(bits)}`, 'use --bits 8 (int8 weights) or --bits 4 (int4 weights)');
  if (!o.labels && !o.distill) throw badOption('QAT needs labels or distillation', 'pass labels (--labels Y.npy), or --distill to learn from the float model’s outputs');
  if (resolve(o.input) === resolve(o.output)) throw badOption(`the output '${o.output}' is the input model`, 'write the quantized model to a new file');
  const valSplit = o.valSplit ?? 0.1;
  if (!(valSplit > 0 && valSplit < 1)) throw badOption(`valSplit must be in (0, 1), got ${valSplit}`, 'e.g. 0.1 holds out the last 10% of the samples');
  const calibSamples = o.calibSamples ?? 512;
  if (!Number.isSafeInteger(calibSamples) || calibSamples < 1) throw badOption(`calibSamples must be a positive integer, got ${calibSamples}`, 'e.g. 512');
  const scaleLr = o.scaleLr ?? 0.1;
  if (!(Number.isFinite(scaleLr) && scaleLr >= 0)) throw badOption(`scaleLr must be a non-negative number, got ${scaleLr}`, 'e.g. 0.1 (0 keeps the calibrated scales)');
  return { bits, valSplit, calibSamples };
}

/**
 * Quantization-aware training: fake quantization at the points static PTQ quantizes, scales initialised
 * by calibration on the training samples, fine-tuned with labels (cross-entropy) or by distillation from
 * the float model, exported as a QDQ model (int8, or int4 weights) and written atomically to `output`.
 * Then the float model, PTQ (same calibration, no training) and QAT are evaluated on the held-out samples.
 * @throws LowbitError BAD_OPTION for bad options (before anything runs); DATA_MISMATCH for data or labels
 *   that do not match the model; NON_FINITE when training diverges or a learned scale is not positive;
 *   model, planner and runtime errors pass through.
 */
export async function qat(o: QatOptions): Promise<QatResult> {
  const { bits, valSplit, calibSamples } = checkOptions(o);
  const threads = o.threads ?? 2;
  const data = asRecord(o.data);
  const total = countOf(data);
  if (o.labels && (o.labels instanceof Int32Array ? o.labels.length : (o.labels.shape[0] ?? 0)) !== total) {
    throw new LowbitError('DATA_MISMATCH', `${o.labels instanceof Int32Array ? o.labels.length : o.labels.shape[0]} labels for ${total} samples`, 'give exactly one label per sample, in the same order');
  }
  const held = Math.max(1, Math.round(total * valSplit));
  const cut = total - held;
  if (cut < 1) throw new LowbitError('DATA_MISMATCH', `${total} samples leave none to train on after holding out ${held}`, 'give more samples or a smaller valSplit');

  const floatProto = (await loadModel(o.input)).model;
  const float = new Model(floatProto);
  const inputNames = float.graph.inputs.map((v) => v.name ?? '').filter((n) => !float.graph.initializers.has(n));
  const trainX = named(sliceAll(data, 0, cut), inputNames);
  const valX = named(sliceAll(data, cut, total), inputNames);
  const trainY = o.labels ? sliceLabels(o.labels, 0, cut) : undefined;
  const valY = o.labels ? sliceLabels(o.labels, cut, total) : undefined;

  // Calibrate the fake-quantization points on training samples only.
  const fqOpts: FakeQuantOptions = {
    weightBits: bits,
    ...(o.activationType ? { activationType: o.activationType } : {}),
    ...(o.perChannel !== undefined ? { perChannel: o.perChannel } : {}),
    ...(o.excludeNodes ? { excludeNodes: o.excludeNodes } : {}),
    ...(o.excludeOps ? { excludeOps: o.excludeOps } : {}),
    speedPolicy: true,
  };
  const plan = planFakeQuant(float, fqOpts);
  const nCalib = Math.min(calibSamples, cut);
  const calibData = dataSourceFromArrays(sliceAll(trainX, 0, nCalib), 'QAT calibration samples');
  const ranges = await calibrate(plan.model, calibData, {
    tensors: plan.tensors,
    threads,
    activationType: o.activationType ?? 'uint8',
    ...(o.onProgress ? { onProgress: (p) => o.onProgress!({ stage: 'calibrate', done: p.samples, total: nCalib }) } : {}),
  });
  const fq = insertFakeQuant(float, ranges, fqOpts);

  // Fine-tune weights, biases and scales.
  const scales = new Set(fq.scaleParams);
  const scaleLr = o.scaleLr ?? 0.1;
  const trained = await train(
    fq.model,
    { inputs: trainX, ...(trainY && !o.distill ? { labels: trainY } : {}) },
    {
      epochs: o.epochs ?? 3,
      batch: o.batch ?? 64,
      optimizer: o.optimizer ?? 'adamw',
      lr: o.lr ?? 1e-4,
      weightDecay: 0,
      schedule: 'cosine',
      loss: o.distill ? 'distill' : 'cross-entropy',
      ...(o.distill ? { teacher: float, ...(o.temperature !== undefined ? { temperature: o.temperature } : {}) } : {}),
      params: fq.params,
      lrMultiplier: (p) => (scales.has(p.name) ? scaleLr : 1),
      lsqGradScale: true,
      validation: { inputs: valX, ...(valY && !o.distill ? { labels: valY } : {}) },
      seed: o.seed ?? 0,
      threads,
      ...(o.augment ? { augment: o.augment } : {}),
      ...(o.onProgress ? { onProgress: (p: TrainProgress) => o.onProgress!(p) } : {}),
      ...(o.onEpoch ? { onEpoch: o.onEpoch } : {}),
    },
  );
  const exported = exportQat(trained.model);
  const saved = await saveModel(exported.model.toProto(), o.output);
  const notes = [...fq.report.preprocess, ...fq.report.notes, ...exported.report.notes];

  // The table: float | PTQ | QAT on the held-out samples.
  const floatBytes = encodeModel(floatProto);
  const candidates: { name: string; bytes: Uint8Array; sizeBytes: number }[] = [{ name: 'float32', bytes: floatBytes, sizeBytes: floatBytes.byteLength }];
  const label = bits === 4 ? 'int4 weights' : 'int8';
  if (o.compare !== false) {
    const ptq = quantizeStatic(float, ranges, {
      activationType: o.activationType ?? 'uint8',
      weightType: bits === 4 ? 'int4' : 'int8',
      perChannel: o.perChannel ?? true,
      ...(o.excludeNodes ? { excludeNodes: o.excludeNodes } : {}),
      ...(o.excludeOps ? { excludeOps: o.excludeOps } : {}),
      speedPolicy: true,
    });
    const bytes = encodeModel(ptq.model.toProto());
    candidates.push({ name: `PTQ ${label}`, bytes, sizeBytes: bytes.byteLength });
  }
  const qatBytes = encodeModel(exported.model.toProto());
  candidates.push({ name: `QAT ${label}`, bytes: qatBytes, sizeBytes: saved.bytes });

  const valSource = dataSourceFromArrays(valX, 'held-out samples');
  const rows: QatRow[] = [];
  for (const c of candidates) {
    const isFloat = c.bytes === floatBytes;
    const r = await evaluate({ model: c.bytes, data: valSource, batch: 64, threads, ...(valY ? { labels: valY } : {}), ...(isFloat ? {} : { reference: floatBytes }) });
    const row: QatRow = { name: c.name, sizeBytes: c.sizeBytes };
    if (r.accuracy !== undefined) row.accuracy = r.accuracy;
    if (!isFloat) {
      if (r.agreement !== undefined) row.agreement = r.agreement;
      if (r.sqnrDb !== undefined) row.sqnrDb = r.sqnrDb;
      if (r.cosine !== undefined) row.cosine = r.cosine;
      if (o.compare !== false) {
        const b1 = await compareLatency(floatBytes, c.bytes, { batch: 1, threads, runs: 30, warmup: 5 });
        const b32 = await compareLatency(floatBytes, c.bytes, { batch: 32, threads, runs: 8, warmup: 2 });
        row.latencyMs = { batch1: b1.quant.latencyMs.median, batch32: b32.quant.latencyMs.median };
        row.speedup = { batch1: b1.speedup, batch32: b32.speedup };
        const f = rows[0]!;
        f.latencyMs ??= { batch1: b1.float.latencyMs.median, batch32: b32.float.latencyMs.median };
      }
    }
    rows.push(row);
  }
  const { model: _trainedModel, ...training } = trained;
  return { output: saved.path, bits, rows, trainSamples: cut, heldOutSamples: held, training, notes };
}
