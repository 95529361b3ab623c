// Taps inside If/Loop/Scan bodies. ONNX Runtime returns main-graph values only, so a value computed inside a
// body is threaded out through its control-flow node: the body gets one more output (an Identity of the
// value) and the node one more output, level by level up to the main graph, where passes/taps.ts can tap it.
//   If:   both branches must have the same outputs, so the branch that does not compute the value outputs an
//         empty tensor ([0], same element type; If allows different shapes per branch since opset 11). A tap
//         that comes back empty is a branch that did not run: observers must skip it.
//   Loop: the value becomes a scan output (one more body output after the existing ones): the values of
//         every iteration, stacked (their shapes must agree across iterations, as for any scan output).
//   Scan: likewise, a scan output stacked along axis 0 (scan_output_axes/directions extended when present).
// The model given is not modified. Pure.

import { makeAttribute } from '../onnx/attributes.js';
import { inferElemTypes } from '../onnx/infer.js';
import { makeNode, makeValueInfo, type Graph, type Model } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { makeTensor, type TensorStorage } from '../onnx/tensor.js';
import { cloneModelDeep } from './qdq-subgraph.js';

/** A model whose body values the caller asked for are main-graph values too. */
export interface SubgraphTaps {
  /** The model to run (the input model itself when nothing had to be threaded out). */
  model: Model;
  /**
   * Per requested name, the main-graph value to tap: the name itself for main-graph values (and for names
   * found nowhere, which the tapping then reports), a new output of a control-flow node for body values.
   */
  carriers: Map<string, string>;
  /**
   * Requested names threaded out of a body. Their carrier may be an empty placeholder (an If branch that did
   * not run) or stack one value per iteration (Loop/Scan); a name never seen non-empty never ran.
   */
  inBodies: Set<string>;
  /** Requested names inside bodies that cannot be threaded out (not a float tensor, or under an op other than If/Loop/Scan). */
  untapped: string[];
}

/** Element types an empty placeholder can be made of: the float types calibration observes. */
const EMPTY: Readonly<Record<number, () => TensorStorage>> = {
  [DataType.FLOAT]: () => new Float32Array(0),
  [DataType.FLOAT16]: () => new Uint16Array(0),
  [DataType.DOUBLE]: () => new Float64Array(0),
};

const controlFlow = (n: NodeProto): string | undefined =>
  (!n.domain || n.domain === 'ai.onnx') && (n.opType === 'If' || n.opType === 'Loop' || n.opType === 'Scan') ? n.opType : undefined;

/** Values a graph defines itself: inputs, initializers and node outputs. */
function defined(graph: Graph): Set<string> {
  const s = new Set<string>([...graph.inputs.map((v) => v.name ?? ''), ...graph.initializers.keys()]);
  for (const n of graph.nodes) for (const o of n.output) if (o) s.add(o);
  return s;
}

/** Every value defined in the bodies under `graph`, at any depth. */
function definedInBodies(graph: Graph, into = new Set<string>()): Set<string> {
  for (const n of graph.nodes) {
    for (const { graph: sub } of graph.subgraphs(n)) {
      for (const name of defined(sub)) into.add(name);
      definedInBodies(sub, into);
    }
  }
  return into;
}

/** Appends 0 to an INTS attribute of `node` when it is present (Scan's per-scan-output lists). */
function extendInts(node: NodeProto, name: string): void {
  const i = node.attribute.findIndex((a) => a.name === name);
  if (i >= 0) node.attribute[i] = { ...node.attribute[i]!, ints: [...node.attribute[i]!.ints, 0n] };
}

/**
 * Threads the `wanted` values defined under `graph` (in it or in its bodies) out to `graph`; returns, per
 * value found, the name that carries it in `graph`. Edits the bodies and control-flow nodes in place.
 */
function thread(graph: Graph, wanted: ReadonlySet<string>, types: ReadonlyMap<string, number>): Map<string, string> {
  const here = new Map<string, string>();
  const own = defined(graph);
  for (const w of wanted) if (own.has(w)) here.set(w, w);
  for (const node of graph.nodes.slice()) {
    const kind = controlFlow(node);
    if (!kind) continue;
    const rest = new Set([...wanted].filter((w) => !here.has(w)));
    if (!rest.size) break;
    const bodies = graph.subgraphs(node).map((s) => ({ ...s, found: thread(s.graph, rest, types) }));
    for (const name of bodies.flatMap((b) => [...b.found.keys()])) {
      const elemType = types.get(name);
      const empty = elemType === undefined ? undefined : EMPTY[elemType];
      if (!empty || (kind !== 'If' && bodies.length !== 1)) continue;
      for (const b of bodies) {
        const out = b.graph.freshName(`${name}_tap`);
        const inner = b.found.get(name);
        if (inner !== undefined) {
          b.graph.addNodes([makeNode('Identity', [inner], [out], { name: b.graph.freshName(`${name}_tap_Identity`) })]);
        } else {
          const value = makeTensor(b.graph.freshName(`${name}_tap_empty`), elemType!, [0], empty());
          b.graph.addNodes([makeNode('Constant', [], [out], { name: b.graph.freshName(`${name}_tap_Constant`), attribute: [makeAttribute('value', value)] })]);
        }
        b.graph.outputs.push(makeValueInfo(out, elemType));
      }
      const carrier = graph.freshName(`${name}_tap`);
      node.output.push(carrier);
      if (kind === 'Scan') {
        extendInts(node, 'scan_output_axes');
        extendInts(node, 'scan_output_directions');
      }
      here.set(name, carrier);
    }
  }
  graph.touch();
  return here;
}

/**
 * Makes the values `names` that live inside If/Loop/Scan bodies tappable: returns a copy of `model` in which
 * each is threaded out to a main-graph value (see the file comment), and which value carries each name.
 * Main-graph names are passed through unchanged; when no name lives in a body, `model` itself is returned.
 * Values inside bodies of an unknown or non-float element type, or under ops other than If/Loop/Scan, are
 * listed in `untapped` (calibration leaves them out: they are not quantized as activations).
 */
export function exposeSubgraphValues(model: Model, names: readonly string[]): SubgraphTaps {
  const carriers = new Map(names.map((n) => [n, n]));
  const main = defined(model.graph);
  const inside = definedInBodies(model.graph);
  const wanted = new Set(names.filter((n) => !main.has(n) && inside.has(n)));
  if (!wanted.size) return { model, carriers, inBodies: new Set(), untapped: [] };
  const out = cloneModelDeep(model);
  const found = thread(out.graph, wanted, inferElemTypes(out.graph));
  for (const [name, carrier] of found) carriers.set(name, carrier);
  const untapped = [...wanted].filter((n) => !found.has(n));
  for (const n of untapped) carriers.delete(n);
  return { model: out, carriers, inBodies: new Set(found.keys()), untapped };
}
