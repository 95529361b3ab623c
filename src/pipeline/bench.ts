// Latency benchmark of a model in ONNX Runtime on random inputs shaped from its input metadata,
// and a float-vs-quantized comparison that interleaves the two models' runs so that machine noise
// hits both alike. Wall-clock numbers are reported, never asserted.

import { statSync } from 'node:fs';
import { LowbitError } from '../errors.js';
import { mulberry32 } from '../rng.js';
import { sizeOf, type NdArray } from '../ndarray.js';
import { float32ArrayToFloat16 } from '../quant/float16.js';
import { DTYPE_INFO, dtypeOfElemType } from '../runtime/arrays.js';
import { batchSizeOf } from '../runtime/batching.js';
import { Session, type OptimizationLevel, type ValueMeta } from '../runtime/session.js';
import { WebSession, type WebExternalData } from '../runtime/web.js';
import { loadModel } from '../io/model-file.js';
import { encodeModel } from '../onnx/encode.js';
import { BACKENDS, type Backend, type ProgressEvent } from './options.js';

/** Size given to symbolic dims that are neither a batch axis nor named in `shapes`. */
export const DEFAULT_SYMBOLIC_DIM = 128;

export interface FeedShapeOptions {
  /** Size of the batch axis: axis 0 of each input when not fixed, and every dim sharing its symbolic name. Default 1. */
  batch?: number;
  /**
   * Overrides: a symbolic dim name -> its size, or an input name -> its full shape. Other symbolic
   * dims get DEFAULT_SYMBOLIC_DIM.
   */
  shapes?: Record<string, number | readonly number[]>;
  /** PRNG seed of the float values (default 1). */
  seed?: number;
}


export interface BenchOptions extends FeedShapeOptions {
  /** Model file path (or bytes). */
  model: string | Uint8Array;
  /**
   * 'cpu' (default): onnxruntime-node. 'wasm': onnxruntime-web's WebAssembly backend run from Node, one thread
   * (what every browser runs without cross-origin isolation); needs the optional onnxruntime-web package.
   */
  backend?: Backend;
  /** wasm backend, `model` given as bytes: its external-data files, by the location written in the model. */
  externalData?: WebExternalData[];
  /** ORT intra-op threads (default 2; the wasm backend runs 1). */
  threads?: number;
  /** Timed runs (default 20). */
  runs?: number;
  /** Untimed runs first (default 3). */
  warmup?: number;
  /** Feeds to use instead of random ones, for some or all inputs. */
  inputs?: Record<string, NdArray>;
  optimizationLevel?: OptimizationLevel;
  /** Called after each timed run with stage 'bench'. */
  onProgress?: (event: ProgressEvent) => void;
}

export interface LatencyStats {
  median: number;
  /** Nearest-rank 90th percentile. */
  p90: number;
  min: number;
  mean: number;
  max: number;
}

export interface BenchResult {
  /** Bytes of the model file (external data files not counted) or of the given bytes. */
  sizeBytes: number;
  /** Samples per run actually fed (a fixed batch dim in the model wins over the option). */
  batch: number;
  threads: number;
  runs: number;
  warmup: number;
  latencyMs: LatencyStats;
  /** Peak resident set of the whole process so far (getrusage maxRSS), not of this model alone. */
  peakRssBytes: number;
  /** Shapes of the feeds used. */
  inputShapes: Record<string, number[]>;
}

/** Small deterministic PRNG: the same seed gives the same inputs on every machine. */
function prng(seed: number): () => number {
  return mulberry32(seed).next;
}

/** The shape fed to `input` under the batch / shapes policy of {@link FeedShapeOptions}. */
export function feedShape(input: ValueMeta, batchNames: ReadonlySet<string>, opts: FeedShapeOptions): number[] {
  const override = opts.shapes?.[input.name];
  if (Array.isArray(override)) return [...(override as number[])];
  const batch = opts.batch ?? 1;
  return input.dims.map((d, axis) => {
    if (typeof d === 'number') return d;
    if (typeof d === 'string') {
      const named = opts.shapes?.[d];
      if (typeof named === 'number') return named;
      return batchNames.has(d) ? batch : DEFAULT_SYMBOLIC_DIM;
    }
    return axis === 0 ? batch : DEFAULT_SYMBOLIC_DIM;
  });
}

/**
 * Random feeds for a model's inputs: floats uniform in [0, 1), integers and bools 0 (valid as
 * indices, lengths and flags alike).
 * @throws LowbitError('BAD_OPTION') for bad sizes; LowbitError('UNSUPPORTED_MODEL') for inputs
 *   that are not numeric tensors.
 */
export function randomFeeds(inputs: readonly ValueMeta[], opts: FeedShapeOptions = {}): Record<string, NdArray> {
  const batch = opts.batch ?? 1;
  if (!Number.isSafeInteger(batch) || batch < 1) throw new LowbitError('BAD_OPTION', `batch must be a positive integer, got ${batch}`);
  for (const [k, v] of Object.entries(opts.shapes ?? {})) {
    const ok = typeof v === 'number' ? Number.isSafeInteger(v) && v >= 0 : Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
    if (!ok) throw new LowbitError('BAD_OPTION', `shape override '${k}' must be a non-negative integer or a list of them`);
  }
  const batchNames = new Set(inputs.map((m) => m.dims[0]).filter((d): d is string => typeof d === 'string'));
  const rand = prng(opts.seed ?? 1);
  const feeds: Record<string, NdArray> = {};
  for (const m of inputs) {
    const dtype = m.isTensor ? dtypeOfElemType(m.elemType) : undefined;
    if (!dtype) {
      throw new LowbitError('UNSUPPORTED_MODEL', `input '${m.name}' is ${m.isTensor ? m.type : 'not a tensor'}; lowbit cannot generate data for it`, 'pass the feed for it explicitly (inputs option)');
    }
    const shape = feedShape(m, batchNames, opts);
    const n = sizeOf(shape);
    let data = new DTYPE_INFO[dtype].ctor(n);
    if (dtype === 'float32' || dtype === 'float64') for (let i = 0; i < n; i++) (data as Float32Array)[i] = rand();
    else if (dtype === 'float16') {
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) f[i] = rand();
      data = float32ArrayToFloat16(f);
    }
    feeds[m.name] = { dtype, shape, data };
  }
  return feeds;
}

function stats(ms: number[]): LatencyStats {
  const s = [...ms].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, p90: s[Math.max(0, Math.ceil(0.9 * n) - 1)]!, min: s[0]!, mean: s.reduce((a, b) => a + b, 0) / n, max: s[n - 1]! };
}

function checkCounts(runs: number, warmup: number): void {
  if (!Number.isSafeInteger(runs) || runs < 1) throw new LowbitError('BAD_OPTION', `runs must be a positive integer, got ${runs}`);
  if (!Number.isSafeInteger(warmup) || warmup < 0) throw new LowbitError('BAD_OPTION', `warmup must be a non-negative integer, got ${warmup}`);
}

function sizeOfModel(model: string | Uint8Array): number {
  if (typeof model !== 'string') return model.byteLength;
  try {
    return statSync(model).size;
  } catch {
    throw new LowbitError('FILE_NOT_FOUND', `${model}: no such file`, 'check the model path');
  }
}

/** A loaded model ready to time. */
interface Bencher {
  run: (feeds: Record<string, NdArray>) => Promise<unknown>;
  release: () => Promise<void>;
  inputs: readonly ValueMeta[];
  feeds: Record<string, NdArray>;
  times: number[];
  sizeBytes: number;
}

/** The threads a run uses: 1 in wasm (an explicit other count is refused), else the option (default 2). */
function threadsOf(opts: Omit<BenchOptions, 'model'>): number {
  if (opts.backend === 'wasm') {
    if (opts.threads !== undefined && opts.threads !== 1) {
      throw new LowbitError('BAD_OPTION', `the wasm backend runs one thread (got threads ${opts.threads})`, 'drop --threads with --backend wasm (browsers without cross-origin isolation run onnxruntime-web single-threaded)');
    }
    if (opts.optimizationLevel !== undefined) {
      throw new LowbitError('BAD_OPTION', 'optimizationLevel applies to the cpu backend only', 'drop it with backend wasm (onnxruntime-web runs its default optimizations)');
    }
    return 1;
  }
  if (opts.externalData !== undefined) throw new LowbitError('BAD_OPTION', 'externalData applies to the wasm backend only', 'onnxruntime-node reads a model\'s external data from its folder: pass the model path');
  return opts.threads ?? 2;
}

/**
 * The model's bytes for onnxruntime-web: bytes as given, or a path's model with its external data inlined (read
 * through loadModel's path checks).
 */
async function webBytes(model: string | Uint8Array): Promise<Uint8Array> {
  if (typeof model !== 'string') return model;
  return encodeModel((await loadModel(model)).model);
}

async function openRunner(model: string | Uint8Array, opts: Omit<BenchOptions, 'model'>, webModel?: Uint8Array): Promise<Pick<Bencher, 'run' | 'release' | 'inputs'>> {
  if (opts.backend === 'wasm') {
    const web = await WebSession.create(webModel ?? (await webBytes(model)), opts.externalData);
    return { run: (f) => web.run(f), release: () => web.release(), inputs: web.inputs };
  }
  if (opts.backend !== undefined && opts.backend !== 'cpu') {
    throw new LowbitError('BAD_OPTION', `unknown backend '${String(opts.backend)}'`, `use one of ${BACKENDS.join(', ')}`);
  }
  const session = await Session.create(model, {
    threads: opts.threads ?? 2,
    ...(opts.optimizationLevel ? { optimizationLevel: opts.optimizationLevel } : {}),
  });
  return { run: (f) => session.run(f), release: () => session.release(), inputs: session.inputs };
}

/** `webModel`: the model's bytes for the wasm backend, when the caller read them already. */
async function prepare(model: string | Uint8Array, opts: Omit<BenchOptions, 'model'>, webModel?: Uint8Array): Promise<Bencher> {
  const sizeBytes = sizeOfModel(model);
  threadsOf(opts); // refuses a thread count the backend cannot run before anything is loaded
  const session = await openRunner(model, opts, webModel);
  try {
    const missing = session.inputs.filter((m) => !opts.inputs?.[m.name]);
    const feeds = { ...randomFeeds(missing, opts) };
    for (const m of session.inputs) if (opts.inputs?.[m.name]) feeds[m.name] = opts.inputs[m.name]!;
    return { ...session, feeds, times: [], sizeBytes };
  } catch (e) {
    await session.release();
    throw e;
  }
}

async function timeRun(b: Bencher): Promise<void> {
  const t0 = process.hrtime.bigint();
  await b.run(b.feeds);
  b.times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}

function result(b: Bencher, opts: Omit<BenchOptions, 'model'>, runs: number, warmup: number): BenchResult {
  return {
    sizeBytes: b.sizeBytes,
    batch: batchSizeOf(b.inputs, b.feeds),
    threads: threadsOf(opts),
    runs,
    warmup,
    latencyMs: stats(b.times),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    inputShapes: Object.fromEntries(Object.entries(b.feeds).map(([k, v]) => [k, [...v.shape]])),
  };
}

/**
 * Times `runs` inferences after `warmup` untimed ones.
 * @throws LowbitError('BAD_OPTION') for bad counts/sizes; LowbitError('RUNTIME') from ORT (e.g. a
 *   default symbolic size the model cannot take: set it with `shapes`).
 */
export async function bench(opts: BenchOptions): Promise<BenchResult> {
  const runs = opts.runs ?? 20;
  const warmup = opts.warmup ?? 3;
  checkCounts(runs, warmup);
  const b = await prepare(opts.model, opts);
  try {
    for (let i = 0; i < warmup; i++) await b.run(b.feeds);
    for (let i = 0; i < runs; i++) {
      await timeRun(b);
      opts.onProgress?.({ stage: 'bench', done: i + 1, total: runs });
    }
    return result(b, opts, runs, warmup);
  } finally {
    await b.release();
  }
}

export interface LatencyComparison {
  float: BenchResult;
  quant: BenchResult;
  /** quant median / float median: below 1 means the quantized model is faster. */
  ratio: number;
  /** float median / quant median. */
  speedup: number;
}

/**
 * Benches two models (usually float and quantized) in alternating blocks: float, quantized, float, ...
 * (`blocks` of each, default 3), one live session at a time, each block with its own session and warm-up,
 * on random feeds from the same seed. Interleaving single runs of two live sessions is unfair on small
 * machines: after each run ORT's worker threads keep spinning and steal the cores from the other session
 * (PP-OCR cls, 2 cores, batch 32: 48 / 50 ms interleaved vs 17 / 22 ms in blocks, float / int8).
 * `runs` timed runs per model in all; peakRssBytes is the process peak, so it is the same for both.
 * @throws as {@link bench}.
 */
export async function compareLatency(
  floatModel: string | Uint8Array,
  quantModel: string | Uint8Array,
  opts: Omit<BenchOptions, 'model'> & { blocks?: number } = {},
): Promise<LatencyComparison> {
  const runs = opts.runs ?? 20;
  const warmup = opts.warmup ?? 3;
  checkCounts(runs, warmup);
  const blocks = Math.max(1, Math.min(opts.blocks ?? 3, runs));
  // wasm sessions take bytes: read (and inline the external data of) each model once, not once per block.
  const web = opts.backend === 'wasm' ? [await webBytes(floatModel), await webBytes(quantModel)] : undefined;
  const times: [number[], number[]] = [[], []];
  const results: (BenchResult | undefined)[] = [undefined, undefined];
  let done = 0;
  for (let k = 0; k < blocks; k++) {
    const n = Math.floor(((k + 1) * runs) / blocks) - Math.floor((k * runs) / blocks);
    for (const [i, model] of [floatModel, quantModel].entries()) {
      const b = await prepare(model, opts, web?.[i]);
      try {
        for (let w = 0; w < warmup; w++) await b.run(b.feeds);
        for (let r = 0; r < n; r++) await timeRun(b);
        times[i]!.push(...b.times);
        if (k === blocks - 1) {
          b.times = times[i]!;
          results[i] = result(b, opts, runs, warmup);
        }
      } finally {
        await b.release();
      }
    }
    done += n;
    opts.onProgress?.({ stage: 'bench', done, total: runs });
  }
  const fr = results[0]!;
  const qr = results[1]!;
  return { float: fr, quant: qr, ratio: qr.latencyMs.median / fr.latencyMs.median, speedup: fr.latencyMs.median / qr.latencyMs.median };
}
