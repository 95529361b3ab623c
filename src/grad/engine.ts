// Reverse-mode autodiff on an ONNX graph: builds the training graph (forward + backward as ONNX) from
// one gradient rule per op. Pure; the trainer (and tests) import this and run the result in ORT.

import { LowbitError } from '../errors.js';
import { Model, makeValueInfo } from '../onnx/ir.js';
import { inferElemTypes, isFloatType } from '../onnx/infer.js';
import type { NodeProto } from '../onnx/proto.js';
import { dimsOf } from '../onnx/tensor.js';
import { Emitter } from './context.js';
import { GRAD_RULES } from './rules/index.js';
import { inferDims } from './shapes.js';
import type { Dims, GradRule, GradTable } from './types.js';

export interface TrainingGraphOptions {
  /** The scalar float value to minimise (a graph output or any value; it becomes an output). */
  loss: string;
  /** Float initializers to differentiate; they become graph inputs of the training model. */
  params: readonly string[];
  /**
   * Initializers that become graph inputs without a gradient: state the trainer feeds back each step,
   * e.g. BatchNormalization's input_mean/input_var from its running_mean/running_var outputs.
   */
  state?: readonly string[];
  /** Gradient rules (default GRAD_RULES); pass `{ ...GRAD_RULES, MyOp: rule }` to add or replace rows. */
  rules?: GradTable;
  /** LSQ's 1/sqrt(N*qmax) gradient scale for QuantizeLinear/DequantizeLinear scales (default false). */
  lsqGradScale?: boolean;
  /** Extra static dims by value name (e.g. from a run), used where inference knows less. */
  dims?: ReadonlyMap<string, Dims>;
}

export interface TrainingGraph {
  /** The original outputs, the loss (if it was not one), then one gradient output per param. */
  model: Model;
  /** Param name -> name of its gradient output. */
  gradients: Map<string, string>;
  /** Forward values the backward nodes read (kept alive until the backward pass); params and constants left out. */
  saved: string[];
}

const ruleKey = (n: NodeProto): string => {
  const d = n.domain ?? '';
  return d === '' || d === 'ai.onnx' ? (n.opType ?? '') : `${d}:${n.opType ?? ''}`;
};

const badOption = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);

/**
 * Builds the training graph of `model`: its forward graph, then the gradient of `loss` with respect to
 * every param (seed dLoss/dLoss = 1), walking the nodes in reverse topological order. Contributions to a
 * value read by several nodes are summed; broadcasting is undone in one place; only float values (and
 * outputs a rule marks as `carries`) carry gradients, so shape tensors, axes and indices never get one.
 * Params become graph inputs, so a trainer feeds updated weights on every run of one session.
 * @throws LowbitError UNSUPPORTED_OPSET below opset 13; BAD_OPTION for an unknown or non-float loss or
 *   param, a param the loss does not depend on, or one no gradient reaches; UNSUPPORTED_MODEL naming the op and node when an op on
 *   the path has no gradient rule or the rule cannot handle its attributes
 */
export function buildTrainingGraph(model: Model, opts: TrainingGraphOptions): TrainingGraph {
  const rules = opts.rules ?? GRAD_RULES;
  const opset = model.opset('') ?? 0;
  if (opset < 13) {
    throw new LowbitError('UNSUPPORTED_OPSET', `training graphs need opset 13 or newer, the model has ${opset}`, 'upgrade the model to opset 13+ (e.g. onnx.version_converter); ReduceSum/Split/Squeeze take axes as inputs from 13 on');
  }
  const out = new Model(model.toProto());
  const graph = out.graph;
  const order = graph.topoSort();
  const types = inferElemTypes(graph);
  const dims = inferDims(graph, opset, opts.dims);
  const forward = new Set<string>([...graph.inputs.map((v) => v.name ?? ''), ...graph.initializers.keys(), ...order.flatMap((n) => n.output)]);
  forward.delete('');

  // Validate the loss and params.
  const { loss, params } = opts;
  if (!forward.has(loss)) throw badOption(`loss '${loss}' is not a value of the model`, 'name the output (or node output) that holds the scalar loss');
  if (!isFloatType(types.get(loss))) throw badOption(`loss '${loss}' is not a float value`, 'the loss must be a float scalar');
  if (new Set(params).size !== params.length) throw badOption('params lists a name twice', 'list each param once');
  for (const p of [...params, ...(opts.state ?? [])]) {
    const what = params.includes(p) ? 'param' : 'state';
    if (!graph.initializers.has(p)) throw badOption(`${what} '${p}' is not an initializer of the model`, 'params and state are initializers (weights, running statistics)');
    if (!isFloatType(types.get(p)) && params.includes(p)) throw badOption(`param '${p}' is not a float tensor`, 'only float initializers can be trained');
  }
  if ((opts.state ?? []).some((s) => params.includes(s))) throw badOption('a name is both a param and state', 'list each initializer in one of params and state');

  // Values that depend on a param (through gradient-carrying values), and values the loss depends on.
  const fromParams = new Set<string>(params);
  for (const n of order) {
    if (!n.input.some((i) => fromParams.has(i))) continue;
    const carries = rules[ruleKey(n)]?.carries;
    n.output.forEach((o, k) => {
      if (o && (isFloatType(types.get(o)) || carries?.includes(k))) fromParams.add(o);
    });
  }
  // (Only through outputs that carry a gradient: a param read for its shape alone gets none.)
  const toLoss = new Set<string>([loss]);
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    if (n.output.some((o) => toLoss.has(o) && fromParams.has(o))) for (const v of n.input) if (v) toLoss.add(v);
  }
  const live = (v: string): boolean => fromParams.has(v) && toLoss.has(v) && fromParams.has(loss);
  const dead = params.filter((p) => !live(p));
  if (dead.length) {
    throw badOption(`the loss '${loss}' does not depend on param${dead.length > 1 ? 's' : ''} ${dead.map((p) => `'${p}'`).join(', ')}`, 'list only the weights the loss is computed from (frozen weights are simply not listed)');
  }

  const emitter = new Emitter(graph, opset, { lsqGradScale: opts.lsqGradScale ?? false }, types, dims, forward);
  const contributions = new Map<string, string[]>();
  const add = (v: string, g: string): void => {
    const list = contributions.get(v);
    if (list) list.push(g);
    else contributions.set(v, [g]);
  };
  /** The total gradient of `v` (one Sum node when several consumers contributed). */
  const total = (v: string): string | undefined => {
    const list = contributions.get(v);
    if (!list || list.length === 0) return undefined;
    const g = list.length === 1 ? list[0]! : emitter.node(`${v}/grad`, 'Sum', list, {}, 1)[0]!;
    contributions.set(v, [g]);
    const d = dims.get(v);
    if (d && !forward.has(g)) dims.set(g, d);
    const t = types.get(v);
    if (t !== undefined && !forward.has(g) && !types.has(g)) types.set(g, isFloatType(t) ? t : types.get(loss)!);
    return g;
  };

  const lossDims = dims.get(loss);
  const one = emitter.scalar(1, types.get(loss)!);
  add(loss, lossDims && lossDims.length === 0 ? one : emitter.node(`${loss}/grad`, 'Expand', [one, emitter.shapeCat(`${loss}/grad`, [emitter.shapeOf(`${loss}/grad`, loss)])], {}, 1)[0]!);

  const saved = new Set<string>();
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    if (!n.output.some(live)) continue;
    const dy = n.output.map((o) => (o && live(o) ? total(o) : undefined));
    if (dy.every((g) => g === undefined)) continue;
    const wants = n.input.map((v) => !!v && live(v));
    if (!wants.some(Boolean)) continue;
    const rule = rules[ruleKey(n)];
    if (!rule) {
      throw new LowbitError('UNSUPPORTED_MODEL', `no gradient rule for op '${ruleKey(n)}' (node '${n.name ?? ''}')`, 'the op lies between a param and the loss; freeze the params before it, or pass a rule for it in options.rules');
    }
    const first = emitter.backward.length;
    const grads = rule.grad(n, dy, emitter.contextFor(n, wants));
    if (grads.length !== n.input.length) {
      throw new LowbitError('INTERNAL', `gradient rule for '${ruleKey(n)}' returned ${grads.length} gradients for ${n.input.length} inputs (node '${n.name ?? ''}')`);
    }
    checkReads(n, rule, emitter.backward.slice(first), forward, saved);
    grads.forEach((g, k) => {
      if (!g || !wants[k]) return;
      const bc = rule.broadcast === 'all' || rule.broadcast?.includes(k);
      add(n.input[k]!, bc ? emitter.sumToShape(`${n.name || n.opType}/grad`, g, dims.get(n.output[0]!), n.input[k]!) : g);
    });
  }

  // Outputs: the loss, then one gradient per param; params become inputs.
  if (!graph.isGraphOutput(loss)) graph.outputs.push(makeValueInfo(loss, types.get(loss), lossDims && [...lossDims]));
  const gradients = new Map<string, string>();
  for (const p of params) {
    const g = total(p);
    // The loss depends on p only through inputs whose rules give no gradient (e.g. a Dropout ratio).
    if (!g) throw badOption(`no gradient reaches param '${p}': the ops reading it give none`, 'leave it out of params');
    const name = graph.freshName(`${p}_grad`);
    emitter.backward.push({ input: [g], output: [name], name, opType: 'Identity', attribute: [], metadataProps: [] });
    const d = [...dims.get(p)!];
    graph.outputs.push(makeValueInfo(name, types.get(p), d));
    gradients.set(p, name);
  }
  for (const p of [...params, ...(opts.state ?? [])]) {
    const t = graph.initializers.get(p)!;
    graph.initializers.delete(p);
    if (!graph.inputs.some((v) => v.name === p)) graph.inputs.push(makeValueInfo(p, t.dataType, dimsOf(t)));
  }
  const nodes: NodeProto[] = [...(emitter.hoisted.get(null) ?? [])];
  for (const n of order) nodes.push(n, ...(emitter.hoisted.get(n) ?? []));
  graph.nodes = [...nodes, ...emitter.backward];
  graph.touch();
  return { model: out, gradients, saved: [...saved].filter((v) => !graph.initializers.has(v) && !params.includes(v)) };
}

/**
 * Checks that the backward nodes of `n` read only the forward values its rule declared (`saves`), and
 * records them.
 * @throws LowbitError INTERNAL naming the op and the undeclared value
 */
function checkReads(n: NodeProto, rule: GradRule, emitted: NodeProto[], forward: ReadonlySet<string>, saved: Set<string>): void {
  const allowed = new Set<string>([
    ...(rule.saves.inputs ?? []).map((k) => n.input[k] ?? ''),
    ...(rule.saves.outputs ?? []).map((k) => n.output[k] ?? ''),
  ]);
  for (const e of emitted) {
    for (const v of e.input) {
      if (!v || !forward.has(v)) continue;
      if (!allowed.has(v)) {
        throw new LowbitError('INTERNAL', `gradient rule for '${n.opType}' reads '${v}' of node '${n.name ?? ''}' without declaring it in saves`);
      }
      saved.add(v);
    }
  }
}
