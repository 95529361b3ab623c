// Dynamic post-training quantization: int8/uint8 weights, activations quantized at run time by ORT's
// integer kernels (DynamicQuantizeMatMul, DynamicQuantizeLSTM, optionally ConvInteger). Pure; used by pipeline/.

import { LowbitError } from '../errors.js';
import { inferElemTypes } from '../onnx/infer.js';
import { Model, makeValueInfo, nodeLabel, type Graph } from '../onnx/ir.js';
import { dimsOf } from '../onnx/tensor.js';
import type { NodeProto } from '../onnx/proto.js';
import { removeIfUnused, type QuantizedWeight } from './quant-weight.js';
import { DYNAMIC_RULES, MS_DOMAIN, type DynamicContext } from './rules/dynamic.js';
import type { PassReport, PassReportEntry } from './pass-report.js';

/** Options of {@link quantizeDynamic}. */
export interface QuantizeDynamicOptions {
  /** Weight type: int8 (symmetric, zero point 0: ORT's fast u8 x s8 path) or uint8 (asymmetric). */
  weightType: 'int8' | 'uint8';
  /** One scale per output channel (MatMul/Gemm column, LSTM gate row, Conv filter) instead of per tensor. */
  perChannel: boolean;
  /** Node names to leave float. */
  excludeNodes?: string[];
  /** Op types to leave float (e.g. ['Gemm']). */
  excludeOps?: string[];
  /** 7-bit weights, for CPUs without AVX512-VNNI/AVX-VNNI where u8 x s8 pair sums can saturate int16. */
  reduceRange?: boolean;
  /**
   * Conv handling: 'float' (default) leaves Conv float, since ORT's CPU ConvInteger measured slower than its
   * float Conv; 'ConvInteger' forces DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul (opset >= 11).
   */
  conv?: 'float' | 'ConvInteger';
  /**
   * MatMul/Gemm form: 'DynamicQuantizeMatMul' (default; ORT contrib op, what ORT's own optimizer fuses to) or
   * 'MatMulInteger' (standard ONNX DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul; opset >= 11).
   */
  matmul?: 'DynamicQuantizeMatMul' | 'MatMulInteger';
}

export type DynamicReportEntry = PassReportEntry;

/** What was quantized (and in which form) and what was left float (and why). */
export type QuantizeDynamicReport = PassReport;

const WEIGHT_TYPES = ['int8', 'uint8'] as const;
const CONV_FORMS = ['float', 'ConvInteger'] as const;
const MATMUL_FORMS = ['DynamicQuantizeMatMul', 'MatMulInteger'] as const;

function checkChoice<T extends string>(what: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new LowbitError('BAD_OPTION', `${what} ${JSON.stringify(value)} is not supported`, `use one of: ${allowed.join(', ')}`);
}

/** The graph (this one or an enclosing one) that owns constant `name`: its initializer or Constant node. */
function ownerOf(graph: Graph, name: string): Graph | undefined {
  for (let g: Graph | undefined = graph; g; g = g.parent) {
    if (g.initializers.has(name)) return g;
    const p = g.producer(name);
    if (p) return p.opType === 'Constant' && (p.domain ?? '') === '' ? g : undefined;
    if (g.inputs.some((v) => v.name === name)) return undefined; // a subgraph input shadows outer names
  }
  return undefined;
}


/**
 * Dynamic quantization for ONNX Runtime's CPU execution provider. MatMul and Gemm with a constant 2-D weight
 * (or MatMul of Transpose(constant), as old PyTorch exports write Linear) become com.microsoft
 * DynamicQuantizeMatMul (weight per tensor or per column; a following Add of a [N] constant and Gemm's C become
 * its bias; Gemm's transB and alpha are folded into the weight, beta into the bias); LSTM becomes com.microsoft
 * DynamicQuantizeLSTM; Conv stays float unless `conv: 'ConvInteger'`. Activation x activation MatMuls stay float.
 * Subgraphs (If/Loop/Scan bodies) are processed too. A weight shared by several nodes is quantized once; float
 * weights nothing reads any more are removed. Graph inputs/outputs keep their names; the com.microsoft domain
 * is imported when used. float16/bfloat16/double nodes are left as they are, with a reason (ORT's kernels take
 * float32 only). IR < 4 models get their new initializers listed as graph inputs. The input model is not
 * modified (the result shares its unchanged nodes and tensors).
 * @throws LowbitError BAD_OPTION for bad options; NON_FINITE when a weight holds NaN/Infinity;
 *   UNSUPPORTED_MODEL / BAD_DATA / EXTERNAL_DATA for weights that cannot be read.
 */
export function quantizeDynamic(
  model: Model,
  opts: QuantizeDynamicOptions,
): { model: Model; report: QuantizeDynamicReport } {
  const weightType = checkChoice('weightType', opts.weightType, WEIGHT_TYPES);
  const conv = checkChoice('conv', opts.conv ?? 'float', CONV_FORMS);
  const matmul = checkChoice('matmul', opts.matmul ?? 'DynamicQuantizeMatMul', MATMUL_FORMS);
  if (typeof opts.perChannel !== 'boolean') {
    throw new LowbitError('BAD_OPTION', `perChannel must be true or false, got ${JSON.stringify(opts.perChannel)}`, 'pass perChannel: true or false');
  }
  const excludeNodes = new Set(opts.excludeNodes ?? []);
  const excludeOps = new Set(opts.excludeOps ?? []);
  const out = new Model(model.toProto()); // fresh Graph containers; rules replace nodes, never edit them
  const opset = out.opset('') ?? 1;
  const report: QuantizeDynamicReport = { quantized: [], skipped: [] };
  const cache = new Map<Graph, Map<string, QuantizedWeight>>();
  const released: { graph: Graph; name: string }[] = [];
  let usesMs = false;

  const visit = (graph: Graph, outerTypes: Map<string, number> | undefined): void => {
    const types = inferElemTypes(graph, outerTypes);
    const ctx: DynamicContext = {
      graph,
      weightType,
      perChannel: opts.perChannel,
      reduceRange: opts.reduceRange === true,
      conv,
      matmul,
      opset,
      elemType: (name) => types.get(name),
      isConstant: (name) => !!name && ownerOf(graph, name) !== undefined && graph.constant(name) !== undefined,
      weight: (name, variant, make) => {
        const owner = ownerOf(graph, name)!;
        let perOwner = cache.get(owner);
        if (!perOwner) cache.set(owner, (perOwner = new Map()));
        const key = `${name}\u0000${variant}`;
        let q = perOwner.get(key);
        if (!q) perOwner.set(key, (q = make(owner)));
        return q;
      },
      release: (name) => {
        const owner = ownerOf(graph, name);
        if (owner) released.push({ graph: owner, name });
      },
    };
    const removed = new Set<NodeProto>();
    let changed = false;
    graph.nodes.slice().forEach((node, index) => {
      if (removed.has(node)) return;
      for (const { graph: sub } of graph.subgraphs(node)) visit(sub, types);
      const rule = (node.domain ?? '') === '' ? DYNAMIC_RULES[node.opType ?? ''] : undefined;
      if (!rule) return;
      const entry = { node: nodeLabel(node, index), opType: node.opType! };
      if (node.name && excludeNodes.has(node.name)) return void report.skipped.push({ ...entry, reason: 'excluded by node name' });
      if (excludeOps.has(node.opType!)) return void report.skipped.push({ ...entry, reason: 'excluded by op type' });
      const outcome = rule(ctx, node);
      if ('skip' in outcome) return void report.skipped.push({ ...entry, reason: outcome.skip });
      graph.replaceNode(node, outcome.nodes);
      const gone = [node, ...(outcome.remove ?? [])];
      if (outcome.remove) {
        graph.removeNodes(outcome.remove);
        for (const r of outcome.remove) removed.add(r);
      }
      // Values no node produces any more (MatMul's output before a folded Add, a folded Transpose's) lose their value_info.
      for (const o of gone.flatMap((n) => n.output)) if (!outcome.nodes.some((n) => n.output.includes(o))) graph.valueInfo.delete(o);
      if (outcome.nodes.some((n) => n.domain === MS_DOMAIN)) usesMs = true;
      report.quantized.push({ ...entry, form: outcome.form });
      changed = true;
    });
    if (changed) graph.sortInPlace(); // folded biases may come from Constant nodes placed after the matmul
  };
  visit(out.graph, undefined);

  // Children first: a subgraph may have been the last reader of an outer weight.
  for (const { graph, name } of released.reverse()) {
    for (let g: Graph | undefined = graph; g; g = g.parent) g.touch();
    removeIfUnused(graph, name);
  }
  if (usesMs && out.opset(MS_DOMAIN) === undefined) out.setOpset(MS_DOMAIN, 1);
  // IR < 4: every initializer of the main graph must also be a graph input.
  if ((out.rest.irVersion ?? 4n) < 4n) {
    const g = out.graph;
    const listed = new Set(g.inputs.map((v) => v.name));
    for (const [name, t] of g.initializers) if (!listed.has(name)) g.inputs.push(makeValueInfo(name, t.dataType, dimsOf(t)));
  }
  return { model: out, report };
}
