// The typed configuration of quantize(), shared by the CLI and library callers, with its
// validation (unknown keys and bad values are errors, never ignored). Pure; pipeline/ and cli/ import it.

import { CALIBRATION_METHODS, givenCalibrationOptions, resolveCalibration, type CalibrationMethod, type ResolvedCalibration } from '../calib/methods.js';
import { checkImagePreprocess, type ImagePreprocess } from '../data/image-options.js';
import { LowbitError } from '../errors.js';
import type { QuantizeConfig } from './config.js';
import { checkWeightOnlyOptions, WEIGHT_ONLY_ALGORITHMS, type WeightOnlyAlgorithm } from '../passes/weight-only.js';
import type { BlockBits } from '../quant/blockwise.js';

/**
 * dynamic: weights quantized offline, activations at run time; static: activations calibrated (QDQ);
 * fp16: weights and activations float16 (src/passes/float16.ts); bf16: weights stored as bfloat16, computed in float32
 * (ORT's CPU provider has no bfloat16 arithmetic kernels); weight-only: MatMul/Gemm weights quantized blockwise to 2, 4
 * or 8 bits (com.microsoft MatMulNBits or blocked DequantizeLinear; src/passes/weight-only.ts), activations float.
 */
export const QUANT_MODES = ['dynamic', 'static', 'fp16', 'bf16', 'weight-only'] as const;
export type QuantMode = (typeof QUANT_MODES)[number];

/** Calibration methods (how observed ranges become quantization ranges): src/calib/methods.ts. */
export const CALIB_METHODS = CALIBRATION_METHODS;
export type CalibMethod = CalibrationMethod;

/** int4: static mode only (symmetric, MSE-clipped scales, opset 21; ORT runs DequantizeLinear + float Conv/MatMul/Gemm). */
export const WEIGHT_TYPES = ['int8', 'uint8', 'int4'] as const;
export type WeightType = (typeof WEIGHT_TYPES)[number];

/** uint16 / int16 (A16W8, static mode only): finer activations for accuracy; ORT runs those units in float between Q/DQ (no speed-up). */
/** What the accuracy gate does with the layers it takes out of 8 bits. */
export const GATE_FALLBACKS = ['float', 'int16'] as const;
/** What static placement optimizes for: ORT's x86 CPU latency (default) or the smallest file. */
export const OPTIMIZE_FOR = ['speed', 'size'] as const;
export type OptimizeFor = (typeof OPTIMIZE_FOR)[number];
/** The ONNX Runtime backend a model is meant for: onnxruntime-node's CPU one, or onnxruntime-web's WebAssembly one. */
export const BACKENDS = ['cpu', 'wasm'] as const;
export type Backend = (typeof BACKENDS)[number];
export type GateFallback = (typeof GATE_FALLBACKS)[number];

export const ACTIVATION_TYPES = ['uint8', 'int8', 'uint16', 'int16'] as const;
export type ActivationType = (typeof ACTIVATION_TYPES)[number];

/**
 * Static mode's output form: qdq (QuantizeLinear/DequantizeLinear pairs) or qoperator (QLinearConv, QLinearMatMul, ...;
 * passes/qdq-to-qoperator.ts). Weight-only mode: matmulnbits (com.microsoft MatMulNBits, its default) or qdq (blocked
 * DequantizeLinear -> MatMul, opset 21).
 */
export const MODEL_FORMATS = ['qdq', 'qoperator', 'matmulnbits', 'unpack-on-load'] as const;
/** Dynamic mode: what Conv becomes (float by default: ORT's CPU ConvInteger measured 2.5–5x slower than its float Conv). */
export const DYNAMIC_CONV = ['float', 'ConvInteger'] as const;
export type ModelFormat = (typeof MODEL_FORMATS)[number];

/** Weight-only mode, matmulnbits format: the default MatMulNBits accuracy_level (see QuantizeOptions.accuracyLevel). */
export const WEIGHT_ONLY_ACCURACY_LEVEL = 4;

/** Weight-only mode: bits per weight code. */
export const WEIGHT_BITS: readonly BlockBits[] = [8, 4, 2];
/** Weight-only mode: how each block is quantized: rtn and hqq are data-free; gptq needs calibration data (src/quant/gptq.ts). */
export const WEIGHT_ALGORITHMS = [...WEIGHT_ONLY_ALGORITHMS, 'gptq'] as const;
export type WeightAlgorithm = WeightOnlyAlgorithm | 'gptq';

/** One step of a long-running stage, for progress displays. */
export interface ProgressEvent {
  /** e.g. 'calibrate', 'verify'. */
  stage: string;
  done: number;
  total: number;
}

/** What `quantize()` accepts. Optional fields take the defaults of {@link resolveQuantizeOptions}. */
export interface QuantizeOptions {
  /** Path of the float model (.onnx). */
  input: string;
  /** Path to write the quantized model to; must differ from `input`. */
  output: string;
  /** Default: 'static' when `calib` is given, else 'dynamic'. */
  mode?: QuantMode;
  /**
   * Samples (.npy / .npz). static: calibration data (required), a held-out part verifies the result;
   * dynamic: optional, used only to verify fidelity.
   */
  calib?: string;
  /**
   * How the images become inputs when `calib` is a folder of PNG/JPEG images (resize, crop, layout,
   * channels, scale, mean/std); what is left out is inferred from the model input (src/data/image-options.ts).
   */
  image?: ImagePreprocess;
  /**
   * Class labels (.npy of integers, one per sample of `calib`, or one-hot rows): the report adds
   * top-1 accuracy of the float and the quantized model on the verification samples.
   */
  labels?: string;
  /** Default 'minmax'. Static mode only, as the four method options below. */
  method?: CalibMethod;
  /** minmax: mean of per-sample min/max instead of the running extremes (ORT's moving_average). */
  movingAverage?: boolean;
  /** minmax with movingAverage: exponential weight of each new sample in (0, 1]; absent: the plain mean. */
  averagingConstant?: number;
  /** percentile: % of values the range keeps, in (0, 100]; default 99.999 (ORT's). */
  percentile?: number;
  /** percentile, entropy, mse: histogram bins; default 2048, entropy 4096 (at least 512). */
  numBins?: number;
  /** Weights per output channel (true, the default) or one scale per tensor (false). */
  perChannel?: boolean;
  /** Default 'int8'. 'int4' needs static mode: weights 8x smaller than float32, compute stays float. */
  weightType?: WeightType;
  /** Default 'uint8'. 'uint16' / 'int16' need static mode: more accurate, not faster (no 16-bit integer kernels in ORT). */
  activationType?: ActivationType;
  /**
   * Static mode: 'qdq' (default; ORT fuses the pairs into integer kernels when it loads the model) or
   * 'qoperator' (the integer ops written out: QLinearConv, QLinearMatMul, com.microsoft QLinearAdd, ...), for
   * runtimes without a QDQ fuser. Units that cannot be converted (float islands, int4 / 16-bit) stay QDQ.
   */
  format?: ModelFormat;
  /**
   * Dynamic mode: 'float' (default) leaves Conv float, 'ConvInteger' quantizes its weights and computes it
   * as DynamicQuantizeLinear -> ConvInteger (smaller file; slower than float on ORT's CPU kernels, measured).
   */
  dynamicConv?: (typeof DYNAMIC_CONV)[number];
  /**
   * Static mode, mixed precision: node name -> activation type of the tensors it reads and writes, e.g.
   * `{ conv3: 'int16' }` keeps one sensitive layer at 16 bits in a uint8 model (that unit runs in float between Q/DQ).
   */
  activationTypeOverrides?: Record<string, ActivationType>;
  /**
   * fp16 / bf16 modes: keep float32 graph inputs and outputs, with Casts inside the model (default true); false
   * makes them float16 (fp16 mode only: bf16 mode computes in float32).
   */
  keepIoTypes?: boolean;
  /** Node names left in float (fp16 mode: kept float32). */
  excludeNodes?: string[];
  /** Op types left in float (e.g. 'Softmax'). */
  excludeOps?: string[];
  /** Weight-only mode: bits per weight code, 8, 4 (default) or 2. */
  bits?: BlockBits;
  /** Weight-only mode: rows of each weight quantized together, a power of two in 16..256 (default 32). */
  blockSize?: number;
  /**
   * Weight-only mode: 'rtn' (round to nearest, default), 'hqq' (optimised zero points and scales, data-free) or 'gptq'
   * (second-order error compensation from the activations of `calib`: needs calibration data).
   */
  algorithm?: WeightAlgorithm;
  /** gptq: quantize input features in order of decreasing activation energy, block grids kept in the original order (default true). */
  actOrder?: boolean;
  /** gptq: damping added to the Hessian's diagonal, as a fraction of its mean (default 0.01). */
  damp?: number;
  /**
   * Split the output's external data into files of at most this many bytes (`<output>_data`, `<output>_data_1`, ...,
   * transformers.js' naming); a tensor bigger than that gets a file of its own. Default: one `<output>.data` file,
   * written only when the model passes protobuf's 2 GiB limit.
   */
  shardSize?: number;
  /** Weight-only mode, rtn: one zero point 2^(bits-1) for every block (no zero_points tensor). Default false. */
  symmetric?: boolean;
  /**
   * Weight-only mode, matmulnbits format: MatMulNBits accuracy_level. Default 4: ORT's CPU kernel quantizes the
   * activations to int8 per block and runs integer dot products (measured on a 6-layer d=512 transformer, one
   * token, 2 threads: 4-bit 3.3x faster than float32 at the same SQNR; 8-bit 2.8x, SQNR 38 -> 28 dB). 0 leaves the
   * attribute out: float activations, and for 8 and 2 bits a kernel 12-17x SLOWER than float32 on ORT's CPU.
   */
  accuracyLevel?: number;
  /** Static mode: symmetric activation ranges (zero point in the middle; stops Relu/Clip folding). Default false. */
  symmetricActivations?: boolean;
  /** Static mode: 7-bit weights (ORT's reduce_range) for CPUs without VNNI. Default false. */
  reduceRange?: boolean;
  /**
   * Static mode: 'speed' (default) keeps float the layers ONNX Runtime's x86 CPU runs slower in int8 than in
   * float (narrow stems, narrow depthwise convs, 8-bit MaxPool heads: src/passes/rules/qdq/speed.ts) and pads
   * depthwise channel groups for its fast kernel; 'size' quantizes every eligible layer (smallest file, when the
   * download matters more than CPU latency).
   */
  optimizeFor?: OptimizeFor;
  /**
   * The ONNX Runtime backend the model is for: 'cpu' (onnxruntime-node; default) or 'wasm' (onnxruntime-web's
   * WebAssembly backend, one thread, as browsers run it; needs the optional onnxruntime-web package). The
   * report times both models there (calibration and fidelity still run in onnxruntime-node, with `threads`), and static mode's speed rules follow its kernels (wasm: every depthwise
   * Conv stays float, no channel padding: ORT's wasm build has no fast int8 depthwise kernel).
   */
  backend?: Backend;
  /**
   * The accuracy gate (src/pipeline/gate.ts): the largest accepted drop on the held-out samples, in
   * percentage points (accuracy drop with `labels`, else 100 − top-1 agreement %, else the relative RMS
   * output error in %). Layers are kept float, most sensitive first, until the drop is within it. Needs `calib`.
   */
  maxDrop?: number;
  /**
   * What the accuracy gate does with a sensitive layer: 'float' (default) keeps it float; 'int16' (static mode)
   * keeps it quantized at 16 bits (uint16 with uint8 activations, int16 with int8; activationTypeOverrides): mixed
   * precision, smaller than float, run as float between 16-bit Q/DQ by ORT.
   */
  gateFallback?: GateFallback;
  /**
   * A config (src/pipeline/config.ts): a lowbit.json path or an inline object. Its values fill the options
   * left undefined here (explicit options win). Apply it with `applyQuantizeConfig` before
   * resolveQuantizeOptions (quantize() does).
   */
  config?: string | QuantizeConfig;
  /** Where to write the config of this run (with the gate's exclusions); default with maxDrop: `<output>.lowbit.json` (`.onnx` dropped). */
  saveConfig?: string;
  /** ONNX Runtime intra-op threads for calibration and verification (default: ORT's choice). */
  threads?: number;
  /** Called as long stages advance; the CLI draws progress bars from it. */
  onProgress?: (event: ProgressEvent) => void;
}

/** QuantizeOptions with every default filled in. */
export interface ResolvedQuantizeOptions
  extends Required<Omit<QuantizeOptions, 'calib' | 'labels' | 'threads' | 'onProgress' | 'movingAverage' | 'averagingConstant' | 'percentile' | 'numBins' | 'image' | 'maxDrop' | 'config' | 'saveConfig' | 'shardSize'>> {
  shardSize: number | undefined;
  /** The method with its own options, defaults filled in (minmax in dynamic mode, where it is unused). */
  calibration: ResolvedCalibration;
  calib: string | undefined;
  image: ImagePreprocess | undefined;
  labels: string | undefined;
  threads: number | undefined;
  onProgress: ((event: ProgressEvent) => void) | undefined;
  maxDrop: number | undefined;
  saveConfig: string | undefined;
}

/** Fidelity of the quantized model against the float one, measured on held-out samples. */
export interface Fidelity {
  samples: number;
  /** Signal-to-quantization-noise ratio of the outputs, dB. */
  sqnrDb?: number;
  /** Mean cosine similarity of the outputs, 0..1. */
  cosine?: number;
  /** Fraction of samples whose argmax agrees, 0..1 (classifiers). */
  agreement?: number;
  maxAbsError?: number;
  /** Top-1 accuracy against `labels`, 0..1: of the quantized model and of the float model. */
  accuracy?: number;
  floatAccuracy?: number;
}

/** What happened to one node: quantized (detail = the form or kernel) or left float (detail = why). */
export interface NodeDecision {
  node: string;
  opType: string;
  quantized: boolean;
  detail: string;
}

/** Latency statistics of one model, milliseconds. */
export interface LatencyMs {
  median: number;
  p90: number;
  min: number;
  mean: number;
  max: number;
}

/** Float vs quantized latency, measured interleaved on the same machine. */
export interface LatencySummary {
  /** Where both models were timed. */
  backend: Backend;
  batch: number;
  threads: number;
  float: { latencyMs: LatencyMs };
  quant: { latencyMs: LatencyMs };
  /** float median / quantized median: above 1 means the quantized model is faster. */
  speedup: number;
}

/** What `quantize()` returns: plain data (report/quantize-report.ts renders it for people). */
export interface QuantizeResult {
  mode: QuantMode;
  output: string;
  sizeBytes: { before: number; after: number };
  fidelity: Fidelity;
  /** What the fidelity was measured on (held-out samples, or synthetic inputs). */
  verification: string;
  nodes: NodeDecision[];
  /** Loud notes, e.g. a fidelity collapse. */
  warnings: string[];
  /** Absent when the models could not be timed (inputs that cannot be synthesised). */
  latency?: LatencySummary;
  /** The accuracy gate's outcome, when `maxDrop` was given (src/pipeline/gate.ts). */
  gate?: GateSummary;
  /** The config file written (with maxDrop or saveConfig). */
  configPath?: string;
  /** Plain notes on the result (fp16 / bf16 modes: values flushed to zero, what runs in which type). */
  notes?: string[];
}

/** What the accuracy gate did: the goal, whether it was met, the drop reached, the layers it kept float. */
export interface GateSummary {
  /** The goal, percentage points. */
  maxDrop: number;
  achieved: boolean;
  /** The drop of the returned model, percentage points (see `metric`). */
  drop: number;
  /** The drop before the gate excluded anything. */
  baseDrop: number;
  /** accuracy: float − quantized top-1 accuracy; agreement: 100 − top-1 agreement %; sqnr: 100·10^(−SQNR/20), the relative RMS output error %. */
  metric: 'accuracy' | 'agreement' | 'sqnr';
  /** Nodes the gate left float (besides `excludeNodes`), or kept at 16 bits with `fallback` 'int16', most sensitive first. */
  excluded: string[];
  /** Where the gate put those nodes: float, or 16-bit activations (absent: float). */
  fallback?: GateFallback;
  /** Quantized variants the gate evaluated on the held-out samples (the first model included). */
  trials: number;
  /**
   * When the held-out samples were split: the gate chose on `selection.samples` of them (with these drops there),
   * and `drop` / `baseDrop` / `achieved` are measured on the other `checkSamples`.
   */
  selection?: { samples: number; drop: number; baseDrop: number };
  checkSamples?: number;
}

const KEYS: ReadonlySet<string> = new Set<keyof QuantizeOptions>([
  'input',
  'output',
  'mode',
  'calib',
  'image',
  'labels',
  'method',
  'movingAverage',
  'averagingConstant',
  'percentile',
  'numBins',
  'perChannel',
  'weightType',
  'activationType',
  'activationTypeOverrides',
  'format',
  'dynamicConv',
  'excludeNodes',
  'excludeOps',
  'keepIoTypes',
  'threads',
  'onProgress',
  'symmetricActivations',
  'reduceRange',
  'optimizeFor',
  'backend',
  'maxDrop',
  'gateFallback',
  'config',
  'saveConfig',
  'bits',
  'blockSize',
  'algorithm',
  'symmetric',
  'accuracyLevel',
  'actOrder',
  'damp',
  'shardSize',
]);

function bad(message: string, hint?: string): LowbitError {
  return new LowbitError('BAD_OPTION', message, hint);
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[], dflt: T): T {
  if (value === undefined) return dflt;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw bad(`${name} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`);
}

function stringList(name: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v.length > 0)) return value.slice();
  throw bad(`${name} must be a list of non-empty names`);
}

function path(name: string, value: unknown): string {
  if (typeof value === 'string' && value.length > 0) return value;
  throw bad(`${name} must be a file path (got ${JSON.stringify(value)})`);
}

/**
 * Checks options from any caller (JavaScript too) and fills in defaults.
 * @throws LowbitError BAD_OPTION for an unknown key, a value of the wrong type or outside its
 *   allowed set, or `mode: 'static'` without `calib`; a calibration option in dynamic mode or one the
 *   method does not use (src/calib/methods.ts resolveCalibration)
 */
export function resolveQuantizeOptions(o: QuantizeOptions): ResolvedQuantizeOptions {
  if (typeof o !== 'object' || o === null) throw bad('quantize options must be an object');
  const unknown = Object.keys(o).filter((k) => !KEYS.has(k));
  if (unknown.length) {
    throw bad(`unknown quantize option${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`, `valid options: ${[...KEYS].join(', ')}`);
  }
  const calib = o.calib === undefined ? undefined : path('calib', o.calib);
  const mode = oneOf('mode', o.mode, QUANT_MODES, calib === undefined ? 'dynamic' : 'static');
  const labels = o.labels === undefined ? undefined : path('labels', o.labels);
  if (o.image !== undefined) {
    if (calib === undefined) throw bad('image options need a folder of images', 'pass --calib DIR (a folder of .png / .jpg images) with the image options');
    checkImagePreprocess(o.image);
  }
  if (labels !== undefined && calib === undefined) {
    throw bad('labels need the samples they label', 'pass --calib DATA together with --labels LABELS.npy (one label per sample)');
  }
  const weightOnly = mode === 'weight-only';
  const weightOnlyKeys = (['bits', 'blockSize', 'algorithm', 'symmetric', 'accuracyLevel', 'actOrder', 'damp'] as const).filter((k) => o[k] !== undefined);
  if (!weightOnly && weightOnlyKeys.length) {
    throw bad(`${weightOnlyKeys.join(', ')} ${weightOnlyKeys.length > 1 ? 'apply' : 'applies'} to weight-only mode only`, 'pass --mode weight-only, or drop them');
  }
  if (weightOnly) {
    const given: string[] = (['weightType', 'activationType', 'perChannel', 'dynamicConv', 'gateFallback', 'symmetricActivations', 'reduceRange', 'optimizeFor'] as const).filter((k) => o[k] !== undefined);
    if (Object.keys(o.activationTypeOverrides ?? {}).length) given.push('activationTypeOverrides');
    if (given.length) throw bad(`${given.join(', ')} ${given.length > 1 ? 'do' : 'does'} not apply to weight-only mode`, 'drop them: weight-only mode quantizes MatMul/Gemm weights blockwise (--bits, --block-size, --algorithm, --symmetric) and keeps activations float');
    if (o.format === 'qoperator') throw bad('the qoperator format applies to static mode only', 'weight-only mode writes --format matmulnbits (default), qdq or unpack-on-load');
    if (o.algorithm !== undefined) oneOf('algorithm', o.algorithm, WEIGHT_ALGORITHMS, 'rtn');
    const gptq = o.algorithm === 'gptq';
    if (gptq && calib === undefined) throw bad('gptq needs calibration data: it compensates each weight\'s rounding error using the activations that reach it', 'pass --calib DATA (samples for the model inputs), or use --algorithm rtn / hqq (data-free)');
    if (!gptq && (o.actOrder !== undefined || o.damp !== undefined)) throw bad('actOrder and damp apply to --algorithm gptq only', 'add --algorithm gptq, or drop --act-order / --no-act-order / --damp');
    if (o.actOrder !== undefined && typeof o.actOrder !== 'boolean') throw bad('actOrder must be true or false');
    if (o.damp !== undefined && !(typeof o.damp === 'number' && o.damp > 0 && o.damp < 1)) throw bad(`damp must be a number in (0, 1) (got ${JSON.stringify(o.damp)})`, 'use 0.01 (the default) or raise it, e.g. 0.1, when GPTQ reports a Hessian that is not positive definite');
    checkWeightOnlyOptions({ bits: o.bits ?? 4, blockSize: o.blockSize ?? 32, ...(o.symmetric !== undefined ? { symmetric: o.symmetric } : {}), ...(o.algorithm !== undefined && o.algorithm !== 'gptq' ? { algorithm: o.algorithm } : {}), format: o.format === 'qdq' || o.format === 'unpack-on-load' ? o.format : 'matmulnbits', ...(o.accuracyLevel !== undefined ? { accuracyLevel: o.accuracyLevel } : {}) });
  } else if (o.format === 'matmulnbits' || o.format === 'unpack-on-load') {
    throw bad(`the ${o.format} format applies to weight-only mode only`, 'pass --mode weight-only, or use --format qdq / qoperator (static mode)');
  }
  const float16 = mode === 'fp16' || mode === 'bf16';
  if (float16) {
    const given: string[] = (['weightType', 'activationType', 'perChannel', 'format', 'dynamicConv', 'maxDrop', 'gateFallback', 'symmetricActivations', 'reduceRange', 'optimizeFor'] as const).filter((k) => o[k] !== undefined);
    if (Object.keys(o.activationTypeOverrides ?? {}).length) given.push('activationTypeOverrides');
    if (given.length) throw bad(`${given.join(', ')} ${given.length > 1 ? 'do' : 'does'} not apply to ${mode} mode`, `drop them: ${mode} mode converts the float32 model to ${mode === 'fp16' ? 'float16' : 'bfloat16'} without quantizing`);
    if (o.keepIoTypes !== undefined && typeof o.keepIoTypes !== 'boolean') throw bad('keepIoTypes must be true or false');
    if (mode === 'bf16' && o.keepIoTypes === false) throw bad('bf16 mode keeps float32 inputs and outputs (it stores weights as bfloat16 and computes in float32)', 'drop --no-keep-io-types, or use --mode fp16');
    if (mode === 'bf16' && (o.excludeOps?.length || o.excludeNodes?.length)) throw bad('excludeOps and excludeNodes do not apply to bf16 mode (every node computes in float32)', 'drop --exclude-ops / --exclude-nodes, or use --mode fp16');
  } else if (o.keepIoTypes !== undefined) {
    throw bad('keepIoTypes applies to fp16 and bf16 modes only', 'pass --mode fp16, or drop --keep-io-types / --no-keep-io-types');
  }
  if (o.weightType === 'int4' && mode === 'dynamic') {
    throw bad('int4 weights need static mode', 'pass --calib DATA (static mode), or use --weight-type int8 for dynamic quantization');
  }
  if ((o.activationType === 'uint16' || o.activationType === 'int16') && mode === 'dynamic') {
    throw bad(`${o.activationType} activations need static mode`, 'pass --calib DATA (static mode); dynamic quantization computes 8-bit activations at run time');
  }
  const format = oneOf('format', o.format, MODEL_FORMATS, weightOnly ? 'matmulnbits' : 'qdq');
  const dynamicConv = oneOf('dynamicConv', o.dynamicConv, DYNAMIC_CONV, 'float');
  if (o.dynamicConv !== undefined && mode !== 'dynamic') {
    throw bad('dynamicConv applies to dynamic mode only', 'drop --dynamic-conv, or quantize without --calib (dynamic mode)');
  }
  if (format === 'qoperator' && mode === 'dynamic') {
    throw bad('the qoperator format applies to static mode only', 'pass --calib DATA (static mode); dynamic quantization writes its own integer ops');
  }
  const method = oneOf('method', o.method, CALIB_METHODS, 'minmax');
  const calibGiven = [...(o.method !== undefined ? ['method'] : []), ...givenCalibrationOptions(o)];
  if (mode !== 'static' && calibGiven.length) {
    throw bad(`calibration options (${calibGiven.join(', ')}) apply to static mode only`, 'pass --calib DATA (static mode), or drop the calibration options');
  }
  const calibration = resolveCalibration({ ...o, method });
  if (mode === 'static' && calib === undefined) {
    throw bad('static quantization needs calibration data', 'pass --calib DATA (.npy or .npz with samples for the model inputs), or use --mode dynamic');
  }
  if (o.perChannel !== undefined && typeof o.perChannel !== 'boolean') throw bad('perChannel must be true or false');
  if (o.threads !== undefined && !(Number.isInteger(o.threads) && o.threads > 0)) {
    throw bad(`threads must be a positive integer (got ${JSON.stringify(o.threads)})`);
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw bad('onProgress must be a function');
  if (o.config !== undefined) throw bad('config must be merged before the options are resolved', 'call applyQuantizeConfig(options) from src/pipeline/config.ts first (quantize() does)');
  for (const k of ['symmetricActivations', 'reduceRange'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw bad(`${k} must be true or false`);
    if (o[k] === true && mode === 'dynamic') throw bad(`${k} applies to static mode only`, 'pass --calib DATA (static mode), or drop it');
  }
  const overrides = o.activationTypeOverrides ?? {};
  if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) throw bad('activationTypeOverrides must be an object of node name -> activation type');
  for (const [node, t] of Object.entries(overrides)) {
    if (node.length === 0) throw bad('activationTypeOverrides: node names must be non-empty');
    oneOf(`activationTypeOverrides['${node}']`, t, ACTIVATION_TYPES, 'uint8');
  }
  const gateFallback = oneOf('gateFallback', o.gateFallback, GATE_FALLBACKS, 'float');
  const optimizeFor = oneOf('optimizeFor', o.optimizeFor, OPTIMIZE_FOR, 'speed');
  const backend = oneOf('backend', o.backend, BACKENDS, 'cpu');
  if (o.optimizeFor !== undefined && mode === 'dynamic') throw bad('optimizeFor applies to static mode only', 'pass --calib DATA (static mode), or drop --optimize-for');
  if (gateFallback === 'int16' && mode === 'dynamic') throw bad('gateFallback int16 applies to static mode only', 'pass --calib DATA (static mode), or use --gate-fallback float');
  if (gateFallback === 'int16' && (o.activationType === 'uint16' || o.activationType === 'int16')) {
    throw bad('gateFallback int16 needs 8-bit activations: with 16-bit activations every layer is at 16 bits already', 'use --gate-fallback float, or --activation-type uint8');
  }
  if (Object.keys(overrides).length && mode === 'dynamic') throw bad('activationTypeOverrides apply to static mode only', 'pass --calib DATA (static mode), or drop them');
  if (o.maxDrop !== undefined) {
    if (typeof o.maxDrop !== 'number' || !(o.maxDrop >= 0 && o.maxDrop <= 100)) {
      throw bad(`maxDrop must be a number of percentage points in [0, 100] (got ${JSON.stringify(o.maxDrop)})`, 'e.g. --max-drop 0.5 accepts up to half a point of top-1 accuracy lost');
    }
    if (calib === undefined) throw bad('maxDrop needs samples to measure the drop on', 'pass --calib DATA (and --labels to gate on accuracy)');
  }
  const saveConfig = o.saveConfig === undefined ? undefined : path('saveConfig', o.saveConfig);
  if (o.shardSize !== undefined && !(Number.isSafeInteger(o.shardSize) && o.shardSize >= 1024 * 1024)) {
    throw bad(`shardSize must be a whole number of bytes, at least 1 MiB (got ${JSON.stringify(o.shardSize)})`, 'e.g. --shard-size 512MB (browsers load shards of up to 2 GB)');
  }
  return {
    input: path('input', o.input),
    output: path('output', o.output),
    mode,
    calib,
    image: o.image,
    labels,
    method,
    calibration,
    perChannel: o.perChannel ?? true,
    weightType: oneOf('weightType', o.weightType, WEIGHT_TYPES, 'int8'),
    activationType: oneOf('activationType', o.activationType, ACTIVATION_TYPES, 'uint8'),
    activationTypeOverrides: { ...overrides },
    gateFallback,
    format,
    dynamicConv,
    excludeNodes: stringList('excludeNodes', o.excludeNodes),
    excludeOps: stringList('excludeOps', o.excludeOps),
    keepIoTypes: o.keepIoTypes ?? true,
    threads: o.threads,
    onProgress: o.onProgress,
    symmetricActivations: o.symmetricActivations ?? false,
    reduceRange: o.reduceRange ?? false,
    optimizeFor,
    backend,
    maxDrop: o.maxDrop,
    saveConfig,
    bits: o.bits ?? 4,
    blockSize: o.blockSize ?? 32,
    algorithm: o.algorithm ?? 'rtn',
    symmetric: o.symmetric ?? false,
    accuracyLevel: o.accuracyLevel ?? (format === 'matmulnbits' ? WEIGHT_ONLY_ACCURACY_LEVEL : 0),
    actOrder: o.actOrder ?? true,
    damp: o.damp ?? 0.01,
    shardSize: o.shardSize,
  };
}
