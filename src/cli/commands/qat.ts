// `lowbit qat MODEL --data X.npy (--labels Y.npy | --distill) -o OUT [--bits 8|4] ...`: flags -> QatOptions
// -> pipeline qat() -> the float | PTQ | QAT table or JSON. Paths and flags are checked before the
// pipeline (and ONNX Runtime) is loaded. CLI only.

import { Option, type Command } from 'commander';
import { LowbitError } from '../../errors.js';
import type { QatOptions, QatResult } from '../../pipeline/qat.js';
import { formatBytes, formatDb, formatMs, formatPct, formatRatio } from '../../report/format.js';
import { renderTable, type Cell } from '../../report/table.js';
import { batchOption, checkOutput, choiceOption, explainModelErrors, jsonOption, nameList, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';
import { epochLine, fraction, integer, nonNegativeNumber, positiveNumber, readArray } from './train.js';

interface QatFlags {
  data: string;
  labels?: string;
  distill?: boolean;
  temperature?: number;
  output: string;
  bits?: '8' | '4';
  perTensor?: boolean;
  activationType?: 'uint8' | 'int8';
  excludeNodes?: string[];
  excludeOps?: string[];
  epochs?: number;
  lr?: number;
  scaleLr?: number;
  batch?: number;
  calibSamples?: number;
  valSplit?: number;
  shift?: number;
  seed?: number;
  threads?: number;
  json?: boolean;
}

/** The float | PTQ | QAT table. */
export function renderQat(input: string, r: QatResult): string {
  const floatAcc = r.rows[0]?.accuracy;
  const rows: Cell[][] = r.rows.map((v, i) => [
    v.name,
    formatBytes(v.sizeBytes),
    v.latencyMs ? formatMs(v.latencyMs.batch1) : '-',
    i === 0 ? '1.00x' : v.speedup ? formatRatio(v.speedup.batch1) : '-',
    v.latencyMs ? formatMs(v.latencyMs.batch32) : '-',
    i === 0 ? '1.00x' : v.speedup ? formatRatio(v.speedup.batch32) : '-',
    v.accuracy !== undefined ? formatPct(v.accuracy, { digits: 2 }) : '-',
    v.accuracy !== undefined && floatAcc !== undefined && i > 0 ? formatPct(v.accuracy - floatAcc, { digits: 2, signed: true }) : '-',
    v.agreement !== undefined ? formatPct(v.agreement, { digits: 1 }) : '-',
    v.sqnrDb !== undefined ? formatDb(v.sqnrDb) : '-',
  ]);
  return [
    renderTable(['model', 'size', 'batch 1', 'speedup', 'batch 32', 'speedup', 'accuracy', 'vs float', 'agrees w/ float', 'SQNR'], rows, {
      title: `${input}: ${r.trainSamples} samples trained on, ${r.heldOutSamples} held out (every row measured on them)`,
    }),
    ...r.notes.map((n) => `note: ${n}`),
    'PTQ: the same calibration and placement without training. QAT changes the outputs on purpose (it learns), so its SQNR against float is low even when its accuracy is not: judge QAT by accuracy.',
    `wrote ${r.output}`,
  ].join('\n');
}

export function registerQat(program: Command): void {
  program
    .command('qat')
    .description('quantization-aware training: fake-quantize, fine-tune in ONNX Runtime, export a QDQ model (int8 or 4-bit weights)')
    .argument('<MODEL>', 'float ONNX model file')
    .requiredOption('--data <X.npy>', 'training inputs (.npy), samples on axis 0 (float64 is read as float32)')
    .addOption(new Option('--labels <Y.npy>', 'integer class labels, one per sample (cross-entropy)').conflicts('distill'))
    .option('--distill', 'learn from the float model’s outputs (KL divergence): no labels needed')
    .option('--temperature <T>', 'distillation temperature (default: 1)', positiveNumber)
    .requiredOption('-o, --output <OUT>', 'where to write the quantized model (never the input)')
    .addOption(choiceOption('--bits <8|4>', 'weight bits: 8 (int8, integer kernels) or 4 (int4 weights, 8x smaller than float)', ['8', '4']))
    .option('--per-tensor', 'one scale per weight tensor (default: per output channel)')
    .addOption(choiceOption('--activation-type <type>', 'activation element type (default: uint8)', ['uint8', 'int8']))
    .option('--exclude-nodes <A,B>', 'node names to leave in float (comma-separated, repeatable)', nameList)
    .option('--exclude-ops <Op,...>', 'op types to leave in float (comma-separated, repeatable)', nameList)
    .option('--epochs <N>', 'fine-tuning epochs (default: 3)', positiveInt)
    .option('--lr <X>', 'AdamW learning rate of weights and biases (default: 0.0001)', positiveNumber)
    .option('--scale-lr <M>', 'learning-rate multiplier of the quantization scales (default: 0.1; 0 keeps the calibrated scales)', nonNegativeNumber)
    .addOption(batchOption('samples per training step (default: 64)'))
    .option('--calib-samples <N>', 'training samples used to calibrate the initial scales (default: 512)', positiveInt)
    .option('--val-split <F>', 'fraction of the data held out (its last samples) for validation and the final table (default: 0.1)', fraction)
    .option('--shift <PX>', 'augmentation: shift each image sample by up to PX pixels (NCHW float inputs; default: 0)', positiveInt)
    .option('--seed <S>', 'seed of shuffling and augmentation (default: 0)', integer)
    .addOption(threadsOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
Fake quantization goes exactly where 'lowbit quantize --mode static' puts QuantizeLinear/DequantizeLinear
(BatchNormalization folded first); scales start from min-max calibration (MSE-searched clipping for 4-bit
weights) and are learned (LSQ) with the weights. The output has the format static PTQ writes. The table
compares float, PTQ (same calibration, no training) and QAT on the held-out samples.

Example:
  lowbit qat digits.onnx --data x.npy --labels y.npy -o digits.qat4.onnx --bits 4 --epochs 3 --shift 2`,
    )
    .action(async (model: string, flags: QatFlags) => {
      requireFile(model, 'model');
      checkOutput(flags.output, model);
      requireFile(flags.data, 'data');
      if (flags.labels !== undefined) requireFile(flags.labels, 'labels');
      if (flags.labels === undefined && !flags.distill) {
        throw new LowbitError('BAD_OPTION', 'qat needs --labels or --distill', 'pass integer class labels (.npy), or --distill to learn from the float model’s outputs');
      }
      if (flags.temperature !== undefined && !flags.distill) throw new LowbitError('BAD_OPTION', '--temperature is an option of --distill', 'add --distill or drop --temperature');
      const [{ qat }, { randomShift }] = await Promise.all([import('../../pipeline/qat.js'), import('../../train/augment.js')]);
      const options: QatOptions = {
        input: model,
        output: flags.output,
        data: await readArray(flags.data, true),
        bits: flags.bits === '4' ? 4 : 8,
        perChannel: !flags.perTensor,
      };
      if (flags.labels !== undefined) options.labels = await readArray(flags.labels, false);
      if (flags.distill) options.distill = true;
      if (flags.temperature !== undefined) options.temperature = flags.temperature;
      if (flags.activationType) options.activationType = flags.activationType;
      if (flags.excludeNodes) options.excludeNodes = flags.excludeNodes;
      if (flags.excludeOps) options.excludeOps = flags.excludeOps;
      if (flags.epochs !== undefined) options.epochs = flags.epochs;
      if (flags.lr !== undefined) options.lr = flags.lr;
      if (flags.scaleLr !== undefined) options.scaleLr = flags.scaleLr;
      if (flags.batch !== undefined) options.batch = flags.batch;
      if (flags.calibSamples !== undefined) options.calibSamples = flags.calibSamples;
      if (flags.valSplit !== undefined) options.valSplit = flags.valSplit;
      if (flags.shift) options.augment = randomShift(flags.shift);
      if (flags.seed !== undefined) options.seed = flags.seed;
      if (flags.threads !== undefined) options.threads = flags.threads;
      const progress = stageProgress(!flags.json);
      options.onProgress = progress.onProgress;
      const epochs = options.epochs ?? 3;
      if (!flags.json) options.onEpoch = (e) => process.stderr.write(`${epochLine(e, epochs)}\n`);
      let result: QatResult;
      try {
        result = await explainModelErrors([model], () => qat(options));
      } finally {
        progress.stop();
      }
      if (flags.json) {
        const { training, ...rest } = result;
        printJson({ ...rest, training: { epochs: training.epochs, samplesPerSec: training.samplesPerSec, timeMs: training.time } });
      } else printText(renderQat(model, result));
    });
}
