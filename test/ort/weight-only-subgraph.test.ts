// Weight-only quantization inside If branches, the shape of transformers.js' decoder_model_merged.onnx: both
// branches read their MatMul weights (and the token embedding / tied LM head) from the MAIN graph. The passes
// rewrite the body nodes in place, store one quantized copy per weight in the main graph, drop the float weights,
// and the quantized model equals, on both branches in ORT, a float model built from the dequantized weights read
// back from the quantized file itself. Body nodes are reported as '<if node>/<branch attribute>/<node>'.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { attrInt } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Graph, Model } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { quantizeEmbeddings } from '../../src/passes/weight-only-gather.js';
import { quantizeWeightOnly, type WeightOnlyOptions } from '../../src/passes/weight-only.js';
import { dequantizeBlockwise, quantizeBlockwiseRtn } from '../../src/quant/blockwise.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { mulberry32 } from '../../src/rng.js';
import { maxRelError } from '../helpers.js';
import { runFirstOutput } from './run-helpers.js';

const rand = (n: number, seed: number, std = 1): Float32Array => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r.normal() * std);
};
const transpose = (w: Float32Array, rows: number, cols: number): Float32Array => {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c]!;
  return t;
};

const D = 64;
const H = 128;
const OUT = 32;
const V = 96;
const W1 = rand(D * H, 1, 0.1);
const W2 = rand(H * OUT, 2, 0.1);
const W2E = rand(H * D, 3, 0.1);
const E = rand(V * D, 4, 0.5);

/** The If's two branches: MatMul(in, W1) -> Relu (then) / Sigmoid (else) -> MatMul(., W2) [-> MatMul(., ET) tied LM head]. */
function branch(name: string, act: 'Relu' | 'Sigmoid', embed: boolean): ReturnType<Model['toProto']>['graph'] {
  const t = name === 'then_branch' ? 'then' : 'else';
  const b = new ModelBuilder({ name });
  const x = embed ? b.op('Gather', ['E', 'ids'], {}, { name: `${t}_embed` }) : 'x';
  const h1 = b.op(act, [b.op('MatMul', [x, 'W1'], {}, { name: `${t}_mm1` })], {}, { name: `${t}_act` });
  let y = b.op('MatMul', [h1, 'W2'], {}, { name: `${t}_mm2` });
  if (embed) y = b.op('MatMul', [y, 'ET'], {}, { name: `${t}_lm_head` });
  b.output(y, DataType.FLOAT);
  return b.build().toProto().graph;
}

/**
 * x [1, 64] (or ids [1, 5] with `embed`), use_a bool -> If(use_a) with W1 [64, 128], W2 [128, 32] ([128, 64] with
 * `embed`), E [96, 64] and its transposed copy ET main-graph initializers.
 */
function ifModel(w: { w1: Float32Array; w2: Float32Array; e?: Float32Array }, embed = false, opset = 17): Model {
  const b = new ModelBuilder({ opset });
  if (embed) b.input('ids', DataType.INT64, [1, 5]);
  else b.input('x', DataType.FLOAT, [1, D]);
  b.input('use_a', DataType.BOOL, []);
  b.initializer('W1', w.w1, [D, H]);
  b.initializer('W2', w.w2, [H, embed ? D : OUT]);
  if (embed) {
    b.initializer('E', w.e!, [V, D]);
    b.initializer('ET', transpose(w.e!, V, D), [D, V]);
  }
  const y = b.op('If', ['use_a'], { then_branch: branch('then_branch', 'Relu', embed)!, else_branch: branch('else_branch', 'Sigmoid', embed)! }, { name: 'decoder_if' });
  b.output(y, DataType.FLOAT);
  return b.build();
}

const branches = (m: Model): Record<'then' | 'else', Graph> => {
  const ifNode = m.graph.nodes.find((n) => n.opType === 'If')!;
  const subs = m.graph.subgraphs(ifNode);
  return { then: subs.find((s) => s.attribute === 'then_branch')!.graph, else: subs.find((s) => s.attribute === 'else_branch')!.graph };
};

/** The float [K, N] weight a MatMulNBits node stands for, read back from its (outer-scope) initializers. */
function dequantizeNBits(g: Graph, node: NodeProto): Float32Array {
  const [K, N, bits, bs] = ['K', 'N', 'bits', 'block_size'].map((k) => attrInt(node, k)!) as [number, number, number, number];
  const B = tensorStorage(g.initializer(node.input[1]!)!) as Uint8Array;
  const scales = tensorStorage(g.initializer(node.input[2]!)!) as Float32Array;
  const zpT = node.input[3] ? g.initializer(node.input[3]) : undefined;
  const zp = zpT ? (tensorStorage(zpT) as Uint8Array) : undefined;
  const nb = Math.ceil(K / bs);
  const perCol = Math.ceil((nb * bits) / 8);
  const code = (bytes: Uint8Array, i: number): number => (bits === 8 ? bytes[i]! : (bytes[(i * bits) >> 3]! >> ((i * bits) & 7)) & ((1 << bits) - 1));
  const w = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const j = Math.floor(k / bs);
      const z = zp ? code(zp.subarray(n * perCol), j) : 1 << (bits - 1);
      w[k * N + n] = (code(B, n * nb * bs + k) - z) * scales[n * nb + j]!;
    }
  }
  return w;
}

const run = runFirstOutput;

const flag = (v: boolean): NdArray => ({ dtype: 'bool', shape: [], data: Uint8Array.of(v ? 1 : 0) });
const xFeed = (v: boolean): Record<string, NdArray> => ({ x: { dtype: 'float32', shape: [1, D], data: rand(D, 9) }, use_a: flag(v) });
const idsFeed = (v: boolean): Record<string, NdArray> => ({ ids: { dtype: 'int64', shape: [1, 5], data: BigInt64Array.from([3n, 95n, 0n, 41n, 3n]) }, use_a: flag(v) });
const ops = (g: Graph): string[] => g.nodes.map((n) => n.opType ?? '');
const count = (xs: string[], x: string): number => xs.filter((y) => y === x).length;

describe('weight-only quantization inside If branches (outer-scope weights)', () => {
  it('MatMulNBits in both branches, one packed copy per weight in the main graph, floats gone; ORT equals the dequantized float model on both branches', async () => {
    const fm = ifModel({ w1: W1, w2: W2 });
    const { model: q, report } = quantizeWeightOnly(fm, { bits: 4, blockSize: 32 });
    const br = branches(q);
    for (const g of [br.then, br.else]) {
      assert.equal(count(ops(g), 'MatMulNBits'), 2, ops(g).join(' '));
      assert.equal(count(ops(g), 'MatMul'), 0);
      assert.equal(g.initializers.size, 0, 'no tensor stored in a branch');
    }
    // One packed copy per weight: B, scales and zero points of W1 and W2, nothing else, in the main graph.
    assert.deepEqual([...q.graph.initializers.keys()].sort(), ['W1_Q4', 'W1_scales', 'W1_zp', 'W2_Q4', 'W2_scales', 'W2_zp']);
    const mm1 = br.then.nodes.find((n) => n.name === 'then_mm1')!;
    assert.equal(br.else.nodes.find((n) => n.name === 'else_mm1')!.input[1], mm1.input[1], 'both branches read the same codes');
    assert.deepEqual(dimsOf(q.graph.initializers.get('W1_Q4')!), [H, 2, 16]);
    assert.equal(q.opset('com.microsoft'), 1);
    // The report names body nodes by their path.
    assert.deepEqual(report.quantized.map((e) => e.node), ['decoder_if/then_branch/then_mm1', 'decoder_if/then_branch/then_mm2', 'decoder_if/else_branch/else_mm1', 'decoder_if/else_branch/else_mm2']);
    assert.deepEqual(report.skipped, []);
    assert.deepEqual(report.quantized[0], { node: 'decoder_if/then_branch/then_mm1', opType: 'MatMul', form: 'MatMulNBits 4-bit, block 32, asym, rtn', K: D, N: H });
    // The input model is untouched.
    assert.deepEqual(ops(branches(fm).then), ['MatMul', 'Relu', 'MatMul']);
    assert.ok(fm.graph.initializers.has('W1'));

    // Dequantized weights read back from the quantized model; the reader agrees with the quantizer.
    const w1 = dequantizeNBits(br.then, mm1);
    const w2 = dequantizeNBits(br.else, br.else.nodes.find((n) => n.name === 'else_mm2')!);
    assert.deepEqual(w1, dequantizeBlockwise(quantizeBlockwiseRtn(W1, D, H, { bits: 4, blockSize: 32, symmetric: false })));
    const ref = ifModel({ w1, w2 });
    for (const v of [true, false]) {
      const got = await run(q, xFeed(v));
      const want = await run(ref, xFeed(v));
      assert.ok(maxRelError(got, want) < 1e-4, `use_a=${v}: ${maxRelError(got, want)}`);
      const flt = await run(fm, xFeed(v));
      assert.ok(maxRelError(got, flt) > 1e-4, `use_a=${v}: the weights did change`);
      assert.ok(sqnrDb(flt, got) > 15, `use_a=${v}: SQNR vs float ${sqnrDb(flt, got)} dB`);
    }
  });

  it('defer gives byte-identical files (inline and external data); subgraphs: false leaves the branches float', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'lowbit-wosub-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const opts: WeightOnlyOptions = { bits: 4, blockSize: 32, algorithm: 'hqq' };
    const eager = quantizeWeightOnly(ifModel({ w1: W1, w2: W2 }), opts);
    const lazy = quantizeWeightOnly(ifModel({ w1: W1, w2: W2 }), { ...opts, defer: true });
    assert.deepEqual(lazy.report, eager.report);
    for (const [i, save] of [{}, { forceExternal: true, externalDataThreshold: 64 }].entries()) {
      // Same file names (the model names its data file), different folders.
      const a = await saveModel(eager.model.toProto(), join(mkdtempSync(join(dir, 'eager-')), 'model.onnx'), save);
      const b = await saveModel(lazy.model.toProto(), join(mkdtempSync(join(dir, 'lazy-')), 'model.onnx'), save);
      assert.deepEqual(readFileSync(b.path), readFileSync(a.path), 'model files identical');
      if (a.dataPath) assert.deepEqual(readFileSync(b.dataPath!), readFileSync(a.dataPath), 'data files identical');
      assert.equal(!!a.dataPath, i === 1);
    }
    const off = quantizeWeightOnly(ifModel({ w1: W1, w2: W2 }), { ...opts, subgraphs: false });
    assert.deepEqual(off.report, { quantized: [], skipped: [] });
    assert.deepEqual(ops(branches(off.model).then), ['MatMul', 'Relu', 'MatMul']);
  });

  it('a weight also read by a main-graph MatMul: one copy for all three readers; excludeNodes by path keeps the float weight', () => {
    const b = new ModelBuilder({ opset: 17 });
    b.input('x', DataType.FLOAT, [1, D]);
    b.input('use_a', DataType.BOOL, []);
    b.initializer('W1', W1, [D, H]);
    b.initializer('W2', W2, [H, OUT]);
    const y = b.op('If', ['use_a'], { then_branch: branch('then_branch', 'Relu', false)!, else_branch: branch('else_branch', 'Sigmoid', false)! }, { name: 'decoder_if' });
    b.output(y, DataType.FLOAT);
    b.output(b.op('MatMul', ['x', 'W1'], {}, { name: 'main_mm' }), DataType.FLOAT);
    const { model: q, report } = quantizeWeightOnly(b.build(), { bits: 8, blockSize: 16, symmetric: true });
    assert.equal(report.quantized[0]!.node, 'main_mm', 'main-graph nodes first, by their plain name');
    assert.equal(report.quantized.length, 5);
    assert.deepEqual([...q.graph.initializers.keys()].sort(), ['W1_Q8', 'W1_scales', 'W2_Q8', 'W2_scales']);
    const ex = quantizeWeightOnly(b.build(), { bits: 8, blockSize: 16, symmetric: true, excludeNodes: ['decoder_if/else_branch/else_mm1'] });
    assert.deepEqual(ex.report.skipped, [{ node: 'decoder_if/else_branch/else_mm1', opType: 'MatMul', reason: 'excluded by node name' }]);
    assert.ok(ex.model.graph.initializers.has('W1') && ex.model.graph.initializers.has('W1_Q8'), 'float W1 kept for the excluded node, next to its quantized copy');
    assert.equal(branches(ex.model).else.nodes.find((n) => n.name === 'else_mm1')!.opType, 'MatMul');
  });

  it('qdq form (opset 21): one blocked DequantizeLinear per weight in the main graph, read by both branches; equals the dequantized float model', async () => {
    const fm = ifModel({ w1: W1, w2: W2 }, false, 21);
    const { model: q } = quantizeWeightOnly(fm, { bits: 4, blockSize: 32, format: 'qdq' });
    const br = branches(q);
    for (const [g, act] of [[br.then, 'Relu'], [br.else, 'Sigmoid']] as const) assert.deepEqual(ops(g), ['MatMul', act, 'MatMul']);
    assert.equal(br.then.nodes[0]!.input[1], br.else.nodes[0]!.input[1]);
    assert.deepEqual([...q.graph.initializers.keys()].sort(), ['W1_q4', 'W1_scale', 'W1_zero_point', 'W2_q4', 'W2_scale', 'W2_zero_point']);
    // (A DequantizeLinear inside each branch, over these outer-scope codes, makes ORT 1.30 refuse the model at the
    // default level: it fuses it with the MatMul into MatMulNBits, then misses 'W2_q4'.)
    assert.deepEqual(ops(q.graph), ['DequantizeLinear', 'DequantizeLinear', 'If']);
    const deq = (w: Float32Array, K: number, N: number) => dequantizeBlockwise(quantizeBlockwiseRtn(w, K, N, { bits: 4, blockSize: 32, symmetric: false }));
    const ref = ifModel({ w1: deq(W1, D, H), w2: deq(W2, H, OUT) }, false, 21);
    for (const v of [true, false]) {
      const want = await run(ref, xFeed(v));
      assert.ok(maxRelError(await run(q, xFeed(v), 'basic'), want) < 1e-4, `use_a=${v}`);
      assert.ok(maxRelError(await run(q, xFeed(v)), want) < 1e-4, `use_a=${v} at 'all'`);
    }
  });

  it('embedding + tied LM head read by both branches: GatherBlockQuantized and MatMulNBits in each, the table stored once; equals the dequantized float model', async () => {
    const fm = ifModel({ w1: W1, w2: W2E, e: E }, true);
    const emb = quantizeEmbeddings(fm, { bits: 4, blockSize: 32, symmetric: false });
    assert.deepEqual(emb.report.skipped, []);
    assert.deepEqual(emb.report.quantized.map((e) => e.node).sort(), ['decoder_if/else_branch/else_embed', 'decoder_if/else_branch/else_lm_head', 'decoder_if/then_branch/then_embed', 'decoder_if/then_branch/then_lm_head']);
    const { model: q, report } = quantizeWeightOnly(emb.model, { bits: 4, blockSize: 32 });
    assert.equal(report.quantized.length, 4, JSON.stringify(report));
    const br = branches(q);
    for (const g of [br.then, br.else]) {
      assert.equal(count(ops(g), 'GatherBlockQuantized'), 1, ops(g).join(' '));
      assert.equal(count(ops(g), 'MatMulNBits'), 3, ops(g).join(' '));
      assert.equal(count(ops(g), 'MatMul') + count(ops(g), 'Gather'), 0);
      assert.equal(g.initializers.size, 0);
    }
    const inits = [...q.graph.initializers.values()];
    assert.ok(!q.graph.initializers.has('E') && !q.graph.initializers.has('ET') && !q.graph.initializers.has('W1') && !q.graph.initializers.has('W2'), 'float weights gone');
    assert.ok(!inits.some((t) => t.dataType === DataType.FLOAT && dimsOf(t).reduce((a, d) => a * d, 1) >= D * D), 'no float matrix left');
    // Packed codes: one [N, blocks, 16] tensor per weight, the table's shared by the Gathers and the LM heads.
    assert.equal(inits.filter((t) => t.dataType === DataType.UINT8 && dimsOf(t).length === 3 && dimsOf(t)[2] === 16).length, 3);
    const head = (g: Graph) => g.nodes.find((n) => n.name?.startsWith(g === br.then ? 'then_lm_head' : 'else_lm_head') && n.opType === 'MatMulNBits')!;
    assert.equal(head(br.then).input[1], head(br.else).input[1]);
    assert.equal(br.then.nodes.find((n) => n.opType === 'GatherBlockQuantized')!.input[0], head(br.then).input[1], 'the Gather reads the LM head codes');

    // Dequantized from the quantized model: E from the LM head (ET = E^T), W1 and W2 from their MatMulNBits.
    const et = dequantizeNBits(br.then, head(br.then));
    const w1 = dequantizeNBits(br.then, br.then.nodes.find((n) => n.name === 'then_mm1')!);
    const w2 = dequantizeNBits(br.else, br.else.nodes.find((n) => n.name === 'else_mm2')!);
    const ref = ifModel({ w1, w2, e: transpose(et, D, V) }, true);
    for (const v of [true, false]) {
      const got = await run(q, idsFeed(v));
      const want = await run(ref, idsFeed(v));
      assert.ok(maxRelError(got, want) < 1e-4, `use_a=${v}: ${maxRelError(got, want)}`);
      const flt = await run(fm, idsFeed(v));
      assert.ok(sqnrDb(flt, got) > 10, `use_a=${v}: SQNR vs float ${sqnrDb(flt, got)} dB`);
    }
  });
});
