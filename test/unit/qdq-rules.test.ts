// Rule coverage for static quantization: every op type in the QDQ rule table goes through the planner
// and the inserter on a one-op model (two ops where the rule needs a quantized producer), and the
// resulting structure is checked: which inputs are DequantizeLinear outputs, which outputs feed only a
// QuantizeLinear, weight axes, bias types, shared and fixed parameters, Relu/Clip folding.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { attrInt } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Graph, Model } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { QDQ_RULES } from '../../src/passes/rules/qdq/index.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const F = DataType.FLOAT;
const ramp = (n: number, k = 0.1) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * k);

/** Quantizes with a made-up range [-1, 2] for every planned tensor ([0, 2] for Relu/Clip outputs, as real data gives). */
function quantize(model: Model, opts: Partial<StaticQuantOptions> = {}) {
  const plan = planQdq(model, { ...OPTS, ...opts });
  const nonNegative = (t: string) => ['Relu', 'Clip'].includes(plan.model.graph.producer(t)?.opType ?? '');
  const ranges = new Map(plan.tensors.map((t) => [t, nonNegative(t) ? { min: 0, max: 2 } : { min: -1, max: 2 }]));
  const r = quantizeStatic(plan.model, ranges, { ...OPTS, ...opts });
  return { ...r, plan, graph: r.model.graph };
}

const node = (g: Graph, name: string): NodeProto => {
  const n = g.nodes.find((x) => x.name === name);
  assert.ok(n, `node '${name}' is missing`);
  return n;
};
/** The DequantizeLinear feeding input `slot` of `n`, or undefined. */
const dqAt = (g: Graph, n: NodeProto, slot: number): NodeProto | undefined => {
  const p = g.producer(n.input[slot]!);
  return p?.opType === 'DequantizeLinear' ? p : undefined;
};
/** The single QuantizeLinear reading output 0 of `n` (asserts it is the only reader). */
const qAfter = (g: Graph, n: NodeProto): NodeProto => {
  const readers = g.consumers(n.output[0]!);
  assert.equal(readers.length, 1, `${n.name} output has ${readers.length} readers`);
  assert.equal(readers[0]!.opType, 'QuantizeLinear');
  return readers[0]!;
};
const initType = (g: Graph, name: string) => g.initializers.get(name)!.dataType;
const initDims = (g: Graph, name: string) => dimsOf(g.initializers.get(name)!);
const scalarOf = (g: Graph, name: string) => (tensorStorage(g.initializers.get(name)!) as ArrayLike<number>)[0]!;

/** Checks that `n`'s activation inputs are DQ'd uint8 and its output goes through one Q. */
function assertUnit(g: Graph, n: NodeProto, slots: number[]): void {
  for (const s of slots) {
    const dq = dqAt(g, n, s);
    assert.ok(dq, `${n.name} input ${s} is not dequantized`);
    assert.equal(initType(g, dq.input[2]!), DataType.UINT8);
  }
  qAfter(g, n);
}

function unary(op: string, attrs: Record<string, number | number[]> = {}, dims: (number | string)[] = [1, 2, 4, 4]): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', F, dims);
  b.output(b.op(op, [x], attrs, { name: 'n' }), F);
  return b.build();
}

/** Sigmoid (a quantized producer) then `op`, so that the input of `op` is quantized. */
function afterSigmoid(op: string, extra: (b: ModelBuilder) => string[] = () => [], attrs: Record<string, number | number[]> = {}): Model {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', F, [1, 2, 4, 4]);
  const s = b.op('Sigmoid', [x], {}, { name: 'sig' });
  b.output(b.op(op, [s, ...extra(b)], attrs, { name: 'n' }), F);
  return b.build();
}

const cases: Record<string, () => void> = {
  Conv() {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [1, 2, 4, 4]);
    const w = b.initializer('W', ramp(3 * 2 * 9), [3, 2, 3, 3]);
    b.output(b.op('Conv', [x, w, b.initializer('B', ramp(3), [3])], { kernel_shape: [3, 3] }, { name: 'n' }), F);
    const { graph: g, report } = quantize(b.build());
    const n = node(g, 'n');
    assertUnit(g, n, [0]);
    const wdq = dqAt(g, n, 1)!;
    assert.equal(initType(g, wdq.input[0]!), DataType.INT8);
    assert.deepEqual(initDims(g, wdq.input[1]!), [3]);
    assert.equal(attrInt(wdq, 'axis'), 0);
    const bdq = dqAt(g, n, 2)!;
    assert.equal(initType(g, bdq.input[0]!), DataType.INT32);
    assert.deepEqual(initDims(g, bdq.input[1]!), [3]);
    // bias scale = input scale x weight scale
    const xScale = scalarOf(g, dqAt(g, n, 0)!.input[1]!);
    const ws = tensorStorage(g.initializers.get(wdq.input[1]!)!) as Float32Array;
    const bs = tensorStorage(g.initializers.get(bdq.input[1]!)!) as Float32Array;
    for (let c = 0; c < 3; c++) assert.equal(bs[c], Math.fround(xScale * ws[c]!));
    assert.ok(!g.initializers.has('W') && !g.initializers.has('B'), 'float weight and bias removed');
    assert.deepEqual(report.counts, { qdqPairs: 2, weights: 1, biases: 1, constants: 0, rescales: 0 });
  },
  MatMul() {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [2, 4]);
    b.output(b.op('MatMul', [x, b.initializer('B', ramp(12), [4, 3])], {}, { name: 'n' }), F);
    const { graph: g } = quantize(b.build());
    const n = node(g, 'n');
    assertUnit(g, n, [0]);
    const wdq = dqAt(g, n, 1)!;
    assert.equal(attrInt(wdq, 'axis'), 1);
    assert.deepEqual(initDims(g, wdq.input[1]!), [3]);
    // Two activations: B is quantized like A.
    const b2 = new ModelBuilder({ opset: 13 });
    const a = b2.input('a', F, [2, 4]);
    const c = b2.input('c', F, [4, 3]);
    b2.output(b2.op('MatMul', [a, c], {}, { name: 'n' }), F);
    const r2 = quantize(b2.build());
    assertUnit(r2.graph, node(r2.graph, 'n'), [0, 1]);
    assert.deepEqual(r2.plan.tensors.sort(), ['a', 'c', 'n_out']);
  },
  Gemm() {
    for (const transB of [0, 1]) {
      const b = new ModelBuilder({ opset: 13 });
      const x = b.input('x', F, [2, 4]);
      const w = b.initializer('B', ramp(12), transB ? [3, 4] : [4, 3]);
      b.output(b.op('Gemm', [x, w, b.initializer('C', ramp(3), [3])], { transB }, { name: 'n' }), F);
      const { graph: g } = quantize(b.build());
      const n = node(g, 'n');
      assertUnit(g, n, [0]);
      assert.equal(attrInt(dqAt(g, n, 1)!, 'axis'), transB ? 0 : 1, `transB=${transB}`);
      assert.equal(initType(g, dqAt(g, n, 2)!.input[0]!), DataType.INT32);
    }
  },
  Add() {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [1, 4]);
    const y = b.input('y', F, [1, 4]);
    const s = b.op('Add', [x, y], {}, { name: 'n' });
    b.output(b.op('Add', [s, b.initializer('k', Float32Array.of(0.5, 1, 2, 3), [4])], {}, { name: 'n2' }), F);
    const { graph: g, plan, report } = quantize(b.build());
    assertUnit(g, node(g, 'n'), [0, 1]);
    const n2 = node(g, 'n2');
    assertUnit(g, n2, [0, 1]);
    // The constant operand: quantized ahead of time as uint8, no QuantizeLinear node for it.
    const kdq = dqAt(g, n2, 1)!;
    assert.equal(initType(g, kdq.input[0]!), DataType.UINT8);
    assert.equal(g.producer(kdq.input[0]!), undefined);
    assert.ok(!plan.tensors.includes('k'), 'constants need no calibration');
    assert.equal(report.counts.constants, 1);
  },
  Mul() {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [1, 4]);
    b.output(b.op('Mul', [x, x], {}, { name: 'n' }), F);
    const { graph: g } = quantize(b.build());
    assertUnit(g, node(g, 'n'), [0, 1]);
    // By a positive scalar constant after a quantized node: dropped, the output re-reads the integers
    // with scale x factor (exact, no kernel). By a negative one: an ordinary QLinearMul.
    for (const k of [0.25, -2]) {
      const c = new ModelBuilder({ opset: 13 });
      const y = c.input('x', F, [1, 4]);
      const s = c.op('Sigmoid', [y], {}, { name: 'sig' });
      c.output(c.op('Mul', [s, c.initializer('k', Float32Array.of(k), [])], {}, { name: 'n' }), F);
      const r = quantize(c.build());
      const rep = r.report.nodes.find((x) => x.name === 'n')!;
      if (k > 0) {
        assert.ok(!r.graph.nodes.some((x) => x.name === 'n'), 'the Mul is gone');
        const dq = r.graph.producer('n_out')!;
        assert.equal(dq.opType, 'DequantizeLinear');
        const q = r.graph.producer(dq.input[0]!)!;
        assert.equal(q.opType, 'QuantizeLinear', 'reads the Sigmoid output integers');
        assert.equal(scalarOf(r.graph, dq.input[1]!), Math.fround(scalarOf(r.graph, q.input[1]!) * k));
        assert.equal(dq.input[2], q.input[2], 'same zero point');
        assert.ok(!r.plan.tensors.includes('n_out'), 'no calibration needed');
        assert.ok(!r.graph.initializers.has('k'));
        assert.match(rep.kernel!, /rescaled by 0.25/);
        assert.equal(r.report.counts.rescales, 1);
      } else {
        assertUnit(r.graph, node(r.graph, 'n'), [0, 1]);
        assert.equal(rep.kernel, 'QLinearMul');
      }
    }
  },
  Concat() {
    const b = new ModelBuilder({ opset: 13 });
    const ins = ['a', 'b', 'c'].map((n) => b.input(n, F, [1, 2]));
    b.output(b.op('Concat', ins, { axis: 1 }, { name: 'n' }), F);
    const { graph: g } = quantize(b.build());
    assertUnit(g, node(g, 'n'), [0, 1, 2]);
  },
  AveragePool() {
    const { graph: g } = quantize(unary('AveragePool', { kernel_shape: [2, 2] }));
    assertUnit(g, node(g, 'n'), [0]);
  },
  GlobalAveragePool() {
    const { graph: g } = quantize(unary('GlobalAveragePool'));
    assertUnit(g, node(g, 'n'), [0]);
  },
  Sigmoid() {
    const { graph: g } = quantize(unary('Sigmoid'));
    assertUnit(g, node(g, 'n'), [0]);
  },
  LeakyRelu() {
    const { graph: g } = quantize(unary('LeakyRelu'));
    assertUnit(g, node(g, 'n'), [0]);
  },
  Softmax() {
    const { graph: g, plan } = quantize(unary('Softmax', { axis: -1 }, [2, 5]));
    const n = node(g, 'n');
    assertUnit(g, n, [0]);
    const q = qAfter(g, n);
    assert.equal(scalarOf(g, q.input[1]!), Math.fround(1 / 255));
    assert.equal(scalarOf(g, q.input[2]!), 0);
    assert.deepEqual(plan.tensors, ['x'], 'the [0, 1] output range needs no calibration');
  },
  Relu() {
    checkFold('Relu', () => []);
  },
  Clip() {
    checkFold('Clip', (b) => [b.initializer('lo', Float32Array.of(0), []), b.initializer('hi', Float32Array.of(6), [])]);
    // Bounds that exclude 0 cannot be made redundant by a Q: the Clip stays a float op.
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [1, 2, 4, 4]);
    const s = b.op('Sigmoid', [x], {}, { name: 'sig' });
    b.output(b.op('Clip', [s, b.initializer('lo', Float32Array.of(1), []), b.initializer('hi', Float32Array.of(6), [])], {}, { name: 'n' }), F);
    const { graph: g, report } = quantize(b.build());
    assert.equal(g.producer(node(g, 'n').output[0]!)?.opType, 'Clip');
    assert.match(report.nodes.find((r) => r.name === 'n')!.reason!, /exclude 0/);
  },
};

/** Ops ORT cannot run on 8-bit tensors: after a quantized producer they read its DQ and stay float, no pair of their own. */
const FLOAT_CASES: Record<string, [(b: ModelBuilder) => string[], Record<string, number | number[]>]> = {
  ConvTranspose: [(b) => [b.initializer('W', ramp(2 * 3 * 9), [2, 3, 3, 3]), b.initializer('B', ramp(3), [3])], { kernel_shape: [3, 3] }],
  Pad: [(b) => [b.initializer('pads', BigInt64Array.of(0n, 0n, 1n, 1n, 0n, 0n, 1n, 1n), [8])], {}],
  HardSigmoid: [() => [], {}],
  InstanceNormalization: [(b) => [b.initializer('s', Float32Array.of(1, 2), [2]), b.initializer('bb', Float32Array.of(0, 1), [2])], {}],
  LayerNormalization: [(b) => [b.initializer('s', ramp(4), [4]), b.initializer('bb', ramp(4), [4])], { axis: -1 }],
};
for (const [op, [extra, attrs]] of Object.entries(FLOAT_CASES)) {
  cases[op] = () => {
    const { graph: g, plan, report } = quantize(afterSigmoid(op, extra, attrs));
    const n = node(g, 'n');
    assert.ok(dqAt(g, n, 0), 'reads the DequantizeLinear of the quantized producer');
    assert.equal(g.consumers(n.output[0]!).length, 0, 'its output (the graph output) gets no QuantizeLinear');
    assert.ok(!plan.tensors.includes('n_out'));
    const rep = report.nodes.find((x) => x.name === 'n')!;
    assert.equal(rep.quantized, false);
    assert.match(rep.reason!, /no integer|no rule to drop/);
    for (const c of n.input.slice(1)) if (c) assert.equal(g.producer(c), undefined, `constant '${c}' stays float`);
  };
}

/** Shared-parameter ops: a quantized input propagates its scale / zero point, a float input leaves the op float. */
const SHARE_CASES: Record<string, [(b: ModelBuilder) => string[], Record<string, number | number[]>]> = {
  Reshape: [(b) => [b.initializer('shape', BigInt64Array.of(1n, -1n), [2])], {}],
  Transpose: [() => [], { perm: [0, 2, 3, 1] }],
  Flatten: [() => [], { axis: 1 }],
  Squeeze: [(b) => [b.initializer('axes', BigInt64Array.of(0n), [1])], {}],
  Unsqueeze: [(b) => [b.initializer('axes', BigInt64Array.of(0n), [1])], {}],
  Slice: [(b) => [b.initializer('starts', BigInt64Array.of(1n), [1]), b.initializer('ends', BigInt64Array.of(3n), [1]), b.initializer('axes', BigInt64Array.of(2n), [1])], {}],
  Resize: [(b) => ['', b.initializer('scales', Float32Array.of(1, 1, 2, 2), [4])], { mode: 'nearest' } as never],
  MaxPool: [() => [], { kernel_shape: [2, 2] }],
  Gather: [(b) => [b.initializer('idx', BigInt64Array.of(1n, 0n), [2])], { axis: 1 }],
  GatherElements: [(b) => [b.initializer('idx', new BigInt64Array(32).fill(1n), [1, 2, 4, 4])], { axis: 1 }],
};
for (const [op, [extra, attrs]] of Object.entries(SHARE_CASES)) {
  cases[op] = () => {
    const { graph: g, plan } = quantize(afterSigmoid(op, extra, attrs));
    const n = node(g, 'n');
    const inDq = dqAt(g, n, 0)!;
    const q = qAfter(g, n);
    assert.equal(q.input[1], inDq.input[1], 'same scale initializer');
    assert.equal(q.input[2], inDq.input[2], 'same zero point initializer');
    assert.ok(!plan.tensors.includes('n_out'), 'a shared output needs no calibration');
    // On a float input the op stays float.
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', F, [1, 2, 4, 4]);
    b.output(b.op(op, [x, ...extra(b)], attrs, { name: 'n' }), F);
    const r = quantize(b.build());
    assert.equal(r.report.nodes.find((x) => x.name === 'n')!.quantized, false);
    assert.equal(r.graph.nodes.filter((x) => x.opType === 'QuantizeLinear').length, 0);
  };
}

cases.Split = () => {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', F, [1, 4, 4, 4]);
  const s = b.op('Sigmoid', [x], {}, { name: 'sig' });
  const outs = b.op('Split', [s, b.initializer('split', BigInt64Array.of(1n, 3n), [2])], { axis: 1 }, { name: 'n', outputs: 2 });
  for (const o of outs) b.output(o, F);
  const { graph: g, plan } = quantize(b.build());
  const n = node(g, 'n');
  const inDq = dqAt(g, n, 0)!;
  for (const o of n.output) {
    const readers = g.consumers(o);
    assert.equal(readers.length, 1);
    assert.equal(readers[0]!.opType, 'QuantizeLinear', 'every output is requantized');
    assert.equal(readers[0]!.input[1], inDq.input[1], 'with the input scale');
    assert.equal(readers[0]!.input[2], inDq.input[2], 'and zero point');
  }
  assert.deepEqual(plan.tensors.sort(), ['sig_out', 'x']);
};

cases.ArgMax = () => {
  const { graph: g, plan, report } = quantize(afterSigmoid('ArgMax', () => [], { axis: 1 }));
  const n = node(g, 'n');
  assert.ok(dqAt(g, n, 0), 'reads the 8-bit tensor through a DequantizeLinear ORT drops');
  assert.equal(g.consumers(n.output[0]!).length, 0, 'no QuantizeLinear on int64 indices');
  assert.ok(!plan.tensors.includes('n_out'));
  assert.match(report.nodes.find((r) => r.name === 'n')!.kernel!, /8-bit/);
  // On a float input nothing is inserted for it.
  const r = quantize(unary('ArgMax', { axis: 1 }));
  assert.equal(r.report.nodes[0]!.quantized, false);
  assert.equal(r.graph.nodes.length, 1);
};

cases.Where = () => {
  const b = new ModelBuilder({ opset: 13 });
  const c = b.input('c', DataType.BOOL, [1, 4]);
  const x = b.input('x', F, [1, 4]);
  const w = b.op('Where', [c, x, b.input('y', F, [1, 4])], {}, { name: 'n' });
  b.output(b.op('Where', [c, w, b.initializer('k', Float32Array.of(0.5), [])], {}, { name: 'n2' }), F);
  const { graph: g, plan, report } = quantize(b.build());
  assertUnit(g, node(g, 'n'), [1, 2]);
  assertUnit(g, node(g, 'n2'), [1, 2]);
  assert.equal(g.producer(node(g, 'n').input[0]!), undefined, 'the bool condition is read as it is');
  assert.equal(initType(g, dqAt(g, node(g, 'n2'), 2)!.input[0]!), DataType.UINT8, 'constant operand quantized like an activation');
  assert.deepEqual(plan.tensors.sort(), ['n2_out', 'n_out', 'x', 'y']);
  assert.equal(report.counts.constants, 1);
  // A mask fill value (-1e9) would take the whole 8-bit range: the Where stays float.
  const m = new ModelBuilder({ opset: 13 });
  const mc = m.input('c', DataType.BOOL, [1, 4]);
  m.output(m.op('Where', [mc, m.input('x', F, [1, 4]), m.initializer('fill', Float32Array.of(-1e9), [])], {}, { name: 'n' }), F);
  const r = quantize(m.build());
  assert.equal(r.report.nodes[0]!.quantized, false);
  assert.match(r.report.nodes[0]!.reason!, /mask/);
  assert.equal(r.graph.nodes.length, 1);
};

function checkFold(op: string, extra: (b: ModelBuilder) => string[]): void {
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', F, [1, 2, 4, 4]);
  const conv = b.op('Conv', [x, b.initializer('W', ramp(2 * 2 * 9), [2, 2, 3, 3])], { kernel_shape: [3, 3] }, { name: 'conv' });
  b.output(b.op(op, [conv, ...extra(b)], {}, { name: 'n' }), F);
  const model = b.build();
  const { graph: g, plan, report } = quantize(model);
  assert.deepEqual(plan.tensors.sort(), ['n_out', 'x'], 'the activation output is calibrated, the Conv output is not');
  const c = node(g, 'conv');
  assert.equal(g.consumers(c.output[0]!)[0]!.opType, op, 'no pair between the Conv and the activation');
  const q = qAfter(g, node(g, 'n'));
  assert.equal(scalarOf(g, q.input[2]!), 0, 'zero point = uint8 minimum, so ORT can drop the activation');
  assert.match(report.nodes.find((r) => r.name === 'n')!.kernel!, /folded into 'conv'/);
  // Symmetric activations: no fold, the Conv output gets its own pair and the activation stays float.
  const sym = quantize(model, { symmetricActivations: true });
  assert.ok(sym.plan.tensors.includes('conv_out'));
  qAfter(sym.graph, node(sym.graph, 'conv'));
  assert.equal(sym.report.nodes.find((r) => r.name === 'n')!.quantized, false);
}

describe('QDQ rule table coverage', () => {
  it('has a one-op case for every op type in the table, and no extra', () => {
    assert.deepEqual(Object.keys(cases).sort(), Object.keys(QDQ_RULES).sort());
  });
  for (const op of Object.keys(QDQ_RULES).sort()) {
    it(`${op}`, () => cases[op]!());
  }
});
