// The weight-only pass (src/passes/weight-only.ts): node types, attributes and tensor shapes of the MatMulNBits
// and blocked DequantizeLinear forms, Gemm folding, shared weights, skips with reasons, option errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { attrInt } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf } from '../../src/onnx/tensor.js';
import { quantizeWeightOnly } from '../../src/passes/weight-only.js';
import { quantizeBlockwiseRtn } from '../../src/quant/blockwise.js';
import { mulberry32 } from '../../src/rng.js';

const rand = (n: number, seed: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

function model() {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['M', 96]);
  const v = b.input('v', DataType.FLOAT, [40, 8]);
  const w = b.initializer('w', rand(96 * 40, 1), [96, 40]);
  const w3 = b.initializer('w3', rand(2 * 40 * 8, 2), [2, 40, 8]);
  const g = b.initializer('g', rand(24 * 40, 3), [24, 40]);
  const c = b.initializer('c', rand(24, 4), [24]);
  const h1 = b.op('MatMul', [x, w], {}, { name: 'mm1' });
  const h2 = b.op('MatMul', [x, w], {}, { name: 'mm2' }); // shares w
  const s = b.op('Add', [h1, h2]);
  b.output(b.op('MatMul', [s, v], {}, { name: 'mm_input' }), DataType.FLOAT);
  b.output(b.op('MatMul', [s, w3], {}, { name: 'mm_3d' }), DataType.FLOAT);
  b.output(b.op('Gemm', [s, g, c], { transB: 1, alpha: 0.5 }, { name: 'gemm' }), DataType.FLOAT);
  return b.build();
}

describe('quantizeWeightOnly', () => {
  it('matmulnbits: MatMulNBits nodes with K, N, bits, block_size, packed shapes, shared weight quantized once, Gemm bias', () => {
    const { model: q, report } = quantizeWeightOnly(model(), { bits: 4, blockSize: 32 });
    const g = q.graph;
    const nbits = g.nodes.filter((n) => n.opType === 'MatMulNBits');
    assert.equal(nbits.length, 3);
    assert.ok(nbits.every((n) => n.domain === 'com.microsoft'));
    assert.equal(q.opset('com.microsoft'), 1);
    const mm1 = nbits.find((n) => n.name === 'mm1')!;
    assert.deepEqual([attrInt(mm1, 'K'), attrInt(mm1, 'N'), attrInt(mm1, 'bits'), attrInt(mm1, 'block_size'), attrInt(mm1, 'accuracy_level')], [96, 40, 4, 32, undefined]);
    assert.deepEqual(dimsOf(g.initializer(mm1.input[1]!)!), [40, 3, 16]);
    assert.deepEqual(dimsOf(g.initializer(mm1.input[2]!)!), [120]);
    assert.deepEqual(dimsOf(g.initializer(mm1.input[3]!)!), [40 * 2]); // 3 blocks of 4 bits: 2 bytes per column
    assert.equal(nbits.find((n) => n.name === 'mm2')!.input[1], mm1.input[1]);
    assert.equal(g.initializers.has('w'), false);
    const gemm = nbits.find((n) => n.name === 'gemm')!;
    assert.deepEqual([attrInt(gemm, 'K'), attrInt(gemm, 'N')], [40, 24]);
    assert.equal(gemm.input.length, 6);
    assert.deepEqual(dimsOf(g.initializer(gemm.input[5]!)!), [24]);
    assert.deepEqual(report.quantized.map((r) => r.node).sort(), ['gemm', 'mm1', 'mm2']);
    const why = Object.fromEntries(report.skipped.map((s) => [s.node, s.reason]));
    assert.match(why.mm_input!, /graph input/);
    assert.match(why.mm_3d!, /rank 3/);
  });

  it('symmetric: no zero_points; accuracy_level written when set', () => {
    const { model: q } = quantizeWeightOnly(model(), { bits: 8, blockSize: 16, symmetric: true, accuracyLevel: 4 });
    const n = q.graph.nodes.find((x) => x.name === 'mm1')!;
    assert.equal(n.input.length, 3);
    assert.equal(attrInt(n, 'accuracy_level'), 4);
    assert.deepEqual(dimsOf(q.graph.initializer(n.input[1]!)!), [40, 6, 16]);
  });

  it('qdq: blocked DequantizeLinear (axis 0, block_size) -> MatMul, opset 21, uint4 weights and zero points [kBlocks, N]', () => {
    const { model: q } = quantizeWeightOnly(model(), { bits: 4, blockSize: 32, format: 'qdq' });
    assert.equal(q.opset(''), 21);
    const dq = q.graph.nodes.filter((n) => n.opType === 'DequantizeLinear');
    assert.equal(dq.length, 2); // w (shared) and g
    const d = dq.find((n) => dimsOf(q.graph.initializer(n.input[0]!)!)[0] === 96)!;
    assert.deepEqual([attrInt(d, 'axis'), attrInt(d, 'block_size')], [0, 32]);
    assert.equal(q.graph.initializer(d.input[0]!)!.dataType, DataType.UINT4);
    assert.deepEqual(dimsOf(q.graph.initializer(d.input[1]!)!), [3, 40]);
    assert.deepEqual(dimsOf(q.graph.initializer(d.input[2]!)!), [3, 40]);
    assert.ok(q.graph.nodes.some((n) => n.opType === 'Add'));
  });

  it('the quantizeWeight hook replaces the algorithm, called once per weight', () => {
    const seen: string[] = [];
    quantizeWeightOnly(model(), {
      bits: 4,
      blockSize: 32,
      quantizeWeight: (name, w, K, N) => {
        seen.push(`${name}:${K}x${N}`);
        return quantizeBlockwiseRtn(w, K, N, { bits: 4, blockSize: 32, symmetric: true });
      },
    });
    assert.deepEqual(seen.sort(), ['g:40x24', 'w:96x40']);
  });

  it('excludeNodes / excludeOps leave nodes float with a reason', () => {
    const { report } = quantizeWeightOnly(model(), { bits: 4, blockSize: 32, excludeNodes: ['mm1'], excludeOps: ['Gemm'] });
    assert.deepEqual(report.quantized.map((r) => r.node), ['mm2']);
    assert.ok(report.skipped.some((s) => s.node === 'mm1' && /node name/.test(s.reason)));
    assert.ok(report.skipped.some((s) => s.node === 'gemm' && /op type/.test(s.reason)));
  });

  it('option errors are typed', () => {
    const bad = (o: object) => assert.throws(() => quantizeWeightOnly(model(), { bits: 4, blockSize: 32, ...o }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION');
    bad({ blockSize: 24 });
    bad({ bits: 3 });
    bad({ format: 'qdq', bits: 2 });
    bad({ format: 'qdq', accuracyLevel: 4 });
    bad({ format: 'unpack-on-load', bits: 2 });
    bad({ format: 'unpack-on-load', accuracyLevel: 4 });
    bad({ algorithm: 'hqq', symmetric: true });
    bad({ algorithm: 'gptq' });
    bad({ accuracyLevel: 7 });
  });
});
