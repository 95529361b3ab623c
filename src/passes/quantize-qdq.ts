// Static post-training quantization in QDQ form: plans with the per-op rule table (qdq-plan.ts), then one
// engine inserts every QuantizeLinear/DequantizeLinear pair, quantizes weights (per channel) and biases
// (int32), placed so that ONNX Runtime fuses the node units into integer kernels. The same engine writes
// QAT's fake-quantized models (passes/qat.ts): float weights behind a QuantizeLinear, float biases. Pure.

import { LowbitError } from '../errors.js';
import { inferElemTypes, isFloatType } from '../onnx/infer.js';
import { makeNode, type Graph, type Model } from '../onnx/ir.js';
import { makeAttribute } from '../onnx/attributes.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { dimsOf, makeTensor } from '../onnx/tensor.js';
import { allocQuantArray, quantRange, quantType, type QuantTypeInfo } from '../quant/dtypes.js';
import { computeQParams } from '../quant/qparams.js';
import { planGraph, type NodePlan, type PlanOptions, type QdqPlan } from './qdq-plan.js';
import { padDepthwiseChannels } from './pad-channels.js';
import { preprocessForQuantization } from './preprocess.js';
import { poolBeforeActivation } from './pool-first.js';
import { narrowStem, type SpeedTarget } from './rules/qdq/speed.js';
import { bodyConstantsToInitializers, cloneModelDeep, hasBodies, hoistOuterConstants, planBodies, releaseHoisted, touchUp, type BodyPlan } from './qdq-subgraph.js';
import { addQuantizedWeight, quantizeBias, quantizeWeight, readFloatConstant, removeIfUnused, type QuantizedWeight, type WeightClip } from './quant-weight.js';

/** Activation types of static quantization: 8 bits (fused integer kernels) or 16 bits (A16W8, accuracy only). */
export type ActivationQuantType = 'uint8' | 'int8' | 'uint16' | 'int16';

/** Options of {@link quantizeStatic} (and, for the planning part, {@link planQdq}). */
export interface StaticQuantOptions {
  /**
   * Type of activations. uint8 (with int8 weights) is the fast path on x86. uint16 / int16 (A16W8): 256x finer
   * activation grids for accuracy, not speed: ORT has no 16-bit integer Conv/MatMul/Add kernels, so every unit
   * runs as DequantizeLinear -> float op -> QuantizeLinear. The pairs use the standard domain at opset 21 and up,
   * else com.microsoft's QuantizeLinear/DequantizeLinear (16-bit at any opset in ORT); the opset is not raised.
   */
  activationType: ActivationQuantType;
  /**
   * int8 (symmetric) and uint8 (asymmetric) weights fuse into integer kernels. int4 (symmetric, packed INT4
   * initializers) needs opset 21, to which the model is raised when every op can be carried over (else
   * UNSUPPORTED_OPSET); ORT runs those nodes as DequantizeLinear + float Conv/MatMul/Gemm: weights are
   * 8x smaller than float32, compute is not faster.
   */
  weightType: 'int8' | 'uint8' | 'int4';
  /** How weight ranges are chosen: default 'mse' for int4 (search over clipping ratios), 'minmax' for 8 bits. */
  weightClip?: WeightClip;
  /** Per-channel weight scales (needs opset 13; lower opsets are raised when safe, else per tensor). */
  perChannel: boolean;
  excludeNodes?: string[];
  excludeOps?: string[];
  /**
   * Mixed precision: node name -> activation type of the tensors that node reads as activations and writes
   * (its folded Relu/Clip's output included), e.g. `{ conv3: 'int16' }` keeps one sensitive layer at 16 bits in an
   * A8W8 model. A tensor shared with other tensors (MaxPool, Reshape, Concat...) takes the type for its whole group;
   * 8-bit readers of a 16-bit tensor lose their integer kernel too (they run in float between Q/DQ). Ranges come
   * from the same calibration (the histogram methods fit the base type's grid).
   */
  activationTypeOverrides?: Readonly<Record<string, ActivationQuantType>>;
  /** Symmetric activation ranges (zero point in the middle). Stops Relu/Clip folding. */
  symmetricActivations?: boolean;
  /** 7-bit weights (ORT's reduce_range), for CPUs without VNNI where u8*s8 pair sums can saturate. Weights only. */
  reduceRange?: boolean;
  /**
   * Keep nodes float where ORT's integer kernel is measured slower than the float one (the table in
   * rules/qdq/speed.ts; each such node is reported with the reason). Default false here: every node a rule
   * allows is quantized; the quantize() pipeline turns it on. Not applied to int4 weights (no integer compute).
   */
  speedPolicy?: boolean;
  /**
   * Whose kernels the speed policy follows: 'cpu' (onnxruntime-node; default) or 'wasm' (onnxruntime-web: every
   * depthwise Conv stays float and channels are not padded, rules/qdq/speed.ts).
   */
  speedTarget?: SpeedTarget;
  /**
   * With the speed policy (cpu target): grow depthwise Convs whose channel count is not a multiple of 16 to the next
   * multiple when that is at least 64 (zero channels, exact in float: passes/pad-channels.ts), so they run in
   * ORT's int8 depthwise kernel instead of staying float. Default true; false leaves the channels as they are.
   */
  padChannels?: boolean;
}

/** Per node with a rule: what happened to it. */
export interface QdqNodeReport {
  name: string;
  opType: string;
  quantized: boolean;
  /** Why it stays float. */
  reason?: string;
  /** The integer kernel ORT is expected to make of it, or where a Relu/Clip went. */
  kernel?: string;
  notes?: string[];
}

/** What {@link quantizeStatic} did. */
export interface StaticQuantReport {
  opset: { from: number; to: number; upgraded: boolean; blockers: string[] };
  preprocess: string[];
  activationType: ActivationQuantType;
  weightType: 'int8' | 'uint8' | 'int4';
  /** Per-channel weights actually used. */
  perChannel: boolean;
  nodes: QdqNodeReport[];
  /** Q/DQ pairs on activations, DQ-only constants (weights, biases, constant operands), Muls dropped as rescales. */
  counts: { qdqPairs: number; weights: number; biases: number; constants: number; rescales: number };
  notes: string[];
}

/** Calibrated range per tensor name. */
export type TensorRanges = ReadonlyMap<string, { min: number; max: number }>;

const ACT_TYPES = ['uint8', 'int8', 'uint16', 'int16'] as const;
/** The opset whose standard QuantizeLinear/DequantizeLinear take 16-bit integers; below it, com.microsoft's do. */
const INT16_QDQ_OPSET = 21;
const WEIGHT_TYPES = ['int8', 'uint8', 'int4'] as const;
const WEIGHT_CLIPS = ['minmax', 'mse'] as const;
/** The opset int4 weights need (DequantizeLinear with INT4 input). */
const INT4_OPSET = 21;

function checkOptions(opts: Partial<StaticQuantOptions>, full: boolean): void {
  if (full && !ACT_TYPES.includes(opts.activationType as never)) {
    throw new LowbitError('BAD_OPTION', `activation type '${String(opts.activationType)}' is not supported`, 'use uint8 (fast on x86), int8, or uint16 / int16 (accuracy, no speed-up)');
  }
  if ((full || opts.weightType !== undefined) && !WEIGHT_TYPES.includes(opts.weightType as never)) {
    throw new LowbitError('BAD_OPTION', `weight type '${String(opts.weightType)}' is not supported`, 'use int8, uint8 or int4');
  }
  const ov = opts.activationTypeOverrides;
  if (ov !== undefined) {
    if (typeof ov !== 'object' || ov === null || Array.isArray(ov)) {
      throw new LowbitError('BAD_OPTION', 'activationTypeOverrides must be an object of node name -> activation type', "e.g. { \"conv3\": \"int16\" }");
    }
    for (const [node, t] of Object.entries(ov)) {
      if (!ACT_TYPES.includes(t as never)) {
        throw new LowbitError('BAD_OPTION', `activation type override '${String(t)}' of node '${node}' is not supported`, 'use uint8, int8, uint16 or int16');
      }
    }
  }
  if (opts.weightClip !== undefined && !WEIGHT_CLIPS.includes(opts.weightClip)) {
    throw new LowbitError('BAD_OPTION', `weight clipping '${String(opts.weightClip)}' is not supported`, 'use minmax or mse');
  }
}

interface Prepared {
  model: Model;
  plan: QdqPlan;
  /** If/Loop/Scan bodies and their plans, children before parents (qdq-subgraph.ts). */
  bodies: BodyPlan[];
  types: Map<string, number>;
  opset: number;
  pre: ReturnType<typeof preprocessForQuantization>;
}

function prepare(model: Model, opts: Partial<StaticQuantOptions>, isUnknownFloat: (name: string) => boolean): Prepared {
  const int4 = opts.weightType === 'int4';
  const pre = preprocessForQuantization(model, int4 ? { targetOpset: INT4_OPSET } : {});
  if (opts.speedPolicy === true && !int4 && opts.padChannels !== false && opts.speedTarget !== 'wasm') {
    const padded = padDepthwiseChannels(pre.model);
    pre.model = padded.model;
    for (const g of padded.padded) pre.changes.push(`padded ${g.depthwise.join(', ')} from ${g.from} to ${g.to} channels (zero channels, exact) for ORT's int8 depthwise kernel`);
  }
  if (opts.speedPolicy === true && !int4) {
    // Behind a float stem, MaxPool before the activation keeps ORT from moving the int8 boundary into the pool (pool-first.ts).
    const ctx = { graph: pre.model.graph, opset: pre.model.opset('') ?? 1, target: opts.speedTarget ?? 'cpu' };
    const swapped = poolBeforeActivation(pre.model, (n) => (!n.domain || n.domain === 'ai.onnx') && n.opType === 'Conv' && narrowStem(n, ctx) !== undefined);
    pre.model = swapped.model;
    for (const s of swapped.swaps) pre.changes.push(`MaxPool ${s.pool} moved before ${s.activation} behind the float stem (exact: the activation is monotone) so the pool keeps ORT's float kernel`);
  }
  // Preprocessing copies the main graph's nodes only: bodies get private nodes before anything edits them.
  if (hasBodies(pre.model.graph)) {
    pre.model = cloneModelDeep(pre.model);
    const n = bodyConstantsToInitializers(pre.model.graph);
    if (n) pre.changes.push(`Constant nodes in If/Loop/Scan bodies turned into initializers: ${n}`);
  }
  const graph = pre.model.graph;
  const opset = pre.model.opset('') ?? 1;
  if (int4 && opset < INT4_OPSET) {
    throw new LowbitError(
      'UNSUPPORTED_OPSET',
      `int4 weights need opset ${INT4_OPSET} (DequantizeLinear with INT4); the model has opset ${opset} and cannot be raised: ${pre.opset.blockers.slice(0, 3).join('; ')}`,
      `convert the model to opset ${INT4_OPSET} (e.g. onnx.version_converter), or use int8 weights`,
    );
  }
  if (opset < 10) {
    throw new LowbitError(
      'UNSUPPORTED_OPSET',
      `static quantization needs opset 10 (QuantizeLinear); the model has opset ${opset} and cannot be raised: ${pre.opset.blockers.slice(0, 3).join('; ')}`,
      'convert the model to opset 13 (e.g. onnx.version_converter) and try again',
    );
  }
  const types = inferElemTypes(graph);
  const irVersion = Number(pre.model.rest.irVersion ?? 8n);
  const planOptions: PlanOptions = {
    opset,
    ...(opts.excludeNodes ? { excludeNodes: opts.excludeNodes } : {}),
    ...(opts.excludeOps ? { excludeOps: opts.excludeOps } : {}),
    symmetricActivations: opts.symmetricActivations === true,
    isFloat: (name) => (types.has(name) ? isFloatType(types.get(name)) : isUnknownFloat(name)),
    initializersInInputsAreConstant: irVersion < 4,
    speedPolicy: opts.speedPolicy === true && !int4 && !is16Bit(opts.activationType),
    ...(opts.speedTarget ? { speedTarget: opts.speedTarget } : {}),
  };
  const plan = planGraph(graph, planOptions);
  const bodies = planBodies(graph, planOptions);
  return { model: pre.model, plan, bodies, types, opset, pre };
}

/**
 * The tensors static quantization needs calibrated ranges for, and the preprocessed model to calibrate
 * (BatchNormalization folded, opset raised, ...). Tensors of unknown element type are listed too;
 * {@link quantizeStatic} treats those without a range as non-float.
 * @throws LowbitError UNSUPPORTED_OPSET below opset 10 when the opset cannot be raised; UNSUPPORTED_MODEL for a cyclic graph.
 */
export function planQdq(model: Model, opts: Partial<StaticQuantOptions> = {}): { model: Model; tensors: string[] } {
  checkOptions(opts, false);
  const p = prepare(model, opts, () => true);
  const tensors = new Set(p.plan.calibrationTensors);
  for (const b of p.bodies) for (const t of b.plan.calibrationTensors) tensors.add(t);
  return { model: p.model, tensors: [...tensors] };
}

/** Whether activations are 16-bit (no integer kernels: every unit runs DequantizeLinear -> float op -> QuantizeLinear). */
function is16Bit(t: ActivationQuantType | undefined): boolean {
  return t === 'uint16' || t === 'int16';
}

interface QParamNames {
  scale: number;
  zeroPoint: number;
  scaleName: string;
  zeroPointName: string;
}

/**
 * Quantizes `model` statically: returns a new QDQ model (the input is not modified) and a report.
 * Activations get per-tensor parameters from `ranges` (min-max calibration of the tensors planQdq lists),
 * weights per-channel symmetric int8 / int4 (or asymmetric uint8) parameters, biases int32 with
 * scale = input scale × weight scale. Relu/Clip after a quantized node fold into its output pair, so ORT
 * turns DQ -> Conv -> Relu -> Q into one QLinearConv.
 * @throws LowbitError BAD_OPTION for bad options or a planned tensor without a range; NON_FINITE for a
 *   non-finite range (naming the tensor) or weight; UNSUPPORTED_OPSET below opset 10, or for int4 weights
 *   when the model cannot be raised to opset 21.
 */
export function quantizeStatic(model: Model, ranges: TensorRanges, opts: StaticQuantOptions): { model: Model; report: StaticQuantReport } {
  const r = rewriteQdq(model, ranges, opts, { fakeWeights: false });
  return { model: r.model, report: r.report };
}

/** The float initializers of a fake-quantized model a trainer may learn (see {@link rewriteQdq}). */
export interface QdqTrainable {
  /** Float weights read by a QuantizeLinear -> DequantizeLinear pair. */
  weights: string[];
  /** Their scales ([] or [C]). */
  weightScales: string[];
  /** Scales of calibrated activation pairs (fixed ranges such as Softmax's [0, 1] are left out). */
  activationScales: string[];
  /** Float biases of quantized nodes (int32 at export). */
  biases: string[];
}

/**
 * The engine of {@link quantizeStatic}. With `fakeWeights`, it writes QAT's fake-quantized form instead:
 * each weight stays a float32 initializer read by QuantizeLinear -> DequantizeLinear (same scale and zero
 * point initializers as PTQ's), biases stay float, and a rescaled tensor's scale is a Mul of its source's
 * scale initializer (so a learned source scale carries over). Activation pairs are identical to PTQ's.
 * With `activations: false` only the weights of the planned nodes are (fake) quantized: no activation
 * pairs, no rescales, float biases, and `ranges` may be empty.
 * @throws as {@link quantizeStatic}.
 */
export function rewriteQdq(
  model: Model,
  ranges: TensorRanges,
  opts: StaticQuantOptions,
  form: { fakeWeights: boolean; activations?: boolean },
): { model: Model; report: StaticQuantReport; trainable: QdqTrainable } {
  checkOptions(opts, true);
  const activations = form.activations !== false;
  const { model: out, plan, bodies, opset, pre } = prepare(model, opts, activations ? (name) => ranges.has(name) : () => true);
  if (!activations) {
    // Weight-only: keep the node decisions (which weights, which axes), drop every activation intent.
    plan.tensors.clear();
    plan.calibrationTensors.length = 0;
    for (const p of plan.nodes) p.rescaled = undefined;
  }
  const notes: string[] = [];
  const fake = form.fakeWeights;
  const int4 = opts.weightType === 'int4';
  const trainable: QdqTrainable = { weights: [], weightScales: [], activationScales: [], biases: [] };
  if (int4) {
    if ((out.rest.irVersion ?? 0n) < 10n) out.rest.irVersion = 10n; // INT4 tensors need IR version 10
    notes.push(
      'int4 weights: ORT has no integer Conv/MatMul/Gemm kernel for 4-bit QDQ weights; those nodes run as DequantizeLinear + float op ' +
        '(weights stored 8x smaller than float32, 2x smaller than int8; no speed-up), while the other quantized ops still fuse',
    );
    if (opts.reduceRange === true) notes.push('reduce_range applies to 8-bit weights only: ignored for int4');
  }
  const actType = quantType(opts.activationType);
  const a16 = is16Bit(opts.activationType);
  // Domain of the activation pairs (and of constants quantized as activations): ONNX's Q/DQ take 16-bit from opset 21.
  const domainOf = (t: QuantTypeInfo): string => (t.bits === 16 && opset < INT16_QDQ_OPSET ? 'com.microsoft' : '');
  const actDomain = domainOf(actType);
  const overrides = new Map(Object.entries(opts.activationTypeOverrides ?? {}).map(([n, t]) => [n, quantType(t)]));
  const unknownOverrides = new Set(overrides.keys());
  for (const p of [...plan.nodes, ...bodies.flatMap((b) => b.plan.nodes)]) if (p.node.name) unknownOverrides.delete(p.node.name);
  if (unknownOverrides.size) {
    throw new LowbitError(
      'BAD_OPTION',
      `activation type overrides name node(s) static quantization does not plan: ${[...unknownOverrides].slice(0, 5).map((n) => `'${n}'`).join(', ')}`,
      'use the names of quantizable nodes as `lowbit inspect` or the quantize report lists them',
    );
  }
  /** Nodes whose unit has a 16-bit tensor (no integer kernel), for the report. */
  const sixteenBit = new Set<NodeProto>();
  if (a16) {
    notes.push(
      `${opts.activationType} activations (A16W${int4 ? 4 : 8}): ORT has no 16-bit integer kernels; every quantized node runs as DequantizeLinear -> float op -> QuantizeLinear ` +
        `(finer activation grid, better accuracy than 8 bits; no speed-up, slower than float). Q/DQ pairs: ${actDomain ? `com.microsoft domain (opset ${opset} < ${INT16_QDQ_OPSET})` : `standard domain (opset ${opset})`}`,
    );
  }
  const symmetric = opts.symmetricActivations === true;
  const perChannel = opts.perChannel && opset >= 13;
  if (opts.perChannel && !perChannel) notes.push(`per-channel weights need opset 13 and the model stays at ${opset} (${pre.opset.blockers.slice(0, 3).join('; ')}): weights are per tensor`);
  if (opts.activationType === 'int8' && opts.weightType === 'uint8') notes.push('int8 activations with uint8 weights: ORT has no fused kernel for this pair, the nodes run as float');
  else if (opts.activationType === 'int8') {
    notes.push('int8 activations: on x86 ORT fuses only part of the graph (QLinearConv/QLinearMatMul want uint8 activations there; on the test CNN 2 of 6 Convs and no Add/Mul fused); uint8 activations are the fast path');
  }
  const missing = plan.calibrationTensors.filter((t) => !ranges.has(t));
  if (missing.length) {
    throw new LowbitError(
      'BAD_OPTION',
      `no calibration range for ${missing.length} tensor(s): ${missing.slice(0, 5).map((t) => `'${t}'`).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
      'calibrate the tensors planQdq(model).tensors lists, on the model it returns',
    );
  }

  const counts = { qdqPairs: 0, weights: 0, biases: 0, constants: 0, rescales: 0 };
  /** Inserts the pairs, weights and biases `plan` asks for into `graph` (the main graph or a body). */
  const rewriteGraph = (graph: Graph, plan: QdqPlan): void => {
    // Activation type per tensor: the base type, or an override, which applies to the tensor's whole share group.
    const rootOf = (t: string): string => {
      let src = plan.tensors.get(t);
      while (src && (src.kind === 'shared' || src.kind === 'scaled')) {
        t = src.from;
        src = plan.tensors.get(t);
      }
      return t;
    };
    const unitTensors = (p: NodePlan): string[] => {
      const ts = [...p.activationSlots.map((s) => p.node.input[s]!), ...p.node.output];
      for (const f of plan.nodes) if (f.foldedInto === p.node) ts.push(...f.node.output);
      return ts.filter((t) => t && plan.tensors.has(t) && plan.tensors.get(t)!.kind !== 'constant');
    };
    const rootType = new Map<string, QuantTypeInfo>();
    for (const p of plan.nodes) {
      const o = p.node.name ? overrides.get(p.node.name) : undefined;
      if (!o || !p.quantized || p.foldedInto) continue;
      for (const t of unitTensors(p)) if (!rootType.has(rootOf(t))) rootType.set(rootOf(t), o);
    }
    const typeOf = (t: string): QuantTypeInfo => rootType.get(rootOf(t)) ?? actType;
    for (const p of plan.nodes) if (p.quantized && !p.foldedInto && unitTensors(p).some((t) => typeOf(t).bits === 16)) sixteenBit.add(p.node);
    const nodeType = (p: NodePlan): QuantTypeInfo => (p.node.name ? overrides.get(p.node.name) : undefined) ?? actType;

    // Parameters, one set per root tensor; shared tensors reuse the root's initializers (ORT compares values).
    const params = new Map<string, QParamNames>();
    const addParams = (tensor: string, min: number, max: number): QParamNames => {
      let p: { scale: number; zeroPoint: number };
      try {
        p = computeQParams(min, max, typeOf(tensor), { symmetric });
      } catch (e) {
        if (e instanceof LowbitError) throw new LowbitError(e.code, `tensor '${tensor}': ${e.message}`, e.hint, { cause: e });
        throw e;
      }
      // A folded Relu/Clip needs zero point = qmin for ORT to drop it; an all-zero range allows any zero point.
      if (plan.foldOutputs.has(tensor) && min === 0 && max === 0) p.zeroPoint = quantRange(typeOf(tensor)).qmin;
      const zp = allocQuantArray(typeOf(tensor), 1);
      zp[0] = p.zeroPoint;
      const scaleName = graph.freshName(`${tensor}_scale`);
      const zeroPointName = graph.freshName(`${tensor}_zero_point`);
      graph.setInitializer(makeTensor(scaleName, DataType.FLOAT, [], Float32Array.of(p.scale)));
      graph.setInitializer(makeTensor(zeroPointName, typeOf(tensor).dataType, [], zp));
      return { ...p, scaleName, zeroPointName };
    };
    const paramsOf = (t: string): QParamNames => {
      let p = params.get(t);
      if (p) return p;
      const src = plan.tensors.get(t)!;
      if (src.kind === 'calibrated') {
        p = addParams(t, ranges.get(t)!.min, ranges.get(t)!.max);
        trainable.activationScales.push(p.scaleName);
      } else if (src.kind === 'fixed') p = addParams(t, src.min, src.max);
      else if (src.kind === 'shared') p = paramsOf(src.from);
      else if (src.kind === 'scaled') {
        const from = paramsOf(src.from);
        const scale = Math.fround(from.scale * src.factor);
        const scaleName = graph.freshName(`${t}_scale`);
        if (fake) {
          const factor = graph.freshName(`${t}_rescale`);
          graph.setInitializer(makeTensor(factor, DataType.FLOAT, [], Float32Array.of(src.factor)));
          graph.addNodes([makeNode('Mul', [from.scaleName, factor], [scaleName], { name: graph.freshName(`${t}_scale_Mul`) })]);
        } else graph.setInitializer(makeTensor(scaleName, DataType.FLOAT, [], Float32Array.of(scale)));
        p = { scale, zeroPoint: from.zeroPoint, scaleName, zeroPointName: from.zeroPointName };
      } else throw new LowbitError('INTERNAL', `constant '${t}' has no activation parameters`);
      params.set(t, p);
      return p;
    };
    for (const [t, src] of plan.tensors) if (src.kind !== 'constant') paramsOf(t);

    // Activation pairs. A produced tensor keeps its name on the DQ output, so readers and graph outputs
    // stay wired and the producer's only reader is the Q (what ORT's node-unit selectors require).
    const constantDq = new Map<string, { output: string; scale: number }>();
    const floatsToDrop = new Set<string>();
    const quantizedName = new Map<string, string>();
    for (const [t, src] of plan.tensors) {
      if (src.kind === 'constant' || src.kind === 'scaled') continue;
      const p = params.get(t)!;
      const domain = domainOf(typeOf(t));
      const q = graph.freshName(`${t}_quantized`);
      quantizedName.set(t, q);
      const producer = graph.producer(t);
      let qNode: NodeProto;
      if (producer) {
        const pre = graph.freshName(`${t}_float`);
        producer.output[producer.output.indexOf(t)] = pre;
        qNode = makeNode('QuantizeLinear', [pre, p.scaleName, p.zeroPointName], [q], { name: graph.freshName(`${t}_QuantizeLinear`), domain });
        const dq = makeNode('DequantizeLinear', [q, p.scaleName, p.zeroPointName], [t], { name: graph.freshName(`${t}_DequantizeLinear`), domain });
        graph.insertAfter(producer, [qNode, dq]);
      } else {
        const dqOut = graph.freshName(`${t}_dequantized`);
        qNode = makeNode('QuantizeLinear', [t, p.scaleName, p.zeroPointName], [q], { name: graph.freshName(`${t}_QuantizeLinear`), domain });
        const dq = makeNode('DequantizeLinear', [q, p.scaleName, p.zeroPointName], [dqOut], { name: graph.freshName(`${t}_DequantizeLinear`), domain });
        graph.addNodes([qNode, dq], 0);
        graph.replaceAllUses(t, dqOut, { except: qNode });
        // replaceAllUses rewrote the DQ's reader too when t feeds it; the DQ reads q, so nothing to undo.
      }
      counts.qdqPairs++;
    }
    // Rescales (Mul by a positive constant): the node goes, its output is a DQ of the input's integers.
    for (const p of plan.nodes) {
      if (!p.rescaled) continue;
      const y = p.node.output[0]!;
      const src = plan.tensors.get(y) as { kind: 'scaled'; from: string };
      let from = src.from;
      while (!quantizedName.has(from)) from = (plan.tensors.get(from) as { from: string }).from;
      const py = params.get(y)!;
      // The node's data input as wired now (a graph input was redirected to its DQ output above).
      const x = p.node.input.find((c) => c && !graph.initializers.has(c))!;
      for (const c of p.node.input) if (c && c !== x) floatsToDrop.add(c);
      graph.replaceNode(p.node, [makeNode('DequantizeLinear', [quantizedName.get(from)!, py.scaleName, py.zeroPointName], [y], { name: graph.freshName(`${y}_DequantizeLinear`), domain: domainOf(typeOf(y)) })]);
      counts.rescales++;
      // The input's own DequantizeLinear may have lost its last reader (ORT keeps dead DQ nodes).
      const dqX = graph.producer(x);
      if (dqX?.opType === 'DequantizeLinear' && graph.consumers(x).length === 0 && !graph.isGraphOutput(x)) graph.removeNodes([dqX]);
    }

    const dequantize = (base: string, inputs: string[], axis?: number, domain = ''): string => {
      const output = graph.freshName(`${base}_dequantized`);
      const attribute = axis === undefined ? [] : [makeAttribute('axis', axis)];
      graph.addNodes([makeNode('DequantizeLinear', inputs, [output], { name: graph.freshName(`${base}_DequantizeLinear`), attribute, domain })]);
      return output;
    };
    const quantizedNodes = plan.nodes.filter((p) => p.quantized && !p.foldedInto);

    // Constants read as activations (Add/Mul/Concat operands): quantized with the activation type from their values.
    for (const p of quantizedNodes) {
      for (const s of p.activationSlots) {
        const name = p.node.input[s]!;
        if (plan.tensors.get(name)?.kind !== 'constant') continue;
        const ct = nodeType(p);
        let dq = constantDq.get(`${name}\u0000${ct.name}`);
        if (!dq) {
          const c = readFloatConstant(graph, name);
          const w = addQuantizedWeight(graph, name, c.data, c.dims, { qtype: ct.name as ActivationQuantType, perChannel: false, axis: 0, symmetric });
          dq = { output: dequantize(name, [w.quantized, w.scale, w.zeroPoint], undefined, domainOf(ct)), scale: w.scaleValues[0]! };
          constantDq.set(`${name}\u0000${ct.name}`, dq);
          counts.constants++;
        }
        p.node.input[s] = dq.output;
        floatsToDrop.add(name);
      }
    }

    // Weights (once per weight and axis) and biases.
    const weightDq = new Map<string, { output: string; scales: Float32Array }>();
    for (const p of quantizedNodes) {
      if (p.weight) {
        const { name, slot } = p.weight;
        const axis = perChannel ? p.weight.axis : undefined;
        const key = `${name}\u0000${axis ?? ''}`;
        let w = weightDq.get(key);
        if (!w) {
          const qw = quantizeWeight(graph, name, {
            qtype: opts.weightType,
            perChannel: axis !== undefined,
            axis: axis ?? 0,
            symmetric: opts.weightType !== 'uint8',
            reduceRange: opts.reduceRange === true && !int4,
            clip: opts.weightClip ?? (int4 ? 'mse' : 'minmax'),
          });
          const q = fake ? fakeQuantizeWeight(graph, name, qw, trainable) : qw.quantized;
          w = { output: dequantize(name, [q, qw.scale, qw.zeroPoint], qw.axis), scales: qw.scaleValues };
          weightDq.set(key, w);
          counts.weights++;
        }
        p.node.input[slot] = w.output;
        if (!fake || graph.initializer(name)?.dataType !== DataType.FLOAT) floatsToDrop.add(name);
      }
      if (p.bias && (fake || !activations)) {
        if (!trainable.biases.includes(p.bias.name)) trainable.biases.push(p.bias.name);
      } else if (p.bias) quantizeNodeBias(graph, p, params, weightDq, perChannel, dequantize, floatsToDrop, counts);
    }
    graph.touch();
    for (const name of floatsToDrop) removeIfUnused(graph, name);
    graph.sortInPlace();
  };

  // Bodies first, children before parents: a body quantizes the outer tensors it reads inside itself (where
  // ORT can fuse the pair with its nodes), before the enclosing graph renames them.
  const bodyNodes = enterBodies(bodies, ranges, fake || !activations, (b) => {
    const hoisted = hoistOuterConstants(b.graph);
    rewriteGraph(b.graph, b.plan);
    releaseHoisted(b.graph, hoisted);
  });
  if (bodies.length) touchUp(out.graph);
  rewriteGraph(out.graph, plan);
  const mixed = sixteenBit.size > 0 && !a16;
  if (mixed) {
    notes.push(
      `mixed precision: ${sixteenBit.size} node(s) have 16-bit activation tensors (activationTypeOverrides) and run as DequantizeLinear -> float op -> QuantizeLinear (no 16-bit integer kernels in ORT); the rest keeps ${opts.activationType}`,
    );
  }
  const usesMs = (g: Graph): boolean => g.nodes.some((n) => n.domain === 'com.microsoft' && (n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear'));
  if ((actDomain || mixed) && out.opset('com.microsoft') === undefined && (usesMs(out.graph) || bodies.some((b) => usesMs(b.graph)))) out.setOpset('com.microsoft', 1);

  const report: StaticQuantReport = {
    opset: { from: pre.opset.from, to: opset, upgraded: pre.opset.upgraded, blockers: pre.opset.blockers },
    preprocess: pre.changes,
    activationType: opts.activationType,
    weightType: opts.weightType,
    perChannel,
    nodes: [...plan.nodes, ...bodyNodes].map((p) => (activations ? nodeReport(p, int4, sixteenBit.has(p.node)) : weightOnlyReport(p))),
    counts,
    notes,
  };
  return { model: out, report, trainable };
}

/**
 * Rewrites the bodies whose every planned tensor has a calibrated range (a body whose graph never ran during
 * calibration, e.g. an If branch no sample took, has none and stays float, as do the bodies nested in it), in
 * the order given (children first). QAT's fake-quantized form and weight-only mode leave bodies float.
 * Returns the body nodes with a rule, for the report.
 */
function enterBodies(bodies: BodyPlan[], ranges: TensorRanges, leaveFloat: boolean, rewrite: (b: BodyPlan) => void): NodePlan[] {
  const skip = new Map<Graph, string>();
  for (const b of [...bodies].reverse()) {
    const outer = b.graph.parent ? skip.get(b.graph.parent) : undefined;
    const missing = b.plan.calibrationTensors.find((t) => !ranges.has(t));
    if (leaveFloat) skip.set(b.graph, `inside an ${b.opType} body: QAT and weight-only quantization leave bodies float`);
    else if (outer !== undefined) skip.set(b.graph, outer);
    else if (missing !== undefined) skip.set(b.graph, `its ${b.opType} body never ran during calibration (no range for '${missing}'): it stays float`);
  }
  for (const b of bodies) {
    const why = skip.get(b.graph);
    if (why === undefined) {
      rewrite(b);
      continue;
    }
    for (const p of b.plan.nodes) {
      if (!p.quantized && p.reason) continue;
      p.quantized = false;
      p.foldedInto = undefined;
      p.rescaled = undefined;
      p.reason = why;
    }
  }
  return bodies.flatMap((b) => b.plan.nodes);
}

/**
 * Fake quantization of a weight (QAT): drops the quantized initializer `quantizeWeight` made and reads a
 * float32 weight through QuantizeLinear instead (a float32 copy when the weight is float16/bfloat16/double,
 * as the scale is float32). Returns the QuantizeLinear output, for the DequantizeLinear.
 */
function fakeQuantizeWeight(graph: Graph, name: string, qw: QuantizedWeight, trainable: QdqTrainable): string {
  graph.removeInitializer(qw.quantized);
  let floatName = name;
  if (graph.initializer(name)?.dataType !== DataType.FLOAT) {
    const c = readFloatConstant(graph, name);
    floatName = graph.freshName(`${name}_float32`);
    graph.setInitializer(makeTensor(floatName, DataType.FLOAT, c.dims, Float32Array.from(c.data)));
  }
  const q = graph.freshName(`${name}_quantized`);
  const attribute = qw.axis === undefined ? [] : [makeAttribute('axis', qw.axis)];
  graph.addNodes([makeNode('QuantizeLinear', [floatName, qw.scale, qw.zeroPoint], [q], { name: graph.freshName(`${name}_QuantizeLinear`), attribute })]);
  if (!trainable.weights.includes(floatName)) trainable.weights.push(floatName); // one weight read on two axes
  trainable.weightScales.push(qw.scale);
  return q;
}

function quantizeNodeBias(
  graph: Graph,
  p: NodePlan,
  params: Map<string, QParamNames>,
  weightDq: Map<string, { output: string; scales: Float32Array }>,
  perChannel: boolean,
  dequantize: (base: string, inputs: string[], axis?: number) => string,
  floatsToDrop: Set<string>,
  counts: { biases: number },
): void {
  const bias = p.bias!;
  const inputScale = params.get(bias.input)?.scale;
  let weightScales: Float32Array | undefined;
  if (p.weight) weightScales = weightDq.get(`${p.weight.name}\u0000${(perChannel ? p.weight.axis : undefined) ?? ''}`)?.scales;
  else {
    const wIn = p.node.input[p.rule.weight!.slot];
    const ws = wIn ? params.get(wIn)?.scale : undefined;
    if (ws !== undefined) weightScales = Float32Array.of(ws);
  }
  const n = dimsOf(graph.initializers.get(bias.name)!).reduce((a, b) => a * b, 1);
  if (inputScale === undefined || !weightScales || (weightScales.length > 1 && weightScales.length !== n)) {
    p.notes.push(`bias '${bias.name}' stays float: its length does not match the weight channels`);
    return;
  }
  const qb = quantizeBias(graph, bias.name, inputScale, weightScales);
  const zpName = graph.freshName(`${bias.name}_zero_point`);
  const perAxis = weightScales.length > 1;
  graph.setInitializer(makeTensor(zpName, DataType.INT32, perAxis ? [n] : [], new Int32Array(perAxis ? n : 1)));
  p.node.input[bias.slot] = dequantize(bias.name, [qb.quantized, qb.scale, zpName], perAxis ? 0 : undefined);
  floatsToDrop.add(bias.name);
  counts.biases++;
}

function weightOnlyReport(p: NodePlan): QdqNodeReport {
  const r: QdqNodeReport = { name: p.node.name ?? '', opType: p.node.opType ?? '', quantized: p.quantized && p.weight !== undefined };
  if (r.quantized) r.kernel = `float ${r.opType} on DequantizeLinear(weight)`;
  else r.reason = p.quantized || !p.reason ? 'weight-only quantization: no weight to quantize' : p.reason;
  return r;
}

function nodeReport(p: NodePlan, int4: boolean, a16: boolean): QdqNodeReport {
  const r: QdqNodeReport = { name: p.node.name ?? '', opType: p.node.opType ?? '', quantized: p.quantized };
  if (p.reason && !p.quantized) r.reason = p.reason;
  if (p.quantized) {
    r.kernel = p.foldedInto
      ? `folded into '${p.foldedInto.name ?? ''}' (${p.foldedInto.opType})`
      : p.rescaled
        ? `removed: '${p.rescaled.input}' rescaled by ${p.rescaled.factor}`
        : a16
          ? `float ${p.node.opType} between 16-bit DequantizeLinear/QuantizeLinear`
          : int4 && p.weight
            ? `float ${p.node.opType} on DequantizeLinear(int4 weight)`
            : p.rule.fusesTo;
  }
  if (p.notes.length) r.notes = p.notes;
  return r;
}
