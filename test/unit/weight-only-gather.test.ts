// quantizeEmbeddings: GatherBlockQuantized structure and packing, tied LM-head detection (and same-shape
// weights that are not tied), skip reasons, options.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { mulberry32 } from '../../src/rng.js';
import { quantizeEmbeddings } from '../../src/passes/weight-only-gather.js';
import { throwsLowbit } from '../helpers.js';

const V = 20;
const D = 32;

function randn(n: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}
function transpose(e: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = e[r * cols + c]!;
  return t;
}
const attrs = (n: NodeProto) => Object.fromEntries(n.attribute.map((a) => [a.name, Number(a.i)]));

function lm(e: Float32Array, w: Float32Array | undefined): Model {
  const b = new ModelBuilder({ opset: 17 });
  const ids = b.input('ids', DataType.INT64, ['T']);
  const E = b.initializer('E', e, [V, D]);
  const h = b.op('Gather', [E, ids], {}, { name: 'embed' });
  if (w) b.output(b.op('MatMul', [h, b.initializer('W', w, [D, V])], {}, { name: 'lm_head' }), DataType.FLOAT);
  else b.output(h, DataType.FLOAT);
  return b.build();
}

describe('quantizeEmbeddings (structure)', () => {
  const e = randn(V * D, 1);

  it('plain table: GatherBlockQuantized with packed uint8 codes [V, D/2], scales [V, D/bs], zero points [V, ceil(blocks/2)]', () => {
    const { model: q, report } = quantizeEmbeddings(lm(e, undefined), { bits: 4, blockSize: 16, symmetric: false });
    const gbq = q.graph.nodes.find((n) => n.opType === 'GatherBlockQuantized')!;
    assert.equal(gbq.domain, 'com.microsoft');
    assert.deepEqual(attrs(gbq), { gather_axis: 0, quantize_axis: 1, block_size: 16, bits: 4 });
    const [data, , scales, zp] = gbq.input.map((n) => q.graph.initializers.get(n));
    assert.deepEqual(dimsOf(data!), [V, D / 2]);
    assert.equal(data!.dataType, DataType.UINT8);
    assert.deepEqual(dimsOf(scales!), [V, 2]);
    assert.deepEqual(dimsOf(zp!), [V, 1]);
    assert.ok(!q.graph.initializers.has('E'));
    assert.equal(q.opset('com.microsoft'), 1);
    assert.deepEqual(report.quantized, [{ node: 'embed', opType: 'Gather', form: 'GatherBlockQuantized (4-bit, block 16, asymmetric)' }]);
    // Row 0, block 0 dequantizes within half a step; codes low nibble first.
    const codes = tensorStorage(data!) as Uint8Array;
    const s = (tensorStorage(scales!) as Float32Array)[0]!;
    const z = (tensorStorage(zp!) as Uint8Array)[0]! & 15;
    for (let j = 0; j < 16; j++) {
      const c = (codes[j >> 1]! >> ((j & 1) * 4)) & 15;
      assert.ok(Math.abs((c - z) * s - e[j]!) <= s / 2 + 1e-6, `element ${j}`);
    }
  });

  it('8-bit symmetric: codes one per byte, no zero points (ORT assumes 128)', () => {
    const { model: q } = quantizeEmbeddings(lm(e, undefined), { bits: 8, blockSize: 32, symmetric: true });
    const gbq = q.graph.nodes.find((n) => n.opType === 'GatherBlockQuantized')!;
    assert.equal(gbq.input.length, 3);
    assert.deepEqual(dimsOf(q.graph.initializers.get(gbq.input[0]!)!), [V, D]);
    const absmax = Math.max(...Array.from(e.subarray(0, 32), Math.abs));
    assert.ok(Math.abs(Math.abs((tensorStorage(q.graph.initializers.get(gbq.input[2]!)!) as Float32Array)[0]!) - absmax / 128) < 1e-7);
  });

  it('tied LM head (MatMul with an exact E^T copy): one code tensor [V, blocks, blob] read by both ops', () => {
    const { model: q, report } = quantizeEmbeddings(lm(e, transpose(e, V, D)), { bits: 4, blockSize: 16, symmetric: true });
    const gbq = q.graph.nodes.find((n) => n.opType === 'GatherBlockQuantized')!;
    const nb = q.graph.nodes.find((n) => n.opType === 'MatMulNBits')!;
    assert.equal(gbq.input[0], nb.input[1], 'the same code tensor');
    assert.deepEqual(dimsOf(q.graph.initializers.get(nb.input[1]!)!), [V, 2, 8]);
    assert.deepEqual(attrs(nb), { K: D, N: V, bits: 4, block_size: 16 });
    assert.deepEqual(attrs(gbq), { gather_axis: 0, quantize_axis: 2, block_size: 16, bits: 4 });
    // GatherBlockQuantized reads MatMulNBits' scales through a Reshape to [V, blocks, 1].
    const reshape = q.graph.producer(gbq.input[2]!)!;
    assert.equal(reshape.opType, 'Reshape');
    assert.equal(reshape.input[0], nb.input[2]);
    assert.ok(!q.graph.initializers.has('E') && !q.graph.initializers.has('W'), 'float table and copy removed');
    assert.equal(report.quantized.length, 2);
    assert.match(report.quantized[1]!.form, /tied to embedding 'E' via 'W' == 'E'\^T/);
  });

  it('same-shape LM head weight that is not E^T (one value differs) is not tied', () => {
    const w = transpose(e, V, D);
    w[5 * V + 7] += 1e-3;
    const { model: q, report } = quantizeEmbeddings(lm(e, w), { bits: 4, blockSize: 16, symmetric: true });
    assert.deepEqual(q.graph.nodes.map((n) => n.opType), ['GatherBlockQuantized', 'MatMul']);
    assert.ok(q.graph.initializers.has('W'));
    assert.equal(report.quantized.length, 1);
  });

  it('skips with reasons: excluded, non-constant data, axis 1, odd D at 4 bits, extra reader, graph output', () => {
    const b = new ModelBuilder({ opset: 17 });
    const ids = b.input('ids', DataType.INT64, ['T']);
    const table = b.input('table', DataType.FLOAT, [V, D]);
    const E1 = b.initializer('E1', randn(V * D, 2), [V, D]);
    const E2 = b.initializer('E2', randn(V * 33, 3), [V, 33]);
    const E3 = b.initializer('E3', randn(V * D, 4), [V, D]);
    const E4 = b.initializer('E4', randn(V * D, 5), [V, D]);
    const outs = [
      b.op('Gather', [E1, ids], {}, { name: 'excluded' }),
      b.op('Gather', [table, ids], {}, { name: 'input_table' }),
      b.op('Gather', [E1, ids], { axis: 1 }, { name: 'axis1' }),
      b.op('Gather', [E2, ids], {}, { name: 'odd' }),
      b.op('Gather', [E3, ids], {}, { name: 'shared' }),
      b.op('Relu', [E3]),
      b.op('Gather', [E4, ids], {}, { name: 'out_table' }),
    ];
    for (const o of outs) b.output(o, DataType.FLOAT);
    b.output(E4, DataType.FLOAT);
    const { report } = quantizeEmbeddings(b.build(), { bits: 4, blockSize: 16, symmetric: false, excludeNodes: ['excluded'] });
    const reasons = Object.fromEntries(report.skipped.map((s) => [s.node, s.reason]));
    assert.match(reasons.excluded!, /excluded/);
    assert.match(reasons.input_table!, /not an initializer/);
    assert.match(reasons.axis1!, /axis 1/);
    assert.match(reasons.odd!, /D = 33 is odd/);
    assert.match(reasons.shared!, /also read by .*Relu/);
    assert.match(reasons.out_table!, /graph output/);
    assert.equal(report.quantized.length, 0);
  });

  it('rejects bad options', () => {
    throwsLowbit(() => quantizeEmbeddings(lm(e, undefined), { bits: 2 as 4, blockSize: 32, symmetric: true }), 'BAD_OPTION', 'bits');
    throwsLowbit(() => quantizeEmbeddings(lm(e, undefined), { bits: 4, blockSize: 24, symmetric: true }), 'BAD_OPTION', '24');
    throwsLowbit(() => quantizeEmbeddings(lm(e, undefined), { bits: 4, blockSize: 8, symmetric: true }), 'BAD_OPTION', 'got 8');
  });
});
