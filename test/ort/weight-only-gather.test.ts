// Quantized embeddings run in onnxruntime-node 1.30 (CPU): Gather -> com.microsoft GatherBlockQuantized, and a
// tied LM head -> com.microsoft MatMulNBits over the same stored codes. Each quantized model matches a float
// model built from the dequantized table (read back from the quantized file itself), and differs from the
// float original by the expected amount. Inputs: seeded random token ids; weights seeded gaussian.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType, type TensorProto } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import type { NdArray } from '../../src/ndarray.js';
import { mulberry32 } from '../../src/rng.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { Session } from '../../src/runtime/session.js';
import { quantizeEmbeddings, type QuantizeEmbeddingsOptions } from '../../src/passes/weight-only-gather.js';
import { maxRelError } from '../helpers.js';

const V = 200;
const D = 64;

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

function transpose(e: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = e[r * cols + c]!;
  return t;
}

type Head = 'copy' | 'gemm' | 'transpose' | 'none';

/** ids -> Gather(E) -> Tanh -> LM head (tied to E in the given form) -> logits. Gemm needs 1-D ids (2-D h). */
function lmModel(e: Float32Array, head: Head, d = D): Model {
  const b = new ModelBuilder({ opset: 17 });
  const ids = b.input('ids', DataType.INT64, head === 'gemm' ? ['T'] : ['B', 'T']);
  const E = b.initializer('E', e, [V, d]);
  const h = b.op('Tanh', [b.op('Gather', [E, ids], {}, { name: 'embed' })]);
  let y: string;
  if (head === 'copy') y = b.op('MatMul', [h, b.initializer('lm_w', transpose(e, V, d), [d, V])], {}, { name: 'lm_head' });
  else if (head === 'gemm') y = b.op('Gemm', [h, E, b.initializer('lm_b', randn(V, 9, 0.1), [V])], { transB: 1 }, { name: 'lm_head' });
  else if (head === 'transpose') y = b.op('MatMul', [h, b.op('Transpose', [E], { perm: [1, 0] })], {}, { name: 'lm_head' });
  else y = b.op('ReduceSum', [h, b.initializer('axes', BigInt64Array.from([-1n]), [1])], { keepdims: 0 });
  b.output(y, DataType.FLOAT);
  return b.build();
}

/** The table the quantized model's GatherBlockQuantized stands for, read back from its initializers. */
function dequantizedTable(m: Model, d = D): Float32Array {
  const g = m.graph;
  const node = g.nodes.find((n) => n.opType === 'GatherBlockQuantized')!;
  const attr = (k: string) => Number(node.attribute.find((a) => a.name === k)!.i);
  const [bits, bs, qaxis] = [attr('bits'), attr('block_size'), attr('quantize_axis')];
  const init = (name: string | undefined): TensorProto | undefined => {
    if (!name) return undefined;
    const t = g.initializers.get(name);
    if (t) return t;
    const p = g.producer(name)!; // Reshape of an initializer
    assert.equal(p.opType, 'Reshape');
    return g.initializers.get(p.input[0]!)!;
  };
  const data = tensorStorage(init(node.input[0])!) as Uint8Array;
  const scales = tensorStorage(init(node.input[2])!) as Float32Array;
  const zpT = init(node.input[3]);
  const zp = zpT ? (tensorStorage(zpT) as Uint8Array) : undefined;
  const zpDims = zpT ? dimsOf(zpT) : [];
  const kb = Math.ceil(d / bs);
  const rowCodes = qaxis === 2 ? kb * bs : d; // 3-D shared form pads each row to whole blocks
  const out = new Float32Array(V * d);
  for (let v = 0; v < V; v++) {
    for (let j = 0; j < d; j++) {
      const idx = v * rowCodes + j;
      const code = bits === 8 ? data[idx]! : (data[idx >> 1]! >> ((idx & 1) * 4)) & 15;
      const blk = Math.floor(j / bs);
      let z = 2 ** (bits - 1);
      if (zp) {
        if (zpDims.length === 3) z = zp[v * kb + blk]! & 15;
        else if (bits === 8) z = zp[v * kb + blk]!;
        else z = (zp[v * zpDims[1]! + (blk >> 1)]! >> ((blk & 1) * 4)) & 15;
      }
      out[v * d + j] = (code - z) * scales[v * kb + blk]!;
    }
  }
  return out;
}

async function runBoth(a: Model, b: Model, feeds: Record<string, NdArray>): Promise<[Float32Array, Float32Array]> {
  const sa = await Session.create(encodeModel(a.toProto()));
  const sb = await Session.create(encodeModel(b.toProto()));
  const [oa, ob] = [await sa.run(feeds), await sb.run(feeds)];
  await sa.release();
  await sb.release();
  const k = Object.keys(oa)[0]!;
  assert.deepEqual(ob[k]!.shape, oa[k]!.shape);
  return [oa[k]!.data as Float32Array, ob[k]!.data as Float32Array];
}

function idsFeed(head: Head, seed: number): Record<string, NdArray> {
  const rng = mulberry32(seed);
  const shape = head === 'gemm' ? [12] : [2, 6];
  const n = shape.reduce((x, y) => x * y, 1);
  return { ids: { dtype: 'int64', shape, data: BigInt64Array.from({ length: n }, () => BigInt(rng.int(0, V - 1))) } };
}

describe('quantizeEmbeddings in ONNX Runtime', () => {
  const e = randn(V * D, 1, 0.05);
  // SQNR floors sit 2-3 dB below the values measured on these seeds (4-bit 19-21 dB, 8-bit 42-44 dB; the Gemm head's
  // bias lifts its output SQNR to 33 dB).
  const cases: { head: Head; opts: QuantizeEmbeddingsOptions; floor: number }[] = [
    { head: 'copy', opts: { bits: 4, blockSize: 32, symmetric: false }, floor: 17 },
    { head: 'copy', opts: { bits: 4, blockSize: 16, symmetric: true }, floor: 16 },
    { head: 'copy', opts: { bits: 8, blockSize: 32, symmetric: false }, floor: 41 },
    { head: 'copy', opts: { bits: 8, blockSize: 64, symmetric: true }, floor: 39 },
    { head: 'gemm', opts: { bits: 4, blockSize: 32, symmetric: false }, floor: 30 },
    { head: 'transpose', opts: { bits: 8, blockSize: 32, symmetric: true }, floor: 39 },
    { head: 'none', opts: { bits: 4, blockSize: 32, symmetric: false }, floor: 18 },
    { head: 'none', opts: { bits: 8, blockSize: 16, symmetric: true }, floor: 41 },
  ];
  for (const { head, opts, floor } of cases) {
    it(`${head} head, ${opts.bits}-bit block ${opts.blockSize} ${opts.symmetric ? 'sym' : 'asym'}: equals the dequantized float model`, async () => {
      const fm = lmModel(e, head);
      const { model: qm, report } = quantizeEmbeddings(fm, opts);
      const ops = qm.graph.nodes.map((n) => n.opType);
      assert.ok(ops.includes('GatherBlockQuantized'), ops.join(','));
      assert.equal(ops.includes('MatMulNBits'), head !== 'none');
      assert.equal(report.quantized.length, head === 'none' ? 1 : 2, JSON.stringify(report));
      const deq = dequantizedTable(qm);
      const refModel = lmModel(deq, head);
      const feeds = idsFeed(head, 7);
      const [ref, got] = await runBoth(refModel, qm, feeds);
      const rel = maxRelError(got, ref);
      assert.ok(rel < 1e-4, `relative error vs dequantized float ${rel}`);
      const [flt] = await runBoth(fm, qm, feeds);
      const sqnr = sqnrDb(flt, got);
      console.log(`${head} ${JSON.stringify(opts)}: rel err vs dequantized ${rel.toExponential(2)}, SQNR vs float ${sqnr.toFixed(1)} dB`);
      assert.ok(sqnr > floor && sqnr < floor + 25, `SQNR ${sqnr}`);
      if (head !== 'none') {
        // The table is stored once: one uint8 code tensor, no float table or float copy left.
        const inits = [...qm.graph.initializers.values()];
        assert.equal(inits.filter((t) => t.dataType === DataType.UINT8 && dimsOf(t).length === 3 && dimsOf(t)[2]! > 1).length, 1);
        assert.ok(!inits.some((t) => t.dataType === DataType.FLOAT && dimsOf(t).reduce((x, y) => x * y, 1) >= V * D), 'no float table left');
        const fbytes = encodeModel(fm.toProto()).length;
        const qbytes = encodeModel(qm.toProto()).length;
        const tableBytes = head === 'copy' ? 2 * V * D * 4 : V * D * 4;
        const codeBytes = (V * D * opts.bits) / 8;
        assert.ok(qbytes < fbytes - tableBytes + codeBytes * 1.6, `quantized file ${qbytes} B vs float ${fbytes} B`);
      }
    });
  }

  it('D not a multiple of the block size (D = 40): the shared form pads and slices, the plain form reads a partial block', async () => {
    const d = 40;
    const e40 = randn(V * d, 3, 0.05);
    const fm = lmModel(e40, 'copy', d);
    const { model: qm } = quantizeEmbeddings(fm, { bits: 4, blockSize: 32, symmetric: false });
    assert.ok(qm.graph.nodes.some((n) => n.opType === 'Slice'));
    const [ref, got] = await runBoth(lmModel(dequantizedTable(qm, d), 'copy', d), qm, idsFeed('copy', 8));
    assert.ok(maxRelError(got, ref) < 1e-4, `relative error ${maxRelError(got, ref)}`);
    // Plain form with D < blockSize: one partial block per row, no padding stored.
    const { model: qp } = quantizeEmbeddings(lmModel(e40, 'none', d), { bits: 4, blockSize: 64, symmetric: true });
    const [ref2, got2] = await runBoth(lmModel(dequantizedTable(qp, d), 'none', d), qp, idsFeed('none', 8));
    assert.ok(maxRelError(got2, ref2) < 1e-4, `relative error ${maxRelError(got2, ref2)}`);
  });

  it('float16 table: GatherBlockQuantized with float16 scales runs and matches', async () => {
    const b = new ModelBuilder({ opset: 17 });
    const ids = b.input('ids', DataType.INT64, ['B', 'T']);
    const { float32ArrayToFloat16 } = await import('../../src/quant/float16.js');
    const E = b.initializer('E', float32ArrayToFloat16(e), [V, D], DataType.FLOAT16);
    b.output(b.op('Cast', [b.op('Gather', [E, ids])], { to: DataType.FLOAT }), DataType.FLOAT);
    const fm = b.build();
    const { model: qm } = quantizeEmbeddings(fm, { bits: 8, blockSize: 32, symmetric: true });
    const [flt, got] = await runBoth(fm, qm, idsFeed('copy', 9));
    assert.ok(sqnrDb(flt, got) > 35, `SQNR ${sqnrDb(flt, got)}`);
  });

  it('float16 table with a tied float16 LM head: MatMulNBits takes float16 activations', async () => {
    const { float32ArrayToFloat16 } = await import('../../src/quant/float16.js');
    const b = new ModelBuilder({ opset: 17 });
    const ids = b.input('ids', DataType.INT64, ['B', 'T']);
    const E = b.initializer('E', float32ArrayToFloat16(e), [V, D], DataType.FLOAT16);
    const h = b.op('Gather', [E, ids]);
    const logits = b.op('MatMul', [h, b.op('Transpose', [E])]);
    b.output(b.op('Cast', [logits], { to: DataType.FLOAT }), DataType.FLOAT);
    const fm = b.build();
    const { model: qm, report } = quantizeEmbeddings(fm, { bits: 8, blockSize: 32, symmetric: false });
    assert.deepEqual(report.quantized.map((q) => q.opType), ['Gather', 'MatMul']);
    const [flt, got] = await runBoth(fm, qm, idsFeed('copy', 10));
    // float16 logits: measured 44.7 dB on this seed (8-bit, block 32, asymmetric).
    assert.ok(sqnrDb(flt, got) > 40, `SQNR ${sqnrDb(flt, got)}`);
  });
});
