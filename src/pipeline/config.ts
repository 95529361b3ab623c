// The `lowbit.json` config file of `lowbit quantize --config` (and `QuantizeOptions.config`): a typed JSON
// object with the quantize options, checked by a small schema table (unknown keys and wrong types are
// errors naming the key), merged under the explicit options (explicit options and CLI flags win), and
// written back (atomically) with the exclusions the accuracy gate chose.
//
// Schema (every key optional; a flat object):
//   mode                 "dynamic" | "static" | "fp16" | "bf16" | "weight-only"
//   method               "minmax" | "percentile" | "entropy" | "mse"
//   movingAverage        boolean            (minmax)
//   averagingConstant    number in (0, 1]   (minmax with movingAverage)
//   percentile           number in (0, 100] (percentile)
//   numBins              integer            (percentile, entropy, mse)
//   perChannel           boolean
//   weightType           "int8" | "uint8" | "int4"
//   activationType       "uint8" | "int8" | "uint16" | "int16" (16-bit: static)
//   excludeNodes         string[]
//   excludeOps           string[]
//   symmetricActivations boolean            (static)
//   reduceRange          boolean            (static, 8-bit weights)
//   optimizeFor          "speed" | "size"   (static; speed keeps float the layers ORT's CPU runs slower in int8)
//   backend              "cpu" | "wasm"     (the ONNX Runtime backend the model is for: speed rules and timing)
//   maxDrop              number >= 0        (percentage points; the accuracy gate, src/pipeline/gate.ts)
//   gateFallback         "float" | "int16"  (static; where the gate keeps sensitive layers)
//   activationTypeOverrides { [node]: "uint8" | "int8" | "uint16" | "int16" }  (static; mixed precision per node)
//   format               "qdq" | "qoperator" (static) | "matmulnbits" | "qdq" (weight-only)
//   bits                 8 | 4 | 2          (weight-only)
//   blockSize            integer            (weight-only; power of two in 16..256)
//   algorithm            "rtn" | "hqq" | "gptq"  (weight-only; gptq needs --calib)
//   actOrder             boolean            (weight-only, gptq)
//   damp                 number in (0, 1)   (weight-only, gptq)
//   symmetric            boolean            (weight-only, rtn)
//   accuracyLevel        integer 0..4       (weight-only, matmulnbits)
// Paths (input, output, calib, labels) and run settings (threads) are not part of the file: they belong to
// one run. Per-node activation types are supported (activationTypeOverrides); per-tensor ranges are not. Value ranges (e.g. percentile) are checked by resolveQuantizeOptions like any option.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { LowbitError } from '../errors.js';
import { ACTIVATION_TYPES, BACKENDS, CALIB_METHODS, DYNAMIC_CONV, GATE_FALLBACKS, MODEL_FORMATS, OPTIMIZE_FOR, QUANT_MODES, WEIGHT_ALGORITHMS, WEIGHT_TYPES, type QuantizeOptions, type ResolvedQuantizeOptions } from './options.js';

/** The contents of a lowbit.json config file. */
export interface QuantizeConfig {
  mode?: QuantizeOptions['mode'];
  method?: QuantizeOptions['method'];
  movingAverage?: boolean;
  averagingConstant?: number;
  percentile?: number;
  numBins?: number;
  perChannel?: boolean;
  weightType?: QuantizeOptions['weightType'];
  activationType?: QuantizeOptions['activationType'];
  excludeNodes?: string[];
  excludeOps?: string[];
  symmetricActivations?: boolean;
  reduceRange?: boolean;
  /** Static placement: ORT CPU latency (default) or every eligible layer quantized. */
  optimizeFor?: QuantizeOptions['optimizeFor'];
  /** The ONNX Runtime backend the model is for (onnxruntime-node cpu or onnxruntime-web wasm). */
  backend?: QuantizeOptions['backend'];
  /** Largest accepted accuracy drop, percentage points (see src/pipeline/gate.ts). */
  maxDrop?: number;
  /** Where the gate puts sensitive layers: float (default) or 16-bit activations. */
  gateFallback?: QuantizeOptions['gateFallback'];
  /** Node name -> activation type of its tensors (mixed precision, e.g. one sensitive layer at int16). */
  activationTypeOverrides?: Record<string, NonNullable<QuantizeOptions['activationType']>>;
  /** Static output format: QDQ pairs (default) or QLinear* operators. */
  format?: QuantizeOptions['format'];
  /** Dynamic mode: Conv stays float (default) or becomes ConvInteger. */
  dynamicConv?: QuantizeOptions['dynamicConv'];
  /** Weight-only mode: bits per weight code. */
  bits?: QuantizeOptions['bits'];
  /** Weight-only mode: rows per block. */
  blockSize?: number;
  /** Weight-only mode: rtn, hqq or gptq. */
  algorithm?: QuantizeOptions['algorithm'];
  /** Weight-only mode: symmetric blocks. */
  symmetric?: boolean;
  /** Weight-only mode: MatMulNBits accuracy_level. */
  accuracyLevel?: number;
  /** Weight-only mode, gptq: act-order. */
  actOrder?: boolean;
  /** Weight-only mode, gptq: Hessian damping. */
  damp?: number;
}

type FieldType = { kind: 'enum'; values: readonly string[] } | { kind: 'boolean' } | { kind: 'number' } | { kind: 'integer' } | { kind: 'names' } | { kind: 'typeMap'; values: readonly string[] };

/** The schema: one row per key. Built on first use (options.ts constants are read at call time). */
function schema(): Record<keyof QuantizeConfig, FieldType> {
  return {
    mode: { kind: 'enum', values: QUANT_MODES },
    method: { kind: 'enum', values: CALIB_METHODS },
    movingAverage: { kind: 'boolean' },
    averagingConstant: { kind: 'number' },
    percentile: { kind: 'number' },
    numBins: { kind: 'integer' },
    perChannel: { kind: 'boolean' },
    weightType: { kind: 'enum', values: WEIGHT_TYPES },
    activationType: { kind: 'enum', values: ACTIVATION_TYPES },
    excludeNodes: { kind: 'names' },
    excludeOps: { kind: 'names' },
    symmetricActivations: { kind: 'boolean' },
    reduceRange: { kind: 'boolean' },
    optimizeFor: { kind: 'enum', values: OPTIMIZE_FOR },
    backend: { kind: 'enum', values: BACKENDS },
    maxDrop: { kind: 'number' },
    gateFallback: { kind: 'enum', values: GATE_FALLBACKS },
    activationTypeOverrides: { kind: 'typeMap', values: ACTIVATION_TYPES },
    format: { kind: 'enum', values: MODEL_FORMATS },
    dynamicConv: { kind: 'enum', values: DYNAMIC_CONV },
    bits: { kind: 'integer' },
    blockSize: { kind: 'integer' },
    algorithm: { kind: 'enum', values: WEIGHT_ALGORITHMS },
    symmetric: { kind: 'boolean' },
    accuracyLevel: { kind: 'integer' },
    actOrder: { kind: 'boolean' },
    damp: { kind: 'number' },
  };
}

/** The keys a config file may hold, in schema order. */
export function configKeys(): string[] {
  return Object.keys(schema());
}

function describe(t: FieldType): string {
  switch (t.kind) {
    case 'enum':
      return `one of ${t.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'boolean':
      return 'true or false';
    case 'number':
      return 'a number';
    case 'integer':
      return 'an integer';
    case 'names':
      return 'a list of non-empty strings';
    case 'typeMap':
      return `an object of node name -> one of ${t.values.map((v) => JSON.stringify(v)).join(', ')}`;
  }
}

function fits(t: FieldType, v: unknown): boolean {
  switch (t.kind) {
    case 'enum':
      return typeof v === 'string' && t.values.includes(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'names':
      return Array.isArray(v) && v.every((s) => typeof s === 'string' && s.length > 0);
    case 'typeMap':
      return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.entries(v).every(([k, s]) => k.length > 0 && typeof s === 'string' && t.values.includes(s));
  }
}

/**
 * Checks a parsed config object against the schema and returns it typed (a copy).
 * @param source where it came from, for messages (a file path, or 'config').
 * @throws LowbitError BAD_OPTION when it is not an object, for an unknown key (naming it and listing the
 *   valid keys) and for a value of the wrong type (naming the key and the expected type).
 */
export function parseQuantizeConfig(value: unknown, source = 'config'): QuantizeConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LowbitError('BAD_OPTION', `${source}: a quantize config must be a JSON object (got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)})`, `e.g. {"mode": "static", "method": "percentile", "maxDrop": 0.5}`);
  }
  const rows = schema();
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const t = (rows as Record<string, FieldType | undefined>)[key];
    if (t === undefined) {
      throw new LowbitError('BAD_OPTION', `${source}: unknown key "${key}"`, `valid keys: ${Object.keys(rows).join(', ')}`);
    }
    if (!fits(t, v)) {
      throw new LowbitError('BAD_OPTION', `${source}: "${key}" must be ${describe(t)} (got ${JSON.stringify(v)})`, `fix "${key}" in ${source}, or remove it to use the default`);
    }
    out[key] = Array.isArray(v) ? v.slice() : typeof v === 'object' && v !== null ? { ...v } : v;
  }
  return out as QuantizeConfig;
}

/**
 * Reads and checks a config file (JSON).
 * @throws LowbitError FILE_NOT_FOUND when it cannot be read; BAD_OPTION for invalid JSON or as
 *   {@link parseQuantizeConfig}.
 */
export function readQuantizeConfig(path: string): QuantizeConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new LowbitError('FILE_NOT_FOUND', `cannot read the config file '${path}': ${(e as Error).message}`, 'check the --config path');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new LowbitError('BAD_OPTION', `'${path}' is not valid JSON: ${(e as Error).message}`, 'a config file is one JSON object, e.g. {"method": "percentile"}');
  }
  return parseQuantizeConfig(value, `'${path}'`);
}

/**
 * Options with their config (a file path or an inline object) merged in: the config's values fill the
 * keys the options leave undefined, so explicit options (and CLI flags) override the config, lists
 * included (`excludeNodes` from the options replaces the config's list). `config` itself is removed;
 * options without one are returned unchanged.
 * @throws as {@link readQuantizeConfig} / {@link parseQuantizeConfig}; BAD_OPTION when `config` is neither.
 */
export function applyQuantizeConfig(o: QuantizeOptions): QuantizeOptions {
  if (o === null || typeof o !== 'object' || o.config === undefined) return o;
  const { config, ...rest } = o;
  let cfg: QuantizeConfig;
  if (typeof config === 'string' && config.length > 0) cfg = readQuantizeConfig(config);
  else if (typeof config === 'object' && config !== null) cfg = parseQuantizeConfig(config, 'config');
  else throw new LowbitError('BAD_OPTION', `config must be a file path or an object (got ${JSON.stringify(config)})`);
  const merged: Record<string, unknown> = { ...cfg };
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) merged[k] = v;
  return merged as unknown as QuantizeOptions;
}

/**
 * The config that reproduces a resolved run (defaults written out), with `excludeNodes` as given and `overrides`
 * (e.g. the layers the gate kept at 16 bits) added to the run's activationTypeOverrides.
 */
export function configOf(o: ResolvedQuantizeOptions, excludeNodes: readonly string[], overrides: Readonly<Record<string, ResolvedQuantizeOptions['activationType']>> = {}): QuantizeConfig {
  // backend (where the report times the models; static mode's speed rules) applies to every mode.
  const c: QuantizeConfig = { mode: o.mode, backend: o.backend };
  if (o.mode === 'fp16' || o.mode === 'bf16') {
    // these modes take no quantization options (resolveQuantizeOptions refuses them); keepIoTypes is a flag, not a config key
    if (o.mode === 'fp16') {
      c.excludeOps = [...o.excludeOps];
      c.excludeNodes = [...excludeNodes];
    }
    return c;
  }
  if (o.mode === 'weight-only') {
    c.bits = o.bits;
    c.blockSize = o.blockSize;
    c.algorithm = o.algorithm;
    c.symmetric = o.symmetric;
    c.format = o.format;
    if (o.accuracyLevel) c.accuracyLevel = o.accuracyLevel;
    if (o.algorithm === 'gptq') {
      c.actOrder = o.actOrder;
      c.damp = o.damp;
    }
    c.excludeNodes = [...excludeNodes];
    c.excludeOps = [...o.excludeOps];
    if (o.maxDrop !== undefined) c.maxDrop = o.maxDrop;
    return c;
  }
  if (o.mode === 'static') {
    const cal = o.calibration;
    c.method = cal.method;
    if (cal.method === 'minmax') {
      if (cal.movingAverage) {
        c.movingAverage = true;
        if (cal.averagingConstant !== undefined) c.averagingConstant = cal.averagingConstant;
      }
    } else {
      if (cal.method === 'percentile') c.percentile = cal.percentile;
      c.numBins = cal.numBins;
    }
    c.symmetricActivations = o.symmetricActivations;
    c.reduceRange = o.reduceRange;
    c.optimizeFor = o.optimizeFor;
    c.format = o.format;
  } else {
    c.dynamicConv = o.dynamicConv;
  }
  c.perChannel = o.perChannel;
  c.weightType = o.weightType;
  c.activationType = o.activationType;
  c.excludeNodes = [...excludeNodes];
  c.excludeOps = [...o.excludeOps];
  if (o.maxDrop !== undefined) c.maxDrop = o.maxDrop;
  const ov = { ...o.activationTypeOverrides, ...overrides };
  if (Object.keys(ov).length) c.activationTypeOverrides = ov;
  if (o.gateFallback !== 'float') c.gateFallback = o.gateFallback;
  return c;
}

/** Where the gate's config goes by default: next to the output, `model.int8.onnx` -> `model.int8.lowbit.json`. */
export function defaultConfigPath(output: string): string {
  const name = basename(output).replace(/\.onnx$/i, '');
  return join(dirname(output), `${name}.lowbit.json`);
}

/**
 * Writes a config file atomically (temp file in the same folder, fsync, rename).
 * @throws LowbitError SAME_INPUT_OUTPUT when `path` is one of `protect` (the input or output model);
 *   BAD_OPTION when it cannot be written (no partial file is left).
 */
export function writeQuantizeConfig(path: string, config: QuantizeConfig, protect: readonly string[] = []): void {
  if (protect.some((p) => resolve(p) === resolve(path))) {
    throw new LowbitError('SAME_INPUT_OUTPUT', `the config path '${path}' is a model file of this run`, 'write the config to another file, e.g. model.lowbit.json');
  }
  const parsed = parseQuantizeConfig(config, 'the written config'); // never write a file lowbit would refuse to read
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(parsed, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new LowbitError('BAD_OPTION', `cannot write the config file '${path}': ${(e as Error).message}`, 'check that the folder exists and is writable');
  }
}
