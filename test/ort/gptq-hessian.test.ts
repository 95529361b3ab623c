// collectHessians (src/pipeline/hessian.ts) in ONNX Runtime: MatMuls sharing one 3-D input, a MatMul on an
// intermediate value and a Gemm with transA, against 2/n XᵀX computed directly from the same data (ORT computes
// the Gram matrices); GPTQ on the collected Hessian against RTN on the model's own outputs; and the whole path
// (hessianTargets → collectHessians → gptqHook → the weight-only pass's MatMulNBits) against RTN in ORT.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bindToModelInputs, dataSourceFromArrays } from '../../src/data/calib-data.js';
import { LowbitError } from '../../src/errors.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { collectHessians, gptqHook, hessianTargets } from '../../src/pipeline/hessian.js';
import { quantizeWeightOnly } from '../../src/passes/weight-only.js';
import type { GptqQuantized } from '../../src/quant/gptq.js';
import { dequantizeBlockwise, quantizeBlockwiseRtn } from '../../src/quant/blockwise.js';
import { gptqQuantize } from '../../src/quant/gptq.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { maxRelError } from '../helpers.js';

const S = 20; // samples
const T = 3; // tokens per sample
const K = 24;
const rng = mulberry32(21);
const randn = (n: number, s = 1): Float32Array => Float32Array.from({ length: n }, () => s * rng.normal());
const W1 = randn(K * 8, 0.2);
const W2 = randn(K * 6, 0.2);
const W3 = randn(8 * 5, 0.2);
const W4 = randn(8 * 3, 0.2);
// correlated inputs: x = z + 0.8 · z shifted by one feature
const Z = randn(S * T * K);
const X = Float32Array.from(Z, (v, i) => v + 0.8 * Z[i - (i % K) + ((i + 1) % K)]!);
const ZT = randn(S * 8 * 4); // Gemm input, [8, 4] per sample

/** x [S, T, K] → q = x W1, k = x W2 (shared input), r = Relu(q) W3; zt [8, 4] → Gemm(transA) zt W4. */
function model(w1: Float32Array = W1): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', T, K]);
  const zt = b.input('zt', DataType.FLOAT, [8, 4]);
  const q = b.op('MatMul', [x, b.initializer('W1', w1, [K, 8])], {}, { name: 'q_proj' });
  const k = b.op('MatMul', [x, b.initializer('W2', W2, [K, 6])], {}, { name: 'k_proj' });
  const relu = b.op('Relu', [q], {}, { name: 'act' });
  const r = b.op('MatMul', [relu, b.initializer('W3', W3, [8, 5])], {}, { name: 'out_proj' });
  const g = b.op('Gemm', [zt, b.initializer('W4', W4, [8, 3])], { transA: 1 }, { name: 'gemm' });
  b.output(q, DataType.FLOAT);
  b.output(k, DataType.FLOAT);
  b.output(r, DataType.FLOAT);
  b.output(g, DataType.FLOAT);
  return b.build();
}

/** 2/n Σ over rows of a row-major [rows, K] matrix. */
function direct(x: Float32Array, k: number): Float64Array {
  const rows = x.length / k;
  const h = new Float64Array(k * k);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) h[i * k + j] += x[r * k + i]! * x[r * k + j]!;
  return h.map((v) => (2 / rows) * v);
}

function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) out[i * n + j] += a[i * k + p]! * b[p * n + j]!;
  return out;
}

async function boundData(m: Model, samples = S) {
  const s = await Session.create(encodeModel(m.toProto()));
  // zt is an unbatched input [8, 4]: one sample per run
  const ds = dataSourceFromArrays({
    x: { dtype: 'float32', shape: [samples, T, K], data: X.subarray(0, samples * T * K) },
    zt: { dtype: 'float32', shape: [samples, 8, 4], data: ZT.subarray(0, samples * 32) },
  });
  const data = bindToModelInputs(ds, s.inputs);
  await s.release();
  return data;
}

test('collectHessians: shared, intermediate and transposed inputs equal 2/n XᵀX of the same data', async () => {
  const m = model();
  const data = await boundData(m);
  const events: number[] = [];
  const hs = await collectHessians(
    m,
    data,
    [
      { node: 'q_proj', input: 'x', K },
      { node: 'k_proj', input: 'x', K },
      { node: 'out_proj', input: 'act_out', K: 8 },
      { node: 'gemm', input: 'zt', K: 8, transposed: true },
    ],
    { threads: 1, onProgress: (p) => events.push(p.samples) },
  );
  assert.deepEqual([...hs.keys()].sort(), ['gemm', 'k_proj', 'out_proj', 'q_proj']);
  assert.equal(events.at(-1), S);

  // x: every token of every sample is a row
  const hx = hs.get('q_proj')!;
  assert.equal(hx.rows, S * T);
  assert.equal(hs.get('k_proj')!.H, hx.H, 'one accumulator for the shared input');
  assert.ok(maxRelError(hx.H, direct(X, K)) < 1e-6, `x ${maxRelError(hx.H, direct(X, K))}`); // ORT sums in float32
  // the features are correlated: off-diagonal mass (feature i with i+1)
  assert.ok(Math.abs(hx.H[0 * K + 1]!) > 0.3 * hx.H[0]!, `H01 ${hx.H[1]} vs H00 ${hx.H[0]}`);

  // Relu(x W1): computed here in float64 from the same data
  const act = matmul(X, W1, S * T, K, 8).map((v) => Math.max(0, v));
  const ha = hs.get('out_proj')!;
  assert.equal(ha.rows, S * T);
  assert.ok(maxRelError(ha.H, direct(act, 8)) < 1e-6, `act ${maxRelError(ha.H, direct(act, 8))}`);

  // Gemm transA: zt is [8, 4] per sample, its 4 columns are rows of the Hessian
  const rowsT = new Float32Array(S * 4 * 8);
  for (let s = 0; s < S; s++) for (let kk = 0; kk < 8; kk++) for (let c = 0; c < 4; c++) rowsT[(s * 4 + c) * 8 + kk] = ZT[s * 32 + kk * 4 + c]!;
  const hg = hs.get('gemm')!;
  assert.equal(hg.rows, S * 4);
  assert.ok(maxRelError(hg.H, direct(rowsT, 8)) < 1e-6, `gemm ${maxRelError(hg.H, direct(rowsT, 8))}`);
});

test('collectHessians: GPTQ on the collected Hessian beats RTN on the model output in ORT', async () => {
  const m = model();
  const data = await boundData(m);
  const hs = await collectHessians(m, data, [{ node: 'q_proj', input: 'x', K }], { threads: 1 });
  const o = { bits: 2 as const, blockSize: 16, symmetric: false };
  const gptq = dequantizeBlockwise(gptqQuantize(W1, K, 8, hs.get('q_proj')!.H, o));
  const rtn = dequantizeBlockwise(quantizeBlockwiseRtn(W1, K, 8, o));
  const err = async (w: Float32Array) => {
    const s = await Session.create(encodeModel(model(w).toProto()), { threads: 1 });
    const ref = await Session.create(encodeModel(m.toProto()), { threads: 1 });
    let e = 0;
    for (let i = 0; i < S; i++) {
      const feeds = { x: { dtype: 'float32' as const, shape: [1, T, K], data: X.slice(i * T * K, (i + 1) * T * K) }, zt: { dtype: 'float32' as const, shape: [8, 4], data: ZT.slice(i * 32, i * 32 + 32) } };
      const a = (await s.run(feeds))['q_proj_out']!.data as Float32Array;
      const b = (await ref.run(feeds))['q_proj_out']!.data as Float32Array;
      for (let j = 0; j < a.length; j++) e += (a[j]! - b[j]!) ** 2;
    }
    await s.release();
    await ref.release();
    return e;
  };
  const ratio = (await err(gptq)) / (await err(rtn));
  assert.ok(ratio < 0.8, `GPTQ/RTN output error ${ratio.toFixed(3)}`); // measured 0.61 (2 bits, block 16)
});

test('collectHessians: wrong K, an unknown input and a repeated node are BAD_OPTION', async () => {
  const m = model();
  const data = await boundData(m, 2);
  const bad = async (w: Parameters<typeof collectHessians>[2], re: RegExp) =>
    assert.rejects(collectHessians(m, data, w, { threads: 1 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && re.test(e.message));
  await bad([{ node: 'q_proj', input: 'x', K: 8 }], /shape \[\d+, 3, 24\], expected \[\.\.\., 8\]/);
  await bad([{ node: 'q_proj', input: 'nope', K }], /cannot tap 'nope'/);
  await bad([{ node: 'q_proj', input: 'x', K }, { node: 'q_proj', input: 'x', K }], /listed twice/);
  await bad([{ node: 'q_proj', input: 'x', K }, { node: 'k_proj', input: 'x', K: 12 }], /K=24 .* K=12/);
});

test('weight-only pass with the GPTQ hook: MatMulNBits output error below RTN in ORT (shared weight, Gemm transB)', async () => {
  const D = 32;
  const M = 48;
  const n = 64;
  const r = mulberry32(5);
  const w1 = Float32Array.from({ length: D * M }, () => 0.2 * r.normal());
  const w2 = Float32Array.from({ length: 16 * M }, () => 0.2 * r.normal()); // Gemm B with transB = 1: [16, 48]
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', D]);
  const W1 = b.initializer('W1', w1, [D, M]);
  const h = b.op('MatMul', [x, W1], {}, { name: 'up' });
  const h2 = b.op('MatMul', [b.op('Sigmoid', [x], {}, { name: 'gate' }), W1], {}, { name: 'up_tied' }); // W1 read twice, other input
  const y = b.op('Gemm', [b.op('Relu', [h], {}, { name: 'act' }), b.initializer('W2', w2, [16, M])], { transB: 1 }, { name: 'down' });
  for (const v of [h, h2, y]) b.output(v, DataType.FLOAT);
  const m = b.build();
  // correlated features: each is a mix of 4 latent factors plus a little noise
  const lat = Float32Array.from({ length: n * 4 }, () => r.normal());
  const mix = Float32Array.from({ length: 4 * D }, () => r.normal());
  const X = new Float32Array(n * D);
  for (let s = 0; s < n; s++) for (let d = 0; d < D; d++) X[s * D + d] = 0.1 * r.normal() + lat[s * 4]! * mix[d]! + lat[s * 4 + 1]! * mix[D + d]! + lat[s * 4 + 2]! * mix[2 * D + d]! + lat[s * 4 + 3]! * mix[3 * D + d]!;
  const sess = await Session.create(encodeModel(m.toProto()));
  const data = bindToModelInputs(dataSourceFromArrays({ x: { dtype: 'float32', shape: [n, D], data: X } }), sess.inputs);
  await sess.release();

  const targets = hessianTargets(m);
  assert.deepEqual(targets, [
    { node: 'up', input: 'x', K: D },
    { node: 'up_tied', input: 'gate_out', K: D },
    { node: 'down', input: 'act_out', K: M },
  ]);
  const hs = await collectHessians(m, data, targets, { threads: 1 });
  const opts = { bits: 4 as const, blockSize: 16, symmetric: false };
  const seen: string[] = [];
  const hook = gptqHook(m, hs, opts, (name: string, res: GptqQuantized) => {
    seen.push(name);
    assert.equal(res.dampRetries, 0);
  });
  const gptq = quantizeWeightOnly(m, { ...opts, quantizeWeight: hook });
  const rtn = quantizeWeightOnly(m, opts);
  assert.deepEqual(seen.sort(), ['W1', 'W2']);
  assert.throws(() => gptqHook(m, new Map(), opts)('W1', w1, D, M), (e: unknown) => e instanceof LowbitError && e.code === 'INTERNAL' && /no Hessian of size 32 .* 'W1'/.test(e.message));
  assert.equal(gptq.report.quantized.length, 3);
  assert.ok(gptq.model.graph.nodes.every((nd) => nd.opType !== 'MatMul' && nd.opType !== 'Gemm'));

  const run = async (mm: Model) => {
    const s = await Session.create(encodeModel(mm.toProto()), { threads: 1 });
    const out = await s.run({ x: { dtype: 'float32', shape: [n, D], data: X } });
    await s.release();
    return Object.values(out).map((v) => v.data as Float32Array);
  };
  const ref = await run(m);
  const err = (outs: Float32Array[]) => outs.map((o, i) => o.reduce((a, v, j) => a + (v - ref[i]![j]!) ** 2, 0));
  const eG = err(await run(gptq.model));
  const eR = err(await run(rtn.model));
  // per output: up, up_tied (one W1 for two inputs: a compromise), down; measured 0.08, 0.15, 0.08
  for (const [i, what] of ['up', 'up_tied', 'down'].entries()) assert.ok(eG[i]! < 0.5 * eR[i]!, `${what}: GPTQ/RTN ${(eG[i]! / eR[i]!).toFixed(3)}`);
});
