// quantize() --mode weight-only --algorithm gptq end to end (Hessians from the calibration samples, held-out
// verification), its option checks, and --shard-size on the written model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveModel } from '../../src/io/model-file.js';
import { writeNpy } from '../../src/data/npy.js';
import { buildTransformer } from '../../src/models/transformer.js';
import { makeAttribute } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType, type GraphProto } from '../../src/onnx/proto.js';
import { resolveQuantizeOptions } from '../../src/pipeline/options.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { mulberry32 } from '../../src/rng.js';
import { throwsLowbit } from '../helpers.js';
import { lowbit } from '../cli-helpers.js';

const SEQ = 16;
const VOCAB = 512;

async function fixture(dir: string): Promise<{ model: string; calib: string }> {
  const m = buildTransformer({ layers: 2, dModel: 128, heads: 4, ffn: 512, vocab: VOCAB, seq: SEQ, seed: 11 });
  const model = join(dir, 'model.onnx');
  await saveModel(m.toProto(), model);
  // Token sequences with structure (a few frequent tokens), so activations are correlated as real text makes them.
  const rng = mulberry32(4);
  const n = 48;
  const ids = new BigInt64Array(n * SEQ);
  for (let i = 0; i < ids.length; i++) ids[i] = BigInt(rng.next() < 0.5 ? Math.floor(rng.next() * 16) : Math.floor(rng.next() * VOCAB));
  const calib = join(dir, 'tokens.npy');
  writeNpy(calib, { dtype: 'int64', shape: [n, SEQ], data: ids });
  return { model, calib };
}

test('weight-only gptq: better output fidelity than rtn at 2 and 4 bits on the same held-out samples', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-gptq-'));
  try {
    const { model, calib } = await fixture(dir);
    for (const bits of [4, 2] as const) {
      const run = (algorithm: 'rtn' | 'gptq') => quantize({ input: model, output: join(dir, `${algorithm}${bits}.onnx`), mode: 'weight-only', bits, blockSize: 32, algorithm, calib, threads: 1 });
      const rtn = await run('rtn');
      const gptq = await run('gptq');
      // rtn verifies on all 48 samples; gptq holds 20% out of its calibration: compare on what each reports, and
      // check gptq verified on samples it did not calibrate on.
      assert.match(gptq.verification, /held-out/);
      assert.ok(gptq.nodes.some((n) => n.quantized && /gptq, act-order/.test(n.detail ?? '')), 'nodes labelled gptq');
      assert.ok(gptq.fidelity.sqnrDb! > rtn.fidelity.sqnrDb! + 0.5, `${bits}-bit: gptq ${gptq.fidelity.sqnrDb} dB vs rtn ${rtn.fidelity.sqnrDb} dB`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('weight-only gptq options: calibration data required, actOrder / damp only with gptq, damp in (0, 1)', () => {
  const base = { input: 'm.onnx', output: 'o.onnx', mode: 'weight-only' as const };
  throwsLowbit(() => resolveQuantizeOptions({ ...base, algorithm: 'gptq' }), 'BAD_OPTION', 'gptq needs calibration data');
  throwsLowbit(() => resolveQuantizeOptions({ ...base, actOrder: false }), 'BAD_OPTION', 'apply to --algorithm gptq only');
  throwsLowbit(() => resolveQuantizeOptions({ ...base, algorithm: 'gptq', calib: 'c.npy', damp: 2 }), 'BAD_OPTION', 'damp must be a number in (0, 1)');
  const r = resolveQuantizeOptions({ ...base, algorithm: 'gptq', calib: 'c.npy' });
  assert.equal(r.actOrder, true);
  assert.equal(r.damp, 0.01);
  throwsLowbit(() => resolveQuantizeOptions({ ...base, shardSize: 100 }), 'BAD_OPTION', 'shardSize');
});

test('lowbit quantize --algorithm gptq --no-act-order: the CLI path, labelled without act-order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-gptq-cli-'));
  try {
    const { model, calib } = await fixture(dir);
    const r = await lowbit(['quantize', model, '-o', join(dir, 'q.onnx'), '--mode', 'weight-only', '--bits', '8', '--algorithm', 'gptq', '--no-act-order', '--calib', calib, '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /gptq\b/);
    assert.doesNotMatch(r.stdout, /act-order/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lowbit quantize --shard-size: external data in files named <OUT>_data, <OUT>_data_1, ... that ORT loads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-shards-'));
  try {
    // Two FFN weights of 4 MB (2 MB in float16) are over the 1 MiB external-data threshold; 1 MB shards split them.
    const m = buildTransformer({ layers: 1, dModel: 512, heads: 8, ffn: 2048, vocab: 512, seq: 8, seed: 2 });
    const model = join(dir, 'model.onnx');
    await saveModel(m.toProto(), model);
    const out = join(dir, 'half.onnx');
    const r = await lowbit(['quantize', model, '-o', out, '--mode', 'fp16', '--shard-size', '1MB', '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(dir).filter((f) => f.startsWith('half.onnx')).sort();
    assert.deepEqual(files, ['half.onnx', 'half.onnx_data', 'half.onnx_data_1']);
    assert.match(r.stdout, /output SQNR\s*│\s*[4-9]\d\.\d dB/, 'verified by loading the sharded model in ORT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('weight-only gptq on a model with an If: main-graph weights by GPTQ, branch-only weights by RTN, said in the notes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-gptq-if-'));
  try {
    const rng = mulberry32(12);
    const w = (name: string, k: number, n: number): string => b.initializer(name, Float32Array.from({ length: k * n }, () => rng.normal() * 0.1), [k, n]);
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['N', 64]);
    const h = b.op('MatMul', [x, w('W0', 64, 64)], undefined, { name: 'main_mm' });
    const cond = b.op('Greater', [b.op('ReduceSum', [x], { keepdims: 0 }), b.initializer('zero', Float32Array.of(0), [])]);
    w('W1', 64, 32);
    const branch = (act: string): GraphProto => {
      const g = new ModelBuilder({ opset: 17 });
      g.output(g.op(act, [g.op('MatMul', [h, 'W1'], undefined, { name: `${act}_mm` })]), DataType.FLOAT);
      return g.build().graph.toProto();
    };
    const y = b.op('If', [cond], undefined, { name: 'branch' });
    b.output(y, DataType.FLOAT);
    const m = b.build();
    m.graph.nodes.find((n) => n.opType === 'If')!.attribute = [makeAttribute('then_branch', branch('Relu')), makeAttribute('else_branch', branch('Sigmoid'))];
    const model = join(dir, 'if.onnx');
    await saveModel(new Model(m.toProto()).toProto(), model);
    const calib = join(dir, 'x.npy');
    writeNpy(calib, { dtype: 'float32', shape: [40, 64], data: Float32Array.from({ length: 40 * 64 }, () => rng.normal()) });
    const r = await quantize({ input: model, output: join(dir, 'q.onnx'), mode: 'weight-only', bits: 4, algorithm: 'gptq', calib, threads: 1 });
    const quantized = r.nodes.filter((n) => n.quantized).map((n) => n.node).sort();
    assert.deepEqual(quantized, ['branch/else_branch/Sigmoid_mm', 'branch/then_branch/Relu_mm', 'main_mm']);
    assert.ok(r.notes?.some((n) => /1 weight read only inside If\/Loop\/Scan bodies quantized with RTN .*: W1/.test(n)), r.notes?.join('\n'));
    assert.ok(r.fidelity.sqnrDb! > 15, `SQNR ${r.fidelity.sqnrDb}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
