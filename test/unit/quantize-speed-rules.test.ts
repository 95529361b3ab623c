// The speed table (rules/qdq/speed.ts) as the planner applies it: which stems stay float, what the report
// says, and that a float node is only left where ORT cannot fuse it anyway. Pure: synthetic ranges, no ORT.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { SPEED_RULES } from '../../src/passes/rules/qdq/index.js';
import { mulberry32 } from '../../src/rng.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: true };

/** x [N, cin, 32, 32] -> stem Conv (cout, k x k, stride) -> Relu -> 1x1 Conv to 32 -> Relu; optionally x also read by an Add. */
function stemNet(cin: number, cout: number, k: number, stride: number, opts: { secondReader?: boolean } = {}): Model {
  const rng = mulberry32(cin * 1000 + cout * 10 + k);
  const fill = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * 0.3);
  const b = new ModelBuilder({ opset: 13 });
  let x = b.input('x', DataType.FLOAT, ['N', cin, 32, 32]);
  if (opts.secondReader) b.output(b.op('Add', [x, x], {}, { name: 'other_reader' }), DataType.FLOAT);
  const p = k >> 1;
  x = b.op('Conv', [x, b.initializer('sw', fill(cout * cin * k * k), [cout, cin, k, k]), b.initializer('sb', fill(cout), [cout])], { kernel_shape: [k, k], pads: [p, p, p, p], strides: [stride, stride] }, { name: 'stem' });
  x = b.op('Relu', [x], {}, { name: 'stem_relu' });
  x = b.op('Conv', [x, b.initializer('pw_w', fill(32 * cout), [32, cout, 1, 1]), b.initializer('pb', fill(32), [32])], { kernel_shape: [1, 1] }, { name: 'pw' });
  b.output(b.op('Relu', [x], {}, { name: 'pw_relu' }), DataType.FLOAT);
  return b.build();
}

function quantizeWithFakeRanges(model: Model, opts: StaticQuantOptions = OPTS) {
  const plan = planQdq(model, opts);
  const ranges = new Map(plan.tensors.map((t) => [t, { min: 0, max: 4 }]));
  return { plan, ...quantizeStatic(model, ranges, opts) };
}

const stemDecision = (m: Model, opts?: StaticQuantOptions) => quantizeWithFakeRanges(m, opts).report.nodes.find((n) => n.name === 'stem')!;

describe('speed table', () => {
  it('has one row per op type, each a function', () => {
    assert.deepEqual(Object.keys(SPEED_RULES), ['Conv', 'MaxPool']);
    for (const rule of Object.values(SPEED_RULES)) assert.equal(typeof rule, 'function');
  });

  it('keeps a narrow 3x3 stem on the model input float, reports why, and quantizes its output for the next node', () => {
    const m = stemNet(3, 16, 3, 1);
    const { plan, model, report } = quantizeWithFakeRanges(m);
    const stem = report.nodes.find((n) => n.name === 'stem')!;
    assert.equal(stem.quantized, false);
    assert.match(stem.reason!, /^kept float for speed: a 3->16 channel 3x3 stem on the model input/);
    assert.equal(report.nodes.find((n) => n.name === 'stem_relu')!.quantized, false, 'its Relu stays with it');
    assert.equal(report.nodes.find((n) => n.name === 'pw')!.quantized, true);
    // The input image is not quantized; the stem's Relu output is (the pair moved behind the stem).
    assert.ok(!plan.tensors.includes('x'), plan.tensors.join(','));
    assert.ok(plan.tensors.includes('stem_relu_out'), plan.tensors.join(','));
    // The stem reads x and its float weights directly: nothing ORT could fuse into QLinearConv.
    const g = model.graph;
    const stemNode = g.nodes.find((n) => n.name === 'stem')!;
    assert.equal(stemNode.input[0], 'x');
    assert.equal(g.producer(stemNode.input[1]!), undefined, 'float weight initializer, no DequantizeLinear');
    assert.equal(g.initializers.get(stemNode.input[1]!)?.dataType, DataType.FLOAT);
    assert.equal(report.counts.weights, 1, 'only the 1x1 Conv weight is quantized');
  });

  it('quantizes stems the rule does not cover, and every stem with the policy off', () => {
    assert.equal(stemDecision(stemNet(3, 8, 3, 2)).quantized, false, '3->8 3x3/2 (PP-OCR cls)');
    assert.equal(stemDecision(stemNet(4, 16, 3, 1)).quantized, false, 'RGBA');
    assert.equal(stemDecision(stemNet(3, 64, 7, 2)).quantized, true, '7x7 stem: faster in int8');
    assert.equal(stemDecision(stemNet(3, 32, 3, 2)).quantized, true, 'more than 16 filters');
    assert.equal(stemDecision(stemNet(8, 16, 3, 1)).quantized, true, 'not an image input');
    assert.equal(stemDecision(stemNet(3, 16, 3, 1), { ...OPTS, speedPolicy: false }).quantized, true, 'policy off');
    assert.equal(stemDecision(stemNet(3, 16, 3, 1), { ...OPTS, speedPolicy: undefined }).quantized, true, 'off by default in the pass');
  });

  it('quantizes a stem whose input has another reader (its DequantizeLinear would let ORT fuse the stem anyway)', () => {
    const { report } = quantizeWithFakeRanges(stemNet(3, 16, 3, 1, { secondReader: true }));
    assert.equal(report.nodes.find((n) => n.name === 'stem')!.quantized, true);
  });
});

/** x [N, c, 16, 16] -> 1x1 Conv (c) -> depthwise Conv (c, k x k, group c) -> Relu -> 1x1 Conv (c) -> Relu. */
function depthwiseNet(c: number, k: number, group = c): Model {
  const rng = mulberry32(c * 10 + k);
  const fill = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * 0.3);
  const b = new ModelBuilder({ opset: 13 });
  let x = b.input('x', DataType.FLOAT, ['N', c, 16, 16]);
  x = b.op('Relu', [b.op('Conv', [x, b.initializer('w1', fill(c * c), [c, c, 1, 1])], { kernel_shape: [1, 1] }, { name: 'expand' })], {}, { name: 'expand_relu' });
  const p = k >> 1;
  x = b.op('Conv', [x, b.initializer('wd', fill(c * (c / group) * k * k), [c, c / group, k, k])], { kernel_shape: [k, k], pads: [p, p, p, p], group }, { name: 'dw' });
  x = b.op('Relu', [x], {}, { name: 'dw_relu' });
  x = b.op('Relu', [b.op('Conv', [x, b.initializer('w2', fill(c * c), [c, c, 1, 1])], { kernel_shape: [1, 1] }, { name: 'project' })], {}, { name: 'project_relu' });
  b.output(x, DataType.FLOAT);
  return b.build();
}

describe('speed table: depthwise Conv', () => {
  const decisions = (m: Model) => new Map(quantizeWithFakeRanges(m).report.nodes.map((n) => [n.name, n]));

  it('keeps slow depthwise convs float, with their Relu and their reader; the pair moves behind them', () => {
    const d = decisions(depthwiseNet(16, 3));
    assert.match(d.get('dw')!.reason!, /^kept float for speed: a 16-channel 3x3 depthwise Conv/);
    assert.equal(d.get('dw_relu')!.quantized, false);
    assert.match(d.get('project')!.reason!, /comes from node 'dw' kept float for speed/);
    assert.equal(d.get('expand')!.quantized, true, 'the Conv before it stays int8');
  });

  it('follows the measured widths: int8 from 64 channels in multiples of 16, float below or at odd widths', () => {
    const dw = (c: number, k: number, group?: number) => decisions(depthwiseNet(c, k, group)).get('dw')!.quantized;
    assert.equal(dw(64, 3), true);
    assert.equal(dw(96, 5), true);
    assert.equal(dw(48, 3), false);
    assert.equal(dw(48, 5), false);
    assert.equal(dw(88, 3), true, 'padded to 96 channels (passes/pad-channels.ts)');
    assert.equal(dw(200, 5), true, 'padded to 208 channels');
    const unpadded = (c: number, k: number) => new Map(quantizeWithFakeRanges(depthwiseNet(c, k), { ...OPTS, padChannels: false }).report.nodes.map((n) => [n.name, n])).get('dw')!.quantized;
    assert.equal(unpadded(88, 3), false, 'not a multiple of 16');
    assert.equal(unpadded(200, 5), false, 'not a multiple of 16');
    assert.equal(dw(16, 3, 8), true, 'a grouped Conv that is not depthwise');
  });

  it('wasm target: every depthwise Conv stays float, unpadded, with its reader; other grouped convs and the 1x1 before it stay int8', () => {
    const wasm = (c: number, k: number, group?: number) => {
      const r = quantizeWithFakeRanges(depthwiseNet(c, k, group), { ...OPTS, speedTarget: 'wasm' });
      return { d: new Map(r.report.nodes.map((n) => [n.name, n])), dims: r.model.graph.initializers.get('wd')?.dims.map(Number) };
    };
    for (const [c, k] of [[64, 3], [96, 5], [200, 5], [16, 3]] as const) {
      const { d, dims } = wasm(c, k);
      assert.equal(d.get('dw')!.quantized, false, `${c}-channel ${k}x${k}`);
      assert.match(d.get('dw')!.reason!, new RegExp(`^kept float for speed: a ${c}-channel ${k}x${k} depthwise Conv; ONNX Runtime's WebAssembly build`));
      assert.match(d.get('project')!.reason!, /comes from node 'dw' kept float for speed/);
      assert.equal(d.get('expand')!.quantized, true);
      assert.deepEqual(dims, [c, 1, k, k], 'channels not padded for wasm');
    }
    assert.equal(wasm(16, 3, 8).d.get('dw')!.quantized, true, 'a grouped Conv that is not depthwise');
    assert.equal(decisions(depthwiseNet(200, 5)).get('dw')!.quantized, true, 'the cpu target (default) still pads and quantizes it');
  });
});

/** x [N, 8, 16, 16] -> Conv 16 -> (Add 1 ->) MaxPool 2x2 -> (Conv 16 ->) GlobalAveragePool -> Flatten -> Gemm 4. */
function headNet(opts: { addBeforePool: boolean; convAfterPool: boolean }): Model {
  const rng = mulberry32(7);
  const fill = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * 0.3);
  const b = new ModelBuilder({ opset: 13 });
  let x = b.input('x', DataType.FLOAT, ['N', 8, 16, 16]);
  x = b.op('Conv', [x, b.initializer('w1', fill(16 * 8 * 9), [16, 8, 3, 3])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'conv' });
  if (opts.addBeforePool) x = b.op('Add', [x, b.initializer('one', Float32Array.of(1), [])], {}, { name: 'add' });
  x = b.op('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'pool' });
  if (opts.convAfterPool) x = b.op('Conv', [x, b.initializer('w2', fill(16 * 16), [16, 16, 1, 1])], { kernel_shape: [1, 1] }, { name: 'conv2' });
  x = b.op('Flatten', [b.op('GlobalAveragePool', [x], {}, { name: 'gap' })], { axis: 1 }, { name: 'flatten' });
  b.output(b.op('Gemm', [x, b.initializer('wf', fill(4 * 16), [4, 16])], { transB: 1 }, { name: 'fc' }), DataType.FLOAT);
  return b.build();
}

describe('speed table: MaxPool head', () => {
  const decisions = (m: Model) => new Map(quantizeWithFakeRanges(m).report.nodes.map((n) => [n.name, n]));

  it('keeps a MaxPool after the last Conv float with the elementwise ops feeding it; the Conv and the classifier stay int8', () => {
    const d = decisions(headNet({ addBeforePool: true, convAfterPool: false }));
    assert.match(d.get('pool')!.reason!, /^kept float for speed: a MaxPool after the last Conv/);
    assert.match(d.get('add')!.reason!, /^kept float for speed with 'pool' \(MaxPool\)/);
    assert.match(d.get('gap')!.reason!, /comes from node 'pool' kept float for speed/);
    assert.equal(d.get('conv')!.quantized, true);
    assert.equal(d.get('fc')!.quantized, true);
  });

  it('leaves a MaxPool int8 right behind a Conv (ORT runs it as NhwcMaxPool) or with a Conv after it', () => {
    assert.equal(decisions(headNet({ addBeforePool: false, convAfterPool: false })).get('pool')!.quantized, true);
    assert.equal(decisions(headNet({ addBeforePool: true, convAfterPool: true })).get('pool')!.quantized, true);
  });
});
