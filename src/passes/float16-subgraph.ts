// fp16 / bf16 conversion inside If/Loop/Scan bodies (the entry is ./float16.ts): which nodes are kept float32 in
// every body (a blocked If/Loop/Scan keeps its bodies whole), the interface each body gets from its node (formal
// inputs and outputs typed like the node's inputs and outputs, Loop carried values and Scan states kept one type
// through the body), the Casts a body's outputs need, and the refusal of nodes holding other subgraphs. Each body is
// converted by the graph conversion of ./float16.ts, handed in as a callback. Pure.

import { LowbitError } from '../errors.js';
import { attrInt } from '../onnx/attributes.js';
import { inferElemTypes } from '../onnx/infer.js';
import type { Graph } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import type { Float16Type } from './float16.js';
import { isControlFlow } from './qdq-subgraph.js';
import { nodePath } from './graph-scopes.js';

/**
 * Refuses nodes holding subgraphs other than If/Loop/Scan bodies (SequenceMap, custom-domain ops), at every depth.
 * @throws LowbitError UNSUPPORTED_MODEL naming the first such node
 */
export function checkSubgraphs(graph: Graph): void {
  for (const n of graph.nodes) {
    const subs = graph.subgraphs(n);
    if (subs.length && !isControlFlow(n)) {
      throw new LowbitError(
        'UNSUPPORTED_MODEL',
        `node '${n.name ?? ''}' (${n.opType}) holds a subgraph; fp16/bf16 conversion handles If/Loop/Scan bodies only`,
        'convert a model without this op, or keep it float32 (dynamic or static int8 quantization handle subgraphs)',
      );
    }
    for (const { graph: sub } of subs) checkSubgraphs(sub);
  }
}

/** One graph's blocked nodes and why; `inherited` set when the graph is the body of a blocked node. */
export interface GraphBlocks {
  /** Path prefix of the graph's nodes (`if_node/then_branch/`; '' for the main graph). */
  prefix: string;
  blocked: Map<NodeProto, string>;
  inherited: boolean;
}

/** The blocked nodes of every graph, bodies included. */
export type Blocks = Map<Graph, GraphBlocks>;

/** What the conversion of a body needs to know of the whole conversion. */
export interface BodyTarget {
  /** DataType.FLOAT16 or DataType.BFLOAT16. */
  elem: number;
  type: Float16Type;
  /** Scan below opset 9 has a sequence_lens input first. */
  scanOffset: number;
}

/** An If/Loop/Scan body's interface, set by its node: the type each formal input / output must end with. */
export interface BodyIo {
  /** FLOAT16/BFLOAT16 or FLOAT per formal input; undefined: not a float value, left as it is. */
  inWant: (number | undefined)[];
  outWant: (number | undefined)[];
  /** Whether an enclosing graph's value is 16-bit after conversion. */
  outerHalf: (name: string) => boolean;
  /** The body's node, for messages. */
  owner: string;
}

/**
 * Which nodes are kept float32, in `graph` and every body under it (a blocked If/Loop/Scan keeps its bodies whole):
 * `reason` gives a node's reason to be kept float32 (with its path inside a body), or undefined.
 */
export function collectBlocks(
  graph: Graph,
  prefix: string,
  inherited: boolean,
  blocks: Blocks,
  reason: (n: NodeProto, path: string | undefined) => string | undefined,
): void {
  const blocked = new Map<NodeProto, string>();
  graph.nodes.forEach((n, i) => {
    const why = inherited ? 'inside a blocked If/Loop/Scan' : reason(n, prefix ? nodePath({ prefix }, n, i) : undefined);
    if (why !== undefined) blocked.set(n, why);
  });
  blocks.set(graph, { prefix, blocked, inherited });
  graph.nodes.forEach((n, i) => {
    if (!isControlFlow(n)) return;
    for (const { attribute, graph: sub } of graph.subgraphs(n)) collectBlocks(sub, `${nodePath({ prefix }, n, i)}/${attribute}/`, blocked.has(n), blocks, reason);
  });
}

/**
 * Whether a node inside a body under `graph` (at any depth) reads the outer value `name` in a 16-bit slot
 * (`floatOnly`: whether a slot of a node stays float32, given its graph's blocked nodes).
 */
export function bodyReadsHalf(
  graph: Graph,
  name: string,
  blocks: Blocks,
  floatOnly: (blocked: ReadonlyMap<NodeProto, string>, n: NodeProto, slot: number) => boolean,
): boolean {
  for (const n of graph.nodes) {
    if (!isControlFlow(n)) continue;
    for (const { graph: sub } of graph.subgraphs(n)) {
      if (sub.initializers.has(name) || sub.inputs.some((v) => v.name === name)) continue;
      const { blocked } = blocks.get(sub)!;
      if (sub.nodes.some((m) => m.input.some((v, k) => v === name && !floatOnly(blocked, m, k)))) return true;
      if (bodyReadsHalf(sub, name, blocks, floatOnly)) return true;
    }
  }
  return false;
}

/**
 * The type each If/Loop/Scan output of `graph` ends with (16-bit when in `half`, float32, or undefined: not float),
 * for its bodies; taken before the graph's outputs are renamed.
 */
export function bodyOutTypes(graph: Graph, half: ReadonlySet<string>, types: ReadonlyMap<string, number>, elem: number): Map<NodeProto, (number | undefined)[]> {
  const F32 = DataType.FLOAT;
  const outTypes = new Map<NodeProto, (number | undefined)[]>();
  for (const n of graph.nodes) if (isControlFlow(n)) outTypes.set(n, n.output.map((o) => (!o ? undefined : half.has(o) ? elem : types.get(o) === F32 ? F32 : undefined)));
  return outTypes;
}

function unsupported(message: string): LowbitError {
  return new LowbitError('UNSUPPORTED_MODEL', message, 'keep the model float32, or block the node (blockNodes / --exclude-nodes) so that its bodies stay float32');
}

/**
 * A body's outputs and formal inputs after its nodes are converted: each output gets the type its node wants (`cast`
 * adds a Cast to a fresh output name where the value has the other float type), declared float32 types become the
 * wanted ones.
 * @throws LowbitError UNSUPPORTED_MODEL when a float output's type cannot be inferred or its counterpart's is unknown
 */
export function retypeBodyIo(
  graph: Graph,
  io: BodyIo,
  half: ReadonlySet<string>,
  types: ReadonlyMap<string, number>,
  target: BodyTarget,
  cast: (from: string, to: string, elem: number) => void,
): void {
  const F32 = DataType.FLOAT;
  graph.outputs.forEach((o, k) => {
    const name = o.name ?? '';
    const want = io.outWant[k];
    const cur = half.has(name) || io.outerHalf(name) ? target.elem : types.get(name);
    if (want === undefined) {
      if (cur === F32 || cur === target.elem) throw unsupported(`${io.owner}: body output ${k} ('${name}') is float32 but the node's output ${k} has an element type lowbit cannot infer`);
      return;
    }
    if (cur !== want) {
      if (cur !== F32 && cur !== target.elem) throw unsupported(`${io.owner}: body output ${k} ('${name}') must be float (the node's output ${k} is), but lowbit cannot infer its element type`);
      const fresh = graph.freshName(`${name}_${want === F32 ? 'fp32' : target.type === 'float16' ? 'fp16' : 'bf16'}`);
      cast(name, fresh, want);
      o.name = fresh;
    }
    const tt = o.type?.tensorType;
    if (tt && (tt.elemType === F32 || tt.elemType === target.elem)) tt.elemType = want;
  });
  graph.inputs.forEach((v, k) => {
    const tt = v.type?.tensorType;
    if (io.inWant[k] === target.elem && tt && tt.elemType === F32) tt.elemType = target.elem;
  });
}

/**
 * Converts the bodies of `graph`'s If/Loop/Scan nodes, each by `convert` with the interface its node now has and its
 * element types inferred from the enclosing ones. `halfHere`: whether a value of `graph` or an enclosing graph is 16-bit
 * once converted; `isBody`: `graph` is itself a body (owners named by path).
 */
export function convertBodies(
  graph: Graph,
  blocks: Blocks,
  outTypes: ReadonlyMap<NodeProto, (number | undefined)[]>,
  types: Map<string, number>,
  halfHere: (name: string) => boolean,
  isBody: boolean,
  target: BodyTarget,
  convert: (sub: Graph, types: Map<string, number>, io: BodyIo) => void,
): void {
  const { prefix, blocked } = blocks.get(graph)!;
  graph.nodes.forEach((n, i) => {
    if (!isControlFlow(n)) return;
    const owner = `${n.opType} '${isBody ? nodePath({ prefix }, n, i) : (n.name ?? '')}'`;
    for (const { attribute, graph: sub } of graph.subgraphs(n)) {
      const seeded = new Map(types);
      const bio = bodyInterface(n, sub, blocked.has(n), outTypes.get(n) ?? [], types, seeded, target, `${owner} (${attribute})`);
      convert(sub, inferElemTypes(sub, seeded), { ...bio, outerHalf: halfHere, owner: `${owner} (${attribute})` });
    }
  });
}

/**
 * The types an If/Loop/Scan body's formal inputs and outputs must have once converted: those of its node's inputs
 * (16-bit for a converted node, float32 for a blocked one) and outputs. Float formal inputs without a declared type
 * are typed into `seeded` (the body's outer types). Loop carried values and Scan states must keep one type through
 * the body.
 * @throws LowbitError UNSUPPORTED_MODEL when a float formal input or output's counterpart has an unknown type
 */
function bodyInterface(
  n: NodeProto,
  sub: Graph,
  nodeBlocked: boolean,
  outTypes: (number | undefined)[],
  types: Map<string, number>,
  seeded: Map<string, number>,
  target: BodyTarget,
  owner: string,
): Pick<BodyIo, 'inWant' | 'outWant'> {
  const F32 = DataType.FLOAT;
  const inner = nodeBlocked ? F32 : target.elem;
  const op = n.opType;
  const inWant: (number | undefined)[] = sub.inputs.map(() => undefined);
  let outWant: (number | undefined)[] = sub.outputs.map(() => undefined);
  if (op === 'If') return { inWant, outWant: sub.outputs.map((_, k) => outTypes[k]) };
  // Formal input k of the body <- node input from[k]; outputs: body output k -> node output to[k].
  let from: number[];
  let to: number[];
  /** Body output k carries the value of formal input carry[k] (Loop carried values, Scan states). */
  let carry: (number | undefined)[];
  if (op === 'Loop') {
    from = sub.inputs.map((_, k) => (k < 2 ? -1 : k));
    to = sub.outputs.map((_, k) => k - 1);
    const carried = Math.max(0, n.input.length - 2);
    carry = sub.outputs.map((_, k) => (k >= 1 && k <= carried ? k + 1 : undefined));
  } else {
    const off = target.scanOffset;
    const states = n.input.length - off - (attrInt(n, 'num_scan_inputs') ?? 0);
    from = sub.inputs.map((_, k) => k + off);
    to = sub.outputs.map((_, k) => k);
    carry = sub.outputs.map((_, k) => (k < states ? k : undefined));
  }
  sub.inputs.forEach((v, k) => {
    if (from[k]! < 0) return;
    const src = n.input[from[k]!];
    const declared = v.type?.tensorType?.elemType;
    const outer = src ? types.get(src) : undefined;
    if (outer === F32) {
      inWant[k] = inner;
      if (!declared && v.name) seeded.set(v.name, F32);
    } else if (declared === F32 && outer === undefined) {
      throw unsupported(`${owner}: formal input ${k} ('${v.name ?? ''}') is float32 but the node's input '${src ?? ''}' has an element type lowbit cannot infer`);
    }
  });
  outWant = sub.outputs.map((_, k) => {
    const c = carry[k];
    const t = to[k]! >= 0 ? outTypes[to[k]!] : undefined;
    const named = to[k]! >= 0 && !!n.output[to[k]!];
    if (c === undefined) return t;
    const w = inWant[c];
    if (named && t !== w) {
      throw unsupported(
        `${owner}: the value carried in formal input ${c} ('${sub.inputs[c]?.name ?? ''}') and out of body output ${k} ('${sub.outputs[k]?.name ?? ''}') would change type (${w === undefined ? 'not float' : w === F32 ? 'float32' : target.type} in, ${t === undefined ? 'not float / unknown' : t === F32 ? 'float32' : target.type} out)`,
      );
    }
    return w;
  });
  return { inWant, outWant };
}
