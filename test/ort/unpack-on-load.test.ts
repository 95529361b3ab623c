// Embedding tables unpacked on load (src/passes/unpack-on-load.ts) and the transformers.js preset's unpack-on-load
// form: the tables and the tied LM head become 4-bit codes that ONNX Runtime folds back into float tables when the
// session loads. Checked: the outputs equal the float model with the dequantized table; ORT leaves no unpacking node
// after loading; the tied head shares the codes; onnxruntime-web computes the same; the preset writes no MatMulNBits.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import { buildTransformer } from '../../src/models/transformer.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage } from '../../src/onnx/tensor.js';
import { unpackEmbeddingTables } from '../../src/passes/unpack-on-load.js';
import { quantizeTransformersJs } from '../../src/pipeline/preset.js';
import { dequantizeBlockwise, quantizeBlockwiseRtn } from '../../src/quant/blockwise.js';
import { optimizedModel } from '../../src/runtime/optimized.js';
import { runInWeb } from '../../src/runtime/web.js';
import { maxRelError } from '../helpers.js';
import { runFirstOutput } from './run-helpers.js';

const TABLE = 'embed_tokens.weight';
const opts = { layers: 1, dModel: 64, heads: 2, ffn: 128, vocab: 256, seq: 8, seed: 4 };
const ids = { dtype: 'int64' as const, shape: [2, 8], data: BigInt64Array.from({ length: 16 }, (_, i) => BigInt((i * 37) % 256)) };

test('unpackEmbeddingTables: outputs of the float model on the dequantized table; folded by ORT; tied head shares the codes; same in wasm', async () => {
  const float = buildTransformer(opts);
  const e = float.graph.initializers.get(TABLE);
  assert.ok(e, `the builder names its table ${TABLE}`);
  const [V, D] = dimsOf(e!) as [number, number];
  for (const symmetric of [false, true]) {
    const { model: q, report } = unpackEmbeddingTables(float, { bits: 4, blockSize: 32, symmetric });
    assert.equal(q.opset(''), 21);
    assert.equal(q.graph.initializers.has(TABLE), false, 'the float table is gone');
    assert.ok(report.quantized.some((r) => r.opType === 'Gather'));
    assert.ok(report.quantized.some((r) => r.opType === 'MatMul' && /tied LM head/.test(r.form)), 'the tied head reads the unpacked table');
    const floatBytes = (t: { dims: unknown[]; dataType?: number }) => dimsOf(t as never).reduce((a, b) => a * b, 1) * (t.dataType === DataType.FLOAT ? 4 : 0);
    assert.equal([...q.graph.initializers.values()].filter((t) => dimsOf(t).includes(V) && floatBytes(t) >= V * D * 4).length, 0, 'neither the table nor the head copy is stored float');
    // Reference: the float model with E replaced by its dequantized 4-bit form (blocks along D), head copy included.
    const et = new Float32Array(V * D);
    const ev = tensorStorage(e!) as Float32Array;
    for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) et[d * V + v] = ev[v * D + d]!;
    const deqT = dequantizeBlockwise(quantizeBlockwiseRtn(et, D, V, { bits: 4, blockSize: 32, symmetric }));
    const deq = new Float32Array(V * D);
    for (let v = 0; v < V; v++) for (let d = 0; d < D; d++) deq[v * D + d] = deqT[d * V + v]!;
    const ref = buildTransformer(opts);
    ref.graph.setInitializer(makeTensor(TABLE, DataType.FLOAT, [V, D], deq));
    for (const [name, t] of ref.graph.initializers) if (name !== TABLE && dimsOf(t).join() === `${D},${V}`) ref.graph.setInitializer(makeTensor(name, DataType.FLOAT, [D, V], deqT));
    const want = await runFirstOutput(ref, { input_ids: ids });
    const got = await runFirstOutput(q, { input_ids: ids });
    assert.ok(maxRelError(got, want) < 1e-5, `${symmetric ? 'sym' : 'asym'}: ${maxRelError(got, want)}`);
    const web = Object.values(await runInWeb(encodeModel(q.toProto()), { input_ids: ids }))[0]!.data as Float32Array;
    assert.ok(maxRelError(web, want) < 1e-4, `wasm: ${maxRelError(web, want)}`);
    // After loading, no node reads the codes, the block index or the scales: ORT folded every unpacking node.
    const opt = await optimizedModel(encodeModel(q.toProto()));
    const reads = opt.graph!.node.flatMap((n) => n.input).filter((i) => /_q4|_block_index|_scale|_zero_point/.test(i));
    assert.deepEqual(reads, [], 'ORT folds the unpacking when the session loads');
  }
});

test('preset with unpack-on-load: q4 / q4f16 / q8 / int8 hold no MatMulNBits, GatherBlockQuantized or dynamic int8, run in node and wasm, and are 3-7x smaller; q2 keeps MatMulNBits', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-unpack-preset-'));
  try {
    mkdirSync(join(dir, 'onnx'));
    await saveModel(buildTransformer(opts).toProto(), join(dir, 'onnx', 'model.onnx'));
    const r = await quantizeTransformersJs({ input: dir, dtypes: ['q4', 'q4f16', 'q2', 'q8', 'int8'], weightFormat: 'unpack-on-load', threads: 1 });
    assert.equal(r.weightFormat, 'unpack-on-load');
    const [q4, q4f16, q2, q8, int8] = r.variants;
    for (const v of [q8!, int8!]) assert.ok(v.sqnrDb! > 25 && v.sourceBytes / v.bytes > 3, `${v.dtype}: ${v.sqnrDb} dB, ${v.sourceBytes} / ${v.bytes}`);
    for (const v of [q4!, q4f16!, q8!, int8!]) {
      assert.equal(v.node, 'ok', v.dtype);
      assert.equal(v.web, 'ok', v.dtype);
      assert.ok(v.sqnrDb! > 10, `${v.dtype}: ${v.sqnrDb} dB`);
      assert.ok(v.sourceBytes / v.bytes > (v.dtype.startsWith('q4') ? 4 : 3), `${v.dtype}: ${v.sourceBytes} / ${v.bytes}`);
      const m = (await loadModel(v.output)).model;
      const ops = new Set(m.graph!.node.map((n) => n.opType));
      assert.ok(!ops.has('MatMulNBits') && !ops.has('GatherBlockQuantized') && !ops.has('DynamicQuantizeMatMul'), `${v.dtype}: ${[...ops].join(', ')}`);
    }
    // q2 keeps MatMulNBits (2-bit codes cannot be Cast before opset 25) and is written.
    assert.equal(q2!.node, 'ok');
    assert.ok((await loadModel(q2!.output)).model.graph!.node.some((n) => n.opType === 'MatMulNBits'), 'q2 stays MatMulNBits');
    await assert.rejects(quantizeTransformersJs({ input: dir, dtypes: ['q4'], weightFormat: 'nf4' as never }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unpackConvWeights: Conv / depthwise / ConvTranspose weights (Constant nodes too) equal the dequantized weights in ORT; small ones stay float', async () => {
  const { buildSmallCnn, normalArray } = await import('./quantize-static-fixtures.js');
  const { unpackConvWeights } = await import('../../src/passes/unpack-on-load.js');
  const { ModelBuilder } = await import('../../src/onnx/builder.js');
  const float = buildSmallCnn(1, { channels: 16 });
  // A ConvTranspose on the output of the CNN's first conv, and a weight written as a Constant node.
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', DataType.FLOAT, ['N', 8, 6, 6]);
  const rng = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.2);
  const wc = b.op('Constant', [], { value: makeTensor('wc_value', DataType.FLOAT, [16, 8, 3, 3], rng(16 * 8 * 9, 1)) }, { name: 'wc' });
  const c = b.op('Conv', [x, wc], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv_const' });
  const y = b.op('ConvTranspose', [c, b.initializer('wt', rng(16 * 4 * 2 * 2, 2), [16, 4, 2, 2])], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'deconv' });
  b.output(y, DataType.FLOAT);
  const extra = b.build();
  for (const [model, input, shape] of [[float, 'x', [2, 3, 32, 32]], [extra, 'x', [2, 8, 6, 6]]] as const) {
    for (const bits of [8, 4] as const) {
      const { model: q, report } = unpackConvWeights(model, { bits, blockSize: 32, symmetric: false });
      // Reference: the same model with each unpacked weight replaced by its dequantized values (rows = axis 0).
      const ref = unpackConvWeights(model, { bits, blockSize: 32, symmetric: false, excludeOps: ['Conv', 'ConvTranspose'] }).model;
      for (const r of report.quantized) {
        const n = ref.graph.nodes.find((m) => m.name === r.node)!;
        const w = ref.graph.initializers.get(n.input[1]!)!;
        const dims = dimsOf(w);
        const rows = dims[0]!;
        const cols = dims.slice(1).reduce((a, v) => a * v, 1);
        const v = tensorStorage(w) as Float32Array;
        const t = new Float32Array(rows * cols);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = v[i * cols + j]!;
        const d = dequantizeBlockwise(quantizeBlockwiseRtn(t, cols, rows, { bits, blockSize: 32, symmetric: false }));
        const back = new Float32Array(rows * cols);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) back[i * cols + j] = d[j * rows + i]!;
        ref.graph.setInitializer(makeTensor(n.input[1]!, DataType.FLOAT, dims, back));
      }
      assert.ok(report.quantized.length > 0);
      const feeds = { [input]: normalArray([...shape], 3) };
      const got = await runFirstOutput(q, feeds);
      const want = await runFirstOutput(ref, feeds);
      assert.ok(maxRelError(got, want) < 1e-5, `${bits}-bit ${report.quantized.map((r) => r.node).join(',')}: ${maxRelError(got, want)}`);
      if (model === extra) assert.deepEqual(report.quantized.map((r) => r.node).sort(), ['conv_const', 'deconv']);
      else assert.ok(report.skipped.some((s) => /under 256/.test(s.reason)), 'a tiny weight stays float');
      if (bits === 4) assert.equal(q.opset(''), 21);
    }
  }
});

test('quantize --mode weight-only --format unpack-on-load on the bundled digit MobileNet: every Conv and the Gemm as 8-bit codes, 2.5x smaller, close to float', async () => {
  const { quantize } = await import('../../src/pipeline/quantize.js');
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-unpack-cnn-'));
  try {
    const r = await quantize({ input: 'models/digits-mobilenet.onnx', output: join(dir, 'm.onnx'), mode: 'weight-only', bits: 8, format: 'unpack-on-load', threads: 1 });
    const byOp = (op: string) => r.nodes.filter((n) => n.opType === op);
    assert.ok(byOp('Conv').length >= 8 && byOp('Conv').every((n) => n.quantized && /weight unpacked on load \(8-bit/.test(n.detail)), JSON.stringify(byOp('Conv')));
    assert.ok(byOp('Gemm').every((n) => n.quantized && /unpacked on load/.test(n.detail)));
    assert.ok(r.sizeBytes.before / r.sizeBytes.after > 2.3, `${r.sizeBytes.before} -> ${r.sizeBytes.after}`);
    assert.ok(r.fidelity.sqnrDb! > 30, `SQNR ${r.fidelity.sqnrDb}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unpackEmbeddingTables: axis -2 is axis 0 of a table; axis 1 is left float with the reason', async () => {
  const { ModelBuilder } = await import('../../src/onnx/builder.js');
  const build = (axis: number) => {
    const b = new ModelBuilder({ opset: 13 });
    const ids = b.input('ids', DataType.INT64, [4]);
    const table = b.initializer('table', Float32Array.from({ length: 16 * 32 }, (_, i) => Math.cos(i)), [16, 32]);
    b.output(b.op('Gather', [table, ids], { axis }, { name: 'lookup' }), DataType.FLOAT);
    return b.build();
  };
  for (const axis of [0, -2]) {
    const { model, report } = unpackEmbeddingTables(build(axis), { bits: 8, blockSize: 16, symmetric: false });
    assert.deepEqual(report.quantized.map((r) => r.node), ['lookup'], `axis ${axis}`);
    assert.equal(model.graph.initializers.has('table'), false);
  }
  const { report } = unpackEmbeddingTables(build(1), { bits: 8, blockSize: 16, symmetric: false });
  assert.match(report.skipped[0]!.reason, /axis 1/);
});
