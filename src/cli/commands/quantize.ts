// `lowbit quantize MODEL -o OUT ...`: flags -> QuantizeOptions -> pipeline quantize() -> table or
// JSON. Paths are checked before the pipeline (and ONNX Runtime) is loaded. CLI only.

import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  ACTIVATION_TYPES,
  BACKENDS,
  CALIB_METHODS,
  GATE_FALLBACKS,
  MODEL_FORMATS,
  DYNAMIC_CONV,
  OPTIMIZE_FOR,
  QUANT_MODES,
  WEIGHT_ALGORITHMS,
  WEIGHT_BITS,
  WEIGHT_TYPES,
  resolveQuantizeOptions,
  type ActivationType,
  type Backend,
  type CalibMethod,
  type GateFallback,
  type ModelFormat,
  type OptimizeFor,
  type QuantMode,
  type QuantizeOptions,
  type QuantizeResult,
  type WeightAlgorithm,
  type WeightType,
} from '../../pipeline/options.js';
import { applyQuantizeConfig } from '../../pipeline/config.js';
import { renderQuantizeReport } from '../../report/quantize-report.js';
import { renderPresetReport } from '../../report/preset-report.js';
import { TRANSFORMERS_JS_DTYPES, type TransformersJsDtype } from '../../pipeline/preset-dtypes.js';
import { LowbitError } from '../../errors.js';
import { ExitCode } from '../errors.js';
import { checkOutput, choiceOption, jsonOption, nameList, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';
import { IMAGE_HELP, imageOptions, requireData, toImagePreprocess, type ImageFlags } from '../image-flags.js';

/** Presets: a set of outputs for one target runtime. */
const PRESETS = ['transformers.js'] as const;

interface QuantizeFlags extends ImageFlags {
  output?: string;
  preset?: (typeof PRESETS)[number];
  dtypes?: string[];
  webCheck?: boolean;
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
  format?: ModelFormat;
  dynamicConv?: (typeof DYNAMIC_CONV)[number];
  excludeNodes?: string[];
  excludeOps?: string[];
  keepIoTypes?: boolean;
  threads?: number;
  json?: boolean;
  symmetricActivations?: boolean;
  reduceRange?: boolean;
  optimizeFor?: OptimizeFor;
  backend?: Backend;
  maxDrop?: number;
  gateFallback?: GateFallback;
  config?: string;
  saveConfig?: string;
  bits?: number;
  blockSize?: number;
  algorithm?: WeightAlgorithm;
  symmetric?: boolean;
  accuracyLevel?: number;
  actOrder?: boolean;
  damp?: number;
  shardSize?: number;
}

/** Command-line flags -> library options; only what the user set (the library owns the defaults). */
export function toQuantizeOptions(input: string, f: QuantizeFlags): QuantizeOptions {
  const o: QuantizeOptions = { input, output: f.output ?? '' };
  if (f.mode !== undefined) o.mode = f.mode;
  if (f.calib !== undefined) o.calib = f.calib;
  const image = toImagePreprocess(f);
  if (image !== undefined) o.image = image;
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
  if (f.format !== undefined) o.format = f.format;
  if (f.dynamicConv !== undefined) o.dynamicConv = f.dynamicConv;
  if (f.excludeNodes !== undefined) o.excludeNodes = f.excludeNodes;
  if (f.excludeOps !== undefined) o.excludeOps = f.excludeOps;
  if (f.keepIoTypes !== undefined) o.keepIoTypes = f.keepIoTypes;
  if (f.threads !== undefined) o.threads = f.threads;
  if (f.symmetricActivations) o.symmetricActivations = true;
  if (f.reduceRange) o.reduceRange = true;
  if (f.optimizeFor !== undefined) o.optimizeFor = f.optimizeFor;
  if (f.backend !== undefined) o.backend = f.backend;
  if (f.maxDrop !== undefined) o.maxDrop = f.maxDrop;
  if (f.gateFallback !== undefined) o.gateFallback = f.gateFallback;
  if (f.config !== undefined) o.config = f.config;
  if (f.saveConfig !== undefined) o.saveConfig = f.saveConfig;
  if (f.bits !== undefined) o.bits = f.bits as QuantizeOptions['bits'];
  if (f.blockSize !== undefined) o.blockSize = f.blockSize;
  if (f.algorithm !== undefined) o.algorithm = f.algorithm;
  if (f.symmetric) o.symmetric = true;
  if (f.accuracyLevel !== undefined) o.accuracyLevel = f.accuracyLevel;
  if (f.actOrder !== undefined) o.actOrder = f.actOrder;
  if (f.damp !== undefined) o.damp = f.damp;
  if (f.shardSize !== undefined) o.shardSize = f.shardSize;
  return o;
}

/** commander value parser: a size in bytes, '1048576', '512MB', '1.5GB', '64MiB' (KB/MB/GB are powers of 1024, as file managers show them). */
function byteSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KIB|MB|MIB|GB|GIB)?\s*$/i.exec(value);
  if (!m) throw new InvalidArgumentError('expected a size such as 512MB or 2GB.');
  const unit = (m[2] ?? 'B').toUpperCase().replace('I', '');
  const bytes = Math.floor(Number(m[1]) * 1024 ** ({ B: 0, KB: 1, MB: 2, GB: 3 } as Record<string, number>)[unit]!);
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new InvalidArgumentError('expected a size such as 512MB or 2GB.');
  return bytes;
}

/** commander value parser: a finite decimal number ('99.99', '1e-2'); ranges are checked by the library. */
function finiteNumber(value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v)) throw new InvalidArgumentError('expected a number.');
  return v;
}

/** The --json object: output, sizeBytes and fidelity; with --max-drop also gate, and configPath when a config was written. */
export function quantizeJson(r: QuantizeResult): Pick<QuantizeResult, 'output' | 'sizeBytes' | 'fidelity' | 'gate' | 'configPath' | 'notes'> {
  return { output: r.output, sizeBytes: r.sizeBytes, fidelity: r.fidelity, ...(r.gate ? { gate: r.gate } : {}), ...(r.configPath !== undefined ? { configPath: r.configPath } : {}), ...(r.notes?.length ? { notes: r.notes } : {}) };
}

export function registerQuantize(program: Command): void {
  const command = program
    .command('quantize')
    .description('quantize a float ONNX model to int8 and measure its fidelity against the original')
    .argument('<MODEL>', 'float ONNX model file (with --preset: a model folder, or one .onnx file)')
    .option('-o, --output <OUT>', 'where to write the quantized model (never the input); with --preset: the output folder (default: next to each model)')
    .addOption(choiceOption('--preset <name>', "'transformers.js': write every dtype variant transformers.js loads (model_fp16.onnx, model_quantized.onnx, model_q4.onnx, ...) for each .onnx of the folder, each checked in onnxruntime-node and -web", PRESETS))
    .option('--dtypes <a,b>', `with --preset: the variants to write (default: all of ${TRANSFORMERS_JS_DTYPES.join(', ')})`, nameList)
    .addOption(new Option('--no-web-check', 'with --preset: do not run the variants in onnxruntime-web'))
    .addOption(choiceOption('--mode <mode>', "'dynamic' (weights only, activations at run time), 'static' (calibrated activations, QDQ), 'fp16' (float16 weights and compute, no calibration), 'bf16' (bfloat16 weights, float32 compute) or 'weight-only' (MatMul/Gemm weights in 8/4/2-bit blocks, activations float); default: static with --calib, else dynamic", QUANT_MODES))
    .option('--calib <DATA>', 'samples for the model inputs (.npy, .npz keyed by input name, or a folder of images: see below): calibration for static mode, verification for both; with --preset: the samples every variant is checked on (the first 4)')
    .option('--labels <LABELS.npy>', 'class labels of the --calib samples: adds float vs int8 top-1 accuracy to the report')
    .addOption(choiceOption('--method <method>', 'static mode: how activation ranges are chosen: minmax (extremes), percentile, entropy (KL) or mse (default: minmax)', CALIB_METHODS))
    .addOption(new Option('--moving-average', 'minmax: mean of per-sample min/max instead of the extremes (ORT moving_average)'))
    .addOption(new Option('--averaging-constant <c>', 'minmax --moving-average: exponential weight of each sample, in (0, 1] (default: the plain mean)').argParser(finiteNumber))
    .addOption(new Option('--percentile <P>', 'percentile: percent of values the range keeps, in (0, 100] (default: 99.999)').argParser(finiteNumber))
    .addOption(new Option('--num-bins <N>', 'percentile, entropy, mse: histogram bins (default: 2048; entropy 4096)').argParser(positiveInt))
    .addOption(new Option('--per-channel', 'one scale per output channel of each weight (default)').conflicts('perTensor'))
    .addOption(new Option('--per-tensor', 'one scale per weight tensor').conflicts('perChannel'))
    .addOption(choiceOption('--weight-type <type>', 'weight element type (default: int8); int4 (static mode only): weights 8x smaller than float32, MSE-clipped per-channel scales, opset 21; ORT runs those layers as float on dequantized weights, so no speed-up', WEIGHT_TYPES))
    .addOption(choiceOption('--activation-type <type>', 'activation element type (default: uint8); uint16 / int16 (static mode only, A16W8): finer activations for accuracy; ORT has no 16-bit integer kernels, those layers run as float between QuantizeLinear/DequantizeLinear, so no speed-up', ACTIVATION_TYPES))
    .addOption(choiceOption('--dynamic-conv <form>', "dynamic mode: Conv stays 'float' (default: ORT's CPU ConvInteger measured 2.5-5x slower) or becomes 'ConvInteger' (int8 weights, smaller file)", DYNAMIC_CONV))
    .addOption(choiceOption('--format <format>', "static mode: 'qdq' (QuantizeLinear/DequantizeLinear pairs that ORT fuses; default) or 'qoperator' (QLinearConv, QLinearMatMul, com.microsoft QLinear* ops written out, for runtimes without a QDQ fuser); weight-only mode: 'matmulnbits' (com.microsoft MatMulNBits; default), 'qdq' (blocked DequantizeLinear -> MatMul, opset 21) or 'unpack-on-load' (MatMul/Gemm and Conv weights and embedding tables as 4/8-bit codes that ONNX Runtime unpacks to float32 when the session loads: the download of the codes, float32 speed and memory; the fast choice for onnxruntime-web's wasm backend, whose MatMulNBits is 14-25x slower than float32); with --preset, unpack-on-load writes the q4 / q4f16 and q8 / int8 / uint8 variants in that form", MODEL_FORMATS))
    .addOption(choiceOption('--bits <N>', 'weight-only: bits per weight code, 8, 4 or 2 (default: 4)', WEIGHT_BITS.map(String)).argParser((v: string) => Number(v)))
    .addOption(new Option('--block-size <N>', 'weight-only: weight rows quantized together, a power of two in 16..256 (default: 32)').argParser(positiveInt))
    .addOption(choiceOption('--algorithm <name>', "weight-only: 'rtn' (round to nearest, default), 'hqq' (half-quadratic optimised zero points and scales, data-free) or 'gptq' (second-order error compensation from the --calib activations)", WEIGHT_ALGORITHMS))
    .addOption(new Option('--act-order', 'weight-only, gptq: quantize input features in order of decreasing activation energy (default)'))
    .addOption(new Option('--no-act-order', 'weight-only, gptq: quantize input features in their order'))
    .addOption(new Option('--damp <fraction>', 'weight-only, gptq: damping added to the Hessian diagonal, a fraction of its mean (default: 0.01)').argParser(finiteNumber))
    .addOption(new Option('--shard-size <size>', "split the output's external data into files of at most this size, e.g. 512MB or 2GB (named <OUT>_data, <OUT>_data_1, ... as transformers.js loads them)").argParser(byteSize))
    .addOption(new Option('--symmetric', 'weight-only, rtn: one zero point 2^(bits-1) for all blocks (no zero_points tensor)'))
    .addOption(new Option('--accuracy-level <N>', "weight-only, matmulnbits: MatMulNBits accuracy_level 0..4 (default 4: int8 activations per block, ORT's fast CPU path; 0: float activations, 12-17x slower than float32 at 8 and 2 bits on ORT's CPU)").argParser((v: string) => { if (!/^\d$/.test(v.trim())) throw new InvalidArgumentError('expected an integer 0..4.'); return Number(v); }))
    .option('--exclude-nodes <A,B>', 'node names to leave in float (comma-separated, repeatable)', nameList)
    .option('--exclude-ops <Op,...>', 'op types to leave in float, e.g. Softmax (comma-separated, repeatable)', nameList)
    .addOption(new Option('--keep-io-types', 'fp16 / bf16: keep float32 model inputs and outputs, with Casts inside (default)'))
    .addOption(new Option('--no-keep-io-types', 'fp16: float16 model inputs and outputs'))
    .addOption(new Option('--symmetric-activations', 'static mode: symmetric activation ranges (zero point in the middle)'))
    .addOption(new Option('--reduce-range', "static mode: 7-bit weights (ORT's reduce_range), for CPUs without VNNI"))
    .addOption(choiceOption('--optimize-for <goal>', "static mode: 'speed' keeps float the layers ONNX Runtime's x86 CPU runs slower in int8 (narrow stems, narrow depthwise convs, 8-bit MaxPool heads; default), 'size' quantizes every eligible layer (smallest file)", OPTIMIZE_FOR))
    .addOption(choiceOption('--backend <name>', "the ONNX Runtime backend the model is for: 'cpu' (onnxruntime-node, default) or 'wasm' (onnxruntime-web's WebAssembly backend, as browsers run it: the report times both models there, one thread, and static mode keeps every depthwise Conv float; needs the onnxruntime-web package)", BACKENDS))
    .addOption(new Option('--max-drop <X>', 'accuracy gate: largest accepted drop in percentage points on the held-out samples (accuracy with --labels, else 100 - top-1 agreement %, else relative RMS output error %); the most sensitive layers are kept float until it holds').argParser(finiteNumber))
    .addOption(choiceOption('--gate-fallback <where>', "with --max-drop: keep sensitive layers 'float' (default) or at 'int16' (16-bit activations, mixed precision; static mode)", GATE_FALLBACKS))
    .option('--config <lowbit.json>', 'quantize options from a JSON file (flags given here override its values)')
    .option('--save-config <PATH>', 'write this run\'s options (with the layers the gate kept float) as a config file (default with --max-drop: OUT with .onnx replaced by .lowbit.json)')
    .addOption(threadsOption())
    .addOption(jsonOption())
    .action(async (model: string, flags: QuantizeFlags) => {
      if (flags.preset !== undefined) return runPreset(model, flags);
      if (flags.dtypes !== undefined || flags.webCheck === false) throw new LowbitError('BAD_OPTION', '--dtypes and --no-web-check apply to --preset only', 'add --preset transformers.js, or drop them');
      if (flags.output === undefined) throw new LowbitError('BAD_OPTION', 'missing -o, --output <OUT>: where to write the quantized model', 'pass e.g. -o model.int8.onnx');
      requireFile(model, 'model');
      checkOutput(flags.output, model);
      if (flags.calib !== undefined) requireData(flags.calib, 'calibration data');
      if (flags.labels !== undefined) requireFile(flags.labels, 'labels');
      if (flags.config !== undefined) requireFile(flags.config, 'config');
      const options = toQuantizeOptions(model, flags);
      // Fail fast on option combinations (e.g. --mode static without --calib) and bad configs before loading ORT.
      resolveQuantizeOptions(applyQuantizeConfig(options));
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
      // The model is written either way; scripts and CI see that the accuracy goal was missed.
      if (result.gate && !result.gate.achieved) process.exitCode = ExitCode.GATE_NOT_MET;
    });
  for (const option of imageOptions()) command.addOption(option);
  command.addHelpText('after', IMAGE_HELP);
}

/** `--preset transformers.js`: the dtype suite for a model folder; the per-model quantize flags do not apply. */
async function runPreset(input: string, flags: QuantizeFlags): Promise<void> {
  const given = Object.keys(toQuantizeOptions(input, flags)).filter((k) => !['input', 'output', 'threads', 'shardSize', 'calib'].includes(k) && !(k === 'format' && flags.format === 'unpack-on-load'));
  if (given.length) {
    throw new LowbitError('BAD_OPTION', `${given.join(', ')} ${given.length > 1 ? 'do' : 'does'} not apply with --preset`, 'the preset fixes each variant\'s settings (see --help); quantize one variant with --mode instead to choose them');
  }
  if (flags.json) throw new LowbitError('BAD_OPTION', '--json does not apply with --preset yet', 'drop --json');
  const dtypes = flags.dtypes?.map((d) => {
    if (!(TRANSFORMERS_JS_DTYPES as readonly string[]).includes(d)) throw new LowbitError('BAD_OPTION', `unknown transformers.js dtype '${d}'`, `use some of: ${TRANSFORMERS_JS_DTYPES.join(', ')}`);
    return d as TransformersJsDtype;
  });
  const progress = stageProgress(true);
  const { quantizeTransformersJs } = await import('../../pipeline/preset.js');
  let result;
  try {
    result = await quantizeTransformersJs({
      input,
      ...(flags.output !== undefined ? { outputDir: flags.output } : {}),
      ...(dtypes ? { dtypes } : {}),
      web: flags.webCheck !== false,
      ...(flags.shardSize !== undefined ? { shardSize: flags.shardSize } : {}),
      ...(flags.calib !== undefined ? { data: flags.calib } : {}),
      ...(flags.format === 'unpack-on-load' ? { weightFormat: 'unpack-on-load' as const } : {}),
      ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.stop();
  }
  printText(renderPresetReport(result));
  if (result.variants.some((v) => v.error !== undefined || [v.node, v.web].some((st) => st !== 'ok' && !st.startsWith('skipped')))) process.exitCode = ExitCode.RUNTIME; // the files are written; the table says which variant failed where
}
