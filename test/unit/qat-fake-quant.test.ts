// QAT graph passes without ORT: fake quantization placed where static PTQ quantizes (same planner, same
// initial scales), the trainable names, weight-only and exclusions, 4-bit (INT4, opset 21, MSE scales),
// and exportQat: the PTQ format back, with the learned scales as they are.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { attrInt } from '../../src/onnx/attributes.js';
import type { Graph, Model } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { dimsOf, makeTensor, tensorStorage, unpackInt4 } from '../../src/onnx/tensor.js';
import { exportQat, insertFakeQuant, planFakeQuant, type FakeQuantOptions } from '../../src/passes/qat.js';
import { computeQParamsPerAxis } from '../../src/quant/qparams.js';
import { mseClipQParams } from '../../src/passes/quant-weight.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { quantizeLinear } from '../../src/quant/quantize.js';
import { buildDenseCnn, buildSmallCnn, buildTransformer } from '../ort/quantize-static-fixtures.js';

const isErr = (code: string, re?: RegExp) => (e: unknown) => e instanceof LowbitError && e.code === code && (!re || re.test(e.message));

/** Distinct ranges per tensor (so a mix-up of parameters shows). */
const rangesFor = (tensors: string[]) => new Map(tensors.map((t, i) => [t, { min: -0.5 - (i % 7) * 0.25, max: 1 + (i % 5) * 0.5 }]));

/** Values of an initializer as numbers (4-bit unpacked). */
function values(g: Graph, name: string): number[] {
  const t = g.initializer(name)!;
  const raw = tensorStorage(t);
  const count = dimsOf(t).reduce((a, b) => a * b, 1);
  if (t.dataType === DataType.INT4 || t.dataType === DataType.UINT4) return Array.from(unpackInt4(raw as Uint8Array, count, t.dataType === DataType.INT4));
  return Array.from(raw as ArrayLike<number | bigint>, Number);
}

/**
 * A name-independent description of every non-Q/DQ node's inputs: a DequantizeLinear input is described by
 * its integer source (initializer values with type, or the Q it reads: float source, scale, zero point), scale
 * and zero point values and axis; a float input by its producer node or its name.
 */
function signature(m: Model): string[] {
  const g = m.graph;
  const init = (v: string): string => {
    const t = g.initializer(v)!;
    return `${t.dataType}[${dimsOf(t)}]:${values(g, v).join(',')}`;
  };
  const src = (v: string): string => {
    if (!v) return '-';
    const p = g.producer(v);
    if (!p) return g.initializer(v) ? `const(${init(v)})` : `input(${v})`;
    if (p.opType === 'DequantizeLinear' || p.opType === 'QuantizeLinear') {
      const [x, s, z] = p.input;
      return `${p.opType}(${src(x!)}; s=${values(g, s!).join(',')}; zp=${z ? init(z) : '-'}; axis=${attrInt(p, 'axis', 1)})`;
    }
    return `out(${p.name}#${p.output.indexOf(v)})`;
  };
  const lines: string[] = [];
  for (const n of g.nodes) {
    if (n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') continue;
    lines.push(`${n.opType} ${n.name}: ${n.input.map(src).join(' | ')}`);
  }
  for (const o of g.outputs) lines.push(`output ${o.name}: ${src(o.name!)}`);
  return lines.sort();
}

const staticOpts = (bits: 8 | 4): StaticQuantOptions => ({ activationType: 'uint8', weightType: bits === 4 ? 'int4' : 'int8', perChannel: true });

const FIXTURES: [string, () => Model][] = [
  ['small CNN', () => buildSmallCnn(1, { channels: 8 })],
  ['dense CNN', () => buildDenseCnn(2, { channels: 4 })],
  ['transformer', () => buildTransformer(3, { hidden: 16, seq: 4, heads: 2, layers: 1 })],
];

function fakeAndPtq(model: Model, bits: 8 | 4, opts: FakeQuantOptions = {}) {
  const plan = planFakeQuant(model, { weightBits: bits, ...opts });
  const ranges = rangesFor(plan.tensors);
  const fq = insertFakeQuant(plan.model, ranges, { weightBits: bits, ...opts });
  const ptq = quantizeStatic(plan.model, ranges, { ...staticOpts(bits), ...opts });
  return { plan, ranges, fq, ptq };
}

/** Activation pairs: the tensor each QuantizeLinear of a non-constant reads, with its parameters. */
function activationPairs(g: Graph): string[] {
  return g.nodes
    .filter((n) => n.opType === 'QuantizeLinear' && !g.initializer(n.input[0]!))
    .map((n) => `${n.input[0]!.replace(/_float(_\d+)?$/, '')} s=${values(g, n.input[1]!)} zp=${values(g, n.input[2]!)}`)
    .sort();
}

describe('insertFakeQuant: placement and initial parameters are static PTQ\'s', () => {
  for (const [name, build] of FIXTURES) {
    for (const bits of [8, 4] as const) {
      it(`${name}, ${bits}-bit weights`, () => {
        const model = build();
        const { plan, fq, ptq } = fakeAndPtq(model, bits);
        assert.deepEqual(plan.tensors, planQdq(model, staticOpts(bits)).tensors, 'the same tensors are calibrated');
        const g = fq.model.graph;
        // Activation pairs: same tensors, same scales and zero points.
        const pairs = activationPairs(g);
        assert.ok(pairs.length > 3, pairs.join('\n'));
        assert.deepEqual(pairs, activationPairs(ptq.model.graph));
        // Weights: float initializers read through Q -> DQ; no integer weight initializer is left.
        const weightQs = g.nodes.filter((n) => n.opType === 'QuantizeLinear' && g.initializer(n.input[0]!));
        assert.equal(weightQs.length, ptq.report.counts.weights);
        assert.deepEqual(weightQs.map((n) => n.input[0]).sort(), [...fq.weightParams].sort());
        for (const q of weightQs) {
          assert.equal(g.initializer(q.input[0]!)!.dataType, DataType.FLOAT);
          assert.equal(g.initializer(q.input[2]!)!.dataType, bits === 4 ? DataType.INT4 : DataType.INT8);
          assert.ok(g.consumers(q.output[0]!).every((c) => c.opType === 'DequantizeLinear'));
        }
        // Biases stay float (PTQ makes them int32).
        for (const b of fq.biasParams) assert.equal(g.initializer(b)!.dataType, DataType.FLOAT);
        assert.equal(fq.biasParams.length, ptq.report.counts.biases);
        assert.equal(fq.model.opset(''), bits === 4 ? 21 : 13);
        // Exporting the untrained model gives PTQ's model exactly (integers, scales, zero points, biases).
        assert.deepEqual(signature(exportQat(fq.model).model), signature(ptq.model));
      });
    }
  }
});

describe('insertFakeQuant: trainable names', () => {
  it('lists weights, biases and scales as float initializers; zero points are not params', () => {
    const { fq } = fakeAndPtq(buildSmallCnn(1, { channels: 8 }), 8);
    const g = fq.model.graph;
    assert.deepEqual(fq.params, [...fq.weightParams, ...fq.biasParams, ...fq.floatParams, ...fq.weightScaleParams, ...fq.activationScaleParams]);
    assert.deepEqual(fq.floatParams, [], 'every Conv/Gemm is quantized');
    assert.deepEqual(fq.scaleParams, [...fq.weightScaleParams, ...fq.activationScaleParams]);
    assert.equal(new Set(fq.params).size, fq.params.length, 'no name twice');
    for (const p of fq.params) assert.equal(g.initializer(p)?.dataType, DataType.FLOAT, p);
    const scaleInputs = new Set(g.nodes.filter((n) => (n.opType ?? '').endsWith('QuantizeLinear')).map((n) => n.input[1]));
    for (const s of fq.scaleParams) assert.ok(scaleInputs.has(s), `${s} is a Q/DQ scale`);
    const zps = g.nodes.filter((n) => (n.opType ?? '').endsWith('QuantizeLinear')).map((n) => n.input[2]!);
    for (const z of zps) assert.ok(!fq.params.includes(z), `zero point ${z} is not trained`);
    // Softmax's fixed [0, 1] output range is not learned.
    const softmaxQ = g.nodes.find((n) => n.opType === 'QuantizeLinear' && g.producer(n.input[0]!)?.opType === 'Softmax')!;
    assert.ok(!fq.scaleParams.includes(softmaxQ.input[1]!));
    assert.equal(fq.weightParams.length, 7);
    assert.equal(fq.weightScaleParams.length, 7);
  });

  it('initialises weight scales like PTQ: min-max at 8 bits, MSE clipping at 4 bits', () => {
    for (const bits of [8, 4] as const) {
      const { fq } = fakeAndPtq(buildSmallCnn(1, { channels: 8 }), bits);
      const g = fq.model.graph;
      const q = g.nodes.find((n) => n.opType === 'QuantizeLinear' && n.input[0] === fq.weightParams[0])!;
      const w = Float32Array.from(values(g, q.input[0]!));
      const dims = dimsOf(g.initializer(q.input[0]!)!);
      const expected = bits === 8 ? computeQParamsPerAxis(w, dims, 0, 'int8', { symmetric: true }).scale : mseClipQParams(w, dims, 0, 'int4', { symmetric: true }).scale;
      assert.deepEqual(values(g, q.input[1]!), Array.from(expected));
      assert.equal(attrInt(q, 'axis', 1), 0);
    }
  });

  it('weight-only: no activation pairs, nothing to calibrate, float biases', () => {
    const model = buildSmallCnn(1, { channels: 8 });
    const plan = planFakeQuant(model, { quantizeActivations: false });
    assert.deepEqual(plan.tensors, []);
    const fq = insertFakeQuant(plan.model, new Map(), { quantizeActivations: false });
    const g = fq.model.graph;
    assert.deepEqual(activationPairs(g), []);
    assert.deepEqual(fq.activationScaleParams, []);
    assert.equal(fq.weightParams.length, 7);
    for (const n of g.nodes.filter((x) => x.opType === 'Conv' || x.opType === 'Gemm')) {
      assert.equal(g.producer(n.input[1]!)?.opType, 'DequantizeLinear', `${n.name} reads a fake-quantized weight`);
      assert.equal(g.initializer(n.input[2]!)?.dataType, DataType.FLOAT, `${n.name} keeps a float bias`);
    }
    assert.equal(g.nodes.filter((n) => n.opType === 'Mul').length, 1, 'the constant Mul stays');
    const out = exportQat(fq.model);
    assert.equal(out.report.counts.weights, 7);
    assert.equal(out.report.counts.biases, 0, 'no input scale: biases stay float');
  });

  it('excluded nodes keep float weights, trained as plain float params', () => {
    const model = buildSmallCnn(1, { channels: 8 });
    const { fq } = fakeAndPtq(model, 8, { excludeNodes: ['conv3'], excludeOps: ['Gemm'] });
    const g = fq.model.graph;
    const conv3 = g.nodes.find((n) => n.name === 'conv3')!;
    assert.ok(g.initializer(conv3.input[1]!), 'conv3 reads its float weight directly');
    assert.ok(!fq.weightParams.includes(conv3.input[1]!) && !fq.weightParams.includes('fc_W'));
    assert.deepEqual(fq.floatParams, [conv3.input[1], conv3.input[2], 'fc_W', 'fc_B']);
    assert.ok(fq.floatParams.every((p) => fq.params.includes(p)));
    assert.equal(fq.weightParams.length, 5);
    assert.equal(fq.report.nodes.find((n) => n.name === 'conv3')?.reason, 'excluded by name');
  });

  it('follows the speed policy when asked (the placement the quantize() pipeline writes), not at 4 bits', () => {
    const model = buildSmallCnn(1, { channels: 8 });
    const { fq, ptq } = fakeAndPtq(model, 8, { speedPolicy: true });
    const stem = fq.report.nodes.find((n) => n.name === 'conv1')!;
    assert.equal(stem.quantized, false);
    assert.match(stem.reason!, /kept float for speed/);
    assert.deepEqual(activationPairs(fq.model.graph), activationPairs(ptq.model.graph));
    // The narrow stem and the 8-channel depthwise conv (with the pointwise conv that shares its float
    // region) stay float under the policy (passes/rules/qdq/speed.ts); their weights train as plain floats.
    const kept = fq.report.nodes.filter((n) => !n.quantized && /kept float for speed/.test(n.reason ?? '')).map((n) => n.name);
    assert.ok(kept.includes('conv1'), `kept float: ${kept.join(', ')}`);
    assert.equal(fq.weightParams.length + fq.floatParams.length / 2, 7, 'every conv/gemm weight is trained, fake-quantized or float');
    assert.ok(fq.floatParams.includes('conv1_W') && fq.floatParams.includes('conv1_B'), fq.floatParams.join(', '));
    assert.equal(fakeAndPtq(model, 4, { speedPolicy: true }).fq.weightParams.length, 7);
  });

  it('rejects bad options', () => {
    const model = buildSmallCnn(1, { channels: 8 });
    assert.throws(() => planFakeQuant(model, { weightBits: 2 as 8 }), isErr('BAD_OPTION', /weightBits/));
    assert.throws(() => planFakeQuant(model, { activationType: 'int16' as 'int8' }), isErr('BAD_OPTION', /activationType/));
    assert.throws(() => insertFakeQuant(model, new Map(), {}), isErr('BAD_OPTION', /no calibration range/));
  });
});

describe('exportQat', () => {
  /** Overwrites a float initializer (as a trainer writes back learned values). */
  const set = (g: Graph, name: string, f: (v: number, i: number) => number): void => {
    const t = g.initializer(name)!;
    g.setInitializer(makeTensor(name, DataType.FLOAT, dimsOf(t), Float32Array.from(values(g, name), f)));
  };
  const node = (g: Graph, name: string): NodeProto => g.nodes.find((n) => n.name === name)!;
  const dqOf = (g: Graph, v: string): NodeProto => g.producer(v)!;

  for (const bits of [8, 4] as const) {
    it(`uses the learned scales as they are (${bits}-bit): weight integers, activation pairs and the bias scale`, () => {
      const { fq } = fakeAndPtq(buildSmallCnn(1, { channels: 8 }), bits);
      const g = fq.model.graph;
      const conv = node(g, 'conv3');
      const wq = g.producer(dqOf(g, conv.input[1]!).input[0]!)!;
      const [wName, wScale] = [wq.input[0]!, wq.input[1]!];
      const xScale = dqOf(g, conv.input[0]!).input[1]!;
      assert.ok(fq.weightScaleParams.includes(wScale) && fq.activationScaleParams.includes(xScale));
      set(g, wScale, (v, i) => v * (0.8 + 0.05 * i));
      set(g, xScale, (v) => v * 1.3);
      set(g, wName, (v) => v + 0.01);
      const learned = { w: Float32Array.from(values(g, wName)), ws: Float32Array.from(values(g, wScale)), xs: values(g, xScale)[0]! };

      const { model, report } = exportQat(fq.model);
      const e = model.graph;
      const c = node(e, 'conv3');
      const wdq = dqOf(e, c.input[1]!);
      assert.deepEqual(values(e, wdq.input[1]!), Array.from(learned.ws), 'the DQ keeps the learned weight scale');
      const dims = dimsOf(e.initializer(wdq.input[0]!)!);
      const expected = quantizeLinear(learned.w, learned.ws, new Array(learned.ws.length).fill(0), bits === 4 ? 'int4' : 'int8', { axis: 0, dims });
      assert.deepEqual(values(e, wdq.input[0]!), Array.from(expected), 'weights quantized with the learned scale');
      assert.equal(e.initializer(wdq.input[0]!)!.dataType, bits === 4 ? DataType.INT4 : DataType.INT8);
      assert.equal(values(e, dqOf(e, c.input[0]!).input[1]!)[0], learned.xs, 'activation pair keeps the learned scale');
      const bdq = dqOf(e, c.input[2]!);
      assert.equal(e.initializer(bdq.input[0]!)!.dataType, DataType.INT32);
      const bScale = values(e, bdq.input[1]!);
      bScale.forEach((s, k) => assert.equal(s, Math.fround(learned.xs * learned.ws[k]!), `bias scale ${k} = input scale × weight scale`));
      assert.deepEqual(report.weightTypes, { [bits === 4 ? 'int4' : 'int8']: 7 });
      assert.equal(report.counts.biases, 7);
      // No float weights or biases are left behind.
      assert.ok(!e.initializer(wName) && !fq.biasParams.some((b) => e.initializer(b)));
      assert.equal(e.nodes.filter((n) => n.opType === 'QuantizeLinear').length, activationPairs(g).length);
    });
  }

  it('folds the scale of a rescaled tensor (attention Mul) from the learned source scale', () => {
    const { fq, ptq } = fakeAndPtq(buildTransformer(3, { hidden: 16, seq: 4, heads: 2, layers: 1 }), 8);
    const g = fq.model.graph;
    const mul = g.nodes.find((n) => n.opType === 'Mul' && g.consumers(n.output[0]!).every((c) => c.opType === 'DequantizeLinear'))!;
    assert.ok(mul, 'the rescale scale is a Mul of the source scale');
    const source = mul.input[0]!;
    assert.ok(fq.activationScaleParams.includes(source));
    assert.equal(ptq.report.counts.rescales, 1);
    set(g, source, (v) => v * 2);
    const factor = values(g, mul.input[1]!)[0]!;
    const { model, report } = exportQat(fq.model);
    assert.equal(report.counts.scales, 1);
    const e = model.graph;
    assert.ok(!e.nodes.some((n) => n.opType === 'Mul'), 'no Mul is left: the attention scale is a DQ of the QK integers');
    assert.deepEqual(values(e, mul.output[0]!), [Math.fround(values(g, source)[0]! * factor)]);
  });

  it('refuses a learned scale that is not positive, naming it', () => {
    const { fq } = fakeAndPtq(buildSmallCnn(1, { channels: 8 }), 8);
    const s = fq.activationScaleParams[2]!;
    set(fq.model.graph, s, () => -0.001);
    assert.throws(() => exportQat(fq.model), isErr('NON_FINITE', new RegExp(`scale '${s}'.*-0\\.001`)));
  });

  it('does not modify its input', () => {
    const { fq } = fakeAndPtq(buildSmallCnn(1, { channels: 8 }), 4);
    const before = signature(fq.model);
    exportQat(fq.model);
    assert.deepEqual(signature(fq.model), before);
  });
});

describe('4-bit fake quantization needs opset 21', () => {
  it('raises opset 13 to 21 (Reduce* axes become inputs) or refuses ops whose meaning changed', () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, ['N', 4]);
    const y = b.op('MatMul', [x, b.initializer('W', Float32Array.from({ length: 16 }, (_, i) => Math.sin(i)), [4, 4])], {}, { name: 'mm' });
    b.output(b.op('ReduceMean', [y], { axes: [1], keepdims: 1 }, { name: 'mean' }), DataType.FLOAT);
    const plan = planFakeQuant(b.build(), { weightBits: 4 });
    assert.equal(plan.model.opset(''), 21);
    const mean = plan.model.graph.nodes.find((n) => n.name === 'mean')!;
    assert.deepEqual(values(plan.model.graph, mean.input[1]!), [1], 'axes moved to input 1 (opset 18)');
    assert.equal(planFakeQuant(b.build(), { weightBits: 8 }).model.opset(''), 13, '8-bit stays at 13');

    const c = new ModelBuilder({ opset: 13 });
    const z = c.input('z', DataType.FLOAT, [1, 2, 4, 4]);
    const rois = c.initializer('rois', Float32Array.of(0, 0, 3, 3), [1, 4]);
    const idx = c.initializer('idx', BigInt64Array.of(0n), [1]);
    c.output(c.op('RoiAlign', [z, rois, idx], {}, { name: 'roi' }), DataType.FLOAT);
    assert.throws(() => planFakeQuant(c.build(), { weightBits: 4 }), isErr('UNSUPPORTED_OPSET', /int4 weights need opset 21.*RoiAlign/));
  });
});
