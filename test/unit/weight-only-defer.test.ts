// The weight-only pass with `defer` (src/passes/weight-only.ts): outputs made deferred tensors (shapes and types up
// front, one quantization per weight shared by its B / scales / zero points), the same files as without defer, the
// report complete at once, errors (NaN weights, a mismatched hook) surfacing from saveModel as LowbitErrors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LowbitError } from '../../src/errors.js';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { deferredData } from '../../src/onnx/deferred.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf, tensorBytes } from '../../src/onnx/tensor.js';
import { quantizeWeightOnly, type WeightOnlyOptions } from '../../src/passes/weight-only.js';
import { quantizeBlockwiseRtn } from '../../src/quant/blockwise.js';
import { float32ArrayToFloat16 } from '../../src/quant/float16.js';
import { mulberry32 } from '../../src/rng.js';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-wodefer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const rand = (n: number, seed: number): Float32Array => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

/** MatMuls sharing a weight, a Gemm (transB, alpha, bias C), K not a multiple of the block, and an fp16 branch. */
function model(nan = false): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['M', 80]);
  const wData = rand(80 * 48, 1);
  if (nan) wData[7 * 48 + 5] = NaN;
  const w = b.initializer('w', wData, [80, 48]);
  const g = b.initializer('g', rand(24 * 48, 2), [24, 48]);
  const c = b.initializer('c', rand(24, 3), [24]);
  const h1 = b.op('MatMul', [x, w], {}, { name: 'mm1' });
  const h2 = b.op('MatMul', [x, w], {}, { name: 'mm2' }); // shares w
  const s = b.op('Add', [h1, h2]);
  b.output(b.op('Gemm', [s, g, c], { transB: 1, alpha: 0.5 }, { name: 'gemm' }), DataType.FLOAT);
  const xh = b.input('xh', DataType.FLOAT16, ['M', 64]);
  const wh = b.initializer('wh', float32ArrayToFloat16(rand(64 * 40, 4)), [64, 40], DataType.FLOAT16);
  b.output(b.op('MatMul', [xh, wh], {}, { name: 'mm_fp16' }), DataType.FLOAT16);
  return b.build();
}

const CONFIGS: [string, WeightOnlyOptions][] = [
  ['matmulnbits 4-bit asym rtn', { bits: 4, blockSize: 32 }],
  ['matmulnbits 8-bit sym', { bits: 8, blockSize: 16, symmetric: true, accuracyLevel: 4 }],
  ['matmulnbits 2-bit hqq', { bits: 2, blockSize: 16, algorithm: 'hqq' }],
  ['qdq 4-bit asym', { bits: 4, blockSize: 32, format: 'qdq' }],
  ['qdq 4-bit sym', { bits: 4, blockSize: 16, format: 'qdq', symmetric: true }],
  ['qdq 8-bit asym hqq', { bits: 8, blockSize: 64, format: 'qdq', algorithm: 'hqq' }],
  ['unpack-on-load 4-bit asym', { bits: 4, blockSize: 32, format: 'unpack-on-load' }],
  ['unpack-on-load 8-bit sym', { bits: 8, blockSize: 16, format: 'unpack-on-load', symmetric: true }],
];

const isCode = (code: string, name?: string) => (e: unknown) => e instanceof LowbitError && e.code === code && (name === undefined || e.message.includes(`'${name}'`));

test('defer: the same model and data files as without, byte for byte, and the same report', async (t) => {
  for (const [label, opts] of CONFIGS) {
    const eager = quantizeWeightOnly(model(), opts);
    const lazy = quantizeWeightOnly(model(), { ...opts, defer: true });
    assert.deepEqual(lazy.report, eager.report, `${label}: report complete before anything is read`);
    assert.equal(lazy.report.quantized.length, 4, label);
    // Every output of a quantized weight is deferred, with the eager tensor's type and shape.
    const eagerInits = eager.model.graph.initializers;
    let deferred = 0;
    for (const [name, t] of lazy.model.graph.initializers) {
      const e = eagerInits.get(name);
      assert.ok(e, `${label}: ${name} exists without defer`);
      assert.equal(t.dataType, e.dataType, `${label}: ${name} type`);
      assert.deepEqual(dimsOf(t), dimsOf(e), `${label}: ${name} shape`);
      if (deferredData(t)) deferred++;
    }
    assert.deepEqual([...lazy.model.graph.initializers.keys()], [...eagerInits.keys()], `${label}: same initializers, same order`);
    const outputs = opts.symmetric ? 2 : 3;
    assert.equal(deferred, 3 * outputs, `${label}: w, g, wh each give ${outputs} deferred tensors (the Gemm bias stays eager)`);
    for (const save of [{ forceExternal: true, externalDataThreshold: 64 }, {}]) {
      const dirA = tmp(t);
      const dirB = tmp(t);
      const a = await saveModel(eager.model.toProto(), join(dirA, 'model.onnx'), save);
      const b = await saveModel(lazy.model.toProto(), join(dirB, 'model.onnx'), save);
      assert.deepEqual(readFileSync(b.path), readFileSync(a.path), `${label}: model files identical`);
      assert.equal(b.externalTensors, a.externalTensors, label);
      if (a.dataPath) assert.deepEqual(readFileSync(b.dataPath!), readFileSync(a.dataPath), `${label}: data files identical`);
    }
  }
});

test('defer over a streamed model: source weights read from disk when saved, same bytes as eager', async (t) => {
  const dir = tmp(t);
  const src = await saveModel(model().toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 64 });
  const streamed = await loadModel(src.path, { externalData: 'stream' });
  const opts: WeightOnlyOptions = { bits: 4, blockSize: 32, defer: true };
  const lazy = quantizeWeightOnly(new Model(streamed.model), opts);
  for (const x of lazy.model.graph.initializers.values()) assert.ok(!x.rawData || x.rawData.length < 256, `${x.name} not held`);
  const out = await saveModel(lazy.model.toProto(), join(dir, 'q4.onnx'), { shardSize: 2048, externalDataThreshold: 64 });
  const eager = quantizeWeightOnly(model(), { bits: 4, blockSize: 32 });
  const dirE = tmp(t);
  const ref = await saveModel(eager.model.toProto(), join(dirE, 'q4.onnx'), { shardSize: 2048, externalDataThreshold: 64 });
  assert.ok(out.dataPaths!.length > 1, 'several shards');
  assert.equal(out.dataPaths!.length, ref.dataPaths!.length);
  assert.deepEqual(readFileSync(out.path), readFileSync(ref.path), 'model files identical');
  out.dataPaths!.forEach((p, i) => assert.deepEqual(readFileSync(p), readFileSync(ref.dataPaths![i]!), `shard ${i} identical`));
});

test('defer: one quantization per weight for all its outputs, dropped once each was read; the hook works', async (t) => {
  const calls: string[] = [];
  const hook = (name: string, w: Float32Array, K: number, N: number) => {
    calls.push(name);
    return quantizeBlockwiseRtn(w, K, N, { bits: 4, blockSize: 32, symmetric: false });
  };
  const opts: WeightOnlyOptions = { bits: 4, blockSize: 32, quantizeWeight: hook, quantizeWeightName: 'custom-test' };
  const lazy = quantizeWeightOnly(model(), { ...opts, defer: true });
  assert.deepEqual(calls, [], 'nothing quantized by the pass itself');
  assert.equal(lazy.report.quantized[0]!.form, 'MatMulNBits 4-bit, block 32, asym, custom-test');
  const dir = tmp(t);
  const saved = await saveModel(lazy.model.toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1 });
  assert.deepEqual([...calls].sort(), ['g', 'w', 'wh'], 'the hook runs once per distinct weight while saving');
  const eagerCalls = calls.length;
  const eager = quantizeWeightOnly(model(), opts);
  assert.equal(calls.length - eagerCalls, 3);
  const dirE = tmp(t);
  const ref = await saveModel(eager.model.toProto(), join(dirE, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1 });
  assert.deepEqual(readFileSync(saved.dataPath!), readFileSync(ref.dataPath!), 'data files identical');
  // Read again (all outputs were read once, so the quantization was dropped): quantized again, same bytes.
  calls.length = 0;
  const b = lazy.model.graph.initializers.get('w_Q4')!;
  assert.deepEqual(tensorBytes(b), tensorBytes(eager.model.graph.initializers.get('w_Q4')!));
  assert.deepEqual(calls, ['w']);
  assert.deepEqual(tensorBytes(b), tensorBytes(eager.model.graph.initializers.get('w_Q4')!));
  assert.deepEqual(calls, ['w', 'w'], 'a second read keeps nothing');
  // A fresh pass: reading B then scales then zero points quantizes once.
  calls.length = 0;
  const fresh = quantizeWeightOnly(model(), { ...opts, defer: true }).model.graph.initializers;
  for (const n of ['w_Q4', 'w_scales', 'w_zp']) assert.deepEqual(tensorBytes(fresh.get(n)!), tensorBytes(eager.model.graph.initializers.get(n)!), n);
  assert.deepEqual(calls, ['w']);
});

test('defer: a NaN weight is reported by saveModel as NON_FINITE naming the weight; no model file is left', async (t) => {
  assert.throws(() => quantizeWeightOnly(model(true), { bits: 4, blockSize: 32 }), isCode('NON_FINITE', 'w'), 'eager: thrown by the pass, naming the weight');
  const lazy = quantizeWeightOnly(model(true), { bits: 4, blockSize: 32, defer: true });
  assert.equal(lazy.report.quantized.length, 4, 'the report does not depend on values');
  for (const save of [{ forceExternal: true, externalDataThreshold: 64 }, {}]) {
    const dir = tmp(t);
    await assert.rejects(saveModel(lazy.model.toProto(), join(dir, 'model.onnx'), save), (e: unknown) => {
      assert.ok(isCode('NON_FINITE', 'w')(e), String(e));
      assert.match((e as LowbitError).message, /NaN/);
      assert.ok((e as LowbitError).hint);
      return true;
    });
    assert.deepEqual(readdirSync(dir), [], 'nothing written (temp files removed)');
  }
});

test('defer: a hook whose symmetric differs from the options is refused when read (BAD_DATA); bad defer value', () => {
  const hook = (_n: string, w: Float32Array, K: number, N: number) => quantizeBlockwiseRtn(w, K, N, { bits: 4, blockSize: 32, symmetric: true });
  // Eager: the layout follows the hook's result (no zero points).
  const eager = quantizeWeightOnly(model(), { bits: 4, blockSize: 32, quantizeWeight: hook });
  assert.equal(eager.model.graph.initializers.has('w_zp'), false);
  const lazy = quantizeWeightOnly(model(), { bits: 4, blockSize: 32, quantizeWeight: hook, defer: true });
  assert.throws(() => tensorBytes(lazy.model.graph.initializers.get('w_Q4')!), isCode('BAD_DATA', 'w'));
  // With the matching option, deferred and eager agree.
  const ok = quantizeWeightOnly(model(), { bits: 4, blockSize: 32, symmetric: true, quantizeWeight: hook, defer: true });
  assert.deepEqual(tensorBytes(ok.model.graph.initializers.get('w_Q4')!), tensorBytes(eager.model.graph.initializers.get('w_Q4')!));
  assert.throws(() => quantizeWeightOnly(model(), { bits: 4, blockSize: 32, defer: 'yes' as unknown as boolean }), isCode('BAD_OPTION'));
});
