// `lowbit train MODEL --data X.npy --labels Y.npy -o OUT ...`: flags -> TrainOptions -> pipeline train()
// -> per-epoch table or JSON. MODEL is an ONNX file or the builtin untrained `digits-cnn`. Paths and flags
// are checked before the pipeline (and ONNX Runtime) is loaded. CLI only.

import { existsSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { LowbitError } from '../../errors.js';
import type { NdArray } from '../../ndarray.js';
import type { EpochStats, TrainOptions, TrainResult, TrainTimes } from '../../pipeline/train.js';
import { formatCount, formatMs, formatPct } from '../../report/format.js';
import { renderTable } from '../../report/table.js';
import { batchOption, checkOutput, choiceOption, explainModelErrors, jsonOption, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';

/** The builtin model name (kept here too so `--help` does not load the model code). */
const BUILTIN = 'digits-cnn';
const OPTIMIZERS = ['sgd', 'adamw'] as const;
const SCHEDULES = ['constant', 'cosine', 'step'] as const;
const LOSSES = ['cross-entropy', 'mse'] as const;

interface TrainFlags {
  data: string;
  labels?: string;
  output: string;
  epochs?: number;
  lr?: number;
  batch?: number;
  optimizer?: (typeof OPTIMIZERS)[number];
  momentum?: number;
  weightDecay?: number;
  schedule?: (typeof SCHEDULES)[number];
  loss?: (typeof LOSSES)[number];
  labelSmoothing?: number;
  valSplit?: number;
  valData?: string;
  valLabels?: string;
  shift?: number;
  seed?: number;
  threads?: number;
  json?: boolean;
}

/** The --json object. */
export interface TrainJson {
  output: string;
  epochs: { epoch: number; lr: number; loss: number; trainAccuracy?: number; valLoss?: number; valAccuracy?: number }[];
  samplesPerSec: number;
  steps: number;
  samples: number;
  /** Trained tensors, and their values in all. */
  params: number;
  paramValues: number;
  timeMs: TrainTimes;
}

/** commander value parser: a finite number > 0. */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number, e.g. 0.001.');
  return n;
}

/** commander value parser: a finite number >= 0. */
export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number >= 0.');
  return n;
}

/** commander value parser: a number in (0, 1). */
export function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n > 0 && n < 1)) throw new InvalidArgumentError('expected a fraction between 0 and 1, e.g. 0.1.');
  return n;
}

/** commander value parser: an integer (any sign). */
export function integer(value: string): number {
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('expected an integer.');
  return Number(value);
}

/** commander value parser: an integer >= 0. */
function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('expected an integer >= 0.');
  return Number(value);
}

/** Command-line flags -> library options (only what the user set; the library owns the defaults). */
export function toTrainOptions(f: TrainFlags): TrainOptions {
  const o: TrainOptions = {};
  if (f.epochs !== undefined) o.epochs = f.epochs;
  if (f.lr !== undefined) o.lr = f.lr;
  if (f.batch !== undefined) o.batch = f.batch;
  if (f.optimizer !== undefined) o.optimizer = f.optimizer;
  if (f.momentum !== undefined) o.momentum = f.momentum;
  if (f.weightDecay !== undefined) o.weightDecay = f.weightDecay;
  if (f.schedule !== undefined) o.schedule = f.schedule;
  if (f.loss !== undefined) o.loss = f.loss;
  if (f.labelSmoothing !== undefined) o.labelSmoothing = f.labelSmoothing;
  if (f.valSplit !== undefined) o.valSplit = f.valSplit;
  if (f.seed !== undefined) o.seed = f.seed;
  if (f.threads !== undefined) o.threads = f.threads;
  return o;
}

/** The --json object of a run. */
export function trainJson(output: string, r: TrainResult): TrainJson {
  return {
    output,
    epochs: r.epochs.map(({ epoch, lr, loss, trainAccuracy, valLoss, valAccuracy }) => ({
      epoch,
      lr,
      loss,
      ...(trainAccuracy === undefined ? {} : { trainAccuracy }),
      ...(valLoss === undefined ? {} : { valLoss }),
      ...(valAccuracy === undefined ? {} : { valAccuracy }),
    })),
    samplesPerSec: r.samplesPerSec,
    steps: r.steps,
    samples: r.samples,
    params: r.params.length,
    paramValues: r.paramValues,
    timeMs: r.time,
  };
}

const fmtLoss = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(4));
const fmtAcc = (v: number | undefined): string => (v === undefined ? '-' : formatPct(v, { digits: 2 }));

/** One line per finished epoch (stderr, text mode). */
export function epochLine(e: EpochStats, epochs: number): string {
  const parts = [`epoch ${e.epoch}/${epochs}`, `loss ${fmtLoss(e.loss)}`];
  if (e.valLoss !== undefined) parts.push(`val loss ${fmtLoss(e.valLoss)}`);
  if (e.valAccuracy !== undefined) parts.push(`val acc ${fmtAcc(e.valAccuracy)}`);
  parts.push(formatMs(e.ms));
  return parts.join('  ');
}

/** The human tables of a run: per-epoch metrics, then throughput and where the time went. */
export function renderTrain(model: string, output: string, r: TrainResult): string {
  const epochs = renderTable(
    ['epoch', 'lr', 'train loss', 'train acc', 'val loss', 'val acc', 'time'],
    r.epochs.map((e) => [e.epoch, e.lr.toPrecision(3), fmtLoss(e.loss), fmtAcc(e.trainAccuracy), fmtLoss(e.valLoss), fmtAcc(e.valAccuracy), formatMs(e.ms)]),
    { title: `Training of ${model} -> ${output}` },
  );
  const t = r.time;
  const share = (ms: number): string => (t.total > 0 ? formatPct(ms / t.total, { digits: 1 }) : '-');
  const summary = renderTable(
    ['metric', 'value', 'share'],
    [
      ['trained params', `${formatCount(r.paramValues)} in ${formatCount(r.params.length)} tensors`, ''],
      ['steps (samples)', `${formatCount(r.steps)} (${formatCount(r.samples)})`, ''],
      ['throughput', `${formatCount(Math.round(r.samplesPerSec))} samples/s`, ''],
      ['forward + backward (ORT)', formatMs(t.forwardBackward), share(t.forwardBackward)],
      ['optimizer', formatMs(t.optimizer), share(t.optimizer)],
      ['data + augmentation', formatMs(t.data), share(t.data)],
      ...(t.teacher > 0 ? [['teacher', formatMs(t.teacher), share(t.teacher)]] : []),
      ['evaluation', formatMs(t.eval), share(t.eval)],
      ['checkpoints', formatMs(t.checkpoint), share(t.checkpoint)],
      ['setup (graphs, sessions)', formatMs(t.setup), share(t.setup)],
      ['total', formatMs(t.total), ''],
    ],
  );
  return `${epochs}\n\n${summary}`;
}

/** Reads a .npy; float64 inputs are narrowed to float32 (NumPy's default dtype vs the usual model input). */
export async function readArray(path: string, narrow: boolean): Promise<NdArray> {
  const { openNpy } = await import('../../data/npy.js');
  const a = openNpy(path).readAll();
  if (narrow && a.dtype === 'float64') return { dtype: 'float32', shape: a.shape, data: Float32Array.from(a.data as Float64Array) };
  return a;
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('train a float ONNX model (training graph run by ONNX Runtime) and write the trained inference model')
    .argument('<MODEL>', `float ONNX model file, or '${BUILTIN}' for the builtin untrained digit CNN (input [N,1,28,28] in [0,1], 10 classes)`)
    .requiredOption('--data <X.npy>', 'training inputs (.npy), samples on axis 0, shaped like the model input (float64 is read as float32)')
    .option('--labels <Y.npy>', 'integer class labels, one per sample (cross-entropy); targets shaped like the output (mse)')
    .requiredOption('-o, --output <OUT>', 'where to write the trained model; rewritten after every epoch (never the input)')
    .option('--epochs <N>', 'passes over the training data (default: 10)', positiveInt)
    .option('--lr <X>', 'base learning rate (default: 0.001 for adamw, 0.01 for sgd)', positiveNumber)
    .addOption(batchOption('samples per training step (default: 64)'))
    .addOption(choiceOption('--optimizer <name>', 'optimizer (default: adamw)', OPTIMIZERS))
    .option('--momentum <M>', 'SGD momentum (default: 0.9)', nonNegativeNumber)
    .option('--weight-decay <W>', 'weight decay on weights of rank >= 2 (default: 0.01 for adamw, 0 for sgd)', nonNegativeNumber)
    .addOption(choiceOption('--schedule <name>', 'learning-rate schedule (default: cosine)', SCHEDULES))
    .addOption(choiceOption('--loss <name>', 'loss on the first output (default: cross-entropy on logits)', LOSSES))
    .option('--label-smoothing <S>', 'cross-entropy label smoothing (default: 0)', nonNegativeNumber)
    .addOption(new Option('--val-split <F>', 'hold out this fraction of the training data (its last samples) for validation').argParser(fraction).conflicts('valData'))
    .addOption(new Option('--val-data <X.npy>', 'validation inputs (.npy)').conflicts('valSplit'))
    .option('--val-labels <Y.npy>', 'validation labels (.npy), with --val-data')
    .option('--shift <PX>', 'augmentation: shift each image batch sample by up to PX pixels (NCHW float inputs; default: 0)', nonNegativeInt)
    .option('--seed <S>', 'seed of shuffling and augmentation (default: 0)', integer)
    .addOption(threadsOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
MODEL '${BUILTIN}' is lowbit's builtin untrained digit CNN for 28x28 images (MNIST-like):
  [Conv3x3-BN-Relu-MaxPool2] x3 (16, 32, 64 channels) -> Flatten -> Gemm(10).
The output is a plain inference model (BatchNormalization in inference mode) that 'lowbit quantize' takes.

Example:
  lowbit train ${BUILTIN} --data x.npy --labels y.npy -o digits.onnx --epochs 10 --val-split 0.1 --shift 2`,
    )
    .action(async (model: string, flags: TrainFlags) => {
      const builtin = model === BUILTIN && !existsSync(model);
      if (!builtin) requireFile(model, 'model');
      checkOutput(flags.output, model);
      requireFile(flags.data, 'data');
      if (flags.labels !== undefined) requireFile(flags.labels, 'labels');
      if (flags.valData !== undefined) requireFile(flags.valData, 'validation data');
      if (flags.valLabels !== undefined) {
        if (flags.valData === undefined) throw new LowbitError('BAD_OPTION', '--val-labels needs --val-data', 'pass the validation inputs with --val-data');
        requireFile(flags.valLabels, 'validation labels');
      }
      if (flags.labels === undefined) {
        throw new LowbitError('BAD_OPTION', `--labels is required for the ${flags.loss ?? 'cross-entropy'} loss`, 'pass integer class labels (.npy), one per sample');
      }
      if (flags.valData !== undefined && flags.valLabels === undefined) {
        throw new LowbitError('BAD_OPTION', '--val-data needs --val-labels', 'pass the validation labels with --val-labels');
      }
      if (flags.labelSmoothing !== undefined && !(flags.labelSmoothing < 1)) {
        throw new LowbitError('BAD_OPTION', `--label-smoothing must be below 1, got ${flags.labelSmoothing}`, 'use e.g. 0.1');
      }
      const options = toTrainOptions(flags);
      const mse = flags.loss === 'mse';
      const [{ train }, { randomShift }, { buildDigitCnn }] = await Promise.all([
        import('../../pipeline/train.js'),
        import('../../train/augment.js'),
        import('../../models/digits.js'),
      ]);
      const data = { inputs: await readArray(flags.data, true), ...(mse ? { targets: await readArray(flags.labels!, true) } : { labels: await readArray(flags.labels!, false) }) };
      if (flags.valData !== undefined) {
        options.validation = { inputs: await readArray(flags.valData, true), ...(mse ? { targets: await readArray(flags.valLabels!, true) } : { labels: await readArray(flags.valLabels!, false) }) };
      }
      if (flags.shift) options.augment = randomShift(flags.shift);
      options.checkpoint = flags.output;
      if (!builtin) options.inputPath = model;
      const progress = stageProgress(!flags.json);
      const epochs = options.epochs ?? 10;
      options.onProgress = progress.onProgress;
      if (!flags.json) options.onEpoch = (e) => process.stderr.write(`${epochLine(e, epochs)}\n`);
      let result: TrainResult;
      try {
        result = await explainModelErrors(builtin ? [] : [model], () => train(builtin ? buildDigitCnn() : model, data, options));
      } finally {
        progress.stop();
      }
      if (flags.json) printJson(trainJson(flags.output, result));
      else printText(renderTrain(model, flags.output, result));
    });
}
