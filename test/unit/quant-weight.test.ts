// quantizeWeight / quantizeBias / removeIfUnused on builder-made graphs: values, shapes, names, errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Graph } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage, unpackInt4 } from '../../src/onnx/tensor.js';
import { float32ArrayToFloat16 } from '../../src/quant/float16.js';
import { addQuantizedWeight, quantizeBias, quantizeWeight, readFloatConstant, removeIfUnused } from '../../src/passes/quant-weight.js';

/** A graph with one MatMul reading weight `w` of `dims`. */
function graphWith(data: Float32Array, dims: number[], dataType: number = DataType.FLOAT): Graph {
  const b = new ModelBuilder();
  const x = b.input('x', DataType.FLOAT, [1, dims[0]!]);
  const w = b.initializer('w', dataType === DataType.FLOAT16 ? float32ArrayToFloat16(data) : data, dims, dataType);
  b.output(b.op('MatMul', [x, w]), DataType.FLOAT);
  return b.build().graph;
}

const values = (g: Graph, name: string) => Array.from(tensorStorage(g.initializers.get(name)!) as ArrayLike<number>);
const dims = (g: Graph, name: string) => dimsOf(g.initializers.get(name)!);

describe('quantizeWeight', () => {
  it('per tensor, int8 symmetric: scale absmax/127, zero point 0, round half to even', () => {
    const g = graphWith(Float32Array.of(-1, 0.5, 0.25, 1), [2, 2]);
    const q = quantizeWeight(g, 'w', { qtype: 'int8', perChannel: false, axis: 1, symmetric: true });
    assert.equal(q.axis, undefined);
    assert.equal(q.scaleValues[0], Math.fround(2 / 254));
    assert.deepEqual([...q.zeroPointValues], [0]);
    // 0.5 * 127 = 63.5 -> 64 (ties to even), 0.25 * 127 = 31.75 -> 32
    assert.deepEqual(values(g, q.quantized), [-127, 64, 32, 127]);
    assert.equal(g.initializers.get(q.quantized)!.dataType, DataType.INT8);
    assert.deepEqual(dims(g, q.quantized), [2, 2]);
    assert.deepEqual(dims(g, q.scale), []);
    assert.deepEqual(dims(g, q.zeroPoint), []);
    assert.equal(g.initializers.get(q.zeroPoint)!.dataType, DataType.INT8);
    assert.equal(g.initializers.get(q.scale)!.dataType, DataType.FLOAT);
    assert.ok(g.initializers.has('w'), 'the float weight stays for the caller to remove');
    assert.deepEqual(new Set([q.quantized, q.scale, q.zeroPoint]).size, 3);
  });

  it('per channel along axis 1: one scale per column; an all-equal column gets a usable scale', () => {
    const g = graphWith(Float32Array.of(0.5, -2, 0.5, 1, 0.5, 0), [3, 2]);
    const q = quantizeWeight(g, 'w', { qtype: 'int8', perChannel: true, axis: 1, symmetric: true });
    assert.equal(q.axis, 1);
    assert.deepEqual([...q.scaleValues], [Math.fround(1 / 254), Math.fround(4 / 254)]);
    assert.deepEqual(dims(g, q.scale), [2]);
    assert.deepEqual(dims(g, q.zeroPoint), [2]);
    assert.deepEqual(values(g, q.quantized), [127, -127, 127, 64, 127, 0]);
  });

  it('an all-zero channel gets scale 1, never 0 or NaN; negative axis counts from the end', () => {
    const g = graphWith(Float32Array.of(0, 3, 0, -3), [2, 2]);
    const q = quantizeWeight(g, 'w', { qtype: 'uint8', perChannel: true, axis: -1, symmetric: false });
    assert.equal(q.axis, 1);
    assert.equal(q.scaleValues[0], 1);
    assert.equal(q.scaleValues[1], Math.fround(6 / 255));
    assert.deepEqual([...q.zeroPointValues], [0, 128]);
    assert.deepEqual(values(g, q.quantized), [0, 255, 0, 0]);
  });

  it('uint8 asymmetric per tensor maps [min, max] onto [0, 255]', () => {
    const g = graphWith(Float32Array.of(-1, 0, 1, 2.5), [2, 2]);
    const q = quantizeWeight(g, 'w', { qtype: 'uint8', perChannel: false, axis: 0, symmetric: false });
    assert.equal(q.scaleValues[0], Math.fround(3.5 / 255));
    assert.equal(q.zeroPointValues[0], 73); // round(255/3.5) = 72.857 -> 73
    const v = values(g, q.quantized);
    assert.equal(v[0], 0);
    assert.equal(v[1], 73);
    assert.equal(v[3], 255);
  });

  it('reduceRange uses 7-bit weights', () => {
    const g = graphWith(Float32Array.of(-1, 1, 0.5, 0), [2, 2]);
    const q = quantizeWeight(g, 'w', { qtype: 'int8', perChannel: false, axis: 0, symmetric: true, reduceRange: true });
    assert.deepEqual(values(g, q.quantized), [-64, 64, 32, 0]);
  });

  it('reads FLOAT16 weights', () => {
    const g = graphWith(Float32Array.of(-1, 0.5, 0.25, 1), [2, 2], DataType.FLOAT16);
    const q = quantizeWeight(g, 'w', { qtype: 'int8', perChannel: false, axis: 0, symmetric: true });
    assert.deepEqual(values(g, q.quantized), [-127, 64, 32, 127]);
  });

  it('reads a weight held by a Constant node', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1, 2]);
    const c = b.op('Constant', [], { value: makeTensor('c', DataType.FLOAT, [2, 2], Float32Array.of(1, 2, 3, 4)) });
    b.output(b.op('MatMul', [x, c]), DataType.FLOAT);
    const g = b.build().graph;
    const q = quantizeWeight(g, c, { qtype: 'int8', perChannel: false, axis: 0, symmetric: true });
    assert.deepEqual(values(g, q.quantized), [32, 64, 95, 127]);
    assert.deepEqual(readFloatConstant(g, c).dims, [2, 2]);
  });

  it('packs int4 weights two per byte with a packed zero point', () => {
    const g = graphWith(Float32Array.of(-1, 0.5, 0.25, 1, 0, -0.5), [3, 2]);
    const q = quantizeWeight(g, 'w', { qtype: 'int4', perChannel: false, axis: 0, symmetric: true });
    const t = g.initializers.get(q.quantized)!;
    assert.equal(t.dataType, DataType.INT4);
    assert.equal(t.rawData!.length, 3);
    // int4 keeps [-8, 7] when symmetric: scale fround(2/15) is a hair above 2/15, so ±1 -> ±7.4999996 -> ±7
    assert.deepEqual([...unpackInt4(t.rawData!, 6, true)], [-7, 4, 2, 7, 0, -4]);
  });

  it('throws NON_FINITE naming the tensor for NaN / Infinity weights', () => {
    const g = graphWith(Float32Array.of(1, NaN, 0, 1), [2, 2]);
    assert.throws(
      () => quantizeWeight(g, 'w', { qtype: 'int8', perChannel: true, axis: 1, symmetric: true }),
      (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE' && /'w'/.test(e.message) && /element 1/.test(e.message),
    );
    const g2 = graphWith(Float32Array.of(1, 2, -Infinity, 1), [2, 2]);
    assert.throws(() => quantizeWeight(g2, 'w', { qtype: 'uint8', perChannel: false, axis: 0, symmetric: false }), { code: 'NON_FINITE' });
  });

  it('rejects non-constants, non-float tensors and bad axes with LowbitErrors', () => {
    const g = graphWith(Float32Array.of(1, 2, 3, 4), [2, 2]);
    assert.throws(() => quantizeWeight(g, 'x', { qtype: 'int8', perChannel: false, axis: 0, symmetric: true }), { code: 'BAD_OPTION' });
    assert.throws(() => quantizeWeight(g, 'w', { qtype: 'int8', perChannel: true, axis: 2, symmetric: true }), { code: 'BAD_OPTION' });
    g.setInitializer(makeTensor('i', DataType.INT32, [2], Int32Array.of(1, 2)));
    assert.throws(() => quantizeWeight(g, 'i', { qtype: 'int8', perChannel: false, axis: 0, symmetric: true }), { code: 'UNSUPPORTED_MODEL' });
  });

  it('addQuantizedWeight quantizes given data under fresh names', () => {
    const g = graphWith(Float32Array.of(1, 2, 3, 4), [2, 2]);
    const a = addQuantizedWeight(g, 'w', Float32Array.of(2, 4), [2], { qtype: 'int8', perChannel: false, axis: 0, symmetric: true });
    const b = addQuantizedWeight(g, 'w', Float32Array.of(2, 4), [2], { qtype: 'int8', perChannel: false, axis: 0, symmetric: true });
    assert.notEqual(a.quantized, b.quantized);
    assert.deepEqual(values(g, a.quantized), [64, 127]);
  });
});

describe('quantizeBias', () => {
  it('per channel: int32 values at inputScale * weightScale[c], ties to even', () => {
    const g = graphWith(Float32Array.of(1, 2, 3, 4), [2, 2]);
    g.setInitializer(makeTensor('b', DataType.FLOAT, [3], Float32Array.of(0.25, -1, 3)));
    const r = quantizeBias(g, 'b', 0.5, Float32Array.of(0.5, 0.25, 2));
    // scales 0.25, 0.125, 1: 0.25/0.25 = 1, -1/0.125 = -8, 3/1 = 3
    assert.deepEqual(values(g, r.quantized), [1, -8, 3]);
    assert.deepEqual([...(tensorStorage(g.initializers.get(r.scale)!) as Float32Array)], [0.25, 0.125, 1]);
    assert.equal(g.initializers.get(r.quantized)!.dataType, DataType.INT32);
    assert.deepEqual(dims(g, r.scale), [3]);
  });

  it('per tensor rounds half to even and clamps to int32', () => {
    const g = graphWith(Float32Array.of(1, 2, 3, 4), [2, 2]);
    g.setInitializer(makeTensor('b', DataType.FLOAT, [4], Float32Array.of(2.5, 3.5, -2.5, 1e30)));
    const r = quantizeBias(g, 'b', 1, Float32Array.of(1));
    assert.deepEqual(values(g, r.quantized), [2, 4, -2, 2 ** 31 - 1]);
    assert.deepEqual(dims(g, r.scale), []);
  });

  it('a zero scale product is replaced so the bias stays representable', () => {
    const g = graphWith(Float32Array.of(1, 2, 3, 4), [2, 2]);
    g.setInitializer(makeTensor('b', DataType.FLOAT, [2], Float32Array.of(3, 0)));
    const r = quantizeBias(g, 'b', 0, Float32Array.of(0.5, 0.5));
    const s = tensorStorage(g.initializers.get(r.scale)!) as Float32Array;
    assert.ok(s[0]! > 0 && Number.isFinite(s[0]!));
    assert.equal(s[1], 1);
    const q = values(g, r.quantized);
    assert.ok(Math.abs(q[0]! * s[0]! - 3) < 1e-6, `dequantized ${q[0]! * s[0]!}`);
    assert.equal(q[1], 0);
  });

  it('rejects mismatched scales and bad input scales', () => {
    const g = graphWith(Float32Array.of(1, 2, 3, 4), [2, 2]);
    g.setInitializer(makeTensor('b', DataType.FLOAT, [2], Float32Array.of(1, 2)));
    assert.throws(() => quantizeBias(g, 'b', 1, Float32Array.of(1, 2, 3)), { code: 'DATA_MISMATCH' });
    assert.throws(() => quantizeBias(g, 'b', NaN, Float32Array.of(1)), { code: 'BAD_OPTION' });
  });
});

describe('removeIfUnused', () => {
  it('removes an unread initializer or Constant node, keeps what is still read', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1, 2]);
    const w = b.initializer('w', Float32Array.of(1, 2, 3, 4), [2, 2]);
    const c = b.op('Constant', [], { value: makeTensor('c', DataType.FLOAT, [2], Float32Array.of(1, 2)) });
    b.output(b.op('MatMul', [x, w]), DataType.FLOAT);
    const g = b.build().graph;
    assert.equal(removeIfUnused(g, 'w'), false);
    assert.equal(removeIfUnused(g, c), true);
    assert.ok(!g.nodes.some((n) => n.opType === 'Constant'));
    g.removeNodes(g.nodes.filter((n) => n.opType === 'MatMul'));
    assert.equal(removeIfUnused(g, 'w'), true);
    assert.ok(!g.initializers.has('w'));
  });
});
