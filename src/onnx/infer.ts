// Element-type inference: the ONNX DataType of every value in a graph, from one rule table.
// Pure. Shapes come from the runtime instead: `runtime/` taps the values on a sample and reads
// dims and types from ONNX Runtime (see docs/architecture.md, "Shapes").

import { attrInt, attrTensor } from './attributes.js';
import type { Graph } from './ir.js';
import { valueInfoTensor } from './ir.js';
import { DataType, type NodeProto } from './proto.js';

/**
 * Output element types of a node from its input element types (undefined = unknown);
 * `body(attr)` gives the output types of the subgraph held by attribute `attr` (If/Loop/Scan).
 */
type TypeRule = (inputs: (number | undefined)[], node: NodeProto, body: (attr: string) => (number | undefined)[]) => (number | undefined)[];

const sameAsInput =
  (i: number): TypeRule =>
  (inputs, node) =>
    node.output.map(() => inputs[i]);
const fixed =
  (t: number): TypeRule =>
  (_inputs, node) =>
    node.output.map(() => t);
const fromAttr =
  (attr: string): TypeRule =>
  (_inputs, node) =>
    node.output.map(() => attrInt(node, attr));

const comparison = fixed(DataType.BOOL);

/** Rules by op type (default domain); ops not listed inherit input 0's type when it has one. */
const typeRules: Record<string, TypeRule> = {
  Shape: fixed(DataType.INT64),
  Size: fixed(DataType.INT64),
  NonZero: fixed(DataType.INT64),
  ArgMax: fixed(DataType.INT64),
  ArgMin: fixed(DataType.INT64),
  Equal: comparison,
  Greater: comparison,
  GreaterOrEqual: comparison,
  Less: comparison,
  LessOrEqual: comparison,
  Not: comparison,
  And: comparison,
  Or: comparison,
  Xor: comparison,
  IsNaN: comparison,
  IsInf: comparison,
  Cast: fromAttr('to'),
  CastLike: sameAsInput(1),
  Where: sameAsInput(1),
  Expand: sameAsInput(0),
  Range: sameAsInput(0),
  RandomNormal: (_i, n) => n.output.map(() => attrInt(n, 'dtype', DataType.FLOAT)),
  RandomUniform: (_i, n) => n.output.map(() => attrInt(n, 'dtype', DataType.FLOAT)),
  EyeLike: (i, n) => n.output.map(() => attrInt(n, 'dtype') ?? i[0]),
  Constant: (_i, n) => {
    const t = attrTensor(n, 'value');
    if (t) return [t.dataType];
    const a = n.attribute[0]?.name ?? '';
    if (a.startsWith('value_float')) return [DataType.FLOAT];
    if (a.startsWith('value_int')) return [DataType.INT64];
    if (a.startsWith('value_string')) return [DataType.STRING];
    return [undefined];
  },
  ConstantOfShape: (_i, n) => [attrTensor(n, 'value')?.dataType ?? DataType.FLOAT],
  QuantizeLinear: (i, n) => {
    const zp = i[2];
    return [attrInt(n, 'output_dtype') || zp || DataType.UINT8];
  },
  DequantizeLinear: (i) => [i[1] ?? DataType.FLOAT],
  DynamicQuantizeLinear: fixed(DataType.UINT8),
  MatMulInteger: fixed(DataType.INT32),
  ConvInteger: fixed(DataType.INT32),
  QLinearConv: sameAsInput(7),
  QLinearMatMul: sameAsInput(7),
  TopK: (i, n) => [i[0], DataType.INT64].slice(0, n.output.length),
  Unique: (i, n) => [i[0], DataType.INT64, DataType.INT64, DataType.INT64].slice(0, n.output.length),
  MaxPool: (i, n) => [i[0], DataType.INT64].slice(0, n.output.length),
  DynamicQuantizeLSTM: (i) => [i[0], i[0], i[0]],
  LSTM: (i, n) => n.output.map(() => i[0]),
  Dropout: (i, n) => [i[0], DataType.BOOL].slice(0, n.output.length),
  BatchNormalization: (i, n) => n.output.map(() => i[0]),
  Split: (i, n) => n.output.map(() => i[0]),
  LayerNormalization: (i, n) => [i[0], DataType.FLOAT, DataType.FLOAT].slice(0, n.output.length),
  // Control flow: outputs are typed by the bodies (If: the branch outputs; Loop: body outputs after
  // the condition; Scan: body outputs).
  If: (_i, n, body) => {
    const t = body('then_branch');
    const e = body('else_branch');
    return n.output.map((_, k) => t[k] ?? e[k]);
  },
  Loop: (_i, n, body) => body('body').slice(1, 1 + n.output.length),
  Scan: (_i, n, body) => body('body').slice(0, n.output.length),
};

/** Microsoft-domain rules that differ from "same as input 0". */
const msRules: Record<string, TypeRule> = {
  DynamicQuantizeMatMul: fixed(DataType.FLOAT),
  MatMulIntegerToFloat: fixed(DataType.FLOAT),
  MatMulNBits: sameAsInput(0),
  MatMulBnb4: sameAsInput(0),
  GatherBlockQuantized: sameAsInput(2), // dequantized into the scales' type
  QLinearAdd: sameAsInput(7),
  QLinearMul: sameAsInput(7),
  QLinearGlobalAveragePool: sameAsInput(0),
  QLinearAveragePool: sameAsInput(0),
  QLinearConcat: sameAsInput(2),
  QLinearSigmoid: sameAsInput(0),
  QLinearLeakyRelu: sameAsInput(0),
  QLinearSoftmax: sameAsInput(0),
  QuantizeLinear: (i) => [i[2] ?? DataType.UINT8],
  DequantizeLinear: fixed(DataType.FLOAT),
};

/**
 * Infers the element type of every value in `graph` (and records what value_info/inputs say).
 * Unknown stays absent from the map; callers treat absent as "unknown", never as float.
 */
export function inferElemTypes(graph: Graph, outer?: Map<string, number>): Map<string, number> {
  const types = new Map<string, number>(outer);
  for (const v of [...graph.inputs, ...graph.outputs, ...graph.valueInfo.values()]) {
    const t = valueInfoTensor(v).elemType;
    if (v.name && t) types.set(v.name, t);
  }
  for (const [name, t] of graph.initializers) if (t.dataType) types.set(name, t.dataType);
  let order: NodeProto[];
  try {
    order = graph.topoSort();
  } catch {
    order = graph.nodes;
  }
  for (const n of order) {
    const ins = n.input.map((i) => (i ? types.get(i) : undefined));
    const domain = n.domain ?? '';
    const rule =
      domain === 'com.microsoft' ? msRules[n.opType ?? ''] : domain === '' || domain === 'ai.onnx' ? typeRules[n.opType ?? ''] : undefined;
    const bodies = new Map<string, Graph>(graph.subgraphs(n).map((s) => [s.attribute, s.graph]));
    const bodyTypes = new Map<Graph, Map<string, number>>();
    for (const sub of bodies.values()) bodyTypes.set(sub, inferElemTypes(sub, types));
    const body = (attr: string): (number | undefined)[] => {
      const sub = bodies.get(attr);
      if (!sub) return [];
      const t = bodyTypes.get(sub)!;
      return sub.outputs.map((v) => t.get(v.name ?? ''));
    };
    const outs = rule ? rule(ins, n, body) : n.output.map(() => ins[0]);
    n.output.forEach((o, k) => {
      const t = outs[k];
      if (o && t && !types.has(o)) types.set(o, t);
    });
    for (const t of bodyTypes.values()) for (const [k, v] of t) if (!types.has(k)) types.set(k, v);
  }
  return types;
}

/** True when `t` is a floating-point DataType that quantization applies to. */
export function isFloatType(t: number | undefined): boolean {
  return t === DataType.FLOAT || t === DataType.FLOAT16 || t === DataType.BFLOAT16 || t === DataType.DOUBLE;
}
