// Raising a model's default-domain opset (to 13, for per-axis DequantizeLinear; to 21, for int4 weights):
// a table of the ops whose meaning changed between opset 7 and 21 and how to rewrite each. Pure; used by
// passes/preprocess.ts.

import { attrFloat, attrInt, attrInts, removeAttribute, setAttribute } from '../../../onnx/attributes.js';
import type { Graph } from '../../../onnx/ir.js';
import { makeNode, valueInfoTensor } from '../../../onnx/ir.js';
import { DataType, type NodeProto } from '../../../onnx/proto.js';
import { makeTensor } from '../../../onnx/tensor.js';

/** Rewrites one node in place for the new opset, or returns why it cannot. */
type Convert = (node: NodeProto, graph: Graph) => string | undefined;

/** A semantic change of an op at opset `since`; no `convert` means lowbit cannot rewrite it. */
interface Change {
  since: number;
  convert?: Convert;
}

/**
 * Ops whose definition did not change in a way that matters between opset 7 and 21 (later versions only
 * added types, or attributes and optional inputs whose defaults keep the old meaning), and ops added after
 * 13 that kept their meaning up to 21 (HardSwish, Trilu, CastLike, LayerNormalization, Mish, Gelu, ...).
 */
const UNCHANGED = new Set(
  (
    'Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool Cast Ceil Concat Constant ConstantOfShape Conv ' +
    'ConvInteger ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Einsum Elu Equal Erf Exp Expand EyeLike ' +
    'Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual ' +
    'HardSigmoid Identity InstanceNormalization IsInf IsNaN LRN LeakyRelu Less LessOrEqual Log LpNormalization LpPool ' +
    'MatMul MatMulInteger Max MaxPool MaxRoiPool Mean Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pow ' +
    'QLinearConv QLinearMatMul QuantizeLinear Range Reciprocal Relu Reshape Round ScatterElements ScatterND Selu Shape ' +
    'Shrink Sigmoid Sign Sin Sinh Size Softplus Softsign SpaceToDepth Sqrt Sub Sum Tan Tanh ThresholdedRelu Tile ' +
    'Transpose Where Xor ' +
    'BitwiseAnd BitwiseNot BitwiseOr BitwiseXor CastLike Gelu HardSwish LayerNormalization Mish Trilu'
  ).split(' '),
);

const int64s = (graph: Graph, base: string, values: number[], dims: number[] = [values.length]): string => {
  const name = graph.freshName(base);
  graph.setInitializer(makeTensor(name, DataType.INT64, dims, BigInt64Array.from(values.map((v) => BigInt(v)))));
  return name;
};

/** Moves an INTS attribute to input `slot` (absent attribute: the input stays empty). */
const intsAttrToInput =
  (attr: string, slot: number): Convert =>
  (node, graph) => {
    const v = attrInts(node, attr);
    removeAttribute(node, attr);
    if (v === undefined) return undefined;
    while (node.input.length < slot) node.input.push('');
    node.input[slot] = int64s(graph, `${node.name || node.opType}_${attr}`, v);
    graph.touch();
    return undefined;
  };

/** A float scalar initializer matching the element type of `like` (float32 when unknown). */
function floatScalar(graph: Graph, base: string, value: number, like: string): string | undefined {
  const t = valueInfoTensor(graph.valueInfo.get(like) ?? graph.inputs.find((v) => v.name === like)).elemType;
  if (t !== undefined && t !== DataType.FLOAT) return undefined;
  const name = graph.freshName(base);
  graph.setInitializer(makeTensor(name, DataType.FLOAT, [], Float32Array.of(value)));
  return name;
}

const clipToInputs: Convert = (node, graph) => {
  const min = attrFloat(node, 'min');
  const max = attrFloat(node, 'max');
  const base = node.name || 'Clip';
  const minName = min === undefined ? '' : floatScalar(graph, `${base}_min`, min, node.input[0]!);
  const maxName = max === undefined ? '' : floatScalar(graph, `${base}_max`, max, node.input[0]!);
  if (minName === undefined || maxName === undefined) return 'Clip bounds on a non-float32 tensor';
  removeAttribute(node, 'min');
  removeAttribute(node, 'max');
  node.input = [node.input[0]!, minName, maxName];
  while (node.input.length > 1 && !node.input[node.input.length - 1]) node.input.pop();
  graph.touch();
  return undefined;
};

const sliceToInputs: Convert = (node, graph) => {
  const starts = attrInts(node, 'starts') ?? [];
  const ends = attrInts(node, 'ends') ?? [];
  const axes = attrInts(node, 'axes');
  for (const a of ['starts', 'ends', 'axes']) removeAttribute(node, a);
  const base = node.name || 'Slice';
  node.input = [node.input[0]!, int64s(graph, `${base}_starts`, starts), int64s(graph, `${base}_ends`, ends)];
  if (axes) node.input.push(int64s(graph, `${base}_axes`, axes));
  graph.touch();
  return undefined;
};

/** The rank of a value from value_info / graph inputs / outputs, if declared. */
function declaredRank(graph: Graph, name: string): number | undefined {
  const vi = graph.valueInfo.get(name) ?? graph.inputs.find((v) => v.name === name) ?? graph.outputs.find((v) => v.name === name);
  return valueInfoTensor(vi).dims?.length;
}

/**
 * Softmax / LogSoftmax / Hardmax before 13 flatten to 2-D at `axis` (default 1); from 13 they work along
 * one axis (default -1). Same result when axis is the last one; otherwise wrap in Flatten / Reshape.
 */
const softmaxAxis: Convert = (node, graph) => {
  const axis = attrInt(node, 'axis', 1);
  const x = node.input[0]!;
  const rank = declaredRank(graph, x) ?? declaredRank(graph, node.output[0]!);
  if (axis === -1 || (rank !== undefined && (axis === rank - 1 || axis === -1))) {
    setAttribute(node, 'axis', -1);
    return undefined;
  }
  const base = node.name || node.opType!;
  const shape = graph.freshName(`${base}_shape`);
  const flat = graph.freshName(`${base}_flat`);
  const y2 = graph.freshName(`${base}_2d`);
  const y = node.output[0]!;
  const pre = [
    makeNode('Shape', [x], [shape], { name: graph.freshName(`${base}_Shape`) }),
    makeNode('Flatten', [x], [flat], { name: graph.freshName(`${base}_Flatten`), attribute: [] }),
  ];
  setAttribute(pre[1]!, 'axis', axis);
  node.input = [flat];
  node.output = [y2];
  setAttribute(node, 'axis', 1);
  graph.insertBefore(node, pre);
  graph.insertAfter(node, [makeNode('Reshape', [y2, shape], [y], { name: graph.freshName(`${base}_Reshape`) })]);
  return undefined;
};

const padToInputs: Convert = (node, graph) => {
  const pads = attrInts(node, 'pads') ?? [];
  const value = attrFloat(node, 'value', 0);
  const base = node.name || 'Pad';
  const valueName = value === 0 ? '' : floatScalar(graph, `${base}_value`, value, node.input[0]!);
  if (valueName === undefined) return 'Pad value on a non-float32 tensor';
  removeAttribute(node, 'pads');
  removeAttribute(node, 'value');
  node.input = [node.input[0]!, int64s(graph, `${base}_pads`, pads)];
  if (valueName) node.input.push(valueName);
  graph.touch();
  return undefined;
};

const topkToInput: Convert = (node, graph) => {
  const k = attrInt(node, 'k', 1);
  removeAttribute(node, 'k');
  node.input = [node.input[0]!, int64s(graph, `${node.name || 'TopK'}_k`, [k])];
  graph.touch();
  return undefined;
};

const dropoutRatio: Convert = (node, graph) => {
  const ratio = attrFloat(node, 'ratio');
  removeAttribute(node, 'ratio');
  removeAttribute(node, 'is_test');
  if (ratio === undefined) return undefined;
  const name = floatScalar(graph, `${node.name || 'Dropout'}_ratio`, ratio, node.input[0]!);
  if (name === undefined) return 'Dropout ratio on a non-float32 tensor';
  node.input = [node.input[0]!, name];
  graph.touch();
  return undefined;
};

const batchNormSpatial: Convert = (node) => {
  if (attrInt(node, 'spatial', 1) !== 1) return 'BatchNormalization with spatial=0 has no opset-9+ form';
  for (const a of ['spatial', 'is_test', 'consumed_inputs']) removeAttribute(node, a);
  return undefined;
};

/** Reduce ops (other than ReduceSum, which moved at 13) whose `axes` attribute became input 1 at opset 18. */
const AXES_AT_18 = ['ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSumSquare'];

/** Semantic changes between opset 7 and 21, per op type. */
const CHANGES: Readonly<Record<string, readonly Change[]>> = {
  BatchNormalization: [{ since: 9, convert: batchNormSpatial }],
  Clip: [{ since: 11, convert: clipToInputs }],
  Slice: [{ since: 10, convert: sliceToInputs }],
  Squeeze: [{ since: 13, convert: intsAttrToInput('axes', 1) }],
  Unsqueeze: [{ since: 13, convert: intsAttrToInput('axes', 1) }],
  ReduceSum: [{ since: 13, convert: intsAttrToInput('axes', 1) }],
  Split: [{ since: 13, convert: intsAttrToInput('split', 1) }],
  Softmax: [{ since: 13, convert: softmaxAxis }],
  LogSoftmax: [{ since: 13, convert: softmaxAxis }],
  Hardmax: [{ since: 13, convert: softmaxAxis }],
  Pad: [{ since: 11, convert: padToInputs }],
  TopK: [{ since: 10, convert: topkToInput }],
  Dropout: [{ since: 12, convert: dropoutRatio }],
  Upsample: [{ since: 10 }],
  Resize: [{ since: 11 }],
  Scatter: [{ since: 11 }],
  ...Object.fromEntries(AXES_AT_18.map((op) => [op, [{ since: 18, convert: intsAttrToInput('axes', 1) }]])),
  // Default coordinate_transformation_mode changed (output_half_pixel -> half_pixel).
  RoiAlign: [{ since: 16 }],
  // Mode names changed (bilinear -> linear, bicubic -> cubic).
  GridSample: [{ since: 20 }],
  // `axis` moved from an attribute to an input.
  DFT: [{ since: 20 }],
  // scale and bias went from one value per group to one per channel.
  GroupNormalization: [{ since: 21 }],
};

/** The highest opset {@link upgradeOpset} raises to. */
export const MAX_UPGRADE_OPSET = 21;

/** Result of {@link upgradeOpset}. */
export interface OpsetUpgrade {
  upgraded: boolean;
  from: number;
  to: number;
  /** Why the upgrade was refused (op type: reason), empty when it happened or was not needed. */
  blockers: string[];
}

/** Ops lowbit knows how to carry to opset 21 (for reports and tests). */
export function upgradableOps(): string[] {
  return [...UNCHANGED, ...Object.keys(CHANGES).filter((op) => CHANGES[op]!.every((c) => c.convert))].sort();
}

/**
 * Raises the default-domain opset of the main graph to `target` (at most 21) when every node can be
 * carried over: nodes of changed ops are rewritten (attributes to inputs, Softmax axis), nodes of ops
 * with subgraphs or unknown history block the upgrade. Edits `graph` only when it succeeds.
 * Opsets below 7 are refused.
 */
export function upgradeOpset(graph: Graph, from: number, target = 13): OpsetUpgrade {
  const to = Math.min(target, MAX_UPGRADE_OPSET);
  if (from >= to) return { upgraded: false, from, to: from, blockers: [] };
  const blockers: string[] = [];
  if (from < 7) blockers.push(`opset ${from} is older than 7`);
  const todo: [NodeProto, Convert][] = [];
  for (const n of graph.nodes) {
    if (n.domain && n.domain !== 'ai.onnx') continue;
    const op = n.opType ?? '';
    const changes = (CHANGES[op] ?? []).filter((c) => c.since > from && c.since <= to);
    if (!UNCHANGED.has(op) && !Object.hasOwn(CHANGES, op)) {
      blockers.push(`${op} ('${n.name ?? ''}'): no known upgrade path`);
      continue;
    }
    for (const c of changes) {
      if (c.convert) todo.push([n, c.convert]);
      else blockers.push(`${op} ('${n.name ?? ''}') changed meaning in opset ${c.since}`);
    }
  }
  if (blockers.length) return { upgraded: false, from, to: from, blockers };
  for (const [n, convert] of todo) {
    const why = convert(n, graph);
    if (why) blockers.push(`${n.opType} ('${n.name ?? ''}'): ${why}`);
  }
  return blockers.length ? { upgraded: false, from, to: from, blockers } : { upgraded: true, from, to, blockers };
}
