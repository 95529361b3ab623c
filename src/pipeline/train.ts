// The training loop: a float inference model and labelled (or teacher-scored) samples in, a trained
// inference model out. The training graph (src/train/trainable.ts, src/grad) runs in one ONNX Runtime
// session; params are Float32Arrays fed to it on every step without copies and updated in place by the
// optimizer (src/train/optim.ts). Evaluates every epoch, writes checkpoints atomically, stops on a
// non-finite loss, and measures where the time goes. Node side (ORT, files); it never prints.

import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LowbitError } from '../errors.js';
import { loadModel, saveModel } from '../io/model-file.js';
import type { DType, NdArray, TypedArray } from '../ndarray.js';
import { encodeModel } from '../onnx/encode.js';
import { Model } from '../onnx/ir.js';
import { DataType, type ModelProto } from '../onnx/proto.js';
import { mulberry32, type Rng } from '../rng.js';
import { Session } from '../runtime/session.js';
import type { Augment } from '../train/augment.js';
import type { GradTable } from '../grad/types.js';
import { checkLossSpec, needsLabels, oneHotTargets, type LossKind, type LossSpec } from '../train/loss.js';
import { OPTIMIZERS, createOptimizer, type OptimizerKind, type OptimizerOptions, type ParamTensor } from '../train/optim.js';
import { SCHEDULES, makeSchedule, type ScheduleKind } from '../train/schedule.js';
import { buildTrainable, withValues, type Trainable } from '../train/trainable.js';
import type { ProgressEvent } from './options.js';

/** Samples to train or validate on. */
export interface TrainData {
  /** Model inputs with samples on axis 0: one array (single-input models) or one per input name. */
  inputs: NdArray | Record<string, NdArray>;
  /** Integer class labels, one per sample ([N] or [N, 1]): for 'cross-entropy', and 'distill' with alpha < 1. */
  labels?: NdArray | Int32Array | readonly number[];
  /** Regression targets shaped like the output (samples on axis 0): for 'mse'. */
  targets?: NdArray;
}

/** One progress report per training step (stage `epoch E/EPOCHS`). */
export interface TrainProgress extends ProgressEvent {
  epoch: number;
  /** Mean training loss of the epoch so far. */
  loss: number;
}

/** What one epoch did. */
export interface EpochStats {
  /** 1-based. */
  epoch: number;
  /** Learning rate at the epoch's last step. */
  lr: number;
  /** Mean training loss over the epoch's samples. */
  loss: number;
  /** Top-1 accuracy on the (augmented) training batches, when there are labels. */
  trainAccuracy?: number;
  /** Loss and top-1 accuracy on the validation data (accuracy when there are labels). */
  valLoss?: number;
  valAccuracy?: number;
  /** Wall time of the epoch including evaluation and checkpoint, ms. */
  ms: number;
}

/** Where the time went, ms, summed over the run. */
export interface TrainTimes {
  /** ORT running the training graph (forward + backward). */
  forwardBackward: number;
  /** Optimizer updates in TypeScript. */
  optimizer: number;
  /** Shuffling, gathering batches, one-hot targets, augmentation. */
  data: number;
  /** Running the teacher (distillation). */
  teacher: number;
  /** Evaluation on the validation data. */
  eval: number;
  /** Writing checkpoints. */
  checkpoint: number;
  /** Building the graphs and creating the sessions. */
  setup: number;
  total: number;
}

export interface TrainResult {
  /** The trained model: the input model (BatchNormalization in inference mode, same inputs/outputs) with trained weights and running statistics. */
  model: Model;
  epochs: EpochStats[];
  /** Optimizer steps and training samples processed. */
  steps: number;
  samples: number;
  /** Training throughput: samples / (forwardBackward + optimizer + data + teacher time). */
  samplesPerSec: number;
  time: TrainTimes;
  /** The trained params and the running statistics (state), by initializer name. */
  params: string[];
  /** Number of trained values (elements of all params). */
  paramValues: number;
  state: string[];
  /** Path of the last checkpoint written. */
  checkpoint?: string;
}

export interface TrainOptions {
  /** Passes over the training data (default 10). */
  epochs?: number;
  /** Samples per step (default 64). */
  batch?: number;
  /** Samples per evaluation run (default 256). */
  evalBatch?: number;
  /** 'sgd' (momentum) or 'adamw' (default). */
  optimizer?: OptimizerKind;
  /** Base learning rate (default 1e-3 for adamw, 0.01 for sgd). */
  lr?: number;
  /** SGD momentum (default 0.9) and Nesterov (default false). */
  momentum?: number;
  nesterov?: boolean;
  /** AdamW betas and epsilon. */
  betas?: readonly [number, number];
  eps?: number;
  /** Weight decay (default 0 for sgd, 0.01 for adamw); by default on weights of rank >= 2 only. */
  weightDecay?: number;
  /** Which params weight decay applies to (default: rank >= 2). */
  decay?: OptimizerOptions['decay'];
  /** Learning-rate multiplier per param (default 1), e.g. for quantization scales. */
  lrMultiplier?: OptimizerOptions['lrMultiplier'];
  /** 'constant', 'cosine' (default) or 'step'. */
  schedule?: ScheduleKind;
  /** Linear warmup, in epochs (fractions allowed; default 0). */
  warmupEpochs?: number;
  /** 'step': decay every this many epochs (default a third of the epochs) by `gamma` (default 0.1). */
  stepEpochs?: number;
  gamma?: number;
  /** 'cosine': final learning rate (default 0). */
  minLr?: number;
  /** 'cross-entropy' (default), 'mse', or 'distill' (needs `teacher`). */
  loss?: LossKind;
  labelSmoothing?: number;
  /** 'distill': temperature (default 1) and weight of the distillation term (default 1). */
  temperature?: number;
  alpha?: number;
  /** The output to train (default the model's first). */
  output?: string;
  /** 'distill': the teacher (a model, file or bytes), run on every (augmented) batch; its output `teacherOutput` (default its first) gives the soft targets. */
  teacher?: Model | ModelProto | string | Uint8Array;
  teacherOutput?: string;
  /** Validation samples, or the fraction (0, 1) of the training data held out (its last samples). */
  validation?: TrainData;
  valSplit?: number;
  /** Seed of the per-epoch shuffles and of augmentation (default 0). */
  seed?: number;
  /** ORT intra-op threads (default 2). */
  threads?: number;
  /** Changes each training batch in place (e.g. randomShift(2)). */
  augment?: Augment;
  /** After every epoch, the trained inference model is written here (atomically). */
  checkpoint?: string;
  /** The file the model came from: a checkpoint over it is refused. */
  inputPath?: string;
  /** The initializers to train (default: every float32 initializer reaching the loss, BatchNormalization statistics excluded). */
  params?: readonly string[];
  /** Initializers kept out of the default params. */
  frozen?: readonly string[];
  /** Keep BatchNormalization's running statistics fixed (inference mode; scale and bias still train). */
  freezeBatchNorm?: boolean;
  /** Gradient rules (default TRAIN_RULES; extend it for custom ops) and LSQ gradient scaling of quantization scales. */
  rules?: GradTable;
  lsqGradScale?: boolean;
  /** Called after every step. */
  onProgress?: (event: TrainProgress) => void;
  /** Called after every epoch (after evaluation and checkpoint). */
  onEpoch?: (stats: EpochStats) => void;
}

const OPTION_KEYS: ReadonlySet<string> = new Set<keyof TrainOptions>([
  'epochs', 'batch', 'evalBatch', 'optimizer', 'lr', 'momentum', 'nesterov', 'betas', 'eps', 'weightDecay', 'decay', 'lrMultiplier',
  'schedule', 'warmupEpochs', 'stepEpochs', 'gamma', 'minLr', 'loss', 'labelSmoothing', 'temperature', 'alpha', 'output', 'teacher',
  'teacherOutput', 'validation', 'valSplit', 'seed', 'threads', 'augment', 'checkpoint', 'inputPath', 'params', 'frozen',
  'freezeBatchNorm', 'rules', 'lsqGradScale', 'onProgress', 'onEpoch',
]);

const badOption = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);
const mismatch = (msg: string, hint: string): LowbitError => new LowbitError('DATA_MISMATCH', msg, hint);
const now = (): number => performance.now();

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1) throw badOption(`${name} must be a positive integer, got ${x}`, `pass e.g. ${dflt}`);
  return x;
}

/** Options with their defaults, checked before anything heavy starts. @throws LowbitError BAD_OPTION */
function resolveOptions(o: TrainOptions) {
  for (const k of Object.keys(o)) {
    if (!OPTION_KEYS.has(k)) throw badOption(`unknown train option '${k}'`, `known options: ${[...OPTION_KEYS].join(', ')}`);
  }
  const optimizer = o.optimizer ?? 'adamw';
  if (!(OPTIMIZERS as readonly string[]).includes(optimizer)) throw badOption(`unknown optimizer '${String(optimizer)}'`, `use one of ${OPTIMIZERS.join(', ')}`);
  const schedule = o.schedule ?? 'cosine';
  if (!(SCHEDULES as readonly string[]).includes(schedule)) throw badOption(`unknown schedule '${String(schedule)}'`, `use one of ${SCHEDULES.join(', ')}`);
  const lr = o.lr ?? (optimizer === 'adamw' ? 1e-3 : 0.01);
  if (!(Number.isFinite(lr) && lr > 0)) throw badOption(`lr must be a positive number, got ${lr}`, 'use e.g. 0.001 (adamw) or 0.01 (sgd)');
  const loss: LossSpec = { kind: o.loss ?? 'cross-entropy' };
  if (o.output !== undefined) loss.output = o.output;
  if (o.labelSmoothing !== undefined) loss.labelSmoothing = o.labelSmoothing;
  if (o.temperature !== undefined) loss.temperature = o.temperature;
  if (o.alpha !== undefined) loss.alpha = o.alpha;
  checkLossSpec(loss);
  if (loss.kind === 'distill' && o.teacher === undefined) throw badOption("the 'distill' loss needs a teacher model", 'pass teacher (a model or its path)');
  if (loss.kind !== 'distill' && o.teacher !== undefined) throw badOption(`a teacher is only used by the 'distill' loss, not '${loss.kind}'`, "set loss: 'distill'");
  if (o.valSplit !== undefined && !(o.valSplit > 0 && o.valSplit < 1)) throw badOption(`valSplit must be in (0, 1), got ${o.valSplit}`, 'use e.g. 0.1');
  if (o.valSplit !== undefined && o.validation !== undefined) throw badOption('pass either validation data or valSplit, not both', 'drop one of them');
  const warmupEpochs = o.warmupEpochs ?? 0;
  if (!(warmupEpochs >= 0 && Number.isFinite(warmupEpochs))) throw badOption(`warmupEpochs must be a non-negative number, got ${warmupEpochs}`, 'use e.g. 1');
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw badOption(`seed must be an integer, got ${seed}`, 'use e.g. 0');
  return {
    epochs: positiveInt('epochs', o.epochs, 10),
    batch: positiveInt('batch', o.batch, 64),
    evalBatch: positiveInt('evalBatch', o.evalBatch, 256),
    optimizer,
    schedule,
    lr,
    loss,
    warmupEpochs,
    seed,
  };
}

/** A data set bound to the model: inputs by name, labels as Int32Array, targets. */
interface Bound {
  count: number;
  inputs: Record<string, NdArray>;
  labels: Int32Array | undefined;
  targets: NdArray | undefined;
}

const rowSize = (a: NdArray): number => a.shape.slice(1).reduce((x, y) => x * y, 1);

function sliceRows(a: NdArray, start: number, end: number): NdArray {
  const r = rowSize(a);
  return { dtype: a.dtype, shape: [end - start, ...a.shape.slice(1)], data: a.data.subarray(start * r, end * r) as TypedArray };
}

function toLabels(labels: NonNullable<TrainData['labels']>, what: string): Int32Array {
  if (labels instanceof Int32Array) return labels;
  if (Array.isArray(labels)) return Int32Array.from(labels as number[]);
  const arr = labels as NdArray;
  if (arr.shape.length > 2 || (arr.shape.length === 2 && arr.shape[1] !== 1)) {
    throw new LowbitError('BAD_DATA', `${what} have shape [${arr.shape.join(', ')}]; expected one integer class per sample ([N] or [N, 1])`, 'pass class indices, not one-hot rows');
  }
  const out = new Int32Array(arr.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = Number(arr.data[i]!);
    if (!Number.isInteger(v)) throw new LowbitError('BAD_DATA', `${what}: sample ${i} has label ${v}, not an integer class`, 'labels are class indices 0..C-1');
    out[i] = v;
  }
  return out;
}

function checkFiniteRows(a: NdArray, what: string): void {
  if (a.dtype !== 'float32' && a.dtype !== 'float64') return;
  const d = a.data as Float32Array | Float64Array;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i]!)) {
      throw new LowbitError('BAD_DATA', `${what} holds ${d[i]} at sample ${Math.floor(i / Math.max(1, rowSize(a)))}`, 'remove or fix the non-finite values');
    }
  }
}

const ONNX_DTYPE: Readonly<Record<number, DType>> = {
  [DataType.FLOAT]: 'float32', [DataType.DOUBLE]: 'float64', [DataType.INT64]: 'int64', [DataType.INT32]: 'int32',
  [DataType.UINT8]: 'uint8', [DataType.INT8]: 'int8', [DataType.BOOL]: 'bool', [DataType.FLOAT16]: 'float16',
};

/** Binds data to the model's inputs, checking names, dtypes, shapes, counts and labels. */
function bind(t: Trainable, data: TrainData, what: string, loss: LossSpec, classes: number | undefined): Bound {
  let inputs: Record<string, NdArray>;
  const isArr = (x: unknown): x is NdArray => typeof x === 'object' && x !== null && 'dtype' in x && 'shape' in x && 'data' in x;
  if (isArr(data.inputs)) {
    if (t.inputs.length !== 1) throw mismatch(`the model has ${t.inputs.length} inputs (${t.inputs.map((i) => i.name).join(', ')}); ${what} gives one array`, 'pass one array per input name');
    inputs = { [t.inputs[0]!.name]: data.inputs };
  } else inputs = data.inputs;
  const names = t.inputs.map((i) => i.name);
  for (const k of Object.keys(inputs)) if (!names.includes(k)) throw mismatch(`${what} has an array '${k}', which is not a model input (inputs: ${names.join(', ')})`, 'key the arrays by model input name');
  let count: number | undefined;
  for (const inp of t.inputs) {
    const a = inputs[inp.name];
    if (!a) throw mismatch(`${what} has no array for model input '${inp.name}'`, `give one array per input: ${names.join(', ')}`);
    const want = inp.elemType === undefined ? undefined : ONNX_DTYPE[inp.elemType];
    if (want && a.dtype !== want) throw mismatch(`${what} for input '${inp.name}' is ${a.dtype}, the model expects ${want}`, `convert the data to ${want}`);
    const dims = inp.dims;
    const shapeOk = !dims || (dims.length === a.shape.length && dims.every((d, i) => i === 0 || typeof d !== 'number' || d === a.shape[i]));
    if (!shapeOk || a.shape.length === 0) {
      throw mismatch(`${what} for input '${inp.name}' has shape [${a.shape.join(', ')}], the model expects [${(dims ?? []).map((d) => d ?? '?').join(', ')}] (samples on axis 0)`, 'reshape the data to the model input shape, samples on axis 0');
    }
    if (count !== undefined && a.shape[0] !== count) throw mismatch(`${what}: input '${inp.name}' has ${a.shape[0]} samples, another input ${count}`, 'give every input the same number of samples');
    count = a.shape[0]!;
    checkFiniteRows(a, `${what} for input '${inp.name}'`);
  }
  if (!count) throw mismatch(`${what} has no samples`, 'pass at least one sample');
  let labels: Int32Array | undefined;
  if (needsLabels(loss)) {
    if (data.labels === undefined) throw mismatch(`${what} has no labels, and the '${loss.kind}' loss needs them`, 'pass integer class labels, one per sample');
    labels = toLabels(data.labels, `${what} labels`);
    if (labels.length !== count) throw mismatch(`${what} has ${labels.length} labels for ${count} samples`, 'pass exactly one label per sample');
    if (classes === undefined) throw new LowbitError('UNSUPPORTED_MODEL', `output '${t.output}' has no fixed class dimension (dims [${(t.outputDims ?? []).join(', ')}])`, 'export the model with a fixed number of classes');
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i]!;
      if (l < 0 || l >= classes) throw new LowbitError('BAD_DATA', `${what}: sample ${i} has label ${l}, outside the ${classes} classes (0..${classes - 1}) of output '${t.output}'`, 'labels must be class indices of the model output');
    }
  } else if (data.labels !== undefined && loss.kind === 'distill') labels = toLabels(data.labels, `${what} labels`);
  let targets: NdArray | undefined;
  if (loss.kind === 'mse') {
    if (!data.targets) throw mismatch(`${what} has no targets, and the 'mse' loss needs them`, "pass targets shaped like the model output");
    targets = data.targets;
    if (targets.dtype !== 'float32') throw mismatch(`${what} targets are ${targets.dtype}; the 'mse' loss takes float32`, 'convert the targets to float32');
    if (targets.shape[0] !== count) throw mismatch(`${what} has ${targets.shape[0]} targets for ${count} samples`, 'pass one target per sample');
    const od = t.outputDims;
    if (od && (od.length !== targets.shape.length || od.some((d, i) => i > 0 && typeof d === 'number' && d !== targets!.shape[i]))) {
      throw mismatch(`${what} targets have shape [${targets.shape.join(', ')}], output '${t.output}' [${od.map((d) => d ?? '?').join(', ')}]`, 'shape the targets like the model output');
    }
    checkFiniteRows(targets, `${what} targets`);
  }
  if (labels && labels.length !== count) throw mismatch(`${what} has ${labels.length} labels for ${count} samples`, 'pass exactly one label per sample');
  return { count, inputs, labels, targets };
}

function splitBound(b: Bound, fraction: number): { train: Bound; val: Bound } {
  const held = Math.max(1, Math.round(b.count * fraction));
  const cut = b.count - held;
  if (cut < 1) throw badOption(`valSplit ${fraction} leaves no training samples of ${b.count}`, 'use a smaller valSplit');
  const part = (s: number, e: number): Bound => ({
    count: e - s,
    inputs: Object.fromEntries(Object.entries(b.inputs).map(([k, a]) => [k, sliceRows(a, s, e)])),
    labels: b.labels?.subarray(s, e),
    targets: b.targets && sliceRows(b.targets, s, e),
  });
  return { train: part(0, cut), val: part(cut, b.count) };
}

async function toModel(m: Model | ModelProto | string | Uint8Array): Promise<Model> {
  if (m instanceof Model) return m;
  if (typeof m === 'string') return new Model((await loadModel(m)).model);
  if (m instanceof Uint8Array) {
    const { decodeModel } = await import('../onnx/decode.js');
    return new Model(decodeModel(m));
  }
  return new Model(m);
}

/** Index of the largest of `c` values at row `i`. */
function argmaxRow(d: Float32Array, i: number, c: number): number {
  let best = 0;
  let bv = d[i * c]!;
  for (let k = 1; k < c; k++) if (d[i * c + k]! > bv) [bv, best] = [d[i * c + k]!, k];
  return best;
}

function shuffle(order: Int32Array, rng: Rng): void {
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
}

const nonFinite = (msg: string, hint: string): LowbitError => new LowbitError('NON_FINITE', msg, hint);

/**
 * Trains `model` on `data`. Each epoch shuffles the training samples with the seeded PRNG, runs one
 * training step per batch (ORT forward + backward, then the optimizer in place), evaluates on the
 * validation data, and writes a checkpoint when asked. The result is a plain inference model.
 * @throws LowbitError BAD_OPTION for invalid options; DATA_MISMATCH (sample counts, shapes, dtypes) and
 *   BAD_DATA (labels outside the classes, non-finite samples) naming the problem; UNSUPPORTED_MODEL naming
 *   the op and node without a gradient rule; NON_FINITE naming the epoch and step when the loss or the
 *   weights stop being finite (the last checkpoint, written after a good epoch, is kept); RUNTIME from ORT
 */
export async function train(model: Model | ModelProto | string, data: TrainData, options: TrainOptions = {}): Promise<TrainResult> {
  const t0 = now();
  const o = resolveOptions(options);
  const inputPath = options.inputPath ?? (typeof model === 'string' ? model : undefined);
  if (options.checkpoint !== undefined) checkCheckpoint(options.checkpoint, inputPath);
  const inference = await toModel(model);
  const trainable = buildTrainable(inference, {
    loss: o.loss,
    ...(options.params ? { params: options.params } : {}),
    ...(options.frozen ? { frozen: options.frozen } : {}),
    ...(options.freezeBatchNorm ? { freezeBatchNorm: true } : {}),
    dropoutSeed: o.seed,
    ...(options.rules ? { rules: options.rules } : {}),
    ...(options.lsqGradScale !== undefined ? { lsqGradScale: options.lsqGradScale } : {}),
  });
  const outDim1 = trainable.outputDims?.[1];
  const classes = typeof outDim1 === 'number' ? outDim1 : undefined;
  let trainSet = bind(trainable, data, 'the training data', o.loss, classes);
  let valSet: Bound | undefined;
  if (options.validation) valSet = bind(trainable, options.validation, 'the validation data', o.loss, classes);
  else if (options.valSplit !== undefined) ({ train: trainSet, val: valSet } = splitBound(trainSet, options.valSplit));

  // A model input with a fixed batch size takes exactly that many samples per run.
  const fixedBatch = trainable.inputs.map((i) => i.dims?.[0]).find((d): d is number => typeof d === 'number');
  if (fixedBatch !== undefined && fixedBatch !== o.batch) {
    throw badOption(`the model input has a fixed batch size of ${fixedBatch}, but batch is ${o.batch}`, `train with batch ${fixedBatch}, or export the model with a dynamic batch dim`);
  }
  const stepsPerEpoch = fixedBatch !== undefined ? Math.floor(trainSet.count / o.batch) : Math.ceil(trainSet.count / o.batch);
  if (stepsPerEpoch < 1) throw badOption(`${trainSet.count} training samples do not fill one batch of ${o.batch}`, 'use a smaller batch');
  const totalSteps = stepsPerEpoch * o.epochs;
  const scheduleOpts = {
    kind: o.schedule,
    warmupSteps: Math.round(o.warmupEpochs * stepsPerEpoch),
    ...(options.minLr !== undefined ? { minLr: options.minLr } : {}),
    ...(options.gamma !== undefined ? { gamma: options.gamma } : {}),
    ...(o.schedule === 'step' ? { stepSize: Math.max(1, Math.round((options.stepEpochs ?? Math.max(1, Math.floor(o.epochs / 3))) * stepsPerEpoch)) } : {}),
  };
  const lrAt = makeSchedule(scheduleOpts, o.lr, totalSteps);
  const params = trainable.params;
  const optimizer = createOptimizer(params, {
    kind: o.optimizer,
    ...(options.momentum !== undefined ? { momentum: options.momentum } : {}),
    ...(options.nesterov !== undefined ? { nesterov: options.nesterov } : {}),
    ...(options.betas !== undefined ? { betas: options.betas } : {}),
    ...(options.eps !== undefined ? { eps: options.eps } : {}),
    ...(options.weightDecay !== undefined ? { weightDecay: options.weightDecay } : {}),
    ...(options.decay ? { decay: options.decay } : {}),
    ...(options.lrMultiplier ? { lrMultiplier: options.lrMultiplier } : {}),
  });

  const threads = options.threads === undefined ? {} : { threads: options.threads };
  const sessions: Session[] = [];
  const open = async (m: Model | Uint8Array | string, label: string): Promise<Session> => {
    const s = await Session.create(m instanceof Model ? encodeModel(m.toProto()) : m, { ...threads, label });
    sessions.push(s);
    return s;
  };
  try {
    const trainSession = await open(trainable.train, 'the training graph');
    const evalSession = valSet ? await open(trainable.eval, 'the eval graph') : undefined;
    let teacher: Teacher | undefined;
    if (options.teacher !== undefined) {
      const tm = options.teacher;
      const session = await open(tm instanceof Model ? tm : typeof tm === 'string' || tm instanceof Uint8Array ? tm : new Model(tm), 'the teacher');
      const output = options.teacherOutput ?? session.outputNames[0]!;
      if (!session.outputNames.includes(output)) throw badOption(`the teacher has no output '${output}' (outputs: ${session.outputNames.join(', ')})`, 'name a teacher output');
      // The teacher reads the student's inputs: by name, or by position when the names differ.
      const student = trainable.inputs.map((i) => i.name);
      const own = session.inputNames;
      const byName = own.every((n) => student.includes(n));
      if (!byName && own.length !== student.length) {
        throw mismatch(`the teacher's inputs (${own.join(', ')}) do not match the model's (${student.join(', ')})`, 'distill from a teacher that takes the same inputs');
      }
      teacher = { session, output, inputs: own.map((n, i) => [n, byName ? n : student[i]!]) };
    }
    const time: TrainTimes = { forwardBackward: 0, optimizer: 0, data: 0, teacher: 0, eval: 0, checkpoint: 0, setup: now() - t0, total: 0 };

    // Feeds reused on every step: params are the optimizer's own arrays (updated in place, never copied).
    const paramFeeds: Record<string, NdArray> = Object.fromEntries(params.map((p) => [p.name, { dtype: 'float32', shape: [...p.dims], data: p.data }]));
    const stateFeeds: Record<string, NdArray> = Object.fromEntries(trainable.state.map((s) => [s.name, { dtype: 'float32', shape: [...s.dims], data: s.data }]));
    const fetch = [trainable.loss, ...trainable.state.map((s) => s.update), ...trainable.gradients];
    const wantsAccuracy = trainSet.labels !== undefined && classes !== undefined;
    if (wantsAccuracy) fetch.push(trainable.output);

    // Batch buffers (one per input), gathered from shuffled rows.
    const bufs = Object.fromEntries(Object.entries(trainSet.inputs).map(([k, a]) => [k, { src: a, row: rowSize(a), buf: allocLike(a, o.batch * rowSize(a)) }]));
    const targetBuf = classes !== undefined ? new Float32Array(o.batch * classes) : undefined;
    const mseBuf = trainSet.targets ? { src: trainSet.targets, row: rowSize(trainSet.targets), buf: new Float32Array(o.batch * rowSize(trainSet.targets)) } : undefined;
    const order = Int32Array.from({ length: trainSet.count }, (_, i) => i);
    const shuffleRng = mulberry32(o.seed);
    const augmentRng = mulberry32(o.seed ^ 0x5bd1e995);
    const batchLabels = new Int32Array(o.batch);

    const epochs: EpochStats[] = [];
    let step = 0;
    let samples = 0;
    let checkpoint: string | undefined;
    const stateOf = (): { name: string; data: Float32Array }[] => trainable.state.map((s) => ({ name: s.name, data: stateFeeds[s.name]!.data as Float32Array }));
    for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const te = now();
      let ta = now();
      shuffle(order, shuffleRng);
      time.data += now() - ta;
      let lossSum = 0;
      let seen = 0;
      let correct = 0;
      let lr = o.lr;
      for (let s = 0; s < stepsPerEpoch; s++) {
        ta = now();
        lr = lrAt(step);
        const start = s * o.batch;
        const n = Math.min(o.batch, trainSet.count - start);
        const feeds: Record<string, NdArray> = { ...paramFeeds, ...stateFeeds };
        for (const [k, b] of Object.entries(bufs)) {
          for (let i = 0; i < n; i++) {
            const r = order[start + i]!;
            b.buf.set(b.src.data.subarray(r * b.row, (r + 1) * b.row) as never, i * b.row);
          }
          feeds[k] = { dtype: b.src.dtype, shape: [n, ...b.src.shape.slice(1)], data: n === o.batch ? b.buf : (b.buf.subarray(0, n * b.row) as TypedArray) };
        }
        if (trainSet.labels) for (let i = 0; i < n; i++) batchLabels[i] = trainSet.labels[order[start + i]!]!;
        if (trainable.targets.target && trainSet.labels && classes !== undefined) {
          feeds[trainable.targets.target] = { dtype: 'float32', shape: [n, classes], data: oneHotTargets(batchLabels.subarray(0, n), classes, targetBuf) };
        }
        if (mseBuf && trainable.targets.target) {
          for (let i = 0; i < n; i++) {
            const r = order[start + i]!;
            mseBuf.buf.set((mseBuf.src.data as Float32Array).subarray(r * mseBuf.row, (r + 1) * mseBuf.row), i * mseBuf.row);
          }
          feeds[trainable.targets.target] = { dtype: 'float32', shape: [n, ...mseBuf.src.shape.slice(1)], data: mseBuf.buf.subarray(0, n * mseBuf.row) };
        }
        if (options.augment) {
          const batch = Object.fromEntries(trainable.inputs.map((i) => [i.name, feeds[i.name]!]));
          options.augment(batch, augmentRng);
        }
        time.data += now() - ta;
        if (teacher && trainable.targets.teacher) {
          const tt = now();
          feeds[trainable.targets.teacher] = await runTeacher(teacher, feeds);
          time.teacher += now() - tt;
        }
        const tf = now();
        const out = await trainSession.run(feeds, fetch);
        time.forwardBackward += now() - tf;
        const loss = (out[trainable.loss]!.data as Float32Array)[0]!;
        if (!Number.isFinite(loss)) {
          throw nonFinite(
            `the training loss became ${loss} at epoch ${epoch}, step ${s + 1} of ${stepsPerEpoch} (learning rate ${lr.toPrecision(3)})`,
            `lower the learning rate (lr) or check the data${checkpoint ? `; the checkpoint of the last good epoch is kept at ${checkpoint}` : ''}`,
          );
        }
        const to = now();
        optimizer.step(trainable.gradients.map((g) => out[g]!.data as Float32Array), lr);
        for (const st of trainable.state) stateFeeds[st.name] = out[st.update]!;
        const broken = firstNonFinite([...params, ...stateOf()]);
        if (broken) {
          throw nonFinite(
            `the weights stopped being finite at epoch ${epoch}, step ${s + 1} of ${stepsPerEpoch}: '${broken.name}' holds ${broken.value} (learning rate ${lr.toPrecision(3)})`,
            `lower the learning rate (lr)${checkpoint ? `; the checkpoint of the last good epoch is kept at ${checkpoint}` : ''}`,
          );
        }
        time.optimizer += now() - to;
        if (wantsAccuracy) {
          const logits = out[trainable.output]!.data as Float32Array;
          for (let i = 0; i < n; i++) if (argmaxRow(logits, i, classes!) === batchLabels[i]) correct++;
        }
        lossSum += loss * n;
        seen += n;
        step++;
        options.onProgress?.({ stage: `epoch ${epoch}/${o.epochs}`, done: s + 1, total: stepsPerEpoch, epoch, loss: lossSum / seen });
      }
      samples += seen;
      const stats: EpochStats = { epoch, lr, loss: lossSum / seen, ms: 0 };
      if (wantsAccuracy) stats.trainAccuracy = correct / seen;
      if (valSet && evalSession) {
        const tv = now();
        const r = await evaluateBound(evalSession, trainable, valSet, { ...paramFeeds, ...stateFeeds }, classes, fixedBatch ?? o.evalBatch, fixedBatch !== undefined, teacher);
        time.eval += now() - tv;
        if (!Number.isFinite(r.loss)) {
          throw nonFinite(`the validation loss is ${r.loss} after epoch ${epoch}`, `lower the learning rate (lr)${checkpoint ? `; the checkpoint of the last good epoch is kept at ${checkpoint}` : ''}`);
        }
        stats.valLoss = r.loss;
        if (r.accuracy !== undefined) stats.valAccuracy = r.accuracy;
      }
      if (options.checkpoint) {
        const tc = now();
        const trained = withValues(inference, [...params, ...stateOf()]);
        checkpoint = (await saveModel(trained.toProto(), options.checkpoint, inputPath !== undefined ? { inputPath } : {})).path;
        time.checkpoint += now() - tc;
      }
      stats.ms = now() - te;
      epochs.push(stats);
      options.onEpoch?.(stats);
    }
    time.total = now() - t0;
    const trainMs = time.forwardBackward + time.optimizer + time.data + time.teacher;
    const result: TrainResult = {
      model: withValues(inference, [...params, ...stateOf()]),
      epochs,
      steps: step,
      samples,
      samplesPerSec: trainMs > 0 ? (samples * 1000) / trainMs : 0,
      time,
      params: params.map((p) => p.name),
      paramValues: params.reduce((sum, p) => sum + p.data.length, 0),
      state: trainable.state.map((s) => s.name),
    };
    if (checkpoint) result.checkpoint = checkpoint;
    return result;
  } finally {
    for (const s of sessions) await s.release();
  }
}

/**
 * Checks before training that a checkpoint can be written: its folder exists and it is not the input model.
 * @throws LowbitError SAME_INPUT_OUTPUT, FILE_NOT_FOUND (missing folder)
 */
function checkCheckpoint(path: string, inputPath: string | undefined): void {
  const dir = dirname(resolve(path));
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new LowbitError('FILE_NOT_FOUND', `cannot write checkpoints to '${path}': folder '${dir}' does not exist`, 'create the folder first');
  }
  if (inputPath === undefined) return;
  const a = statSync(path, { throwIfNoEntry: false });
  const b = statSync(inputPath, { throwIfNoEntry: false });
  const same = a && b ? a.dev === b.dev && a.ino === b.ino : resolve(path) === resolve(inputPath);
  if (same) throw new LowbitError('SAME_INPUT_OUTPUT', `refusing to write checkpoints over the input model '${inputPath}'`, 'choose a different checkpoint path');
}

/** The teacher's session, the output giving soft targets, and [teacher input, student input] pairs. */
interface Teacher {
  session: Session;
  output: string;
  inputs: [string, string][];
}

/** The teacher's output on the student's (augmented) batch. */
async function runTeacher(t: Teacher, feeds: Record<string, NdArray>): Promise<NdArray> {
  const tin = Object.fromEntries(t.inputs.map(([own, student]) => [own, feeds[student]!]));
  return (await t.session.run(tin, [t.output]))[t.output]!;
}

/** The first param or state value that is NaN or infinite. */
function firstNonFinite(list: readonly { name: string; data: Float32Array }[]): { name: string; value: number } | undefined {
  for (const p of list) {
    const d = p.data;
    for (let i = 0; i < d.length; i++) {
      // x - x is NaN exactly for NaN and ±Infinity.
      if (d[i]! - d[i]! !== 0) return { name: p.name, value: d[i]! };
    }
  }
  return undefined;
}

function allocLike(a: NdArray, length: number): TypedArray {
  const Ctor = a.data.constructor as new (n: number) => TypedArray;
  return new Ctor(length);
}

/** Mean loss and top-1 accuracy on a bound data set through the eval graph. */
async function evaluateBound(
  session: Session,
  t: Trainable,
  set: Bound,
  weights: Record<string, NdArray>,
  classes: number | undefined,
  batch: number,
  fullBatchesOnly: boolean,
  teacher: Teacher | undefined,
): Promise<{ loss: number; accuracy?: number }> {
  let lossSum = 0;
  let correct = 0;
  const targetBuf = classes !== undefined ? new Float32Array(batch * classes) : undefined;
  // A model with a fixed batch size sees only whole batches.
  const count = fullBatchesOnly ? Math.floor(set.count / batch) * batch : set.count;
  if (count === 0) throw badOption(`the ${set.count} validation samples do not fill one batch of ${batch}, the model's fixed batch size`, 'pass more validation samples');
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const feeds: Record<string, NdArray> = { ...weights };
    for (const [k, a] of Object.entries(set.inputs)) feeds[k] = sliceRows(a, start, start + n);
    const labels = set.labels?.subarray(start, start + n);
    if (t.targets.target) {
      if (set.targets) feeds[t.targets.target] = sliceRows(set.targets, start, start + n);
      else if (labels && classes !== undefined) feeds[t.targets.target] = { dtype: 'float32', shape: [n, classes], data: oneHotTargets(labels, classes, targetBuf) };
    }
    if (teacher && t.targets.teacher) {
      feeds[t.targets.teacher] = await runTeacher(teacher, feeds);
    }
    const out = await session.run(feeds, [t.loss, t.output]);
    lossSum += (out[t.loss]!.data as Float32Array)[0]! * n;
    if (labels && classes !== undefined) {
      const logits = out[t.output]!.data as Float32Array;
      for (let i = 0; i < n; i++) if (argmaxRow(logits, i, classes) === labels[i]) correct++;
    }
  }
  const r: { loss: number; accuracy?: number } = { loss: lossSum / count };
  if (set.labels && classes !== undefined) r.accuracy = correct / count;
  return r;
}

/** Loss spec kinds and other option lists for callers that validate flags. */
export { OPTIMIZERS, SCHEDULES };
export type { ParamTensor };
