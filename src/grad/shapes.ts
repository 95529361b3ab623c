// Static dims of a graph's values, for the backward graph builder: fixed numbers, symbolic names
// (a batch dim 'N' stays 'N') or unknown. Pure; imported by src/grad/engine.ts.
// Unlisted ops give unknown outputs; the gradient rules then fall back to Shape nodes at run time.

import { attrInt, attrInts, attrString, attrTensor } from '../onnx/attributes.js';
import type { Graph } from '../onnx/ir.js';
import { valueInfoTensor } from '../onnx/ir.js';
import type { NodeProto } from '../onnx/proto.js';
import { dimsOf, tensorStorage } from '../onnx/tensor.js';
import type { Dim, Dims } from './types.js';

type In = Dims | undefined;
/** What a dims rule may read: input dims, the node, constant inputs as numbers, the opset. */
type DimsRule = (ins: In[], node: NodeProto, konst: (slot: number) => number[] | undefined, opset: number) => In[];

const isNum = (d: Dim): d is number => typeof d === 'number';

/** Numpy broadcasting of static dims (undefined when the rank of any operand is unknown). */
export function broadcastDims(...list: In[]): In {
  if (list.some((d) => d === undefined)) return undefined;
  const all = list as Dims[];
  const rank = Math.max(...all.map((d) => d.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const present = all.filter((d) => d.length - rank + i >= 0).map((d) => d[d.length - rank + i]);
    const nonOne = present.filter((d) => d !== 1);
    const nums = nonOne.filter(isNum);
    if (nums.length) out.push(nums[0]);
    else if (nonOne.length === 0) out.push(1);
    else out.push(nonOne.every((d) => d !== undefined && d === nonOne[0]) ? nonOne[0] : undefined);
  }
  return out;
}

const same: DimsRule = (ins, n) => n.output.map(() => ins[0]);
const broadcastAll: DimsRule = (ins, n) => n.output.map(() => broadcastDims(...ins.filter((_, i) => n.input[i])));

/** Output size of a sliding window (Conv, pools) along one axis. */
function windowOut(size: Dim, k: number, s: number, d: number, pads: number, ceil: boolean, autoPad: string): Dim {
  if (!isNum(size)) return undefined;
  const eff = (k - 1) * d + 1;
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return Math.ceil(size / s);
  if (autoPad === 'VALID') return Math.floor((size - eff) / s) + 1;
  const v = (size + pads - eff) / s;
  return (ceil ? Math.ceil(v) : Math.floor(v)) + 1;
}

/** Conv / MaxPool / AveragePool output dims; `channels` is the output channel count. */
function windowDims(x: In, node: NodeProto, kernel: number[] | undefined, channels: Dim, ceil: boolean): In {
  if (!x || !kernel) return undefined;
  const sp = kernel.length;
  const strides = attrInts(node, 'strides', new Array(sp).fill(1));
  const dil = attrInts(node, 'dilations', new Array(sp).fill(1));
  const pads = attrInts(node, 'pads', new Array(2 * sp).fill(0));
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  return [x[0], channels, ...kernel.map((k, i) => windowOut(x[2 + i], k, strides[i]!, dil[i]!, pads[i]! + pads[i + sp]!, ceil, autoPad))];
}

const pool: DimsRule = (ins, n) => {
  const d = windowDims(ins[0], n, attrInts(n, 'kernel_shape'), ins[0]?.[1], attrInt(n, 'ceil_mode', 0) === 1);
  return n.output.map(() => d);
};

const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);
const prod = (ds: readonly Dim[]): Dim => (ds.every(isNum) ? ds.reduce((a, b) => a * b, 1) : undefined);

/** Axes from the `axes` attribute (before `since`) or input 1 (from `since`). */
function axesOf(n: NodeProto, konst: (slot: number) => number[] | undefined, opset: number, since: number): number[] | undefined | 'dynamic' {
  if (opset < since) return attrInts(n, 'axes');
  if (!n.input[1]) return undefined;
  return konst(1) ?? 'dynamic';
}

const reduce =
  (since: number): DimsRule =>
  (ins, n, konst, opset) => {
    const x = ins[0];
    if (!x) return [undefined];
    const keep = attrInt(n, 'keepdims', 1) === 1;
    const axes = axesOf(n, konst, opset, since);
    if (axes === 'dynamic') return [keep ? x.map(() => undefined) : undefined];
    if (axes === undefined || axes.length === 0) {
      if (attrInt(n, 'noop_with_empty_axes', 0) === 1) return [x];
      return [keep ? x.map(() => 1) : []];
    }
    const set = new Set(axes.map((a) => normAxis(a, x.length)));
    return [keep ? x.map((d, i) => (set.has(i) ? 1 : d)) : x.filter((_, i) => !set.has(i))];
  };

function matMulDims(a: In, b: In): In {
  if (!a || !b) return undefined;
  const a2 = a.length === 1 ? [1, a[0]] : a;
  const b2 = b.length === 1 ? [b[0], 1] : b;
  const batch = broadcastDims(a2.slice(0, -2), b2.slice(0, -2))!;
  const out: Dim[] = [...batch];
  if (a.length > 1) out.push(a2[a2.length - 2]);
  if (b.length > 1) out.push(b2[b2.length - 1]);
  return out;
}

function sliceDims(x: In, n: NodeProto, konst: (slot: number) => number[] | undefined): In {
  if (!x) return undefined;
  const starts = konst(1);
  const ends = konst(2);
  const axes = n.input[3] ? konst(3) : x.map((_, i) => i);
  const steps = n.input[4] ? konst(4) : starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps) return x.map(() => undefined);
  const out: Dim[] = [...x];
  axes.forEach((a0, k) => {
    const a = normAxis(a0, x.length);
    const size = x[a];
    if (!isNum(size)) return void (out[a] = undefined);
    const step = steps[k]!;
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + size : v, lo), hi);
    const s = step > 0 ? clamp(starts[k]!, 0, size) : clamp(starts[k]!, -1, size - 1);
    const e = step > 0 ? clamp(ends[k]!, 0, size) : clamp(ends[k]!, -1, size - 1);
    out[a] = Math.max(0, Math.ceil((e - s) / step));
  });
  return out;
}

function reshapeDims(x: In, n: NodeProto, shape: number[] | undefined): In {
  if (!shape) return undefined;
  const allowZero = attrInt(n, 'allowzero', 0) === 1;
  const out: Dim[] = shape.map((d, i) => (d === 0 && !allowZero ? x?.[i] : d === -1 ? undefined : d));
  const minus = shape.indexOf(-1);
  if (minus >= 0 && x) {
    const total = prod(x);
    const rest = prod(out.filter((_, i) => i !== minus));
    if (isNum(total) && isNum(rest) && rest > 0) out[minus] = total / rest;
  }
  return out;
}

function splitDims(x: In, n: NodeProto, konst: (slot: number) => number[] | undefined, opset: number): In[] {
  if (!x) return n.output.map(() => undefined);
  const axis = normAxis(attrInt(n, 'axis', 0), x.length);
  const sizes = opset < 13 ? attrInts(n, 'split') : n.input[1] ? konst(1) : undefined;
  const total = x[axis];
  return n.output.map((_, k) => {
    let d: Dim;
    if (sizes) d = sizes[k];
    else if (isNum(total)) {
      const parts = n.output.length;
      const chunk = Math.ceil(total / parts);
      d = k < parts - 1 ? chunk : total - chunk * (parts - 1);
    }
    return x.map((v, i) => (i === axis ? d : v));
  });
}

const DIMS_RULES: Readonly<Record<string, DimsRule>> = {
  ...Object.fromEntries(
    ['Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Softmax', 'LogSoftmax', 'Erf', 'Sqrt', 'Exp', 'Log', 'Neg', 'Abs', 'Reciprocal',
      'Identity', 'Clip', 'Cast', 'CastLike', 'QuantizeLinear', 'DequantizeLinear', 'Gelu', 'Softplus', 'Elu', 'Selu',
      'HardSigmoid', 'HardSwish', 'Floor', 'Ceil', 'Round', 'Sign', 'Not', 'Dropout', 'IsNaN'].map((op) => [op, same]),
  ),
  ...Object.fromEntries(
    ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'And', 'Or', 'Xor',
      'Where', 'Max', 'Min', 'Sum', 'Mean', 'PRelu'].map((op) => [op, broadcastAll]),
  ),
  BatchNormalization: (ins, n) => n.output.map((_, i) => (i === 0 ? ins[0] : ins[3])),
  LayerNormalization: (ins, n) => {
    const x = ins[0];
    const axis = x ? normAxis(attrInt(n, 'axis', -1), x.length) : 0;
    return n.output.map((_, i) => (i === 0 ? x : x?.map((d, k) => (k < axis ? d : 1))));
  },
  MatMul: (ins) => [matMulDims(ins[0], ins[1])],
  Gemm: (ins, n) => {
    const [a, b] = ins;
    const m = a ? a[attrInt(n, 'transA', 0) ? 1 : 0] : undefined;
    const k = b ? b[attrInt(n, 'transB', 0) ? 0 : 1] : undefined;
    return [[m, k]];
  },
  Conv: (ins, n) => {
    const w = ins[1];
    const kernel = attrInts(n, 'kernel_shape') ?? (w && w.slice(2).every(isNum) ? (w.slice(2) as number[]) : undefined);
    return [windowDims(ins[0], n, kernel, w?.[0], false)];
  },
  MaxPool: pool,
  AveragePool: pool,
  GlobalAveragePool: (ins) => [ins[0]?.map((d, i) => (i < 2 ? d : 1))],
  GlobalMaxPool: (ins) => [ins[0]?.map((d, i) => (i < 2 ? d : 1))],
  Reshape: (ins, n, konst) => [reshapeDims(ins[0], n, konst(1))],
  Flatten: (ins, n) => {
    const x = ins[0];
    if (!x) return [[undefined, undefined]];
    const axis = normAxis(attrInt(n, 'axis', 1), x.length);
    return [[prod(x.slice(0, axis)), prod(x.slice(axis))]];
  },
  Transpose: (ins, n) => {
    const x = ins[0];
    if (!x) return [undefined];
    const perm = attrInts(n, 'perm') ?? x.map((_, i) => x.length - 1 - i);
    return [perm.map((p) => x[p])];
  },
  Squeeze: (ins, n, konst, opset) => {
    const x = ins[0];
    const axes = axesOf(n, konst, opset, 13);
    if (!x || axes === 'dynamic') return [undefined];
    if (!axes) return [x.some((d) => !isNum(d)) ? undefined : x.filter((d) => d !== 1)];
    const set = new Set(axes.map((a) => normAxis(a, x.length)));
    return [x.filter((_, i) => !set.has(i))];
  },
  Unsqueeze: (ins, n, konst, opset) => {
    const x = ins[0];
    const axes = axesOf(n, konst, opset, 13);
    if (!x || !axes || axes === 'dynamic') return [undefined];
    const rank = x.length + axes.length;
    const set = new Set(axes.map((a) => normAxis(a, rank)));
    const out: Dim[] = [];
    let k = 0;
    for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x[k++]);
    return [out];
  },
  Concat: (ins, n) => {
    if (ins.some((d) => !d)) return [undefined];
    const first = ins[0]!;
    const axis = normAxis(attrInt(n, 'axis', 0), first.length);
    const sum = ins.reduce<Dim>((acc, d) => (isNum(acc) && isNum(d![axis]) ? acc + (d![axis] as number) : undefined), 0);
    return [first.map((d, i) => (i === axis ? sum : d))];
  },
  Split: (ins, n, konst, opset) => splitDims(ins[0], n, konst, opset),
  Slice: (ins, n, konst) => [sliceDims(ins[0], n, konst)],
  Gather: (ins, n) => {
    const [x, idx] = ins;
    if (!x || !idx) return [undefined];
    const axis = normAxis(attrInt(n, 'axis', 0), x.length);
    return [[...x.slice(0, axis), ...idx, ...x.slice(axis + 1)]];
  },
  ReduceSum: reduce(13),
  ReduceMean: reduce(18),
  ReduceMax: reduce(18),
  ReduceMin: reduce(18),
  ReduceProd: reduce(18),
  Shape: (ins) => [ins[0] ? [ins[0].length] : [undefined]],
  Size: () => [[]],
  Expand: (ins, _n, konst) => {
    const shape = konst(1);
    return [shape ? broadcastDims(ins[0], shape) : undefined];
  },
  ConstantOfShape: (_ins, _n, konst) => [konst(0)],
  Constant: (_ins, n) => {
    const t = attrTensor(n, 'value');
    return [t ? dimsOf(t) : n.attribute[0]?.name?.endsWith('s') ? [undefined] : []];
  },
};

/** A constant's values as numbers (int64 included), or undefined when `name` is not a numeric constant. */
export function constantNumbers(graph: Graph, name: string): number[] | undefined {
  const t = name ? graph.constant(name) : undefined;
  if (!t) return undefined;
  try {
    return Array.from(tensorStorage(t) as ArrayLike<number | bigint>, (v) => Number(v));
  } catch {
    return undefined;
  }
}

/**
 * Static dims of every value of `graph` that can be inferred: graph inputs, value_info, initializers,
 * `known` (e.g. from a run), then the rules above in topological order. Absent = rank unknown.
 */
export function inferDims(graph: Graph, opset: number, known?: ReadonlyMap<string, Dims>): Map<string, Dims> {
  const dims = new Map<string, Dims>();
  for (const v of [...graph.inputs, ...graph.outputs, ...graph.valueInfo.values()]) {
    const d = valueInfoTensor(v).dims;
    if (v.name && d) dims.set(v.name, d);
  }
  for (const [name, t] of graph.initializers) dims.set(name, dimsOf(t));
  for (const [name, d] of known ?? []) dims.set(name, d);
  for (const n of graph.topoSort()) {
    const rule = (n.domain ?? '') === '' ? DIMS_RULES[n.opType ?? ''] : undefined;
    if (!rule) continue;
    const konst = (slot: number) => constantNumbers(graph, n.input[slot] ?? '');
    const outs = rule(n.input.map((i) => (i ? dims.get(i) : undefined)), n, konst, opset);
    n.output.forEach((o, k) => {
      const d = outs[k];
      if (o && d && !dims.has(o)) dims.set(o, d);
    });
  }
  return dims;
}
