// The training-graph engine without ORT: fan-out summation, errors (missing rule, unreachable or
// integer params, old opsets, rules that break the contract), params as inputs, Shape placement, the
// rule-table merge, and static dims inference.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTrainingGraph } from '../../src/grad/engine.js';
import { GRAD_RULES } from '../../src/grad/rules/index.js';
import { inferDims } from '../../src/grad/shapes.js';
import { mergeGradTables, type GradRule } from '../../src/grad/types.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import { valueInfoTensor } from '../../src/onnx/ir.js';
import { throwsLowbit } from '../helpers.js';

const f32 = (n: number) => Float32Array.from({ length: n }, (_, i) => i / n);

/** x [3] param -> op chain -> loss = ReduceSum(...); returns the builder parts. */
function scalarLoss(b: ModelBuilder, v: string): string {
  const loss = b.op('ReduceSum', [v], { keepdims: 0 });
  b.output(loss, DataType.FLOAT, []);
  return loss;
}

describe('buildTrainingGraph', () => {
  it('sums the contributions of a value read by several nodes', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(3), [3]);
    const loss = scalarLoss(b, b.op('Add', [b.op('Relu', [x]), b.op('Sigmoid', [x])]));
    const { model, gradients } = buildTrainingGraph(b.build(), { loss, params: [x] });
    const out = model.graph.producer(gradients.get(x)!)!;
    assert.equal(out.opType, 'Identity');
    const sum = model.graph.producer(out.input[0]!)!;
    assert.equal(sum.opType, 'Sum');
    assert.equal(sum.input.length, 2);
    const sources = sum.input.map((v) => model.graph.producer(v)!.opType).sort();
    assert.deepEqual(sources, ['Mul', 'Where'], 'the Sigmoid (Mul) and Relu (Where) contributions');
  });

  it('sums both contributions when one node reads a value twice', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(3), [3]);
    const loss = scalarLoss(b, b.op('Mul', [x, x]));
    const { model, gradients } = buildTrainingGraph(b.build(), { loss, params: [x] });
    const sum = model.graph.producer(model.graph.producer(gradients.get(x)!)!.input[0]!)!;
    assert.equal(sum.opType, 'Sum');
    assert.equal(sum.input.length, 2);
  });

  it('names the op and the node when a rule is missing', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(6), [2, 3]);
    const loss = scalarLoss(b, b.op('Hardmax', [x], {}, { name: 'argmax_head' }));
    const e = throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x] }), 'UNSUPPORTED_MODEL', "no gradient rule for op 'Hardmax'", "(node 'argmax_head')");
    assert.ok(e.hint?.includes('options.rules'));
  });

  it('names custom-domain ops with their domain, and takes extra rules', () => {
    const b = new ModelBuilder({ opset: 17, opsets: { 'com.example': 1 } });
    const x = b.initializer('x', f32(3), [3]);
    const loss = scalarLoss(b, b.op('Twice', [x], {}, { domain: 'com.example' }));
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x] }), 'UNSUPPORTED_MODEL', "'com.example:Twice'");
    const twice: GradRule = { saves: {}, grad: (_n, [dy], c) => [c.emit('Mul', [dy!, c.scalar(2, dy!)])] };
    const { gradients } = buildTrainingGraph(b.build(), { loss, params: [x], rules: { ...GRAD_RULES, 'com.example:Twice': twice } });
    assert.ok(gradients.has(x));
  });

  it('refuses a param the loss does not depend on', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(3), [3]);
    const unused = b.initializer('unused', f32(3), [3]);
    b.output(b.op('Relu', [unused]), DataType.FLOAT);
    const loss = scalarLoss(b, x);
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x, unused] }), 'BAD_OPTION', "does not depend on param 'unused'");
  });

  it('carries no gradient through integer values (shapes, indices)', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(6), [6]);
    const w = b.initializer('w', f32(6), [2, 3]);
    // The loss reads w only through its shape (int64).
    const loss = scalarLoss(b, b.op('Reshape', [x, b.op('Shape', [w])]));
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x, w] }), 'BAD_OPTION', "does not depend on param 'w'");
    const { model, gradients } = buildTrainingGraph(b.build(), { loss, params: [x] });
    assert.deepEqual([...gradients.keys()], [x]);
    const backward = model.graph.nodes.slice(model.graph.nodes.findIndex((n) => n.opType === 'ReduceSum') + 1);
    assert.ok(!backward.some((n) => n.input.includes(w)), 'no backward node reads w');
  });

  it('gives integer inputs (Gather indices) no gradient and refuses integer params', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(8), [4, 2]);
    const idx = b.initializer('idx', BigInt64Array.of(1n, 1n, 3n), [3]);
    const loss = scalarLoss(b, b.op('Gather', [x, idx]));
    const { gradients } = buildTrainingGraph(b.build(), { loss, params: [x] });
    assert.deepEqual([...gradients.keys()], [x]);
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [idx] }), 'BAD_OPTION', "param 'idx' is not a float tensor");
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: ['nope'] }), 'BAD_OPTION', "param 'nope' is not an initializer");
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss: 'nope', params: [x] }), 'BAD_OPTION', "loss 'nope'");
  });

  it('turns params into graph inputs and appends the loss and one gradient output per param', () => {
    const b = new ModelBuilder({ opset: 17 });
    const xin = b.input('x', DataType.FLOAT, ['N', 4]);
    const w = b.initializer('w', f32(12), [4, 3]);
    const bias = b.initializer('bias', f32(3), [3]);
    const y = b.op('Add', [b.op('MatMul', [xin, w]), bias]);
    b.output(y, DataType.FLOAT);
    const loss = b.op('ReduceMean', [y], { keepdims: 0 });
    const { model, gradients } = buildTrainingGraph(b.build(), { loss, params: [w, bias] });
    assert.deepEqual(model.graph.inputs.map((v) => v.name), ['x', 'w', 'bias']);
    assert.ok(!model.graph.initializers.has(w) && !model.graph.initializers.has(bias));
    assert.deepEqual(model.graph.outputs.map((v) => v.name), [y, loss, gradients.get(w), gradients.get(bias)]);
    assert.deepEqual(valueInfoTensor(model.graph.outputs[2]).dims, [4, 3]);
    assert.deepEqual(valueInfoTensor(model.graph.inputs[1]).dims, [4, 3]);
    // The bias gradient is summed over the batch axis with static axes: no run-time shape logic.
    assert.ok(!model.graph.nodes.some((n) => n.opType === 'NonZero'));
  });

  it('places Shape nodes right after the producer, so reading a shape keeps no activation alive', () => {
    const b = new ModelBuilder({ opset: 17 });
    const xin = b.input('x', DataType.FLOAT, ['N', 4]);
    const w = b.initializer('w', f32(12), [4, 3]);
    const y = b.op('MatMul', [xin, w]);
    const flat = b.op('Reshape', [y, b.initializer('shape', BigInt64Array.of(-1n), [1])]);
    const loss = scalarLoss(b, b.op('Tanh', [flat]));
    const { model, saved } = buildTrainingGraph(b.build(), { loss, params: [w] });
    const nodes = model.graph.nodes;
    const at = nodes.findIndex((n) => n.output[0] === y);
    assert.equal(nodes[at + 1]!.opType, 'Shape');
    assert.deepEqual(nodes[at + 1]!.input, [y]);
    assert.ok(!saved.includes(y), 'y is read for its shape only');
    assert.ok(saved.includes(xin), 'MatMul keeps its input for dW');
  });

  it('refuses opsets before 13', () => {
    const b = new ModelBuilder({ opset: 12 });
    const x = b.initializer('x', f32(3), [3]);
    const loss = scalarLoss(b, x);
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x] }), 'UNSUPPORTED_OPSET', 'opset 13');
  });

  it('refuses rules that break the contract', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(3), [3]);
    const loss = scalarLoss(b, b.op('Relu', [x], {}, { name: 'act' }));
    const sneaky: GradRule = { saves: {}, grad: (n, [dy], c) => [c.emit('Mul', [dy!, n.input[0]!])] };
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x], rules: { ...GRAD_RULES, Relu: sneaky } }), 'INTERNAL', "reads 'x' of node 'act' without declaring it");
    const short: GradRule = { saves: {}, grad: () => [] };
    throwsLowbit(() => buildTrainingGraph(b.build(), { loss, params: [x], rules: { ...GRAD_RULES, Relu: short } }), 'INTERNAL', 'returned 0 gradients for 1 inputs');
  });

  it('seeds a non-scalar loss with ones (the gradient of its sum)', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.initializer('x', f32(6), [2, 3]);
    const y = b.op('Tanh', [x]);
    b.output(y, DataType.FLOAT, [2, 3]);
    const { model } = buildTrainingGraph(b.build(), { loss: y, params: [x] });
    assert.ok(model.graph.nodes.some((n) => n.opType === 'Expand'));
  });
});

describe('gradient rule tables', () => {
  it('merging throws on a repeated op', () => {
    throwsLowbit(() => mergeGradTables({ Relu: GRAD_RULES.Relu! }, { Relu: GRAD_RULES.Relu! }), 'INTERNAL', "'Relu' is defined twice");
  });

  it('covers the ops the digit CNN and fake quantization need', () => {
    for (const op of ['Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Flatten', 'Gemm', 'LogSoftmax', 'Mul', 'ReduceSum', 'ReduceMean', 'Neg', 'QuantizeLinear', 'DequantizeLinear']) {
      assert.ok(GRAD_RULES[op], op);
    }
    assert.deepEqual(GRAD_RULES.QuantizeLinear!.carries, [0]);
  });
});

describe('inferDims', () => {
  it('propagates fixed and symbolic dims through the supported ops', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['N', 3, 8, 8]);
    const w = b.initializer('w', f32(6 * 3 * 9), [6, 3, 3, 3]);
    const conv = b.op('Conv', [x, w], { strides: [2, 2], pads: [1, 1, 1, 1] });
    const pool = b.op('MaxPool', [conv], { kernel_shape: [2, 2], strides: [2, 2] });
    const flat = b.op('Flatten', [pool]);
    const reshaped = b.op('Reshape', [pool, b.initializer('s', BigInt64Array.of(0n, -1n, 4n), [3])]);
    const mm = b.op('MatMul', [b.initializer('a', f32(2 * 5 * 4), [2, 1, 5, 4]), b.initializer('c', f32(3 * 4 * 7), [3, 4, 7])]);
    const cat = b.op('Concat', [conv, conv], { axis: 1 });
    const red = b.op('ReduceMean', [conv], { axes: [2, 3], keepdims: 0 });
    const model = b.build();
    const dims = inferDims(model.graph, 17);
    assert.deepEqual(dims.get(conv), ['N', 6, 4, 4]);
    assert.deepEqual(dims.get(pool), ['N', 6, 2, 2]);
    assert.deepEqual(dims.get(flat), [undefined, 24]);
    assert.deepEqual(dims.get(reshaped), ['N', undefined, 4]);
    assert.deepEqual(dims.get(mm), [2, 3, 5, 7]);
    assert.deepEqual(dims.get(cat), ['N', 12, 4, 4]);
    assert.deepEqual(dims.get(red), ['N', 6]);
  });
});
