// The trainable of an inference model, without ORT: default param selection (BatchNormalization statistics
// become state, scalars and frozen names are left out, unreachable initializers are skipped), explicit
// params, training-mode BatchNormalization and Dropout, the eval graph, errors (an op without a gradient
// rule named with its node), withValues, the digit CNN and randomShift.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { attrInt } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import { tensorStorage } from '../../src/onnx/tensor.js';
import { buildDigitCnn } from '../../src/models/digits.js';
import { mulberry32 } from '../../src/rng.js';
import { randomShift } from '../../src/train/augment.js';
import { attachLoss } from '../../src/train/loss.js';
import { buildTrainable, withValues } from '../../src/train/trainable.js';
import { throwsLowbit } from '../helpers.js';

const CE = { loss: { kind: 'cross-entropy' as const } };
const DIGIT_PARAMS = ['conv1.weight', 'bn1.scale', 'bn1.bias', 'conv2.weight', 'bn2.scale', 'bn2.bias', 'conv3.weight', 'bn3.scale', 'bn3.bias', 'fc.weight', 'fc.bias'];

/** x [N, 4] -> MatMul(w) -> Add(b) -> Mul(scalar k) -> [op] -> logits [N, 3]. */
function mlp(op?: string, opset = 13) {
  const b = new ModelBuilder({ opset });
  const x = b.input('x', DataType.FLOAT, ['N', 4]);
  const w = b.initializer('w', new Float32Array(12).fill(0.1), [4, 3]);
  const bias = b.initializer('b', new Float32Array(3), [3]);
  const k = b.initializer('k', Float32Array.of(2), []);
  const unused = b.initializer('shape_only', new Float32Array(3), [3]);
  let y = b.op('Mul', [b.op('Add', [b.op('MatMul', [x, w]), bias]), k]);
  // A float initializer read only through Shape: never a param.
  y = b.op('Reshape', [y, b.op('Concat', [b.initializer('minus1', BigInt64Array.of(-1n), [1]), b.op('Shape', [unused])], { axis: 0 })]);
  if (op) y = b.op(op, [y], {}, { name: 'the_op' });
  b.output(y, DataType.FLOAT, ['N', 3]);
  return b.build();
}

describe('buildTrainable', () => {
  it('trains every weight of the digit CNN and keeps BatchNormalization statistics as state', () => {
    const t = buildTrainable(buildDigitCnn({ seed: 3 }), CE);
    assert.deepEqual(t.params.map((p) => p.name).sort(), [...DIGIT_PARAMS].sort());
    assert.deepEqual(t.state.map((s) => s.name), ['bn1.running_mean', 'bn1.running_var', 'bn2.running_mean', 'bn2.running_var', 'bn3.running_mean', 'bn3.running_var']);
    assert.equal(t.gradients.length, t.params.length);
    const outputs = t.train.graph.outputs.map((o) => o.name);
    for (const g of t.gradients) assert.ok(outputs.includes(g));
    for (const s of t.state) assert.ok(outputs.includes(s.update), `${s.update} is an output`);
    assert.ok(outputs.includes(t.loss));
    // Opset 13: training-mode BatchNormalization has 5 outputs (running mean/var are outputs 1 and 2).
    const bns = t.train.graph.nodes.filter((n) => n.opType === 'BatchNormalization' && n.name?.startsWith('bn'));
    assert.equal(bns.filter((n) => n.output.length === 5).length, 3);
    assert.deepEqual(bns.map((n) => n.output[1]), [t.state[0]!.update, t.state[2]!.update, t.state[4]!.update]);
    // Initial values are owned copies of the initializers.
    const w = t.params.find((p) => p.name === 'conv1.weight')!;
    assert.deepEqual(w.dims, [16, 1, 3, 3]);
    assert.deepEqual(Array.from(w.data), Array.from(tensorStorage(t.inference.graph.initializers.get('conv1.weight')!) as Float32Array));
    w.data[0] = 42;
    assert.notEqual((tensorStorage(t.inference.graph.initializers.get('conv1.weight')!) as Float32Array)[0], 42);
    assert.deepEqual(t.inputs.map((i) => i.name), ['input']);
    assert.equal(t.output, 'logits');
    assert.deepEqual(t.outputDims, ['N', 10]);
  });

  it('builds an eval graph with BatchNormalization in inference mode and params and state as inputs', () => {
    const t = buildTrainable(buildDigitCnn(), CE);
    const g = t.eval.graph;
    assert.ok(g.nodes.filter((n) => n.opType === 'BatchNormalization').every((n) => n.output.length === 1));
    const inputs = g.inputs.map((v) => v.name);
    for (const name of [...DIGIT_PARAMS, ...t.state.map((s) => s.name), 'input', t.targets.target!]) assert.ok(inputs.includes(name), name);
    for (const name of DIGIT_PARAMS) assert.ok(!g.initializers.has(name));
    assert.deepEqual(g.outputs.map((o) => o.name), ['logits', t.loss]);
    assert.ok(!g.nodes.some((n) => n.name?.includes('/grad')), 'no backward nodes');
  });

  it('uses opset 14+ training_mode with three outputs', () => {
    const m = buildDigitCnn();
    m.setOpset('', 15);
    const t = buildTrainable(m, CE);
    const bn = t.train.graph.nodes.find((n) => n.name === 'bn1')!;
    assert.equal(attrInt(bn, 'training_mode'), 1);
    assert.equal(bn.output.length, 3);
  });

  it('leaves out frozen names, scalars and initializers read only for their shape', () => {
    const t = buildTrainable(mlp(), CE);
    assert.deepEqual(t.params.map((p) => p.name), ['w', 'b']);
    const f = buildTrainable(mlp(), { ...CE, frozen: ['b'] });
    assert.deepEqual(f.params.map((p) => p.name), ['w']);
    const d = buildTrainable(buildDigitCnn(), { ...CE, frozen: ['conv1.weight'] });
    assert.ok(!d.params.some((p) => p.name === 'conv1.weight'));
  });

  it('takes an explicit param list (scalars included)', () => {
    const t = buildTrainable(mlp(), { ...CE, params: ['k', 'w'] });
    assert.deepEqual(t.params.map((p) => p.name), ['k', 'w']);
    assert.deepEqual(t.params[0]!.dims, []);
  });

  it('keeps BatchNormalization in inference mode with freezeBatchNorm', () => {
    const t = buildTrainable(buildDigitCnn(), { ...CE, freezeBatchNorm: true });
    assert.equal(t.state.length, 0);
    assert.ok(t.train.graph.nodes.filter((n) => n.opType === 'BatchNormalization' && n.name?.startsWith('bn')).every((n) => n.output.length === 1));
    assert.ok(!t.params.some((p) => p.name.includes('running')));
  });

  it('turns Dropout on with a constant training_mode, a mask output and a seed', () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, ['N', 4]);
    const w = b.initializer('w', new Float32Array(12).fill(0.1), [4, 3]);
    const y = b.op('Dropout', [b.op('MatMul', [x, w]), b.initializer('ratio', Float32Array.of(0.25), [])], {}, { name: 'drop' });
    b.output(y, DataType.FLOAT, ['N', 3]);
    const t = buildTrainable(b.build(), { ...CE, dropoutSeed: 7 });
    const d = t.train.graph.nodes.find((n) => n.name === 'drop')!;
    assert.equal(d.input.length, 3);
    assert.equal(d.output.length, 2);
    assert.equal(attrInt(d, 'seed'), 7);
    assert.deepEqual(Array.from(tensorStorage(t.train.graph.initializers.get(d.input[2]!)!) as Uint8Array), [1]);
    assert.deepEqual(t.params.map((p) => p.name), ['w']);
    const off = buildTrainable(b.build(), { ...CE, dropout: false });
    assert.equal(off.train.graph.nodes.find((n) => n.name === 'drop')!.input.length, 2);
  });

  it('names the op and the node that has no gradient rule', () => {
    throwsLowbit(() => buildTrainable(mlp('HardSigmoid'), CE), 'UNSUPPORTED_MODEL', "'HardSigmoid'", "'the_op'");
  });

  it('rejects bad params', () => {
    throwsLowbit(() => buildTrainable(mlp(), { ...CE, params: ['nope'] }), 'BAD_OPTION', "'nope'");
    throwsLowbit(() => buildTrainable(mlp(), { ...CE, params: ['minus1'] }), 'BAD_OPTION', "'minus1'", 'float32');
    throwsLowbit(() => buildTrainable(mlp(), { ...CE, params: ['shape_only'] }), 'BAD_OPTION', "'shape_only'");
    throwsLowbit(() => buildTrainable(buildDigitCnn(), { ...CE, params: ['bn1.running_mean'] }), 'BAD_OPTION', 'running statistics');
    throwsLowbit(() => buildTrainable(mlp(), { ...CE, frozen: ['nope'] }), 'BAD_OPTION', "'nope'");
    // A Dropout ratio: the loss depends on it, but no rule gives it a gradient.
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, ['N', 3]);
    const y = b.op('Dropout', [b.op('Mul', [x, b.initializer('w', new Float32Array(3).fill(1), [3])]), b.initializer('ratio', Float32Array.of(0.25), [])]);
    b.output(y, DataType.FLOAT, ['N', 3]);
    throwsLowbit(() => buildTrainable(b.build(), { ...CE, params: ['w', 'ratio'] }), 'BAD_OPTION', "no gradient reaches param 'ratio'");
    throwsLowbit(() => buildTrainable(mlp(undefined, 12), CE), 'UNSUPPORTED_OPSET', '12');
  });
});

describe('attachLoss', () => {
  it('adds target inputs and a scalar loss output, leaving the input model alone', () => {
    const m = buildDigitCnn();
    const ce = attachLoss(m, { kind: 'cross-entropy', labelSmoothing: 0.1 });
    assert.deepEqual(ce.model.graph.inputs.map((v) => v.name), ['input', ce.targets.target]);
    assert.deepEqual(ce.model.graph.outputs.map((v) => v.name), ['logits', ce.loss]);
    assert.equal(m.graph.outputs.length, 1);
    assert.equal(m.graph.inputs.length, 1);
    const kd = attachLoss(m, { kind: 'distill', temperature: 2, alpha: 0.5 });
    assert.ok(kd.targets.teacher && kd.targets.target);
    assert.equal(attachLoss(m, { kind: 'distill' }).targets.target, undefined);
  });

  it('rejects unknown outputs, bad numbers and options of another loss', () => {
    throwsLowbit(() => attachLoss(buildDigitCnn(), { kind: 'cross-entropy', output: 'nope' }), 'BAD_OPTION', "'nope'");
    throwsLowbit(() => attachLoss(buildDigitCnn(), { kind: 'cross-entropy', labelSmoothing: 1 }), 'BAD_OPTION', 'labelSmoothing');
    throwsLowbit(() => attachLoss(buildDigitCnn(), { kind: 'distill', temperature: 0 }), 'BAD_OPTION', 'temperature');
    throwsLowbit(() => attachLoss(buildDigitCnn(), { kind: 'cross-entropy', alpha: 0.5 }), 'BAD_OPTION', 'distill');
    throwsLowbit(() => attachLoss(buildDigitCnn(), { kind: 'hinge' as 'mse' }), 'BAD_OPTION', "'hinge'");
  });
});

describe('withValues', () => {
  it('writes copies of trained values into a copy of the model', () => {
    const m = buildDigitCnn();
    const data = new Float32Array(10).fill(0.5);
    const out = withValues(m, [{ name: 'fc.bias', data }]);
    data[0] = 9;
    assert.deepEqual(Array.from(tensorStorage(out.graph.initializers.get('fc.bias')!) as Float32Array), new Array(10).fill(0.5));
    assert.deepEqual(Array.from(tensorStorage(m.graph.initializers.get('fc.bias')!) as Float32Array), new Array(10).fill(0));
    throwsLowbit(() => withValues(m, [{ name: 'nope', data }]), 'INTERNAL', "'nope'");
  });
});

describe('buildDigitCnn', () => {
  it('is deterministic per seed, with input `input` [N,1,28,28] and output `logits` [N,10]', () => {
    const a = buildDigitCnn({ seed: 5 });
    const w = (m: typeof a) => Array.from(tensorStorage(m.graph.initializers.get('conv2.weight')!) as Float32Array);
    assert.deepEqual(w(a), w(buildDigitCnn({ seed: 5 })));
    assert.notDeepEqual(w(a), w(buildDigitCnn({ seed: 6 })));
    assert.equal(a.opset(''), 13);
    assert.deepEqual(a.graph.inputs.map((v) => v.name), ['input']);
    assert.deepEqual(a.graph.outputs.map((v) => v.name), ['logits']);
    assert.equal(a.graph.producer('logits')?.opType, 'Gemm');
    // He init: the std of conv2's weights is about sqrt(2 / (16 * 9)).
    const v = w(a);
    const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    assert.ok(Math.abs(std - Math.sqrt(2 / 144)) < 0.01, `std ${std}`);
  });
});

describe('randomShift', () => {
  it('shifts each image by at most maxShift pixels, filling with zeros', () => {
    const n = 64;
    const data = new Float32Array(n * 5 * 5);
    for (let i = 0; i < n; i++) data[i * 25 + 12] = i + 1; // one lit pixel in the centre
    randomShift(2)({ x: { dtype: 'float32', shape: [n, 1, 5, 5], data } }, mulberry32(1));
    const moves = new Set<string>();
    for (let i = 0; i < n; i++) {
      const img = data.subarray(i * 25, (i + 1) * 25);
      const lit = [...img.keys()].filter((k) => img[k] !== 0);
      assert.equal(lit.length, 1, 'the pixel moved, nothing else appeared');
      assert.equal(img[lit[0]!], i + 1);
      const [dy, dx] = [Math.floor(lit[0]! / 5) - 2, (lit[0]! % 5) - 2];
      assert.ok(Math.abs(dy) <= 2 && Math.abs(dx) <= 2);
      moves.add(`${dy},${dx}`);
    }
    assert.ok(moves.size > 10, `${moves.size} distinct shifts`);
    // A pixel at the edge falls off when shifted out.
    const edge = new Float32Array(9);
    edge[0] = 1;
    let gone = 0;
    const aug = randomShift(1);
    for (let s = 0; s < 20; s++) {
      const e = edge.slice();
      aug({ x: { dtype: 'float32', shape: [1, 1, 3, 3], data: e } }, mulberry32(s));
      if (e.every((v) => v === 0)) gone++;
    }
    assert.ok(gone > 0);
    throwsLowbit(() => randomShift(-1), 'BAD_OPTION', 'maxShift');
  });
});
