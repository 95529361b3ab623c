// Graph clean-up before static quantization: Constant nodes to initializers, Identity/Dropout removal,
// BatchNormalization folded into Conv, Gemm alpha/beta folded, Div by a constant turned into Mul, and the
// opset raised to 13 when safe. Each step keeps value names that exist in the input model. Pure.

import { attrFloat, attrInt, removeAttribute } from '../onnx/attributes.js';
import { Model, type Graph } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dimsOf, makeTensor } from '../onnx/tensor.js';
import { readFloatConstant, removeIfUnused } from './quant-weight.js';
import { upgradeOpset, type OpsetUpgrade } from './rules/qdq/opset.js';

/** What {@link preprocessForQuantization} did. */
export interface PreprocessResult {
  model: Model;
  /** One line per kind of change, e.g. "folded 35 BatchNormalization into Conv". */
  changes: string[];
  opset: OpsetUpgrade;
}

/** Options of {@link preprocessForQuantization}. */
export interface PreprocessOptions {
  /** Raise the default-domain opset to this (at most 21: see passes/rules/qdq/opset.ts) when every op can be carried over. Default 13. */
  targetOpset?: number;
}

/** A copy of `model` whose graph structure (nodes, inputs, outputs) can be edited without touching `model`. */
export function cloneModel(model: Model): Model {
  const p = model.toProto();
  const g = p.graph!;
  return new Model({
    ...p,
    opsetImport: p.opsetImport.map((o) => ({ ...o })),
    graph: {
      ...g,
      node: g.node.map((n) => ({ ...n, input: [...n.input], output: [...n.output], attribute: [...n.attribute] })),
      input: g.input.map((v) => ({ ...v })),
      output: g.output.map((v) => ({ ...v })),
      valueInfo: g.valueInfo.map((v) => ({ ...v })),
      initializer: [...g.initializer],
    },
  });
}

const isDefault = (n: NodeProto): boolean => !n.domain || n.domain === 'ai.onnx';

/** Constant nodes (value / value_float(s) / value_int(s)) become initializers; returns the count. */
export function constantsToInitializers(graph: Graph): number {
  const drop: NodeProto[] = [];
  for (const n of graph.nodes) {
    if (n.opType !== 'Constant' || !isDefault(n) || !n.output[0] || graph.isGraphOutput(n.output[0])) continue;
    const a = n.attribute[0];
    const name = n.output[0];
    let t: TensorProto | undefined;
    if (a?.name === 'value' && a.t) t = { ...a.t, name };
    else if (a?.name === 'value_float' && a.f !== undefined) t = makeTensor(name, DataType.FLOAT, [], Float32Array.of(a.f));
    else if (a?.name === 'value_floats') t = makeTensor(name, DataType.FLOAT, [a.floats.length], Float32Array.from(a.floats));
    else if (a?.name === 'value_int' && a.i !== undefined) t = makeTensor(name, DataType.INT64, [], BigInt64Array.of(a.i));
    else if (a?.name === 'value_ints') t = makeTensor(name, DataType.INT64, [a.ints.length], BigInt64Array.from(a.ints));
    if (!t || graph.initializers.has(name)) continue;
    graph.setInitializer(t);
    drop.push(n);
  }
  graph.removeNodes(drop);
  return drop.length;
}

/** Identity, and Dropout whose mask nobody reads, are removed; returns the count. */
function removeIdentities(graph: Graph): number {
  let removed = 0;
  for (const n of [...graph.nodes]) {
    if (!isDefault(n)) continue;
    const isDropout = n.opType === 'Dropout' && !n.input[2] && (!n.output[1] || (graph.consumers(n.output[1]).length === 0 && !graph.isGraphOutput(n.output[1])));
    if (n.opType !== 'Identity' && !isDropout) continue;
    const x = n.input[0];
    const y = n.output[0];
    if (!x || !y) continue;
    if (!graph.isGraphOutput(y)) {
      graph.removeNodes([n]);
      graph.replaceAllUses(y, x);
      removed++;
      continue;
    }
    const p = graph.producer(x);
    if (p && graph.consumers(x).length === 1 && !graph.isGraphOutput(x)) {
      p.output[p.output.indexOf(x)] = y;
      graph.removeNodes([n]);
      removed++;
    }
  }
  return removed;
}

const floatConst = (graph: Graph, name: string | undefined) => {
  if (!name) return undefined;
  const t = graph.initializer(name);
  return t && t.dataType === DataType.FLOAT ? readFloatConstant(graph, name) : undefined;
};

/** Conv -> BatchNormalization (inference, constant parameters) becomes one Conv; returns the count. */
function foldBatchNorm(graph: Graph): number {
  let folded = 0;
  for (const bn of [...graph.nodes]) {
    if (bn.opType !== 'BatchNormalization' || !isDefault(bn) || attrInt(bn, 'training_mode', 0) !== 0) continue;
    if (bn.output.slice(1).some((o) => o && (graph.consumers(o).length || graph.isGraphOutput(o)))) continue;
    const x = bn.input[0]!;
    const conv = graph.producer(x);
    if (!conv || conv.opType !== 'Conv' || !isDefault(conv) || graph.consumers(x).length !== 1 || graph.isGraphOutput(x)) continue;
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => floatConst(graph, bn.input[i]));
    const w = floatConst(graph, conv.input[1]);
    const b = conv.input[2] ? floatConst(graph, conv.input[2]) : undefined;
    if (!gamma || !beta || !mean || !variance || !w || (conv.input[2] && !b)) continue;
    const m = w.dims[0]!;
    if ([gamma, beta, mean, variance].some((p) => p.data.length !== m) || (b && b.data.length !== m)) continue;
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const per = w.data.length / m;
    const wNew = new Float32Array(w.data.length);
    const bNew = new Float32Array(m);
    for (let c = 0; c < m; c++) {
      const s = gamma.data[c]! / Math.sqrt(variance.data[c]! + eps);
      for (let i = c * per; i < (c + 1) * per; i++) wNew[i] = w.data[i]! * s;
      bNew[c] = ((b ? b.data[c]! : 0) - mean.data[c]!) * s + beta.data[c]!;
    }
    const oldW = conv.input[1]!;
    const oldB = conv.input[2];
    const wName = graph.freshName(`${oldW}_bn_folded`);
    const bName = graph.freshName(`${oldB || `${conv.name || 'Conv'}_bias`}_bn_folded`);
    graph.setInitializer(makeTensor(wName, DataType.FLOAT, w.dims, wNew));
    graph.setInitializer(makeTensor(bName, DataType.FLOAT, [m], bNew));
    conv.input = [conv.input[0]!, wName, bName];
    conv.output[0] = bn.output[0]!;
    graph.removeNodes([bn]);
    for (const name of [oldW, oldB, ...bn.input.slice(1)]) if (name) removeIfUnused(graph, name);
    folded++;
  }
  return folded;
}

/** Gemm alpha folded into a constant B, beta into a constant C, C of [1, N] reshaped to [N]; returns the count. */
function normalizeGemm(graph: Graph): number {
  let changed = 0;
  const scaled = (name: string, k: number, dims?: number[]): string => {
    const c = readFloatConstant(graph, name);
    const out = graph.freshName(`${name}_scaled`);
    graph.setInitializer(makeTensor(out, DataType.FLOAT, dims ?? c.dims, c.data.map((v) => v * k)));
    return out;
  };
  for (const n of graph.nodes) {
    if (n.opType !== 'Gemm' || !isDefault(n)) continue;
    const alpha = attrFloat(n, 'alpha', 1);
    const beta = attrFloat(n, 'beta', 1);
    const c = n.input[2] ? graph.initializer(n.input[2]) : undefined;
    const cDims = c ? dimsOf(c) : [];
    const cReshape = c && cDims.length === 2 && cDims[0] === 1 && c.dataType === DataType.FLOAT;
    let did = false;
    if (alpha !== 1 && floatConst(graph, n.input[1])) {
      n.input[1] = scaled(n.input[1]!, alpha);
      removeAttribute(n, 'alpha');
      did = true;
    }
    if (n.input[2] && floatConst(graph, n.input[2]) && (beta !== 1 || cReshape)) {
      n.input[2] = scaled(n.input[2]!, beta, cReshape ? [cDims[1]!] : undefined);
      removeAttribute(n, 'beta');
      did = true;
    }
    if (did) {
      graph.touch();
      changed++;
    }
  }
  return changed;
}

/** Div(x, c) with a float constant c (finite, non-zero) becomes Mul(x, 1/c), which has a quantized kernel. */
function divToMul(graph: Graph): number {
  let changed = 0;
  for (const n of graph.nodes) {
    if (n.opType !== 'Div' || !isDefault(n)) continue;
    const c = floatConst(graph, n.input[1]);
    if (!c || !c.data.every((v) => Number.isFinite(v) && v !== 0 && Number.isFinite(1 / v))) continue;
    const name = graph.freshName(`${n.input[1]}_reciprocal`);
    graph.setInitializer(makeTensor(name, DataType.FLOAT, c.dims, c.data.map((v) => 1 / v)));
    const old = n.input[1]!;
    n.opType = 'Mul';
    n.input[1] = name;
    graph.touch();
    removeIfUnused(graph, old);
    changed++;
  }
  return changed;
}

/**
 * Returns a cleaned-up copy of `model` for static quantization (the input is not modified). Value names
 * of the input model are kept (a folded Conv writes the BatchNormalization's output name), so ranges
 * calibrated on either model apply to both. Running it twice changes nothing the second time.
 * @throws LowbitError BAD_DATA / EXTERNAL_DATA when a constant cannot be read.
 */
export function preprocessForQuantization(model: Model, opts: PreprocessOptions = {}): PreprocessResult {
  let out = cloneModel(model);
  const changes: string[] = [];
  const note = (count: number, what: string): void => {
    if (count) changes.push(`${what}: ${count}`);
  };
  const from = out.opset('') ?? 1;
  let opset: OpsetUpgrade = { upgraded: false, from, to: from, blockers: [] };
  const target = opts.targetOpset ?? 13;
  if (from < target) {
    const trial = cloneModel(out);
    opset = upgradeOpset(trial.graph, from, target);
    if (opset.upgraded) {
      trial.setOpset('', opset.to);
      out = trial;
      changes.push(`opset raised from ${from} to ${opset.to}`);
    }
  }
  const g = out.graph;
  note(constantsToInitializers(g), 'Constant nodes turned into initializers');
  note(removeIdentities(g), 'Identity/Dropout nodes removed');
  note(foldBatchNorm(g), 'BatchNormalization folded into Conv');
  note(normalizeGemm(g), 'Gemm alpha/beta folded into constants');
  note(divToMul(g), 'Div by a constant turned into Mul');
  return { model: out, changes, opset };
}
