// quantize(): load -> prepare -> (calibrate) -> rewrite -> save atomically -> verify -> report.
// The one entry point the CLI and library users call; every step is a function of its own.

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { LowbitError } from '../errors.js';
import { openModelData, split, type BoundDataSource } from '../data/calib-data.js';
import { openNpy } from '../data/npy.js';
import { loadModel, saveModel } from '../io/model-file.js';
import type { NdArray } from '../ndarray.js';
import { sliceAxis0 } from '../runtime/arrays.js';
import { encodeModel } from '../onnx/encode.js';
import { Model, valueInfoTensor } from '../onnx/ir.js';
import { DataType } from '../onnx/proto.js';
import { DEFAULT_BLOCK, convertFloat16, type Float16Report } from '../passes/float16.js';
import { quantizeDynamic } from '../passes/quantize-dynamic.js';
import { quantizeWeightOnly } from '../passes/weight-only.js';
import { unpackConvWeights, unpackEmbeddingTables } from '../passes/unpack-on-load.js';
import type { PassReport } from '../passes/pass-report.js';
import { quantizeBlockwiseRtn, type BlockQuantized } from '../quant/blockwise.js';
import { collectHessians, gptqHook, hessianTargets } from './hessian.js';
import { compareLatency, type LatencyComparison } from './bench.js';
import { applyQuantizeConfig, configOf, defaultConfigPath, writeQuantizeConfig } from './config.js';
import { evaluate, type EvaluateResult } from './evaluate.js';
import { runGate, type GateResult } from './gate.js';
import { resolveQuantizeOptions, type Fidelity, type LatencySummary, type NodeDecision, type OptimizeFor, type QuantizeOptions, type QuantizeResult, type ResolvedQuantizeOptions } from './options.js';
import { quantizeStaticModel } from './quantize-static.js';
import { syntheticSource } from './synthetic.js';

/** Opsets of the default domain lowbit knows how to rewrite (ONNX Runtime 1.30 runs them). */
export const MIN_OPSET = 7;
export const MAX_OPSET = 23;

/** Held-out samples from which the accuracy gate chooses on one half and reports on the other. */
const GATE_SPLIT_MIN = 8;

/** Held-out samples used to verify a static model: 20% of the data, at least 4 and at most 256. */
export function holdoutCount(count: number): number {
  if (count < 8) return 0;
  return Math.min(256, Math.max(4, Math.round(count * 0.2)));
}

/** When fidelity is this low, the result is flagged (int8 normally keeps ≥ 95% top-1 agreement and > 20 dB). */
export const COLLAPSE = { agreement: 0.9, sqnrDb: 12 } as const;

function checkOpset(model: Model, path: string): void {
  const v = model.opset('');
  if (v === undefined) return; // ONNX-ML-only or custom-domain models: passes skip what they do not know
  if (v < MIN_OPSET || v > MAX_OPSET) {
    throw new LowbitError(
      'UNSUPPORTED_OPSET',
      `'${path}' uses opset ${v} of the default ONNX domain; lowbit handles opsets ${MIN_OPSET}..${MAX_OPSET}`,
      v < MIN_OPSET ? 're-export the model with a newer exporter (opset 13 or later is best)' : 're-export the model at a supported opset',
    );
  }
}

/** The model's graph inputs (initializers excluded) as the data layer wants them. */
export function modelInputs(model: Model): { name: string; elemType: number; dims: (number | string | undefined)[] }[] {
  return model.graph.inputs
    .filter((v) => !model.graph.initializers.has(v.name ?? ''))
    .map((v) => {
      const t = valueInfoTensor(v);
      return { name: v.name ?? '', elemType: t.elemType ?? 0, dims: t.dims ?? [] };
    });
}

function fileBytes(path: string): number {
  return statSync(path).size;
}

/**
 * Labels for the calibration samples: one per sample.
 * @throws LowbitError DATA_MISMATCH when the count differs from the data's.
 */
function readLabels(path: string, count: number): NdArray {
  const labels = openNpy(path).readAll();
  if (labels.shape[0] !== count) {
    throw new LowbitError('DATA_MISMATCH', `'${path}' has ${labels.shape[0] ?? 0} labels but the calibration data has ${count} samples`, 'give one label per calibration sample, in the same order');
  }
  return labels;
}

/** Everything measured after the rewrite. */
interface Verification {
  fidelity: Fidelity;
  latency: LatencyComparison | undefined;
  /** Why the wasm backend could not time the models (backend 'wasm' only). */
  latencyError?: string;
  dataNote: string;
}

/** Samples per verification run: up to 16, bounded by the data and a fixed model batch. */
function verifyBatch(source: BoundDataSource): number {
  return Math.max(1, Math.min(source.count, Number.isFinite(source.maxBatch) ? source.maxBatch : 16, 16));
}

async function verify(
  o: ResolvedQuantizeOptions,
  floatPath: string,
  quantPath: string | Uint8Array,
  data: BoundDataSource | undefined,
  labels: NdArray | undefined,
  dataNote: string,
  model: Model,
): Promise<Verification> {
  const source = data ?? syntheticSource(modelInputs(model), 16, 1);
  const batch = verifyBatch(source);
  const r: EvaluateResult = await evaluate({
    model: quantPath,
    reference: floatPath,
    data: source,
    ...(labels ? { labels } : {}),
    batch,
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  const fidelity: Fidelity = { samples: r.samples };
  if (r.agreement !== undefined) fidelity.agreement = r.agreement;
  if (r.sqnrDb !== undefined) fidelity.sqnrDb = r.sqnrDb;
  if (r.cosine !== undefined) fidelity.cosine = r.cosine;
  if (r.maxAbsError !== undefined) fidelity.maxAbsError = r.maxAbsError;
  if (r.accuracy !== undefined) fidelity.accuracy = r.accuracy;
  if (r.referenceAccuracy !== undefined) fidelity.floatAccuracy = r.referenceAccuracy;
  let latency: LatencyComparison | undefined;
  let latencyError: string | undefined;
  try {
    // wasm: more warm-up runs (the first runs of a wasm session are slower while its code warms up).
    const where = o.backend === 'wasm' ? { backend: 'wasm' as const, warmup: 5 } : { warmup: 2, ...(o.threads !== undefined ? { threads: o.threads } : {}) };
    latency = await compareLatency(floatPath, quantPath, { batch: 1, runs: 18, blocks: 3, ...where });
  } catch (e) {
    latency = undefined; // models whose inputs cannot be synthesised for timing still get fidelity
    // In wasm a model that runs in onnxruntime-node may not load at all (an op or type the web build lacks): say so.
    if (o.backend === 'wasm') latencyError = e instanceof Error ? e.message : String(e);
  }
  return { fidelity, latency, latencyError, dataNote: data ? dataNote : 'synthetic inputs (uniform random; pass --calib DATA to verify on real samples)' };
}

/** "the X model is slower than the float model at batch B: q ms vs f ms (speedup, threads, medians). <advice>", or nothing. */
function slowerWarning(latency: LatencySummary | undefined, what: string, advice: string): string[] {
  if (!latency || !(latency.speedup < 1)) return [];
  const f = latency.float.latencyMs.median;
  const q = latency.quant.latencyMs.median;
  return [
    `the ${what} model is slower than the float model at batch ${latency.batch}: ${q.toPrecision(3)} ms vs ${f.toPrecision(3)} ms ` +
      `(speedup ${latency.speedup.toFixed(2)}x, ${latency.backend === 'wasm' ? 'onnxruntime-web wasm, ' : ''}${latency.threads} thread${latency.threads === 1 ? '' : 's'}, medians on this machine). ${advice}`,
  ];
}

/**
 * A speed warning when the quantized model is slower than the float one at batch 1 (speedup below 1), with
 * the ratio and what to do about it. Nothing when there is no latency (models that could not be timed).
 */
export function speedWarnings(latency: LatencySummary | undefined, optimizeFor: OptimizeFor = 'speed'): string[] {
  return slowerWarning(
    latency,
    'quantized',
    optimizeFor === 'size'
      ? "--optimize-for size quantized every eligible layer, including those ONNX Runtime's CPU runs slower in int8 than in " +
          'float; the default, --optimize-for speed, keeps those float (narrow stems, narrow depthwise convs, 8-bit MaxPool heads)'
      : latency?.backend === 'wasm'
        ? "In onnxruntime-web's WebAssembly build, static int8 pays on dense convolutions and MatMuls over many rows (1.6-2.2x measured); " +
            'depthwise and 1x1 convolutions on small maps run slower than in float even with the depthwise convs kept float. ' +
            'For speed in the browser keep the float model; for a smaller download at float speed use --mode weight-only --bits 8 --format unpack-on-load'
        : "ONNX Runtime's integer kernels win on wide layers (convolutions with 32+ channels, large MatMuls); narrow or depthwise convolutions, per-channel " +
            'broadcasts and 8-bit pooling run slower than their float kernels. For batch-1 latency keep the float model, or ' +
            'leave the slow layers float (--exclude-ops / --exclude-nodes) and compare again; `lowbit bench` times other batch sizes',
  );
}

/** weight-only: a MatMulNBits model slower than float32 at batch 1, with what to change. */
export function weightOnlySpeedWarnings(latency: LatencySummary | undefined, accuracyLevel: number): string[] {
  return slowerWarning(
    latency,
    'weight-only',
    latency?.backend === 'wasm'
      ? "onnxruntime-web's WebAssembly build has no fast MatMulNBits kernel (measured on a 6-layer d=512 transformer, one token: " +
          '4-bit 12-14x, 8-bit ~15x slower than float32 MatMul, in both the MatMulNBits and the blocked DequantizeLinear form): ' +
          'use --format unpack-on-load (the codes are unpacked to float32 when the session loads: the same download, float32 speed and memory)'
      : accuracyLevel !== 4
        ? `MatMulNBits with accuracy_level ${accuracyLevel} computes with float activations; ONNX Runtime's CPU kernel for that is slow (8 and 2 bits: 12-17x slower than float32, measured): use --accuracy-level 4 (int8 activations per block)`
        : 'MatMulNBits gains where weights dominate the time (one token at a time, large layers); for wide batches or small layers keep the float model for speed',
  );
}

/** Fidelity warnings: an int8 model this far from its float original is probably broken. */
export function collapseWarnings(f: Fidelity): string[] {
  const w: string[] = [];
  if (f.agreement !== undefined && f.agreement < COLLAPSE.agreement) {
    w.push(`top-1 agreement with the float model is ${(f.agreement * 100).toFixed(1)}% (int8 normally keeps ≥ ${COLLAPSE.agreement * 100}%)`);
  }
  if (f.sqnrDb !== undefined && f.sqnrDb < COLLAPSE.sqnrDb) {
    w.push(`output SQNR is ${f.sqnrDb.toFixed(1)} dB (int8 normally gives > ${COLLAPSE.sqnrDb} dB)`);
  }
  return w;
}

/** A run that quantized no node wrote a float model under a new name: say so, and why. */
export function nothingQuantizedWarnings(mode: string, nodes: NodeDecision[], model: Model): string[] {
  if (nodes.some((n) => n.quantized)) return [];
  const hasBodies = model.graph.nodes.some((n) => model.graph.subgraphs(n).length > 0);
  const reasons = [...new Set(nodes.map((n) => n.detail))].slice(0, 3);
  let why = reasons.length ? `nodes were left float: ${reasons.join('; ')}` : `no node of the main graph is one that ${mode} quantization handles`;
  if (mode === 'static' && hasBodies) why += '; a node inside an If/Loop/Scan body is quantized only when the calibration data runs that body (check that the samples take the branch)';
  return [`nothing was quantized: the output is the float model (${why})`];
}

/** fp16 mode: float16 compute (excludeOps add to the default block list); bf16 mode: bfloat16 weights, float32 compute. */
function float16Options(o: ResolvedQuantizeOptions): Parameters<typeof convertFloat16>[1] {
  if (o.mode === 'bf16') return { type: 'bfloat16', weightsOnly: true };
  return { type: 'float16', keepIoTypes: o.keepIoTypes, blockOps: [...Object.keys(DEFAULT_BLOCK), ...o.excludeOps], blockNodes: o.excludeNodes };
}

/** Per-node decisions of an fp16 / bf16 conversion (quantized = computes in float16, or reads bfloat16 weights). */
function float16Decisions(model: Model, r: Float16Report): NodeDecision[] {
  const blocked = new Map(r.blocked.map((b) => [b.node, b.reason]));
  const g = model.graph;
  return g.nodes.map((n) => {
    const node = n.name ?? '';
    const opType = n.opType ?? '';
    if (r.weightsOnly) {
      const reads = n.input.some((i) => g.constant(i)?.dataType === DataType.FLOAT);
      return { node, opType, quantized: reads, detail: reads ? 'bfloat16 weights, float32 compute' : 'no float32 weights' };
    }
    const why = blocked.get(node);
    return why === undefined ? { node, opType, quantized: true, detail: 'float16' } : { node, opType, quantized: false, detail: `kept float32: ${why}` };
  });
}

/** What the fp16 / bf16 report says besides size and fidelity. */
function float16Notes(r: Float16Report): string[] {
  const notes: string[] = [];
  if (r.weightsOnly) {
    notes.push(
      `bf16: ${r.tensors} weight tensors stored as bfloat16, each read through a Cast to float32; every node computes in float32. ` +
        "ONNX Runtime's CPU provider has no bfloat16 arithmetic kernels (Add, Mul, Conv, MatMul), so a model computing in bfloat16 " +
        'would not run there; this form halves the file and runs anywhere. convertFloat16(model, { type: "bfloat16" }) in the library ' +
        'writes full bfloat16 compute for runtimes that have the kernels',
    );
  } else {
    notes.push(
      `fp16: ${r.converted} nodes compute in float16, ${r.blocked.length} kept float32 (between Casts), ${r.casts} Casts inserted. ` +
        "ONNX Runtime's CPU provider wraps most float16 ops in Casts to float32 itself: expect half the file, not more speed, on CPU",
    );
  }
  if (r.flushedToZero) notes.push(`${r.flushedToZero} non-zero weight values too small for ${r.type} became 0`);
  return notes;
}

/**
 * Quantizes a float ONNX model and measures what it cost. With `maxDrop`, the accuracy gate (gate.ts) keeps
 * the most sensitive layers float until the drop is within it, and the run's config (with those exclusions)
 * is written to `saveConfig` or `<output>.lowbit.json` (config.ts).
 * @throws LowbitError for bad options, unreadable models or data, data that does not match the
 *   model, `output` equal to `input`; the input file is never modified and the output is written
 *   atomically (a failed run leaves no partial file).
 */
export async function quantize(options: QuantizeOptions): Promise<QuantizeResult> {
  const o = resolveQuantizeOptions(applyQuantizeConfig(options));
  if (resolve(o.input) === resolve(o.output)) {
    throw new LowbitError('SAME_INPUT_OUTPUT', `the output '${o.output}' is the input model`, 'write the quantized model to another file, e.g. model.int8.onnx');
  }
  const configOut = o.saveConfig ?? (o.maxDrop !== undefined ? defaultConfigPath(o.output) : undefined);
  if (configOut !== undefined && [o.input, o.output].some((p) => resolve(p) === resolve(configOut))) {
    throw new LowbitError('SAME_INPUT_OUTPUT', `the config path '${configOut}' is a model file of this run`, 'write the config to another file, e.g. model.lowbit.json');
  }
  // Weights stay on disk until a pass reads them (external data is read tensor by tensor, never all at once).
  const loaded = await loadModel(o.input, { externalData: 'stream' });
  const model = new Model(loaded.model);
  checkOpset(model, o.input);

  let data: BoundDataSource | undefined;
  let calibData: BoundDataSource | undefined;
  let labels: NdArray | undefined;
  let dataNote = '';
  if (o.calib !== undefined) {
    data = openModelData(o.calib, modelInputs(model), o.image);
    if (o.labels !== undefined) labels = readLabels(o.labels, data.count);
    if (o.mode === 'static' || (o.mode === 'weight-only' && o.algorithm === 'gptq')) {
      const hold = holdoutCount(data.count);
      if (hold === 0) {
        calibData = data;
        dataNote = `${data.count} calibration samples (too few to hold some out: verified on the same samples)`;
      } else {
        const parts = split(data, { count: hold });
        calibData = parts.head;
        data = parts.tail;
        if (labels) labels = sliceAxis0(labels, labels.shape[0]! - hold, labels.shape[0]!);
        dataNote = `${hold} held-out samples of ${o.calib} (calibrated on the other ${calibData.count})`;
      }
    } else {
      dataNote = `${data.count} samples of ${o.calib}`;
    }
  }

  let quantized: Model;
  let nodes: NodeDecision[];
  let rebuild: (excludeNodes: string[]) => Promise<{ model: Model; nodes: NodeDecision[] }>;
  let prepare: ((sets: string[][]) => Promise<unknown>) | undefined;
  let f16: Float16Report | undefined;
  /** Notes of the weight-only pass that are known only once the model is saved (deferred weights are quantized then). */
  let weightOnlyNotes: () => string[] = () => [];
  if (o.mode === 'fp16' || o.mode === 'bf16') {
    ({ model: quantized, report: f16 } = convertFloat16(model, { ...float16Options(o), defer: true })); // converted as saved; the report is complete after saveModel
    nodes = float16Decisions(model, f16);
    rebuild = async () => ({ model: quantized, nodes }); // resolveQuantizeOptions refuses maxDrop in these modes
  } else if (o.mode === 'weight-only') {
    // GPTQ: one Hessian per weight input from the calibration samples, gathered once (the gate's rebuilds reuse them).
    let hook: ((name: string, w: Float32Array, K: number, N: number) => BlockQuantized) | undefined;
    const gptqFallback = new Set<string>();
    let unpackedByRtn = 0;
    weightOnlyNotes = () => [
      ...(gptqFallback.size ? [`GPTQ: ${gptqFallback.size} weight${gptqFallback.size > 1 ? 's' : ''} read only inside If/Loop/Scan bodies quantized with RTN (activations are collected in the main graph): ${[...gptqFallback].slice(0, 8).join(', ')}${gptqFallback.size > 8 ? ', ...' : ''}`] : []),
      ...(unpackedByRtn ? [`GPTQ covers MatMul / Gemm weights: the weights of ${unpackedByRtn} Conv / Gather node${unpackedByRtn > 1 ? 's' : ''} unpacked on load were quantized with RTN`] : []),
    ];
    if (o.algorithm === 'gptq') {
      const targets = hessianTargets(model, { excludeNodes: o.excludeNodes, excludeOps: o.excludeOps });
      const hessians = await collectHessians(model, calibData!, targets, { ...(o.threads !== undefined ? { threads: o.threads } : {}), ...(o.onProgress ? { onProgress: (p) => o.onProgress!({ stage: 'calibrate', done: p.samples, total: calibData!.count }) } : {}) });
      // Weights read only inside If/Loop/Scan bodies have no Hessian (activations are tapped in the main graph): RTN, said in the notes.
      const rtn = (name: string, w: Float32Array, K: number, N: number): BlockQuantized => {
        gptqFallback.add(name);
        return quantizeBlockwiseRtn(w, K, N, { bits: o.bits, blockSize: o.blockSize, symmetric: o.symmetric });
      };
      hook = gptqHook(model, hessians, { bits: o.bits, blockSize: o.blockSize, symmetric: o.symmetric, damp: o.damp, actOrder: o.actOrder }, undefined, rtn);
    }
    const weightOnly = (excludeNodes: string[]): { model: Model; nodes: NodeDecision[] } => {
      // unpack-on-load also stores embedding tables (tied heads sharing them) and Conv weights as codes unpacked on load.
      const unpack = o.format === 'unpack-on-load';
      const unpackOpts = { bits: o.bits as 4 | 8, blockSize: o.blockSize, symmetric: o.symmetric, algorithm: o.algorithm === 'hqq' ? ('hqq' as const) : ('rtn' as const), excludeNodes, excludeOps: o.excludeOps };
      const tables = unpack ? unpackEmbeddingTables(model, unpackOpts) : undefined;
      const r = quantizeWeightOnly(tables?.model ?? model, {
        // Quantized as saved (one weight in memory at a time); with the gate every trial reads the model, so eagerly.
        defer: o.maxDrop === undefined,
        bits: o.bits,
        blockSize: o.blockSize,
        symmetric: o.symmetric,
        ...(hook ? { quantizeWeight: hook, quantizeWeightName: o.actOrder ? 'gptq, act-order' : 'gptq' } : { algorithm: o.algorithm as 'rtn' | 'hqq' }),
        // resolveQuantizeOptions refuses qoperator in this mode, and accuracyLevel with qdq / unpack-on-load
        ...(o.format === 'qdq' || o.format === 'unpack-on-load' ? { format: o.format } : { format: 'matmulnbits' as const, accuracyLevel: o.accuracyLevel }),
        excludeNodes,
        excludeOps: o.excludeOps,
      });
      const conv = unpack ? unpackConvWeights(r.model, unpackOpts) : undefined;
      if (o.algorithm === 'gptq') unpackedByRtn = (tables?.report.quantized.length ?? 0) + (conv?.report.quantized.length ?? 0);
      const passNodes = (rep: PassReport | undefined): NodeDecision[] => [
        ...(rep?.quantized ?? []).map((q) => ({ node: q.node, opType: q.opType, quantized: true, detail: q.form })),
        ...(rep?.skipped ?? []).map((s) => ({ node: s.node, opType: s.opType, quantized: false, detail: s.reason })),
      ];
      return {
        model: conv?.model ?? r.model,
        nodes: [
          ...r.report.quantized.map((q) => ({ node: q.node, opType: q.opType, quantized: true, detail: `${q.form} (K ${q.K}, N ${q.N})` })),
          ...r.report.skipped.map((s) => ({ node: s.node, opType: s.opType, quantized: false, detail: s.reason })),
          ...passNodes(tables?.report),
          ...passNodes(conv?.report),
        ],
      };
    };
    ({ model: quantized, nodes } = weightOnly(o.excludeNodes));
    rebuild = async (ex) => weightOnly(ex);
  } else if (o.mode === 'dynamic') {
    const dynamic = (excludeNodes: string[]): { model: Model; nodes: NodeDecision[] } => {
      const r = quantizeDynamic(model, {
        weightType: o.weightType as 'int8' | 'uint8', // resolveQuantizeOptions refuses int4 in dynamic mode
        perChannel: o.perChannel,
        excludeNodes,
        excludeOps: o.excludeOps,
        conv: o.dynamicConv,
      });
      return {
        model: r.model,
        nodes: [
          ...r.report.quantized.map((q) => ({ node: q.node, opType: q.opType, quantized: true, detail: q.form })),
          ...r.report.skipped.map((s) => ({ node: s.node, opType: s.opType, quantized: false, detail: s.reason })),
        ],
      };
    };
    ({ model: quantized, nodes } = dynamic(o.excludeNodes));
    rebuild = async (ex) => dynamic(ex);
  } else {
    const r = await quantizeStaticModel(model, calibData!, o);
    quantized = r.model;
    nodes = r.nodes;
    if (o.gateFallback === 'int16') {
      // Mixed precision: the layers the gate takes out of 8 bits keep 16-bit activations instead of going float.
      const wide = o.activationType === 'int8' ? 'int16' : 'uint16';
      rebuild = (ex) => r.requantizer.rewrite(o.excludeNodes, Object.fromEntries(ex.filter((n) => !o.excludeNodes.includes(n)).map((n) => [n, wide])));
    } else {
      rebuild = (ex) => r.requantizer.rewrite(ex);
      prepare = (sets) => r.requantizer.prepare(sets);
    }
  }

  // The accuracy gate: trials from the same calibration, measured on the held-out samples.
  let gate: GateResult | undefined;
  if (o.maxDrop !== undefined && data) {
    // Layers are chosen on half of the held-out samples and the result judged on the other half, so the reported
    // drop is not flattered by the choice (with fewer than GATE_SPLIT_MIN samples both use all of them).
    let pick: { data: BoundDataSource; labels?: NdArray } = { data, ...(labels ? { labels } : {}) };
    let check: { data: BoundDataSource; labels?: NdArray } | undefined;
    if (data.count >= GATE_SPLIT_MIN) {
      const half = Math.floor(data.count / 2);
      const parts = split(data, { count: half });
      pick = { data: parts.head, ...(labels ? { labels: sliceAxis0(labels, 0, parts.head.count) } : {}) };
      check = { data: parts.tail, ...(labels ? { labels: sliceAxis0(labels, parts.head.count, data.count) } : {}) };
    }
    gate = await runGate({
      maxDrop: o.maxDrop,
      float: o.input,
      data: pick.data,
      ...(pick.labels ? { labels: pick.labels } : {}),
      ...(check ? { check } : {}),
      batch: verifyBatch(data),
      base: { model: quantized, nodes },
      fixed: o.excludeNodes,
      fallback: o.gateFallback,
      rebuild,
      ...(prepare ? { prepare } : {}),
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    });
    quantized = gate.model;
    nodes = gate.nodes;
  }

  const saved = await saveModel(quantized.toProto(), o.output, { inputPath: o.input, ...(o.shardSize !== undefined ? { shardSize: o.shardSize } : {}) });
  const before = fileBytes(o.input) + loaded.externalSources.reduce((s, e) => s + e.length, 0);
  const after = saved.bytes + (saved.dataBytes ?? 0);
  // fp16 with float16 IO: verified through the same conversion with float32 IO (the same float16 compute; the edge
  // Casts round the float32 samples exactly as a caller converting them to float16 would), so float32 samples feed it.
  const verifyModel = o.mode === 'fp16' && !o.keepIoTypes ? encodeModel(convertFloat16(model, { ...float16Options(o), keepIoTypes: true }).model.toProto()) : o.output;
  const v = await verify(o, o.input, verifyModel, data, labels, dataNote, model);
  const warnings = [...(gate?.warnings ?? []), ...(f16?.warnings ?? []), ...collapseWarnings(v.fidelity), ...nothingQuantizedWarnings(o.mode, nodes, model)];
  const result: QuantizeResult = {
    mode: o.mode,
    output: o.output,
    sizeBytes: { before, after },
    fidelity: v.fidelity,
    verification: v.dataNote,
    nodes,
    warnings,
  };
  if (f16) result.notes = float16Notes(f16);
  const woNotes = weightOnlyNotes();
  if (woNotes.length) result.notes = [...(result.notes ?? []), ...woNotes];
  if (v.latencyError !== undefined) result.warnings.push(`the models could not be timed in onnxruntime-web (wasm): ${v.latencyError}`);
  if (v.latency) {
    result.latency = {
      backend: o.backend,
      batch: v.latency.float.batch,
      threads: v.latency.float.threads,
      float: { latencyMs: v.latency.float.latencyMs },
      quant: { latencyMs: v.latency.quant.latencyMs },
      speedup: v.latency.speedup,
    };
    // Only when something was quantized (an unchanged float model would just be timing noise) and meant to
    // be fast: 16-bit activations and int4 weights have no integer kernels in ORT, and their notes say so.
    const integerKernels = (o.mode === 'dynamic' || o.mode === 'static') && (o.activationType === 'uint8' || o.activationType === 'int8') && o.weightType !== 'int4';
    if (integerKernels && nodes.some((n) => n.quantized)) result.warnings.push(...speedWarnings(result.latency, o.optimizeFor));
    // MatMulNBits is meant to be faster too (fewer bytes to read); with accuracy_level 0 at 8 or 2 bits ORT's CPU kernel is not,
    // and in wasm neither form is.
    if (o.mode === 'weight-only' && (o.format === 'matmulnbits' || (o.format === 'qdq' && o.backend === 'wasm')) && nodes.some((n) => n.quantized)) result.warnings.push(...weightOnlySpeedWarnings(result.latency, o.accuracyLevel));
  }
  if (gate) {
    result.gate = {
      maxDrop: gate.maxDrop,
      achieved: gate.achieved,
      drop: gate.drop,
      baseDrop: gate.baseDrop,
      metric: gate.metric,
      excluded: gate.excluded,
      trials: gate.trials,
      ...(o.gateFallback !== 'float' ? { fallback: o.gateFallback } : {}),
      ...(gate.selection ? { selection: gate.selection, checkSamples: gate.checkSamples! } : {}),
    };
  }
  if (gate || o.saveConfig !== undefined) {
    const configPath = o.saveConfig ?? defaultConfigPath(o.output);
    const wide = o.activationType === 'int8' ? 'int16' : 'uint16';
    const config =
      o.gateFallback === 'int16'
        ? configOf(o, o.excludeNodes, Object.fromEntries((gate?.excluded ?? []).map((n) => [n, wide])))
        : configOf(o, [...o.excludeNodes, ...(gate?.excluded ?? [])]);
    writeQuantizeConfig(configPath, config, [o.input, o.output]);
    result.configPath = configPath;
  }
  return result;
}
