// Channel padding of depthwise convolutions: grows the channel count C of a depthwise Conv (and of every
// tensor that carries the same channels) to a multiple of 16, so that ONNX Runtime's int8 depthwise kernel
// (MlasConvSymDepthwise, multiples of 16 only on x86) can run it. Exact in float: the added channels are
// zero filters of the producing Conv, zero depthwise filters, and zero input channels of the consuming Conv.
// Pure.

import { attrInt, setAttribute } from '../onnx/attributes.js';
import type { Graph, Model } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../onnx/tensor.js';
import { cloneModel } from './preprocess.js';

/** Options of {@link padDepthwiseChannels}. */
export interface PadChannelsOptions {
  /** Channel multiple to pad to. Default 16 (ORT's symmetric int8 depthwise kernel on x86). */
  align?: number;
  /** Pad only when the padded width reaches this (narrower int8 depthwise convs stay slow). Default 64. */
  minChannels?: number;
  /** Largest growth accepted, as padded / original channels. Default 1.25. */
  maxGrowth?: number;
}

/** One padded channel group: every tensor carrying the same C channels grown to C'. */
export interface PaddedGroup {
  /** Depthwise Convs in the group (node names). */
  depthwise: string[];
  from: number;
  to: number;
  /** Convs whose filters grew (zero filters, zero bias). */
  producers: string[];
  /** Convs whose input channels grew (zero weights). */
  consumers: string[];
}

/** What {@link padDepthwiseChannels} did. */
export interface PadChannelsResult {
  model: Model;
  padded: PaddedGroup[];
  /** Depthwise Convs that would have been padded but whose channel group reaches an op the pass cannot pad, with the reason. */
  skipped: { node: string; reason: string }[];
}

/** Ops that act on each channel alone, with their input 0 and output 0 carrying the same channels. */
const UNARY = new Set(['Relu', 'Clip', 'HardSigmoid', 'HardSwish', 'Sigmoid', 'Tanh', 'LeakyRelu', 'Identity', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool']);
/** Broadcasting elementwise ops; constant operands are padded with the neutral value (0 for Add/Sub, 1 for Mul/Div). */
const BINARY: Record<string, number> = { Add: 0, Sub: 0, Mul: 1, Div: 1 };

const isDefault = (n: NodeProto): boolean => !n.domain || n.domain === 'ai.onnx';

interface Group {
  tensors: Set<string>;
  /** Conv -> which weight axes grow: 0 (filters), 1 (input channels), or both axes of a depthwise Conv. */
  convs: Map<NodeProto, { out: boolean; in: boolean; depthwise: boolean }>;
  /** Constant operands to pad: node, input slot, fill value. */
  constants: { node: NodeProto; slot: number; fill: number }[];
}

/** The weight of a Conv when it is a float initializer. */
function floatWeight(graph: Graph, n: NodeProto): TensorProto | undefined {
  const w = n.input[1] ? graph.initializers.get(n.input[1]) : undefined;
  return w && w.dataType === DataType.FLOAT ? w : undefined;
}

/** C of a depthwise Conv (group = C, weight [C, 1, ...]), else undefined. */
function depthwiseChannels(graph: Graph, n: NodeProto): number | undefined {
  if (n.opType !== 'Conv' || !isDefault(n)) return undefined;
  const w = floatWeight(graph, n);
  const group = attrInt(n, 'group', 1);
  if (!w || group <= 1) return undefined;
  const d = dimsOf(w);
  return d[0] === group && d[1] === 1 ? group : undefined;
}

/**
 * The channel group of a depthwise Conv with C channels: the tensors that carry its C channels, found by
 * walking producers and consumers through per-channel ops, up to the Convs that make and read them.
 * A string says why it cannot be padded.
 */
function collectGroup(graph: Graph, seed: NodeProto, c: number): Group | string {
  const g: Group = { tensors: new Set(), convs: new Map(), constants: [] };
  const visited = new Set<NodeProto>();
  const queue: string[] = [];
  const rank = dimsOf(floatWeight(graph, seed)!).length;
  const add = (t: string | undefined): void => {
    if (t && !g.tensors.has(t)) {
      g.tensors.add(t);
      queue.push(t);
    }
  };
  const conv = (n: NodeProto, axis: 'out' | 'in'): string | undefined => {
    const w = floatWeight(graph, n);
    if (!w || dimsOf(w).length !== rank) return `Conv '${n.name}' has no float weight of rank ${rank}`;
    const bias = n.input[2] ? graph.initializers.get(n.input[2]) : undefined;
    if (n.input[2] && bias?.dataType !== DataType.FLOAT) return `Conv '${n.name}' has no float bias initializer`;
    const d = dimsOf(w);
    const dw = depthwiseChannels(graph, n) === c;
    if (!dw && attrInt(n, 'group', 1) !== 1) return `grouped Conv '${n.name}'`;
    if (!dw && (axis === 'out' ? d[0] : d[1]) !== c) return `Conv '${n.name}' has ${axis === 'out' ? d[0] : d[1]} channels, not ${c}`;
    const r = g.convs.get(n) ?? { out: false, in: false, depthwise: dw };
    r[axis] = true;
    g.convs.set(n, r);
    if (dw) {
      add(n.input[0]);
      add(n.output[0]);
    }
    return undefined;
  };
  /** Visits a node touching the group through tensor `t` (as its input or output). */
  const visit = (n: NodeProto, t: string, asInput: boolean): string | undefined => {
    const op = n.opType ?? '';
    if (!isDefault(n)) return `${op} '${n.name}' (domain ${n.domain})`;
    if (n.output.length !== 1 && op !== 'MaxPool') return `${op} '${n.name}' has several outputs`;
    if (op === 'MaxPool' && n.output.filter((o) => o).length !== 1) return `MaxPool '${n.name}' returns indices`;
    if (op === 'Conv') {
      if (asInput && n.input[0] !== t) return `Conv '${n.name}' reads '${t}' as a weight`;
      return conv(n, asInput ? 'in' : 'out');
    }
    if (visited.has(n)) return undefined;
    visited.add(n);
    if (UNARY.has(op)) {
      for (const extra of n.input.slice(1)) if (extra && !graph.constant(extra)) return `${op} '${n.name}' has a non-constant parameter`;
      add(n.input[0]);
      add(n.output[0]);
      return undefined;
    }
    if (op in BINARY) {
      for (let slot = 0; slot < 2; slot++) {
        const x = n.input[slot];
        if (!x) return `${op} '${n.name}' lacks an input`;
        const k = graph.constant(x);
        if (!k) {
          // A divisor carrying the group would divide by the new channels' zeros.
          if (op === 'Div' && slot === 1) return `Div '${n.name}' divides by '${x}'`;
          add(x);
          continue;
        }
        const d = dimsOf(k);
        if (d.reduce((a, b) => a * b, 1) === 1) continue;
        // Per-channel constant: right-aligned against [N, C, spatial...], only the channel axis above 1.
        const axis = d.length - (rank - 1);
        if (k.dataType !== DataType.FLOAT || axis < 0 || d[axis] !== c || d.some((v, i) => i !== axis && v !== 1)) {
          return `${op} '${n.name}' has a constant of shape [${d.join(', ')}]`;
        }
        g.constants.push({ node: n, slot, fill: BINARY[op]! });
      }
      add(n.output[0]);
      return undefined;
    }
    return `${op} '${n.name}'`;
  };
  add(seed.input[0]);
  add(seed.output[0]);
  conv(seed, 'out');
  while (queue.length) {
    const t = queue.pop()!;
    if (graph.isGraphInput(t) || graph.isGraphOutput(t) || graph.initializers.has(t)) return `'${t}' is a graph input or output`;
    const p = graph.producer(t);
    if (!p) return `'${t}' has no producer in the graph`;
    const whyP = visit(p, t, false);
    if (whyP) return whyP;
    for (const n of graph.consumers(t)) {
      if (n.input.indexOf(t) < 0) return `${n.opType} '${n.name}' reads '${t}' inside a subgraph`;
      const why = visit(n, t, true);
      if (why) return why;
    }
  }
  return g;
}

/** `src` (dims `d`) with `axis` grown from c to c2, new entries set to `fill`. */
function padAxis(src: Float32Array, d: readonly number[], axis: number, c2: number, fill: number): { data: Float32Array; dims: number[] } {
  const outer = d.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = d.slice(axis + 1).reduce((a, b) => a * b, 1);
  const c = d[axis]!;
  const data = new Float32Array(outer * c2 * inner).fill(fill);
  for (let o = 0; o < outer; o++) data.set(src.subarray(o * c * inner, (o + 1) * c * inner), o * c2 * inner);
  const dims = [...d];
  dims[axis] = c2;
  return { data, dims };
}

/** Replaces input `slot` of `n` by a padded copy of its float constant (a fresh initializer). */
function padInput(graph: Graph, n: NodeProto, slot: number, axis: number, c2: number, fill: number): void {
  const t = graph.constant(n.input[slot]!)!;
  const p = padAxis(tensorStorage(t) as Float32Array, dimsOf(t), axis, c2, fill);
  const old = n.input[slot]!;
  const name = graph.freshName(`${old}_padded`);
  graph.setInitializer(makeTensor(name, DataType.FLOAT, p.dims, p.data));
  graph.setInput(n, slot, name);
  if (graph.consumers(old).length === 0 && graph.initializers.has(old)) graph.removeInitializer(old);
}

const roundUp = (c: number, a: number): number => Math.ceil(c / a) * a;

/**
 * Pads the channels of depthwise Convs whose channel count C is not a multiple of `align` (default 16) to
 * C' = the next multiple, when C' ≥ `minChannels` (default 64) and C' / C ≤ `maxGrowth`. The whole channel
 * group moves together: the Convs producing the depthwise input get zero filters (and zero biases), the
 * per-channel ops in between (Relu, Clip, HardSwish and its Add/Clip/Mul/Div form, HardSigmoid, pools,
 * squeeze-and-excitation branches) carry the new channels, per-channel constants get neutral entries
 * (0 for Add/Sub, 1 for Mul/Div), and the Convs reading the group get zero input channels. The output is
 * the same as the input model's in exact arithmetic: the new channels hold values the readers multiply by
 * zero. Groups that reach anything else (a graph output, Concat, Reshape, a grouped Conv, a non-float
 * weight, a subgraph) are left alone and listed in `skipped`. Returns a copy; `model` is not modified.
 * Run it after BatchNormalization folding (preprocessForQuantization).
 * @throws LowbitError BAD_DATA for corrupt weight data; EXTERNAL_DATA for weights not loaded.
 */
export function padDepthwiseChannels(model: Model, opts: PadChannelsOptions = {}): PadChannelsResult {
  const align = opts.align ?? 16;
  const minChannels = opts.minChannels ?? 64;
  const maxGrowth = opts.maxGrowth ?? 1.25;
  const out = cloneModel(model);
  const graph = out.graph;
  const padded: PaddedGroup[] = [];
  const skipped: { node: string; reason: string }[] = [];
  const done = new Set<NodeProto>();
  for (const seed of [...graph.nodes]) {
    if (done.has(seed)) continue;
    const c = depthwiseChannels(graph, seed);
    if (c === undefined || c % align === 0) continue;
    const c2 = roundUp(c, align);
    if (c2 < minChannels || c2 / c > maxGrowth) continue;
    const group = collectGroup(graph, seed, c);
    if (typeof group === 'string') {
      skipped.push({ node: seed.name ?? '', reason: group });
      done.add(seed);
      continue;
    }
    const info: PaddedGroup = { depthwise: [], from: c, to: c2, producers: [], consumers: [] };
    for (const [n, r] of group.convs) {
      done.add(n);
      if (r.depthwise) {
        padInput(graph, n, 1, 0, c2, 0);
        if (n.input[2]) padInput(graph, n, 2, 0, c2, 0);
        setAttribute(n, 'group', c2);
        info.depthwise.push(n.name ?? '');
        continue;
      }
      if (r.out) {
        padInput(graph, n, 1, 0, c2, 0);
        if (n.input[2]) padInput(graph, n, 2, 0, c2, 0);
        info.producers.push(n.name ?? '');
      }
      if (r.in) {
        padInput(graph, n, 1, 1, c2, 0);
        info.consumers.push(n.name ?? '');
      }
    }
    for (const k of group.constants) {
      const d = dimsOf(graph.constant(k.node.input[k.slot]!)!);
      padInput(graph, k.node, k.slot, d.findIndex((v) => v === c), c2, k.fill);
    }
    // Shapes recorded for the grown tensors are stale.
    for (const t of group.tensors) graph.valueInfo.delete(t);
    padded.push(info);
  }
  graph.touch();
  return { model: out, padded, skipped };
}
