// Static (QDQ) quantization inside If/Loop bodies, end to end in ONNX Runtime: body values are calibrated
// through threaded-out taps (an If branch that did not run gives an empty placeholder, never a range), the
// planner and engine run on each body, weights (outer-scope or the body's own) become int8 in the body, and
// the quantized model follows the float one on both branches and through every Loop iteration.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { makeValueInfo, type Graph, type Model } from '../../src/onnx/ir.js';
import { DataType, type GraphProto } from '../../src/onnx/proto.js';
import { exposeSubgraphValues } from '../../src/passes/taps-subgraph.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate, type CalibrationData } from '../../src/pipeline/calibrate.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { readWav, realModelPath, runVad } from '../../src/data/realistic.js';
import { loadModel } from '../../src/io/model-file.js';
import { Model as ModelClass } from '../../src/onnx/ir.js';
import { mulberry32 } from '../../src/rng.js';
import { optimizedModel } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * rng.normal();
  return out;
}
const f32 = (shape: number[], seed: number, scale = 1): NdArray => ({ dtype: 'float32', shape, data: randn(shape.reduce((a, b) => a * b, 1), seed, scale) });
const flag = (v: boolean): NdArray => ({ dtype: 'bool', shape: [], data: Uint8Array.of(v ? 1 : 0) });

/**
 * x [N,4,6,6], flag: bool [] -> If(flag):
 *   then: Conv(x, own weight 8x4x3x3, pads 1) -> Relu -> Flatten -> MatMul(outer weight [288,10]) -> Sigmoid (in (0, 1))
 *   else: Flatten(x) -> MatMul(outer weight [144,16]) -> Relu -> MatMul(body weight [16,10]) * 20
 */
function ifModel(): Model {
  const t = new ModelBuilder({ name: 'then_branch' });
  const tc = t.op('Conv', ['x', t.initializer('then_conv_w', randn(8 * 4 * 9, 1, 0.3), [8, 4, 3, 3]), t.initializer('then_conv_b', randn(8, 2, 0.1), [8])], { pads: [1, 1, 1, 1] }, { name: 'then_conv' });
  const tr = t.op('Relu', [tc], {}, { name: 'then_relu' });
  const tf = t.op('Flatten', [tr], { axis: 1 }, { name: 'then_flatten' });
  const tm = t.op('MatMul', [tf, 'W_then_fc'], {}, { name: 'then_fc' });
  t.output(t.op('Sigmoid', [tm], {}, { name: 'then_sigmoid' }), DataType.FLOAT);
  const e = new ModelBuilder({ name: 'else_branch' });
  const ef = e.op('Flatten', ['x'], { axis: 1 }, { name: 'else_flatten' });
  const em = e.op('MatMul', [ef, 'W_else_fc1'], {}, { name: 'else_fc1' });
  const er = e.op('Relu', [em], {}, { name: 'else_relu' });
  const e2 = e.op('MatMul', [er, e.initializer('else_fc2_w', randn(16 * 10, 4, 0.3), [16, 10])], {}, { name: 'else_fc2' });
  e.output(e.op('Mul', [e2, e.initializer('else_gain', Float32Array.of(20), [])], {}, { name: 'else_gain_mul' }), DataType.FLOAT);
  const b = new ModelBuilder({ opset: 17 });
  b.input('x', DataType.FLOAT, ['N', 4, 6, 6]);
  b.input('flag', DataType.BOOL, []);
  b.initializer('W_then_fc', randn(288 * 10, 5, 0.1), [288, 10]);
  b.initializer('W_else_fc1', randn(144 * 16, 6, 0.1), [144, 16]);
  b.output(b.op('If', ['flag'], { then_branch: t.build().toProto().graph!, else_branch: e.build().toProto().graph! }, { name: 'branch' }), DataType.FLOAT, ['N', 10]);
  return b.build();
}

/** x [N,8] -> Loop(3 iterations, carried h): h = Relu(MatMul(h, outer W [8,8]) + body bias) -> MatMul(h, W_out). */
function loopModel(): Model {
  const body = new ModelBuilder({ name: 'loop_body' });
  const mm = body.op('MatMul', ['h_in', 'W_loop'], {}, { name: 'loop_mm' });
  const add = body.op('Add', [mm, body.initializer('loop_b', randn(8, 8, 0.1), [8])], {}, { name: 'loop_add' });
  const h = body.op('Relu', [add], {}, { name: 'loop_relu' });
  const g: GraphProto = body.build().toProto().graph!;
  g.input.push(makeValueInfo('iter', DataType.INT64, []), makeValueInfo('cond_in', DataType.BOOL, []), makeValueInfo('h_in', DataType.FLOAT, ['N', 8]));
  g.output.push(makeValueInfo('cond_in', DataType.BOOL, []), makeValueInfo(h, DataType.FLOAT, ['N', 8]));
  // A body output must be a value of the body: the condition passes through an Identity.
  g.node.push({ input: ['cond_in'], output: ['cond_out'], opType: 'Identity', name: 'loop_cond', attribute: [], metadataProps: [] });
  g.output[0] = makeValueInfo('cond_out', DataType.BOOL, []);
  const b = new ModelBuilder({ opset: 17 });
  b.input('x', DataType.FLOAT, ['N', 8]);
  b.initializer('W_loop', randn(64, 9, 0.5), [8, 8]);
  const trips = b.initializer('trips', BigInt64Array.of(3n), []);
  const cond = b.initializer('cond', Uint8Array.of(1), [], DataType.BOOL);
  const hEnd = b.op('Loop', [trips, cond, 'x'], { body: g }, { name: 'loop' });
  b.output(b.op('MatMul', [hEnd, b.initializer('W_out', randn(32, 10, 0.5), [8, 4])], {}, { name: 'head' }), DataType.FLOAT, ['N', 4]);
  return b.build();
}

/** Calibration batches of 8 rows: batch i has the flag flags[i] and x drawn from seeds[i] (default 100 + i). */
function ifData(flags: boolean[], seeds = flags.map((_, i) => 100 + i)): CalibrationData {
  return {
    count: flags.length * 8,
    *batches() {
      for (let i = 0; i < flags.length; i++) yield { x: f32([8, 4, 6, 6], seeds[i]!), flag: flag(flags[i]!) };
    },
  };
}

async function runModel(model: Model, feeds: Record<string, NdArray>): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    const out = await s.run(feeds);
    return out[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

const branchOf = (m: Model, attr: string): Graph => m.graph.subgraphs(m.graph.nodes.find((n) => n.opType === 'If' || n.opType === 'Loop')!).find((s) => s.attribute === attr)!.graph;
const opsOf = (g: Graph): string[] => g.nodes.map((n) => n.opType ?? '');
const count = (xs: string[], x: string): number => xs.filter((y) => y === x).length;

describe('static quantization inside If branches', () => {
  const model = ifModel();
  let plan: ReturnType<typeof planQdq>;
  before(() => {
    plan = planQdq(model, OPTS);
  });

  it('plans tensors inside both branches and threads them out for calibration', () => {
    // Conv and the first else MatMul fold their Relu: the Relu outputs carry the ranges.
    for (const t of ['then_relu_out', 'then_fc_out', 'then_sigmoid_out', 'else_relu_out', 'else_fc2_out']) assert.ok(plan.tensors.includes(t), `${t} in ${plan.tensors.join(', ')}`);
    assert.ok(plan.tensors.includes('x'), 'the outer input read in both branches');
    const exposed = exposeSubgraphValues(plan.model, plan.tensors);
    assert.notEqual(exposed.model, plan.model);
    assert.deepEqual(exposed.untapped, []);
    const ifNode = exposed.model.graph.nodes.find((n) => n.opType === 'If')!;
    assert.equal(ifNode.output.length, 1 + exposed.inBodies.size);
    assert.equal(exposed.carriers.get('x'), 'x');
    // The input model is untouched.
    assert.equal(plan.model.graph.nodes.find((n) => n.opType === 'If')!.output.length, 1);
  });

  it('a branch that did not run gives no range; one that ran is not polluted by the other', async () => {
    const mixed = await calibrate(plan.model, ifData([true, false, true, false]), { tensors: plan.tensors });
    const thenOnly = await calibrate(plan.model, ifData([true, true, true, true]), { tensors: plan.tensors });
    assert.ok(!thenOnly.has('else_relu_out') && !thenOnly.has('else_fc2_out'), 'no range for the branch that never ran');
    assert.ok(thenOnly.has('then_relu_out'));
    // Mixed: the then-branch tensors saw batches 0 and 2 only.
    const thenHalf = await calibrate(plan.model, ifData([true, true], [100, 102]), { tensors: plan.tensors });
    const elseHalf = await calibrate(plan.model, ifData([false, false], [101, 103]), { tensors: plan.tensors });
    for (const t of ['then_relu_out', 'then_fc_out', 'then_sigmoid_out']) assert.deepEqual(mixed.get(t), thenHalf.get(t), t);
    // The untaken branch's placeholder is empty, never zeros: a Sigmoid's range stays inside (0, 1).
    assert.ok(mixed.get('then_sigmoid_out')!.min > 0 && mixed.get('then_sigmoid_out')!.max < 1, JSON.stringify(mixed.get('then_sigmoid_out')));
    for (const t of ['else_relu_out', 'else_fc2_out']) assert.deepEqual(mixed.get(t), elseHalf.get(t), t);
  });

  it('quantizes inside both branches; ORT runs it; both branches follow the float model', async () => {
    const ranges = await calibrate(plan.model, ifData([true, false, true, false, true, false]), { tensors: plan.tensors });
    const { model: q, report } = quantizeStatic(plan.model, ranges, OPTS);
    const thenG = branchOf(q, 'then_branch');
    const elseG = branchOf(q, 'else_branch');
    for (const g of [thenG, elseG]) {
      assert.ok(count(opsOf(g), 'QuantizeLinear') >= 2, `${g.name}: ${opsOf(g).join(' ')}`);
      assert.ok(count(opsOf(g), 'DequantizeLinear') >= 4, `${g.name}: ${opsOf(g).join(' ')}`);
    }
    // Weights int8 in the bodies: the body's own Conv weight and the outer-scope MatMul weights.
    const int8 = (g: Graph): string[] => [...g.initializers.values()].filter((t) => t.dataType === DataType.INT8).map((t) => t.name ?? '');
    assert.ok(int8(thenG).some((n) => n.startsWith('then_conv_w')) && int8(thenG).some((n) => n.startsWith('W_then_fc')), int8(thenG).join());
    assert.ok(int8(elseG).some((n) => n.startsWith('W_else_fc1')) && int8(elseG).some((n) => n.startsWith('else_fc2_w')), int8(elseG).join());
    assert.ok(!q.graph.initializers.has('W_then_fc') && !q.graph.initializers.has('W_else_fc1'), 'outer float weights removed');
    assert.ok(!thenG.initializers.has('then_conv_w'));
    const quantized = report.nodes.filter((n) => n.quantized).map((n) => n.name);
    for (const n of ['then_conv', 'then_relu', 'then_fc', 'else_fc1', 'else_relu', 'else_fc2']) assert.ok(quantized.includes(n), `${n} in ${quantized.join()}`);
    for (const v of [true, false]) {
      const feeds = { x: f32([16, 4, 6, 6], 7), flag: flag(v) };
      const ref = await runModel(plan.model, feeds);
      const got = await runModel(q, feeds);
      const s = sqnrDb(ref, got);
      // Measured (ORT 1.30, x86): then 40.6 dB, else 31.3 dB.
      assert.ok(s > (v ? 32 : 25), `flag=${v}: SQNR ${s.toFixed(1)} dB`);
    }
  });

  it('a branch no calibration batch took stays float, with the reason', async () => {
    const ranges = await calibrate(plan.model, ifData([true, true]), { tensors: plan.tensors });
    const { model: q, report } = quantizeStatic(plan.model, ranges, OPTS);
    const elseG = branchOf(q, 'else_branch');
    assert.equal(count(opsOf(elseG), 'QuantizeLinear'), 0);
    assert.match(report.nodes.find((n) => n.name === 'else_fc1')!.reason ?? '', /never ran during calibration/);
    assert.ok(report.nodes.find((n) => n.name === 'then_conv')!.quantized);
    const feeds = { x: f32([4, 4, 6, 6], 9), flag: flag(false) };
    assert.deepEqual(await runModel(q, feeds), await runModel(plan.model, feeds), 'the float branch computes exactly what it did');
  });

  it('ORT dumps the branches with their QDQ nodes (what it makes of them is reported, not fused here)', async () => {
    const ranges = await calibrate(plan.model, ifData([true, false]), { tensors: plan.tensors });
    const { model: q } = quantizeStatic(plan.model, ranges, OPTS);
    const opt = await optimizedModel(encodeModel(q.toProto()));
    const ifNode = opt.graph!.node.find((n) => n.opType === 'If')!;
    const branchOps = (name: string): string[] => ifNode.attribute.find((a) => a.name === name)!.g!.node.map((n) => n.opType ?? '');
    const thenOps = branchOps('then_branch');
    // ORT 1.30 applies its QDQ fusions inside If branches too: DQ -> Conv -> (Relu) -> Q becomes QLinearConv.
    assert.ok(thenOps.includes('QLinearConv'), thenOps.join(' '));
    assert.ok(!thenOps.includes('Conv'), thenOps.join(' '));
  });
});

describe('static quantization inside a Loop body', () => {
  it('calibrates every iteration and quantizes the body MatMul; ORT runs it', async () => {
    const model = loopModel();
    const plan = planQdq(model, OPTS);
    assert.ok(plan.tensors.includes('loop_mm_out'), plan.tensors.join());
    const data: CalibrationData = { count: 32, *batches() { for (let i = 0; i < 4; i++) yield { x: f32([8, 8], 200 + i) }; } };
    const ranges = await calibrate(plan.model, data, { tensors: plan.tensors });
    assert.ok(ranges.has('loop_mm_out') && ranges.has('loop_relu_out'));
    const { model: q, report } = quantizeStatic(plan.model, ranges, OPTS);
    const body = branchOf(q, 'body');
    assert.ok(opsOf(body).includes('QuantizeLinear') && opsOf(body).includes('DequantizeLinear'), opsOf(body).join(' '));
    assert.ok([...body.initializers.values()].some((t) => t.dataType === DataType.INT8 && t.name?.startsWith('W_loop')));
    assert.ok(!q.graph.initializers.has('W_loop'));
    assert.ok(report.nodes.find((n) => n.name === 'loop_mm')!.quantized);
    const feeds = { x: f32([16, 8], 17) };
    const s = sqnrDb(await runModel(plan.model, feeds), await runModel(q, feeds));
    // Measured (ORT 1.30, x86): 29.8 dB.
    assert.ok(s > 24, `SQNR ${s.toFixed(1)} dB`);
  });
});

describe('static quantization of the real silero VAD (legacy): compute inside If branches', () => {
  it('quantizes the 16 kHz branch, leaves the 8 kHz branch (never run) float; speech probabilities follow the float model', async () => {
    const model = new ModelClass((await loadModel(realModelPath('vadLegacy'))).model);
    const wav = readWav('test/fixtures/audio/speech-16k.wav');
    const runner = async (m: Model) => {
      const s = await Session.create(encodeModel(m.toProto()), { threads: 2 });
      return { s, run: (f: Record<string, NdArray>) => s.run(f) };
    };
    const f = await runner(model);
    const float = await runVad(wav.samples, 'legacy', f.run, { collectFeeds: true });
    await f.s.release();
    const feeds = float.feeds!;
    const calibFrames = feeds.slice(0, Math.floor(feeds.length * 0.8));
    const plan = planQdq(model, { ...OPTS, speedPolicy: true });
    const ranges = await calibrate(plan.model, { count: calibFrames.length, batches: () => calibFrames }, { tensors: plan.tensors });
    const { model: q, report } = quantizeStatic(plan.model, ranges, { ...OPTS, speedPolicy: true });
    const quantized = report.nodes.filter((n) => n.quantized);
    assert.ok(quantized.filter((n) => n.opType === 'Conv').length >= 18, `${quantized.length} quantized`);
    assert.ok(report.nodes.filter((n) => /never ran during calibration/.test(n.reason ?? '')).length >= 18);
    // ORT fuses inside the branch: the 16 kHz branch runs QLinearConv, the float one Conv / FusedConv.
    const opt = await optimizedModel(encodeModel(q.toProto()));
    const ifNode = opt.graph!.node.find((n) => n.opType === 'If')!;
    const branches = ifNode.attribute.map((a) => a.g!.node.map((n) => n.opType ?? ''));
    assert.deepEqual(branches.map((ops) => count(ops, 'QLinearConv')).sort(), [0, 18]);
    const qs = await runner(q);
    const int8 = await runVad(wav.samples, 'legacy', qs.run);
    await qs.s.release();
    const s = sqnrDb(float.probs, int8.probs);
    let maxDiff = 0;
    let agree = 0;
    for (let k = 0; k < float.probs.length; k++) {
      maxDiff = Math.max(maxDiff, Math.abs(float.probs[k]! - int8.probs[k]!));
      if (float.probs[k]! > 0.5 === int8.probs[k]! > 0.5) agree++;
    }
    // Measured (ORT 1.30, x86; 45 frames of synthesized speech, each model carrying its own LSTM state, calibrated
    // on the first 36): 16.4 dB on the speech probabilities, 44 of 45 speech/non-speech decisions agree, the
    // largest difference 0.51 on one frame at a speech onset.
    assert.ok(s > 13, `SQNR ${s.toFixed(1)} dB`);
    assert.ok(agree >= float.probs.length - 3, `${agree} of ${float.probs.length} decisions agree (largest difference ${maxDiff})`);
  });
});
