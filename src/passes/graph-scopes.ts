// The graphs a pass visits: the main graph and, at every depth, its If/Loop/Scan bodies, with the element types of
// each, the graph that defines a name seen from a body, and the report path of a body node. Shared by the
// weight-only, embedding and float16 passes. Pure.

import { inferElemTypes } from '../onnx/infer.js';
import { nodeLabel, type Graph } from '../onnx/ir.js';
import type { NodeProto } from '../onnx/proto.js';
import { CONTROL_FLOW_OPS } from './qdq-subgraph.js';

/** A graph a pass visits: the main graph or an If/Loop/Scan body under it. */
export interface WeightScope {
  graph: Graph;
  /** What the reports put before the names of its nodes: '' for the main graph, see {@link nodePath}. */
  prefix: string;
  /** Element types of its values, those of enclosing graphs included. */
  types: Map<string, number>;
}

/**
 * The report name of a node: its name (or `(unnamed OP #i)`, i its index in its graph), prefixed inside an
 * If/Loop/Scan body by `<control-flow node>/<attribute>/` for each enclosing body, outermost first, e.g.
 * `decoder_if/then_branch/lm_head` or `loop/body/inner_if/else_branch/(unnamed MatMul #3)`.
 */
export function nodePath(scope: Pick<WeightScope, 'prefix'>, node: NodeProto, index: number): string {
  return scope.prefix + nodeLabel(node, index);
}

/**
 * The main graph, then (with `bodies`) each If/Loop/Scan body of the default domain under it at every depth,
 * in pre-order (a body after the graph holding it). Element types are inferred per graph, outer ones first.
 */
export function weightScopes(root: Graph, bodies: boolean): WeightScope[] {
  const out: WeightScope[] = [];
  const visit = (graph: Graph, prefix: string, types: Map<string, number>): void => {
    out.push({ graph, prefix, types });
    if (!bodies) return;
    graph.nodes.forEach((n, i) => {
      if ((n.domain ?? '') !== '' && n.domain !== 'ai.onnx') return;
      if (!CONTROL_FLOW_OPS.has(n.opType ?? '')) return;
      for (const { attribute, graph: sub } of graph.subgraphs(n)) visit(sub, `${prefix}${nodeLabel(n, i)}/${attribute}/`, inferElemTypes(sub, types));
    });
  };
  visit(root, '', inferElemTypes(root));
  return out;
}

/**
 * The graph that defines `name` as seen from `g`: `g` or the nearest enclosing graph holding it as an initializer,
 * a graph input or a node output; undefined when none does.
 */
export function definingGraph(g: Graph, name: string): Graph | undefined {
  for (let s: Graph | undefined = g; s; s = s.parent) {
    if (s.initializers.has(name) || s.producer(name) || s.inputs.some((v) => v.name === name)) return s;
  }
  return undefined;
}

/** Marks the producer/consumer indexes of every scope stale (bodies' outer references changed). */
export function touchScopes(scopes: readonly WeightScope[]): void {
  for (const s of scopes) s.graph.touch();
}
