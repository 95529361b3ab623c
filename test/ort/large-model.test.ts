// The generated transformer in ONNX Runtime, and the large-model path end to end at a small size: generated with
// deferred weights and saved in shards, streamed back, converted to float16 with deferred outputs, saved in shards,
// each result run by ORT from its files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import { buildTransformer, type TransformerOptions } from '../../src/models/transformer.js';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { convertFloat16 } from '../../src/passes/float16.js';
import { cosineSimilarity } from '../../src/quant/metrics.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';

const opts: TransformerOptions = { layers: 2, dModel: 128, heads: 4, ffn: 512, vocab: 1000, seq: 16, seed: 3 };

function ids(batch: number, seed: number): NdArray {
  const rng = mulberry32(seed);
  return { dtype: 'int64', shape: [batch, opts.seq], data: BigInt64Array.from({ length: batch * opts.seq }, () => BigInt(rng.int(0, opts.vocab - 1))) };
}

async function logits(model: Uint8Array | string, input: NdArray): Promise<NdArray> {
  const s = await Session.create(model);
  try {
    return (await s.run({ input_ids: input })).logits!;
  } finally {
    await s.release();
  }
}

test('transformer (d=128, 2 layers) runs in ORT: logits [batch, seq, vocab], finite, causal, deterministic', async () => {
  const bytes = encodeModel(buildTransformer(opts).toProto());
  const input = ids(2, 1);
  const out = await logits(bytes, input);
  assert.deepEqual(out.shape, [2, opts.seq, opts.vocab]);
  const data = out.data as Float32Array;
  assert.ok(data.every(Number.isFinite));
  let sd = 0;
  for (const v of data) sd += v * v;
  assert.ok(Math.sqrt(sd / data.length) > 0.01, 'logits not degenerate');
  // Causal mask: changing the last token leaves every earlier position's logits unchanged.
  const changed = { ...input, data: (input.data as BigInt64Array).slice() };
  (changed.data as BigInt64Array)[opts.seq - 1] = ((changed.data as BigInt64Array)[opts.seq - 1]! + 1n) % BigInt(opts.vocab);
  const out2 = (await logits(bytes, changed)).data as Float32Array;
  const row = opts.vocab;
  assert.deepEqual(out2.subarray(0, (opts.seq - 1) * row), data.subarray(0, (opts.seq - 1) * row));
  assert.notDeepEqual(out2.subarray((opts.seq - 1) * row, opts.seq * row), data.subarray((opts.seq - 1) * row, opts.seq * row));
  // Same seed, same outputs.
  assert.deepEqual((await logits(encodeModel(buildTransformer(opts).toProto()), input)).data, data);
});

test('deferred transformer -> shards -> stream -> fp16 deferred -> shards: ORT runs each from its files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-large-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const input = ids(1, 2);
  const ref = await logits(encodeModel(buildTransformer(opts).toProto()), input);

  const gen = await saveModel(buildTransformer({ ...opts, deferred: true }).toProto(), join(dir, 'model.onnx'), { shardSize: 400 * 1024, externalDataThreshold: 64 * 1024 });
  assert.ok(gen.dataPaths!.length >= 3, `${gen.dataPaths!.length} shards`);
  assert.deepEqual((await logits(gen.path, input)).data, ref.data, 'shards hold the same weights');

  const streamed = await loadModel(gen.path, { externalData: 'stream' });
  const fp16 = convertFloat16(new Model(streamed.model), { defer: true });
  const out = await saveModel(fp16.model.toProto(), join(dir, 'model_fp16.onnx'), { shardSize: 400 * 1024, externalDataThreshold: 64 * 1024 });
  assert.ok(out.dataBytes! < gen.dataBytes! * 0.55, `fp16 data ${out.dataBytes} vs ${gen.dataBytes}`);
  assert.ok(readdirSync(dir).includes('model_fp16.onnx_data_1'));
  const half = await logits(out.path, input);
  assert.equal(half.dtype, 'float32');
  const cos = cosineSimilarity(ref.data as Float32Array, half.data as Float32Array);
  assert.ok(cos > 0.999, `cosine ${cos}`);
  assert.equal(fp16.report.clamped.length, 0);
});
