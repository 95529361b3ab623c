// Taps: a copy of a model whose graph outputs also expose chosen intermediate values, so that one
// run returns them (calibration statistics, shape discovery, per-layer error). Pure.
//
// Typing of the added outputs: the value's own value_info (or graph input entry) when it has a
// tensor type, the tensor's type for initializers, else a name-only ValueInfoProto. ONNX Runtime
// 1.30 accepts name-only graph outputs (it infers their types; sequences come back as non-tensor
// outputs), and a guessed type would make ORT reject the model when the guess is wrong, so
// inferElemTypes is deliberately not used here.

import { LowbitError } from '../errors.js';
import { Model, makeValueInfo } from '../onnx/ir.js';
import type { GraphProto, ModelProto, ValueInfoProto } from '../onnx/proto.js';

/** The values of a main graph by where they come from. */
export interface GraphValues {
  /** Graph inputs that are not initializers (fed by the caller). */
  inputs: string[];
  /** Initializers (including those also listed as inputs, which a feed may override). */
  initializers: string[];
  /** Node outputs, in node order (empty optional-output names left out). */
  nodeOutputs: string[];
}

function graphOf(model: Model | ModelProto): { proto: ModelProto; graph: GraphProto } {
  const proto = model instanceof Model ? model.toProto() : model;
  if (!proto.graph) throw new LowbitError('NOT_ONNX', 'the model has no graph', 'is this an ONNX model file? try `lowbit inspect`');
  return { proto, graph: proto.graph };
}

/** Lists the values of the model's main graph (subgraph values are not listed: they cannot be tapped). */
export function graphValues(model: Model | ModelProto): GraphValues {
  const { graph } = graphOf(model);
  const inits = new Set(graph.initializer.map((t) => t.name ?? ''));
  const seen = new Set<string>();
  const nodeOutputs: string[] = [];
  for (const n of graph.node) {
    for (const o of n.output) {
      if (o && !seen.has(o)) {
        seen.add(o);
        nodeOutputs.push(o);
      }
    }
  }
  return {
    inputs: graph.input.map((v) => v.name ?? '').filter((n) => n && !inits.has(n)),
    initializers: [...inits].filter((n) => n !== ''),
    nodeOutputs,
  };
}

/**
 * Returns a copy of `model` whose graph outputs also include `names` (in the given order, after
 * the existing outputs). Names that already are outputs, and repeats, are skipped. Graph inputs
 * and initializers may be named (ORT 1.30 returns them), though runtime/'s TappedSession serves
 * those itself. The copy shares nodes, initializers and everything else with `model`.
 * @throws LowbitError('BAD_OPTION') naming the first value that is not in the main graph;
 *   LowbitError('NOT_ONNX') for a model without a graph.
 */
export function addTaps(model: Model | ModelProto, names: readonly string[]): ModelProto {
  const { proto, graph } = graphOf(model);
  const vals = graphValues(proto);
  const known = new Set([...vals.inputs, ...vals.initializers, ...vals.nodeOutputs]);
  const outputs = new Set(graph.output.map((o) => o.name ?? ''));
  const infos = new Map<string, ValueInfoProto>();
  for (const v of [...graph.input, ...graph.valueInfo]) if (v.name && v.type?.tensorType) infos.set(v.name, v);
  const inits = new Map(graph.initializer.map((t) => [t.name ?? '', t]));
  const added: ValueInfoProto[] = [];
  for (const name of names) {
    if (!known.has(name)) {
      throw new LowbitError(
        'BAD_OPTION',
        `cannot tap '${name}': no node output, input or initializer of the main graph${graph.name ? ` '${graph.name}'` : ''} has that name`,
        'list value names with `lowbit inspect`; values inside If/Loop/Scan bodies cannot be tapped',
      );
    }
    if (outputs.has(name)) continue;
    outputs.add(name);
    const info = infos.get(name);
    const init = inits.get(name);
    if (info) added.push({ ...info, name });
    else if (init?.dataType) added.push(makeValueInfo(name, init.dataType, init.dims.map((d) => Number(d))));
    else added.push({ name, metadataProps: [] });
  }
  return { ...proto, graph: { ...graph, output: [...graph.output, ...added] } };
}
