// Loss subgraphs attached to a model as ONNX nodes (so src/grad differentiates them like any other op):
// softmax cross-entropy on one-hot targets (optional label smoothing), mean squared error, and
// knowledge distillation (KL divergence from a teacher's logits at temperature T, scaled by T², optionally
// mixed with cross-entropy). Pure; src/train/trainable.ts and the trainer use it.

import { LowbitError } from '../errors.js';
import { inferDims } from '../grad/shapes.js';
import { makeAttribute, type AttrValue } from '../onnx/attributes.js';
import { inferElemTypes } from '../onnx/infer.js';
import { Model, makeNode, makeValueInfo } from '../onnx/ir.js';
import { DataType } from '../onnx/proto.js';
import { makeTensor } from '../onnx/tensor.js';

/** The loss kinds the trainer knows. */
export const LOSS_KINDS = ['cross-entropy', 'mse', 'distill'] as const;
export type LossKind = (typeof LOSS_KINDS)[number];

/** What loss to attach, to which output. */
export interface LossSpec {
  kind: LossKind;
  /** The model output the loss reads (default: the model's first output). Logits [N, C] for 'cross-entropy' and 'distill'. */
  output?: string;
  /** Cross-entropy (and the cross-entropy part of 'distill'): target = (1 - s) * one-hot + s / C. Default 0. */
  labelSmoothing?: number;
  /** 'distill': softmax temperature T (> 0) of teacher and student; the KL term is scaled by T². Default 1. */
  temperature?: number;
  /**
   * 'distill': weight of the distillation term; `1 - alpha` goes to cross-entropy with one-hot labels
   * (then labels are needed). Default 1 (distillation only, no labels).
   */
  alpha?: number;
}

/** The model with its loss attached. */
export interface LossGraph {
  /** A copy of the model: the original outputs plus `loss` (a scalar float) as outputs, targets as inputs. */
  model: Model;
  /** Name of the scalar loss value (also a graph output). */
  loss: string;
  /** The output the loss reads. */
  output: string;
  /** Static dims of that output where known (e.g. ['N', 10]). */
  outputDims: (number | string | undefined)[] | undefined;
  /**
   * Graph inputs the trainer feeds each batch: `target` (float one-hot [N, C] for cross-entropy, the
   * output's shape for mse) and `teacher` (the teacher's logits [N, C], 'distill').
   */
  targets: { target?: string; teacher?: string };
}

const bad = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);

/** Checks a loss spec's numbers. @throws LowbitError BAD_OPTION naming the field */
export function checkLossSpec(spec: LossSpec): void {
  if (!(LOSS_KINDS as readonly string[]).includes(spec.kind)) throw bad(`unknown loss '${String(spec.kind)}'`, `use one of ${LOSS_KINDS.join(', ')}`);
  const s = spec.labelSmoothing ?? 0;
  if (!(s >= 0 && s < 1)) throw bad(`labelSmoothing must be in [0, 1), got ${s}`, 'use e.g. 0.1');
  const t = spec.temperature ?? 1;
  if (!(t > 0 && Number.isFinite(t))) throw bad(`temperature must be a positive number, got ${t}`, 'use e.g. 2 or 4');
  const a = spec.alpha ?? 1;
  if (!(a >= 0 && a <= 1)) throw bad(`alpha must be in [0, 1], got ${a}`, 'alpha weighs the distillation term against cross-entropy');
  if (spec.kind !== 'distill' && (spec.temperature !== undefined || spec.alpha !== undefined)) {
    throw bad(`temperature and alpha apply to the 'distill' loss, not '${spec.kind}'`, "use loss 'distill' with a teacher");
  }
  if (spec.kind === 'mse' && spec.labelSmoothing !== undefined) throw bad("labelSmoothing applies to cross-entropy, not 'mse'", 'leave it out');
}

/** Whether a loss spec needs integer labels (one-hot targets). */
export function needsLabels(spec: LossSpec): boolean {
  return spec.kind === 'cross-entropy' || (spec.kind === 'distill' && (spec.alpha ?? 1) < 1);
}

/**
 * Attaches a loss to a copy of `model`. Cross-entropy is -mean_n sum_c t[n,c] * LogSoftmax(y)[n,c];
 * mse is mean((y - t)²) over every element; distillation is T² * mean_n KL(softmax(teacher/T) ||
 * softmax(y/T)) (+ (1 - alpha) cross-entropy with labels).
 * @throws LowbitError BAD_OPTION for an unknown output, a non-float output, logits that are not
 *   rank 2 ([N, C]), or bad numbers in the spec
 */
export function attachLoss(model: Model, spec: LossSpec): LossGraph {
  checkLossSpec(spec);
  const out = new Model(model.toProto());
  const g = out.graph;
  const output = spec.output ?? g.outputs[0]?.name;
  if (!output || !g.isGraphOutput(output)) {
    throw bad(`'${output ?? ''}' is not an output of the model (outputs: ${g.outputs.map((o) => o.name).join(', ')})`, 'name the output the loss should read');
  }
  const types = inferElemTypes(g);
  if (types.get(output) !== DataType.FLOAT) throw bad(`output '${output}' is not float32`, 'train a model whose output is float32');
  const dims = inferDims(g, out.opset('') ?? 13).get(output);
  const outputDims = dims ? [...dims] : undefined;
  const nodes: ReturnType<typeof makeNode>[] = [];
  const emit = (op: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string => {
    const name = g.freshName(`loss/${op}`);
    const o = g.freshName(`${name}_out`);
    nodes.push(makeNode(op, inputs, [o], { name, attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)) }));
    return o;
  };
  const scalar = (v: number): string => {
    const name = g.freshName('loss/const');
    g.setInitializer(makeTensor(name, DataType.FLOAT, [], Float32Array.of(v)));
    return name;
  };
  const axis1 = (): string => {
    const name = g.freshName('loss/axes');
    g.setInitializer(makeTensor(name, DataType.INT64, [1], BigInt64Array.of(1n)));
    return name;
  };
  const input = (base: string, d: (number | string | undefined)[] | undefined): string => {
    const name = g.freshName(base);
    g.inputs.push(makeValueInfo(name, DataType.FLOAT, d));
    return name;
  };
  const classes = outputDims?.[1];
  const logitsDims = (): (number | string | undefined)[] => {
    if (outputDims && outputDims.length !== 2) {
      throw bad(`'${spec.kind}' reads logits [N, C], but output '${output}' has rank ${outputDims.length}`, "flatten the logits in the model, or use loss 'mse'");
    }
    return [outputDims?.[0] ?? 'N', classes];
  };
  /** -mean_n sum_c t * logp. */
  const crossEntropy = (logp: string, t: string): string => {
    const picked = emit('ReduceSum', [emit('Mul', [logp, t]), axis1()], { keepdims: 0 });
    return emit('Neg', [emit('ReduceMean', [picked], { keepdims: 0 })]);
  };
  /** The one-hot target, smoothed in the graph when asked. */
  const oneHot = (target: string): string => {
    const s = spec.labelSmoothing ?? 0;
    if (s === 0) return target;
    if (typeof classes !== 'number') throw bad(`label smoothing needs the class count, and output '${output}' has no static dim 1`, 'give the model output a fixed class dimension');
    return emit('Add', [emit('Mul', [target, scalar(1 - s)]), scalar(s / classes)]);
  };

  const targets: LossGraph['targets'] = {};
  let loss: string;
  if (spec.kind === 'mse') {
    targets.target = input('target', outputDims ?? undefined);
    const diff = emit('Sub', [output, targets.target]);
    loss = emit('ReduceMean', [emit('Mul', [diff, diff])], { keepdims: 0 });
  } else if (spec.kind === 'cross-entropy') {
    targets.target = input('target', logitsDims());
    loss = crossEntropy(emit('LogSoftmax', [output], { axis: 1 }), oneHot(targets.target));
  } else {
    const t = spec.temperature ?? 1;
    const alpha = spec.alpha ?? 1;
    targets.teacher = input('teacher_logits', logitsDims());
    const soft = (v: string): string => emit('LogSoftmax', [t === 1 ? v : emit('Mul', [v, scalar(1 / t)])], { axis: 1 });
    const logpTeacher = soft(targets.teacher);
    const logqStudent = soft(output);
    // KL(p || q) = sum_c p (log p - log q); the teacher terms carry no gradient (they do not depend on params).
    const kl = emit('ReduceSum', [emit('Mul', [emit('Exp', [logpTeacher]), emit('Sub', [logpTeacher, logqStudent])]), axis1()], { keepdims: 0 });
    const kd = emit('Mul', [emit('ReduceMean', [kl], { keepdims: 0 }), scalar(alpha * t * t)]);
    if (alpha < 1) {
      targets.target = input('target', logitsDims());
      const ce = crossEntropy(emit('LogSoftmax', [output], { axis: 1 }), oneHot(targets.target));
      loss = emit('Add', [kd, emit('Mul', [ce, scalar(1 - alpha)])]);
    } else loss = kd;
  }
  g.addNodes(nodes);
  g.outputs.push(makeValueInfo(loss, DataType.FLOAT, []));
  return { model: out, loss, output, outputDims, targets };
}

/**
 * One-hot float targets [n, classes] of integer labels, optionally written into `into` (reused per batch).
 * Label smoothing is applied in the graph, not here.
 */
export function oneHotTargets(labels: ArrayLike<number>, classes: number, into?: Float32Array): Float32Array {
  const out = into && into.length >= labels.length * classes ? into.subarray(0, labels.length * classes) : new Float32Array(labels.length * classes);
  out.fill(0);
  for (let i = 0; i < labels.length; i++) out[i * classes + labels[i]!] = 1;
  return out;
}
