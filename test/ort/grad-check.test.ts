// Every gradient rule against central finite differences in ORT, one case per rule and per attribute
// variant that changes the math; plus perturbed rules that the same check must catch.
// Tolerance: max |g - g_fd| / (|g| + |g_fd| + 1e-3) < 2e-2 (float32 ORT, float64 loss sum, eps 1e-2).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type AttrValue, floatAttr } from '../../src/onnx/attributes.js';
import { DataType } from '../../src/onnx/proto.js';
import { GRAD_RULES } from '../../src/grad/rules/index.js';
import type { GradRule } from '../../src/grad/types.js';
import { TOLERANCE, gradCheck, type GradCase } from './grad-harness.js';

const unaryCase = (op: string, gen: 'normal' | 'positive' | 'away' = 'normal', attrs: Record<string, AttrValue> = {}): GradCase => ({
  name: `${op}`,
  build: (b, p) => b.op(op, [p('x', { dims: [2, 3, 4], gen })], attrs),
});

const conv = (name: string, x: number[], w: number[], attrs: Record<string, unknown>, bias = false, opset?: number): GradCase => ({
  name,
  ...(opset ? { opset } : {}),
  build: (b, p) => {
    const ins = [p('x', { dims: x }), p('w', { dims: w })];
    if (bias) ins.push(p('b', { dims: [w[0]!] }));
    return b.op('Conv', ins, attrs as never);
  },
});

const pool = (name: string, op: string, x: number[], attrs: Record<string, unknown>, opset?: number): GradCase => ({
  name,
  ...(opset ? { opset } : {}),
  build: (b, p) => b.op(op, [p('x', { dims: x, gen: 'grid' })], attrs as never),
});

export const CASES: GradCase[] = [
  // Elementwise arithmetic, with broadcasting on either side.
  { name: 'Add same shape', build: (b, p) => b.op('Add', [p('a', { dims: [2, 3] }), p('b', { dims: [2, 3] })]) },
  { name: 'Add broadcast', build: (b, p) => b.op('Add', [p('a', { dims: [2, 3, 4] }), p('b', { dims: [3, 1] })]) },
  { name: 'Sub broadcast', build: (b, p) => b.op('Sub', [p('a', { dims: [2, 3] }), p('b', { dims: [3] })]) },
  { name: 'Mul broadcast both', build: (b, p) => b.op('Mul', [p('a', { dims: [2, 1, 4] }), p('b', { dims: [3, 1] })]) },
  { name: 'Div broadcast', build: (b, p) => b.op('Div', [p('a', { dims: [2, 3] }), p('b', { dims: [1, 3], gen: 'away' })]) },
  { name: 'Pow', build: (b, p) => b.op('Pow', [p('a', { dims: [2, 3], gen: 'positive' }), p('b', { dims: [3], gen: 'positive' })]) },
  {
    name: 'Pow int exponent',
    build: (b, p) => b.op('Pow', [p('a', { dims: [2, 3] }), b.initializer('e', BigInt64Array.of(3n), [])]),
  },
  { name: 'Sum variadic broadcast', build: (b, p) => b.op('Sum', [p('a', { dims: [2, 3] }), p('b', { dims: [3] }), p('c', { dims: [2, 1] })]) },
  { name: 'Mean variadic', build: (b, p) => b.op('Mean', [p('a', { dims: [2, 3] }), p('b', { dims: [1, 3] })]) },
  {
    name: 'Where',
    build: (b, p) => b.op('Where', [b.initializer('cond', Uint8Array.of(1, 0, 1, 0, 0, 1), [2, 3], DataType.BOOL), p('a', { dims: [2, 3] }), p('b', { dims: [3] })]),
  },
  unaryCase('Neg'),
  unaryCase('Exp'),
  unaryCase('Log', 'positive'),
  unaryCase('Sqrt', 'positive'),
  unaryCase('Reciprocal', 'away'),
  unaryCase('Abs', 'away'),
  unaryCase('Erf'),
  // Activations.
  unaryCase('Relu', 'away'),
  unaryCase('LeakyRelu', 'away', { alpha: 0.2 }),
  unaryCase('Sigmoid'),
  unaryCase('Tanh'),
  unaryCase('Softplus'),
  {
    name: 'Clip min and max',
    build: (b, p) => b.op('Clip', [p('x', { dims: [2, 3, 4], gen: (r) => r.uniform(-2, 2) }), p('lo', { dims: [], gen: () => -0.55 }), p('hi', { dims: [], gen: () => 0.77 })]),
  },
  { name: 'Clip min only', build: (b, p) => b.op('Clip', [p('x', { dims: [3, 4], gen: 'away' }), p('lo', { dims: [], gen: () => 0.1 })]) },
  { name: 'Softmax axis -1', build: (b, p) => b.op('Softmax', [p('x', { dims: [2, 3, 4] })]) },
  { name: 'Softmax axis 1', build: (b, p) => b.op('Softmax', [p('x', { dims: [2, 3, 4] })], { axis: 1 }) },
  { name: 'LogSoftmax axis -1', build: (b, p) => b.op('LogSoftmax', [p('x', { dims: [3, 5] })]) },
  { name: 'LogSoftmax axis 0', build: (b, p) => b.op('LogSoftmax', [p('x', { dims: [3, 5] })], { axis: 0 }) },
  // Gemm and MatMul.
  { name: 'Gemm', build: (b, p) => b.op('Gemm', [p('a', { dims: [3, 4] }), p('b', { dims: [4, 5] }), p('c', { dims: [5] })]) },
  { name: 'Gemm no C', build: (b, p) => b.op('Gemm', [p('a', { dims: [3, 4] }), p('b', { dims: [4, 5] })]) },
  { name: 'Gemm transA', build: (b, p) => b.op('Gemm', [p('a', { dims: [4, 3] }), p('b', { dims: [4, 5] }), p('c', { dims: [3, 5] })], { transA: 1 }) },
  { name: 'Gemm transB', build: (b, p) => b.op('Gemm', [p('a', { dims: [3, 4] }), p('b', { dims: [5, 4] }), p('c', { dims: [3, 1] })], { transB: 1 }) },
  {
    name: 'Gemm transA transB alpha beta',
    build: (b, p) => b.op('Gemm', [p('a', { dims: [4, 3] }), p('b', { dims: [5, 4] }), p('c', { dims: [] })], { transA: 1, transB: 1, alpha: 0.7, beta: floatAttr(2) }),
  },
  { name: 'MatMul 2-D', build: (b, p) => b.op('MatMul', [p('a', { dims: [3, 4] }), p('b', { dims: [4, 5] })]) },
  { name: 'MatMul batched', build: (b, p) => b.op('MatMul', [p('a', { dims: [2, 3, 4] }), p('b', { dims: [2, 4, 5] })]) },
  { name: 'MatMul broadcast B', build: (b, p) => b.op('MatMul', [p('a', { dims: [2, 3, 4] }), p('b', { dims: [4, 5] })]) },
  { name: 'MatMul broadcast batch 1', build: (b, p) => b.op('MatMul', [p('a', { dims: [2, 1, 3, 4] }), p('b', { dims: [3, 4, 2] })]) },
  { name: 'MatMul 1-D A', build: (b, p) => b.op('MatMul', [p('a', { dims: [4] }), p('b', { dims: [2, 4, 5] })]) },
  { name: 'MatMul 1-D B', build: (b, p) => b.op('MatMul', [p('a', { dims: [2, 3, 4] }), p('b', { dims: [4] })]) },
  { name: 'MatMul 1-D both', build: (b, p) => b.op('MatMul', [p('a', { dims: [4] }), p('b', { dims: [4] })]) },
  // Conv.
  conv('Conv 2-D', [2, 3, 5, 5], [4, 3, 3, 3], {}),
  conv('Conv pads stride 2 bias', [2, 3, 6, 6], [4, 3, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }, true),
  conv('Conv stride 2 odd size', [1, 2, 7, 6], [3, 2, 2, 3], { strides: [2, 2] }),
  conv('Conv asymmetric pads stride', [1, 2, 5, 6], [2, 2, 3, 2], { pads: [0, 1, 2, 0], strides: [2, 3] }),
  conv('Conv dilations', [1, 2, 7, 7], [2, 2, 3, 3], { dilations: [2, 2], pads: [1, 1, 1, 1] }),
  conv('Conv group 2', [2, 4, 5, 5], [6, 2, 3, 3], { group: 2, pads: [1, 1, 1, 1] }, true),
  conv('Conv depthwise stride 2', [2, 3, 6, 6], [3, 1, 3, 3], { group: 3, strides: [2, 2], pads: [1, 1, 1, 1] }, true),
  conv('Conv 1-D', [2, 3, 9], [4, 3, 3], { strides: [2], pads: [1, 0] }, true),
  conv('Conv auto_pad SAME_UPPER', [1, 2, 5, 5], [2, 2, 2, 2], { auto_pad: 'SAME_UPPER', strides: [2, 2] }),
  conv('Conv auto_pad SAME_LOWER', [1, 2, 4, 4], [2, 2, 3, 3], { auto_pad: 'SAME_LOWER' }),
  ...[17, 13].map((opset): GradCase => ({
    // Symbolic batch and spatial dims: dX takes the Slice path, the grouped dW the run-time shapes
    // (Shape with start/end from opset 15, Shape + Slice before).
    name: `Conv group 2 dynamic shapes opset ${opset}`,
    opset,
    feeds: { x: { dtype: 'float32', shape: [2, 4, 7, 6], data: Float32Array.from({ length: 336 }, (_, i) => Math.sin(i * 1.3)) } },
    build: (b, p) => {
      const x = b.op('Mul', [b.input('x', DataType.FLOAT, ['N', 4, 'H', 'W']), p('s', { dims: [1], gen: 'positive' })]);
      return b.op('Conv', [x, p('w', { dims: [4, 2, 3, 3] }), p('b', { dims: [4] })], { group: 2, strides: [2, 2], pads: [1, 0, 1, 1] });
    },
  })),
  // Pooling.
  pool('MaxPool 2x2 stride 2', 'MaxPool', [2, 2, 4, 4], { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('MaxPool 2x2 stride 2 opset 13', 'MaxPool', [1, 2, 4, 6], { kernel_shape: [2, 2], strides: [2, 2] }, 13),
  pool('MaxPool 3x3 overlapping pads', 'MaxPool', [2, 2, 5, 5], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
  pool('MaxPool 1-D', 'MaxPool', [2, 3, 7], { kernel_shape: [3], strides: [2] }),
  pool('AveragePool 2x2 stride 2', 'AveragePool', [2, 2, 4, 4], { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('AveragePool 3x3 pads exclude', 'AveragePool', [1, 2, 5, 6], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }),
  pool('AveragePool 3x3 pads include', 'AveragePool', [1, 2, 5, 6], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 0, 1, 1], count_include_pad: 1 }),
  pool('AveragePool SAME_UPPER', 'AveragePool', [1, 2, 5, 5], { kernel_shape: [2, 2], strides: [2, 2], auto_pad: 'SAME_UPPER' }),
  pool('GlobalAveragePool', 'GlobalAveragePool', [2, 3, 3, 4], {}),
  // Reductions.
  { name: 'ReduceSum axes keepdims 0', build: (b, p) => b.op('ReduceSum', [p('x', { dims: [2, 3, 4] }), b.initializer('axes', BigInt64Array.of(1n, -1n), [2])], { keepdims: 0 }) },
  { name: 'ReduceSum all', build: (b, p) => b.op('ReduceSum', [p('x', { dims: [2, 3] })]) },
  { name: 'ReduceMean attr axes opset 13', opset: 13, build: (b, p) => b.op('ReduceMean', [p('x', { dims: [2, 3, 4] })], { axes: [0, 2], keepdims: 0 }) },
  { name: 'ReduceMean input axes opset 18', opset: 18, build: (b, p) => b.op('ReduceMean', [p('x', { dims: [2, 3, 4] }), b.initializer('axes', BigInt64Array.of(1n), [1])]) },
  { name: 'ReduceMean all', build: (b, p) => b.op('ReduceMean', [p('x', { dims: [2, 3] })], { keepdims: 0 }) },
  // Data movement.
  { name: 'Reshape', build: (b, p) => b.op('Reshape', [p('x', { dims: [2, 3, 4] }), b.initializer('shape', BigInt64Array.of(0n, -1n), [2])]) },
  { name: 'Flatten', build: (b, p) => b.op('Flatten', [p('x', { dims: [2, 3, 2] })], { axis: 2 }) },
  { name: 'Transpose perm', build: (b, p) => b.op('Transpose', [p('x', { dims: [2, 3, 4] })], { perm: [1, 2, 0] }) },
  { name: 'Transpose default', build: (b, p) => b.op('Transpose', [p('x', { dims: [2, 3, 4] })]) },
  { name: 'Squeeze', build: (b, p) => b.op('Squeeze', [p('x', { dims: [2, 1, 3] }), b.initializer('axes', BigInt64Array.of(1n), [1])]) },
  { name: 'Unsqueeze', build: (b, p) => b.op('Unsqueeze', [p('x', { dims: [2, 3] }), b.initializer('axes', BigInt64Array.of(0n, 3n), [2])]) },
  { name: 'Concat axis 1', build: (b, p) => b.op('Concat', [p('a', { dims: [2, 1, 3] }), p('b', { dims: [2, 3, 3] }), p('c', { dims: [2, 2, 3] })], { axis: 1 }) },
  { name: 'Concat axis -1', build: (b, p) => b.op('Concat', [p('a', { dims: [2, 2] }), p('b', { dims: [2, 3] })], { axis: -1 }) },
  {
    name: 'Split sizes input',
    build: (b, p) => b.op('Split', [p('x', { dims: [2, 5] }), b.initializer('split', BigInt64Array.of(2n, 3n), [2])], { axis: 1 }, { outputs: 2 }),
  },
  {
    name: 'Split one output unused (opset 18 num_outputs)',
    opset: 18,
    build: (b, p) => b.op('Split', [p('x', { dims: [6, 2] })], { num_outputs: 3 }, { outputs: 3 }).slice(1),
  },
  {
    name: 'Slice steps and negative axis',
    build: (b, p) => b.op('Slice', [p('x', { dims: [3, 7] }), b.initializer('st', BigInt64Array.of(1n), [1]), b.initializer('en', BigInt64Array.of(100n), [1]), b.initializer('ax', BigInt64Array.of(-1n), [1]), b.initializer('sp', BigInt64Array.of(2n), [1])]),
  },
  {
    name: 'Slice negative step',
    build: (b, p) => b.op('Slice', [p('x', { dims: [5, 3] }), b.initializer('st', BigInt64Array.of(-1n), [1]), b.initializer('en', BigInt64Array.of(0n), [1]), b.initializer('ax', BigInt64Array.of(0n), [1]), b.initializer('sp', BigInt64Array.of(-2n), [1])]),
  },
  { name: 'Gather repeated indices', build: (b, p) => b.op('Gather', [p('x', { dims: [4, 3] }), b.initializer('i', BigInt64Array.of(0n, 2n, 2n, -1n, 0n), [5])]) },
  { name: 'Gather axis 1 2-D indices', build: (b, p) => b.op('Gather', [p('x', { dims: [2, 4] }), b.initializer('i', BigInt64Array.of(1n, 3n, 1n, 0n), [2, 2])], { axis: 1 }) },
  { name: 'Expand', build: (b, p) => b.op('Expand', [p('x', { dims: [3, 1] }), b.initializer('shape', BigInt64Array.of(2n, 3n, 4n), [3])]) },
  { name: 'Cast via float64', build: (b, p) => b.op('Cast', [b.op('Cast', [p('x', { dims: [2, 3] })], { to: DataType.DOUBLE })], { to: DataType.FLOAT }) },
  { name: 'Identity', build: (b, p) => b.op('Identity', [p('x', { dims: [2, 3] })]) },
  { name: 'Dropout inference', build: (b, p) => b.op('Dropout', [p('x', { dims: [2, 3] })]) },
  // Normalization.
  {
    name: 'BatchNormalization training',
    opset: 15,
    build: (b, p) => {
      const ins = [p('x', { dims: [3, 2, 2, 3] }), p('scale', { dims: [2] }), p('bias', { dims: [2] }), p('mean', { dims: [2], frozen: true }), p('var', { dims: [2], gen: 'positive', frozen: true })];
      return b.op('BatchNormalization', ins, { training_mode: 1, epsilon: 1e-3 }, { outputs: 3 })[0]!;
    },
  },
  {
    name: 'BatchNormalization training rank 2',
    opset: 15,
    build: (b, p) => {
      const ins = [p('x', { dims: [5, 3] }), p('scale', { dims: [3] }), p('bias', { dims: [3] }), p('mean', { dims: [3], frozen: true }), p('var', { dims: [3], gen: 'positive', frozen: true })];
      return b.op('BatchNormalization', ins, { training_mode: 1 }, { outputs: 3 })[0]!;
    },
  },
  {
    name: 'BatchNormalization inference',
    build: (b, p) => b.op('BatchNormalization', [p('x', { dims: [2, 3, 2, 2] }), p('scale', { dims: [3] }), p('bias', { dims: [3] }), p('mean', { dims: [3] }), p('var', { dims: [3], gen: 'positive' })]),
  },
  { name: 'LayerNormalization axis -1', build: (b, p) => b.op('LayerNormalization', [p('x', { dims: [2, 3, 4] }), p('scale', { dims: [4] }), p('bias', { dims: [4] })]) },
  { name: 'LayerNormalization axis 1 no bias', build: (b, p) => b.op('LayerNormalization', [p('x', { dims: [2, 3, 4] }), p('scale', { dims: [3, 4] })], { axis: 1 }) },
  // Dynamic shapes: the broadcast is undone with run-time Shape nodes.
  {
    name: 'Add broadcast unknown dims',
    feeds: { x: { dtype: 'float32', shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) } },
    build: (b, p) => b.op('Mul', [b.input('x', DataType.FLOAT, undefined as never), b.op('Add', [p('a', { dims: [2, 3] }), p('b', { dims: [3] })])]),
  },
];

describe('gradient check: every rule against central finite differences', () => {
  const worst: string[] = [];
  for (const c of CASES) {
    it(c.name, async (t) => {
      const r = await gradCheck(c);
      const detail = [...r.worst].map(([p, e]) => `${p} ${e.toExponential(1)}`).join(', ');
      worst.push(`${c.name}: ${r.max.toExponential(2)}`);
      t.diagnostic(`worst relative error ${detail} (${r.runs} runs)`);
      assert.ok(r.worst.size > 0);
      assert.ok(r.max < TOLERANCE, `${c.name}: ${detail}`);
    });
  }

  it('covers every rule in the table', () => {
    const checked = new Set<string>();
    for (const c of CASES) checked.add(c.name.split(' ')[0]!);
    const untested = Object.keys(GRAD_RULES).filter((op) => !checked.has(op));
    // QuantizeLinear/DequantizeLinear (STE/LSQ: not smooth) are checked against reference formulas in grad-special.
    assert.deepEqual(untested.sort(), ['DequantizeLinear', 'QuantizeLinear']);
  });
});

describe('gradient check catches wrong rules', () => {
  const flipped = (rule: GradRule): GradRule => ({
    ...rule,
    grad: (n, dy, c) => rule.grad(n, dy, c).map((g) => (g ? c.emit('Neg', [g]) : g)),
  });

  // (Not Mul: the check's own loss multiplies by R, so a flipped Mul would flip twice and cancel.)
  it('a Sub rule with a flipped sign', async () => {
    const c = CASES.find((k) => k.name === 'Sub broadcast')!;
    const r = await gradCheck(c, { ...GRAD_RULES, Sub: flipped(GRAD_RULES.Sub!) });
    assert.ok(r.max > 0.9, `max relative error ${r.max}`);
  });

  it('a Gemm rule that ignores transB', async () => {
    const gemm = GRAD_RULES.Gemm!;
    const dropped: GradRule = {
      ...gemm,
      grad: (n, dy, c) => gemm.grad({ ...n, attribute: n.attribute.filter((a) => a.name !== 'transB') }, dy, c),
    };
    const c: GradCase = { name: 'Gemm square transB', build: (b, p) => b.op('Gemm', [p('a', { dims: [3, 3] }), p('b', { dims: [3, 3] })], { transB: 1 }) };
    assert.ok((await gradCheck(c)).max < TOLERANCE);
    const r = await gradCheck(c, { ...GRAD_RULES, Gemm: dropped });
    assert.ok(r.max > 0.1, `max relative error ${r.max}`);
  });

  it('a Conv rule whose weight gradient skips the stride', async () => {
    const rule = GRAD_RULES.Conv!;
    const noStride: GradRule = {
      ...rule,
      grad: (n, dy, c) => {
        const real = rule.grad(n, dy, c);
        const fake = rule.grad({ ...n, attribute: n.attribute.filter((a) => a.name !== 'strides') }, dy, c);
        return [real[0]!, fake[1]!];
      },
    };
    const c = conv('Conv stride 2', [1, 2, 6, 6], [2, 2, 2, 2], { strides: [2, 2] });
    assert.ok((await gradCheck(c)).max < TOLERANCE);
    const r = await gradCheck(c, { ...GRAD_RULES, Conv: noStride }).catch(() => undefined);
    assert.ok(r === undefined || r.max > 0.1, `max relative error ${r?.max}`);
  });
});
