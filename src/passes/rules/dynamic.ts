// Per-op rules of dynamic quantization: how MatMul, Gemm, Conv and LSTM become ORT's integer kernels
// (or why they stay float). Pure; imported by passes/quantize-dynamic.ts only.

import { attrFloat, attrInt, attrInts, makeAttribute } from '../../onnx/attributes.js';
import { isFloatType } from '../../onnx/infer.js';
import { MS_DOMAIN, makeNode, type Graph } from '../../onnx/ir.js';
import { DataType, type NodeProto } from '../../onnx/proto.js';
import { dataTypeName, dimsOf, makeTensor, tensorStorage } from '../../onnx/tensor.js';
import { addQuantizedWeight, readFloatConstant, type QuantizedWeight } from '../quant-weight.js';

export { MS_DOMAIN };

/** What a rule needs from the pass: options, types, cached weight quantization, fresh names. */
export interface DynamicContext {
  graph: Graph;
  weightType: 'int8' | 'uint8';
  perChannel: boolean;
  reduceRange: boolean;
  conv: 'float' | 'ConvInteger';
  matmul: 'DynamicQuantizeMatMul' | 'MatMulInteger';
  /** Default-domain opset of the model. */
  opset: number;
  /** Element type of a value (undefined = unknown). */
  elemType(name: string): number | undefined;
  /** True when `name` is a constant visible from `graph`. */
  isConstant(name: string): boolean;
  /**
   * Quantizes a weight once per (constant, variant): `make` receives the graph that owns the constant (its
   * initializers are where the quantized tensors go) and is called only on a cache miss.
   */
  weight(name: string, variant: string, make: (owner: Graph) => QuantizedWeight): QuantizedWeight;
  /** Records that a float constant may now be unused (removed at the end if nothing reads it). */
  release(name: string): void;
}

/** A rule's verdict: replace the node (and drop `remove`, e.g. a folded Add), or leave it with a reason. */
export type Outcome = { form: string; nodes: NodeProto[]; remove?: NodeProto[] } | { skip: string };

export type DynamicRule = (ctx: DynamicContext, node: NodeProto) => Outcome;

const FLOAT = DataType.FLOAT;

/** Why a float-typed node cannot use ORT's float32-only integer kernels, or undefined when it can. */
function notFloat32(ctx: DynamicContext, value: string, what: string): string | undefined {
  const t = ctx.elemType(value);
  // Only other float types count: a non-float answer for a float op's input is an inference gap, not a fact.
  if (t === undefined || t === FLOAT || !isFloatType(t)) return undefined;
  return `${what} is ${dataTypeName(t)}: ORT's dynamic-quantization kernels take float32 only (convert the model to float32 first)`;
}

function weightOpts(ctx: DynamicContext, axis: number, symmetric = ctx.weightType === 'int8') {
  // ORT's default: int8 weights symmetric (zero point 0), uint8 weights asymmetric.
  return { qtype: ctx.weightType, perChannel: ctx.perChannel, axis, symmetric, reduceRange: ctx.reduceRange };
}

function variantKey(ctx: DynamicContext, form: string, symmetric: boolean): string {
  return `${form}|${ctx.weightType}|${ctx.perChannel ? 'pc' : 'pt'}|${symmetric ? 'sym' : 'asym'}|${ctx.reduceRange ? 'rr' : ''}`;
}

/** A fresh float32 initializer; returns its name. */
function addFloat(graph: Graph, base: string, dims: number[], data: Float32Array): string {
  const name = graph.freshName(base);
  graph.setInitializer(makeTensor(name, FLOAT, dims, data));
  return name;
}

/** The Add right after `node` whose other input is a float32 constant of shape [n], if the pair can be fused. */
function foldableBias(ctx: DynamicContext, node: NodeProto, n: number): { add: NodeProto; bias: string } | undefined {
  const y = node.output[0]!;
  const users = ctx.graph.consumers(y);
  if (users.length !== 1 || ctx.graph.isGraphOutput(y)) return undefined;
  const add = users[0]!;
  if (add.opType !== 'Add' || (add.domain ?? '') !== '' || add.input.length !== 2 || add.input[0] === add.input[1]) return undefined;
  const bias = add.input[0] === y ? add.input[1]! : add.input[0]!;
  const t = ctx.isConstant(bias) ? ctx.graph.constant(bias) : undefined;
  if (!t || t.dataType !== FLOAT || t.dims.length !== 1 || Number(t.dims[0]) !== n) return undefined;
  return { add, bias };
}

/**
 * The integer matmul of float `a` by quantized `w` writing float `y`: ORT's DynamicQuantizeMatMul, or the
 * standard-ONNX chain DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (which ORT fuses back into
 * DynamicQuantizeMatMul at ORT_ENABLE_EXTENDED) plus an Add for the bias.
 */
function integerMatMul(ctx: DynamicContext, name: string, a: string, w: QuantizedWeight, bias: string, y: string): NodeProto[] {
  const g = ctx.graph;
  if (ctx.matmul === 'DynamicQuantizeMatMul') {
    const inputs = [a, w.quantized, w.scale, w.zeroPoint, ...(bias ? [bias] : [])];
    return [makeNode('DynamicQuantizeMatMul', inputs, [y], { name: g.freshName(`${name}_quant`), domain: MS_DOMAIN })];
  }
  const v = (s: string) => g.freshName(`${name}_${s}`);
  const [aq, as, az, mi, mf, sc] = [v('a_quantized'), v('a_scale'), v('a_zero_point'), v('int32'), v('float'), v('scale')];
  const scaled = bias ? v('scaled') : y;
  const nodes = [
    makeNode('DynamicQuantizeLinear', [a], [aq, as, az], { name: v('DynamicQuantizeLinear') }),
    makeNode('MatMulInteger', [aq, w.quantized, az, w.zeroPoint], [mi], { name: v('MatMulInteger') }),
    makeNode('Cast', [mi], [mf], { name: v('Cast'), attribute: [makeAttribute('to', FLOAT)] }),
    makeNode('Mul', [as, w.scale], [sc], { name: v('scales_mul') }),
    makeNode('Mul', [mf, sc], [scaled], { name: v('output_scale_mul') }),
  ];
  if (bias) nodes.push(makeNode('Add', [scaled, bias], [y], { name: v('bias_add') }));
  return nodes;
}

function matmulFormSkip(ctx: DynamicContext): string | undefined {
  if (ctx.matmul === 'MatMulInteger' && ctx.opset < 11) {
    return `the MatMulInteger form needs DynamicQuantizeLinear (opset 11); the model is opset ${ctx.opset}`;
  }
  return undefined;
}

/**
 * B of a MatMul as a constant [K, N] weight: the constant itself, or Transpose(perm [1, 0]) of a constant
 * [N, K] (how older PyTorch exports write Linear). `via` is that Transpose when this MatMul is its only reader.
 */
function resolveWeight(ctx: DynamicContext, node: NodeProto, b: string): { source: string; transposed: boolean; dims: number[]; via?: NodeProto } | undefined {
  const g = ctx.graph;
  if (ctx.isConstant(b)) return { source: b, transposed: false, dims: dimsOf(g.constant(b)!) };
  const t = g.producer(b);
  if (!t || t.opType !== 'Transpose' || (t.domain ?? '') !== '' || !ctx.isConstant(t.input[0] ?? '')) return undefined;
  const dims = dimsOf(g.constant(t.input[0]!)!);
  const perm = attrInts(t, 'perm');
  if (dims.length !== 2 || (perm && (perm[0] !== 1 || perm[1] !== 0))) return undefined;
  const sole = g.consumers(b).length === 1 && g.consumers(b)[0] === node && !g.isGraphOutput(b);
  return { source: t.input[0]!, transposed: true, dims: [dims[1]!, dims[0]!], ...(sole ? { via: t } : {}) };
}

/** MatMul(A, B constant [K, N]) -> DynamicQuantizeMatMul, folding a following Add of a [N] constant as bias. */
const matMul: DynamicRule = (ctx, node) => {
  const [a, b] = node.input as [string, string];
  const wt = resolveWeight(ctx, node, b);
  if (!wt) return { skip: 'B is not a constant (activation x activation MatMul stays float)' };
  const why = notFloat32(ctx, a, 'input A') ?? notFloat32(ctx, wt.source, 'weight B') ?? matmulFormSkip(ctx);
  if (why) return { skip: why };
  const dims = wt.dims;
  if (dims.length !== 2) return { skip: `weight B has rank ${dims.length}; only 2-D weights are quantized (ORT prepacks 2-D B only)` };
  const sym = ctx.weightType === 'int8';
  const w = ctx.weight(wt.source, variantKey(ctx, wt.transposed ? 'matmul|t' : 'matmul', sym), (owner) => {
    const f = readFloatConstant(ctx.graph, wt.source);
    const data = wt.transposed ? transpose2d(f.data, dims[1]!, dims[0]!) : f.data;
    return addQuantizedWeight(owner, wt.source, data, dims, weightOpts(ctx, 1, sym));
  });
  ctx.release(wt.source);
  const fold = foldableBias(ctx, node, dims[1]!);
  const y = fold ? fold.add.output[0]! : node.output[0]!;
  const nodes = integerMatMul(ctx, node.name || 'MatMul', a, w, fold?.bias ?? '', y);
  const remove = [...(fold ? [fold.add] : []), ...(wt.via ? [wt.via] : [])];
  const notes = `${fold ? ' (+bias)' : ''}${wt.transposed ? ' (Transpose folded)' : ''}`;
  return { form: `${ctx.matmul}${notes}`, nodes, ...(remove.length ? { remove } : {}) };
};

/** Transposes a [r, c] matrix. */
function transpose2d(x: Float32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = x[i * c + j]!;
  return out;
}

/**
 * Gemm(A, B constant, C) -> DynamicQuantizeMatMul: transB transposes the weight, alpha is folded into it, beta
 * into the bias. A constant C of [N], [1, N], [1] or [] becomes the kernel bias; any other C is added after.
 */
const gemm: DynamicRule = (ctx, node) => {
  const [a, b] = node.input as [string, string];
  const c = node.input[2] ?? '';
  if (attrInt(node, 'transA', 0) !== 0) return { skip: 'transA=1 would need a Transpose of the activation; left float' };
  if (!ctx.isConstant(b)) return { skip: 'B is not a constant (activation x activation Gemm stays float)' };
  const why = notFloat32(ctx, a, 'input A') ?? notFloat32(ctx, b, 'weight B') ?? (c ? notFloat32(ctx, c, 'input C') : undefined) ?? matmulFormSkip(ctx);
  if (why) return { skip: why };
  const dims = dimsOf(ctx.graph.constant(b)!);
  if (dims.length !== 2) return { skip: `weight B has rank ${dims.length}, Gemm needs 2` };
  const transB = attrInt(node, 'transB', 0) !== 0;
  const alpha = attrFloat(node, 'alpha', 1);
  const beta = attrFloat(node, 'beta', 1);
  const n = transB ? dims[0]! : dims[1]!;
  const sym = ctx.weightType === 'int8';
  const w = ctx.weight(b, variantKey(ctx, `gemm|${transB ? 't' : ''}|${alpha}`, sym), (owner) => {
    const f = readFloatConstant(ctx.graph, b);
    let data = transB ? transpose2d(f.data, dims[0]!, dims[1]!) : f.data;
    if (alpha !== 1) data = data.map((v) => v * alpha);
    return addQuantizedWeight(owner, b, data, transB ? [dims[1]!, dims[0]!] : dims, weightOpts(ctx, 1, sym));
  });
  ctx.release(b);
  const g = ctx.graph;
  const y = node.output[0]!;
  const name = node.name || 'Gemm';
  const notes = [transB ? 'transB' : '', alpha !== 1 ? 'alpha' : '', c && beta !== 1 ? 'beta' : ''].filter(Boolean);
  const form = (base: string, extra: string) => `${base}${extra} (Gemm${notes.length ? ': ' + notes.join(', ') + ' folded' : ''})`;
  if (!c || beta === 0) {
    if (c && ctx.isConstant(c)) ctx.release(c);
    const nodes = integerMatMul(ctx, name, a, w, '', y);
    return { form: form(ctx.matmul, ''), nodes };
  }
  const ct = ctx.isConstant(c) ? g.constant(c) : undefined;
  if (ct) {
    const cd = dimsOf(ct);
    const size = cd.reduce((p, d) => p * d, 1);
    const rowLike = cd.length <= 2 && cd.slice(0, -1).every((d) => d === 1) && (size === n || size === 1);
    const cf = readFloatConstant(g, c).data;
    ctx.release(c);
    if (rowLike) {
      const bias = addFloat(g, `${c}_bias`, [n], Float32Array.from({ length: n }, (_, j) => beta * cf[size === 1 ? 0 : j]!));
      const nodes = integerMatMul(ctx, name, a, w, bias, y);
      return { form: form(ctx.matmul, ' (+bias)'), nodes };
    }
    // C of [M, N] or [M, 1]: a broadcast Add after the integer matmul.
    const scaledC = beta === 1 ? c : addFloat(g, `${c}_scaled`, cd, cf.map((v) => v * beta));
    const mm = g.freshName(`${name}_matmul`);
    const nodes = [...integerMatMul(ctx, name, a, w, '', mm), makeNode('Add', [mm, scaledC], [y], { name: g.freshName(`${name}_add_c`) })];
    return { form: form(ctx.matmul, ' + Add(C)'), nodes };
  }
  // C is an activation: out = A*B' + beta*C.
  const mm = g.freshName(`${name}_matmul`);
  const nodes = integerMatMul(ctx, name, a, w, '', mm);
  let cIn = c;
  if (beta !== 1) {
    cIn = g.freshName(`${name}_beta_c`);
    nodes.push(makeNode('Mul', [c, addFloat(g, `${name}_beta`, [], Float32Array.of(beta))], [cIn], { name: g.freshName(`${name}_beta_mul`) }));
  }
  nodes.push(makeNode('Add', [mm, cIn], [y], { name: g.freshName(`${name}_add_c`) }));
  return { form: form(ctx.matmul, ' + Add(C)'), nodes };
};

/** Conv: float by default (measured slower as ConvInteger); forced, DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul (+ Add). */
const conv: DynamicRule = (ctx, node) => {
  if (ctx.conv === 'float') {
    return { skip: "left float: ORT's CPU ConvInteger is slower than its float Conv (bench/dynamic.ts); pass conv: 'ConvInteger' to force" };
  }
  const [x, wName, bName = ''] = node.input as [string, string, string?];
  if (!ctx.isConstant(wName)) return { skip: 'the Conv weight is not a constant' };
  if (bName && !ctx.isConstant(bName)) return { skip: 'the Conv bias is not a constant' };
  const why = notFloat32(ctx, x, 'input X') ?? notFloat32(ctx, wName, 'weight W');
  if (why) return { skip: why };
  if (ctx.opset < 11) return { skip: `ConvInteger with DynamicQuantizeLinear needs opset 11; the model is opset ${ctx.opset}` };
  const g = ctx.graph;
  const wd = dimsOf(g.constant(wName)!);
  const m = wd[0]!;
  const bcast = [m, ...wd.slice(2).map(() => 1)]; // [M, 1, 1]: broadcasts over [N, M, H, W]
  // ORT's ConvInteger takes one weight zero point: symmetric makes it the same for every channel.
  const sym = ctx.perChannel || ctx.weightType === 'int8';
  const w = ctx.weight(wName, variantKey(ctx, 'conv', sym), (owner) => {
    const f = readFloatConstant(g, wName);
    const q = addQuantizedWeight(owner, wName, f.data, f.dims, weightOpts(ctx, 0, sym));
    const zp = owner.initializers.get(q.zeroPoint)!;
    owner.setInitializer(makeTensor(q.zeroPoint, zp.dataType!, [], tensorStorage(zp).slice(0, 1)));
    if (ctx.perChannel) owner.setInitializer(makeTensor(q.scale, FLOAT, bcast, q.scaleValues));
    return q;
  });
  ctx.release(wName);
  const name = node.name || 'Conv';
  const v = (s: string) => g.freshName(`${name}_${s}`);
  const [xq, xs, xz, ci, cf, sc] = [v('x_quantized'), v('x_scale'), v('x_zero_point'), v('int32'), v('float'), v('scale')];
  const y = node.output[0]!;
  const scaled = bName ? v('scaled') : y;
  const nodes = [
    makeNode('DynamicQuantizeLinear', [x], [xq, xs, xz], { name: v('DynamicQuantizeLinear') }),
    makeNode('ConvInteger', [xq, w.quantized, xz, w.zeroPoint], [ci], { name: v('ConvInteger'), attribute: node.attribute }),
    makeNode('Cast', [ci], [cf], { name: v('Cast'), attribute: [makeAttribute('to', FLOAT)] }),
    makeNode('Mul', [xs, w.scale], [sc], { name: v('scales_mul') }),
    makeNode('Mul', [cf, sc], [scaled], { name: v('output_scale_mul') }),
  ];
  if (bName) {
    const bias = addFloat(g, `${bName}_reshaped`, bcast, readFloatConstant(g, bName).data.slice());
    ctx.release(bName);
    nodes.push(makeNode('Add', [scaled, bias], [y], { name: v('bias_add') }));
  }
  return { form: 'ConvInteger', nodes };
};

/**
 * Quantizes an LSTM weight [D, 4H, I] for DynamicQuantizeLSTM: symmetric (the kernel wants int8 zero points 0
 * and uint8 zero points equal), per direction or per (direction, gate row), stored transposed as [D, I, 4H].
 */
function lstmWeight(ctx: DynamicContext, owner: Graph, name: string): QuantizedWeight {
  const f = readFloatConstant(ctx.graph, name);
  const [d, h4, k] = f.dims as [number, number, number];
  const flat = ctx.perChannel ? [d * h4, k] : [d, h4 * k];
  const q = addQuantizedWeight(owner, name, f.data, flat, { ...weightOpts(ctx, 0, true), perChannel: true });
  const qt = owner.initializers.get(q.quantized)!;
  const src = tensorStorage(qt) as Int8Array | Uint8Array;
  const dst = new (src.constructor as Int8ArrayConstructor | Uint8ArrayConstructor)(src.length);
  for (let z = 0; z < d; z++) {
    const o = z * h4 * k;
    for (let r = 0; r < h4; r++) for (let c = 0; c < k; c++) dst[o + c * h4 + r] = src[o + r * k + c]!;
  }
  owner.setInitializer(makeTensor(q.quantized, qt.dataType!, [d, k, h4], dst));
  const pdims = ctx.perChannel ? [d, h4] : [d];
  owner.setInitializer(makeTensor(q.scale, FLOAT, pdims, q.scaleValues));
  const zp = owner.initializers.get(q.zeroPoint)!;
  owner.setInitializer(makeTensor(q.zeroPoint, zp.dataType!, pdims, tensorStorage(zp)));
  return q;
}

/** LSTM(X, W, R constants) -> com.microsoft DynamicQuantizeLSTM (ORT's CPU kernel). */
const lstm: DynamicRule = (ctx, node) => {
  const [x, wName, rName] = node.input as [string, string, string];
  if (!ctx.isConstant(wName) || !ctx.isConstant(rName)) return { skip: 'W or R is not a constant' };
  const why = notFloat32(ctx, x, 'input X') ?? notFloat32(ctx, wName, 'weight W');
  if (why) return { skip: why };
  if (attrInt(node, 'layout', 0) !== 0) return { skip: 'layout=1 (batch-major) is not supported by DynamicQuantizeLSTM' };
  const g = ctx.graph;
  if (dimsOf(g.constant(wName)!).length !== 3 || dimsOf(g.constant(rName)!).length !== 3) return { skip: 'W and R must be 3-D' };
  const key = variantKey(ctx, 'lstm', true);
  const w = ctx.weight(wName, key, (owner) => lstmWeight(ctx, owner, wName));
  const r = ctx.weight(rName, key, (owner) => lstmWeight(ctx, owner, rName));
  ctx.release(wName);
  ctx.release(rName);
  const rest = Array.from({ length: 5 }, (_, i) => node.input[3 + i] ?? '');
  const inputs = [x, w.quantized, r.quantized, ...rest, w.scale, w.zeroPoint, r.scale, r.zeroPoint];
  const attribute = node.attribute.filter((a) => a.name !== 'layout');
  const q = makeNode('DynamicQuantizeLSTM', inputs, node.output.slice(), { name: g.freshName(`${node.name || 'LSTM'}_quant`), domain: MS_DOMAIN, attribute });
  return { form: 'DynamicQuantizeLSTM', nodes: [q] };
};

/** The rule per default-domain op type; other ops are not candidates for dynamic quantization. */
export const DYNAMIC_RULES: Readonly<Record<string, DynamicRule>> = { MatMul: matMul, Gemm: gemm, Conv: conv, LSTM: lstm };
