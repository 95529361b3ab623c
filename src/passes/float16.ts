// fp16 / bf16 conversion: float32 initializers, Constant values and activations become float16 (or
// bfloat16), with Cast nodes at the graph edges (keepIoTypes) and around the nodes kept in float32, in the main
// graph and in If/Loop/Scan bodies at every depth (the body interfaces: ./float16-subgraph.ts).
// Pure. Bit-exact round-to-nearest-even conversion comes from src/quant/float16.ts.
//
// Which ops stay float32 by default (DEFAULT_BLOCK), measured on onnxruntime-node 1.30 CPU with a
// one-op float16 model per op (opset 18):
//
// | op(s)                                                        | why kept float32                                    |
// |--------------------------------------------------------------|-----------------------------------------------------|
// | Range, NonMaxSuppression, Upsample                            | no float16 in the op schema: ORT refuses the model  |
// | RandomNormal(Like), RandomUniform(Like), Multinomial, Bernoulli, EyeLike | output type set by a `dtype` attribute (float32)  |
// | QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear       | scales are float32 below opset 19; quantized models are left as they are |
// | Exp, Pow, ReduceSum, ReduceSumSquare, ReduceL2, ReduceProd, ReduceLogSumExp, CumSum | numerically risky: results overflow float16's ±65504 easily |
// | any op outside the default ONNX domain (com.microsoft, ...)   | kernels per type unknown to lowbit                   |
//
// Everything else measured ran with float16 tensors (Conv, ConvTranspose, MatMul, Gemm, pools,
// normalizations, Softmax, Resize, elementwise, shape ops, GRU/LSTM, GridSample, RoiAlign, ...). ORT's CPU
// provider has real float16 kernels for few of them; for the rest it inserts Casts to float32 around the
// node itself, so a float16 model halves the file but is not faster on CPU.
//
// bfloat16: ORT 1.30's CPU provider has bfloat16 kernels only for data movement (Cast, Reshape, Transpose,
// Concat, Gather, Slice, ...): no Add, Mul, Conv or MatMul. A fully converted bf16 model is for runtimes with
// bf16 compute (GPUs, other engines); `weightsOnly` keeps compute float32 and stores the weights as
// bf16 (or fp16) behind one Cast each, which ORT folds when it loads the model: half the file, runs anywhere.

import { LowbitError } from '../errors.js';
import { attrTensor, makeAttribute, removeAttribute, setAttribute } from '../onnx/attributes.js';
import { inferElemTypes } from '../onnx/infer.js';
import { Graph, Model, makeNode } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { deferTensor, dimsOf, elementCount, makeTensor, tensorStorage } from '../onnx/tensor.js';
import { bfloat16ToFloat32, float32BitsToBfloat16Bits, float32BitsToFloat16Bits } from '../quant/float16.js';
import { bodyOutTypes, bodyReadsHalf, checkSubgraphs, collectBlocks, convertBodies, retypeBodyIo, type Blocks, type BodyIo, type BodyTarget } from './float16-subgraph.js';
import { bodyGraphs, cloneModelDeep, hasBodies } from './qdq-subgraph.js';
import { nodePath } from './graph-scopes.js';

/** The 16-bit float types the pass converts to. */
export const FLOAT16_TYPES = ['float16', 'bfloat16'] as const;
export type Float16Type = (typeof FLOAT16_TYPES)[number];

/** Op types kept float32 by default, with the reason (see the table at the top of this file). */
export const DEFAULT_BLOCK: Readonly<Record<string, string>> = {
  Range: 'no float16 Range in the ONNX schema',
  NonMaxSuppression: 'no float16 NonMaxSuppression in the ONNX schema',
  Upsample: 'no float16 Upsample kernel registered (deprecated op)',
  RandomNormal: 'output type set by its dtype attribute',
  RandomUniform: 'output type set by its dtype attribute',
  RandomNormalLike: 'output type set by its dtype attribute',
  RandomUniformLike: 'output type set by its dtype attribute',
  Multinomial: 'output type set by its dtype attribute',
  Bernoulli: 'output type set by its dtype attribute',
  EyeLike: 'output type set by its dtype attribute',
  QuantizeLinear: 'quantization scales stay float32',
  DequantizeLinear: 'quantization scales stay float32',
  DynamicQuantizeLinear: 'quantization scales stay float32',
  Exp: 'numerically risky in float16 (overflows above x ≈ 11)',
  Pow: 'numerically risky in float16 (overflow)',
  ReduceSum: 'numerically risky in float16 (sums over large tensors overflow)',
  ReduceSumSquare: 'numerically risky in float16 (overflow)',
  ReduceL2: 'numerically risky in float16 (overflow of the sum of squares)',
  ReduceProd: 'numerically risky in float16 (overflow)',
  ReduceLogSumExp: 'numerically risky in float16 (overflow)',
  CumSum: 'numerically risky in float16 (running sums overflow)',
};

/** Input slots that must stay float32 whatever the op computes in (Resize: roi, scales). */
const FLOAT32_SLOTS: Readonly<Record<string, readonly number[]>> = {
  Resize: [1, 2],
};

export interface Float16Options {
  /** Target type: 'float16' (default) or 'bfloat16'. */
  type?: Float16Type;
  /** Keep float32 graph inputs and outputs, with Casts inside the graph (default true). */
  keepIoTypes?: boolean;
  /** Op types kept float32 (default: the keys of DEFAULT_BLOCK); replaces the default list. */
  blockOps?: readonly string[];
  /** Node names kept float32, besides blockOps. */
  blockNodes?: readonly string[];
  /**
   * Store the float32 weights in the 16-bit type and compute in float32: each converted initializer is read
   * through one Cast to float32 (ORT folds it at load time). For bfloat16 on CPU runtimes. Default false.
   */
  weightsOnly?: boolean;
  /**
   * Make the converted initializers deferred tensors (src/onnx/deferred.ts): each is converted when it is read or
   * saved (saveModel writes them one at a time), so a model loaded with `externalData: 'stream'` is converted without
   * holding its weights. The report's counts and byte sizes are complete at once; `clamped`, `flushedToZero` and the
   * clamping `warnings` are filled in as tensors are produced, and are complete once the model has been saved (or
   * every converted tensor read once): build the user-facing report after saveModel. Default false.
   */
  defer?: boolean;
}

/** A tensor whose values were clamped to the 16-bit type's largest finite value. */
export interface ClampedTensor {
  tensor: string;
  /** Elements clamped. */
  count: number;
  /** Largest magnitude before clamping. */
  maxAbs: number;
}

export interface Float16Report {
  type: Float16Type;
  weightsOnly: boolean;
  /** Initializers and Constant tensors converted. */
  tensors: number;
  /** Their storage, bytes: float32 before, 16-bit after. */
  bytesBefore: number;
  bytesAfter: number;
  /** Tensors with values beyond the type's range, clamped (each one also in `warnings`). */
  clamped: ClampedTensor[];
  /** Non-zero finite values that became ±0 (below half the smallest subnormal). */
  flushedToZero: number;
  /** Nodes computing in the 16-bit type (weightsOnly: 0). */
  converted: number;
  /** Nodes kept float32, with the reason. */
  blocked: { node: string; opType: string; reason: string }[];
  /** Cast nodes inserted. */
  casts: number;
  warnings: string[];
}

const FP16_MAX = 65504;
/** Largest finite bfloat16, 0x7f7f. */
const BF16_MAX = bfloat16ToFloat32(0x7f7f);

/**
 * Converts a float32 array to 16-bit float bits (round to nearest even), clamping finite values beyond the type's
 * range to ±max and counting non-zero values that become zero.
 */
export function toFloat16Bits(src: Float32Array, type: Float16Type): { bits: Uint16Array; clamped: number; maxAbs: number; flushed: number } {
  const max = type === 'float16' ? FP16_MAX : BF16_MAX;
  const conv = type === 'float16' ? float32BitsToFloat16Bits : float32BitsToBfloat16Bits;
  const i32 = new Int32Array(src.buffer, src.byteOffset, src.length);
  const bits = new Uint16Array(src.length);
  let clamped = 0;
  let flushed = 0;
  let maxAbs = 0;
  const maxBits = type === 'float16' ? 0x7bff : 0x7f7f;
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    let h = conv(i32[i]!);
    const a = Math.abs(v);
    if (a > max && a !== Infinity) {
      // Finite values beyond the range would round to ±Infinity: clamp to ±max instead.
      clamped++;
      if (a > maxAbs) maxAbs = a;
      h = (v < 0 ? 0x8000 : 0) | maxBits;
    } else if ((h & 0x7fff) === 0 && v !== 0) flushed++;
    bits[i] = h;
  }
  return { bits, clamped, maxAbs, flushed };
}

interface State {
  elem: number;
  type: Float16Type;
  report: Float16Report;
  defer: boolean;
}

function recordClamping(name: string, r: { clamped: number; maxAbs: number; flushed: number }, s: State): void {
  if (r.clamped) {
    s.report.clamped.push({ tensor: name, count: r.clamped, maxAbs: r.maxAbs });
    s.report.warnings.push(
      `tensor '${name}': ${r.clamped} value${r.clamped === 1 ? '' : 's'} beyond ${s.type}'s range (largest |x| = ${r.maxAbs.toPrecision(4)}) clamped to ±${s.type === 'float16' ? FP16_MAX : BF16_MAX.toPrecision(4)}`,
    );
  }
  s.report.flushedToZero += r.flushed;
}

/** Converts one float32 tensor, or (defer) makes the deferred tensor that converts it when read; initializers only. */
function convertTensor(t: TensorProto, name: string, s: State, deferrable = false): TensorProto {
  let out: TensorProto;
  if (s.defer && deferrable) {
    const dims = dimsOf(t);
    const count = elementCount(dims);
    let recorded = false;
    // Produced on each read (from the source tensor, itself possibly streamed); the report is filled once.
    out = deferTensor(t.name ?? name, s.elem, dims, () => {
      const r = toFloat16Bits(tensorStorage(t) as Float32Array, s.type);
      if (!recorded) {
        recorded = true;
        recordClamping(name, r, s);
      }
      return r.bits;
    });
    s.report.bytesBefore += count * 4;
    s.report.bytesAfter += count * 2;
  } else {
    const src = tensorStorage(t) as Float32Array;
    const r = toFloat16Bits(src, s.type);
    recordClamping(name, r, s);
    s.report.bytesBefore += src.length * 4;
    s.report.bytesAfter += src.length * 2;
    out = makeTensor(t.name ?? name, s.elem, dimsOf(t), r.bits);
  }
  s.report.tensors++;
  if (t.docString !== undefined) out.docString = t.docString;
  return out;
}

const isFloat32Tensor = (t: TensorProto | undefined): t is TensorProto => t !== undefined && t.dataType === DataType.FLOAT;

function castNode(graph: Graph, from: string, to: string, elem: number): NodeProto {
  return makeNode('Cast', [from], [to], { name: graph.freshName(`${to}_Cast`), attribute: [makeAttribute('to', elem)] });
}

/** Value infos for renamed/new values: same shape, the given type. */
function retype(graph: Graph, name: string, elem: number): void {
  const vi = graph.valueInfo.get(name);
  const tt = vi?.type?.tensorType;
  if (tt && tt.elemType === DataType.FLOAT) tt.elemType = elem;
}

/** Weights-only form: each float32 initializer stored in the 16-bit type, read through a Cast to float32. */
function convertWeightsOnly(graph: Graph, s: State): void {
  for (const [name, t] of [...graph.initializers]) {
    if (!isFloat32Tensor(t) || graph.inputs.some((v) => v.name === name)) continue;
    const stored = graph.freshName(`${name}_${s.type === 'float16' ? 'fp16' : 'bf16'}`);
    graph.initializers.delete(name);
    graph.setInitializer(convertTensor({ ...t, name: stored }, name, s, true));
    graph.addNodes([castNode(graph, stored, name, DataType.FLOAT)], 0);
    s.report.casts++;
  }
  // Constant nodes holding float32 tensors (some exporters write every weight so): the Constant holds the 16-bit
  // tensor under a fresh output name, a Cast gives the original name back as float32.
  for (const n of graph.nodes.slice()) {
    const t = n.opType === 'Constant' && (n.domain ?? '') === '' ? attrTensor(n, 'value') : undefined;
    const name = n.output[0];
    if (!isFloat32Tensor(t) || !name) continue;
    const stored = graph.freshName(`${name}_${s.type === 'float16' ? 'fp16' : 'bf16'}`);
    setAttribute(n, 'value', convertTensor(t, name, s));
    n.output = [stored];
    graph.insertAfter(n, [castNode(graph, stored, name, DataType.FLOAT)]);
    s.report.casts++;
  }
}

/** What the conversion of every graph shares: options, and the blocked nodes of each graph (bodies included). */
interface Ctx {
  s: State;
  keepIo: boolean;
  blockOps: ReadonlySet<string>;
  blockNodes: ReadonlySet<string>;
  /** The target type and the Scan input offset, as the bodies' conversion needs them. */
  target: BodyTarget;
  /** Per graph: its blocked nodes and why; `inherited` set when the graph is the body of a blocked node. */
  blocks: Blocks;
}

function blockReason(n: NodeProto, path: string | undefined, blockOps: ReadonlySet<string>, blockNodes: ReadonlySet<string>): string | undefined {
  if ((n.name && blockNodes.has(n.name)) || (path !== undefined && blockNodes.has(path))) return 'in blockNodes';
  const domain = n.domain ?? '';
  if (domain !== '' && domain !== 'ai.onnx') return `op of domain '${domain}'`;
  if (blockOps.has(n.opType ?? '')) return DEFAULT_BLOCK[n.opType ?? ''] ?? 'in blockOps';
  return undefined;
}

const floatOnlySlot = (blocked: ReadonlyMap<NodeProto, string>, n: NodeProto, slot: number): boolean => blocked.has(n) || (FLOAT32_SLOTS[n.opType ?? ''] ?? []).includes(slot);


/**
 * Converts one graph: the main graph (`io` undefined: inputs and outputs per keepIoTypes) or an If/Loop/Scan body
 * (`io`: the types its node gives its formal inputs and wants of its outputs), then the bodies under it.
 */
function convertGraph(graph: Graph, ctx: Ctx, types: Map<string, number>, io?: BodyIo): void {
  const s = ctx.s;
  const keepIo = ctx.keepIo;
  const F32 = DataType.FLOAT;
  const { blocked, inherited } = ctx.blocks.get(graph)!;
  if (!inherited) {
    graph.nodes.forEach((n, i) => {
      const why = blocked.get(n);
      if (why !== undefined) s.report.blocked.push({ node: io ? nodePath({ prefix: ctx.blocks.get(graph)!.prefix }, n, i) : (n.name ?? ''), opType: n.opType ?? '', reason: why });
    });
  }
  const floatOnly = (n: NodeProto, slot: number): boolean => floatOnlySlot(blocked, n, slot);
  const bodies = hasBodies(graph);
  const outerHalf = io?.outerHalf ?? ((): boolean => false);

  // 1. Which values become 16-bit (`half`): converted initializers, Constant outputs, float outputs of converted nodes,
  //    and graph inputs when the IO types change.
  const half = new Set<string>();
  for (const [name, t] of graph.initializers) {
    if (!isFloat32Tensor(t) || graph.inputs.some((v) => v.name === name)) continue;
    const readers = graph.consumers(name);
    const asOutput = io ? graph.outputs.some((o, k) => o.name === name && io.outWant[k] === s.elem) : graph.isGraphOutput(name);
    const wanted = readers.some((n) => n.input.some((i, k) => i === name && !floatOnly(n, k))) || asOutput || (bodies && bodyReadsHalf(graph, name, ctx.blocks, floatOnlySlot));
    if (!wanted) continue;
    graph.setInitializer(convertTensor(t, name, s, true));
    half.add(name);
  }
  for (const n of graph.nodes) {
    if (blocked.has(n)) continue;
    s.report.converted++;
    if (n.opType === 'Constant') {
      const t = attrTensor(n, 'value');
      const vf = n.attribute.find((a) => a.name === 'value_float' || a.name === 'value_floats');
      if (isFloat32Tensor(t)) {
        setAttribute(n, 'value', convertTensor(t, n.output[0] ?? '', s));
      } else if (vf) {
        const vals = vf.name === 'value_float' ? [vf.f ?? 0] : vf.floats;
        const dims = vf.name === 'value_float' ? [] : [vals.length];
        removeAttribute(n, vf.name!);
        setAttribute(n, 'value', convertTensor(makeTensor(n.output[0] ?? '', F32, dims, Float32Array.from(vals)), n.output[0] ?? '', s));
      }
    } else if (n.opType === 'ConstantOfShape') {
      const t = attrTensor(n, 'value');
      if (t === undefined) setAttribute(n, 'value', makeTensor('value', s.elem, [1], new Uint16Array(1)));
      else if (isFloat32Tensor(t)) setAttribute(n, 'value', convertTensor(t, `${n.name ?? ''}.value`, s));
    } else if (n.opType === 'Cast') {
      const to = n.attribute.find((a) => a.name === 'to');
      if (to && Number(to.i) === F32) setAttribute(n, 'to', s.elem);
    }
    for (const o of n.output) if (o && types.get(o) === F32) half.add(o);
  }
  if (io) {
    graph.inputs.forEach((v, k) => {
      if (v.name && io.inWant[k] === s.elem) half.add(v.name);
    });
  } else if (!keepIo) for (const v of graph.inputs) if (v.name && graph.isGraphInput(v.name) && types.get(v.name) === F32) half.add(v.name);
  // The type each If/Loop/Scan output ends with, for its bodies (set before step 3 renames values).
  const outTypes = bodies ? bodyOutTypes(graph, half, types, s.elem) : new Map<NodeProto, (number | undefined)[]>();

  // 2. Casts where a reader wants the other type: 16-bit values into float32 slots, float32 values into converted nodes.
  const newNodes: NodeProto[] = [];
  const casted = new Map<string, string>();
  const castTo = (value: string, elem: number): string => {
    const key = `${elem}:${value}`;
    let out = casted.get(key);
    if (out === undefined) {
      out = graph.freshName(`${value}_${elem === F32 ? 'fp32' : s.type === 'float16' ? 'fp16' : 'bf16'}`);
      newNodes.push(castNode(graph, value, out, elem));
      casted.set(key, out);
    }
    return out;
  };
  for (const n of graph.nodes) {
    n.input.forEach((v, k) => {
      if (!v) return;
      const isHalf = half.has(v) || outerHalf(v);
      const isF32 = !isHalf && types.get(v) === F32;
      if (floatOnly(n, k)) {
        if (isHalf) n.input[k] = castTo(v, F32);
      } else if (isF32) n.input[k] = castTo(v, s.elem);
    });
  }

  // 3. Graph outputs. Main graph: keepIoTypes casts 16-bit outputs back to float32 under their own names; otherwise
  //    they change type. Body: each output gets the type its node wants (a Cast under a fresh output name if needed).
  /** Values of this graph that are 16-bit once converted, as bodies under it see them. */
  const seenHalf = bodies ? new Set(half) : half;
  if (io) {
    retypeBodyIo(graph, io, half, types, ctx.target, (from, to, elem) => newNodes.push(castNode(graph, from, to, elem)));
  } else {
    for (const o of graph.outputs) {
      const name = o.name ?? '';
      const tt = o.type?.tensorType;
      if (keepIo) {
        if (!half.has(name)) continue;
        const inner = graph.freshName(`${name}_${s.type === 'float16' ? 'fp16' : 'bf16'}`);
        const p = graph.producer(name);
        if (p) p.output = p.output.map((x) => (x === name ? inner : x));
        for (const n of [...graph.nodes, ...newNodes]) n.input = n.input.map((x) => (x === name ? inner : x));
        if (graph.initializers.has(name)) {
          const t = graph.initializers.get(name)!;
          graph.initializers.delete(name);
          graph.setInitializer({ ...t, name: inner });
        }
        half.delete(name);
        half.add(inner);
        if (bodies) {
          seenHalf.delete(name);
          seenHalf.add(inner);
        }
        newNodes.push(castNode(graph, inner, name, F32));
      } else if (tt && tt.elemType === F32) {
        if (!half.has(name)) {
          // a float32 output of a kept-float32 node: cast it to the 16-bit type too, so every output has one type
          const inner = graph.freshName(`${name}_fp32`);
          const p = graph.producer(name);
          if (p) p.output = p.output.map((x) => (x === name ? inner : x));
          for (const n of [...graph.nodes, ...newNodes]) n.input = n.input.map((x) => (x === name ? inner : x));
          newNodes.push(castNode(graph, inner, name, s.elem));
          if (bodies) seenHalf.add(name);
        }
        tt.elemType = s.elem;
      }
    }
    if (!keepIo) {
      for (const v of graph.inputs) {
        const tt = v.type?.tensorType;
        if (v.name && half.has(v.name) && tt) tt.elemType = s.elem;
      }
    }
  }
  for (const name of half) retype(graph, name, s.elem);
  s.report.casts += newNodes.length;
  graph.addNodes(newNodes);

  // 4. The bodies, each with the interface its node now has.
  if (bodies) {
    const halfHere = (name: string): boolean => seenHalf.has(name) || outerHalf(name);
    convertBodies(graph, ctx.blocks, outTypes, types, halfHere, io !== undefined, ctx.target, (sub, subTypes, bio) => convertGraph(sub, ctx, subTypes, bio));
  }
  graph.sortInPlace();
}

/**
 * Converts a float32 model to float16 or bfloat16: float32 initializers and Constant values are rounded (nearest even,
 * src/quant/float16.ts), float32 activations change type, and Cast nodes go in at the graph inputs and outputs (with
 * `keepIoTypes`, the default: callers still feed and read float32) and around every blocked node (kept float32:
 * DEFAULT_BLOCK, `blockOps`, `blockNodes`). Finite values beyond the type's range are clamped to its largest value,
 * with a warning naming each tensor; non-zero values that round to zero are counted. With `weightsOnly` the weights are
 * only stored in 16 bits (one Cast to float32 each) and every node computes in float32. With `defer` the initializers
 * are converted when saved (see Float16Options.defer for when the report is complete). The input model is not modified.
 * If/Loop/Scan bodies are converted the same way, at every depth (transformers.js' `decoder_model_merged.onnx`: an If
 * whose branches read the decoder's weights from the main graph): every graph's float32 initializers are converted, a
 * body reading an enclosing graph's value sees its converted type (a Cast inside the body where a blocked node there
 * needs float32), and the node's float inputs and outputs, the body's formal inputs and outputs (Loop carried values,
 * Scan states and scan inputs/outputs) all take the 16-bit type — float32 when the If/Loop/Scan node itself is blocked,
 * which keeps its bodies float32 whole. `keepIoTypes` concerns the main graph only. Body nodes are reported, and
 * matched by `blockNodes` besides their plain name, by their path (`if_node/then_branch/node`, see weight-only's
 * nodePath).
 * @throws LowbitError BAD_OPTION for an unknown type; UNSUPPORTED_MODEL for subgraphs of other ops (SequenceMap,
 *   custom domains), Loop carried values / Scan states / body outputs whose float type cannot be inferred or would
 *   change through the body, bfloat16 below opset 13, and tensors whose data cannot be read
 */
export function convertFloat16(model: Model, options: Float16Options = {}): { model: Model; report: Float16Report } {
  const type = options.type ?? 'float16';
  if (!FLOAT16_TYPES.includes(type)) {
    throw new LowbitError('BAD_OPTION', `type must be one of ${FLOAT16_TYPES.join(', ')} (got ${JSON.stringify(type)})`, "use 'float16' or 'bfloat16'");
  }
  const weightsOnly = options.weightsOnly ?? false;
  const opset = model.opset('');
  if (type === 'bfloat16' && opset !== undefined && opset < 13) {
    throw new LowbitError(
      'UNSUPPORTED_MODEL',
      `bfloat16 needs opset 13 or later (Cast and most ops gained bfloat16 there); this model uses opset ${opset}`,
      're-export the model at opset 13 or later, or convert to float16 (--mode fp16), which every opset supports',
    );
  }
  const bodies = hasBodies(model.graph);
  let out: Model;
  if (bodies) {
    // Body nodes are shared with the input model by a shallow copy: copy every graph's nodes and value infos.
    out = cloneModelDeep(model);
    for (const g of [out.graph, ...bodyGraphs(out.graph)]) {
      g.inputs = g.inputs.map((v) => structuredCloneVi(v));
      g.outputs = g.outputs.map((v) => structuredCloneVi(v));
      for (const [k, v] of [...g.valueInfo]) g.valueInfo.set(k, structuredCloneVi(v));
      g.touch();
    }
  } else {
    out = new Model(model.toProto());
    // toProto shares node and tensor objects with the input: copy the nodes so attribute edits stay here.
    out.graph.nodes = out.graph.nodes.map((n) => ({ ...n, input: n.input.slice(), output: n.output.slice(), attribute: n.attribute.slice() }));
    out.graph.inputs = out.graph.inputs.map((v) => structuredCloneVi(v));
    out.graph.outputs = out.graph.outputs.map((v) => structuredCloneVi(v));
    for (const [k, v] of [...out.graph.valueInfo]) out.graph.valueInfo.set(k, structuredCloneVi(v));
    out.graph.touch();
  }
  const s: State = {
    elem: type === 'float16' ? DataType.FLOAT16 : DataType.BFLOAT16,
    type,
    report: { type, weightsOnly, tensors: 0, bytesBefore: 0, bytesAfter: 0, clamped: [], flushedToZero: 0, converted: 0, blocked: [], casts: 0, warnings: [] },
    defer: options.defer ?? false,
  };
  checkSubgraphs(out.graph);
  if (weightsOnly) {
    convertWeightsOnly(out.graph, s);
    if (bodies) for (const g of bodyGraphs(out.graph)) convertWeightsOnly(g, s);
  } else {
    const ctx: Ctx = {
      s,
      keepIo: options.keepIoTypes ?? true,
      blockOps: new Set(options.blockOps ?? Object.keys(DEFAULT_BLOCK)),
      blockNodes: new Set(options.blockNodes ?? []),
      target: { elem: s.elem, type, scanOffset: (opset ?? 9) < 9 ? 1 : 0 },
      blocks: new Map(),
    };
    collectBlocks(out.graph, '', false, ctx.blocks, (n, path) => blockReason(n, path, ctx.blockOps, ctx.blockNodes));
    convertGraph(out.graph, ctx, inferElemTypes(out.graph));
  }
  return { model: out, report: s.report };
}

/** A deep copy of a ValueInfoProto's type (the rest shared), so retyping never touches the input model. */
function structuredCloneVi<T extends { type?: unknown }>(v: T): T {
  if (!v.type) return { ...v };
  const copy = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(copy);
    if (x && typeof x === 'object' && !(x instanceof Uint8Array)) return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, copy(y)]));
    return x;
  };
  return { ...v, type: copy(v.type) } as T;
}
