// quantizeDynamic on builder-made models: the graph structure it emits (forms, names, initializers, opsets)
// and the report. Numbers are checked by dequantizing the emitted initializers; ORT runs are in test/ort.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { floatAttr } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { Model, type Graph } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { float32ArrayToFloat16 } from '../../src/quant/float16.js';
import { quantizeDynamic, type QuantizeDynamicOptions } from '../../src/passes/quantize-dynamic.js';

const MS = 'com.microsoft';
const INT8_PC: QuantizeDynamicOptions = { weightType: 'int8', perChannel: true };

function seq(n: number, scale = 0.1, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + offset) * scale);
}
const ops = (g: Graph) => g.nodes.map((n) => `${n.domain ? n.domain + ':' : ''}${n.opType}`);
const floats = (g: Graph, name: string) => tensorStorage(g.initializer(name)!) as Float32Array;
const ints = (g: Graph, name: string) => Array.from(tensorStorage(g.initializer(name)!) as ArrayLike<number>);

/** x [M, K] -> MatMul(W [K, N]) -> Add(b [N]) -> Relu -> y */
function mlp(k = 4, n = 3): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', DataType.FLOAT, ['M', k]);
  const w = b.initializer('W', seq(k * n), [k, n]);
  const bias = b.initializer('bias', seq(n, 1, 5), [n]);
  const mm = b.op('MatMul', [x, w], {}, { name: 'fc' });
  const add = b.op('Add', [mm, bias], {}, { name: 'fc_bias' });
  b.output(b.op('Relu', [add], {}, { name: 'relu' }), DataType.FLOAT);
  return b.build();
}

/** Dequantized weight of a DynamicQuantizeMatMul node (per-column scales broadcast over [K, N]). */
function dequantMatMulWeight(g: Graph, node: NodeProto): { dims: number[]; values: number[] } {
  const [, q, s, z] = node.input as [string, string, string, string];
  const dims = dimsOf(g.initializer(q)!);
  const qv = ints(g, q), sv = floats(g, s), zv = ints(g, z);
  const n = dims[1]!;
  return { dims, values: qv.map((v, i) => (v - zv[sv.length > 1 ? i % n : 0]!) * sv[sv.length > 1 ? i % n : 0]!) };
}

describe('quantizeDynamic: MatMul', () => {
  it('MatMul + Add(bias) -> one DynamicQuantizeMatMul with the bias, writing the Add output', () => {
    const src = mlp();
    const { model, report } = quantizeDynamic(src, INT8_PC);
    const g = model.graph;
    assert.deepEqual(ops(g), [`${MS}:DynamicQuantizeMatMul`, 'Relu']);
    const dq = g.nodes[0]!;
    assert.deepEqual(dq.input.slice(0, 1).concat(dq.input.slice(4)), ['x', 'bias']);
    assert.equal(dq.output[0], 'fc_bias_out');
    assert.equal(g.initializer(dq.input[1]!)!.dataType, DataType.INT8);
    assert.deepEqual(dimsOf(g.initializer(dq.input[2]!)!), [3], 'per-column scale');
    assert.deepEqual(ints(g, dq.input[3]!), [0, 0, 0], 'int8 weights are symmetric');
    assert.ok(!g.initializers.has('W'), 'the float weight is removed');
    assert.ok(g.initializers.has('bias'));
    assert.equal(model.opset(MS), 1);
    assert.equal(model.opset(''), 13);
    assert.deepEqual(report.quantized, [{ node: 'fc', opType: 'MatMul', form: 'DynamicQuantizeMatMul (+bias)' }]);
    assert.deepEqual(report.skipped, []);
    // the dequantized weight is within half a step of the float one
    const w = seq(12);
    const dq2 = dequantMatMulWeight(g, dq);
    const step = Math.max(...floats(g, dq.input[2]!));
    dq2.values.forEach((v, i) => assert.ok(Math.abs(v - w[i]!) <= step / 2 + 1e-7, `element ${i}: ${v} vs ${w[i]}`));
    // the input model is untouched
    assert.deepEqual(ops(src.graph), ['MatMul', 'Add', 'Relu']);
    assert.ok(src.graph.initializers.has('W'));
    assert.equal(src.opset(MS), undefined);
  });

  it('per tensor: scalar scale and zero point; uint8 weights are asymmetric', () => {
    const { model } = quantizeDynamic(mlp(), { weightType: 'uint8', perChannel: false });
    const g = model.graph;
    const dq = g.nodes[0]!;
    assert.equal(g.initializer(dq.input[1]!)!.dataType, DataType.UINT8);
    assert.deepEqual(dimsOf(g.initializer(dq.input[2]!)!), []);
    assert.deepEqual(dimsOf(g.initializer(dq.input[3]!)!), []);
    assert.notEqual(ints(g, dq.input[3]!)[0], 128, 'asymmetric zero point follows the data');
  });

  it("matmul: 'MatMulInteger' emits the standard ONNX chain", () => {
    const { model, report } = quantizeDynamic(mlp(), { ...INT8_PC, matmul: 'MatMulInteger' });
    assert.deepEqual(ops(model.graph), ['DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul', 'Add', 'Relu']);
    assert.equal(model.opset(MS), undefined, 'no contrib op, no com.microsoft import');
    assert.equal(report.quantized[0]!.form, 'MatMulInteger (+bias)');
    assert.equal(model.graph.nodes[5]!.output[0], 'fc_bias_out');
  });

  it('a MatMul whose B is not a constant stays float with a reason', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 2]);
    const y = b.input('y', DataType.FLOAT, [2, 2]);
    b.output(b.op('MatMul', [x, y], {}, { name: 'qk' }), DataType.FLOAT);
    const { model, report } = quantizeDynamic(b.build(), INT8_PC);
    assert.deepEqual(ops(model.graph), ['MatMul']);
    assert.equal(report.skipped.length, 1);
    assert.equal(report.skipped[0]!.node, 'qk');
    assert.match(report.skipped[0]!.reason, /not a constant/);
    assert.equal(model.opset(MS), undefined);
  });

  it('a weight shared by two MatMuls is quantized once', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1, 4]);
    const w = b.initializer('W', seq(16), [4, 4]);
    const h = b.op('MatMul', [x, w], {}, { name: 'a' });
    b.output(b.op('MatMul', [h, w], {}, { name: 'b' }), DataType.FLOAT);
    const { model, report } = quantizeDynamic(b.build(), INT8_PC);
    const [n1, n2] = model.graph.nodes as [NodeProto, NodeProto];
    assert.deepEqual(n1.input.slice(1), n2.input.slice(1));
    assert.equal(model.graph.initializers.size, 3);
    assert.equal(report.quantized.length, 2);
  });

  it('MatMul(A, Transpose(W)) (old PyTorch Linear) folds the Transpose into the weight', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1, 4]);
    const w = b.initializer('W', seq(12), [3, 4]);
    const t = b.op('Transpose', [w], { perm: [1, 0] }, { name: 't' });
    b.output(b.op('MatMul', [x, t], {}, { name: 'mm' }), DataType.FLOAT);
    const { model, report } = quantizeDynamic(b.build(), INT8_PC);
    const g = model.graph;
    assert.deepEqual(ops(g), [`${MS}:DynamicQuantizeMatMul`]);
    assert.equal(report.quantized[0]!.form, 'DynamicQuantizeMatMul (Transpose folded)');
    const { dims, values } = dequantMatMulWeight(g, g.nodes[0]!);
    assert.deepEqual(dims, [4, 3]);
    const wf = seq(12);
    for (let k = 0; k < 4; k++) for (let n = 0; n < 3; n++) assert.ok(Math.abs(values[k * 3 + n]! - wf[n * 4 + k]!) < 0.001);
    assert.ok(!g.initializers.has('W'));
  });

  it('IR 3 models: new initializers are listed as graph inputs, replaced ones leave the inputs', () => {
    const proto = mlp().toProto();
    proto.irVersion = 3n;
    proto.graph!.input.push(...proto.graph!.initializer.map((t) => ({ name: t.name, metadataProps: [] })));
    const { model } = quantizeDynamic(new Model(proto), INT8_PC);
    const inputs = model.graph.inputs.map((v) => v.name);
    assert.ok(!inputs.includes('W'));
    for (const name of model.graph.initializers.keys()) assert.ok(inputs.includes(name), `${name} is an input`);
    assert.equal(inputs[0], 'x');
  });

  it('excludes nodes by name and by op type', () => {
    const byName = quantizeDynamic(mlp(), { ...INT8_PC, excludeNodes: ['fc'] });
    assert.deepEqual(ops(byName.model.graph), ['MatMul', 'Add', 'Relu']);
    assert.deepEqual(byName.report.skipped, [{ node: 'fc', opType: 'MatMul', reason: 'excluded by node name' }]);
    assert.ok(byName.model.graph.initializers.has('W'));
    const byOp = quantizeDynamic(mlp(), { ...INT8_PC, excludeOps: ['MatMul'] });
    assert.deepEqual(byOp.report.skipped, [{ node: 'fc', opType: 'MatMul', reason: 'excluded by op type' }]);
    assert.equal(byOp.model.opset(MS), undefined);
  });

  it('leaves float16 models float, saying why', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT16, [1, 2]);
    const w = b.initializer('W', float32ArrayToFloat16(seq(4)), [2, 2], DataType.FLOAT16);
    b.output(b.op('MatMul', [x, w], {}, { name: 'h' }), DataType.FLOAT16);
    const { model, report } = quantizeDynamic(b.build(), INT8_PC);
    assert.deepEqual(ops(model.graph), ['MatMul']);
    assert.match(report.skipped[0]!.reason, /FLOAT16.*float32 only/);
  });

  it('quantizes MatMuls inside If branches, keeping the outer weight until nothing reads it', () => {
    const sub = (name: string) => {
      const s = new ModelBuilder({ name });
      s.output(s.op('MatMul', ['x', 'W'], {}, { name: `${name}_mm` }), DataType.FLOAT);
      return s.build().toProto().graph!;
    };
    const b = new ModelBuilder();
    b.input('x', DataType.FLOAT, [1, 4]);
    const cond = b.input('cond', DataType.BOOL, []);
    b.initializer('W', seq(8), [4, 2]);
    b.output(b.op('If', [cond], { then_branch: sub('then'), else_branch: sub('else') }, { name: 'if' }), DataType.FLOAT);
    const { model, report } = quantizeDynamic(b.build(), INT8_PC);
    assert.deepEqual(report.quantized.map((q) => q.node), ['then_mm', 'else_mm']);
    const subs = model.graph.subgraphs(model.graph.nodes[0]!);
    for (const { graph } of subs) assert.deepEqual(ops(graph), [`${MS}:DynamicQuantizeMatMul`]);
    assert.equal(subs[0]!.graph.nodes[0]!.input[1], subs[1]!.graph.nodes[0]!.input[1], 'one quantized copy, in the outer graph');
    assert.ok(!model.graph.initializers.has('W'));
    assert.equal(model.graph.initializers.size, 3);
  });

  it('rejects bad options with BAD_OPTION', () => {
    assert.throws(() => quantizeDynamic(mlp(), { weightType: 'int4' as 'int8', perChannel: true }), { code: 'BAD_OPTION' });
    assert.throws(() => quantizeDynamic(mlp(), { ...INT8_PC, conv: 'fast' as 'float' }), { code: 'BAD_OPTION' });
    assert.throws(() => quantizeDynamic(mlp(), { weightType: 'int8' } as QuantizeDynamicOptions), { code: 'BAD_OPTION' });
  });
});

describe('quantizeDynamic: Gemm', () => {
  function gemm(attrs: Record<string, number | ReturnType<typeof floatAttr>>, c?: { dims: number[] } | 'input'): Model {
    const b = new ModelBuilder();
    const a = b.input('a', DataType.FLOAT, [2, 4]);
    const transB = attrs.transB === 1;
    const w = b.initializer('W', seq(12), transB ? [3, 4] : [4, 3]);
    const inputs = [a, w];
    if (c === 'input') inputs.push(b.input('c', DataType.FLOAT, [2, 3]));
    else if (c) inputs.push(b.initializer('C', seq(c.dims.reduce((p, d) => p * d, 1), 1, 3), c.dims));
    b.output(b.op('Gemm', inputs, attrs, { name: 'gemm' }), DataType.FLOAT);
    return b.build();
  }

  it('transB=1 and alpha without C: the weight is transposed to [K, N] and scaled by alpha', () => {
    const { model, report } = quantizeDynamic(gemm({ transB: 1, alpha: 0.5 }), INT8_PC);
    const g = model.graph;
    assert.deepEqual(ops(g), [`${MS}:DynamicQuantizeMatMul`]);
    assert.equal(g.nodes[0]!.input.length, 4, 'no bias');
    assert.equal(g.nodes[0]!.output[0], 'gemm_out');
    assert.equal(report.quantized[0]!.form, 'DynamicQuantizeMatMul (Gemm: transB, alpha folded)');
    const { dims, values } = dequantMatMulWeight(g, g.nodes[0]!);
    assert.deepEqual(dims, [4, 3]);
    const w = seq(12); // [3, 4] row-major
    for (let k = 0; k < 4; k++) for (let n = 0; n < 3; n++) assert.ok(Math.abs(values[k * 3 + n]! - 0.5 * w[n * 4 + k]!) < 0.001);
  });

  it('C of [N] with beta becomes the bias beta*C', () => {
    const { model, report } = quantizeDynamic(gemm({ beta: floatAttr(2) }, { dims: [3] }), INT8_PC);
    const g = model.graph;
    assert.deepEqual(ops(g), [`${MS}:DynamicQuantizeMatMul`]);
    const c = seq(3, 1, 3);
    assert.deepEqual([...floats(g, g.nodes[0]!.input[4]!)], [...c].map((v) => Math.fround(2 * v)));
    assert.ok(!g.initializers.has('C'));
    assert.match(report.quantized[0]!.form, /\(\+bias\).*beta folded/);
  });

  it('a scalar C is broadcast into a [N] bias', () => {
    const { model } = quantizeDynamic(gemm({}, { dims: [1] }), INT8_PC);
    const bias = floats(model.graph, model.graph.nodes[0]!.input[4]!);
    assert.equal(bias.length, 3);
    assert.ok(bias.every((v) => v === bias[0]));
  });

  it('C of [M, N] is added after the integer matmul', () => {
    const { model } = quantizeDynamic(gemm({ beta: 0.5 }, { dims: [2, 3] }), INT8_PC);
    const g = model.graph;
    assert.deepEqual(ops(g), [`${MS}:DynamicQuantizeMatMul`, 'Add']);
    assert.equal(g.nodes[1]!.output[0], 'gemm_out');
    assert.deepEqual(dimsOf(g.initializer(g.nodes[1]!.input[1]!)!), [2, 3]);
  });

  it('an activation C with beta: Mul then Add', () => {
    const { model } = quantizeDynamic(gemm({ beta: 0.5 }, 'input'), INT8_PC);
    assert.deepEqual(ops(model.graph).sort(), [`${MS}:DynamicQuantizeMatMul`, 'Add', 'Mul'].sort());
  });

  it('transA=1 is left float with a reason', () => {
    const { report } = quantizeDynamic(gemm({ transA: 1 }), INT8_PC);
    assert.match(report.skipped[0]!.reason, /transA=1/);
  });
});

describe('quantizeDynamic: Conv and LSTM', () => {
  function convNet(opset = 13): Model {
    const b = new ModelBuilder({ opset });
    const x = b.input('x', DataType.FLOAT, [1, 2, 5, 5]);
    const w = b.initializer('W', seq(4 * 2 * 3 * 3), [4, 2, 3, 3]);
    const bias = b.initializer('B', seq(4, 1), [4]);
    b.output(b.op('Conv', [x, w, bias], { pads: [1, 1, 1, 1] }, { name: 'conv' }), DataType.FLOAT);
    return b.build();
  }

  it('Conv stays float by default, with the reason', () => {
    const { model, report } = quantizeDynamic(convNet(), INT8_PC);
    assert.deepEqual(ops(model.graph), ['Conv']);
    assert.match(report.skipped[0]!.reason, /ConvInteger is slower/);
  });

  it("conv: 'ConvInteger' forces DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul -> Add", () => {
    const { model, report } = quantizeDynamic(convNet(), { ...INT8_PC, conv: 'ConvInteger' });
    const g = model.graph;
    assert.deepEqual(ops(g), ['DynamicQuantizeLinear', 'ConvInteger', 'Cast', 'Mul', 'Mul', 'Add']);
    const ci = g.nodes[1]!;
    assert.deepEqual(dimsOf(g.initializer(ci.input[3]!)!), [], 'ORT takes one weight zero point');
    assert.deepEqual(dimsOf(g.initializer(g.nodes[3]!.input[1]!)!), [4, 1, 1], 'per-channel scale broadcasts over NCHW');
    assert.deepEqual(dimsOf(g.initializer(g.nodes[5]!.input[1]!)!), [4, 1, 1]);
    assert.ok(ci.attribute.some((a) => a.name === 'pads'));
    assert.equal(g.nodes[5]!.output[0], 'conv_out');
    assert.equal(report.quantized[0]!.form, 'ConvInteger');
  });

  it('forced ConvInteger on an opset-9 model is skipped (DynamicQuantizeLinear needs 11)', () => {
    const { report } = quantizeDynamic(convNet(9), { ...INT8_PC, conv: 'ConvInteger' });
    assert.match(report.skipped[0]!.reason, /opset 11/);
  });

  it('LSTM -> DynamicQuantizeLSTM with W/R transposed to [D, I, 4H], per-gate-row scales, layout dropped', () => {
    const b = new ModelBuilder({ opset: 14 });
    const x = b.input('x', DataType.FLOAT, [5, 1, 3]);
    const w = b.initializer('W', seq(1 * 8 * 3), [1, 8, 3]);
    const r = b.initializer('R', seq(1 * 8 * 2, 0.1, 1), [1, 8, 2]);
    const bias = b.initializer('B', seq(16, 0.1, 2), [1, 16]);
    const outs = b.op('LSTM', [x, w, r, bias], { hidden_size: 2, layout: 0 }, { name: 'lstm', outputs: 3 });
    for (const o of outs) b.output(o, DataType.FLOAT);
    const { model, report } = quantizeDynamic(b.build(), INT8_PC);
    const g = model.graph;
    assert.deepEqual(ops(g), [`${MS}:DynamicQuantizeLSTM`]);
    const n = g.nodes[0]!;
    assert.equal(n.input.length, 12);
    assert.deepEqual(n.output, outs);
    assert.deepEqual(dimsOf(g.initializer(n.input[1]!)!), [1, 3, 8]);
    assert.deepEqual(dimsOf(g.initializer(n.input[2]!)!), [1, 2, 8]);
    assert.deepEqual(dimsOf(g.initializer(n.input[8]!)!), [1, 8]);
    assert.deepEqual(ints(g, n.input[9]!), new Array(8).fill(0));
    assert.ok(!n.attribute.some((a) => a.name === 'layout'));
    assert.equal(report.quantized[0]!.form, 'DynamicQuantizeLSTM');
    // transposition: quantized W^T[0][i][j] dequantizes to W[0][j][i]
    const wq = ints(g, n.input[1]!), ws = floats(g, n.input[8]!), wf = seq(24);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 8; j++) assert.ok(Math.abs(wq[i * 8 + j]! * ws[j]! - wf[j * 3 + i]!) <= ws[j]! / 2 + 1e-7);
  });
});
