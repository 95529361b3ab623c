// Whole training graphs in ORT: a digit-sized CNN (Conv-BN-Relu-MaxPool x2, Flatten, Gemm, softmax
// cross-entropy from LogSoftmax + Mul + ReduceSum + ReduceMean + Neg) checked against finite
// differences, then trained with plain SGD, in float and with fake quantization (QAT).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTrainingGraph } from '../../src/grad/engine.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { gradCheck, type ParamSpec } from './grad-harness.js';

const BATCH = 8;
const CLASSES = 4;

/** A batch of 8x8 "digits": class k lights up quadrant k, plus noise. */
function batch(seed: number): Record<string, NdArray> {
  const rng = mulberry32(seed);
  const x = new Float32Array(BATCH * 64);
  const labels = new Float32Array(BATCH * CLASSES);
  for (let n = 0; n < BATCH; n++) {
    const k = n % CLASSES;
    labels[n * CLASSES + k] = 1;
    for (let i = 0; i < 64; i++) {
      const [r, c] = [Math.floor(i / 8), i % 8];
      const lit = Math.floor(r / 4) * 2 + Math.floor(c / 4) === k;
      x[n * 64 + i] = (lit ? 1 : 0) + 0.3 * rng.normal();
    }
  }
  return { x: { dtype: 'float32', shape: [BATCH, 1, 8, 8], data: x }, labels: { dtype: 'float32', shape: [BATCH, CLASSES], data: labels } };
}

type Param = (name: string, spec: ParamSpec) => string;

/**
 * The CNN; `check` returns the per-sample cross-entropy terms instead of the loss (the gradient check sums
 * them in float64, as float32 sums would drown small gradients in rounding) and freezes the Conv biases
 * (before a training-mode BatchNormalization their gradient is exactly 0); `smooth` uses Tanh and
 * AveragePool instead of Relu and MaxPool. With `qat`, weights get per-channel int8 fake quantization and the Relu outputs uint8
 * per-tensor fake quantization, every scale a trained param.
 */
function buildCnn(b: ModelBuilder, p: Param, qat: boolean, check = false, smooth = false, running?: [string, string][]): string {
  const he = (fanIn: number): ParamSpec['gen'] => (r) => r.normal() * Math.sqrt(2 / fanIn);
  const weight = (name: string, dims: number[], fanIn: number): string => {
    const w = p(name, { dims, gen: he(fanIn) });
    if (!qat) return w;
    const s = p(`${name}_scale`, { dims: [dims[0]!], gen: () => 0.02 });
    const zp = b.initializer(`${name}_zp`, new Int8Array(dims[0]!), [dims[0]!]);
    return b.op('DequantizeLinear', [b.op('QuantizeLinear', [w, s, zp], { axis: 0 }), s, zp], { axis: 0 });
  };
  const act = (v: string): string => {
    if (!qat) return v;
    const s = p('act_scale', { dims: [], gen: () => 0.02 });
    const zp = b.initializer('act_zp', Uint8Array.of(0), [], DataType.UINT8);
    return b.op('DequantizeLinear', [b.op('QuantizeLinear', [v, s, zp]), s, zp]);
  };
  const block = (x: string, cin: number, cout: number, i: number): string => {
    const w = weight(`conv${i}_w`, [cout, cin, 3, 3], cin * 9);
    const conv = b.op('Conv', [x, w, p(`conv${i}_b`, { dims: [cout], gen: () => 0, frozen: check })], { pads: [1, 1, 1, 1] });
    const [mean, variance] = [p(`bn${i}_mean`, { dims: [cout], gen: () => 0, frozen: true }), p(`bn${i}_var`, { dims: [cout], gen: () => 1, frozen: true })];
    const [bn, runMean, runVar] = b.op('BatchNormalization', [conv, p(`bn${i}_scale`, { dims: [cout], gen: () => 1 }), p(`bn${i}_bias`, { dims: [cout], gen: () => 0 }), mean, variance],
      { training_mode: 1 }, { outputs: 3 }) as [string, string, string];
    running?.push([mean, runMean], [variance, runVar]);
    return b.op(smooth ? 'AveragePool' : 'MaxPool', [act(b.op(smooth ? 'Tanh' : 'Relu', [bn]))], { kernel_shape: [2, 2], strides: [2, 2] });
  };
  const x = b.input('x', DataType.FLOAT, ['N', 1, 8, 8]);
  const labels = b.input('labels', DataType.FLOAT, ['N', CLASSES]);
  const features = b.op('Flatten', [block(block(x, 1, 4, 1), 4, 8, 2)]);
  const logits = b.op('Gemm', [features, weight('fc_w', [CLASSES, 32], 32), p('fc_b', { dims: [CLASSES], gen: () => 0 })], { transB: 1 });
  const terms = b.op('Mul', [b.op('LogSoftmax', [logits]), labels]);
  if (check) return terms;
  const picked = b.op('ReduceSum', [terms, b.initializer('axes', BigInt64Array.of(1n), [1])], { keepdims: 0 });
  return b.op('Neg', [b.op('ReduceMean', [picked], { keepdims: 0 })]);
}

/**
 * Builds the model with its initial params; returns the training graph, the initial param values and the
 * BatchNormalization running statistics (state inputs, each with the output that updates it).
 */
function trainable(qat: boolean) {
  const b = new ModelBuilder({ opset: 17 });
  const rng = mulberry32(3);
  const init = new Map<string, NdArray>();
  const state = new Map<string, NdArray>();
  const p: Param = (name, spec) => {
    const count = spec.dims.reduce((a, c) => a * c, 1);
    const gen = spec.gen;
    const data = Float32Array.from({ length: count }, (_, i) => (typeof gen === 'function' ? gen(rng, i) : rng.normal()));
    const unique = b.initializer(name, data, spec.dims);
    (spec.frozen ? state : init).set(unique, { dtype: 'float32', shape: spec.dims, data });
    return unique;
  };
  const running: [string, string][] = [];
  const loss = buildCnn(b, p, qat, false, false, running);
  b.output(loss, DataType.FLOAT, []);
  for (const [, out] of running) b.output(out, DataType.FLOAT);
  const train = buildTrainingGraph(b.build(), { loss, params: [...init.keys()], state: running.map(([input]) => input) });
  return { train, init, state, running, loss };
}

/** Plain SGD on one fixed batch, running statistics fed back; returns the loss before each step. */
async function sgd(qat: boolean, steps: number, lr: number): Promise<{ losses: number[]; state: Map<string, NdArray> }> {
  const { train, init, state, running, loss } = trainable(qat);
  const s = await Session.create(encodeModel(train.model.toProto()), { threads: 1 });
  try {
    const data = batch(21);
    const params = new Map([...init].map(([k, v]) => [k, { ...v, data: Float32Array.from(v.data as Float32Array) }]));
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) {
      const out = await s.run({ ...data, ...Object.fromEntries(params), ...Object.fromEntries(state) });
      losses.push((out[loss]!.data as Float32Array)[0]!);
      for (const [input, output] of running) state.set(input, out[output]!);
      for (const [name, value] of params) {
        const g = out[train.gradients.get(name)!]!.data as Float32Array;
        assert.ok(g.every(Number.isFinite), `gradient of ${name} is finite`);
        const w = value.data as Float32Array;
        // Scales train with a smaller step (a 0.02 scale must stay positive).
        const rate = name.endsWith('_scale') && qat && !name.startsWith('bn') ? lr * 1e-3 : lr;
        for (let i = 0; i < w.length; i++) w[i]! -= rate * g[i]!;
      }
    }
    return { losses, state };
  } finally {
    await s.release();
  }
}

describe('digit CNN training graph', () => {
  // The composite check: float32 finite differences through two training-mode BatchNormalizations are
  // good to ~1e-4 of the largest gradient when every op is smooth...
  it('matches finite differences for every param (smooth variant: Tanh, AveragePool)', async (t) => {
    const r = await gradCheck({ name: 'smooth CNN', feeds: batch(4), build: (b, p) => buildCnn(b, p, false, true, true) });
    t.diagnostic(`max |g - fd| ${r.maxAbs.toExponential(2)}, max |fd| ${r.maxGrad.toFixed(2)}, ${r.runs} runs`);
    assert.equal(r.worst.size, 8);
    assert.ok(r.maxAbs < 1e-3 * r.maxGrad, `max |g - fd| ${r.maxAbs} vs max |fd| ${r.maxGrad}`);
  });

  // ...while with ~2000 Relu/MaxPool kinks some perturbations cross a kink (or switch a window's max),
  // which makes those few numeric gradients meaningless; a wrong rule would miss nearly every element.
  it('matches finite differences for nearly every element (Relu, MaxPool)', async (t) => {
    const r = await gradCheck({ name: 'digit CNN', feeds: batch(4), eps: 1e-3, build: (b, p) => buildCnn(b, p, false, true) });
    const ok = r.elements.filter((e) => Math.abs(e.g - e.fd) <= 2e-2 * (Math.abs(e.g) + Math.abs(e.fd)) + 1e-3 * r.maxGrad);
    t.diagnostic(`${ok.length} of ${r.elements.length} elements within tolerance; max |fd| ${r.maxGrad.toFixed(2)}`);
    assert.equal(r.worst.size, 8);
    assert.ok(ok.length >= 0.9 * r.elements.length, `${ok.length} of ${r.elements.length}`);
  });

  it('keeps only what the backward pass reads, and feeds params as inputs', () => {
    const { train, init } = trainable(false);
    const inputs = train.model.graph.inputs.map((v) => v.name);
    for (const p of init.keys()) {
      assert.ok(inputs.includes(p), `${p} is a graph input`);
      assert.ok(!train.model.graph.initializers.has(p), `${p} is no longer an initializer`);
    }
    assert.ok(train.saved.includes('x'), 'the first Conv reads x for its weight gradient');
    assert.ok(!train.saved.some((v) => v.startsWith('ReduceMean')), 'the mean reduction keeps nothing');
  });

  it('lowers the loss with SGD, feeding the running statistics back', async () => {
    const { losses, state } = await sgd(false, 15, 0.1);
    assert.ok(losses[losses.length - 1]! < 0.5 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    const mean = state.get('bn1_mean')!.data as Float32Array;
    assert.ok(mean.some((v) => Math.abs(v) > 1e-3), 'running means moved away from their initial 0');
  });

  it('lowers the loss with fake quantization (QAT, learned scales)', async () => {
    const { train } = trainable(true);
    assert.ok([...train.gradients.keys()].filter((k) => k.endsWith('w_scale')).length === 3);
    const { losses } = await sgd(true, 15, 0.1);
    assert.ok(losses[losses.length - 1]! < 0.5 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  });
});
