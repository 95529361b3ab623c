// QDQ -> QOperator: rewrites the node units of a static QDQ model (DequantizeLinear on the inputs -> op ->
// QuantizeLinear on the output, as quantizeStatic writes them) into the QLinear* operators ONNX Runtime also
// runs (QLinearConv, QLinearMatMul, com.microsoft QLinearAdd / QGemm / ...), and lets value-preserving ops
// (MaxPool, Reshape, ...) run on the 8-bit tensor without their DQ/Q. Units that do not match (float
// islands, int4 or int16 tensors, per-axis activations) stay QDQ. Pure.

import { LowbitError } from '../errors.js';
import { attrFloat, attrInt, attrInts, floatAttr, makeAttribute } from '../onnx/attributes.js';
import { MS_DOMAIN, makeNode, type Graph, type Model } from '../onnx/ir.js';
import { DataType, type AttributeProto, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dimsOf, tensorStorage } from '../onnx/tensor.js';
import { cloneModelDeep } from './qdq-subgraph.js';

/** The domain of ORT's contrib operators. */

/** What {@link qdqToQOperator} did. */
export interface QOperatorReport {
  /** Converted units per resulting op type ('QLinearConv', 'com.microsoft:QLinearAdd', ...). */
  converted: Record<string, number>;
  /** Value-preserving ops now running on the 8-bit tensor (their DQ/Q dropped), per op type. */
  passthrough: Record<string, number>;
  /** Units left as QDQ, with the reason (node name: reason). */
  keptQdq: string[];
  /** QuantizeLinear/DequantizeLinear nodes left in the graph (graph inputs/outputs, float islands). */
  remaining: { quantizeLinear: number; dequantizeLinear: number };
}

/** One QuantizeLinear/DequantizeLinear's quantization parameters. */
interface QParams {
  /** The quantized tensor: DQ input or Q output. */
  q: string;
  scale: string;
  zeroPoint: string;
  /** Element type of the quantized tensor (from the zero point). */
  type: number;
  /** Number of scale values (1 = per tensor). */
  count: number;
  axis: number;
}

/** Ops whose output keeps the input's scale / zero point: they run on the 8-bit tensor directly. */
const PASSTHROUGH = new Set(['Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Slice', 'Resize', 'Gather', 'GatherElements', 'Split', 'MaxPool']);

/** 8-bit types every QLinear kernel takes. */
const EIGHT_BIT = new Set<number>([DataType.UINT8, DataType.INT8]);

class Converter {
  readonly report: QOperatorReport = { converted: {}, passthrough: {}, keptQdq: [], remaining: { quantizeLinear: 0, dequantizeLinear: 0 } };
  private readonly dead = new Set<NodeProto>();

  constructor(
    private readonly g: Graph,
    private readonly opset: number,
  ) {}

  /** The initializer behind `name` (not a graph input), or undefined. */
  private init(name: string | undefined): TensorProto | undefined {
    if (!name || this.g.inputs.some((v) => v.name === name)) return undefined;
    return this.g.initializers.get(name);
  }

  /** Parameters of a Q or DQ node with constant scale and zero point, or undefined. */
  private params(n: NodeProto, quantized: string): QParams | undefined {
    const s = this.init(n.input[1]);
    const z = this.init(n.input[2]);
    if (!s || !z || s.dataType !== DataType.FLOAT || z.dataType === undefined) return undefined;
    const count = dimsOf(s).reduce((a, b) => a * b, 1);
    return { q: quantized, scale: n.input[1]!, zeroPoint: n.input[2]!, type: z.dataType, count, axis: attrInt(n, 'axis', 1) };
  }

  /** The DQ producing `name` (a live one), with its parameters. */
  private dq(name: string | undefined): (QParams & { node: NodeProto }) | undefined {
    if (!name) return undefined;
    const p = this.g.producer(name);
    if (!p || p.opType !== 'DequantizeLinear' || (p.domain ?? '') !== '' || this.dead.has(p)) return undefined;
    const qp = this.params(p, p.input[0]!);
    return qp && { ...qp, node: p };
  }

  /**
   * The Q that quantizes `value` (its only reader), through a Relu/Clip the Q's range makes redundant.
   * Returns the Q and the nodes between.
   */
  private outQ(value: string): { q: QParams; node: NodeProto; between: NodeProto[] } | undefined {
    const between: NodeProto[] = [];
    let v = value;
    for (;;) {
      if (this.g.isGraphOutput(v)) return undefined;
      const readers = this.g.consumers(v);
      if (readers.length !== 1) return undefined;
      const r = readers[0]!;
      if ((r.domain ?? '') !== '') return undefined;
      if (r.opType === 'QuantizeLinear') {
        const q = this.params(r, r.output[0]!);
        if (!q) return undefined;
        if (between.some((a) => !this.activationRedundant(a, q))) return undefined;
        return { q, node: r, between };
      }
      if ((r.opType !== 'Relu' && r.opType !== 'Clip') || between.length > 0) return undefined;
      between.push(r);
      v = r.output[0]!;
    }
  }

  /** Whether Relu/Clip `a` changes nothing once its output is quantized with `q` (the Q clamps the same). */
  private activationRedundant(a: NodeProto, q: QParams): boolean {
    if (q.count !== 1) return false;
    const scale = floats(this.init(q.scale)!)[0]!;
    const zp = floats(this.init(q.zeroPoint)!)[0]!;
    const [qmin, qmax] = q.type === DataType.UINT8 ? [0, 255] : q.type === DataType.INT8 ? [-128, 127] : [NaN, NaN];
    const lo = scale * (qmin - zp);
    const hi = scale * (qmax - zp);
    if (a.opType === 'Relu') return lo >= 0;
    const bound = (slot: number, dflt: number): number | undefined => {
      if (!a.input[slot]) return dflt;
      const t = this.init(a.input[slot]);
      return t && t.dataType === DataType.FLOAT ? floats(t)[0] : undefined;
    };
    // Clip opset < 11 keeps its bounds in attributes.
    const min = this.opset < 11 ? attrFloat(a, 'min', -Infinity) : bound(1, -Infinity);
    const max = this.opset < 11 ? attrFloat(a, 'max', Infinity) : bound(2, Infinity);
    return min !== undefined && max !== undefined && min <= lo + 1e-6 * Math.abs(lo) && max >= hi - 1e-6 * Math.abs(hi);
  }

  private keep(n: NodeProto, reason: string): void {
    this.report.keptQdq.push(`${n.name ?? n.opType}: ${reason}`);
  }

  private count(into: Record<string, number>, key: string): void {
    into[key] = (into[key] ?? 0) + 1;
  }

  /** Replaces `n` (and the Q / folded activation after it) by `node`, writing the Q's output. */
  private replace(n: NodeProto, out: { node: NodeProto; between: NodeProto[] }, node: NodeProto): void {
    node.output = [out.node.output[0]!];
    this.g.replaceNode(n, [node]);
    for (const d of [out.node, ...out.between]) this.dead.add(d);
    for (const v of [n.output[0]!, ...out.between.map((b) => b.output[0]!)]) this.g.valueInfo.delete(v);
    this.count(this.report.converted, node.domain ? `${node.domain}:${node.opType}` : (node.opType ?? ''));
  }

  /** Converts one node if it heads a matching unit. */
  visit(n: NodeProto): void {
    const op = n.opType ?? '';
    if ((n.domain ?? '') !== '') return;
    if (PASSTHROUGH.has(op)) return this.passthrough(n);
    const build = Object.hasOwn(BUILDERS, op) ? BUILDERS[op] : undefined;
    // Not a unit at all (a float node, a shape computation): nothing to report.
    if (!build || !n.input.some((i) => this.dq(i))) return;
    // A float node reading a DequantizeLinear output (kept float by a rule or the speed policy): not a unit.
    const out = n.output.filter((o) => o).length === 1 ? this.outQ(n.output[0]!) : undefined;
    if (!out) return;
    if (!EIGHT_BIT.has(out.q.type) || out.q.count !== 1) return this.keep(n, 'its output is not per-tensor 8-bit');
    const result = build.call(this, n, out.q);
    if (typeof result === 'string') return this.keep(n, result);
    this.replace(n, out, result);
  }

  /** DQ in front of activation input `slot`: per-tensor, 8-bit; or a reason. */
  actIn(n: NodeProto, slot: number): (QParams & { node: NodeProto }) | string {
    const d = this.dq(n.input[slot]);
    if (!d) return `input ${slot} is not dequantized from a constant-parameter DequantizeLinear`;
    if (!EIGHT_BIT.has(d.type)) return `input ${slot} is not 8-bit`;
    if (d.count !== 1) return `input ${slot} is quantized per axis`;
    return d;
  }

  /** DQ of a constant 8-bit weight in `slot`, per tensor or per channel on `axis`; or a reason. */
  weightIn(n: NodeProto, slot: number, axis: number | undefined): (QParams & { node: NodeProto }) | string {
    const d = this.dq(n.input[slot]);
    if (!d) return `input ${slot} is not dequantized from a constant-parameter DequantizeLinear`;
    if (!EIGHT_BIT.has(d.type)) return `weight ${slot} is not 8-bit (${d.type === DataType.INT4 ? 'int4' : `type ${d.type}`})`;
    if (d.count !== 1) {
      const w = this.init(d.q);
      const rank = w ? dimsOf(w).length : -1;
      const a = d.axis < 0 ? d.axis + rank : d.axis;
      if (axis === undefined || a !== axis) return `weight ${slot} is quantized on an axis the QLinear op cannot take`;
    }
    return d;
  }

  /** DQ of an int32 bias whose scale is x_scale × w_scale (zero point 0); or a reason. */
  biasIn(n: NodeProto, slot: number, x: QParams, w: QParams): string | undefined | { q: string } {
    if (!n.input[slot]) return undefined;
    const p = this.g.producer(n.input[slot]!);
    if (!p || p.opType !== 'DequantizeLinear' || this.dead.has(p)) return 'the bias is not an int32 DequantizeLinear';
    const b = this.init(p.input[0]);
    const s = this.init(p.input[1]);
    if (!b || b.dataType !== DataType.INT32 || !s || s.dataType !== DataType.FLOAT) return 'the bias is not a constant int32 tensor';
    const z = this.init(p.input[2]);
    if (p.input[2] && (!z || floats(z).some((v) => v !== 0))) return 'the bias zero point is not 0';
    const xs = floats(this.init(x.scale)!)[0]!;
    const ws = floats(this.init(w.scale)!);
    const bs = floats(s);
    const ok = bs.length === ws.length || bs.length === 1 ? Array.from(bs).every((v, i) => Math.abs(v - xs * ws[ws.length === 1 ? 0 : i]!) <= 1e-6 * Math.abs(v)) : false;
    if (!ok) return 'the bias scale is not input scale × weight scale';
    return { q: p.input[0]! };
  }

  /** A value-preserving op: DQ -> op -> Q with the same parameters becomes op on the 8-bit tensor. */
  private passthrough(n: NodeProto): void {
    const d = this.dq(n.input[0]);
    if (!d || !EIGHT_BIT.has(d.type)) return;
    if (n.opType === 'MaxPool' && (this.opset < 12 || n.output.filter((o) => o).length !== 1)) return;
    const outs: { node: NodeProto; q: QParams }[] = [];
    for (const o of n.output) {
      if (!o) continue;
      const readers = this.g.consumers(o);
      const r = readers[0];
      if (readers.length !== 1 || this.g.isGraphOutput(o) || r!.opType !== 'QuantizeLinear') return;
      const q = this.params(r!, r!.output[0]!);
      if (!q || !sameParams(this.g, d, q)) return this.keep(n, 'its QuantizeLinear has other parameters than its input');
      outs.push({ node: r!, q });
    }
    if (!outs.length) return;
    this.g.setInput(n, 0, d.q);
    n.output.forEach((o, i) => {
      if (!o) return;
      const qn = outs.shift()!;
      this.g.valueInfo.delete(o);
      n.output[i] = qn.node.output[0]!;
      this.dead.add(qn.node);
    });
    this.g.touch();
    this.count(this.report.passthrough, n.opType ?? '');
  }

  /** Drops converted Q nodes and the DQ nodes nobody reads any more. */
  finish(): void {
    this.g.removeNodes(this.dead);
    this.g.pruneDead();
    for (const n of this.g.nodes) {
      if ((n.domain ?? '') !== '') continue;
      if (n.opType === 'QuantizeLinear') this.report.remaining.quantizeLinear++;
      if (n.opType === 'DequantizeLinear') this.report.remaining.dequantizeLinear++;
    }
  }

  get opsetVersion(): number {
    return this.opset;
  }
}

/** Float values of a small FLOAT / 8-bit / int32 initializer. */
function floats(t: TensorProto): Float64Array {
  return Float64Array.from(tensorStorage(t) as ArrayLike<number>);
}

/** Same scale and zero point values (per tensor). */
function sameParams(g: Graph, a: QParams, b: QParams): boolean {
  if (a.type !== b.type || a.count !== 1 || b.count !== 1) return false;
  if (a.scale === b.scale && a.zeroPoint === b.zeroPoint) return true;
  const f = (n: string): number => floats(g.initializers.get(n)!)[0]!;
  return f(a.scale) === f(b.scale) && f(a.zeroPoint) === f(b.zeroPoint);
}

/** The attributes of `n` named in `names` (others dropped). */
function attrsOf(n: NodeProto, names: readonly string[]): AttributeProto[] {
  return n.attribute.filter((a) => names.includes(a.name ?? ''));
}

type Builder = (this: Converter, n: NodeProto, y: QParams) => NodeProto | string;

const triple = (p: QParams): string[] => [p.q, p.scale, p.zeroPoint];
const name = (n: NodeProto, op: string): string => `${n.name || n.output[0]}_${op}`;

/** A unary com.microsoft QLinear op: X, X_scale, X_zp, Y_scale, Y_zp. */
function unary(op: string, attrs: (n: NodeProto, c: Converter) => AttributeProto[] | string = () => []): Builder {
  return function (n, y) {
    const x = this.actIn(n, 0);
    if (typeof x === 'string') return x;
    if (x.type !== y.type) return 'input and output types differ';
    const a = attrs(n, this);
    if (typeof a === 'string') return a;
    return makeNode(op, [...triple(x), y.scale, y.zeroPoint], [], { name: name(n, op), domain: MS_DOMAIN, attribute: a });
  };
}

/** A binary com.microsoft QLinear op: A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp. */
function binary(op: string): Builder {
  return function (n, y) {
    const a = this.actIn(n, 0);
    if (typeof a === 'string') return a;
    const b = this.actIn(n, 1);
    if (typeof b === 'string') return b;
    if (a.type !== y.type || b.type !== y.type) return 'inputs and output are not of one 8-bit type';
    return makeNode(op, [...triple(a), ...triple(b), y.scale, y.zeroPoint], [], { name: name(n, op), domain: MS_DOMAIN });
  };
}

const CONV_ATTRS = ['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides'];
const POOL_ATTRS = ['auto_pad', 'ceil_mode', 'count_include_pad', 'kernel_shape', 'pads', 'strides'];

/** One row per float op: how its unit becomes a QLinear op (or why it cannot). */
const BUILDERS: Readonly<Record<string, Builder>> = {
  /** QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B): per-channel w on axis 0. */
  Conv(n, y) {
    const x = this.actIn(n, 0);
    if (typeof x === 'string') return x;
    const w = this.weightIn(n, 1, 0);
    if (typeof w === 'string') return w;
    const b = this.biasIn(n, 2, x, w);
    if (typeof b === 'string') return b;
    return makeNode('QLinearConv', [...triple(x), ...triple(w), y.scale, y.zeroPoint, ...(b ? [b.q] : [])], [], {
      name: name(n, 'QLinearConv'),
      attribute: attrsOf(n, CONV_ATTRS),
    });
  },
  /** QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp): b per column (axis 1 of a 2-D b). */
  MatMul(n, y) {
    const a = this.actIn(n, 0);
    if (typeof a === 'string') return a;
    const b = this.weightIn(n, 1, 1);
    if (typeof b === 'string') return b;
    return makeNode('QLinearMatMul', [...triple(a), ...triple(b), y.scale, y.zeroPoint], [], { name: name(n, 'QLinearMatMul') });
  },
  /** com.microsoft QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C int32, y_scale, y_zp); alpha 1, beta 1. */
  Gemm(n, y) {
    if (attrFloat(n, 'alpha', 1) !== 1 || (n.input[2] && attrFloat(n, 'beta', 1) !== 1)) return 'alpha or beta is not 1';
    const a = this.actIn(n, 0);
    if (typeof a === 'string') return a;
    const b = this.weightIn(n, 1, attrInt(n, 'transB', 0) ? 0 : 1);
    if (typeof b === 'string') return b;
    const c = this.biasIn(n, 2, a, b);
    if (typeof c === 'string') return c;
    return makeNode('QGemm', [...triple(a), ...triple(b), c ? c.q : '', y.scale, y.zeroPoint], [], {
      name: name(n, 'QGemm'),
      domain: MS_DOMAIN,
      attribute: attrsOf(n, ['transA', 'transB', 'alpha']),
    });
  },
  Add: binary('QLinearAdd'),
  Mul: binary('QLinearMul'),
  /** com.microsoft QLinearConcat(Y_scale, Y_zp, X0, X0_scale, X0_zp, ...). */
  Concat(n, y) {
    const ins: string[] = [];
    for (let i = 0; i < n.input.length; i++) {
      const x = this.actIn(n, i);
      if (typeof x === 'string') return x;
      if (x.type !== y.type) return 'inputs and output are not of one 8-bit type';
      ins.push(...triple(x));
    }
    return makeNode('QLinearConcat', [y.scale, y.zeroPoint, ...ins], [], { name: name(n, 'QLinearConcat'), domain: MS_DOMAIN, attribute: attrsOf(n, ['axis']) });
  },
  AveragePool: unary('QLinearAveragePool', (n) => {
    if (attrInts(n, 'dilations', []).some((d) => d !== 1)) return 'QLinearAveragePool has no dilations';
    return attrsOf(n, POOL_ATTRS);
  }),
  GlobalAveragePool: unary('QLinearGlobalAveragePool', () => [makeAttribute('channels_last', 0)]),
  Sigmoid: unary('QLinearSigmoid'),
  LeakyRelu: unary('QLinearLeakyRelu', (n) => [makeAttribute('alpha', floatAttr(attrFloat(n, 'alpha', 0.01)))]),
  /** com.microsoft QLinearSoftmax: axis as the float op means it (default -1 from opset 13, else 1), plus the opset. */
  Softmax: unary('QLinearSoftmax', (n, c) => [
    makeAttribute('axis', attrInt(n, 'axis', c.opsetVersion >= 13 ? -1 : 1)),
    makeAttribute('opset', c.opsetVersion),
  ]),
  /** com.microsoft QLinearWhere(condition, X, X_scale, X_zp, Y, Y_scale, Y_zp, Z_scale, Z_zp). */
  Where(n, y) {
    const a = this.actIn(n, 1);
    if (typeof a === 'string') return a;
    const b = this.actIn(n, 2);
    if (typeof b === 'string') return b;
    if (a.type !== y.type || b.type !== y.type) return 'inputs and output are not of one 8-bit type';
    return makeNode('QLinearWhere', [n.input[0]!, ...triple(a), ...triple(b), y.scale, y.zeroPoint], [], { name: name(n, 'QLinearWhere'), domain: MS_DOMAIN });
  },
};

/** The float op types whose QDQ units {@link qdqToQOperator} converts, and the op each becomes. */
export const QOPERATOR_OPS: Readonly<Record<string, string>> = Object.freeze({
  Conv: 'QLinearConv',
  MatMul: 'QLinearMatMul',
  Gemm: 'com.microsoft:QGemm',
  Add: 'com.microsoft:QLinearAdd',
  Mul: 'com.microsoft:QLinearMul',
  Concat: 'com.microsoft:QLinearConcat',
  AveragePool: 'com.microsoft:QLinearAveragePool',
  GlobalAveragePool: 'com.microsoft:QLinearGlobalAveragePool',
  Sigmoid: 'com.microsoft:QLinearSigmoid',
  LeakyRelu: 'com.microsoft:QLinearLeakyRelu',
  Softmax: 'com.microsoft:QLinearSoftmax',
  Where: 'com.microsoft:QLinearWhere',
});

/**
 * Converts a static QDQ model (quantizeStatic's output) to ONNX Runtime's QOperator form: each node unit
 * DequantizeLinear(inputs) -> op -> QuantizeLinear(output) (with a Relu/Clip the Q's range makes redundant)
 * becomes one QLinear op ({@link QOPERATOR_OPS}); value-preserving ops (MaxPool, Reshape, Transpose, Split,
 * ...) whose output Q has the input's parameters run on the 8-bit tensor with no Q/DQ. Units that do not
 * match (float nodes, int4 / int16 tensors, per-axis activations, weights quantized on another axis) stay QDQ
 * and are listed in the report. The QuantizeLinear at graph inputs and DequantizeLinear at outputs stay.
 * If/Loop/Scan bodies are converted the same way (children first; kept units named by their path, e.g.
 * `if/then_branch/conv`). The input model is not changed.
 * @throws LowbitError BAD_OPTION when the model has no default-domain opset 10 (QuantizeLinear).
 */
export function qdqToQOperator(model: Model): { model: Model; report: QOperatorReport } {
  const opset = model.opset('') ?? 0;
  if (opset < 10) {
    throw new LowbitError('BAD_OPTION', `QOperator output needs opset 10 or later; the model has opset ${opset}`, 'quantize the model statically first (lowbit raises the opset to 13)');
  }
  const out = cloneModelDeep(model);
  const report: QOperatorReport = { converted: {}, passthrough: {}, keptQdq: [], remaining: { quantizeLinear: 0, dequantizeLinear: 0 } };
  let used = false;
  // Bodies first (children before parents), each converted by the same rules with its own initializers.
  const convert = (g: Graph, path: string): void => {
    for (const n of g.nodes) for (const { attribute, graph } of g.subgraphs(n)) convert(graph, `${path}${n.name ?? n.opType}/${attribute}/`);
    const c = new Converter(g, opset);
    for (const n of g.topoSort()) if (g.nodes.includes(n)) c.visit(n);
    c.finish();
    for (const [k, v] of Object.entries(c.report.converted)) report.converted[k] = (report.converted[k] ?? 0) + v;
    for (const [k, v] of Object.entries(c.report.passthrough)) report.passthrough[k] = (report.passthrough[k] ?? 0) + v;
    report.keptQdq.push(...c.report.keptQdq.map((line) => path + line));
    report.remaining.quantizeLinear += c.report.remaining.quantizeLinear;
    report.remaining.dequantizeLinear += c.report.remaining.dequantizeLinear;
    used ||= g.nodes.some((n) => n.domain === MS_DOMAIN);
  };
  convert(out.graph, '');
  if (used && out.opset(MS_DOMAIN) === undefined) out.setOpset(MS_DOMAIN, 1);
  return { model: out, report };
}
