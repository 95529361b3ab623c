// Maps a QDQ model back to its float original, for `lowbit compare`: which float tensor each activation
// DequantizeLinear output stands for, which float constant each weight DequantizeLinear dequantizes, the
// scale / zero point / axis the quantized model uses for it, and the error statistics of both (streaming
// for activations, one shot for weights). Pure.
//
// Activations: a DequantizeLinear whose input is a QuantizeLinear output. Its float counterpart is the DQ
// output's name when the float model has that value (lowbit keeps a produced tensor's name on the DQ
// output), else the Q input's name (lowbit's graph inputs, and ORT's Python quantizer, where the DQ output
// is a new `<t>_DequantizeLinear_Output` that the consumers read). The integer tensor (the Q output) is
// what compare() taps: a Q output stays a node-unit output when ORT fuses the QDQ groups, so tapping it
// does not change the kernels the quantized model runs (tapping a DQ output would).
//
// Weights: a DequantizeLinear whose input is an integer constant (not INT32: those are biases), or the
// QuantizeLinear output of a float constant (QAT's fake-quantized weights, quantized here in TS). Its float
// source is searched by name (the quantized initializer is `<name>_quantized`, in lowbit and in ORT) and
// by position (the node of the same name and op type in the float model, same input slot), in the float
// model as given and after preprocessForQuantization (BatchNormalization folded into Conv, Gemm alpha
// folded), since that is the model lowbit quantized. Among candidates of the right shape the closest one
// is taken.

import { LowbitError } from '../errors.js';
import { attrInt } from '../onnx/attributes.js';
import type { Graph, Model } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dataTypeName, dimsOf, elementCount, tensorStorage, unpackInt4 } from '../onnx/tensor.js';
import { quantType, type QuantArray, type QuantTypeInfo } from '../quant/dtypes.js';
import { ErrorStats } from '../quant/metrics.js';
import { dequantizeLinear, quantizeLinear } from '../quant/quantize.js';
import { preprocessForQuantization } from './preprocess.js';
import { readFloatConstant } from './quant-weight.js';

/** The quantization parameters of one DequantizeLinear node, read from its constant inputs. */
export interface DqParams {
  /** The integer type (from the zero point, else the quantized data, else uint8 as ONNX defaults). */
  qtype: QuantTypeInfo;
  /** One scale per tensor, per index along `axis`, or per block. */
  scale: Float32Array;
  /** Same length as `scale` (zeros when the node has no zero point). */
  zeroPoint: Int32Array;
  /** The node's `axis` attribute (default 1, may be negative); used when per axis or blocked. */
  axis: number;
  /** The node's `block_size` attribute (opset 21); 0 when not blocked. */
  blockSize: number;
}

/** An activation of the quantized model and the float tensor of the same meaning. */
export interface ActivationLink {
  /** The float model's tensor (a node output, graph input or initializer there). */
  tensor: string;
  /** The integer tensor the quantized model computes: the DequantizeLinear's input, a QuantizeLinear output. */
  quantized: string;
  /** The DequantizeLinear output in the quantized model. */
  dequantized: string;
  /** Name of the DequantizeLinear node. */
  dqNode: string;
  /** The node producing `tensor` in the float model ('' for graph inputs and constants). */
  node: string;
  /** Its op type ('input' for a graph input, 'constant' for an initializer). */
  opType: string;
  params: DqParams;
}

/** A float constant a weight may have been quantized from. */
export interface WeightCandidate {
  /** Its name in the float model (or in the preprocessed float model, e.g. `conv1_W_bn_folded`). */
  name: string;
  data: Float32Array;
}

/** A quantized weight (or other quantized constant) of the quantized model. */
export interface WeightLink {
  /** The integer initializer (or the float constant a QuantizeLinear quantizes at run time, in QAT models). */
  quantized: string;
  /** The DequantizeLinear output. */
  dequantized: string;
  /** The first node reading the dequantized weight, its op type and input slot. */
  node: string;
  opType: string;
  slot: number;
  dims: number[];
  /** The integer values, one per element (4-bit types unpacked). */
  values: QuantArray;
  params: DqParams;
  /** Float sources of the right shape, most likely first (empty when none was found). */
  candidates: WeightCandidate[];
  /** The axis of output channels, for the worst-channel figure: the scale axis when per axis, else the op's (undefined when unknown). */
  channelAxis: number | undefined;
}

/** What {@link mapQdq} found. */
export interface QdqMap {
  activations: ActivationLink[];
  weights: WeightLink[];
  /** DequantizeLinear nodes in the quantized model's main graph. */
  dqCount: number;
  /** DequantizeLinear nodes of int32 biases (not compared: their error is far below the weights'). */
  biasCount: number;
  /**
   * Activation DequantizeLinear outputs whose tensor the float model does not have (neither the DQ output
   * nor the QuantizeLinear input): tensors the quantizer added, such as a Reshape around a Softmax.
   */
  missing: string[];
  /** What else could not be mapped, and why (one line each). */
  unmapped: string[];
}

const isDefault = (n: NodeProto): boolean => !n.domain || n.domain === 'ai.onnx';
const isQdqOp = (n: NodeProto, op: string): boolean => n.opType === op && (isDefault(n) || n.domain === 'com.microsoft');

/** Values of a main graph one can tap or read: graph inputs, initializers, node outputs. */
function valueNames(graph: Graph): Set<string> {
  const names = new Set<string>();
  for (const v of graph.inputs) if (v.name) names.add(v.name);
  for (const name of graph.initializers.keys()) names.add(name);
  for (const n of graph.nodes) for (const o of n.output) if (o) names.add(o);
  return names;
}

/** The integer values of a constant (4-bit types unpacked), as the type's typed array. */
function integerValues(t: TensorProto, info: QuantTypeInfo): QuantArray {
  const s = tensorStorage(t);
  if (info.bits === 4) {
    const v = unpackInt4(s as Uint8Array, elementCount(dimsOf(t)), info.signed);
    return info.signed ? v : Uint8Array.from(v);
  }
  return s as QuantArray;
}

/**
 * Reads the scale, zero point and granularity of a DequantizeLinear node from its constant inputs.
 * `dataType` is the element type of the quantized input when known (used when there is no zero point).
 * @returns the parameters, or a reason they cannot be read (scale computed at run time, float8 types, ...).
 */
export function readDqParams(graph: Graph, dq: NodeProto, dataType?: number): DqParams | string {
  const scaleName = dq.input[1] ?? '';
  const scaleT = scaleName ? graph.constant(scaleName) : undefined;
  if (!scaleT) return `its scale '${scaleName}' is not a constant`;
  let scale: Float32Array;
  try {
    scale = readFloatConstant(graph, scaleName).data;
  } catch (e) {
    if (e instanceof LowbitError) return `its scale: ${e.message}`;
    throw e;
  }
  const zpName = dq.input[2] ?? '';
  const zpT = zpName ? graph.constant(zpName) : undefined;
  if (zpName && !zpT) return `its zero point '${zpName}' is not a constant`;
  const typeCode = zpT?.dataType ?? dataType ?? DataType.UINT8;
  let qtype: QuantTypeInfo;
  try {
    qtype = quantType(typeCode);
  } catch {
    return `its type ${dataTypeName(typeCode)} is not an integer type lowbit handles`;
  }
  const zeroPoint = zpT ? Int32Array.from(integerValues(zpT, qtype)) : new Int32Array(scale.length);
  if (zeroPoint.length !== scale.length) return `its zero point has ${zeroPoint.length} values for ${scale.length} scales`;
  return { qtype, scale: Float32Array.from(scale), zeroPoint, axis: attrInt(dq, 'axis', 1), blockSize: attrInt(dq, 'block_size', 0) };
}

/** Kernel options for a tensor of `dims` quantized with `p` (none for per-tensor parameters). */
export function layoutOptions(p: DqParams, dims: readonly number[]): { axis?: number; dims?: readonly number[]; blockSize?: number } {
  if (p.scale.length === 1 && p.blockSize === 0) return {};
  return p.blockSize > 0 ? { axis: p.axis, dims, blockSize: p.blockSize } : { axis: p.axis, dims };
}

/** The float interval the integer range stands for: [min (qmin - z)·s, max (qmax - z)·s] over the parameters. */
export function quantizedInterval(p: DqParams): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < p.scale.length; k++) {
    const a = Math.fround((p.qtype.qmin - p.zeroPoint[k]!) * p.scale[k]!);
    const b = Math.fround((p.qtype.qmax - p.zeroPoint[k]!) * p.scale[k]!);
    lo = Math.min(lo, a, b);
    hi = Math.max(hi, a, b);
  }
  return [lo, hi];
}

/**
 * Output-channel axis of a weight read by `node` at `slot`, for weights with per-tensor (or blocked)
 * parameters; undefined for other ops (constant operands of Add, Mul, ...) and vectors.
 */
function opChannelAxis(node: NodeProto, slot: number, rank: number): number | undefined {
  if (rank < 2) return undefined;
  switch (node.opType) {
    case 'Conv':
      return 0;
    case 'ConvTranspose':
      return 1;
    case 'MatMul':
      return slot === 1 ? rank - 1 : rank - 2;
    case 'Gemm':
      return slot === 1 ? (attrInt(node, 'transB', 0) ? 0 : 1) : attrInt(node, 'transA', 0) ? 1 : 0;
    default:
      return undefined;
  }
}

/** Adds a candidate constant unless it is there already (same name in the same graph, or the same tensor). */
function pushCandidate(out: { name: string; graph: Graph }[], graph: Graph, name: string | undefined): void {
  const t = name ? graph.constant(name) : undefined;
  if (!name || !t) return;
  // The preprocessed model shares the tensors it did not change with the float model.
  if (out.some((c) => (c.graph === graph && c.name === name) || c.graph.constant(c.name) === t)) return;
  out.push({ name, graph });
}

/**
 * Maps the QuantizeLinear/DequantizeLinear structure of `quant` to the tensors and constants of `float`
 * (see the module comment for the rules). Only the main graph is mapped.
 * @throws LowbitError BAD_DATA / EXTERNAL_DATA when a constant cannot be read.
 */
export function mapQdq(quant: Model, float: Model): QdqMap {
  const qg = quant.graph;
  const fg = float.graph;
  const floatValues = valueNames(fg);
  let pre: Graph | undefined;
  let preTried = false;
  const preprocessed = (): Graph | undefined => {
    if (!preTried) {
      preTried = true;
      try {
        pre = preprocessForQuantization(float).model.graph;
      } catch (e) {
        if (!(e instanceof LowbitError)) throw e;
      }
    }
    return pre;
  };
  const floatNodes = new Map<string, NodeProto>();
  for (const n of fg.nodes) if (n.name && !floatNodes.has(n.name)) floatNodes.set(n.name, n);

  const result: QdqMap = { activations: [], weights: [], dqCount: 0, biasCount: 0, missing: [], unmapped: [] };
  const seenTensors = new Set<string>();
  const seenWeights = new Set<string>();
  for (const dq of qg.nodes) {
    if (!isQdqOp(dq, 'DequantizeLinear')) continue;
    result.dqCount++;
    const x = dq.input[0] ?? '';
    const y = dq.output[0] ?? '';
    const label = `DequantizeLinear '${dq.name || y}'`;
    const constant = x ? qg.constant(x) : undefined;
    if (constant) {
      if (constant.dataType === DataType.INT32) {
        result.biasCount++;
        continue;
      }
      if (seenWeights.has(`${x}\u0000${y}`)) continue;
      seenWeights.add(`${x}\u0000${y}`);
      const link = mapWeight(qg, dq, { name: x }, { fg, floatNodes, preprocessed });
      if (typeof link === 'string') result.unmapped.push(`${label}: ${link}`);
      else result.weights.push(link);
      continue;
    }
    const q = qg.producer(x);
    if (!q || !isQdqOp(q, 'QuantizeLinear')) {
      result.unmapped.push(`${label}: its input '${x}' is not a QuantizeLinear output`);
      continue;
    }
    const qIn = q.input[0] ?? '';
    if (qIn && qg.constant(qIn)) {
      // A weight quantized at run time (QAT's fake-quantized form): the same as a quantized initializer.
      if (seenWeights.has(`${qIn}\u0000${y}`)) continue;
      seenWeights.add(`${qIn}\u0000${y}`);
      const link = mapWeight(qg, dq, { q, name: qIn }, { fg, floatNodes, preprocessed });
      if (typeof link === 'string') result.unmapped.push(`${label}: ${link}`);
      else result.weights.push(link);
      continue;
    }
    const tensor = [y, q.input[0] ?? ''].find((c) => c && floatValues.has(c));
    if (!tensor) {
      result.missing.push(y);
      continue;
    }
    if (seenTensors.has(tensor)) continue;
    const outputDtype = attrInt(q, 'output_dtype', 0);
    const params = readDqParams(qg, dq, outputDtype || undefined);
    if (typeof params === 'string') {
      result.unmapped.push(`${label} ('${tensor}'): ${params}`);
      continue;
    }
    if (params.qtype.bits < 8) {
      result.unmapped.push(`${label} ('${tensor}'): ${params.qtype.name} activations cannot be read back from ONNX Runtime`);
      continue;
    }
    seenTensors.add(tensor);
    const producer = fg.producer(tensor);
    result.activations.push({
      tensor,
      quantized: x,
      dequantized: y,
      dqNode: dq.name ?? '',
      node: producer?.name ?? '',
      opType: producer ? (producer.opType ?? '') : fg.initializers.has(tensor) ? 'constant' : 'input',
      params,
    });
  }
  return result;
}

interface FloatSide {
  fg: Graph;
  floatNodes: Map<string, NodeProto>;
  preprocessed: () => Graph | undefined;
}

/**
 * Maps one weight: `source.name` is the integer initializer the DequantizeLinear reads, or, with
 * `source.q`, the float constant a QuantizeLinear quantizes at run time (quantized here the same way).
 */
function mapWeight(qg: Graph, dq: NodeProto, source: { name: string; q?: NodeProto }, f: FloatSide): WeightLink | string {
  const x = source.name;
  const y = dq.output[0] ?? '';
  const constant = qg.constant(x)!;
  const outputDtype = source.q ? attrInt(source.q, 'output_dtype', 0) : 0;
  const params = readDqParams(qg, dq, source.q ? outputDtype || undefined : constant.dataType);
  if (typeof params === 'string') return params;
  const dims = dimsOf(constant);
  let values: QuantArray;
  if (source.q) {
    let data: Float32Array;
    try {
      data = readFloatConstant(qg, x).data;
    } catch (e) {
      if (e instanceof LowbitError) return `its QuantizeLinear input: ${e.message}`;
      throw e;
    }
    values = quantizeLinear(data, params.scale, params.zeroPoint, params.qtype, layoutOptions(params, dims));
  } else values = integerValues(constant, params.qtype);
  const readers: { node: NodeProto; slot: number }[] = [];
  for (const n of qg.consumers(y)) n.input.forEach((v, slot) => v === y && readers.push({ node: n, slot }));
  // Candidates: by name (the float model as given, then preprocessed), then by node and slot (same order).
  // A run-time quantized float constant keeps its own name; an integer initializer is `<name>_quantized`.
  const base = source.q ? x : x.replace(/_quantized(?:_\d+)?$/, '');
  const byName = base !== x || source.q !== undefined;
  const found: { name: string; graph: Graph }[] = [];
  const graphs = [f.fg];
  if (byName) pushCandidate(found, f.fg, base);
  const pre = f.preprocessed();
  if (pre) {
    graphs.push(pre);
    if (byName) pushCandidate(found, pre, base);
  }
  for (const g of graphs) {
    for (const r of readers) {
      const fn = r.node.name ? (g === f.fg ? f.floatNodes.get(r.node.name) : g.nodes.find((n) => n.name === r.node.name)) : undefined;
      if (fn && fn.opType === r.node.opType) pushCandidate(found, g, fn.input[r.slot]);
    }
  }
  const candidates: WeightCandidate[] = [];
  for (const c of found) {
    const t = c.graph.constant(c.name)!;
    const cd = dimsOf(t);
    if (cd.length !== dims.length || cd.some((d, i) => d !== dims[i])) continue;
    try {
      candidates.push({ name: c.name, data: readFloatConstant(c.graph, c.name).data });
    } catch (e) {
      if (!(e instanceof LowbitError)) throw e;
    }
  }
  const reader = readers[0];
  const perAxis = params.scale.length > 1 && params.blockSize === 0;
  let channelAxis = reader ? opChannelAxis(reader.node, reader.slot, dims.length) : undefined;
  if (perAxis) {
    const axis = params.axis < 0 ? params.axis + dims.length : params.axis;
    channelAxis = axis >= 0 && axis < dims.length ? axis : undefined;
  }
  return {
    quantized: x,
    dequantized: y,
    node: reader?.node.name ?? '',
    opType: reader?.node.opType ?? '',
    slot: reader?.slot ?? -1,
    dims,
    values,
    params,
    candidates,
    channelAxis,
  };
}

/** Error of one quantized weight against its float source. */
export interface WeightError {
  /** The float source compared with (the closest candidate). */
  name: string;
  /** SQNR of the float weight vs its dequantized values, dB. */
  sqnrDb: number;
  /**
   * Output channel (index along `channelAxis`) with the lowest SQNR, dead channels (energy at most 1e-12 of
   * the strongest channel's) left out; undefined when the weight has no channel axis.
   */
  worstChannel: number | undefined;
  worstChannelSqnrDb: number | undefined;
}

function sqnrFrom(signal: number, noise: number): number {
  if (Number.isNaN(signal) || Number.isNaN(noise)) return NaN;
  if (noise === 0) return Infinity;
  if (signal === 0) return -Infinity;
  return 10 * Math.log10(signal / noise);
}

/** A channel whose energy is at most this share of the strongest channel's is dead (not a worst-channel candidate). */
const DEAD_CHANNEL = 1e-12;

/**
 * Dequantizes a mapped weight and measures it against its float source (the candidate with the highest
 * SQNR when there are several), overall and per output channel.
 * @returns undefined when the weight has no float source.
 * @throws LowbitError DATA_MISMATCH / BAD_OPTION when the parameters do not fit the weight's shape.
 */
export function weightError(w: WeightLink): WeightError | undefined {
  if (w.candidates.length === 0) return undefined;
  const deq = dequantizeLinear(w.values, w.params.scale, w.params.zeroPoint, layoutOptions(w.params, w.dims));
  let best: { c: WeightCandidate; db: number } | undefined;
  for (const c of w.candidates) {
    const db = new ErrorStats().add(c.data, deq).summary().sqnrDb;
    if (!best || db > best.db || (Number.isNaN(best.db) && !Number.isNaN(db))) best = { c, db };
  }
  const { c, db } = best!;
  const out: WeightError = { name: c.name, sqnrDb: db, worstChannel: undefined, worstChannelSqnrDb: undefined };
  if (w.channelAxis === undefined) return out;
  const dim = w.dims[w.channelAxis]!;
  const inner = w.dims.slice(w.channelAxis + 1).reduce((a, d) => a * d, 1);
  const outer = dim * inner === 0 ? 0 : deq.length / (dim * inner);
  const signal = new Float64Array(dim);
  const noise = new Float64Array(dim);
  for (let o = 0; o < outer; o++) {
    for (let d = 0; d < dim; d++) {
      const start = (o * dim + d) * inner;
      let s = 0;
      let n = 0;
      for (let i = start; i < start + inner; i++) {
        const r = c.data[i]!;
        const e = r - deq[i]!;
        s += r * r;
        n += e * e;
      }
      signal[d]! += s;
      noise[d]! += n;
    }
  }
  // Dead channels (all zeros or denormals, e.g. pruned filters) carry no signal; their 0 dB says nothing.
  let peak = 0;
  for (let d = 0; d < dim; d++) peak = Math.max(peak, signal[d]!);
  for (let d = 0; d < dim; d++) {
    if (signal[d]! <= peak * DEAD_CHANNEL) continue;
    const v = sqnrFrom(signal[d]!, noise[d]!);
    if (out.worstChannelSqnrDb === undefined || v < out.worstChannelSqnrDb || Number.isNaN(v)) {
      out.worstChannel = d;
      out.worstChannelSqnrDb = v;
      if (Number.isNaN(v)) break;
    }
  }
  return out;
}

/** What {@link ActivationErrorStats} reports for one tensor. */
export interface ActivationErrorSummary {
  /** Elements seen (all samples). */
  count: number;
  /** SQNR of the float tensor vs QDQ(float tensor) with the quantized model's parameters, dB. */
  localSqnrDb: number;
  /** SQNR of the float tensor vs the quantized model's dequantized tensor, dB. */
  accumulatedSqnrDb: number;
  /** Cosine similarity of the float tensor and the quantized model's dequantized tensor. */
  cosine: number;
  /** Smallest and largest float value seen (NaN ignored; [NaN, NaN] when nothing was seen). */
  floatRange: [number, number];
  /** The float interval the integer range covers (see {@link quantizedInterval}). */
  quantRange: [number, number];
  /** Share of float values QuantizeLinear saturates: roundHalfEven(x / s) + z outside [qmin, qmax]. */
  clippedFraction: number;
}

/** Running sums of one reference/test comparison (float64), as quant/metrics.ts's ErrorStats keeps them. */
interface Sums {
  noise: number;
  signal: number;
  test: number;
  dot: number;
}

const newSums = (): Sums => ({ noise: 0, signal: 0, test: 0, dot: 0 });

function cosineFrom(s: Sums): number {
  if (Number.isNaN(s.dot) || Number.isNaN(s.signal) || Number.isNaN(s.test)) return NaN;
  if (s.signal === 0 && s.test === 0) return 1;
  if (s.signal === 0 || s.test === 0) return 0;
  const c = s.dot / (Math.sqrt(s.signal) * Math.sqrt(s.test));
  return c > 1 ? 1 : c < -1 ? -1 : c;
}

/** 1.5 * 2^52: adding then subtracting it rounds |v| < 2^51 to an integer, ties to even (as quant/'s kernels do). */
const RHE_MAGIC = 6755399441055744;
const CHUNK = 16384;
const SCRATCH = new Int32Array(CHUNK);

/**
 * The fused per-tensor loop over float[a, b) and q[0, b - a): acc += [accumulated noise, signal, test power,
 * dot, local noise, local test power, local dot, clipped], acc[8] / acc[9] = running min / max.
 * QuantizeLinear as quant/kernels.ts (fround(x / s) rounded half to even, saturated; NaN -> z), then
 * DequantizeLinear; r is q - z, and a value is saturated when its rounded r is outside [lo, hi].
 */
function perTensorChunk(float: Float32Array, a: number, b: number, q: Int32Array, s: number, z: number, lo: number, hi: number, acc: Float64Array): void {
  let aNoise = 0;
  let signal = 0;
  let aTest = 0;
  let aDot = 0;
  let lNoise = 0;
  let lTest = 0;
  let lDot = 0;
  let clipped = 0;
  let min = acc[8]!;
  let max = acc[9]!;
  for (let i = a; i < b; i++) {
    const f = float[i]!;
    const d = Math.fround((q[i - a]! - z) * s);
    const v = Math.fround(f / s);
    let r: number;
    if (v < lo - 1) {
      r = lo;
      clipped++;
    } else if (v > hi + 1) {
      r = hi;
      clipped++;
    } else if (v === v) {
      r = v + RHE_MAGIC - RHE_MAGIC;
      if (r < lo) {
        r = lo;
        clipped++;
      } else if (r > hi) {
        r = hi;
        clipped++;
      }
    } else r = 0;
    const l = Math.fround(r * s);
    const e = f - d;
    aNoise += e * e;
    signal += f * f;
    aTest += d * d;
    aDot += f * d;
    const el = f - l;
    lNoise += el * el;
    lTest += l * l;
    lDot += f * l;
    // Selects, not branches (faster here); NaN never wins either comparison.
    min = f < min ? f : min;
    max = f > max ? f : max;
  }
  acc[0]! += aNoise;
  acc[1]! += signal;
  acc[2]! += aTest;
  acc[3]! += aDot;
  acc[4]! += lNoise;
  acc[5]! += lTest;
  acc[6]! += lDot;
  acc[7]! += clipped;
  acc[8] = min;
  acc[9] = max;
}

/**
 * Streaming error statistics of one quantized activation: feed each batch's float tensor (from the float
 * model) and integer tensor (from the quantized model); nothing is kept between batches but running sums.
 * Per-tensor parameters take one fused pass over the batch (bit-exact with quant/'s QuantizeLinear and
 * DequantizeLinear kernels); per-axis and blocked ones go through those kernels. The metrics follow
 * quant/metrics.ts (SQNR +Infinity without noise, NaN when any value is NaN).
 */
export class ActivationErrorStats {
  readonly params: DqParams;
  private readonly local = newSums();
  private readonly accumulated = newSums();
  private count = 0;
  private min = Infinity;
  private max = -Infinity;
  private clipped = 0;

  constructor(params: DqParams) {
    this.params = params;
  }

  /**
   * Adds one batch: `float` and `quantized` hold the same elements, of shape `dims`.
   * @throws LowbitError DATA_MISMATCH when the lengths differ or the parameters do not fit `dims`;
   *   NON_FINITE for a zero or non-finite scale.
   */
  add(float: Float32Array, dims: readonly number[], quantized: QuantArray): this {
    if (float.length !== quantized.length) {
      throw new LowbitError('DATA_MISMATCH', `the float tensor has ${float.length} values, the quantized one ${quantized.length}`, 'compare a quantized model with the float model it was made from');
    }
    const p = this.params;
    if (p.scale.length === 1 && p.blockSize === 0) this.addPerTensor(float, quantized);
    else this.addGeneral(float, dims, quantized);
    this.count += float.length;
    return this;
  }

  /** One pass: dequantize the model's integers, quantize-dequantize the float values, accumulate. */
  private addPerTensor(float: Float32Array, quantized: QuantArray): void {
    const s = this.params.scale[0]!;
    if (!Number.isFinite(s) || s === 0) throw new LowbitError('NON_FINITE', `scale ${s} cannot quantize`, 'the quantized model has an unusable scale for this tensor');
    const z = this.params.zeroPoint[0]!;
    const { qmin, qmax } = this.params.qtype;
    // The loop sees only Int32Array (copied chunk by chunk, natively): a typed-array read that has seen
    // several array types goes megamorphic and runs several times slower.
    const acc = new Float64Array(10);
    acc[8] = this.min;
    acc[9] = this.max;
    for (let a = 0; a < float.length; a += CHUNK) {
      const b = Math.min(float.length, a + CHUNK);
      SCRATCH.set(quantized.subarray(a, b));
      perTensorChunk(float, a, b, SCRATCH, s, z, qmin - z, qmax - z, acc);
    }
    const sums = this.accumulated;
    sums.noise += acc[0]!;
    sums.signal += acc[1]!;
    sums.test += acc[2]!;
    sums.dot += acc[3]!;
    this.local.noise += acc[4]!;
    this.local.signal = sums.signal;
    this.local.test += acc[5]!;
    this.local.dot += acc[6]!;
    this.clipped += acc[7]!;
    this.min = acc[8]!;
    this.max = acc[9]!;
  }

  /** Per-axis / blocked parameters: the quant/ kernels, then one accumulation pass. */
  private addGeneral(float: Float32Array, dims: readonly number[], quantized: QuantArray): void {
    const p = this.params;
    const opts = layoutOptions(p, dims);
    const deq = dequantizeLinear(quantized, p.scale, p.zeroPoint, opts);
    // Quantize without saturation (int32), count what saturation changes, then saturate and dequantize.
    const wide = quantizeLinear(float, p.scale, p.zeroPoint, 'int32', opts) as Int32Array;
    const { qmin, qmax } = p.qtype;
    for (let i = 0; i < wide.length; i++) {
      const v = wide[i]!;
      if (v < qmin) {
        wide[i] = qmin;
        this.clipped++;
      } else if (v > qmax) {
        wide[i] = qmax;
        this.clipped++;
      }
    }
    const qdq = dequantizeLinear(wide, p.scale, p.zeroPoint, opts);
    const a = this.accumulated;
    const l = this.local;
    for (let i = 0; i < float.length; i++) {
      const f = float[i]!;
      const d = deq[i]!;
      const q = qdq[i]!;
      a.noise += (f - d) * (f - d);
      a.signal += f * f;
      a.test += d * d;
      a.dot += f * d;
      l.noise += (f - q) * (f - q);
      l.test += q * q;
      l.dot += f * q;
      if (f < this.min) this.min = f;
      if (f > this.max) this.max = f;
    }
    l.signal = a.signal;
  }

  summary(): ActivationErrorSummary {
    const seen = this.min <= this.max;
    return {
      count: this.count,
      localSqnrDb: sqnrFrom(this.local.signal, this.local.noise),
      accumulatedSqnrDb: sqnrFrom(this.accumulated.signal, this.accumulated.noise),
      cosine: cosineFrom(this.accumulated),
      floatRange: seen ? [this.min, this.max] : [NaN, NaN],
      quantRange: quantizedInterval(this.params),
      clippedFraction: this.count === 0 ? 0 : this.clipped / this.count,
    };
  }
}
