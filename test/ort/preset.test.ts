// `--preset transformers.js` (src/pipeline/preset.ts): every dtype variant of a small generated transformer, named
// as transformers.js looks them up, runs in onnxruntime-node and in onnxruntime-web's wasm backend, and is as small
// and as close to float32 as its dtype should make it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { writeNpy } from '../../src/data/npy.js';
import { realModelPath } from '../../src/data/realistic.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import { buildTransformer } from '../../src/models/transformer.js';
import { DataType } from '../../src/onnx/proto.js';
import { DTYPE_SUFFIX, TRANSFORMERS_JS_DTYPES, presetInputs, quantizeTransformersJs } from '../../src/pipeline/preset.js';
import { throwsLowbit } from '../helpers.js';
import { assertFails, lowbit } from '../cli-helpers.js';

test('transformers.js preset: all dtypes written, named, run in node and web, sized and accurate as their dtype', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-preset-'));
  try {
    mkdirSync(join(dir, 'onnx'));
    const m = buildTransformer({ layers: 1, dModel: 64, heads: 2, ffn: 256, vocab: 512, seq: 8, seed: 3 });
    await saveModel(m.toProto(), join(dir, 'onnx', 'model.onnx'));
    const r = await quantizeTransformersJs({ input: dir, threads: 1 });
    assert.deepEqual(r.variants.map((v) => v.dtype), [...TRANSFORMERS_JS_DTYPES]);
    const files = readdirSync(join(dir, 'onnx')).sort();
    assert.deepEqual(files, ['model.onnx', ...TRANSFORMERS_JS_DTYPES.map((d) => `model${DTYPE_SUFFIX[d]}.onnx`)].sort());
    const by = Object.fromEntries(r.variants.map((v) => [v.dtype, v]));
    for (const v of r.variants) {
      assert.equal(v.node, 'ok', `${v.dtype} runs in onnxruntime-node`);
      assert.equal(v.web, 'ok', `${v.dtype} runs in onnxruntime-web (wasm)`);
      assert.ok(v.webMs! > 0 && v.sourceWebMs! > 0, `${v.dtype} timed in wasm beside float32: ${v.webMs} / ${v.sourceWebMs}`);
      assert.ok(v.quantizedNodes > 0, `${v.dtype} rewrote nodes`);
      assert.ok(v.bytes < v.sourceBytes, `${v.dtype} is smaller than float32`);
    }
    // Sizes follow the bits: fp16 ~2x, int8 ~4x (the embedding table stays float), 4-bit ~7x, 2-bit more.
    assert.ok(by.fp16!.sourceBytes / by.fp16!.bytes > 1.9);
    assert.ok(by.q4!.bytes < by.int8!.bytes && by.int8!.bytes < by.fp16!.bytes);
    assert.ok(by.q2!.bytes < by.q4!.bytes && by.q4f16!.bytes < by.q4!.bytes && by.q2f16!.bytes < by.q2!.bytes);
    // Fidelity against float32 on the same (synthetic) inputs: each format's expected neighbourhood.
    assert.ok(by.fp16!.sqnrDb! > 45, `fp16 ${by.fp16!.sqnrDb}`);
    for (const d of ['q8', 'int8', 'uint8'] as const) assert.ok(by[d]!.sqnrDb! > 15, `${d} ${by[d]!.sqnrDb}`);
    for (const d of ['q4', 'q4f16', 'bnb4'] as const) assert.ok(by[d]!.sqnrDb! > 10, `${d} ${by[d]!.sqnrDb}`);
    assert.ok(by.q2!.sqnrDb! < by.q4!.sqnrDb!, '2 bits lose more than 4');
    // q4f16: float16 activations and weights around the 4-bit MatMuls.
    const q4f16 = (await loadModel(join(dir, 'onnx', 'model_q4f16.onnx'))).model;
    assert.ok(q4f16.graph!.node.some((n) => n.opType === 'MatMulNBits'));
    assert.ok(q4f16.graph!.initializer.some((t) => t.dataType === DataType.FLOAT16));
    // A second run skips the variants it wrote as inputs.
    const again = presetInputs(dir);
    assert.deepEqual(again.files.map((f) => f.split('/').pop()), ['model.onnx']);
    assert.equal(again.skipped.length, TRANSFORMERS_JS_DTYPES.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('transformers.js preset: a folder without models and an unknown dtype are errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-preset-'));
  try {
    throwsLowbit(() => presetInputs(dir), 'FILE_NOT_FOUND');
    await assert.rejects(quantizeTransformersJs({ input: dir, dtypes: ['q3' as never] }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lowbit quantize DIR --preset transformers.js: chosen dtypes into -o, the table, and flags that do not apply', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-preset-cli-'));
  try {
    mkdirSync(join(dir, 'in'));
    mkdirSync(join(dir, 'out'));
    const m = buildTransformer({ layers: 1, dModel: 64, heads: 2, ffn: 128, vocab: 256, seq: 8, seed: 5 });
    await saveModel(m.toProto(), join(dir, 'in', 'decoder_model.onnx'));
    const r = await lowbit(['quantize', join(dir, 'in'), '--preset', 'transformers.js', '--dtypes', 'q4,fp16', '--no-web-check', '-o', join(dir, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(join(dir, 'out')).sort(), ['decoder_model_fp16.onnx', 'decoder_model_q4.onnx']);
    assert.match(r.stdout, /decoder_model_q4\.onnx\s*│ q4 /);
    assertFails(await lowbit(['quantize', join(dir, 'in'), '--preset', 'transformers.js', '--bits', '4']), 2, /bits does not apply with --preset/);
    mkdirSync(join(dir, 'unpacked'));
    const u = await lowbit(['quantize', join(dir, 'in'), '--preset', 'transformers.js', '--dtypes', 'q4', '--format', 'unpack-on-load', '--no-web-check', '-o', join(dir, 'unpacked')]);
    assert.equal(u.code, 0, u.stderr);
    assert.match(u.stdout, /^q4: MatMul \/ Gemm weights and embedding tables as 4-bit codes/m);
    const unpacked = (await loadModel(join(dir, 'unpacked', 'decoder_model_q4.onnx'))).model;
    assert.ok(!unpacked.graph!.node.some((n) => n.opType === 'MatMulNBits' || n.opType === 'GatherBlockQuantized'));
    assertFails(await lowbit(['quantize', join(dir, 'in'), '--preset', 'transformers.js', '--format', 'qdq']), 2, /format does not apply with --preset/);
    assertFails(await lowbit(['quantize', join(dir, 'in'), '--preset', 'transformers.js', '--dtypes', 'q3']), 2, /unknown transformers.js dtype 'q3'/);
    assertFails(await lowbit(['quantize', join(dir, 'in', 'decoder_model.onnx'), '--dtypes', 'q4', '-o', join(dir, 'x.onnx')]), 2, /apply to --preset only/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('preset --calib: variants checked on given samples; a model the synthetic sample cannot run says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-preset-data-'));
  try {
    mkdirSync(join(dir, 'tfm'));
    const m = buildTransformer({ layers: 1, dModel: 64, heads: 2, ffn: 128, vocab: 256, seq: 8, seed: 9 });
    await saveModel(m.toProto(), join(dir, 'tfm', 'model.onnx'));
    const ids = BigInt64Array.from({ length: 4 * 8 }, (_, i) => BigInt((i * 37) % 256));
    writeNpy(join(dir, 'tokens.npy'), { dtype: 'int64', shape: [4, 8], data: ids });
    const withData = await quantizeTransformersJs({ input: join(dir, 'tfm'), dtypes: ['q4'], web: false, data: join(dir, 'tokens.npy') });
    const synthetic = await quantizeTransformersJs({ input: join(dir, 'tfm'), dtypes: ['q4'], web: false });
    assert.equal(withData.variants[0]!.node, 'ok');
    assert.equal(withData.samples, `up to the first 4 samples of ${join(dir, 'tokens.npy')}`);
    assert.match(synthetic.samples, /^one synthetic sample/);
    assert.ok(withData.variants[0]!.sqnrDb !== undefined && withData.variants[0]!.sqnrDb !== synthetic.variants[0]!.sqnrDb, 'measured on the given tokens, not token 0');
    // silero VAD: its sample-rate input must be 8000 or 16000; 0 (synthetic) makes the float model itself fail.
    mkdirSync(join(dir, 'vad'));
    copyFileSync(realModelPath('vadLegacy'), join(dir, 'vad', 'model.onnx'));
    const r = await lowbit(['quantize', join(dir, 'vad'), '--preset', 'transformers.js', '--dtypes', 'fp16', '--no-web-check']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /not run: model_fp16\.onnx \(onnxruntime-node\): the float32 model itself fails on a synthetic sample .*pass samples with --calib DATA/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('preset on a model with external data: its weights are read, the variants run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-preset-ext-'));
  try {
    const m = buildTransformer({ layers: 1, dModel: 64, heads: 2, ffn: 256, vocab: 512, seq: 8, seed: 4 });
    await saveModel(m.toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
    assert.ok(readdirSync(dir).includes('model.onnx.data'), 'the source keeps its weights in a side file');
    const r = await quantizeTransformersJs({ input: join(dir, 'model.onnx'), dtypes: ['fp16', 'q4'], web: false, shardSize: 1024 * 1024 });
    for (const v of r.variants) {
      assert.equal(v.node, 'ok', `${v.dtype}: ${v.node}`);
      assert.ok(v.sqnrDb! > 10, `${v.dtype}: ${v.sqnrDb} dB`);
    }
    // Its tensors are under saveModel's 1 MiB external-data threshold: the variants are single files.
    assert.deepEqual(readdirSync(dir).sort(), ['model.onnx', 'model.onnx.data', 'model_fp16.onnx', 'model_q4.onnx']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
