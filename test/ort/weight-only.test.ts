// Weight-only blockwise quantization in ONNX Runtime: MatMulNBits built by lowbit equals a float MatMul with the
// dequantized weights (the packing checked against ORT's own kernel), for 2/4/8 bits, block 16/32, sym/asym;
// the blocked DequantizeLinear form the same, and the unpack-on-load form (folded by ORT, also in wasm); Gemm; quantize() end to end; PP-OCR rec at 4 bits.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ocrRecBatch, realModelPath } from '../../src/data/realistic.js';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { quantizeWeightOnly } from '../../src/passes/weight-only.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { dequantizeBlockwise, quantizeBlockwiseRtn, type BlockBits } from '../../src/quant/blockwise.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { mulberry32 } from '../../src/rng.js';
import { maxRelError } from '../helpers.js';
import { runFirstOutput } from './run-helpers.js';
import { optimizedModel, optimizedOpTypes } from '../../src/runtime/optimized.js';
import { convertFloat16 } from '../../src/passes/float16.js';
import { runInWeb } from '../../src/runtime/web.js';

const rand = (n: number, seed: number, std = 1) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r.normal() * std);
};

const run = runFirstOutput;

const M = 5;
const K = 96;
const N = 40;
const A = rand(M * K, 1);
const W = rand(K * N, 2, 0.1);
const feeds = { a: { dtype: 'float32' as const, shape: [M, K], data: A } };

function matmulModel(w: Float32Array, gemm = false): Model {
  const b = new ModelBuilder({ opset: 17 });
  const a = b.input('a', DataType.FLOAT, [M, K]);
  const wt = b.initializer('w', w, [K, N]);
  const y = gemm ? b.op('Gemm', [a, wt, b.initializer('c', rand(N, 3), [N])], { beta: 0.5 }) : b.op('MatMul', [a, wt]);
  b.output(y, DataType.FLOAT);
  return b.build();
}

describe('weight-only quantization in ORT', () => {
  it('MatMulNBits equals MatMul with dequantizeBlockwise weights: bits 2/4/8, block 16/32, sym/asym', async () => {
    for (const bits of [2, 4, 8] as BlockBits[]) {
      for (const blockSize of [16, 32]) {
        for (const symmetric of [false, true]) {
          const { model: q } = quantizeWeightOnly(matmulModel(W), { bits, blockSize, symmetric });
          assert.equal(q.graph.nodes[0]!.opType, 'MatMulNBits');
          const ref = await run(matmulModel(dequantizeBlockwise(quantizeBlockwiseRtn(W, K, N, { bits, blockSize, symmetric }))), feeds);
          const got = await run(q, feeds);
          assert.ok(maxRelError(got, ref) < 1e-5, `${bits}-bit block ${blockSize} ${symmetric ? 'sym' : 'asym'}: ${maxRelError(got, ref)}`);
        }
      }
    }
  });

  it('blocked DequantizeLinear form equals the same (ORT optimizations at basic: at all ORT fuses it into MatMulNBits with int8 activations)', async () => {
    for (const bits of [4, 8] as BlockBits[]) {
      for (const symmetric of [false, true]) {
        const { model: q } = quantizeWeightOnly(matmulModel(W), { bits, blockSize: 32, symmetric, format: 'qdq' });
        const ref = await run(matmulModel(dequantizeBlockwise(quantizeBlockwiseRtn(W, K, N, { bits, blockSize: 32, symmetric }))), feeds);
        const got = await run(q, feeds, 'basic');
        assert.ok(maxRelError(got, ref) < 1e-5, `${bits}-bit ${symmetric}: ${maxRelError(got, ref)}`);
        assert.ok(maxRelError(await run(q, feeds), ref) < 2e-2);
      }
    }
  });

  it('unpack-on-load form: folded to a float weight when the session loads, equal to MatMul with dequantized weights, in node and wasm', async () => {
    for (const bits of [4, 8] as BlockBits[]) {
      for (const symmetric of [false, true]) {
        for (const blockSize of [32, 64]) { // K = 96: block 64 leaves a partial last block
          const { model: q } = quantizeWeightOnly(matmulModel(W), { bits, blockSize, symmetric, format: 'unpack-on-load' });
          const label = `${bits}-bit ${symmetric ? 'sym' : 'asym'} block ${blockSize}`;
          const ops = new Set(q.graph.nodes.map((n) => n.opType));
          assert.ok(ops.has('Cast') && ops.has('Gather') && ops.has('MatMul') && !ops.has('DequantizeLinear'), `${label}: ${[...ops].join(', ')}`);
          assert.equal(ops.has('Sub'), !symmetric, `${label}: a zero point only when asymmetric`);
          const codes = q.graph.nodes.find((n) => n.opType === 'Cast')!.input[0]!;
          const want = bits === 4 ? (symmetric ? DataType.INT4 : DataType.UINT4) : symmetric ? DataType.INT8 : DataType.UINT8;
          assert.equal(q.graph.initializers.get(codes)!.dataType, want, label);
          assert.equal(q.opset(''), bits === 4 ? 21 : 17, `${label}: opset raised only for INT4 / UINT4 Cast`);
          const ref = await run(matmulModel(dequantizeBlockwise(quantizeBlockwiseRtn(W, K, N, { bits, blockSize, symmetric }))), feeds);
          const got = await run(q, feeds);
          assert.ok(maxRelError(got, ref) < 1e-5, `${label}: ${maxRelError(got, ref)}`);
          const folded = await optimizedOpTypes(encodeModel(q.toProto()));
          assert.deepEqual([...folded.keys()].filter((op) => /^(Cast|Gather|Sub|Mul|DequantizeLinear)$|MatMulNBits/.test(op)), [], `${label}: ORT folds the unpacking`);
        }
      }
    }
    // A float16 model: float16 scales, the arithmetic still float32 (ORT's CPU EP folds no float16 Sub / Mul).
    const half = convertFloat16(matmulModel(W), { type: 'float16', keepIoTypes: true }).model;
    const { model: h } = quantizeWeightOnly(half, { bits: 4, blockSize: 32, format: 'unpack-on-load' });
    const hRef = await run(quantizeWeightOnly(half, { bits: 4, blockSize: 32, format: 'qdq' }).model, feeds, 'basic');
    assert.ok(maxRelError(await run(h, feeds), hRef) < 5e-3, `float16: ${maxRelError(await run(h, feeds), hRef)}`);
    const hOpt = await optimizedModel(encodeModel(h.toProto()));
    assert.deepEqual(hOpt.graph!.node.map((n) => n.opType ?? '').filter((op) => /^(Gather|Sub|Mul)$/.test(op)), [], 'float16: ORT folds the unpacking too');
    const { model: g } = quantizeWeightOnly(matmulModel(W, true), { bits: 4, blockSize: 32, format: 'unpack-on-load' });
    const ref = await run(quantizeWeightOnly(matmulModel(W, true), { bits: 4, blockSize: 32, format: 'qdq' }).model, feeds, 'basic');
    assert.ok(maxRelError(await run(g, feeds), ref) < 1e-5, 'Gemm with beta and bias');
    const web = Object.values(await runInWeb(encodeModel(g.toProto()), feeds))[0]!.data as Float32Array;
    assert.ok(maxRelError(web, ref) < 1e-5, `onnxruntime-web: ${maxRelError(web, ref)}`);
  });

  it('Gemm (beta 0.5, bias) and HQQ: close to float, accuracy_level 4 close to 0', async () => {
    const f = await run(matmulModel(W, true), feeds);
    for (const algorithm of ['rtn', 'hqq'] as const) {
      const { model: q } = quantizeWeightOnly(matmulModel(W, true), { bits: 4, blockSize: 32, algorithm });
      const g = await run(q, feeds);
      assert.ok(sqnrDb(f, g) > 15, `${algorithm}: ${sqnrDb(f, g)} dB`);
      const { model: q4 } = quantizeWeightOnly(matmulModel(W, true), { bits: 4, blockSize: 32, algorithm, accuracyLevel: 4 });
      assert.ok(maxRelError(await run(q4, feeds), g) < 2e-2);
    }
  });

  it('quantize() end to end: 2-layer MLP-with-LayerNorm model, 4 bits: ~6x smaller, SQNR > 15 dB', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowbit-wo-'));
    const d = 128;
    const b = new ModelBuilder({ opset: 20 }); // Gelu
    let h = b.input('x', DataType.FLOAT, ['N', 16, d]);
    for (let l = 0; l < 2; l++) {
      const n = b.op('LayerNormalization', [h, b.initializer(`g${l}`, new Float32Array(d).fill(1), [d]), b.initializer(`b${l}`, new Float32Array(d), [d])], { axis: -1 });
      const up = b.op('Gelu', [b.op('Add', [b.op('MatMul', [n, b.initializer(`w1_${l}`, rand(d * 4 * d, 10 + l, 0.05), [d, 4 * d])]), b.initializer(`c1_${l}`, rand(4 * d, 20 + l, 0.01), [4 * d])])]);
      h = b.op('Add', [h, b.op('MatMul', [up, b.initializer(`w2_${l}`, rand(4 * d * d, 30 + l, 0.05), [4 * d, d])])]);
    }
    b.output(h, DataType.FLOAT);
    const input = join(dir, 'mlp.onnx');
    await saveModel(b.build().toProto(), input);
    const r = await quantize({ input, output: join(dir, 'mlp.q4.onnx'), mode: 'weight-only', bits: 4, threads: 2 });
    assert.equal(r.nodes.filter((n) => n.quantized).length, 4);
    assert.match(r.nodes[0]!.detail, /MatMulNBits 4-bit, block 32, asym, rtn/);
    assert.ok(r.sizeBytes.before / r.sizeBytes.after > 5, `${r.sizeBytes.before} / ${r.sizeBytes.after}`);
    assert.ok(r.fidelity.sqnrDb! > 15, `${r.fidelity.sqnrDb} dB`);
    assert.equal(statSync(join(dir, 'mlp.q4.onnx')).size, r.sizeBytes.after);
  });

  it('PP-OCR v4 rec, 4-bit block 32: runs, smaller, output SQNR above the measured floor', async () => {
    const path = realModelPath('ocrRec');
    const model = new Model((await loadModel(path)).model);
    const { model: q, report } = quantizeWeightOnly(model, { bits: 4, blockSize: 32, algorithm: 'hqq' });
    assert.equal(report.quantized.length, 9, JSON.stringify(report.skipped));
    assert.ok(report.quantized.length >= 9, `${report.quantized.length} quantized`);
    const x = ocrRecBatch(2, 11).input;
    const f = await run(model, { x });
    const g = await run(q, { x });
    assert.ok(encodeModel(q.toProto()).length < statSync(path).size * 0.8);
    console.log(`PP-OCR rec hqq 4-bit: ${sqnrDb(f, g).toFixed(2)} dB`);
    assert.ok(sqnrDb(f, g) > 10, `${sqnrDb(f, g)} dB`);
  });
});
