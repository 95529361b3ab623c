// Weight-only NF4/FP4 quantization (transformers.js' `bnb4` dtype): MatMul with a constant float32 2-D weight ->
// com.microsoft MatMulBnb4, as ORT's matmul_bnb4_quantizer.py writes it. Pure; used by pipeline/.
// ORT 1.30's CPU MatMulBnb4 takes float32 activations only, block sizes 16..256 (powers of 2), and
// dequantizes the whole weight before an sgemm on every run (its own TODO: "implement with native kernel").

import { LowbitError } from '../errors.js';
import { attrFloat, attrInt, makeAttribute } from '../onnx/attributes.js';
import { inferElemTypes } from '../onnx/infer.js';
import { MS_DOMAIN, Model, makeNode, makeValueInfo, nodeLabel } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../onnx/tensor.js';
import { BNB4_BLOCK_SIZES, BNB4_QUANT_TYPE_ATTR, quantizeBnb4, type Bnb4QuantType, type Bnb4Quantized } from '../quant/nf4.js';
import { removeIfUnused } from './quant-weight.js';
import type { PassReport } from './pass-report.js';


/** Options of {@link quantizeMatMulBnb4}. */
export interface QuantizeBnb4Options {
  /** Code book: 'nf4' (default in bitsandbytes and transformers.js) or 'fp4'. */
  quantType: Bnb4QuantType;
  /** Values per block of the flattened transposed weight: 16, 32, 64 (bitsandbytes' Linear4bit), 128 or 256. */
  blockSize: number;
  /** MatMul node names to leave float. */
  excludeNodes?: string[];
}

/** What was quantized (and in which form) and what was left float (and why). */
export type QuantizeBnb4Report = PassReport;


/**
 * Rewrites each MatMul (and Gemm: transB and alpha folded into the weight, C times beta added after) of the main graph whose weight (input B) is a float32 rank-2 initializer or Constant into
 * com.microsoft MatMulBnb4(A, B_quant, absmax) with attributes K, N, block_size, quant_type (B_quant: uint8
 * [ceil(K*N/2)], absmax: float32 [ceil(K*N/blockSize)]; see quant/nf4.ts). A weight shared by several MatMuls
 * is quantized once; float weights nothing reads any more are removed. Skipped with a reason: a weight that is
 * not constant, not float32 or not 2-D, an activation that is not float32, excluded nodes.
 * The input model is not modified.
 * @throws LowbitError BAD_OPTION for an unknown quantType or an unsupported block size; NON_FINITE when a
 *   weight holds NaN/Infinity; BAD_DATA / EXTERNAL_DATA for weights that cannot be read.
 */
export function quantizeMatMulBnb4(model: Model, opts: QuantizeBnb4Options): { model: Model; report: QuantizeBnb4Report } {
  if (opts.quantType !== 'nf4' && opts.quantType !== 'fp4') {
    throw new LowbitError('BAD_OPTION', `bnb4 quantType ${JSON.stringify(opts.quantType)} is not supported`, 'use one of: nf4, fp4');
  }
  if (!BNB4_BLOCK_SIZES.includes(opts.blockSize)) {
    throw new LowbitError('BAD_OPTION', `bnb4 block size ${JSON.stringify(opts.blockSize)} is not supported`, `ONNX Runtime's MatMulBnb4 takes one of: ${BNB4_BLOCK_SIZES.join(', ')}`);
  }
  const exclude = new Set(opts.excludeNodes ?? []);
  const out = new Model(model.toProto());
  const g = out.graph;
  const types = inferElemTypes(g);
  const report: QuantizeBnb4Report = { quantized: [], skipped: [] };
  const done = new Map<string, { q: Bnb4Quantized; packed: string; absmax: string }>();
  const replaced: [NodeProto, NodeProto[]][] = [];

  g.nodes.forEach((node, index) => {
    const gemm = node.opType === 'Gemm';
    if ((node.opType !== 'MatMul' && !gemm) || (node.domain ?? '') !== '') return;
    const entry = { node: nodeLabel(node, index), opType: gemm ? 'Gemm' : 'MatMul' };
    const skip = (reason: string): void => void report.skipped.push({ ...entry, reason });
    if (node.name && exclude.has(node.name)) return skip('excluded by node name');
    const [a, b] = [node.input[0] ?? '', node.input[1] ?? ''];
    const t = g.constant(b);
    if (!t || !(g.initializers.has(b) || g.producer(b)?.opType === 'Constant')) return skip(`weight '${b}' is not a constant`);
    if (t.dataType !== DataType.FLOAT) return skip(`weight '${b}' is not float32 (ORT's CPU MatMulBnb4 takes float32 only)`);
    const dims = dimsOf(t);
    if (dims.length !== 2) return skip(`weight '${b}' has rank ${dims.length}, not 2`);
    if (types.get(a) !== DataType.FLOAT) return skip(`input '${a}' is not float32 (or its type is unknown)`);
    if (gemm && attrInt(node, 'transA', 0) !== 0) return skip('Gemm with transA: the activation would need a transpose');
    const transB = gemm && attrInt(node, 'transB', 0) !== 0;
    const alpha = gemm ? attrFloat(node, 'alpha', 1) : 1;
    const [K, N] = (transB ? [dims[1], dims[0]] : dims) as [number, number];
    // Gemm: C (times beta) is added after the product; it must be a constant the Add can read.
    const c = gemm ? node.input[2] : undefined;
    const beta = gemm ? attrFloat(node, 'beta', 1) : 1;
    if (c && !g.constant(c)) return skip(`Gemm bias '${c}' is not a constant`);
    const key = `${b}|${transB ? 't' : ''}|${alpha}`;
    let q = done.get(key);
    if (!q) {
      // Gemm's B [N, K] (transB) or times alpha: quantize the [K, N] weight the product actually uses.
      let w = tensorStorage(t) as Float32Array;
      if (transB || alpha !== 1) {
        const src = w;
        w = new Float32Array(K * N);
        for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) w[k * N + n] = alpha * src[transB ? n * K + k : k * N + n]!;
      }
      const bq = quantizeBnb4(w, K, N, { quantType: opts.quantType, blockSize: opts.blockSize });
      const packed = g.freshName(`${b}_Bnb4`);
      const absmax = g.freshName(`${b}_absmax`);
      g.setInitializer(makeTensor(packed, DataType.UINT8, [bq.packed.length], bq.packed));
      g.setInitializer(makeTensor(absmax, DataType.FLOAT, [bq.absmax.length], bq.absmax));
      done.set(key, (q = { q: bq, packed, absmax }));
    }
    const y = node.output[0]!;
    const product = c ? g.freshName(`${y}_product`) : y;
    const nn = makeNode('MatMulBnb4', [a, q.packed, q.absmax], [product], {
      name: g.freshName(`${node.name || 'MatMul'}_Bnb4`),
      domain: MS_DOMAIN,
      attribute: [
        makeAttribute('K', K),
        makeAttribute('N', N),
        makeAttribute('block_size', opts.blockSize),
        makeAttribute('quant_type', BNB4_QUANT_TYPE_ATTR[opts.quantType]),
      ],
    });
    const nodes = [nn];
    if (c) {
      let bias = c;
      if (beta !== 1) {
        bias = g.freshName(`${c}_beta`);
        const cv = g.constant(c)!;
        g.setInitializer(makeTensor(bias, DataType.FLOAT, dimsOf(cv), Float32Array.from(tensorStorage(cv) as Float32Array, (v) => v * beta)));
      }
      nodes.push(makeNode('Add', [product, bias], [y], { name: g.freshName(`${node.name || 'Gemm'}_bias`) }));
    }
    replaced.push([node, nodes]);
    report.quantized.push({ ...entry, form: `MatMulBnb4 (${opts.quantType.toUpperCase()}, block ${opts.blockSize})${c ? ' + Add' : ''}` });
  });

  for (const [old, nodes] of replaced) g.replaceNode(old, nodes);
  for (const key of done.keys()) removeIfUnused(g, key.split('|')[0]!);
  for (const [old] of replaced) if (old.opType === 'Gemm' && old.input[2]) removeIfUnused(g, old.input[2]);
  if (replaced.length && out.opset(MS_DOMAIN) === undefined) out.setOpset(MS_DOMAIN, 1);
  if ((out.rest.irVersion ?? 4n) < 4n) {
    const listed = new Set(g.inputs.map((v) => v.name));
    for (const [n, t] of g.initializers) if (!listed.has(n)) g.inputs.push(makeValueInfo(n, t.dataType, dimsOf(t)));
  }
  return { model: out, report };
}
