// Static quantization around the rule table: preprocessing (BatchNormalization folding, Identity
// removal, Div -> Mul, Gemm alpha/beta, Constant nodes), the opset upgrade table, exclusions, graph
// outputs, unknown element types, option and range errors.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { attrInt, floatAttr, getAttribute } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Graph, Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { makeTensor, tensorStorage } from '../../src/onnx/tensor.js';
import { cloneModel, preprocessForQuantization } from '../../src/passes/preprocess.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { mergeRuleTables } from '../../src/passes/rules/qdq/index.js';
import { upgradeOpset } from '../../src/passes/rules/qdq/opset.js';
import { encodeModel } from '../../src/onnx/encode.js';

const F = DataType.FLOAT;
const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const values = (g: Graph, name: string) => Array.from(tensorStorage(g.initializers.get(name)!) as ArrayLike<number | bigint>, Number);
const ops = (g: Graph) => g.nodes.map((n) => n.opType);
const isErr = (code: string, re?: RegExp) => (e: unknown) => e instanceof LowbitError && e.code === code && (!re || re.test(e.message));
const uniform = (tensors: string[], min = -1, max = 1) => new Map(tensors.map((t) => [t, { min, max }]));

function convBn(): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', F, [1, 2, 3, 3]);
  const conv = b.op('Conv', [x, b.initializer('W', Float32Array.of(1, 2, 3, 4), [2, 2, 1, 1]), b.initializer('B', Float32Array.of(0.5, -0.5), [2])], {}, { name: 'conv' });
  const p = (name: string, v: number[]) => b.initializer(name, Float32Array.from(v), [2]);
  const y = b.op('BatchNormalization', [conv, p('gamma', [2, 1]), p('beta', [0.1, 0.2]), p('mean', [1, -1]), p('var', [3, 0])], { epsilon: floatAttr(1) }, { name: 'bn' });
  b.output(b.op('Relu', [y], {}, { name: 'relu' }), F);
  return b.build();
}

describe('preprocessForQuantization', () => {
  it('folds BatchNormalization into the Conv, keeping the BN output name', () => {
    const m = convBn();
    const { model, changes } = preprocessForQuantization(m);
    const g = model.graph;
    assert.deepEqual(ops(g), ['Conv', 'Relu']);
    const conv = g.nodes[0]!;
    assert.equal(conv.output[0], 'bn_out');
    // s = gamma / sqrt(var + eps) = [2/2, 1/1]; W' = W * s; b' = (b - mean) * s + beta
    assert.deepEqual(values(g, conv.input[1]!), [1, 2, 3, 4]);
    assert.deepEqual(values(g, conv.input[2]!), [Math.fround((0.5 - 1) * 1 + 0.1), Math.fround((-0.5 + 1) * 1 + 0.2)]);
    for (const gone of ['W', 'B', 'gamma', 'beta', 'mean', 'var']) assert.ok(!g.initializers.has(gone), gone);
    assert.ok(changes.some((c) => /BatchNormalization folded into Conv: 1/.test(c)));
    assert.deepEqual(ops(m.graph), ['Conv', 'BatchNormalization', 'Relu'], 'the input model is not modified');
    // Idempotent.
    assert.deepEqual(preprocessForQuantization(model).changes, []);
  });

  it('removes Identity (also before a graph output), turns Div by a constant into Mul, folds Gemm alpha/beta', () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [2, 3]);
    const i1 = b.op('Identity', [x], {}, { name: 'id1' });
    const d = b.op('Div', [i1, b.initializer('six', Float32Array.of(4), [])], {}, { name: 'div' });
    const gm = b.op('Gemm', [d, b.initializer('Bw', Float32Array.of(1, 2, 3, 4, 5, 6), [3, 2]), b.initializer('C', Float32Array.of(1, 1), [1, 2])], { alpha: 0.5, beta: floatAttr(2) }, { name: 'gemm' });
    b.output(b.op('Identity', [gm], {}, { name: 'id2' }), F);
    const { model } = preprocessForQuantization(b.build());
    const g = model.graph;
    assert.deepEqual(ops(g), ['Mul', 'Gemm']);
    assert.equal(g.nodes[0]!.input[0], 'x');
    assert.deepEqual(values(g, g.nodes[0]!.input[1]!), [0.25]);
    const gemm = g.nodes[1]!;
    assert.equal(gemm.output[0], 'id2_out', 'the Gemm writes the graph output directly');
    assert.deepEqual(values(g, gemm.input[1]!), [0.5, 1, 1.5, 2, 2.5, 3]);
    assert.deepEqual(values(g, gemm.input[2]!), [2, 2]);
    assert.equal(getAttribute(gemm, 'alpha'), undefined);
    assert.equal(getAttribute(gemm, 'beta'), undefined);
  });

  it('turns Constant nodes into initializers', () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [2]);
    const k = b.op('Constant', [], { value: makeTensor('', F, [2], Float32Array.of(3, 4)) }, { name: 'k' });
    b.output(b.op('Add', [x, k]), F);
    const { model } = preprocessForQuantization(b.build());
    assert.deepEqual(ops(model.graph), ['Add']);
    assert.deepEqual(values(model.graph, 'k_out'), [3, 4]);
  });
});

describe('opset upgrade', () => {
  it('carries Clip, Slice, Squeeze and Softmax from opset 9 to 13', () => {
    const b = new ModelBuilder({ opset: 9 });
    const x = b.input('x', F, ['N', 4, 1]);
    const c = b.op('Clip', [x], { min: floatAttr(0), max: floatAttr(6) }, { name: 'clip' });
    const s = b.op('Slice', [c], { starts: [0], ends: [2], axes: [1] }, { name: 'slice' });
    const q = b.op('Squeeze', [s], { axes: [2] }, { name: 'sq' });
    const sm = b.op('Softmax', [q], { axis: 1 }, { name: 'sm' });
    b.output(sm, F, ['N', 2]);
    const m = b.build();
    const g = cloneModel(m).graph;
    const r = upgradeOpset(g, 9);
    assert.deepEqual(r, { upgraded: true, from: 9, to: 13, blockers: [] });
    const n = (name: string) => g.nodes.find((x) => x.name === name)!;
    assert.deepEqual(values(g, n('clip').input[1]!), [0]);
    assert.deepEqual(values(g, n('clip').input[2]!), [6]);
    assert.equal(getAttribute(n('clip'), 'min'), undefined);
    assert.deepEqual(values(g, n('slice').input[1]!), [0]);
    assert.deepEqual(values(g, n('slice').input[3]!), [1]);
    assert.deepEqual(values(g, n('sq').input[1]!), [2]);
    assert.equal(attrInt(n('sm'), 'axis'), -1, 'rank 2 declared: axis 1 is the last axis');
  });

  it('wraps an old Softmax of unknown rank in Flatten / Reshape', () => {
    const b = new ModelBuilder({ opset: 11 });
    const x = b.input('x', F, undefined as never);
    b.output(b.op('Softmax', [x], {}, { name: 'sm' }), F);
    const g = cloneModel(b.build()).graph;
    assert.equal(upgradeOpset(g, 11).upgraded, true);
    assert.deepEqual(ops(g), ['Shape', 'Flatten', 'Softmax', 'Reshape']);
    assert.equal(g.nodes[3]!.output[0], 'sm_out');
  });

  it('refuses ops it cannot carry over, and quantization falls back or stops', () => {
    const b = new ModelBuilder({ opset: 9 });
    const x = b.input('x', F, [1, 1, 2, 2]);
    b.output(b.op('Upsample', [x, b.initializer('s', Float32Array.of(1, 1, 2, 2), [4])], {}, { name: 'up' }), F);
    const r = upgradeOpset(cloneModel(b.build()).graph, 9);
    assert.equal(r.upgraded, false);
    assert.match(r.blockers[0]!, /Upsample/);
    assert.throws(() => planQdq(b.build()), isErr('UNSUPPORTED_OPSET', /opset 9/));

    // Opset 12 with an op lowbit does not know: stays at 12, weights per tensor, with a note.
    const c = new ModelBuilder({ opset: 12 });
    const y = c.input('y', F, [1, 2, 4, 4]);
    const conv = c.op('Conv', [y, c.initializer('W', Float32Array.from({ length: 18 }, (_, i) => i / 9 - 1), [2, 1, 3, 3])], { kernel_shape: [3, 3], group: 2 }, { name: 'conv' });
    c.output(c.op('MysteryOp', [conv], {}, { name: 'm' }), F);
    const model = c.build();
    const plan = planQdq(model);
    const { model: q, report } = quantizeStatic(plan.model, uniform(plan.tensors), OPTS);
    assert.equal(q.opset(''), 12);
    assert.equal(report.perChannel, false);
    assert.ok(report.notes.some((n) => /per tensor/.test(n) && /MysteryOp/.test(n)), report.notes.join('\n'));
    const wdq = q.graph.producer(q.graph.nodes.find((n) => n.name === 'conv')!.input[1]!)!;
    assert.equal(getAttribute(wdq, 'axis'), undefined);
  });
});

function twoConvs(): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', F, [1, 1, 4, 4]);
  const w = (n: string) => b.initializer(n, Float32Array.of(0.5, -1, 0.25, 2), [1, 1, 2, 2]);
  const c1 = b.op('Conv', [x, w('W1')], { kernel_shape: [2, 2] }, { name: 'c1' });
  b.output(b.op('Conv', [c1, w('W2')], { kernel_shape: [2, 2] }, { name: 'c2' }), F, [1, 1, 2, 2]);
  return b.build();
}

describe('quantizeStatic', () => {
  it('keeps graph output names on the DequantizeLinear and leaves the producer a single Q reader', () => {
    const m = twoConvs();
    const before = encodeModel(m.toProto());
    const plan = planQdq(m);
    const { model } = quantizeStatic(plan.model, uniform(plan.tensors), OPTS);
    const g = model.graph;
    assert.equal(g.outputs[0]!.name, 'c2_out');
    assert.equal(g.producer('c2_out')!.opType, 'DequantizeLinear');
    const c2 = g.nodes.find((n) => n.name === 'c2')!;
    assert.deepEqual(g.consumers(c2.output[0]!).map((n) => n.opType), ['QuantizeLinear']);
    assert.deepEqual(encodeModel(m.toProto()), before, 'the input model is not modified');
  });

  it('excludes nodes by name and by op type', () => {
    const m = twoConvs();
    const plan = planQdq(m, { excludeNodes: ['c2'] });
    const { model, report } = quantizeStatic(plan.model, uniform(plan.tensors), { ...OPTS, excludeNodes: ['c2'] });
    const g = model.graph;
    const c2 = g.nodes.find((n) => n.name === 'c2')!;
    assert.equal(g.initializers.get(c2.input[1]!)!.dataType, F, 'c2 keeps its float weight');
    assert.deepEqual(report.nodes.map((n) => [n.name, n.quantized, n.reason ?? '']), [['c1', true, ''], ['c2', false, 'excluded by name']]);
    const byOp = quantizeStatic(plan.model, uniform(planQdq(m, { excludeOps: ['Conv'] }).tensors), { ...OPTS, excludeOps: ['Conv'] });
    assert.equal(byOp.model.graph.nodes.filter((n) => n.opType === 'QuantizeLinear').length, 0);
  });

  it('leaves integer tensors alone and treats unknown types without a range as non-float', () => {
    const b = new ModelBuilder({ opset: 13 });
    const i = b.input('i', DataType.INT64, [2]);
    const u = b.input('u', 0, [2]);
    b.output(b.op('Add', [i, i], {}, { name: 'int_add' }), DataType.INT64);
    b.output(b.op('Sigmoid', [u], {}, { name: 'unknown_sig' }), F);
    const m = b.build();
    const plan = planQdq(m);
    assert.deepEqual(plan.tensors.sort(), ['u', 'unknown_sig_out'], 'unknown types are listed for calibration');
    const { report } = quantizeStatic(plan.model, new Map(), OPTS);
    assert.match(report.nodes.find((n) => n.name === 'int_add')!.reason!, /'i' is not a float tensor/);
    assert.match(report.nodes.find((n) => n.name === 'unknown_sig')!.reason!, /'u' is not a float tensor/);
    const withRange = quantizeStatic(plan.model, uniform(plan.tensors), OPTS);
    assert.equal(withRange.report.nodes.find((n) => n.name === 'unknown_sig')!.quantized, true);
  });

  it('rejects a missing or non-finite range and bad options', () => {
    const m = twoConvs();
    const plan = planQdq(m);
    assert.throws(() => quantizeStatic(plan.model, new Map(), OPTS), isErr('BAD_OPTION', /no calibration range .*'x'/));
    const bad = uniform(plan.tensors);
    bad.set('c1_out', { min: NaN, max: 1 });
    assert.throws(() => quantizeStatic(plan.model, bad, OPTS), isErr('NON_FINITE', /'c1_out'/));
    assert.throws(() => quantizeStatic(plan.model, uniform(plan.tensors), { ...OPTS, activationType: 'int4' as never }), isErr('BAD_OPTION', /int4/));
  });

  it('an all-zero range gives scale 1, not 0 or NaN', () => {
    const m = twoConvs();
    const plan = planQdq(m);
    const { model } = quantizeStatic(plan.model, uniform(plan.tensors, 0, 0), OPTS);
    const q = model.graph.nodes.find((n) => n.opType === 'QuantizeLinear')!;
    assert.deepEqual(values(model.graph, q.input[1]!), [1]);
  });

  it('notes int8 activations with uint8 weights (no fused kernel)', () => {
    const plan = planQdq(twoConvs());
    const { report } = quantizeStatic(plan.model, uniform(plan.tensors), { ...OPTS, activationType: 'int8', weightType: 'uint8' });
    assert.ok(report.notes.some((n) => /no fused kernel/.test(n)));
  });
});

describe('mergeRuleTables', () => {
  it('throws on a duplicate op type', () => {
    const rule = { activations: [0], output: { kind: 'own' as const }, fusesTo: 'X' };
    assert.throws(() => mergeRuleTables({ Conv: rule }, { Conv: rule }), isErr('INTERNAL', /'Conv'/));
    assert.deepEqual(Object.keys(mergeRuleTables({ A: rule }, { B: rule })), ['A', 'B']);
  });
});
