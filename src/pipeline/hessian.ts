// GPTQ's calibration step: the Hessian H = 2/n · Σ x xᵀ of each quantized MatMul/Gemm's input A, collected
// by streaming the calibration batches through the float model. ONNX Runtime computes each batch's Gram
// matrix: the model gets, per distinct input A, Cast(float) → [Transpose] → Reshape [-1, K] = Y →
// MatMul(Yᵀ, Y), plus Shape(Y) (the rows), as extra outputs, so lowbit never multiplies the activations itself
// and only a [K, K] matrix per input leaves ORT. ORT sums one batch in float32 (measured 5x faster than
// HessianAccumulator.add in float64 at K = 512 and 2048); the batches' Gram matrices are summed in float64 by
// one HessianAccumulator per input, so memory is O(K²) per distinct input whatever the number of samples.
// Node-side (runtime/).

import { LowbitError } from '../errors.js';
import { attrInt, makeAttribute } from '../onnx/attributes.js';
import { Model, makeNode } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { dimsOf, makeTensor } from '../onnx/tensor.js';
import type { BlockQuantized } from '../quant/blockwise.js';
import { HessianAccumulator, gptqQuantize, type GptqOptions, type GptqQuantized } from '../quant/gptq.js';
import { runWithTaps } from '../runtime/tapped.js';
import type { CalibrationData, CalibrationProgress } from './calibrate.js';

/** One weight whose input Hessian is wanted. */
export interface HessianTarget {
  /** The MatMul / Gemm node (the key of the result). */
  node: string;
  /** Its activation input A (a main-graph value). */
  input: string;
  /** Input features: A's last dimension (B's rows). */
  K: number;
  /** A is [K, M] (Gemm with transA = 1): its columns are the rows. Default false. */
  transposed?: boolean;
}

/** Options of {@link collectHessians}. */
export interface CollectHessiansOptions {
  /** Samples per run (default 16, bounded by the data's maxBatch and count). */
  batch?: number;
  /** ORT intra-op threads (default 2). */
  threads?: number;
  onProgress?: (p: CalibrationProgress) => void;
}

/** The Hessian of one node's input and the number of activation rows it averages. */
export interface NodeHessian {
  /** [K, K] row-major, symmetric. Shared (the same array) by nodes reading the same input: do not modify. */
  H: Float64Array;
  rows: number;
}

/** The graph outputs carrying one input's Gram matrix Σ x xᵀ [K, K], the shape of its rows [rows, K] and of A. */
interface GramOutputs {
  gram: string;
  shape: string;
  inputShape: string;
}

/**
 * A copy of `model` computing, for each input, its Gram matrix and row count as extra node outputs (tapped
 * by the caller): Cast(to float) → (Transpose when A is [K, M]) → Reshape [-1, K] = Y → MatMul(Transpose(Y), Y);
 * Shape(Y); Shape(A) (after the Transpose) to check its last dim is K before trusting the Reshape. The original
 * nodes are shared, not modified.
 */
function withGramOutputs(model: Model, inputs: ReadonlyMap<string, { K: number; transposed: boolean }>): { model: Model; outputs: Map<string, GramOutputs> } {
  const out = new Model(model.toProto());
  const g = out.graph;
  const outputs = new Map<string, GramOutputs>();
  for (const [input, { K, transposed }] of inputs) {
    const fresh = (what: string) => g.freshName(`${input}_hessian_${what}`);
    const nodes = [];
    const f32 = fresh('f32');
    nodes.push(makeNode('Cast', [input], [f32], { name: fresh('cast'), attribute: [makeAttribute('to', DataType.FLOAT)] }));
    let src = f32;
    if (transposed) {
      src = fresh('kt');
      nodes.push(makeNode('Transpose', [f32], [src], { name: fresh('transpose_a'), attribute: [makeAttribute('perm', [1, 0])] }));
    }
    const dims = fresh('dims');
    g.setInitializer(makeTensor(dims, DataType.INT64, [2], BigInt64Array.of(-1n, BigInt(K))));
    const rows = fresh('rows');
    const rowsT = fresh('rows_t');
    const gram = fresh('gram');
    const shape = fresh('shape');
    const inputShape = fresh('input_shape');
    nodes.push(
      makeNode('Shape', [src], [inputShape], { name: fresh('input_shape_of') }),
      makeNode('Reshape', [src, dims], [rows], { name: fresh('reshape') }),
      makeNode('Transpose', [rows], [rowsT], { name: fresh('transpose'), attribute: [makeAttribute('perm', [1, 0])] }),
      makeNode('MatMul', [rowsT, rows], [gram], { name: fresh('matmul') }),
      makeNode('Shape', [rows], [shape], { name: fresh('shape_of') }),
    );
    g.addNodes(nodes);
    outputs.set(input, { gram, shape, inputShape });
  }
  return { model: out, outputs };
}

/**
 * Runs `model` over `data` with every target's input A's Gram matrix tapped and returns, per node, the Hessian
 * 2/n · Σ x xᵀ over the rows x of A (its leading dims flattened; n = rows seen). An input read by several
 * targets (Q/K/V projections of one hidden state) is accumulated once and its result shared.
 * @throws LowbitError BAD_OPTION for an empty or inconsistent target list (a node listed twice, one input with
 *   two K), a bad batch size, an input not in the main graph, or a tapped A whose last dim (first, when
 *   transposed) is not K; NON_FINITE when A holds NaN/Infinity; BAD_DATA when the data has no batches;
 *   RUNTIME from ONNX Runtime.
 */
export async function collectHessians(
  model: Model,
  data: CalibrationData & { readonly maxBatch?: number },
  weights: readonly HessianTarget[],
  opts: CollectHessiansOptions = {},
): Promise<Map<string, NodeHessian>> {
  if (weights.length === 0) throw new LowbitError('BAD_OPTION', 'no weights to collect Hessians for', 'pass at least one MatMul/Gemm node');
  const count = data.count ?? Infinity;
  const batch = opts.batch ?? Math.max(1, Math.min(16, count, data.maxBatch ?? Infinity));
  if (!Number.isSafeInteger(batch) || batch < 1) throw new LowbitError('BAD_OPTION', `Hessian batch size must be a positive integer, got ${batch}`, 'use e.g. 16');

  // One accumulator per tapped tensor (and layout), shared by the nodes reading it.
  const byInput = new Map<string, { K: number; transposed: boolean; acc: HessianAccumulator; nodes: string[] }>();
  const seenNodes = new Set<string>();
  for (const t of weights) {
    if (seenNodes.has(t.node)) throw new LowbitError('BAD_OPTION', `node '${t.node}' is listed twice for Hessian collection`, 'list each MatMul/Gemm once');
    seenNodes.add(t.node);
    const transposed = t.transposed === true;
    const entry = byInput.get(t.input);
    if (entry) {
      if (entry.K !== t.K || entry.transposed !== transposed) {
        throw new LowbitError('BAD_OPTION', `input '${t.input}' is listed with K=${entry.K} (node '${entry.nodes[0]}') and K=${t.K} (node '${t.node}')`, 'K is the size of the input features: the weights reading one input must agree');
      }
      entry.nodes.push(t.node);
    } else {
      byInput.set(t.input, { K: t.K, transposed, acc: new HessianAccumulator(t.K), nodes: [t.node] });
    }
  }

  // Inputs must exist in the main graph before Gram nodes are attached to them.
  const known = new Set([...model.graph.inputs.map((v) => v.name ?? ''), ...model.graph.nodes.flatMap((n) => n.output), ...model.graph.initializers.keys()]);
  for (const [input, { nodes }] of byInput) {
    if (!known.has(input)) throw new LowbitError('BAD_OPTION', `cannot tap '${input}' (input of node '${nodes[0]}'): no node output, input or initializer of the main graph has that name`, 'pass the name of the node\'s activation input');
  }
  const gram = withGramOutputs(model, byInput);
  let samples = 0;
  const total = data.count;
  const runs = await runWithTaps(
    gram.model,
    [...gram.outputs.values()].flatMap((o) => [o.gram, o.shape, o.inputShape]),
    data.batches(batch),
    (run) => {
      for (const [input, { K, transposed, acc, nodes }] of byInput) {
        const names = gram.outputs.get(input)!;
        const G = run.taps[names.gram]!.data as Float32Array;
        const shape = run.taps[names.shape]!.data as BigInt64Array;
        const inShape = run.taps[names.inputShape]!;
        // A model with a fixed batch of 1 runs a batch one sample at a time and stacks the outputs: sum the pieces.
        const pieces = shape.length / 2;
        const rank = inShape.data.length / pieces;
        for (let p = 0; p < pieces; p++) {
          const dims = Array.from(inShape.data.subarray(p * rank, (p + 1) * rank) as BigInt64Array, Number);
          if (dims[rank - 1] !== K || (transposed && rank !== 2)) {
            const shown = transposed ? [dims[1], dims[0]] : dims;
            throw new LowbitError('BAD_OPTION', `input '${input}' of node '${nodes[0]}' has shape [${shown.join(', ')}], expected ${transposed ? `[${K}, M]` : `[..., ${K}]`}`, "pass the K of the node's weight and the node's activation input");
          }
        }
        let rows = 0;
        for (let p = 0; p < pieces; p++) rows += Number(shape[2 * p]);
        const KK = K * K;
        try {
          for (let o = 0; o < G.length; o += KK) acc.addGram(G.subarray(o, o + KK), o === 0 ? rows : 0);
        } catch (e) {
          if (e instanceof LowbitError && e.code === 'NON_FINITE') {
            throw new LowbitError('NON_FINITE', `input '${input}' of node '${nodes[0]}' holds NaN or Infinity in batch ${run.index}`, 'check the calibration data and the float model', { cause: e });
          }
          throw e;
        }
      }
      samples += run.size;
      opts.onProgress?.({ batches: run.index + 1, samples, total });
    },
    { threads: opts.threads ?? 2, outputs: false, label: 'GPTQ calibration' },
  );
  if (runs.batches === 0) throw new LowbitError('BAD_DATA', 'calibration data produced no batches', 'provide at least one calibration sample');

  const out = new Map<string, NodeHessian>();
  for (const { acc, nodes } of byInput.values()) {
    const rows = acc.count;
    if (rows === 0) throw new LowbitError('BAD_DATA', `no activation rows reached node '${nodes[0]}' (its input was empty in every batch)`, 'provide calibration samples that exercise this layer');
    const H = acc.finish();
    for (const node of nodes) out.set(node, { H, rows });
  }
  return out;
}

/** The key of a node in collectHessians' targets and result: its name, or `output:<first output>` when unnamed. */
export function nodeKey(node: NodeProto): string {
  return node.name ? node.name : `output:${node.output[0] ?? ''}`;
}

/**
 * The Hessian targets of a model's main graph: every MatMul, and every Gemm with transA = 0, whose B is a
 * 2-D float / float16 constant (what the weight-only pass quantizes), with A as the input and K from B
 * (B's dim 1 for a Gemm with transB = 1). Nodes in `excludeNodes` (by name) or of an op in `excludeOps` are left out.
 */
export function hessianTargets(model: Model, opts: { excludeNodes?: readonly string[]; excludeOps?: readonly string[] } = {}): HessianTarget[] {
  const g = model.graph;
  const excludeNodes = new Set(opts.excludeNodes ?? []);
  const excludeOps = new Set(opts.excludeOps ?? []);
  const out: HessianTarget[] = [];
  for (const node of g.nodes) {
    const op = node.opType ?? '';
    if ((op !== 'MatMul' && op !== 'Gemm') || ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx')) continue;
    if ((node.name && excludeNodes.has(node.name)) || excludeOps.has(op)) continue;
    if (op === 'Gemm' && attrInt(node, 'transA', 0) !== 0) continue;
    const input = node.input[0];
    const b = node.input[1] ?? '';
    const t = g.isGraphInput(b) ? undefined : g.constant(b);
    if (!input || !t || (t.dataType !== DataType.FLOAT && t.dataType !== DataType.FLOAT16)) continue;
    const dims = dimsOf(t);
    if (dims.length !== 2) continue;
    const K = op === 'Gemm' && attrInt(node, 'transB', 0) !== 0 ? dims[1]! : dims[0]!;
    out.push({ node: nodeKey(node), input, K });
  }
  return out;
}

/**
 * The weight-only pass's `quantizeWeight` hook for GPTQ: for weight `name` (B as [K, N], already transposed for
 * a Gemm with transB), the Hessians of every node reading it as B (from {@link collectHessians} on the same
 * model), averaged by their rows (a weight shared by two nodes sees both inputs), then {@link gptqQuantize}.
 * `onWeight` receives each result (damping used, retries, dead inputs, proxy loss) for the report.
 * @throws LowbitError('INTERNAL') (from the hook) for a weight none of whose nodes has a Hessian of size K (unless `fallback`);
 *   errors of gptqQuantize.
 */
export function gptqHook(
  model: Model,
  hessians: ReadonlyMap<string, NodeHessian>,
  opts: GptqOptions,
  onWeight?: (name: string, result: GptqQuantized) => void,
  /** Quantizes a weight no Hessian was collected for (e.g. one read only inside an If/Loop/Scan body); default: throw. */
  fallback?: (name: string, w: Float32Array, K: number, N: number) => BlockQuantized,
): (name: string, w: Float32Array, K: number, N: number) => BlockQuantized {
  return (name, w, K, N) => {
    const found = model.graph.consumers(name).filter((n) => n.input[1] === name).map((n) => hessians.get(nodeKey(n))).filter((h): h is NodeHessian => h !== undefined && h.H.length === K * K);
    if (found.length === 0 && fallback) return fallback(name, w, K, N);
    if (found.length === 0) {
      throw new LowbitError('INTERNAL', `GPTQ: no Hessian of size ${K} was collected for weight '${name}'`, 'collect Hessians (collectHessians) on the same model the weight-only pass rewrites');
    }
    let H = found[0]!.H;
    // Distinct Hessians (a shared input gives the same array) averaged by rows.
    const distinct = [...new Map(found.map((f) => [f.H, f])).values()];
    if (distinct.length > 1) {
      const rows = distinct.reduce((a, f) => a + f.rows, 0);
      H = new Float64Array(K * K);
      for (const f of distinct) {
        const wgt = f.rows / rows;
        for (let i = 0; i < H.length; i++) H[i] += wgt * f.H[i]!;
      }
    }
    const r = gptqQuantize(w, K, N, H, opts);
    onWeight?.(name, r);
    return r;
  };
}
