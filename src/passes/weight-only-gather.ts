// Weight-only quantization of embedding tables: Gather(E [V, D], ids) -> com.microsoft GatherBlockQuantized,
// blocks along D. A tied LM head (MatMul(h, E^T) with E^T stored as its own initializer, Gemm(h, E, transB=1),
// or MatMul(h, Transpose(E))) becomes com.microsoft MatMulNBits reading the SAME packed codes, quantized once.
// Pure; used by pipeline/.
//
// What ONNX Runtime 1.30's CPU kernels accept (measured, and read in contrib_ops/cpu/quantization/
// gather_block_quantized.cc and matmul_nbits.cc):
// - GatherBlockQuantized with uint8 data: `bits` 4 or 8 (two codes per byte, first in the low nibble),
//   gather_axis 0, quantize_axis the last axis, block_size a power of 2 >= 16, scales of data's rank with
//   ceil(dim * 8/bits / block_size) blocks on the quantize axis (a partial last block is fine), zero points
//   (uint8, packed per row like the codes) optional with default 2^(bits-1); scales float32 or float16.
// - MatMulNBits refuses a 2-D B: it must be [N, kBlocks, blockSize*bits/8], scales [N*kBlocks] or
//   [N, kBlocks]. So the shared form reads that 3-D B as GatherBlockQuantized data with quantize_axis 2
//   (one block per row of the last axis), scales viewed [V, kBlocks, 1] through a Reshape of the
//   MatMulNBits scales (ORT folds it at load; the file stores them once), the gathered [..., kBlocks,
//   blockSize] reshaped to [..., kBlocks*blockSize] and sliced to D when D is not a multiple of blockSize.
//   4-bit zero points differ in packing between the two ops (per block vs per row), so the asymmetric
//   4-bit form writes them twice (one byte per block; small next to the codes).

import { LowbitError } from '../errors.js';
import { attrFloat, attrInt, attrInts, makeAttribute } from '../onnx/attributes.js';
import { MS_DOMAIN, Model, makeNode, makeValueInfo, type Graph } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../onnx/tensor.js';
import { checkBlockwiseOptions, kBlocks, packBits, quantizeBlockwiseRtn } from '../quant/blockwise.js';
import { float32ArrayToFloat16 } from '../quant/float16.js';
import { removeIfUnused, tensorFloat32, transpose2d } from './quant-weight.js';
import { definingGraph, nodePath, touchScopes, weightScopes, type WeightScope } from './graph-scopes.js';
import type { PassReport } from './pass-report.js';


/** Options of {@link quantizeEmbeddings}. */
export interface QuantizeEmbeddingsOptions {
  /** Bits per code (GatherBlockQuantized with uint8 data takes 4 or 8). */
  bits: 4 | 8;
  /** Values per block along D: a power of 2 from 16 to 256 (ORT's kernels refuse other sizes). */
  blockSize: number;
  /** Symmetric: zero point 2^(bits-1), not stored; else one per block (RTN as `quantizeBlockwiseRtn`). */
  symmetric: boolean;
  /** Gather / LM-head node names to leave float (inside an If/Loop/Scan body: the name or the report path). */
  excludeNodes?: string[];
  /** Visit If/Loop/Scan bodies too (default true): see {@link quantizeEmbeddings}. */
  subgraphs?: boolean;
}

/** What was quantized (and in which form) and what was left float (and why). */
export type QuantizeEmbeddingsReport = PassReport;

/** How an LM head reads the embedding table E. */
type LmHead = (
  | { kind: 'matmul-copy'; node: NodeProto; copy: string }
  | { kind: 'gemm'; node: NodeProto }
  | { kind: 'matmul-transpose'; node: NodeProto; transpose: NodeProto }
) & { scope: WeightScope };

/** A candidate Gather and the graph holding it. */
interface TableGather {
  node: NodeProto;
  scope: WeightScope;
}

/** Codes of each row's first `width` values (of `stride` per row) packed `8/bits` per byte, first value in the low bits. */
function packRows(q: Uint8Array, rows: number, stride: number, width: number, bits: 4 | 8): Uint8Array {
  const rowBytes = Math.ceil((width * bits) / 8);
  const out = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) out.set(packBits(q.subarray(r * stride, r * stride + width), bits), r * rowBytes);
  return out;
}

function checkOptions(opts: QuantizeEmbeddingsOptions): void {
  if (opts.bits !== 4 && opts.bits !== 8) {
    throw new LowbitError('BAD_OPTION', `embedding bits ${JSON.stringify(opts.bits)} is not supported`, 'use 4 or 8 (ONNX Runtime\'s GatherBlockQuantized)');
  }
  checkBlockwiseOptions(opts);
  if (typeof opts.symmetric !== 'boolean') {
    throw new LowbitError('BAD_OPTION', `symmetric must be true or false, got ${JSON.stringify(opts.symmetric)}`, 'pass symmetric: true or false');
  }
  if (opts.subgraphs !== undefined && typeof opts.subgraphs !== 'boolean') {
    throw new LowbitError('BAD_OPTION', `subgraphs must be true or false, got ${JSON.stringify(opts.subgraphs)}`, 'pass subgraphs: false to leave If/Loop/Scan bodies float');
  }
}

/** True when initializer `w` [D, V] holds exactly E^T (E [V, D]), same element type. */
export function isTransposeOf(w: TensorProto, e: TensorProto, V: number, D: number): boolean {
  if (w.dataType !== e.dataType) return false;
  const wd = dimsOf(w);
  if (wd.length !== 2 || wd[0] !== D || wd[1] !== V) return false;
  const a = tensorStorage(w) as Float32Array | Uint16Array;
  const b = tensorStorage(e) as Float32Array | Uint16Array;
  // A few probes first: untied weights of the same shape differ almost everywhere.
  for (let k = 0; k < Math.min(16, V * D); k++) {
    const i = Math.floor((k * (V * D - 1)) / 15);
    const v = Math.floor(i / D);
    const d = i % D;
    if (a[d * V + v] !== b[i]) return false;
  }
  for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) if (a[d * V + v] !== b[v * D + d]) return false;
  return true;
}

/**
 * Quantizes embedding tables for ONNX Runtime: each Gather whose data is a float32/float16 initializer
 * [V, D] (axis 0, int32/int64 indices) becomes com.microsoft GatherBlockQuantized with uint8 codes blocked
 * along D. When the same table is also the LM head (MatMul(h, W) with W an initializer exactly equal to E^T,
 * Gemm(h, E, transB=1, alpha=1), or MatMul(h, Transpose(E))), the table is quantized once and the LM head
 * becomes com.microsoft MatMulNBits reading the same packed codes and scales (see the file header for the
 * form). A table also read by any other node is left float (it would be stored twice).
 * If/Loop/Scan bodies are visited too, at every depth (`subgraphs: false` leaves them alone): a Gather in a body
 * whose table is an initializer of the body or of an enclosing graph is rewritten in place, and the LM heads tied
 * to that table are looked for in every graph that can see it (the branches of transformers.js'
 * `decoder_model_merged.onnx` each read the main graph's table and LM head weight): the codes and scales are
 * stored once, in the graph owning the table, whichever branches read them. Body nodes are reported by their
 * path (`if_node/then_branch/gather`, see `nodePath` in weight-only.ts).
 * Float tables nothing reads any more are removed; the input model is not modified.
 * Run this before the MatMul weight-only pass, so the tied LM head is still a plain MatMul/Gemm here.
 * @throws LowbitError BAD_OPTION for bad options; NON_FINITE when a table holds NaN/Infinity;
 *   BAD_DATA / EXTERNAL_DATA for tables that cannot be read.
 */
export function quantizeEmbeddings(
  model: Model,
  opts: QuantizeEmbeddingsOptions,
): { model: Model; report: QuantizeEmbeddingsReport } {
  checkOptions(opts);
  const { bits, blockSize, symmetric } = opts;
  const exclude = new Set(opts.excludeNodes ?? []);
  const out = new Model(model.toProto()); // nodes are never edited in place: replaced, so sharing them is safe
  const scopes = weightScopes(out.graph, opts.subgraphs ?? true);
  const bodies = scopes.length > 1;
  const report: QuantizeEmbeddingsReport = { quantized: [], skipped: [] };
  const labels = new Map<NodeProto, string>();
  for (const s of scopes) s.graph.nodes.forEach((n, i) => labels.set(n, nodePath(s, n, i)));
  const name = (n: NodeProto): string => labels.get(n) ?? nodePath({ prefix: '' }, n, -1);
  const skip = (n: NodeProto, reason: string): void => void report.skipped.push({ node: name(n), opType: n.opType ?? '', reason });
  const excluded = (n: NodeProto): boolean => (!!n.name && exclude.has(n.name)) || exclude.has(name(n));
  // The scopes that see the values of `owner`: itself and the bodies nested in it.
  const within = (owner: Graph): WeightScope[] =>
    scopes.filter((s) => {
      for (let g: Graph | undefined = s.graph; g; g = g.parent) if (g === owner) return true;
      return false;
    });

  // 1. Candidate Gathers, grouped by table (the graph owning it, then its name).
  const tables = new Map<Graph, Map<string, TableGather[]>>();
  for (const scope of scopes) {
    const g = scope.graph;
    for (const node of g.nodes) {
      if (node.opType !== 'Gather' || (node.domain ?? '') !== '') continue;
      if (excluded(node)) {
        skip(node, 'excluded by node name');
        continue;
      }
      const data = node.input[0] ?? '';
      const owner = definingGraph(g, data);
      const t = owner?.initializers.get(data);
      if (!owner || !t) {
        skip(node, `data '${data}' is not an initializer of the main graph${g.parent ? ' (nor of this body or a graph enclosing it)' : ''}`);
        continue;
      }
      if (t.dataType !== DataType.FLOAT && t.dataType !== DataType.FLOAT16) {
        skip(node, `data '${data}' is not float32 or float16`);
        continue;
      }
      const dims = dimsOf(t);
      if (dims.length !== 2) {
        skip(node, `data '${data}' has rank ${dims.length}, not 2 ([V, D])`);
        continue;
      }
      const axis = attrInt(node, 'axis', 0);
      if (axis !== 0 && axis !== -2) {
        skip(node, `gathers along axis ${axis}; GatherBlockQuantized with uint8 codes gathers rows (axis 0) only`);
        continue;
      }
      const it = scope.types.get(node.input[1] ?? '');
      if (it !== DataType.INT64 && it !== DataType.INT32) {
        skip(node, it === undefined ? 'indices have an unknown element type' : 'indices are not int32 or int64');
        continue;
      }
      if ((dims[1]! * bits) % 8 !== 0) {
        skip(node, `D = ${dims[1]} is odd: ${bits}-bit codes of a row must fill whole bytes`);
        continue;
      }
      let byName = tables.get(owner);
      if (!byName) tables.set(owner, (byName = new Map()));
      let list = byName.get(data);
      if (!list) byName.set(data, (list = []));
      list.push({ node, scope });
    }
  }

  // 2. Per table: LM heads, other readers, then the rewrite.
  let usesMs = false;
  const released = new Map<Graph, Set<string>>();
  const release = (owner: Graph, n: string): void => {
    let set = released.get(owner);
    if (!set) released.set(owner, (set = new Set()));
    set.add(n);
  };
  const edited = new Set<Graph>();
  for (const [g, byName] of tables) {
    const seen = within(g);
    for (const [data, gathers] of byName) {
      const e = g.initializers.get(data)!;
      const [V, D] = dimsOf(e) as [number, number];
      const heads: LmHead[] = [];
      const others: NodeProto[] = [];
      const isGather = new Set(gathers.map((x) => x.node));
      let output = false;
      for (const scope of seen) {
        const s = scope.graph;
        if (s.isGraphOutput(data)) output = true;
        // Direct readers (a control-flow node reading the table in a body is visited through that body).
        const readers = s === g && !bodies ? s.consumers(data) : s.nodes.filter((n) => n.input.includes(data));
        for (const c of readers) {
          if (isGather.has(c)) continue;
          if (c.opType === 'Gemm' && (c.domain ?? '') === '' && c.input[1] === data && c.input[0] !== data && !excluded(c)) {
            const plainC = c.input.length < 3 || !c.input[2] || attrFloat(c, 'beta', 1) === 1;
            if (attrInt(c, 'transB', 0) === 1 && attrInt(c, 'transA', 0) === 0 && attrFloat(c, 'alpha', 1) === 1 && plainC) {
              heads.push({ kind: 'gemm', node: c, scope });
              continue;
            }
          }
          if (c.opType === 'Transpose' && (c.domain ?? '') === '' && !s.isGraphOutput(c.output[0] ?? '')) {
            const perm = attrInts(c, 'perm');
            const tReaders = s.consumers(c.output[0] ?? '');
            const ok =
              (!perm || (perm[0] === 1 && perm[1] === 0)) &&
              tReaders.length > 0 &&
              tReaders.every((m) => m.opType === 'MatMul' && (m.domain ?? '') === '' && m.input[1] === c.output[0] && m.input[0] !== c.output[0] && !excluded(m));
            if (ok) {
              for (const m of tReaders) heads.push({ kind: 'matmul-transpose', node: m, transpose: c, scope });
              continue;
            }
          }
          others.push(c);
        }
      }
      if (others.length || output) {
        const o = others[0];
        const what = o ? `is also read by ${name(o)} (${o.opType})` : 'is a graph output';
        for (const gn of gathers) skip(gn.node, `data '${data}' ${what}, which would keep it float: quantizing the Gather would store the table twice`);
        continue;
      }
      // Untransposed copies: MatMul(h, W) with W == E^T exactly, in any graph that sees the table.
      const copyOf = new Map<TensorProto, boolean>();
      for (const scope of seen) {
        const s = scope.graph;
        for (const m of s.nodes) {
          if (m.opType !== 'MatMul' || (m.domain ?? '') !== '') continue;
          const w = m.input[1] ?? '';
          if (w === data || m.input[0] === w) continue;
          const wOwner = definingGraph(s, w);
          const wt = wOwner?.initializers.get(w);
          if (!wt) continue;
          let tied = copyOf.get(wt);
          if (tied === undefined) copyOf.set(wt, (tied = isTransposeOf(wt, e, V, D)));
          if (!tied) continue;
          if (excluded(m)) {
            skip(m, 'excluded by node name');
            continue;
          }
          heads.push({ kind: 'matmul-copy', node: m, copy: w, scope });
        }
      }
      // Activations of the LM heads must be float of E's type.
      const headsOk = heads.filter((h) => {
        const at = h.scope.types.get(h.node.input[0] ?? '');
        if (at === e.dataType) return true;
        skip(h.node, `input '${h.node.input[0]}' is not ${e.dataType === DataType.FLOAT16 ? 'float16' : 'float32'}, so the tied weight stays as it is`);
        return false;
      });
      if (heads.some((h) => h.kind !== 'matmul-copy' && !headsOk.includes(h))) {
        // A Gemm/Transpose head left float keeps E itself: the Gathers would store the table twice.
        for (const gn of gathers) skip(gn.node, `data '${data}' is also the weight of an LM head that stays float: quantizing the Gather would store the table twice`);
        continue;
      }

      const fp16 = e.dataType === DataType.FLOAT16;
      // Rows of E are the columns of E^T [D, V]: the MatMulNBits form of the tied LM head (K = D, N = V).
      // A float16 table stores float16 scales (GatherBlockQuantized's output type is the scales' type): codes are
      // computed with the float32 scale, so the stored table is off by the scale's rounding (2^-11 relative).
      const bq = quantizeBlockwiseRtn(transpose2d(tensorFloat32(e), V, D), D, V, { bits, blockSize, symmetric });
      const kb = kBlocks(D, blockSize);
      const scaleType = e.dataType!;
      const scaleData = (): Float32Array | Uint16Array => (fp16 ? float32ArrayToFloat16(bq.scales) : bq.scales.slice());
      const zpRowBytes = Math.ceil((kb * bits) / 8);
      const tag = `${bits}-bit, block ${blockSize}, ${symmetric ? 'symmetric' : 'asymmetric'}`;
      // Replacements per graph; the table's new tensors all go into `g`, the graph owning the table.
      const newNodes = new Map<NodeProto, { at: Graph; nodes: NodeProto[] }>();

      if (headsOk.length === 0) {
        // Plain form: data [V, D*bits/8], scales [V, kBlocks], zero points [V, ceil(kBlocks*bits/8)].
        const qName = g.freshName(`${data}_q${bits}`);
        g.setInitializer(makeTensor(qName, DataType.UINT8, [V, (D * bits) / 8], packRows(bq.q, V, kb * blockSize, D, bits)));
        const sName = g.freshName(`${data}_scales`);
        g.setInitializer(makeTensor(sName, scaleType, [V, kb], scaleData()));
        const ins = ['', '', sName];
        if (!symmetric) {
          const zName = g.freshName(`${data}_zero_points`);
          g.setInitializer(makeTensor(zName, DataType.UINT8, [V, zpRowBytes], packRows(bq.zeroPoints, V, kb, kb, bits)));
          ins.push(zName);
        }
        for (const { node: gn, scope } of gathers) {
          const at = scope.graph;
          const node = makeNode('GatherBlockQuantized', [qName, gn.input[1]!, ...ins.slice(2)], [gn.output[0]!], {
            name: at.freshName(`${gn.name || 'Gather'}_quant`),
            domain: MS_DOMAIN,
            attribute: [makeAttribute('gather_axis', 0), makeAttribute('quantize_axis', 1), makeAttribute('block_size', blockSize), makeAttribute('bits', bits)],
          });
          newNodes.set(gn, { at, nodes: [node] });
          report.quantized.push({ node: name(gn), opType: 'Gather', form: `GatherBlockQuantized (${tag})` });
        }
      } else {
        // Shared form: B [V, kBlocks, blob] and scales [V, kBlocks] read by MatMulNBits; the Gathers read B
        // with quantize_axis 2 and the scales through a Reshape to [V, kBlocks, 1].
        const blob = (blockSize * bits) / 8;
        const bName = g.freshName(`${data}_q${bits}`);
        g.setInitializer(makeTensor(bName, DataType.UINT8, [V, kb, blob], packRows(bq.q, V * kb, blockSize, blockSize, bits)));
        const sName = g.freshName(`${data}_scales`);
        g.setInitializer(makeTensor(sName, scaleType, [V, kb], scaleData()));
        let zName = '';
        let zGather = '';
        if (!symmetric) {
          zName = g.freshName(`${data}_zero_points`);
          g.setInitializer(makeTensor(zName, DataType.UINT8, [V, zpRowBytes], packRows(bq.zeroPoints, V, kb, kb, bits)));
          if (bits === 4) {
            // GatherBlockQuantized packs 4-bit zero points per row of scales ([V, kBlocks, 1]: one byte per block).
            zGather = g.freshName(`${data}_zero_points_gather`);
            g.setInitializer(makeTensor(zGather, DataType.UINT8, [V, kb, 1], bq.zeroPoints.slice()));
          }
        }
        const shape3 = g.freshName(`${data}_scales_shape3`);
        g.setInitializer(makeTensor(shape3, DataType.INT64, [3], BigInt64Array.from([BigInt(V), BigInt(kb), 1n])));
        const s3 = g.freshName(`${data}_scales3`);
        const prelude: NodeProto[] = [makeNode('Reshape', [sName, shape3], [s3], { name: g.freshName(`${data}_scales_reshape`) })];
        if (zGather === '' && zName) {
          zGather = g.freshName(`${data}_zero_points3`);
          prelude.push(makeNode('Reshape', [zName, shape3], [zGather], { name: g.freshName(`${data}_zero_points_reshape`) }));
        }
        const tail = g.freshName(`${data}_row_width`);
        g.setInitializer(makeTensor(tail, DataType.INT64, [1], BigInt64Array.from([BigInt(kb * blockSize)])));
        let dEnd = '';
        let sliceAxis = '';
        if (kb * blockSize !== D) {
          dEnd = g.freshName(`${data}_d`);
          g.setInitializer(makeTensor(dEnd, DataType.INT64, [1], BigInt64Array.from([BigInt(D)])));
          sliceAxis = g.freshName(`${data}_last_axis`);
          g.setInitializer(makeTensor(sliceAxis, DataType.INT64, [1], BigInt64Array.from([-1n])));
        }
        const zero = dEnd ? g.freshName(`${data}_zero`) : '';
        if (zero) g.setInitializer(makeTensor(zero, DataType.INT64, [1], BigInt64Array.from([0n])));
        // The Reshapes of the shared scales (and zero points) live in the graph owning the table, next to its first
        // Gather there, else on their own (ORT folds them into constants of that graph, read by the bodies).
        const host = gathers.find((x) => x.scope.graph === g)?.node;
        if (!host) {
          g.addNodes(prelude, 0);
          edited.add(g);
        }
        for (const { node: gn, scope } of gathers) {
          const at = scope.graph;
          const base = gn.name || 'Gather';
          const ids = gn.input[1]!;
          const rows = at.freshName(`${base}_blocks`);
          const gq = makeNode('GatherBlockQuantized', [bName, ids, s3, ...(zGather ? [zGather] : [])], [rows], {
            name: at.freshName(`${base}_quant`),
            domain: MS_DOMAIN,
            attribute: [makeAttribute('gather_axis', 0), makeAttribute('quantize_axis', 2), makeAttribute('block_size', blockSize), makeAttribute('bits', bits)],
          });
          const idShape = at.freshName(`${base}_ids_shape`);
          const outShape = at.freshName(`${base}_out_shape`);
          const flat = dEnd ? at.freshName(`${base}_padded`) : gn.output[0]!;
          const nodes = [
            ...(gn === host ? prelude : []),
            gq,
            makeNode('Shape', [ids], [idShape], { name: at.freshName(`${base}_ids_shape`) }),
            makeNode('Concat', [idShape, tail], [outShape], { name: at.freshName(`${base}_out_shape`), attribute: [makeAttribute('axis', 0)] }),
            makeNode('Reshape', [rows, outShape], [flat], { name: at.freshName(`${base}_rows`) }),
          ];
          if (dEnd) nodes.push(makeNode('Slice', [flat, zero, dEnd, sliceAxis], [gn.output[0]!], { name: at.freshName(`${base}_unpad`) }));
          newNodes.set(gn, { at, nodes });
          report.quantized.push({ node: name(gn), opType: 'Gather', form: `GatherBlockQuantized (${tag}; codes and scales shared with the tied LM head)` });
        }
        for (const h of headsOk) {
          const m = h.node;
          const at = h.scope.graph;
          const y = m.output[0]!;
          const hasBias = h.kind === 'gemm' && !!m.input[2];
          const mmOut = hasBias ? at.freshName(`${y}_nobias`) : y;
          const nb = makeNode('MatMulNBits', [m.input[0]!, bName, sName, ...(zName ? [zName] : [])], [mmOut], {
            name: at.freshName(`${m.name || m.opType}_nbits`),
            domain: MS_DOMAIN,
            attribute: [makeAttribute('K', D), makeAttribute('N', V), makeAttribute('bits', bits), makeAttribute('block_size', blockSize)],
          });
          const nodes = [nb];
          if (hasBias) nodes.push(makeNode('Add', [mmOut, m.input[2]!], [y], { name: at.freshName(`${m.name || 'Gemm'}_bias`) }));
          newNodes.set(m, { at, nodes });
          const via = h.kind === 'gemm' ? `Gemm(transB=1) of '${data}'` : h.kind === 'matmul-transpose' ? `Transpose of '${data}'` : `'${h.copy}' == '${data}'^T`;
          report.quantized.push({ node: name(m), opType: m.opType!, form: `MatMulNBits (${tag}; tied to embedding '${data}' via ${via}: codes quantized once, stored once)` });
          if (h.kind === 'matmul-copy') release(definingGraph(at, h.copy) ?? at, h.copy);
        }
      }
      for (const [old, { at, nodes }] of newNodes) {
        at.replaceNode(old, nodes);
        edited.add(at);
      }
      for (const h of headsOk) {
        if (h.kind !== 'matmul-transpose') continue;
        const t = h.transpose;
        const at = h.scope.graph;
        if (at.nodes.includes(t) && at.consumers(t.output[0] ?? '').length === 0) {
          at.removeNodes([t]);
          at.valueInfo.delete(t.output[0] ?? '');
        }
      }
      release(g, data);
      usesMs = true;
    }
  }

  // Bodies now read other outer values: every index is stale. A float table or copy still read anywhere is kept.
  if (bodies) touchScopes(scopes);
  for (const [owner, names] of released) for (const n of names) removeIfUnused(owner, n);
  if (usesMs) {
    for (const s of scopes) if (edited.has(s.graph)) s.graph.sortInPlace();
    if (out.opset(MS_DOMAIN) === undefined) out.setOpset(MS_DOMAIN, 1);
  }
  const g = out.graph;
  if ((out.rest.irVersion ?? 4n) < 4n) {
    const listed = new Set(g.inputs.map((v) => v.name));
    for (const [n, t] of g.initializers) if (!listed.has(n)) g.inputs.push(makeValueInfo(n, t.dataType, dimsOf(t)));
  }
  return { model: out, report };
}
