// `lowbit quantize MODEL -o OUT ...`: flags -> QuantizeOptions -> pipeline quantize() -> table or
// JSON. Paths are checked before the pipeline (and ONNX Runtime) is loaded. CLI only.

import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  ACTIVATION_TYPES,
  CALIB_METHODS,
  QUANT_MODES,
  WEIGHT_TYPES,
  resolveQuantizeOptions,
  type ActivationType,
  type CalibMethod,
  type QuantMode,
  type QuantizeOptions,
  type QuantizeResult,
  type WeightType,
} from '../../pipeline/options.js';
import { renderQuantizeReport } from '../../report/quantize-report.js';
import { checkOutput, choiceOption, jsonOption, nameList, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';

interface QuantizeFlags {
  output: string;
  mode?: QuantMode;
  calib?: string;
  labels?: string;
  method?: CalibMethod;
  movingAverage?: boolean;
  averagingConstant?: number;
  percentile?: number;
  numBins?: number;
  perChannel?: boolean;
  perTensor?: boolean;
  weightType?: WeightType;
  activationType?: ActivationType;
  excludeNodes?: string[];
  excludeOps?: string[];
  threads?: number;
  json?: boolean;
}

/** Command-line flags -> library options; only what the user set (the library owns the defaults). */
export function toQuantizeOptions(input: string, f: QuantizeFlags): QuantizeOptions {
  const o: QuantizeOptions = { input, output: f.output };
  if (f.mode !== undefined) o.mode = f.mode;
  if (f.calib !== undefined) o.calib = f.calib;
  if (f.labels !== undefined) o.labels = f.labels;
  if (f.method !== undefined) o.method = f.method;
  if (f.movingAverage) o.movingAverage = true;
  if (f.averagingConstant !== undefined) o.averagingConstant = f.averagingConstant;
  if (f.percentile !== undefined) o.percentile = f.percentile;
  if (f.numBins !== undefined) o.numBins = f.numBins;
  if (f.perChannel) o.perChannel = true;
  if (f.perTensor) o.perChannel = false;
  if (f.weightType !== undefined) o.weightType = f.weightType;
  if (f.activationType !== undefined) o.activationType = f.activationType;
  if (f.excludeNodes !== undefined) o.excludeNodes = f.excludeNodes;
  if (f.excludeOps !== undefined) o.excludeOps = f.excludeOps;
  if (f.threads !== undefined) o.threads = f.threads;
  return o;
}

/** commander value parser: a finite decimal number ('99.99', '1e-2'); ranges are checked by the library. */
function finiteNumber(value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v)) throw new InvalidArgumentError('expected a number.');
  return v;
}

/** The --json object: exactly output, sizeBytes and fidelity. */
export function quantizeJson(r: QuantizeResult): { output: string; sizeBytes: QuantizeResult['sizeBytes']; fidelity: QuantizeResult['fidelity'] } {
  return { output: r.output, sizeBytes: r.sizeBytes, fidelity: r.fidelity };
}

export function registerQuantize(program: Command): void {
  program
    .command('quantize')
    .description('quantize a float ONNX model to int8 and measure its fidelity against the original')
    .argument('<MODEL>', 'float ONNX model file')
    .requiredOption('-o, --output <OUT>', 'where to write the quantized model (never the input)')
    .addOption(choiceOption('--mode <mode>', "'dynamic' (weights only, activations at run time) or 'static' (calibrated activations, QDQ); default: static with --calib, else dynamic", QUANT_MODES))
    .option('--calib <DATA>', 'samples for the model inputs (.npy, or .npz keyed by input name): calibration for static mode, verification for both')
    .option('--labels <LABELS.npy>', 'class labels of the --calib samples: adds float vs int8 top-1 accuracy to the report')
    .addOption(choiceOption('--method <method>', 'static mode: how activation ranges are chosen: minmax (extremes), percentile, entropy (KL) or mse (default: minmax)', CALIB_METHODS))
    .addOption(new Option('--moving-average', 'minmax: mean of per-sample min/max instead of the extremes (ORT moving_average)'))
    .addOption(new Option('--averaging-constant <c>', 'minmax --moving-average: exponential weight of each sample, in (0, 1] (default: the plain mean)').argParser(finiteNumber))
    .addOption(new Option('--percentile <P>', 'percentile: percent of values the range keeps, in (0, 100] (default: 99.999)').argParser(finiteNumber))
    .addOption(new Option('--num-bins <N>', 'percentile, entropy, mse: histogram bins (default: 2048; entropy 4096)').argParser(positiveInt))
    .addOption(new Option('--per-channel', 'one scale per output channel of each weight (default)').conflicts('perTensor'))
    .addOption(new Option('--per-tensor', 'one scale per weight tensor').conflicts('perChannel'))
    .addOption(choiceOption('--weight-type <type>', 'weight element type (default: int8); int4 (static mode only): weights 8x smaller than float32, MSE-clipped per-channel scales, opset 21; ORT runs those layers as float on dequantized weights, so no speed-up', WEIGHT_TYPES))
    .addOption(choiceOption('--activation-type <type>', 'activation element type (default: uint8)', ACTIVATION_TYPES))
    .option('--exclude-nodes <A,B>', 'node names to leave in float (comma-separated, repeatable)', nameList)
    .option('--exclude-ops <Op,...>', 'op types to leave in float, e.g. Softmax (comma-separated, repeatable)', nameList)
    .addOption(threadsOption())
    .addOption(jsonOption())
    .action(async (model: string, flags: QuantizeFlags) => {
      requireFile(model, 'model');
      checkOutput(flags.output, model);
      if (flags.calib !== undefined) requireFile(flags.calib, 'calibration data');
      if (flags.labels !== undefined) requireFile(flags.labels, 'labels');
      const options = toQuantizeOptions(model, flags);
      // Fail fast on option combinations (e.g. --mode static without --calib) before loading ORT.
      resolveQuantizeOptions(options);
      const progress = stageProgress(!flags.json);
      options.onProgress = progress.onProgress;
      // ONNX Runtime loads with the pipeline, only now.
      const { quantize } = await import('../../pipeline/quantize.js');
      let result: QuantizeResult;
      try {
        result = await quantize(options);
      } finally {
        progress.stop();
      }
      if (flags.json) {
        printJson(quantizeJson(result));
        // stdout holds only the JSON object; fidelity warnings still reach the user.
        for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
      } else {
        printText(renderQuantizeReport(result));
      }
    });
}
