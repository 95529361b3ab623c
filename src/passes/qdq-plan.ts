// Static quantization, step 1: reads the QDQ rule table and decides, per tensor, where its scale /
// zero point come from (calibrated, shared, fixed, constant), which weights and biases are quantized,
// and which Relu/Clip fold into their producer; the speed table keeps nodes float where ORT's integer
// kernel is measured slower. Marks only; quantize-qdq.ts inserts the nodes. Pure.

import type { Graph } from '../onnx/ir.js';
import type { NodeProto } from '../onnx/proto.js';
import { dimsOf } from '../onnx/tensor.js';
import { QDQ_RULES, REGION_STOPS, SPEED_RULES, type QdqRule, type RuleContext, type SpeedContext, type SpeedTarget } from './rules/qdq/index.js';
import { presentInputs } from './rules/qdq/types.js';

/** Where a quantized activation's parameters come from. */
export type TensorSource =
  | { kind: 'calibrated' }
  | { kind: 'constant' }
  | { kind: 'shared'; from: string }
  | { kind: 'scaled'; from: string; factor: number }
  | { kind: 'fixed'; min: number; max: number };

/** The decision for one node that has a rule. */
export interface NodePlan {
  node: NodeProto;
  rule: QdqRule;
  quantized: boolean;
  /** Why the node stays float. */
  reason?: string;
  /** Kept float by the speed policy (rules/qdq/speed.ts); `reason` says why. */
  speed?: boolean;
  /** Input slots read as quantized activations (a constant there is quantized like one). */
  activationSlots: number[];
  weight?: { slot: number; name: string; axis: number | undefined };
  /** Bias: its slot and name, and the activation whose scale it uses. */
  bias?: { slot: number; name: string; input: string };
  /** A Relu/Clip folded into its producer: the producer. */
  foldedInto?: NodeProto;
  /** A rescale node dropped from the graph: its output is its input's integers with scale × factor. */
  rescaled?: { input: string; factor: number };
  /** Notes that do not stop quantization (e.g. a float bias). */
  notes: string[];
}

/** The full decision. */
export interface QdqPlan {
  tensors: Map<string, TensorSource>;
  nodes: NodePlan[];
  /** Tensors that need a calibrated range (in graph order). */
  calibrationTensors: string[];
  /** Relu/Clip outputs that carry their producer's requantization (zero point must be qmin). */
  foldOutputs: Set<string>;
}

/** Options of {@link planGraph}. */
export interface PlanOptions {
  opset: number;
  excludeNodes?: readonly string[];
  excludeOps?: readonly string[];
  symmetricActivations?: boolean;
  /** Element types the inference gave (absent = unknown). */
  isFloat: (name: string) => boolean;
  /** Whether initializers listed as graph inputs still count as constants (IR version < 4). */
  initializersInInputsAreConstant?: boolean;
  /** Apply the speed table (rules/qdq/speed.ts): keep nodes float where ORT's int8 kernel is slower. Default false. */
  speedPolicy?: boolean;
  /** Whose kernels the speed table follows: onnxruntime-node's CPU (default) or onnxruntime-web's wasm. */
  speedTarget?: SpeedTarget;
}

const isDefault = (n: NodeProto): boolean => !n.domain || n.domain === 'ai.onnx';

/**
 * Decides static quantization for the main graph of a preprocessed model.
 * @throws LowbitError UNSUPPORTED_MODEL when the graph is not a DAG.
 */
export function planGraph(graph: Graph, opts: PlanOptions): QdqPlan {
  const ctx: RuleContext = { graph, opset: opts.opset };
  const exNodes = new Set(opts.excludeNodes ?? []);
  const exOps = new Set(opts.excludeOps ?? []);
  const isConst = (name: string): boolean =>
    graph.initializers.has(name) && (opts.initializersInInputsAreConstant === true || !graph.inputs.some((v) => v.name === name));
  const floatConst = (name: string): boolean => isConst(name) && opts.isFloat(name);
  const order = graph.topoSort();
  const plans: NodePlan[] = [];
  const byNode = new Map<NodeProto, NodePlan>();
  const excluded = (n: NodeProto): boolean => (n.name !== undefined && exNodes.has(n.name)) || exOps.has(n.opType ?? '');
  const ruled = (n: NodeProto): boolean => isDefault(n) && Object.hasOwn(QDQ_RULES, n.opType ?? '');
  const speed = opts.speedPolicy === true ? speedDecisions(graph, { ...ctx, target: opts.speedTarget ?? 'cpu' }, order, excluded) : new Map<NodeProto, { reason: string; floatOutput: boolean }>();
  // Outputs of excluded nodes stay float: a Q right after them (or after a Relu/Clip behind them) would let
  // ORT fuse the excluded node anyway (it quantizes float weights of a DQ -> Conv -> Q unit itself). The
  // same holds for nodes the speed table keeps float with `floatOutput`. Values say where the float comes from.
  const pinned = new Map<string, string>();
  for (const n of order) {
    const from = n.input[0] ? pinned.get(n.input[0]) : undefined;
    const label = ruled(n) && excluded(n) ? `excluded node '${n.name ?? n.opType ?? ''}'` : ruled(n) && speed.get(n)?.floatOutput ? `node '${n.name ?? n.opType ?? ''}' kept float for speed` : undefined;
    if (label) for (const o of n.output) if (o) pinned.set(o, label);
    if (from !== undefined && isDefault(n) && (n.opType === 'Relu' || n.opType === 'Clip')) pinned.set(n.output[0]!, from);
  }

  for (const n of order) {
    if (!isDefault(n)) continue;
    const rule = Object.hasOwn(QDQ_RULES, n.opType ?? '') ? QDQ_RULES[n.opType!] : undefined;
    if (!rule) continue;
    const p: NodePlan = { node: n, rule, quantized: false, activationSlots: [], notes: [] };
    plans.push(p);
    byNode.set(n, p);
    if (n.name !== undefined && exNodes.has(n.name)) p.reason = 'excluded by name';
    else if (exOps.has(n.opType!)) p.reason = 'excluded by op type';
    else p.reason = rule.check?.(n, ctx);
    if (!p.reason && speed.has(n)) {
      p.reason = speed.get(n)!.reason;
      p.speed = true;
    }
    if (p.reason || rule.output.kind === 'fold' || rule.output.kind === 'share' || rule.output.kind === 'none') continue;
    if (rule.rescale?.(n, ctx)) continue; // decided with the value-preserving ops below
    planOwn(p);
  }

  /** Plans a node whose output gets its own (or a fixed) range; sets p.quantized or p.reason. */
  function planOwn(p: NodePlan): void {
    const { node: n, rule } = p;
    const slots = rule.activations === 'all' ? presentInputs(n) : rule.activations.filter((i) => n.input[i]);
    const w = rule.weight;
    if (w && n.input[w.slot]) {
      const name = n.input[w.slot]!;
      if (floatConst(name)) {
        p.weight = { slot: w.slot, name, axis: w.axis(n, dimsOf(graph.initializers.get(name)!).length) };
      } else slots.push(w.slot);
    }
    const notFloat = [...slots.map((s) => n.input[s]!), n.output[0]!].find((t) => !opts.isFloat(t));
    if (notFloat !== undefined) {
      p.reason = `'${notFloat}' is not a float tensor`;
      return;
    }
    const fromExcluded = slots.map((s) => n.input[s]!).find((t) => pinned.has(t));
    if (fromExcluded !== undefined) {
      p.reason = `its input '${fromExcluded}' comes from ${pinned.get(fromExcluded)} and stays float`;
      return;
    }
    const b = rule.bias;
    if (b && n.input[b.slot]) {
      const name = n.input[b.slot]!;
      if (floatConst(name)) p.bias = { slot: b.slot, name, input: n.input[b.input]! };
      else p.notes.push(`bias '${name}' is not a constant: it stays float and ORT cannot fuse the node`);
    }
    p.quantized = true;
    p.reason = undefined;
    p.activationSlots = slots;
  }

  // Relu / Clip fold into a producer whose output would be requantized anyway.
  const outputOf = new Map<NodePlan, string>();
  const foldOutputs = new Set<string>();
  for (const p of plans) {
    if (p.rule.output.kind !== 'fold' || p.reason) continue;
    const x = p.node.input[0]!;
    const prod = graph.producer(x);
    const pp = prod ? byNode.get(prod) : undefined;
    if (!pp || !pp.quantized || pp.rule.output.kind !== 'own' || prod!.output[0] !== x) p.reason = 'its input does not come from a quantized node';
    else if (graph.consumers(x).length !== 1 || graph.isGraphOutput(x)) p.reason = 'its input has other readers';
    else if (opts.symmetricActivations) p.reason = 'symmetric activations: a zero point in the middle cannot clamp at 0';
    else if (!opts.isFloat(p.node.output[0]!)) p.reason = 'its output is not a float tensor';
    if (p.reason) continue;
    p.quantized = true;
    p.foldedInto = prod;
    outputOf.set(pp!, p.node.output[0]!);
    foldOutputs.add(p.node.output[0]!);
  }

  const tensors = new Map<string, TensorSource>();
  const markOutput = (p: NodePlan): void => {
    const out = p.rule.output;
    const y = outputOf.get(p) ?? p.node.output[0]!;
    if (out.kind === 'own') tensors.set(y, { kind: 'calibrated' });
    else if (out.kind === 'fixed') tensors.set(y, { kind: 'fixed', min: out.min, max: out.max });
  };
  const markInputs = (p: NodePlan): void => {
    for (const s of p.activationSlots) {
      const t = p.node.input[s]!;
      if (!tensors.has(t)) tensors.set(t, isConst(t) ? { kind: 'constant' } : { kind: 'calibrated' });
    }
  };
  for (const p of plans) if (p.quantized && !p.foldedInto) markOutput(p);
  for (const p of plans) markInputs(p);
  // Value-preserving ops and rescales, in graph order so chains (Reshape -> Transpose) propagate.
  for (const p of plans) {
    const r = !p.reason && !p.quantized ? p.rule.rescale?.(p.node, ctx) : undefined;
    if (r) {
      const x = p.node.input[r.input]!;
      const src = tensors.get(x);
      const y = p.node.output[0]!;
      if (src && src.kind !== 'constant' && opts.isFloat(y) && !graph.isGraphInput(y)) {
        tensors.set(y, { kind: 'scaled', from: x, factor: r.factor });
        p.quantized = true;
        p.rescaled = { input: x, factor: r.factor };
      } else if (!src && opts.speedPolicy === true) {
        // Its input is float (e.g. the end of a float region): scaling in float and quantizing the output once
        // saves the QuantizeLinear of the input and a rounding step.
        p.reason = 'its input is float: the scaling stays float and its output is quantized once for its readers';
        p.speed = true;
      } else {
        planOwn(p);
        if (p.quantized) {
          markOutput(p);
          markInputs(p);
        }
      }
      continue;
    }
    const out = p.rule.output;
    if ((out.kind !== 'share' && out.kind !== 'none') || p.reason) continue;
    const x = p.node.input[out.input]!;
    const src = tensors.get(x);
    // 'share' covers every output (Split); 'none' quantizes no output (ArgMax's indices).
    const ys = out.kind === 'share' ? p.node.output.filter((o) => o) : [];
    if (!src) p.reason = pinned.has(x) ? `its input '${x}' comes from ${pinned.get(x)}` : 'its input is not quantized';
    else if (src.kind === 'constant') p.reason = 'its input is a constant';
    else {
      const bad = ys.find((y) => !opts.isFloat(y) || graph.isGraphInput(y));
      if (bad !== undefined) p.reason = `'${bad}' is not a float tensor`;
    }
    if (p.reason) continue;
    for (const y of ys) tensors.set(y, { kind: 'shared', from: src!.kind === 'shared' ? src!.from : x });
    p.quantized = true;
    p.activationSlots = [out.input];
  }
  const calibrationTensors = [...tensors].filter(([, s]) => s.kind === 'calibrated').map(([t]) => t);
  return { tensors, nodes: plans, calibrationTensors, foldOutputs };
}

/** The speed table's decisions, with the float regions `floatInputs` asks for (see rules/qdq/speed.ts). */
function speedDecisions(
  graph: Graph,
  ctx: SpeedContext,
  order: NodeProto[],
  excluded: (n: NodeProto) => boolean,
): Map<NodeProto, { reason: string; floatOutput: boolean }> {
  const out = new Map<NodeProto, { reason: string; floatOutput: boolean }>();
  for (const n of order) {
    if (!isDefault(n) || excluded(n) || !Object.hasOwn(SPEED_RULES, n.opType ?? '')) continue;
    const d = SPEED_RULES[n.opType!]!(n, ctx);
    if (!d) continue;
    out.set(n, { reason: d.reason, floatOutput: d.floatOutput });
    if (!d.floatInputs) continue;
    const name = n.name ?? n.opType ?? '';
    for (const m of producerRegion(graph, n)) {
      if (!out.has(m) && !excluded(m)) out.set(m, { reason: `kept float for speed with '${name}' (${n.opType}), which reads its output`, floatOutput: true });
    }
  }
  return out;
}

/** Most nodes a float region may take in above its node (a head is a handful of elementwise ops). */
const MAX_REGION = 32;

/**
 * The nodes computing `n`'s inputs, walking up to (not including) the nearest Conv / MatMul / Gemm, graph
 * inputs and constants, and only through nodes whose every reader is already in the region (a node with a
 * reader outside stays as planned, so nothing else changes).
 */
function producerRegion(graph: Graph, n: NodeProto): NodeProto[] {
  const region = new Set<NodeProto>([n]);
  const out: NodeProto[] = [];
  const queue = n.input.filter((t) => t && !graph.initializers.has(t));
  while (queue.length && out.length < MAX_REGION) {
    const p = graph.producer(queue.shift()!);
    if (!p || region.has(p) || !isDefault(p) || REGION_STOPS.has(p.opType ?? '')) continue;
    const readersInside = p.output.every((o) => !o || (!graph.isGraphOutput(o) && graph.consumers(o).every((c) => region.has(c))));
    if (!readersInside) continue;
    region.add(p);
    out.push(p);
    queue.push(...p.input.filter((t) => t && !graph.initializers.has(t)));
  }
  return out;
}
