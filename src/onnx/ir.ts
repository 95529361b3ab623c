// The editable in-memory graph: nodes, values, initializers, producers/consumers, subgraphs.
// Pure; built from / written back to the proto messages. Passes import this.
//
// Nodes are the codec's NodeProto objects (no wrapper): a pass may read them freely, but edits go
// through Graph methods so the producer/consumer index stays right (or call `graph.touch()` after
// editing `node.input` / `node.output` by hand).

import { LowbitError } from '../errors.js';
import { AttributeType } from './proto.js';
import type {
  AttributeProto,
  GraphProto,
  ModelProto,
  NodeProto,
  OperatorSetIdProto,
  TensorProto,
  ValueInfoProto,
} from './proto.js';

/** The domain ONNX calls '' and 'ai.onnx' alike. */
/** ONNX Runtime's contrib-op domain (MatMulNBits, QLinearAdd, DynamicQuantizeMatMul, ...). */
export const MS_DOMAIN = 'com.microsoft';

/** A node's name for reports: its name, or `(unnamed <op> #<index>)` for an unnamed one. */
export function nodeLabel(node: NodeProto, index: number): string {
  return node.name || `(unnamed ${node.opType} #${index})`;
}

function normDomain(d: string | undefined): string {
  return d === undefined || d === 'ai.onnx' ? '' : d;
}

/** A fresh NodeProto with empty repeated fields. */
export function makeNode(
  opType: string,
  input: string[],
  output: string[],
  opts: { name?: string; domain?: string; attribute?: AttributeProto[] } = {},
): NodeProto {
  const n: NodeProto = { input, output, opType, attribute: opts.attribute ?? [], metadataProps: [] };
  if (opts.name !== undefined) n.name = opts.name;
  if (opts.domain) n.domain = opts.domain;
  return n;
}

/** A ValueInfoProto for a tensor of `elemType` and `dims` (number = fixed, string = symbolic, undefined = unknown). */
export function makeValueInfo(name: string, elemType?: number, dims?: (number | string | undefined)[]): ValueInfoProto {
  const vi: ValueInfoProto = { name, metadataProps: [] };
  if (elemType !== undefined) {
    vi.type = { tensorType: { elemType } };
    if (dims) {
      vi.type.tensorType!.shape = {
        dim: dims.map((d) =>
          typeof d === 'number' ? { dimValue: BigInt(d) } : typeof d === 'string' ? { dimParam: d } : {},
        ),
      };
    }
  }
  return vi;
}

/** Element type and dims of a tensor-typed ValueInfo (dims: number | string | undefined each). */
export function valueInfoTensor(
  vi: ValueInfoProto | undefined,
): { elemType: number | undefined; dims: (number | string | undefined)[] | undefined } {
  const tt = vi?.type?.tensorType;
  const dims = tt?.shape?.dim.map((d) =>
    d.dimValue !== undefined ? Number(d.dimValue) : d.dimParam !== undefined ? d.dimParam : undefined,
  );
  return { elemType: tt?.elemType, dims };
}

/** An editable graph. Subgraphs (If/Loop/Scan bodies) are Graphs too, with `parent` set. */
export class Graph {
  /** Fields carried through unchanged (name, doc, sparse initializers, annotations, unknown fields). */
  readonly rest: Omit<GraphProto, 'node' | 'initializer' | 'input' | 'output' | 'valueInfo'>;
  nodes: NodeProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  /** value_info entries by value name (insertion order kept for output). */
  readonly valueInfo: Map<string, ValueInfoProto>;
  /** Initializers by name (insertion order kept). */
  readonly initializers: Map<string, TensorProto>;
  readonly parent: Graph | undefined;
  private readonly subgraphMap = new Map<AttributeProto, Graph[]>();
  private index: { producer: Map<string, NodeProto>; consumers: Map<string, NodeProto[]> } | undefined;
  private nameCounter = 0;

  constructor(proto: GraphProto, parent?: Graph) {
    const { node, initializer, input, output, valueInfo, ...rest } = proto;
    this.rest = rest;
    this.nodes = node.slice();
    this.inputs = input.slice();
    this.outputs = output.slice();
    this.valueInfo = new Map(valueInfo.map((v) => [v.name ?? '', v]));
    this.initializers = new Map(initializer.map((t) => [t.name ?? '', t]));
    this.parent = parent;
    for (const n of this.nodes) this.wrapSubgraphs(n);
  }

  get name(): string {
    return this.rest.name ?? '';
  }

  private wrapSubgraphs(n: NodeProto): void {
    for (const a of n.attribute) {
      if (a.g) this.subgraphMap.set(a, [new Graph(a.g, this)]);
      else if (a.graphs.length) this.subgraphMap.set(a, a.graphs.map((g) => new Graph(g, this)));
    }
  }

  /** The subgraphs held by a node's GRAPH/GRAPHS attributes, as editable Graphs. */
  subgraphs(node: NodeProto): { attribute: string; graph: Graph }[] {
    const out: { attribute: string; graph: Graph }[] = [];
    for (const a of node.attribute) {
      if (a.type !== AttributeType.GRAPH && a.type !== AttributeType.GRAPHS && !a.g && !a.graphs.length) continue;
      let gs = this.subgraphMap.get(a);
      if (!gs) {
        this.wrapSubgraphs({ ...node, attribute: [a] });
        gs = this.subgraphMap.get(a) ?? [];
      }
      for (const g of gs) out.push({ attribute: a.name ?? '', graph: g });
    }
    return out;
  }

  /** Marks the producer/consumer index stale after hand edits of node inputs/outputs. */
  touch(): void {
    this.index = undefined;
  }

  private idx(): { producer: Map<string, NodeProto>; consumers: Map<string, NodeProto[]> } {
    if (this.index) return this.index;
    const producer = new Map<string, NodeProto>();
    const consumers = new Map<string, NodeProto[]>();
    const use = (name: string, n: NodeProto): void => {
      if (!name) return;
      const list = consumers.get(name);
      if (!list) consumers.set(name, [n]);
      else if (list[list.length - 1] !== n) list.push(n);
    };
    for (const n of this.nodes) {
      for (const o of n.output) if (o) producer.set(o, n);
      for (const i of n.input) use(i, n);
      for (const name of this.implicitInputs(n)) use(name, n);
    }
    this.index = { producer, consumers };
    return this.index;
  }

  /** Values a node's subgraphs read from enclosing scopes (ONNX "implicit inputs"). */
  implicitInputs(node: NodeProto): string[] {
    const found = new Set<string>();
    for (const { graph } of this.subgraphs(node)) {
      for (const name of graph.outerReferences()) found.add(name);
    }
    return [...found];
  }

  /** Names this graph (and its subgraphs) use but do not define. */
  outerReferences(): Set<string> {
    const defined = new Set<string>([...this.inputs.map((v) => v.name ?? ''), ...this.initializers.keys()]);
    for (const n of this.nodes) for (const o of n.output) defined.add(o);
    const refs = new Set<string>();
    for (const n of this.nodes) {
      for (const i of n.input) if (i && !defined.has(i)) refs.add(i);
      for (const i of this.implicitInputs(n)) if (!defined.has(i)) refs.add(i);
    }
    for (const o of this.outputs) if (o.name && !defined.has(o.name)) refs.add(o.name);
    return refs;
  }

  /** The node producing `name`, or undefined for graph inputs, initializers and outer-scope values. */
  producer(name: string): NodeProto | undefined {
    return this.idx().producer.get(name);
  }

  /** Nodes reading `name` (including nodes whose subgraphs read it). */
  consumers(name: string): NodeProto[] {
    return this.idx().consumers.get(name) ?? [];
  }

  isGraphInput(name: string): boolean {
    return this.inputs.some((v) => v.name === name) && !this.initializers.has(name);
  }

  isGraphOutput(name: string): boolean {
    return this.outputs.some((v) => v.name === name);
  }

  /** The initializer `name` in this graph or an enclosing one. */
  initializer(name: string): TensorProto | undefined {
    return this.initializers.get(name) ?? this.parent?.initializer(name);
  }

  /** A constant value: an initializer, or the output of a Constant node with a `value` tensor. */
  constant(name: string): TensorProto | undefined {
    const t = this.initializer(name);
    if (t) return t;
    const p = this.producer(name);
    if (p && p.opType === 'Constant' && normDomain(p.domain) === '') {
      return p.attribute.find((a) => a.name === 'value')?.t;
    }
    return this.parent?.producer(name) ? this.parent.constant(name) : undefined;
  }

  /** Adds or replaces an initializer (its `name` is the key). */
  setInitializer(t: TensorProto): void {
    if (!t.name) throw new LowbitError('INTERNAL', 'initializer without a name');
    this.initializers.set(t.name, t);
  }

  removeInitializer(name: string): void {
    this.initializers.delete(name);
    this.inputs = this.inputs.filter((v) => v.name !== name || !this.initializers.has(name));
  }

  /** Inserts nodes at `index` (default: the end; `topoSort` puts them in place later). */
  addNodes(nodes: NodeProto[], index = this.nodes.length): void {
    this.nodes.splice(index, 0, ...nodes);
    for (const n of nodes) this.wrapSubgraphs(n);
    this.touch();
  }

  /** Inserts nodes right before `anchor`. */
  insertBefore(anchor: NodeProto, nodes: NodeProto[]): void {
    const i = this.nodes.indexOf(anchor);
    this.addNodes(nodes, i < 0 ? this.nodes.length : i);
  }

  /** Inserts nodes right after `anchor`. */
  insertAfter(anchor: NodeProto, nodes: NodeProto[]): void {
    const i = this.nodes.indexOf(anchor);
    this.addNodes(nodes, i < 0 ? this.nodes.length : i + 1);
  }

  removeNodes(nodes: Iterable<NodeProto>): void {
    const drop = new Set(nodes);
    this.nodes = this.nodes.filter((n) => !drop.has(n));
    this.touch();
  }

  /** Replaces `old` by `nodes` at the same position. */
  replaceNode(old: NodeProto, nodes: NodeProto[]): void {
    const i = this.nodes.indexOf(old);
    if (i < 0) throw new LowbitError('INTERNAL', `node '${old.name}' is not in graph '${this.name}'`);
    this.nodes.splice(i, 1, ...nodes);
    for (const n of nodes) this.wrapSubgraphs(n);
    this.touch();
  }

  /** Points one input slot of `node` at another value. */
  setInput(node: NodeProto, slot: number, value: string): void {
    while (node.input.length <= slot) node.input.push('');
    node.input[slot] = value;
    this.touch();
  }

  /**
   * Makes every reader of `from` (nodes, subgraph references and graph outputs when `outputs`) read `to`.
   * Subgraphs that define their own `from` shadow it and are left alone.
   */
  replaceAllUses(from: string, to: string, opts: { outputs?: boolean; except?: NodeProto } = {}): void {
    for (const n of this.nodes) {
      if (n === opts.except) continue;
      for (let i = 0; i < n.input.length; i++) if (n.input[i] === from) n.input[i] = to;
      for (const { graph } of this.subgraphs(n)) if (graph.outerReferences().has(from)) graph.renameOuter(from, to);
    }
    if (opts.outputs) for (const o of this.outputs) if (o.name === from) o.name = to;
    this.touch();
  }

  private renameOuter(from: string, to: string): void {
    for (const n of this.nodes) {
      for (let i = 0; i < n.input.length; i++) if (n.input[i] === from) n.input[i] = to;
      for (const { graph } of this.subgraphs(n)) if (graph.outerReferences().has(from)) graph.renameOuter(from, to);
    }
    for (const o of this.outputs) if (o.name === from) o.name = to;
    this.touch();
  }

  /** All value names in use here and in enclosing/child graphs (for fresh names). */
  private root(): Graph {
    return this.parent ? this.parent.root() : this;
  }

  private collectNames(into: Set<string>): void {
    for (const v of this.inputs) into.add(v.name ?? '');
    for (const v of this.outputs) into.add(v.name ?? '');
    for (const k of this.initializers.keys()) into.add(k);
    for (const n of this.nodes) {
      for (const o of n.output) into.add(o);
      for (const i of n.input) into.add(i);
      if (n.name) into.add(n.name);
      for (const { graph } of this.subgraphs(n)) graph.collectNames(into);
    }
  }

  private usedNames: Set<string> | undefined;

  /** A value/node name not used anywhere in the model's graphs: `base`, else `base_1`, `base_2`, ... */
  freshName(base: string): string {
    const root = this.root();
    if (!root.usedNames) {
      root.usedNames = new Set();
      root.collectNames(root.usedNames);
    }
    let name = base;
    while (root.usedNames.has(name)) name = `${base}_${++root.nameCounter}`;
    root.usedNames.add(name);
    return name;
  }

  /**
   * Nodes in a topological order (stable: keeps the current order where it is already valid).
   * @throws LowbitError when the graph has a cycle or reads a value nobody defines.
   */
  topoSort(): NodeProto[] {
    const available = new Set<string>(['', ...this.inputs.map((v) => v.name ?? ''), ...this.initializers.keys()]);
    for (let g = this.parent; g; g = g.parent) for (const name of g.allDefined()) available.add(name);
    const deps = new Map<NodeProto, string[]>();
    for (const n of this.nodes) deps.set(n, [...n.input, ...this.implicitInputs(n)]);
    const order: NodeProto[] = [];
    let pending = this.nodes.slice();
    while (pending.length) {
      const next: NodeProto[] = [];
      for (const n of pending) {
        if (deps.get(n)!.every((i) => available.has(i))) {
          order.push(n);
          for (const o of n.output) available.add(o);
        } else next.push(n);
      }
      if (next.length === pending.length) {
        const n = next[0]!;
        const missing = deps.get(n)!.filter((i) => !available.has(i));
        throw new LowbitError(
          'UNSUPPORTED_MODEL',
          `graph '${this.name}': node '${n.name ?? ''}' (${n.opType}) reads ${missing.map((m) => `'${m}'`).join(', ')}, which no node, input or initializer defines (or the graph has a cycle)`,
          'check the model with `lowbit inspect`; it may be truncated or invalid',
        );
      }
      pending = next;
    }
    return order;
  }

  /** Reorders `nodes` topologically in place. */
  sortInPlace(): void {
    this.nodes = this.topoSort();
    this.touch();
  }

  private allDefined(): string[] {
    return [
      ...this.inputs.map((v) => v.name ?? ''),
      ...this.initializers.keys(),
      ...this.nodes.flatMap((n) => n.output),
    ];
  }

  /** Removes nodes whose outputs nobody reads (graph outputs count as read), and unused initializers. */
  pruneDead(): number {
    let removed = 0;
    for (;;) {
      const dead = this.nodes.filter(
        (n) => n.output.every((o) => !o || (this.consumers(o).length === 0 && !this.isGraphOutput(o))),
      );
      if (dead.length === 0) break;
      removed += dead.length;
      this.removeNodes(dead);
    }
    for (const name of [...this.initializers.keys()]) {
      if (this.consumers(name).length === 0 && !this.isGraphOutput(name) && !this.inputs.some((v) => v.name === name))
        this.initializers.delete(name);
    }
    return removed;
  }

  /** Writes the graph (and its subgraphs) back to a GraphProto. */
  toProto(): GraphProto {
    const node = this.nodes.map((n) => {
      if (!n.attribute.some((a) => this.subgraphMap.has(a))) return n;
      return {
        ...n,
        attribute: n.attribute.map((a) => {
          const gs = this.subgraphMap.get(a);
          if (!gs) return a;
          return a.g ? { ...a, g: gs[0]!.toProto() } : { ...a, graphs: gs.map((g) => g.toProto()) };
        }),
      };
    });
    return {
      ...this.rest,
      node,
      initializer: [...this.initializers.values()],
      input: this.inputs,
      output: this.outputs,
      valueInfo: [...this.valueInfo.values()],
    };
  }
}

/** A model: its graph as an editable {@link Graph}, opsets by domain, and the rest carried through. */
export class Model {
  readonly rest: Omit<ModelProto, 'graph' | 'opsetImport'>;
  graph: Graph;
  /** Opset version per domain ('' = ai.onnx). */
  readonly opsets: Map<string, number>;
  private readonly opsetProtos: OperatorSetIdProto[];

  constructor(proto: ModelProto) {
    if (!proto.graph) {
      throw new LowbitError('NOT_ONNX', 'the model has no graph', 'is this an ONNX model file? try `lowbit inspect`');
    }
    const { graph, opsetImport, ...rest } = proto;
    this.rest = rest;
    this.graph = new Graph(graph);
    this.opsetProtos = opsetImport;
    this.opsets = new Map(opsetImport.map((o) => [normDomain(o.domain), Number(o.version ?? 0n)]));
  }

  /** Opset version of `domain` ('' = default ONNX domain), or undefined when not imported. */
  opset(domain = ''): number | undefined {
    return this.opsets.get(normDomain(domain));
  }

  /** Imports `domain` at `version` (or raises the version). */
  setOpset(domain: string, version: number): void {
    this.opsets.set(normDomain(domain), version);
  }

  toProto(): ModelProto {
    const opsetImport: OperatorSetIdProto[] = [];
    const seen = new Set<string>();
    for (const o of this.opsetProtos) {
      const d = normDomain(o.domain);
      const v = this.opsets.get(d);
      if (v === undefined) continue;
      seen.add(d);
      opsetImport.push(BigInt(v) === o.version ? o : { ...o, version: BigInt(v) });
    }
    for (const [d, v] of this.opsets) {
      if (!seen.has(d)) opsetImport.push({ domain: d, version: BigInt(v) });
    }
    return { ...this.rest, opsetImport, graph: this.graph.toProto() };
  }
}
