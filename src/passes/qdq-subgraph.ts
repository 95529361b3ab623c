// Static quantization inside If/Loop/Scan bodies: the bodies of a model in the order the QDQ engine
// rewrites them (children before their parents), private copies of their nodes, and "hoisting": the
// initializers of enclosing graphs a body reads (exported models keep a branch's weights in the main graph)
// are listed in the body under the same name while it is planned and rewritten, so the rule tables and the
// engine see them as the body's own constants; what is still read afterwards goes back to the outer copy. Pure.

import { Model, type Graph } from '../onnx/ir.js';
import type { GraphProto, NodeProto } from '../onnx/proto.js';
import { planGraph, type PlanOptions, type QdqPlan } from './qdq-plan.js';
import { removeIfUnused } from './quant-weight.js';

/** Control-flow ops whose bodies static quantization enters (default ONNX domain). */
export const CONTROL_FLOW_OPS: ReadonlySet<string> = new Set(['If', 'Loop', 'Scan']);

/** Whether `n` is an If/Loop/Scan of the default domain (the nodes whose bodies the passes enter). */
export const isControlFlow = (n: NodeProto): boolean => (!n.domain || n.domain === 'ai.onnx') && CONTROL_FLOW_OPS.has(n.opType ?? '');

function cloneNode(n: NodeProto): NodeProto {
  return {
    ...n,
    input: [...n.input],
    output: [...n.output],
    attribute: n.attribute.map((a) => (a.g ? { ...a, g: cloneGraphProto(a.g) } : a.graphs.length ? { ...a, graphs: a.graphs.map(cloneGraphProto) } : a)),
  };
}

function cloneGraphProto(g: GraphProto): GraphProto {
  return {
    ...g,
    node: g.node.map(cloneNode),
    input: g.input.map((v) => ({ ...v })),
    output: g.output.map((v) => ({ ...v })),
    valueInfo: g.valueInfo.map((v) => ({ ...v })),
    initializer: [...g.initializer],
  };
}

/**
 * A copy of `model` whose nodes, at every depth, can be edited without touching `model` (node and value-info
 * objects and the lists holding them are copied; tensors are shared).
 */
export function cloneModelDeep(model: Model): Model {
  const p = model.toProto();
  return new Model({ ...p, opsetImport: p.opsetImport.map((o) => ({ ...o })), graph: cloneGraphProto(p.graph!) });
}

/** Whether any node of `graph` holds an If/Loop/Scan body. */
export function hasBodies(graph: Graph): boolean {
  return graph.nodes.some((n) => isControlFlow(n) && graph.subgraphs(n).length > 0);
}

/** The If/Loop/Scan bodies under `graph` at every depth, each after the bodies nested in it (post-order). */
export function bodyGraphs(graph: Graph): Graph[] {
  const out: Graph[] = [];
  const walk = (g: Graph): void => {
    for (const n of g.nodes) {
      if (!isControlFlow(n)) continue;
      for (const { graph: sub } of g.subgraphs(n)) {
        walk(sub);
        out.push(sub);
      }
    }
  };
  walk(graph);
  return out;
}

/**
 * Constant nodes with a `value` tensor inside bodies become initializers of their body (what preprocessing
 * does for the main graph), so that weights written as Constant nodes count as weights. Returns the count.
 */
export function bodyConstantsToInitializers(root: Graph): number {
  let count = 0;
  for (const body of bodyGraphs(root)) {
    const drop: NodeProto[] = [];
    for (const n of body.nodes) {
      const out = n.output[0];
      const a = n.attribute[0];
      if (n.opType !== 'Constant' || (n.domain && n.domain !== 'ai.onnx') || !out || body.isGraphOutput(out)) continue;
      if (n.attribute.length !== 1 || a?.name !== 'value' || !a.t || body.initializers.has(out)) continue;
      body.setInitializer({ ...a.t, name: out });
      drop.push(n);
    }
    if (drop.length) body.removeNodes(drop);
    count += drop.length;
  }
  return count;
}

/** Marks `graph` and its enclosing graphs' producer/consumer indexes stale (a body's outer references changed). */
export function touchUp(graph: Graph): void {
  for (let g: Graph | undefined = graph; g; g = g.parent) g.touch();
}

/**
 * Lists in `body` (under the same names) the initializers of enclosing graphs it, or a body nested in it, reads.
 * Returns their names for {@link releaseHoisted}. Nothing is copied: the TensorProtos are shared.
 */
export function hoistOuterConstants(body: Graph): string[] {
  const names: string[] = [];
  for (const name of body.outerReferences()) {
    const t = body.parent?.initializer(name);
    if (!t || body.initializers.has(name)) continue;
    body.setInitializer(t);
    names.push(name);
  }
  if (names.length) touchUp(body);
  return names;
}

/**
 * Undoes {@link hoistOuterConstants}: the hoisted names the body still reads resolve to the outer initializer
 * again, and an outer initializer nothing reads any more (its float weight was replaced by a quantized one in
 * the body) is removed from the graph that owns it.
 */
export function releaseHoisted(body: Graph, names: readonly string[]): void {
  if (!names.length) return;
  for (const name of names) body.initializers.delete(name);
  touchUp(body);
  for (const name of names) {
    let owner = body.parent;
    while (owner && !owner.initializers.has(name)) owner = owner.parent;
    if (owner) removeIfUnused(owner, name);
  }
}

/** One body and its static-quantization plan. */
export interface BodyPlan {
  graph: Graph;
  plan: QdqPlan;
  /** The control-flow op holding it ('If', 'Loop', 'Scan'). */
  opType: string;
}

/**
 * Plans every If/Loop/Scan body under `root` with the same planner and options as the main graph, outer
 * initializers hoisted while each body is planned (and released afterwards: the model is left as it was).
 * Tensors of enclosing graphs a body reads as activations are planned as the body's own (a QuantizeLinear /
 * DequantizeLinear pair inside the body, where ORT can fuse it with the body's nodes). Children come first.
 * @throws LowbitError UNSUPPORTED_MODEL when a body is not a DAG.
 */
export function planBodies(root: Graph, opts: PlanOptions): BodyPlan[] {
  const opTypes = new Map<Graph, string>();
  const walk = (g: Graph): void => {
    for (const n of g.nodes) {
      if (!isControlFlow(n)) continue;
      for (const { graph } of g.subgraphs(n)) {
        opTypes.set(graph, n.opType!);
        walk(graph);
      }
    }
  };
  walk(root);
  return bodyGraphs(root).map((graph) => {
    const hoisted = hoistOuterConstants(graph);
    try {
      return { graph, plan: planGraph(graph, opts), opType: opTypes.get(graph) ?? '' };
    } finally {
      for (const name of hoisted) graph.initializers.delete(name);
      touchUp(graph);
    }
  });
}
