// The generated transformer (src/models/transformer.ts): structure, sizes, determinism by seed, deferred weights
// equal to eager ones, tied LM head = the embedding's transpose, option errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { deferredData } from '../../src/onnx/deferred.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { tensorByteLength, tensorStorage } from '../../src/onnx/tensor.js';
import { buildTransformer, transformerSize, type TransformerOptions } from '../../src/models/transformer.js';

const small: TransformerOptions = { layers: 2, dModel: 32, heads: 4, ffn: 64, vocab: 50, seq: 8 };

const opCounts = (ops: (string | undefined)[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const o of ops) out[o ?? ''] = (out[o ?? ''] ?? 0) + 1;
  return out;
};

test('buildTransformer: the ops of a pre-LN decoder, per layer', () => {
  const m = buildTransformer(small);
  const ops = opCounts(m.graph.nodes.map((n) => n.opType));
  assert.equal(ops.LayerNormalization, 2 * 2 + 1);
  assert.equal(ops.MatMul, 2 * (4 + 2 + 2) + 1, 'q,k,v,o + qk,pv + fc_in,fc_out per layer, LM head');
  assert.equal(ops.Softmax, 2);
  assert.equal(ops.Erf, 2);
  assert.equal(ops.Gather, 1);
  assert.equal(m.opset(''), 17);
  assert.deepEqual(m.graph.inputs.map((v) => v.name), ['input_ids']);
  assert.deepEqual(m.graph.outputs.map((v) => v.name), ['logits']);
  assert.equal(m.graph.producer('logits')?.opType, 'MatMul');
  const names = [...m.graph.initializers.keys()];
  for (const n of ['embed_tokens.weight', 'embed_positions.weight', 'layers.0.attn.q_proj.weight', 'layers.1.mlp.fc_out.bias', 'ln_f.weight', 'lm_head.weight']) assert.ok(names.includes(n), n);
  m.graph.topoSort();
});

test('buildTransformer: weight bytes match transformerSize, std near 0.02 with outlier columns', () => {
  const m = buildTransformer(small);
  let bytes = 0;
  for (const t of m.graph.initializers.values()) if (t.dataType === 1) bytes += tensorByteLength(t)!;
  assert.equal(bytes, transformerSize(small).bytes);
  const w = tensorStorage(m.graph.initializers.get('layers.0.mlp.fc_in.weight')!) as Float32Array;
  const sorted = Array.from(w, Math.abs).sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1]!;
  assert.ok(Math.abs(median / 0.6745 - 0.02) < 0.003, `robust std ${median / 0.6745}`);
  assert.ok(sorted[sorted.length - 1]! > 0.02 * 12, 'outlier columns present');
  // The 24-layer, d=1024 benchmark model is over 1 GB of float32 weights.
  assert.ok(transformerSize({ layers: 24, dModel: 1024, ffn: 4096, vocab: 32000, seq: 128 }).bytes > 1e9);
});

test('buildTransformer: same seed same bytes, other seed other bytes; deferred equals eager', () => {
  const a = encodeModel(buildTransformer(small).toProto());
  assert.deepEqual(encodeModel(buildTransformer(small).toProto()), a);
  assert.notDeepEqual(encodeModel(buildTransformer({ ...small, seed: 2 }).toProto()), a);
  const lazy = buildTransformer({ ...small, deferred: true });
  const q = lazy.graph.initializers.get('layers.0.attn.q_proj.weight')!;
  assert.ok(deferredData(q), 'weights deferred');
  assert.equal(q.rawData, undefined);
  assert.deepEqual(encodeModel(lazy.toProto()), a);
});

test('buildTransformer: tied LM head is the embedding transposed; untied is not', () => {
  const check = (tied: boolean): boolean => {
    const m = buildTransformer({ ...small, tiedEmbeddings: tied });
    const e = tensorStorage(m.graph.initializers.get('embed_tokens.weight')!) as Float32Array;
    const h = tensorStorage(m.graph.initializers.get('lm_head.weight')!) as Float32Array;
    for (let v = 0; v < small.vocab; v++) for (let c = 0; c < small.dModel; c++) if (e[v * small.dModel + c] !== h[c * small.vocab + v]) return false;
    return true;
  };
  assert.equal(check(true), true);
  assert.equal(check(false), false);
});

test('buildTransformer: bad sizes are BAD_OPTION errors', () => {
  const bad = (o: Partial<TransformerOptions>) => assert.throws(() => buildTransformer({ ...small, ...o }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
  bad({ heads: 5 });
  bad({ layers: 0 });
  bad({ vocab: 1.5 });
});
