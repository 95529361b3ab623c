// The shape of a static-quantization (QDQ) rule: what one op type wants quantized. Rules only mark
// intents; passes/quantize-qdq.ts inserts every Q/DQ pair. Pure; imported by the rule tables and the pass.

import { LowbitError } from '../../../errors.js';
import type { Graph } from '../../../onnx/ir.js';
import type { NodeProto } from '../../../onnx/proto.js';

/**
 * What happens to a node's output 0:
 * - own: its own calibrated range (the node becomes an integer kernel that requantizes);
 * - share: the same scale / zero point as input `input`, for every output (value-preserving ops such as
 *   Reshape, Gather, Split; ORT drops the pairs);
 * - fixed: a range known without calibration (Softmax: [0, 1]);
 * - fold: Relu / Clip, absorbed into the producer's output quantization when the producer's output
 *   is `own` and read only by this node (the Q after the activation clamps like the activation);
 * - none: the output is not a float (ArgMax's indices): the node reads input `input`'s 8-bit tensor when
 *   that tensor is quantized anyway (ORT drops the DequantizeLinear) and nothing is inserted for it.
 */
export type OutputMode =
  | { kind: 'own' }
  | { kind: 'share'; input: number }
  | { kind: 'fixed'; min: number; max: number }
  | { kind: 'fold' }
  | { kind: 'none'; input: number };

/** What a rule may ask about the graph. */
export interface RuleContext {
  readonly graph: Graph;
  /** Opset of the default domain. */
  readonly opset: number;
}

/** The weight input of a node: a constant quantized ahead of time, optionally per channel. */
export interface WeightSpec {
  slot: number;
  /** Channel axis for per-channel scales given the weight's rank, or undefined for per-tensor only. */
  axis: (node: NodeProto, rank: number) => number | undefined;
}

/** One op type's quantization intent. */
export interface QdqRule {
  /** Input slots quantized as activations ('all' = every present input, e.g. Concat). */
  activations: readonly number[] | 'all';
  weight?: WeightSpec;
  /** Bias input: int32, scale = scale(activation `input`) × scale(weight), zero point 0. */
  bias?: { slot: number; input: number };
  output: OutputMode;
  /**
   * A pure rescale y = factor * x (factor > 0, a constant): when x is quantized, y is x's integers read
   * with scale × factor, so the node is dropped and y gets a DequantizeLinear of x's quantized tensor.
   * Exact and free; when x is not quantized the node is quantized by the rest of the rule.
   */
  rescale?: (node: NodeProto, ctx: RuleContext) => { input: number; factor: number } | undefined;
  /** A reason this node cannot be quantized (attributes, output count), or undefined when it can. */
  check?: (node: NodeProto, ctx: RuleContext) => string | undefined;
  /** The integer kernel ORT's QDQ transformer turns the node unit into (documentation and reports). */
  fusesTo: string;
}

/** Rules by op type (default ONNX domain). */
export type QdqRuleTable = Readonly<Record<string, QdqRule>>;

/**
 * Merges rule tables.
 * @throws LowbitError INTERNAL when two tables define the same op type.
 */
export function mergeRuleTables(...tables: QdqRuleTable[]): QdqRuleTable {
  const out: Record<string, QdqRule> = {};
  for (const t of tables) {
    for (const [op, rule] of Object.entries(t)) {
      if (Object.hasOwn(out, op)) throw new LowbitError('INTERNAL', `QDQ rule for '${op}' is defined twice`);
      out[op] = rule;
    }
  }
  return Object.freeze(out);
}

/** The present (non-empty) input slots of a node. */
export function presentInputs(node: NodeProto): number[] {
  const slots: number[] = [];
  node.input.forEach((name, i) => {
    if (name) slots.push(i);
  });
  return slots;
}

/** Check helper: the node has exactly one output in use (optional extra outputs empty). */
export function singleOutput(node: NodeProto): string | undefined {
  return node.output.filter((o) => o).length === 1 ? undefined : 'it has more than one output';
}

/**
 * A row for an op that ONNX Runtime cannot run on 8-bit tensors (no QDQ fusion on its CPU provider): a Q/DQ
 * pair around it would only add work, so the node always stays float and the report says why.
 */
export function keepFloat(reason: string, rest: Partial<QdqRule> = {}): QdqRule {
  return { activations: [], output: { kind: 'own' }, ...rest, check: () => reason, fusesTo: '(float: no integer kernel in ONNX Runtime)' };
}
