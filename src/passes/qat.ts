// Quantization-aware training, the graph side: fake quantization inserted exactly where static PTQ puts its
// QuantizeLinear/DequantizeLinear pairs (the same planner and engine, passes/quantize-qdq.ts), every scale a
// float initializer a trainer can learn (LSQ), and the export of a trained fake-quantized model to the QDQ
// format PTQ writes. Pure; the trainer (src/train) and the pipeline run the models.
//
//   planFakeQuant -> calibrate (pipeline) -> insertFakeQuant -> train (weights, biases, scales) -> exportQat

import { LowbitError } from '../errors.js';
import { attrInt, makeAttribute } from '../onnx/attributes.js';
import { makeNode, type Graph, type Model } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { dataTypeName, dimsOf, makeTensor, packInt4, tensorStorage, unpackInt4 } from '../onnx/tensor.js';
import { quantType, type QuantTypeInfo } from '../quant/dtypes.js';
import { quantizeLinear } from '../quant/quantize.js';
import { cloneModel } from './preprocess.js';
import { planQdq, rewriteQdq, type StaticQuantOptions, type StaticQuantReport, type TensorRanges } from './quantize-qdq.js';
import { quantizeBias, readFloatConstant, removeIfUnused, type WeightClip } from './quant-weight.js';
import { QDQ_RULES } from './rules/qdq/index.js';

/** Options of {@link planFakeQuant} and {@link insertFakeQuant}. */
export interface FakeQuantOptions {
  /**
   * Weight bits (default 8): int8 symmetric, scales initialised by min-max; or int4 symmetric (opset 21
   * INT4 QuantizeLinear/DequantizeLinear; the model is raised to 21 or refused), scales initialised by
   * an MSE search over clipping ratios.
   */
  weightBits?: 8 | 4;
  /** Activation type (default 'uint8', asymmetric; 'int8' is asymmetric too). */
  activationType?: 'uint8' | 'int8';
  /** One weight scale per output channel (default true), else per tensor. */
  perChannel?: boolean;
  /** Node names left float (as in static PTQ). */
  excludeNodes?: string[];
  /** Op types left float (as in static PTQ). */
  excludeOps?: string[];
  /** Fake-quantize activations too (default true); false gives weight-only fake quantization. */
  quantizeActivations?: boolean;
  /** Initial weight scales: default 'minmax' at 8 bits, 'mse' at 4 bits. */
  weightClip?: WeightClip;
  /**
   * Keep float the nodes static PTQ keeps float for speed (StaticQuantOptions.speedPolicy; default false, as
   * quantizeStatic; the quantize() pipeline turns it on, so pass true to train the placement `lowbit quantize`
   * writes). Not applied to 4-bit weights or weight-only fake quantization.
   */
  speedPolicy?: boolean;
}

/** What {@link insertFakeQuant} returns: the model and the names a trainer needs. */
export interface FakeQuantResult {
  /** The fake-quantized model (float in, float out; runs in ORT as is). */
  model: Model;
  /** Everything trainable: weightParams, biasParams, floatParams, then scaleParams. */
  params: string[];
  /** Float weights read by a QuantizeLinear -> DequantizeLinear pair. */
  weightParams: string[];
  /** Float biases of quantized nodes (quantized to int32 at export, scale = input scale × weight scale). */
  biasParams: string[];
  /** Weights and biases of Conv/MatMul/Gemm nodes left float (excluded, kept float for speed): plain float params. */
  floatParams: string[];
  /** weightScaleParams then activationScaleParams: train them with a smaller learning rate. */
  scaleParams: string[];
  weightScaleParams: string[];
  /** Scales of calibrated activation pairs; fixed ranges (Softmax output) are not listed and stay fixed. */
  activationScaleParams: string[];
  /** The planner's decisions (which nodes, why not, notes) as static PTQ reports them. */
  report: StaticQuantReport;
}

const isDefault = (n: NodeProto): boolean => !n.domain || n.domain === 'ai.onnx';

const BITS = [8, 4] as const;
const ACT_TYPES = ['uint8', 'int8'] as const;

function staticOptions(opts: FakeQuantOptions): StaticQuantOptions {
  const bits = opts.weightBits ?? 8;
  if (!BITS.includes(bits)) throw new LowbitError('BAD_OPTION', `weightBits must be 8 or 4 (got ${JSON.stringify(bits)})`, 'use 8 (int8 weights) or 4 (int4 weights)');
  const activationType = opts.activationType ?? 'uint8';
  if (!ACT_TYPES.includes(activationType)) {
    throw new LowbitError('BAD_OPTION', `activationType must be uint8 or int8 (got ${JSON.stringify(activationType)})`, 'use uint8 (fast on x86) or int8');
  }
  if (opts.perChannel !== undefined && typeof opts.perChannel !== 'boolean') throw new LowbitError('BAD_OPTION', 'perChannel must be true or false');
  return {
    activationType,
    weightType: bits === 4 ? 'int4' : 'int8',
    perChannel: opts.perChannel ?? true,
    ...(opts.excludeNodes ? { excludeNodes: opts.excludeNodes } : {}),
    ...(opts.excludeOps ? { excludeOps: opts.excludeOps } : {}),
    ...(opts.weightClip ? { weightClip: opts.weightClip } : {}),
    speedPolicy: opts.speedPolicy === true && opts.quantizeActivations !== false,
  };
}

/**
 * The preprocessed model to calibrate and the tensors that need a range, as {@link planQdq} gives them
 * (BatchNormalization after Conv folded, opset raised: to 21 for 4-bit weights). `tensors` is empty for
 * weight-only fake quantization.
 * @throws LowbitError BAD_OPTION for bad options; UNSUPPORTED_OPSET as planQdq (and for 4-bit weights
 *   when the model cannot be raised to opset 21).
 */
export function planFakeQuant(model: Model, opts: FakeQuantOptions = {}): { model: Model; tensors: string[] } {
  const plan = planQdq(model, staticOptions(opts));
  return opts.quantizeActivations === false ? { model: plan.model, tensors: [] } : plan;
}

/**
 * Inserts fake quantization at exactly the points static PTQ quantizes (same planner, same engine, same
 * initial scales and zero points): each weight of a quantized Conv/MatMul/Gemm stays a float32 initializer
 * read through QuantizeLinear -> DequantizeLinear (per-channel symmetric int8 or int4), each planned
 * activation gets a per-tensor pair with the calibrated range (`ranges`, from calibrating
 * `planFakeQuant(model).model`), biases stay float. Scales are float initializers (LSQ trains them through
 * src/grad's QuantizeLinear/DequantizeLinear rules); zero points are integer initializers and stay fixed.
 * The input model is not modified; inference-mode BatchNormalization after Conv is folded first (as PTQ
 * does), so the trainer learns the folded weights. Train `result.params`, then {@link exportQat}.
 * @throws LowbitError as {@link planFakeQuant}; BAD_OPTION when a planned tensor has no range;
 *   NON_FINITE for a non-finite range or weight.
 */
export function insertFakeQuant(model: Model, ranges: TensorRanges, opts: FakeQuantOptions = {}): FakeQuantResult {
  const activations = opts.quantizeActivations !== false;
  const r = rewriteQdq(model, ranges, staticOptions(opts), { fakeWeights: true, activations });
  const t = r.trainable;
  // Weights and biases of the nodes left float train as plain floats.
  const g = r.model.graph;
  const taken = new Set([...t.weights, ...t.biases]);
  const floatParams: string[] = [];
  for (const n of g.nodes) {
    const rule = isDefault(n) && Object.hasOwn(QDQ_RULES, n.opType ?? '') ? QDQ_RULES[n.opType!] : undefined;
    for (const slot of [rule?.weight?.slot, rule?.bias?.slot]) {
      const name = slot === undefined ? undefined : n.input[slot];
      if (!name || taken.has(name) || g.initializers.get(name)?.dataType !== DataType.FLOAT || g.isGraphInput(name)) continue;
      taken.add(name);
      floatParams.push(name);
    }
  }
  return {
    model: r.model,
    params: [...t.weights, ...t.biases, ...floatParams, ...t.weightScales, ...t.activationScales],
    weightParams: t.weights,
    biasParams: t.biases,
    floatParams,
    scaleParams: [...t.weightScales, ...t.activationScales],
    weightScaleParams: t.weightScales,
    activationScaleParams: t.activationScales,
    report: r.report,
  };
}

/** Options of {@link exportQat}. */
export interface QatExportOptions {
  /** Quantize biases of quantized nodes to int32 (default true; PTQ's format, what ORT fuses). */
  quantizeBiases?: boolean;
}

/** What {@link exportQat} did. */
export interface QatExportReport {
  opset: number;
  /** Integer type of the exported weights, with counts (e.g. { int8: 7 } or { int4: 7 }). */
  weightTypes: Record<string, number>;
  /** Weights quantized with their learned scales, biases made int32, rescale scales (Mul) folded. */
  counts: { weights: number; biases: number; scales: number };
  notes: string[];
}

/** The scale initializer of a Q/DQ node, checked positive and finite. */
function scaleOf(graph: Graph, n: NodeProto): Float32Array | undefined {
  const name = n.input[1] ?? '';
  const t = graph.initializer(name);
  if (!t) return undefined;
  if (t.dataType !== DataType.FLOAT) {
    throw new LowbitError('UNSUPPORTED_MODEL', `scale '${name}' of '${n.name ?? n.opType}' is ${dataTypeName(t.dataType)}, not float32`, 'fake-quantized models from insertFakeQuant have float32 scales');
  }
  const s = tensorStorage(t) as Float32Array;
  const k = s.findIndex((v) => !(Number.isFinite(v) && v > 0));
  if (k >= 0) {
    throw new LowbitError(
      'NON_FINITE',
      `scale '${name}' of '${n.name ?? n.opType}' is ${s[k]} (element ${k}) after training; scales must be positive and finite`,
      'train scales with a smaller learning rate (or clamp them to a small positive minimum) and export again',
    );
  }
  return s;
}

/** Integer values of a zero-point initializer (int4 unpacked), with its type. */
function zeroPointOf(graph: Graph, name: string): { values: ArrayLike<number>; info: QuantTypeInfo } | undefined {
  const t = graph.initializer(name);
  if (!t) return undefined;
  let info: QuantTypeInfo;
  try {
    info = quantType(t.dataType ?? 0);
  } catch {
    throw new LowbitError('UNSUPPORTED_MODEL', `zero point '${name}' is ${dataTypeName(t.dataType)}, not an integer type`, 'fake-quantized weights use int8 or int4 zero points');
  }
  const raw = tensorStorage(t);
  const count = dimsOf(t).reduce((a, b) => a * b, 1);
  return { values: info.bits === 4 ? unpackInt4(raw as Uint8Array, count, info.signed) : (raw as ArrayLike<number>), info };
}

/**
 * Turns a trained fake-quantized model (from {@link insertFakeQuant}, its initializers holding the trained
 * values) into the QDQ model static PTQ writes, with the learned parameters as they are (nothing is
 * re-derived): each QuantizeLinear of a constant float weight becomes the quantized initializer
 * (int8, or packed int4) computed with its learned scale and zero point, read by the same DequantizeLinear;
 * activation pairs stay with their learned scales; a bias of a node whose activation and weight are both
 * dequantized becomes int32 with scale = input scale × weight scale (per channel); a scale computed by Mul
 * from constants (a rescaled tensor's) is folded. int8 models then fuse into ORT's integer kernels as PTQ
 * models do; int4 weights run as DequantizeLinear + float Conv/MatMul/Gemm. The input is not modified.
 * @throws LowbitError NON_FINITE when a learned scale is not positive and finite (naming it) or a weight
 *   is not finite; UNSUPPORTED_MODEL for a non-float32 scale or a weight QuantizeLinear without a zero point.
 */
export function exportQat(model: Model, opts: QatExportOptions = {}): { model: Model; report: QatExportReport } {
  const out = cloneModel(model);
  const graph = out.graph;
  const counts = { weights: 0, biases: 0, scales: 0 };
  const weightTypes: Record<string, number> = {};
  const notes: string[] = [];
  const drop = new Set<string>();

  // Scales computed from constants (rescaled tensors: Mul(source scale, factor)) become initializers.
  const feedsOnlyScales = (v: string): boolean =>
    graph.consumers(v).length > 0 && !graph.isGraphOutput(v) &&
    graph.consumers(v).every((c) => (c.opType === 'QuantizeLinear' || c.opType === 'DequantizeLinear') && isDefault(c) && c.input.indexOf(v) === 1);
  for (const n of [...graph.nodes]) {
    if (n.opType !== 'Mul' || !isDefault(n) || !n.output[0] || !feedsOnlyScales(n.output[0])) continue;
    const [a, b] = [graph.initializer(n.input[0] ?? ''), graph.initializer(n.input[1] ?? '')];
    if (!a || !b || a.dataType !== DataType.FLOAT || b.dataType !== DataType.FLOAT) continue;
    const [x, y] = [tensorStorage(a) as Float32Array, tensorStorage(b) as Float32Array];
    if (x.length !== 1 || y.length !== 1) continue;
    graph.removeNodes([n]);
    graph.setInitializer(makeTensor(n.output[0], DataType.FLOAT, [], Float32Array.of(Math.fround(x[0]! * y[0]!))));
    for (const c of [n.input[0]!, n.input[1]!]) drop.add(c);
    counts.scales++;
  }

  // Every learned scale must still be usable (a scale trained through 0 cannot be exported).
  for (const n of graph.nodes) if ((n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') && isDefault(n)) scaleOf(graph, n);

  // Weights: QuantizeLinear of a constant float tensor -> its quantized initializer (same name as the Q output).
  for (const n of [...graph.nodes]) {
    if (n.opType !== 'QuantizeLinear' || !isDefault(n)) continue;
    const w = n.input[0] ?? '';
    const src = graph.initializer(w);
    if (!src || graph.isGraphInput(w)) continue;
    const scale = scaleOf(graph, n);
    if (!scale) {
      notes.push(`weight '${w}': its scale '${n.input[1]}' is not a constant, left as QuantizeLinear`);
      continue;
    }
    const zp = zeroPointOf(graph, n.input[2] ?? '');
    if (!zp) throw new LowbitError('UNSUPPORTED_MODEL', `QuantizeLinear '${n.name ?? ''}' of weight '${w}' has no constant zero point`, 'fake-quantized weights from insertFakeQuant have one; give the QuantizeLinear a zero point of the integer type');
    const data = readFloatConstant(graph, w);
    const bad = data.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new LowbitError('NON_FINITE', `weight '${w}' holds ${data.data[bad]} at element ${bad} after training`, 'lower the learning rate (or clip gradients) and train again');
    const dims = data.dims;
    const blockSize = attrInt(n, 'block_size', 0);
    const q = quantizeLinear(data.data, scale, zp.values, zp.info, scale.length > 1 || blockSize > 0 ? { axis: attrInt(n, 'axis', 1), dims, blockSize } : {});
    graph.removeNodes([n]);
    graph.setInitializer(makeTensor(n.output[0]!, zp.info.dataType, dims, zp.info.bits === 4 ? packInt4(q) : q));
    drop.add(w);
    counts.weights++;
    weightTypes[zp.info.name] = (weightTypes[zp.info.name] ?? 0) + 1;
  }

  // Biases of quantized nodes: int32, scale = input scale × weight scale (what PTQ writes and ORT fuses).
  if (opts.quantizeBiases !== false) {
    const ctx = { graph, opset: out.opset('') ?? 1 };
    const dqScale = (v: string | undefined): Float32Array | undefined => {
      const p = v ? graph.producer(v) : undefined;
      return p && p.opType === 'DequantizeLinear' && isDefault(p) ? scaleOf(graph, p) : undefined;
    };
    for (const n of [...graph.nodes]) {
      const rule = isDefault(n) && Object.hasOwn(QDQ_RULES, n.opType ?? '') ? QDQ_RULES[n.opType!] : undefined;
      if (!rule?.bias || !rule.weight) continue;
      const bias = n.input[rule.bias.slot];
      const bt = bias ? graph.initializer(bias) : undefined;
      if (!bias || !bt || bt.dataType !== DataType.FLOAT || graph.isGraphInput(bias)) continue;
      const xs = dqScale(n.input[rule.bias.input]);
      const ws = dqScale(n.input[rule.weight.slot]);
      if (!xs || !ws) continue; // not a quantized node (excluded, or weight-only)
      const len = dimsOf(bt).reduce((a, b) => a * b, 1);
      const why = rule.check?.(n, ctx) ?? (xs.length !== 1 ? 'its input scale is not per tensor' : ws.length > 1 && ws.length !== len ? 'its length does not match the weight channels' : undefined);
      if (why) {
        notes.push(`bias '${bias}' of '${n.name ?? ''}' stays float: ${why}`);
        continue;
      }
      const qb = quantizeBias(graph, bias, xs[0]!, ws);
      const perAxis = ws.length > 1;
      const zpName = graph.freshName(`${bias}_zero_point`);
      graph.setInitializer(makeTensor(zpName, DataType.INT32, perAxis ? [len] : [], new Int32Array(perAxis ? len : 1)));
      const dqOut = graph.freshName(`${bias}_dequantized`);
      graph.addNodes([
        makeNode('DequantizeLinear', [qb.quantized, qb.scale, zpName], [dqOut], {
          name: graph.freshName(`${bias}_DequantizeLinear`),
          attribute: perAxis ? [makeAttribute('axis', 0)] : [],
        }),
      ]);
      n.input[rule.bias.slot] = dqOut;
      graph.touch();
      drop.add(bias);
      counts.biases++;
    }
  }

  graph.touch();
  for (const name of drop) removeIfUnused(graph, name);
  graph.sortInPlace();
  if (weightTypes.int4) {
    if ((out.rest.irVersion ?? 0n) < 10n) out.rest.irVersion = 10n;
    notes.push('int4 weights: ORT runs those nodes as DequantizeLinear + float Conv/MatMul/Gemm (no 4-bit integer kernel in QDQ form); weights are stored 8x smaller than float32');
  }
  return { model: out, report: { opset: out.opset('') ?? 1, weightTypes, counts, notes } };
}
