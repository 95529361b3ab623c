// `lowbit quantize DIR --preset transformers.js`: every dtype variant transformers.js asks for, for each ONNX file
// of a model folder, named the way its loader looks them up (`model.onnx` -> `model_fp16.onnx`,
// `model_quantized.onnx`, `model_q4.onnx`, ...), each one checked: it loads and runs in onnxruntime-node and in
// onnxruntime-web's WebAssembly backend, with its output error against the float32 model on the same inputs.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { freemem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { LowbitError } from '../errors.js';
import { loadModel, saveModel, type ExternalSource } from '../io/model-file.js';
import type { NdArray } from '../ndarray.js';
import { Model } from '../onnx/ir.js';
import { convertFloat16 } from '../passes/float16.js';
import { quantizeDynamic } from '../passes/quantize-dynamic.js';
import { quantizeMatMulBnb4 } from '../passes/weight-only-bnb4.js';
import { unpackConvWeights, unpackEmbeddingTables } from '../passes/unpack-on-load.js';
import { quantizeEmbeddings } from '../passes/weight-only-gather.js';
import { quantizeWeightOnly } from '../passes/weight-only.js';
import { sqnrDb } from '../quant/metrics.js';
import { openModelData } from '../data/calib-data.js';
import { asNumbers } from '../runtime/arrays.js';
import { Session } from '../runtime/session.js';
import type { WebExternalData } from '../runtime/web.js';
import { bench } from './bench.js';
import { WEIGHT_ONLY_ACCURACY_LEVEL, type ProgressEvent } from './options.js';
import { modelInputs } from './quantize.js';
import { syntheticSource } from './synthetic.js';
import { BLOCK, BNB4_BLOCK, DTYPE_SUFFIX, TRANSFORMERS_JS_DTYPES, WEB_TIMED_RUNS, type TransformersJsDtype } from './preset-dtypes.js';

export { DTYPE_DESCRIPTION, DTYPE_SUFFIX, TRANSFORMERS_JS_DTYPES, type TransformersJsDtype } from './preset-dtypes.js';

export interface PresetOptions {
  /** A model folder (its `onnx/` subfolder is used when there is one) or one .onnx file. */
  input: string;
  /** Where the variants go; default: next to each input file (transformers.js looks there). */
  outputDir?: string;
  /** Default: all of TRANSFORMERS_JS_DTYPES. */
  dtypes?: TransformersJsDtype[];
  /** Check each variant in onnxruntime-web's wasm backend (default true). */
  web?: boolean;
  /** Split external data into files of at most this many bytes (`<variant>.onnx_data`, `_data_1`, ...). */
  shardSize?: number;
  /**
   * Samples to check every variant on (.npy / .npz for the model inputs; the first VERIFY_SAMPLES are used), for
   * models whose inputs a synthetic sample cannot stand for (token ids, sample rates, states). Default: one
   * synthetic sample (floats in [0, 1), integers 0). With several model files, each file's inputs must be in it.
   */
  data?: string;
  /**
   * The form of the quantized variants' weights: 'matmulnbits' (default, as transformers.js' own files: MatMulNBits and
   * GatherBlockQuantized for q4 / q2, dynamic int8 for q8 / int8 / uint8) or 'unpack-on-load' (q4 / q4f16 and q8 /
   * int8 / uint8 as 4- / 8-bit codes unpacked to float32 when the session loads: the same download at float32 speed in
   * onnxruntime-web's wasm backend, whose MatMulNBits is 14-25x and dynamic int8 1.4x slower; q2 / q2f16 keep
   * MatMulNBits (Cast from INT2 needs opset 25), bnb4 its MatMulBnb4).
   */
  weightFormat?: PresetWeightFormat;
  threads?: number;
  onProgress?: (event: ProgressEvent) => void;
}

export const PRESET_WEIGHT_FORMATS = ['matmulnbits', 'unpack-on-load'] as const;
export type PresetWeightFormat = (typeof PRESET_WEIGHT_FORMATS)[number];

/** One written variant and how it checked out. */
export interface PresetVariant {
  source: string;
  dtype: TransformersJsDtype;
  output: string;
  bytes: number;
  sourceBytes: number;
  /** Nodes the variant's passes rewrote. */
  quantizedNodes: number;
  /** Output SQNR against the float32 model on the check samples (worst output), when computable. */
  sqnrDb?: number;
  /** 'ok', the error message, or 'skipped: why'. */
  node: string;
  /** Set when the variant could not be built or written (nothing was written for it): why, and what to do. */
  error?: string;
  /** 'ok', the error message, 'skipped' (the web check was turned off) or 'skipped: why'. */
  web: string;
  /** Median ms per run of this variant in onnxruntime-web (wasm, one thread) on the check sample, when it ran there. */
  webMs?: number;
  /** The same for the float32 source model (its reference in the browser's runtime). */
  sourceWebMs?: number;
  /** Why the float32 source model could not be timed in onnxruntime-web, when it could not. */
  sourceWebError?: string;
}

export interface PresetResult {
  variants: PresetVariant[];
  /** The form of the quantized variants' weights (PresetOptions.weightFormat). */
  weightFormat: PresetWeightFormat;
  /** What the variants were checked (SQNR) and timed on, e.g. "one synthetic sample (...)". */
  samples: string;
  /** Input files that were not processed (already a variant), with the reason. */
  skipped: { file: string; reason: string }[];
}

const VARIANT_SUFFIX = new RegExp(`(${Object.values(DTYPE_SUFFIX).filter((s) => s).join('|')})$`);

/** The .onnx files of a model folder (its onnx/ subfolder first), variants excluded, sorted. */
export function presetInputs(input: string): { files: string[]; skipped: { file: string; reason: string }[] } {
  const abs = resolve(input);
  let st;
  try {
    st = statSync(abs);
  } catch {
    throw new LowbitError('FILE_NOT_FOUND', `'${input}' does not exist`, 'pass a model folder (with an onnx/ subfolder, as on the Hugging Face Hub) or an .onnx file');
  }
  if (st.isFile()) return { files: [abs], skipped: [] };
  const sub = join(abs, 'onnx');
  const dir = statSync(sub, { throwIfNoEntry: false })?.isDirectory() ? sub : abs;
  const onnx = readdirSync(dir).filter((f) => f.endsWith('.onnx')).sort();
  const files: string[] = [];
  const skipped: { file: string; reason: string }[] = [];
  for (const f of onnx) {
    if (VARIANT_SUFFIX.test(f.slice(0, -'.onnx'.length))) skipped.push({ file: join(dir, f), reason: 'already a dtype variant (its name ends in a transformers.js suffix)' });
    else files.push(join(dir, f));
  }
  if (!files.length) {
    throw new LowbitError('FILE_NOT_FOUND', `no float32 .onnx model in '${dir}'`, 'transformers.js folders keep their models in onnx/ (model.onnx, encoder_model.onnx, ...)');
  }
  return { files, skipped };
}

/** Builds one dtype variant from the float32 model; returns the model and how many nodes were rewritten. */
export function buildVariant(model: Model, dtype: TransformersJsDtype, weightFormat: PresetWeightFormat = 'matmulnbits'): { model: Model; quantizedNodes: number } {
  const fp16 = (m: Model): { model: Model; converted: number } => {
    // Nodes computing constants (the unpack-on-load chains) stay float32: ORT folds them when the session loads, and its
    // CPU kernels for some of them (Sub, Mul) have no float16 version to fold with.
    const r = convertFloat16(m, { type: 'float16', keepIoTypes: true, defer: true, blockNodes: constantNodeNames(m) });
    return { model: r.model, converted: r.report.converted };
  };
  const q = (m: Model, bits: 2 | 4, half: boolean): { model: Model; quantizedNodes: number } => {
    const e = weightFormat === 'unpack-on-load' && bits === 4 ? unpackEmbeddingTables(m, { bits: 4, blockSize: BLOCK, symmetric: false }) : quantizeEmbeddings(m, { bits: 4, blockSize: BLOCK, symmetric: false });
    // Deferred: each weight is quantized when the variant is saved (the float16 pass would read them at once anyway).
    // 2-bit codes cannot be unpacked (Cast from INT2 needs opset 25): q2 / q2f16 keep MatMulNBits in either form.
    const form = weightFormat === 'matmulnbits' || bits === 2 ? { accuracyLevel: WEIGHT_ONLY_ACCURACY_LEVEL } : { format: weightFormat };
    const w = quantizeWeightOnly(e.model, { bits, blockSize: BLOCK, algorithm: 'rtn', ...form, defer: !half });
    const h = half ? fp16(w.model) : { model: w.model, converted: 0 };
    return { model: h.model, quantizedNodes: e.report.quantized.length + w.report.quantized.length + h.converted };
  };
  // unpack-on-load: the 8-bit dtypes as 8-bit codes unpacked when the session loads (tables, MatMul/Gemm, Conv).
  const unpack8 = (m: Model): { model: Model; quantizedNodes: number } => {
    const opts = { bits: 8 as const, blockSize: BLOCK, symmetric: dtype === 'int8' };
    const t = unpackEmbeddingTables(m, opts);
    const w = quantizeWeightOnly(t.model, { ...opts, algorithm: 'rtn', format: 'unpack-on-load', defer: true });
    const c = unpackConvWeights(w.model, opts);
    return { model: c.model, quantizedNodes: t.report.quantized.length + w.report.quantized.length + c.report.quantized.length };
  };
  if (weightFormat === 'unpack-on-load' && (dtype === 'q8' || dtype === 'int8' || dtype === 'uint8')) return unpack8(model);
  switch (dtype) {
    case 'fp16': {
      const r = convertFloat16(model, { type: 'float16', keepIoTypes: true, defer: true });
      return { model: r.model, quantizedNodes: r.report.converted };
    }
    case 'q8': {
      const a = quantizeDynamic(model, { weightType: 'int8', perChannel: false, excludeOps: ['Conv'] });
      const b = quantizeDynamic(a.model, { weightType: 'uint8', perChannel: false, conv: 'ConvInteger', excludeOps: ['MatMul', 'Gemm', 'LSTM'] });
      return { model: b.model, quantizedNodes: a.report.quantized.length + b.report.quantized.length };
    }
    case 'int8': {
      const r = quantizeDynamic(model, { weightType: 'int8', perChannel: false });
      return { model: r.model, quantizedNodes: r.report.quantized.length };
    }
    case 'uint8': {
      const r = quantizeDynamic(model, { weightType: 'uint8', perChannel: false, conv: 'ConvInteger' });
      return { model: r.model, quantizedNodes: r.report.quantized.length };
    }
    case 'q4':
      return q(model, 4, false);
    case 'q4f16':
      return q(model, 4, true);
    case 'q2':
      return q(model, 2, false);
    case 'q2f16':
      return q(model, 2, true);
    case 'bnb4': {
      const r = quantizeMatMulBnb4(model, { quantType: 'nf4', blockSize: BNB4_BLOCK });
      return { model: r.model, quantizedNodes: r.report.quantized.length };
    }
  }
}

/** Names of the main-graph nodes whose inputs are all constants (initializers, or outputs of such nodes). */
function constantNodeNames(m: Model): string[] {
  const g = m.graph;
  const constant = new Set(g.initializers.keys());
  const names: string[] = [];
  for (const n of g.topoSort()) {
    if (n.attribute.some((a) => a.g || a.graphs?.length)) continue;
    if (!n.input.every((i) => !i || constant.has(i))) continue;
    for (const o of n.output) if (o) constant.add(o);
    if (n.name) names.push(n.name);
  }
  return names;
}

/** Runs `model` (a path) on `feeds` in onnxruntime-node; outputs by name. */
async function runNode(model: string, feeds: Record<string, NdArray>, threads?: number): Promise<Record<string, NdArray>> {
  const s = await Session.create(model, threads !== undefined ? { threads } : {});
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** Worst SQNR over the float outputs both runs produced. */
function worstSqnr(ref: Record<string, NdArray>, got: Record<string, NdArray>): number | undefined {
  let worst: number | undefined;
  for (const [k, r] of Object.entries(ref)) {
    const g = got[k];
    if (!g || !['float32', 'float16', 'float64'].includes(r.dtype) || g.data.length !== r.data.length) continue;
    const a = asNumbers(r);
    const b = asNumbers(g);
    const db = sqnrDb(a, b);
    if (Number.isFinite(db) || db === Infinity) worst = worst === undefined ? db : Math.min(worst, db);
  }
  return worst;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 200);

/** Models at most this big (file + external data) are also checked in onnxruntime-web (wasm has a 4 GiB heap). */
const WEB_CHECK_MAX_BYTES = 1024 ** 3;

/**
 * Writes the transformers.js dtype variants of every float32 ONNX file in `input` and checks each one.
 * Each source is read once (its external data streamed instead when it is over a quarter of free memory); the variants
 * are built from that copy and saved one after the other.
 * @throws LowbitError FILE_NOT_FOUND for a missing input or a folder without models; BAD_OPTION for an unknown dtype;
 *   errors of the passes for models they cannot read. A variant that does not run is reported, not thrown.
 */
export async function quantizeTransformersJs(o: PresetOptions): Promise<PresetResult> {
  const dtypes = o.dtypes ?? [...TRANSFORMERS_JS_DTYPES];
  if (o.weightFormat !== undefined && !(PRESET_WEIGHT_FORMATS as readonly string[]).includes(o.weightFormat)) {
    throw new LowbitError('BAD_OPTION', `unknown preset weight format '${String(o.weightFormat)}'`, `use one of: ${PRESET_WEIGHT_FORMATS.join(', ')}`);
  }
  for (const d of dtypes) {
    if (!(TRANSFORMERS_JS_DTYPES as readonly string[]).includes(d)) {
      throw new LowbitError('BAD_OPTION', `unknown transformers.js dtype '${d}'`, `use some of: ${TRANSFORMERS_JS_DTYPES.join(', ')}`);
    }
  }
  const { files, skipped } = presetInputs(o.input);
  if (o.outputDir !== undefined && !statSync(o.outputDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new LowbitError('FILE_NOT_FOUND', `output folder '${o.outputDir}' does not exist`, 'create it first');
  }
  const variants: PresetVariant[] = [];
  const total = files.length * dtypes.length;
  for (const file of files) {
    // One pass over the weights: a model whose external data fits comfortably in free memory is read once and every
    // variant is built from that copy; a bigger one is streamed (each variant reads the weights it needs from disk).
    const probe = await loadModel(file, { externalData: 'lazy' });
    const externalBytes = probe.externalSources.reduce((n, e) => n + e.length, 0);
    const loaded = externalBytes > 0 && externalBytes > freemem() / 4 ? await loadModel(file, { externalData: 'stream' }) : externalBytes > 0 ? await loadModel(file) : probe;
    const model = new Model(loaded.model);
    const sourceBytes = statSync(file).size + loaded.externalSources.reduce((s, e) => s + e.length, 0);
    const sample = o.data !== undefined ? firstSamples(o.data, model) : syntheticFeeds(model);
    const feeds = typeof sample === 'string' ? undefined : sample;
    // The float32 model on the same synthetic sample: the reference, and the proof that the sample is a valid input.
    let refError: string | undefined;
    const ref = feeds ? await runNode(file, feeds, o.threads).catch((e: unknown) => void (refError = message(e))) : undefined;
    let sourceWeb: { ms?: number; error?: string } | undefined; // the float32 model timed in wasm once, beside the first variant checked there
    for (const dtype of dtypes) {
      const out = join(o.outputDir ?? dirname(file), `${basename(file, '.onnx')}${DTYPE_SUFFIX[dtype]}.onnx`);
      let built: ReturnType<typeof buildVariant>;
      let saved: Awaited<ReturnType<typeof saveModel>>;
      try {
        built = buildVariant(model, dtype, o.weightFormat);
        // transformers.js loads external data from `<file>.onnx_data` (and `_data_1`, ... with use_external_data_format: N).
        saved = await saveModel(built.model.toProto(), out, { inputPath: file, externalDataName: `${basename(out)}_data`, ...(o.shardSize !== undefined ? { shardSize: o.shardSize } : {}) });
      } catch (e) {
        // One dtype the model cannot take (e.g. an op a pass refuses) does not stop the others; a bug still does.
        if (!(e instanceof LowbitError) || e.code === 'INTERNAL') throw e;
        variants.push({ source: file, dtype, output: out, bytes: 0, sourceBytes, quantizedNodes: 0, node: 'skipped: not written', web: 'skipped: not written', error: `${e.message} (${e.hint})` });
        o.onProgress?.({ stage: 'preset', done: variants.length, total });
        continue;
      }
      const noInputs = refError
        ? `skipped: the float32 model itself fails on ${o.data !== undefined ? `the samples of ${o.data}` : 'a synthetic sample (floats in [0, 1), integers 0); pass samples with --calib DATA'}, so it cannot judge the variant: ${refError}`
        : `skipped: the model inputs cannot be synthesised (${typeof sample === 'string' ? sample : ''}); pass samples with --calib DATA`;
      const v: PresetVariant = { source: file, dtype, output: out, bytes: saved.bytes + (saved.dataBytes ?? 0), sourceBytes, quantizedNodes: built.quantizedNodes, node: noInputs, web: o.web === false ? 'skipped' : noInputs };
      if (feeds && !refError) {
        v.node = 'ok';
        try {
          const got = await runNode(out, feeds, o.threads);
          if (ref) {
            const db = worstSqnr(ref, got);
            if (db !== undefined) v.sqnrDb = db;
          }
        } catch (e) {
          v.node = message(e);
        }
        if (o.web !== false && v.bytes > WEB_CHECK_MAX_BYTES) v.web = `skipped: over ${WEB_CHECK_MAX_BYTES / 1024 ** 3} GiB (the wasm heap is 4 GiB)`;
        else if (o.web !== false) {
          try {
            const external = (saved.dataPaths ?? []).map((p) => ({ path: basename(p), data: new Uint8Array(readFileSync(p)) }));
            v.webMs = await timeInWeb(new Uint8Array(readFileSync(out)), feeds, external);
            v.web = 'ok';
          } catch (e) {
            v.web = message(e);
          }
          sourceWeb ??= await timeSourceInWeb(file, loaded.externalSources, feeds);
          if (sourceWeb.ms !== undefined) v.sourceWebMs = sourceWeb.ms;
          if (sourceWeb.error !== undefined) v.sourceWebError = sourceWeb.error;
        }
      }
      variants.push(v);
      o.onProgress?.({ stage: 'preset', done: variants.length, total });
    }
  }
  const samples = o.data !== undefined ? `up to the first ${VERIFY_SAMPLES} samples of ${o.data}` : 'one synthetic sample (floats uniform in [0, 1), integer inputs 0)';
  return { variants, skipped, weightFormat: o.weightFormat ?? 'matmulnbits', samples };
}

/**
 * `model` in onnxruntime-web: one untimed run (the check: throws LowbitError RUNTIME when the web build cannot load or
 * run it), then WEB_TIMED_RUNS timed ones; their median, ms.
 */
async function timeInWeb(model: Uint8Array, feeds: Record<string, NdArray>, externalData: WebExternalData[] = []): Promise<number> {
  const r = await bench({ model, backend: 'wasm', inputs: feeds, warmup: 1, runs: WEB_TIMED_RUNS, ...(externalData.length ? { externalData } : {}) });
  return r.latencyMs.median;
}

/** The float32 source's wasm time (its external data files passed as written in the model), or why there is none. */
async function timeSourceInWeb(file: string, sources: readonly ExternalSource[], feeds: Record<string, NdArray>): Promise<{ ms?: number; error?: string }> {
  const files = new Map(sources.map((e) => [e.location, e.file]));
  if ([...files.values()].reduce((n, f) => n + statSync(f).size, statSync(file).size) > WEB_CHECK_MAX_BYTES) return { error: `over ${WEB_CHECK_MAX_BYTES / 1024 ** 3} GiB (the wasm heap is 4 GiB)` };
  try {
    const external = [...files].map(([location, f]) => ({ path: location, data: new Uint8Array(readFileSync(f)) }));
    return { ms: await timeInWeb(new Uint8Array(readFileSync(file)), feeds, external) };
  } catch (e) {
    return { error: message(e) };
  }
}

/** Samples of `data` the variants are checked on. */
const VERIFY_SAMPLES = 4;

/** The first samples of a data file, bound to the model's inputs. @throws LowbitError as openModelData (missing file, mismatched inputs) */
function firstSamples(data: string, model: Model): Record<string, NdArray> {
  const src = openModelData(data, modelInputs(model));
  for (const b of src.batches(Math.min(VERIFY_SAMPLES, src.count))) return b;
  throw new LowbitError('BAD_DATA', `${data} has no samples`, 'pass a file with at least one sample for the model inputs');
}

/** One synthetic sample per model input (floats uniform in [0, 1), integers 0), or why there is none. */
function syntheticFeeds(model: Model): Record<string, NdArray> | string {
  try {
    const src = syntheticSource(modelInputs(model), 1, 1);
    for (const b of src.batches(1)) return b;
    return 'the synthetic source gave no sample';
  } catch (e) {
    return message(e);
  }
}
