// An ONNX Runtime inference session that speaks NdArray: create, inspect inputs/outputs, run, release.
// src/runtime/ is the only place that imports onnxruntime-node; pipeline/ uses it through this class.

import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { LowbitError } from '../errors.js';
import type { DType, NdArray, TypedArray } from '../ndarray.js';
import { float32ArrayToFloat16 } from '../quant/float16.js';
import { DTYPE_INFO, checkArray, fmtDims, toMeta, type ValueMeta } from './arrays.js';

/** ORT graph optimization levels ('all' is ORT's default; it adds hardware-specific layouts). */
export type OptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

export interface SessionOptions {
  /** intraOpNumThreads (default 2; 0 lets ORT pick one per physical core). */
  threads?: number;
  /** interOpNumThreads (default 1; only used with executionMode 'parallel'). */
  interOpThreads?: number;
  /** Default 'sequential'. */
  executionMode?: 'sequential' | 'parallel';
  /** Where ORT writes the model after its graph optimizations (optimizedModelFilePath). */
  optimizedModelPath?: string;
  /** Default: ORT's own ('all'). */
  optimizationLevel?: OptimizationLevel;
  /**
   * ORT log severity (0 verbose ... 4 fatal). Default 4: ORT failures reach the caller as
   * LowbitErrors anyway, so its own stderr lines would only repeat them.
   */
  logLevel?: 0 | 1 | 2 | 3 | 4;
  /** Fixed sizes for symbolic dims (freeDimensionOverrides). */
  freeDims?: Record<string, number>;
  /** How messages name the model (default: the path, or `model (N bytes)`). */
  label?: string;
  /**
   * Turns on ORT's profiler: per-node kernel times are written as Chrome-trace JSON to
   * `<profilePrefix>_<timestamp>.json` when the session is released (events of cat 'Node' named
   * `<node>_kernel_time`, with args.op_name and dur in microseconds).
   */
  profilePrefix?: string;
}

export type { ValueMeta } from './arrays.js';
export { elemTypeOfOrtType } from './arrays.js';

/** Parses ORT's message into something the user can act on (hint), keeping ORT's wording. */
function runtimeError(what: string, e: unknown, hint: string): LowbitError {
  const msg = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim();
  return new LowbitError('RUNTIME', `${what}: ${msg}`, hint, { cause: e });
}

const LEVELS: readonly OptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

function ortOptions(opts: SessionOptions): ort.InferenceSession.SessionOptions {
  const threads = opts.threads ?? 2;
  if (!Number.isSafeInteger(threads) || threads < 0) {
    throw new LowbitError('BAD_OPTION', `threads must be a non-negative integer, got ${threads}`, 'use e.g. --threads 2 (0 = one per core)');
  }
  const inter = opts.interOpThreads ?? 1;
  if (!Number.isSafeInteger(inter) || inter < 0) throw new LowbitError('BAD_OPTION', `interOpThreads must be a non-negative integer, got ${inter}`);
  if (opts.optimizationLevel !== undefined && !LEVELS.includes(opts.optimizationLevel)) {
    throw new LowbitError('BAD_OPTION', `unknown optimization level '${String(opts.optimizationLevel)}'`, `use one of ${LEVELS.join(', ')}`);
  }
  const o: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: inter,
    executionMode: opts.executionMode ?? 'sequential',
    logSeverityLevel: opts.logLevel ?? 4,
  };
  if (opts.optimizationLevel) o.graphOptimizationLevel = opts.optimizationLevel;
  if (opts.optimizedModelPath) o.optimizedModelFilePath = opts.optimizedModelPath;
  if (opts.freeDims) o.freeDimensionOverrides = opts.freeDims;
  if (opts.profilePrefix) {
    o.enableProfiling = true;
    o.profileFilePrefix = opts.profilePrefix;
  }
  return o;
}

/** NdArray -> ort.Tensor over the same storage (no copy). */
function toTensor(arr: NdArray): ort.Tensor {
  let data: TypedArray = arr.data;
  // A runtime with a native Float16Array would hand back those; ORT takes the Uint16 bits.
  if (arr.dtype === 'float16' && !(data instanceof Uint16Array)) data = float32ArrayToFloat16(Float32Array.from(data as ArrayLike<number>));
  return new ort.Tensor(arr.dtype, data as ort.Tensor.DataType, arr.shape);
}

/** ort.Tensor -> NdArray over the same storage (no copy), or undefined for types NdArray cannot hold. */
function fromTensor(t: ort.Tensor): NdArray | undefined {
  const info = DTYPE_INFO[t.type as DType];
  if (!info) return undefined;
  let data = t.data as TypedArray;
  if (t.type === 'float16' && !(data instanceof Uint16Array)) {
    data = float32ArrayToFloat16(Float32Array.from(data as unknown as ArrayLike<number>));
  }
  return { dtype: t.type as DType, shape: [...t.dims], data };
}

/** A loaded model. Create with {@link Session.create}; call {@link Session.release} when done. */
export class Session {
  readonly label: string;
  readonly inputs: readonly ValueMeta[];
  readonly outputs: readonly ValueMeta[];
  private released = false;

  private constructor(
    private readonly ort: ort.InferenceSession,
    label: string,
  ) {
    this.label = label;
    this.inputs = ort.inputMetadata.map(toMeta);
    this.outputs = ort.outputMetadata.map(toMeta);
  }

  /**
   * Loads a model from a file path or from its bytes.
   * @throws LowbitError('FILE_NOT_FOUND') for a missing path; LowbitError('BAD_OPTION') for bad
   *   options; LowbitError('RUNTIME') naming the model when ORT rejects it.
   */
  static async create(model: Uint8Array | string, opts: SessionOptions = {}): Promise<Session> {
    const label = opts.label ?? (typeof model === 'string' ? model : `model (${model.byteLength} bytes)`);
    if (typeof model === 'string' && !existsSync(model)) {
      throw new LowbitError('FILE_NOT_FOUND', `${model}: no such file`, 'check the model path');
    }
    const options = ortOptions(opts);
    let s: ort.InferenceSession;
    try {
      s = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const noKernel = /Could not find an implementation for (\w+)\((\d+)\)/.exec(msg);
      const hint = /protobuf parsing failed/i.test(msg)
        ? 'the bytes are not an ONNX model (or are truncated); check the file with `lowbit inspect`'
        : noKernel
          ? `this ONNX Runtime has no ${noKernel[1]} kernel for opset ${noKernel[2]} with these types; re-export the model with a newer opset (e.g. 13+)`
          : 'ONNX Runtime cannot load this model: it may use an operator/opset this ORT version lacks, or be invalid';
      throw runtimeError(`cannot load ${label}`, e, hint);
    }
    return new Session(s, label);
  }

  get inputNames(): string[] {
    return this.inputs.map((m) => m.name);
  }

  get outputNames(): string[] {
    return this.outputs.map((m) => m.name);
  }

  /**
   * Runs the model. `fetch` picks outputs (default: all). Feeds and results share storage with
   * ORT's tensors (no copies).
   * @throws LowbitError('RUNTIME') naming the input for a missing, unknown, mistyped or misshapen
   *   feed, or naming the model when ORT fails while running; for outputs of types an NdArray
   *   cannot hold (string, int4) use runRaw.
   */
  async run(feeds: Record<string, NdArray>, fetch?: readonly string[]): Promise<Record<string, NdArray>> {
    const raw = await this.runRaw(feeds, fetch);
    const out: Record<string, NdArray> = {};
    for (const [name, value] of Object.entries(raw)) {
      const arr = value instanceof ort.Tensor ? fromTensor(value) : undefined;
      if (!arr) {
        const type = value instanceof ort.Tensor ? value.type : 'a non-tensor value';
        throw new LowbitError('RUNTIME', `${this.label}: output '${name}' is ${type}, which lowbit cannot hold as an array`, 'fetch only numeric tensor outputs');
      }
      out[name] = arr;
    }
    return out;
  }

  /**
   * As {@link run}, but returns ORT's values (for runtime/ internals that read dims and types of
   * values NdArray cannot hold).
   * @internal
   */
  async runRaw(feeds: Record<string, NdArray>, fetch?: readonly string[]): Promise<Record<string, ort.OnnxValue>> {
    if (this.released) throw new LowbitError('INTERNAL', `${this.label}: session used after release()`);
    const tensors = this.checkFeeds(feeds);
    if (fetch) {
      const known = new Set(this.outputNames);
      const bad = fetch.filter((n) => !known.has(n));
      if (bad.length) {
        throw new LowbitError('RUNTIME', `${this.label} has no output ${bad.map((n) => `'${n}'`).join(', ')} (outputs: ${this.outputNames.join(', ')})`, 'fetch only graph outputs; tap intermediate values with TappedSession');
      }
    }
    try {
      return fetch ? await this.ort.run(tensors, fetch) : await this.ort.run(tensors);
    } catch (e) {
      throw runtimeError(`${this.label} failed to run`, e, runHint(e));
    }
  }

  /** Validates feeds against the input metadata and wraps them as tensors. */
  private checkFeeds(feeds: Record<string, NdArray>): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    const names = new Set(this.inputNames);
    for (const name of Object.keys(feeds)) {
      if (!names.has(name)) {
        throw new LowbitError('RUNTIME', `${this.label}: '${name}' is not an input of the model (inputs: ${this.inputNames.join(', ')})`, 'name each feed like the model input it feeds');
      }
    }
    for (const meta of this.inputs) {
      const arr = feeds[meta.name];
      const what = `input '${meta.name}' of ${this.label}`;
      if (!arr) throw new LowbitError('RUNTIME', `${what} is missing from the feeds`, `feed every input: ${this.inputNames.join(', ')}`);
      checkArray(arr, what);
      if (meta.isTensor && meta.type && meta.type !== arr.dtype) {
        throw new LowbitError('RUNTIME', `${what} expects ${meta.type} data, got ${arr.dtype}`, `convert the data to ${meta.type}`);
      }
      const dims = meta.dims;
      // [] may mean "rank unknown" (see ValueMeta), so only a non-empty declared shape is checked.
      const rankBad = dims.length > 0 && dims.length !== arr.shape.length;
      const dimBad = !rankBad && dims.some((d, i) => typeof d === 'number' && d !== arr.shape[i]);
      if (rankBad || dimBad) {
        throw new LowbitError('RUNTIME', `${what} expects shape ${fmtDims(dims)}, got ${fmtDims(arr.shape)}`, 'reshape the data to the model input shape (axis 0 is the batch axis when the model has one)');
      }
      try {
        out[meta.name] = toTensor(arr);
      } catch (e) {
        throw runtimeError(`cannot pass ${what}`, e, 'check the dtype and shape of the feed');
      }
    }
    return out;
  }

  /** Frees ORT's session; the object cannot run afterwards. Safe to call twice. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.ort.release();
  }
}

function runHint(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (/invalid (rank|dimensions) for input/i.test(msg)) return 'the feed shape does not match the model input shape';
  if (/data type/i.test(msg)) return 'a feed has the wrong element type for its input';
  return 'the model failed on this input in ONNX Runtime; check input shapes and values (e.g. a sequence too short for the model)';
}

