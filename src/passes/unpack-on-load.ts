// Weights stored as 4- or 8-bit codes that ONNX Runtime unpacks to float when the session loads, for the tensors
// weight-only's MatMul/Gemm rewrite does not cover: embedding tables read by Gather, and Conv / ConvTranspose weights.
// Each float tensor becomes Reshape(Transpose((Cast(codes) - zero point) * scale)) over blocks of its rows (axis 0
// against the rest, flattened), every input a constant, so ORT's constant folding restores a float tensor at load
// time under the same name and every reader runs its float kernel on it: the download of the codes, float speed and
// memory. A MatMul whose weight is an initializer equal to a table's transpose (a tied LM head stored as its own
// copy) reads the unpacked transpose instead, so the codes are stored once. The chain itself (addUnpackChain) also
// serves weight-only's `unpack-on-load` form for MatMul / Gemm weights. For runtimes whose GatherBlockQuantized /
// MatMulNBits / integer kernels are slow (onnxruntime-web's WebAssembly build). Main graph only. Pure; used by
// passes/weight-only.ts and pipeline/.

import { attrInt, makeAttribute } from '../onnx/attributes.js';
import { makeNode, nodeLabel, type Graph, type Model } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dimsOf, makeTensor, packInt4, type TensorStorage } from '../onnx/tensor.js';
import { LowbitError } from '../errors.js';
import { checkBlockwiseOptions, kBlocks, quantizeBlockwiseRtn, toBlockedDequantize } from '../quant/blockwise.js';
import { quantizeBlockwiseHqq } from '../quant/hqq.js';
import type { PassReport } from './pass-report.js';
import { cloneModel, constantsToInitializers } from './preprocess.js';
import { upgradeOpset } from './rules/qdq/opset.js';
import { isTransposeOf } from './weight-only-gather.js';
import { tensorFloat32, transpose2d } from './quant-weight.js';

export interface UnpackOnLoadOptions {
  bits: 4 | 8;
  /** Values per block along each row (a power of two, 16..256). */
  blockSize: number;
  /** Symmetric codes (no zero point) or one zero point per block. */
  symmetric: boolean;
  /** How the codes are chosen: round-to-nearest (default) or HQQ (asymmetric only). */
  algorithm?: 'rtn' | 'hqq';
  /** Node names / op types to leave float. */
  excludeNodes?: readonly string[];
  excludeOps?: readonly string[];
}

/** Conv / ConvTranspose weights smaller than this stay float: their codes, scales and block index would save little. */
const MIN_CONV_WEIGHT = 256;

/** The tensors of one blocked weight [K, N] for {@link addUnpackChain}: codes [K, N], scale and zero point [ceil(K / blockSize), N]. */
export interface UnpackTensors {
  /** Base of the new node and tensor names. */
  name: string;
  K: number;
  blockSize: number;
  codes: string;
  scale: string;
  zeroPoint?: string;
}

/** ONNX element type of blocked codes: INT4 / UINT4 at 4 bits, INT8 / UINT8 at 8 (signed = symmetric, no zero point). */
export function codeDataType(bits: number, signed: boolean): number {
  return bits === 4 ? (signed ? DataType.INT4 : DataType.UINT4) : signed ? DataType.INT8 : DataType.UINT8;
}

/** Codes as tensor storage: 4-bit ones packed two per byte (first in the low nibble), 8-bit ones as they are. */
export function packCodes(v: Int8Array | Uint8Array, bits: number): TensorStorage {
  return bits === 4 ? packInt4(v) : v;
}

/**
 * Adds to `g` (Cast(codes) - Gather(Cast(zero point), block)) * Gather(scale, block), block = [floor(k / blockSize)]
 * for k < K: the float [K, N] weight, in the scale's float type. Every input is a constant, so ONNX Runtime folds the
 * chain into an initializer when the session loads. The arithmetic runs in float32 (a float16 scale is Cast up and the
 * result Cast back): ORT's CPU EP, which does the folding, has no float16 Sub / Mul to fold with. Returns the float
 * weight's name.
 */
export function addUnpackChain(g: Graph, t: UnpackTensors): string {
  const { codes, scale, zeroPoint, K, blockSize } = t;
  const floatType = g.initializer(scale)?.dataType ?? DataType.FLOAT;
  const blockIndex = g.freshName(`${t.name}_block_index`);
  g.setInitializer(makeTensor(blockIndex, DataType.INT64, [K], BigInt64Array.from({ length: K }, (_, k) => BigInt(Math.floor(k / blockSize)))));
  const name = (what: string): string => g.freshName(`${t.name}_${what}`);
  const cast = name('codes_float');
  const blockScale = name('block_scale');
  const nodes: NodeProto[] = [
    makeNode('Cast', [codes], [cast], { name: name('Cast'), attribute: [makeAttribute('to', DataType.FLOAT)] }),
    makeNode('Gather', [scale, blockIndex], [blockScale], { name: name('GatherScale'), attribute: [makeAttribute('axis', 0)] }),
  ];
  let scale32 = blockScale;
  if (floatType !== DataType.FLOAT) {
    scale32 = name('block_scale_float');
    nodes.push(makeNode('Cast', [blockScale], [scale32], { name: name('CastScale'), attribute: [makeAttribute('to', DataType.FLOAT)] }));
  }
  let centred = cast;
  if (zeroPoint !== undefined) {
    const zf = name('zero_point_float');
    const blockZero = name('block_zero_point');
    centred = name('centred');
    nodes.push(
      makeNode('Cast', [zeroPoint], [zf], { name: name('CastZeroPoint'), attribute: [makeAttribute('to', DataType.FLOAT)] }),
      makeNode('Gather', [zf, blockIndex], [blockZero], { name: name('GatherZeroPoint'), attribute: [makeAttribute('axis', 0)] }),
      makeNode('Sub', [cast, blockZero], [centred], { name: name('Sub') }),
    );
  }
  let y = name('unpacked');
  nodes.push(makeNode('Mul', [centred, scale32], [y], { name: name('Mul') }));
  if (floatType !== DataType.FLOAT) {
    const back = name('unpacked_typed');
    nodes.push(makeNode('Cast', [y], [back], { name: name('CastBack'), attribute: [makeAttribute('to', floatType)] }));
    y = back;
  }
  g.addNodes(nodes, 0);
  return y;
}

function checkOptions(o: UnpackOnLoadOptions): void {
  if (o.bits !== 4 && o.bits !== 8) throw new LowbitError('BAD_OPTION', `unpack-on-load bits ${JSON.stringify(o.bits)} is not supported`, 'use 4 or 8 (2-bit codes need INT2 tensors, opset 25)');
  checkBlockwiseOptions(o);
  if (o.algorithm === 'hqq' && o.symmetric) throw new LowbitError('BAD_OPTION', 'hqq optimises a zero point per block: it has no symmetric form', 'drop symmetric, or use rtn');
}

/** The report's description of the codes, e.g. "8-bit, block 32, asymmetric, hqq". */
const unpackTag = (o: UnpackOnLoadOptions): string => `${o.bits}-bit, block ${o.blockSize}, ${o.symmetric ? 'symmetric' : 'asymmetric'}${o.algorithm === 'hqq' ? ', hqq' : ''}`;

/** 4-bit codes are Cast from INT4 / UINT4: opset 21 and IR version 10. */
function raiseForInt4(out: Model): void {
  const from = out.opset('') ?? 1;
  if (from < 21) {
    const up = upgradeOpset(out.graph, from, 21);
    if (!up.upgraded) {
      throw new LowbitError('UNSUPPORTED_MODEL', `4-bit codes need opset 21 (Cast from INT4 / UINT4), and this opset-${from} model cannot be raised to it: ${up.blockers.slice(0, 3).join('; ')}`, 'use 8-bit codes');
    }
    out.setOpset('', up.to);
  }
  if ((out.rest.irVersion ?? 8n) < 10n) out.rest.irVersion = 10n;
}

/**
 * Replaces initializer `t` ([rows, cols] once its trailing dims are flattened) by codes, scales and zero points with
 * blocks along each row, and the chain that unpacks them into a float tensor named `t.name` of t's shape and type.
 * Returns the name of the chain's float [cols, rows] value (the transpose, before the Transpose node).
 */
function unpackInitializer(g: Graph, t: TensorProto, o: UnpackOnLoadOptions): string {
  const name = t.name!;
  const dims = dimsOf(t);
  const rows = dims[0]!;
  const cols = dims.slice(1).reduce((a, b) => a * b, 1);
  // [cols, rows]: blocks of each row run along K = cols, the layout of the unpacking chain (and DequantizeLinear).
  const wt = transpose2d(tensorFloat32(t), rows, cols);
  const opts = { bits: o.bits, blockSize: o.blockSize, symmetric: o.symmetric };
  const b = toBlockedDequantize(o.algorithm === 'hqq' ? quantizeBlockwiseHqq(wt, cols, rows, opts) : quantizeBlockwiseRtn(wt, cols, rows, opts));
  const codeType = codeDataType(o.bits, b.signed);
  const pack = (v: Int8Array | Uint8Array): TensorStorage => packCodes(v, o.bits);
  const nb = kBlocks(cols, o.blockSize);
  const codes = g.freshName(`${name}_q${o.bits}`);
  const scale = g.freshName(`${name}_scale`);
  g.setInitializer(makeTensor(codes, codeType, [cols, rows], pack(b.x)));
  g.setInitializer(makeTensor(scale, DataType.FLOAT, [nb, rows], b.scale));
  let zeroPoint: string | undefined;
  if (b.zeroPoint) {
    zeroPoint = g.freshName(`${name}_zero_point`);
    g.setInitializer(makeTensor(zeroPoint, codeType, [nb, rows], pack(b.zeroPoint)));
  }
  g.removeInitializer(name);
  const transposed = addUnpackChain(g, { name, K: cols, blockSize: o.blockSize, codes, scale, ...(zeroPoint !== undefined ? { zeroPoint } : {}) });
  // Transpose back to [rows, cols], then Reshape to t's dims and Cast to float16 where needed; the last one is `name`.
  const stages: { op: string; extra: string[]; attrs: ReturnType<typeof makeAttribute>[] }[] = [{ op: 'Transpose', extra: [], attrs: [makeAttribute('perm', [1, 0])] }];
  if (dims.length !== 2) {
    const shape = g.freshName(`${name}_shape`);
    g.setInitializer(makeTensor(shape, DataType.INT64, [dims.length], BigInt64Array.from(dims, BigInt)));
    stages.push({ op: 'Reshape', extra: [shape], attrs: [] });
  }
  if (t.dataType === DataType.FLOAT16) stages.push({ op: 'Cast', extra: [], attrs: [makeAttribute('to', DataType.FLOAT16)] });
  const nodes: NodeProto[] = [];
  let cur = transposed;
  for (const [i, st] of stages.entries()) {
    const y = i === stages.length - 1 ? name : g.freshName(`${name}_${st.op.toLowerCase()}d`);
    nodes.push(makeNode(st.op, [cur, ...st.extra], [y], { name: g.freshName(`${name}_${st.op}`), attribute: st.attrs }));
    cur = y;
  }
  g.addNodes(nodes, 0);
  return transposed;
}

const isFloat2d = (t: TensorProto | undefined, minRank = 2): t is TensorProto =>
  t !== undefined && (t.dataType === DataType.FLOAT || t.dataType === DataType.FLOAT16) && dimsOf(t).length >= minRank;

/**
 * Replaces every float32 / float16 rank-2 initializer that a main-graph Gather (axis 0) reads as its data by the
 * unpacking of its codes (the tensor keeps its name: every reader is unchanged); tied LM head copies read the
 * unpacked transpose. Raises the opset to 21 for 4-bit codes.
 * @throws LowbitError BAD_OPTION for bad options; UNSUPPORTED_MODEL when 4-bit codes need opset 21 and the model
 *   cannot be raised to it.
 */
export function unpackEmbeddingTables(model: Model, o: UnpackOnLoadOptions): { model: Model; report: PassReport } {
  checkOptions(o);
  const out = cloneModel(model);
  const g = out.graph;
  const report: PassReport = { quantized: [], skipped: [] };
  const excluded = (n: NodeProto): boolean => (n.name !== undefined && (o.excludeNodes ?? []).includes(n.name)) || (o.excludeOps ?? []).includes('Gather');
  const tables = new Map<string, string[]>();
  const kept = new Set<string>();
  for (const [i, n] of g.nodes.entries()) {
    if (n.opType !== 'Gather' || (n.domain ?? '') !== '') continue;
    const data = n.input[0] ?? '';
    if (!isFloat2d(g.initializers.get(data)) || dimsOf(g.initializers.get(data)!).length !== 2) continue;
    const why = excluded(n) ? 'excluded' : ![0, -2].includes(attrInt(n, 'axis', 0)) ? 'gathers along axis 1, not rows of a table' : g.isGraphOutput(data) ? `its table '${data}' is also a graph output` : undefined;
    if (why) {
      kept.add(data);
      report.skipped.push({ node: nodeLabel(n, i), opType: 'Gather', reason: why });
      continue;
    }
    tables.set(data, [...(tables.get(data) ?? []), nodeLabel(n, i)]);
  }
  for (const k of kept) tables.delete(k); // a table one Gather keeps float stays float for all (one copy)
  if (tables.size && o.bits === 4) raiseForInt4(out);
  const tag = unpackTag(o);
  for (const [data, readers] of tables) {
    const e = g.initializers.get(data)!;
    const [V, D] = dimsOf(e) as [number, number];
    // Tied LM heads stored as their own copy of E^T: read the unpacked E^T (the copy is dropped; one set of codes).
    const heads = g.nodes.filter((m) => {
      if (m.opType !== 'MatMul' || (m.domain ?? '') !== '' || e.dataType !== DataType.FLOAT) return false;
      const w = g.initializers.get(m.input[1] ?? '');
      return w !== undefined && m.input[1] !== data && !g.isGraphOutput(m.input[1]!) && isTransposeOf(w, e, V, D);
    });
    const transposed = unpackInitializer(g, e, o);
    for (const r of readers) report.quantized.push({ node: r, opType: 'Gather', form: `table unpacked on load (${tag})` });
    for (const h of heads) {
      const copy = h.input[1]!;
      h.input[1] = transposed;
      g.touch();
      if (g.consumers(copy).length === 0) g.removeInitializer(copy);
      report.quantized.push({ node: nodeLabel(h, g.nodes.indexOf(h)), opType: 'MatMul', form: `tied LM head: reads the unpacked table (${tag}; codes shared with the Gathers)` });
    }
  }
  g.sortInPlace();
  return { model: out, report };
}

/**
 * Replaces the float weight (input 1) of every main-graph Conv / ConvTranspose with at least MIN_CONV_WEIGHT values
 * by the unpacking of its codes, blocks along each output row (axis 0 against the flattened rest). A weight read by
 * several nodes is unpacked once; one read by anything else than a Conv weight slot is left float. Weights written as
 * Constant nodes count (the model's Constant nodes become initializers).
 * @throws as {@link unpackEmbeddingTables}.
 */
export function unpackConvWeights(model: Model, o: UnpackOnLoadOptions): { model: Model; report: PassReport } {
  checkOptions(o);
  const out = cloneModel(model);
  const g = out.graph;
  // Exporters (paddle2onnx, some torch versions) write weights as Constant nodes: make them initializers first.
  if (g.nodes.some((n) => (n.opType === 'Conv' || n.opType === 'ConvTranspose') && g.producer(n.input[1] ?? '')?.opType === 'Constant')) constantsToInitializers(g);
  const report: PassReport = { quantized: [], skipped: [] };
  const exNodes = new Set(o.excludeNodes ?? []);
  const exOps = new Set(o.excludeOps ?? []);
  const weights = new Map<string, string[]>();
  const kept = new Set<string>();
  for (const [i, n] of g.nodes.entries()) {
    if ((n.opType !== 'Conv' && n.opType !== 'ConvTranspose') || (n.domain ?? '') !== '') continue;
    const w = n.input[1] ?? '';
    const t = g.initializers.get(w);
    if (!isFloat2d(t, 3)) {
      report.skipped.push({ node: nodeLabel(n, i), opType: n.opType, reason: `weight '${w}' is not a constant float tensor` });
      continue;
    }
    const size = dimsOf(t).reduce((a, b) => a * b, 1);
    const why =
      (n.name !== undefined && exNodes.has(n.name)) || exOps.has(n.opType)
        ? 'excluded'
        : size < MIN_CONV_WEIGHT
          ? `weight of ${size} values (under ${MIN_CONV_WEIGHT}: its codes and scales would save little)`
          : g.isGraphOutput(w) || g.consumers(w).some((c) => (c.opType !== 'Conv' && c.opType !== 'ConvTranspose') || c.input[1] !== w || c.input[0] === w)
            ? `weight '${w}' is also read as something else than a Conv weight`
            : undefined;
    if (why) {
      kept.add(w);
      report.skipped.push({ node: nodeLabel(n, i), opType: n.opType, reason: why });
      continue;
    }
    weights.set(w, [...(weights.get(w) ?? []), `${nodeLabel(n, i)}\u0000${n.opType}`]);
  }
  for (const k of kept) weights.delete(k);
  if (weights.size && o.bits === 4) raiseForInt4(out);
  const tag = unpackTag(o);
  for (const [w, readers] of weights) {
    unpackInitializer(g, g.initializers.get(w)!, o);
    for (const r of readers) {
      const [node, opType] = r.split('\u0000') as [string, string];
      report.quantized.push({ node, opType, form: `weight unpacked on load (${tag})` });
    }
  }
  g.sortInPlace();
  return { model: out, report };
}
