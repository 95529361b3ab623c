// From a float inference model to what a trainer runs: the training graph (BatchNormalization in training
// mode with its running statistics fed back as state, Dropout on, the loss attached, one gradient output
// per param), the eval graph (the inference forward pass plus the loss, params and state as graph inputs, so
// one session serves every epoch), the params with their initial values, and the way back to a plain
// inference model with trained values. Pure.

import { LowbitError } from '../errors.js';
import { buildTrainingGraph } from '../grad/engine.js';
import type { GradTable } from '../grad/types.js';
import { makeAttribute } from '../onnx/attributes.js';
import { inferElemTypes, isFloatType } from '../onnx/infer.js';
import { Model, makeValueInfo, valueInfoTensor } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../onnx/tensor.js';
import { attachLoss, type LossGraph, type LossSpec } from './loss.js';
import type { ParamTensor } from './optim.js';
import { TRAIN_RULES } from './rules.js';

export interface TrainableOptions {
  loss: LossSpec;
  /**
   * The initializers to train, replacing the default choice (every float32 initializer of rank >= 1 that
   * reaches the loss through differentiable ops, except BatchNormalization running statistics and Dropout
   * ratios).
   */
  params?: readonly string[];
  /** Initializers left out of the default choice (ignored with `params`). */
  frozen?: readonly string[];
  /** Keep BatchNormalization in inference mode: running statistics stay as they are (scale and bias still train). Default false. */
  freezeBatchNorm?: boolean;
  /** Run Dropout nodes in training mode (default true); `dropoutSeed` seeds ORT's mask generator. */
  dropout?: boolean;
  dropoutSeed?: number;
  /** Gradient rules (default TRAIN_RULES: GRAD_RULES with a faster Conv weight gradient) and LSQ gradient scaling, passed to buildTrainingGraph. */
  rules?: GradTable;
  lsqGradScale?: boolean;
}

/** Running statistics: fed to the training graph each step and replaced by the output `update`. */
export interface StateTensor {
  name: string;
  dims: number[];
  data: Float32Array;
  /** Output of the training graph that holds the value for the next step. */
  update: string;
}

/** A model input (not a param, state or target). */
export interface ModelInputInfo {
  name: string;
  elemType: number | undefined;
  dims: (number | string | undefined)[] | undefined;
}

export interface Trainable {
  /** Inputs: model inputs, targets, params, state. Outputs: original outputs, loss, state updates, gradients. */
  train: Model;
  /** Inputs: model inputs, targets, params, state (BatchNormalization in inference mode). Outputs: original outputs and the loss. */
  eval: Model;
  /** The scalar loss (an output of both graphs). */
  loss: string;
  /** The model output the loss reads, and its static dims where known. */
  output: string;
  outputDims: LossGraph['outputDims'];
  /** Per-batch target inputs (see LossGraph). */
  targets: LossGraph['targets'];
  /** Params with their initial values (fresh copies; an optimizer updates them in place). */
  params: ParamTensor[];
  /** Gradient output of the training graph for each param, in the order of `params`. */
  gradients: string[];
  state: StateTensor[];
  /** The model's own inputs. */
  inputs: ModelInputInfo[];
  /** The inference model the trainable was built from (unchanged). */
  inference: Model;
}

const badOption = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);
const isDefaultDomain = (n: NodeProto): boolean => !n.domain || n.domain === 'ai.onnx';

/** Owned float32 values of an initializer. */
function floatValues(model: Model, name: string): { dims: number[]; data: Float32Array } {
  const t = model.graph.initializers.get(name)!;
  return { dims: dimsOf(t), data: Float32Array.from(tensorStorage(t) as Float32Array) };
}

/**
 * Builds the training and eval graphs of an inference model.
 * @throws LowbitError BAD_OPTION for unknown or non-float32 params, or an explicit param no gradient
 *   reaches (the loss does not depend on it, or the ops reading it give none); UNSUPPORTED_MODEL when an op between a param and the loss has no gradient rule (naming the op
 *   and the node), or for BatchNormalization statistics that are not initializers; UNSUPPORTED_OPSET
 *   below opset 13
 */
export function buildTrainable(model: Model, opts: TrainableOptions): Trainable {
  const opset = model.opset('') ?? 0;
  if (opset < 13) {
    throw new LowbitError('UNSUPPORTED_OPSET', `training needs opset 13 or newer, the model has ${opset}`, 'upgrade the model to opset 13+ (e.g. onnx.version_converter)');
  }
  const withLoss = attachLoss(model, opts.loss);
  const { loss } = withLoss;
  const base = withLoss.model;
  const graph = base.graph;
  const initNames = new Set(graph.initializers.keys());

  // Training copy: BatchNormalization in training mode, Dropout on.
  const trainModel = new Model(base.toProto());
  const tg = trainModel.graph;
  const state: StateTensor[] = [];
  const stateNames = new Set<string>();
  const notParams = new Set<string>();
  tg.nodes = tg.nodes.map((n) => {
    if (!isDefaultDomain(n)) return n;
    if (n.opType === 'BatchNormalization') {
      const [mean, variance] = [n.input[3] ?? '', n.input[4] ?? ''];
      for (const s of [mean, variance]) notParams.add(s);
      if (opts.freezeBatchNorm) return n;
      if (!initNames.has(mean) || !initNames.has(variance)) {
        throw new LowbitError('UNSUPPORTED_MODEL', `BatchNormalization '${n.name ?? ''}' reads running statistics that are not initializers ('${mean}', '${variance}')`, 'train with freezeBatchNorm, or export the model with constant statistics');
      }
      if (stateNames.has(mean) || stateNames.has(variance)) {
        throw new LowbitError('UNSUPPORTED_MODEL', `BatchNormalization '${n.name ?? ''}' shares its running statistics with another BatchNormalization`, 'train with freezeBatchNorm, or give each BatchNormalization its own statistics');
      }
      if (n.output.filter(Boolean).length > 1) {
        throw new LowbitError('UNSUPPORTED_MODEL', `BatchNormalization '${n.name ?? ''}' is already in training mode`, 'train from an inference model (one output per BatchNormalization)');
      }
      const tag = n.name || 'bn';
      const [runMean, runVar] = [tg.freshName(`${tag}/running_mean`), tg.freshName(`${tag}/running_var`)];
      // Opsets 9-13 take 1 or 5 outputs (training mode = more than one); 14+ a training_mode attribute and 3.
      const extra = opset < 14 ? [tg.freshName(`${tag}/saved_mean`), tg.freshName(`${tag}/saved_var`)] : [];
      const attribute = opset < 14 ? n.attribute : [...n.attribute.filter((a) => a.name !== 'training_mode'), makeAttribute('training_mode', 1)];
      for (const [name, update] of [[mean, runMean], [variance, runVar]] as const) {
        const v = floatValues(base, name);
        state.push({ name, dims: v.dims, data: v.data, update });
        stateNames.add(name);
        tg.outputs.push(makeValueInfo(update, DataType.FLOAT, v.dims));
      }
      return { ...n, output: [n.output[0]!, runMean, runVar, ...extra], attribute };
    }
    if (n.opType === 'Dropout') {
      if (n.input[1]) notParams.add(n.input[1]);
      if (opts.dropout === false || n.input[2]) return n;
      const on = tg.freshName(`${n.name || 'dropout'}/training_mode`);
      tg.setInitializer(makeTensor(on, DataType.BOOL, [], Uint8Array.of(1)));
      const mask = n.output[1] || tg.freshName(`${n.name || 'dropout'}/mask`);
      const attribute = [...n.attribute.filter((a) => a.name !== 'seed'), makeAttribute('seed', opts.dropoutSeed ?? 0)];
      return { ...n, input: [n.input[0]!, n.input[1] ?? '', on], output: [n.output[0]!, mask], attribute };
    }
    return n;
  });
  tg.touch();

  const types = inferElemTypes(tg);
  const rules = opts.rules ?? TRAIN_RULES;
  let params: string[];
  if (opts.params) {
    params = [...opts.params];
    for (const p of params) {
      if (!initNames.has(p)) throw badOption(`param '${p}' is not an initializer of the model`, 'list initializer names (see `lowbit inspect`)');
      if (stateNames.has(p)) throw badOption(`'${p}' is BatchNormalization running statistics, not a param`, 'running statistics are updated from batch statistics; leave them out');
      if (types.get(p) !== DataType.FLOAT) throw badOption(`param '${p}' is not a float32 tensor`, 'only float32 initializers can be trained');
    }
  } else {
    const frozen = new Set(opts.frozen ?? []);
    for (const f of frozen) if (!initNames.has(f)) throw badOption(`frozen '${f}' is not an initializer of the model`, 'list initializer names (see `lowbit inspect`)');
    const candidates = [...initNames].filter((p) => {
      const t = graph.initializers.get(p)!;
      return t.dataType === DataType.FLOAT && dimsOf(t).length >= 1 && !notParams.has(p) && !frozen.has(p) && !p.startsWith('loss/');
    });
    const live = reachesLoss(tg, candidates, loss, types, rules);
    params = candidates.filter((p) => live.has(p));
    if (params.length === 0) throw badOption('no float32 initializer reaches the loss', 'the model has nothing to train; pass params explicitly');
  }

  const built = buildTrainingGraph(trainModel, {
    loss,
    params,
    state: state.map((s) => s.name),
    rules,
    ...(opts.lsqGradScale === undefined ? {} : { lsqGradScale: opts.lsqGradScale }),
  });
  const gradients = params.map((p) => built.gradients.get(p)!);

  const evalModel = new Model(base.toProto());
  const eg = evalModel.graph;
  for (const name of [...params, ...state.map((s) => s.name)]) {
    const t = eg.initializers.get(name)!;
    eg.initializers.delete(name);
    if (!eg.inputs.some((v) => v.name === name)) eg.inputs.push(makeValueInfo(name, t.dataType, dimsOf(t)));
  }
  eg.touch();

  const targetNames = new Set(Object.values(withLoss.targets));
  const inputs = model.graph.inputs
    .filter((v) => !initNames.has(v.name ?? '') && !targetNames.has(v.name ?? ''))
    .map((v) => ({ name: v.name ?? '', ...valueInfoTensor(v) }));
  return {
    train: built.model,
    eval: evalModel,
    loss,
    output: withLoss.output,
    outputDims: withLoss.outputDims,
    targets: withLoss.targets,
    params: params.map((name) => ({ name, ...floatValues(base, name) })),
    gradients,
    state,
    inputs,
    inference: model,
  };
}

/**
 * Initializers among `candidates` on a differentiable path to `loss`: through values that are float (or
 * outputs a rule marks as `carrying` a gradient), as buildTrainingGraph decides.
 */
function reachesLoss(graph: Model['graph'], candidates: readonly string[], loss: string, types: Map<string, number>, rules: GradTable): Set<string> {
  const order = graph.topoSort();
  const key = (n: NodeProto): string => (isDefaultDomain(n) ? (n.opType ?? '') : `${n.domain}:${n.opType ?? ''}`);
  const from = new Set<string>(candidates);
  for (const n of order) {
    if (!n.input.some((i) => from.has(i))) continue;
    const carries = rules[key(n)]?.carries;
    n.output.forEach((o, k) => {
      if (o && (isFloatType(types.get(o)) || carries?.includes(k))) from.add(o);
    });
  }
  const to = new Set<string>([loss]);
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    if (n.output.some((o) => to.has(o) && from.has(o))) for (const v of n.input) if (v) to.add(v);
  }
  return new Set(candidates.filter((c) => to.has(c)));
}

/**
 * A copy of the inference model `model` with `values` (params and running statistics, by initializer name)
 * written into its initializers. Values are copied, so training may go on.
 * @throws LowbitError INTERNAL for a name that is not a float32 initializer of the model, or values of the wrong size
 */
export function withValues(model: Model, values: Iterable<{ name: string; data: Float32Array }>): Model {
  const out = new Model(model.toProto());
  const g = out.graph;
  for (const { name, data } of values) {
    const t = g.initializers.get(name);
    if (!t || t.dataType !== DataType.FLOAT) throw new LowbitError('INTERNAL', `'${name}' is not a float32 initializer of the model`);
    g.setInitializer(makeTensor(name, DataType.FLOAT, dimsOf(t), data.slice()));
  }
  return out;
}
