// Embedding tables stored as 4- or 8-bit codes that ONNX Runtime unpacks to float when the session loads: each float
// table E [V, D] read by a Gather becomes Transpose((Cast(codes) - zero point) * scale) over blocks of its rows, every
// input a constant, so ORT's constant folding restores a float table at load time and every reader (the Gathers, a
// tied LM head reading E through Gemm transB or Transpose -> MatMul) runs its float kernel on it; a MatMul whose weight
// is an initializer equal to E^T (a tied head stored as its own copy) reads the unpacked E^T instead. The companion of
// weight-only's `unpack-on-load` form, for runtimes whose GatherBlockQuantized / MatMulNBits kernels are slow
// (onnxruntime-web's WebAssembly build). Main graph only. Pure; used by pipeline/preset.ts.

import { attrInt, makeAttribute } from '../onnx/attributes.js';
import { makeNode, nodeLabel, type Model } from '../onnx/ir.js';
import { DataType, type TensorProto } from '../onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../onnx/tensor.js';
import { LowbitError } from '../errors.js';
import { checkBlockwiseOptions, kBlocks, packBits, quantizeBlockwiseRtn, toBlockedDequantize } from '../quant/blockwise.js';
import { float16ArrayToFloat32 } from '../quant/float16.js';
import type { PassReport } from './pass-report.js';
import { cloneModel } from './preprocess.js';
import { upgradeOpset } from './rules/qdq/opset.js';
import { addUnpackChain } from './weight-only.js';
import { isTransposeOf } from './weight-only-gather.js';

export interface UnpackTablesOptions {
  bits: 4 | 8;
  /** Values per block along D (a power of two, 16..256). */
  blockSize: number;
  /** Symmetric codes (no zero point) or one zero point per block (RTN, as quantizeBlockwiseRtn). */
  symmetric: boolean;
}

const floatValues = (t: TensorProto): Float32Array => {
  const s = tensorStorage(t);
  return t.dataType === DataType.FLOAT16 ? float16ArrayToFloat32(s as Uint16Array) : (s as Float32Array);
};

/**
 * Replaces every float32 / float16 rank-2 initializer that a main-graph Gather (axis 0) reads as its data by the
 * unpacking of its codes (the tensor keeps its name: every reader is unchanged). Raises the opset to 21 for 4-bit
 * codes (Cast from INT4 / UINT4).
 * @throws LowbitError BAD_OPTION for bad options; UNSUPPORTED_MODEL when 4-bit codes need opset 21 and the model
 *   cannot be raised to it.
 */
export function unpackEmbeddingTables(model: Model, o: UnpackTablesOptions): { model: Model; report: PassReport } {
  if (o.bits !== 4 && o.bits !== 8) throw new LowbitError('BAD_OPTION', `table bits ${JSON.stringify(o.bits)} is not supported`, 'use 4 or 8');
  checkBlockwiseOptions(o);
  const out = cloneModel(model);
  const g = out.graph;
  const report: PassReport = { quantized: [], skipped: [] };
  const tables = new Map<string, string[]>();
  for (const [i, n] of g.nodes.entries()) {
    if (n.opType !== 'Gather' || (n.domain ?? '') !== '') continue;
    const data = n.input[0] ?? '';
    const t = g.initializers.get(data);
    if (!t || (t.dataType !== DataType.FLOAT && t.dataType !== DataType.FLOAT16) || dimsOf(t).length !== 2) continue;
    if (attrInt(n, 'axis', 0) !== 0) {
      report.skipped.push({ node: nodeLabel(n, i), opType: 'Gather', reason: 'gathers along axis 1, not rows of a table' });
      continue;
    }
    if (g.isGraphOutput(data)) {
      report.skipped.push({ node: nodeLabel(n, i), opType: 'Gather', reason: `its table '${data}' is also a graph output` });
      continue;
    }
    tables.set(data, [...(tables.get(data) ?? []), nodeLabel(n, i)]);
  }
  if (tables.size && o.bits === 4) {
    const from = out.opset('') ?? 1;
    if (from < 21) {
      const up = upgradeOpset(g, from, 21);
      if (!up.upgraded) {
        throw new LowbitError('UNSUPPORTED_MODEL', `4-bit table codes need opset 21 (Cast from INT4 / UINT4), and this opset-${from} model cannot be raised to it: ${up.blockers.slice(0, 3).join('; ')}`, 'use 8-bit codes');
      }
      out.setOpset('', up.to);
    }
    if ((out.rest.irVersion ?? 8n) < 10n) out.rest.irVersion = 10n; // INT4 / UINT4 tensors need IR version 10
  }
  const tag = `${o.bits}-bit, block ${o.blockSize}, ${o.symmetric ? 'symmetric' : 'asymmetric'}`;
  for (const [data, readers] of tables) {
    const e = g.initializers.get(data)!;
    const [V, D] = dimsOf(e) as [number, number];
    // E^T [D, V]: blocks of each row of E run along K = D, the layout the unpacking chain (and DequantizeLinear) uses.
    const values = floatValues(e);
    const et = new Float32Array(V * D);
    for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) et[d * V + v] = values[v * D + d]!;
    const b = toBlockedDequantize(quantizeBlockwiseRtn(et, D, V, { bits: o.bits, blockSize: o.blockSize, symmetric: o.symmetric }));
    const four = o.bits === 4;
    const codeType = four ? (b.signed ? DataType.INT4 : DataType.UINT4) : b.signed ? DataType.INT8 : DataType.UINT8;
    const pack = (v: Int8Array | Uint8Array) => (four ? packBits(Uint8Array.from(v, (c) => c & 0x0f), 4) : v);
    const nb = kBlocks(D, o.blockSize);
    const codes = g.freshName(`${data}_q${o.bits}`);
    const scale = g.freshName(`${data}_scale`);
    g.setInitializer(makeTensor(codes, codeType, [D, V], pack(b.x)));
    g.setInitializer(makeTensor(scale, DataType.FLOAT, [nb, V], b.scale));
    let zeroPoint: string | undefined;
    if (b.zeroPoint) {
      zeroPoint = g.freshName(`${data}_zero_point`);
      g.setInitializer(makeTensor(zeroPoint, codeType, [nb, V], pack(b.zeroPoint)));
    }
    // Tied LM heads stored as their own copy of E^T: read the unpacked E^T (the copy is dropped; one set of codes).
    const heads = g.nodes.filter((m) => {
      if (m.opType !== 'MatMul' || (m.domain ?? '') !== '') return false;
      const w = g.initializers.get(m.input[1] ?? '');
      return w !== undefined && m.input[1] !== data && !g.isGraphOutput(m.input[1]!) && isTransposeOf(w, e, V, D);
    });
    g.removeInitializer(data);
    const unpacked = addUnpackChain(g, { name: data, K: D, blockSize: o.blockSize, codes, scale, ...(zeroPoint !== undefined ? { zeroPoint } : {}) });
    const to = e.dataType === DataType.FLOAT16 ? [makeNode('Cast', [g.freshName(`${data}_table`)], [data], { name: g.freshName(`${data}_CastTable`), attribute: [makeAttribute('to', DataType.FLOAT16)] })] : [];
    const transposeOut = to.length ? to[0]!.input[0]! : data;
    g.addNodes([makeNode('Transpose', [unpacked], [transposeOut], { name: g.freshName(`${data}_Transpose`), attribute: [makeAttribute('perm', [1, 0])] }), ...to], 0);
    for (const r of readers) report.quantized.push({ node: r, opType: 'Gather', form: `table unpacked on load (${tag})` });
    for (const h of heads) {
      const copy = h.input[1]!;
      h.input[1] = unpacked;
      g.touch();
      if (g.consumers(copy).length === 0) g.removeInitializer(copy);
      report.quantized.push({ node: nodeLabel(h, g.nodes.indexOf(h)), opType: 'MatMul', form: `tied LM head: reads the unpacked table (${tag}; codes shared with the Gathers)` });
    }
  }
  g.sortInPlace();
  return { model: out, report };
}
