// train() end to end on small synthetic problems: convergence (SGD and AdamW), the trained model as a plain
// inference model whose ORT predictions match the reported accuracy, determinism per seed, checkpoints,
// a non-finite loss that stops training and keeps the last good checkpoint, bad data (labels count,
// range, shapes), an op without a gradient rule, mse, distillation, frozen params via lrMultiplier.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LowbitError } from '../../src/errors.js';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { tensorStorage } from '../../src/onnx/tensor.js';
import { train, type TrainData, type TrainOptions } from '../../src/pipeline/train.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';

const tmp = mkdtempSync(join(tmpdir(), 'lowbit-train-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const CLASSES = 4;

/** 8x8 images: class k lights up quadrant k, plus noise. */
function quadrants(count: number, seed: number): { inputs: NdArray; labels: Int32Array } {
  const rng = mulberry32(seed);
  const x = new Float32Array(count * 64);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const k = rng.int(0, CLASSES - 1);
    labels[n] = k;
    for (let i = 0; i < 64; i++) {
      const [r, c] = [Math.floor(i / 8), i % 8];
      x[n * 64 + i] = (Math.floor(r / 4) * 2 + Math.floor(c / 4) === k ? 0.8 : 0) + 0.3 * rng.normal();
    }
  }
  return { inputs: { dtype: 'float32', shape: [count, 1, 8, 8], data: x }, labels };
}

/** Conv(1->4)-BN-Relu-MaxPool -> Flatten -> Gemm(4); `extra` appends an op after the Gemm. */
function cnn(seed = 1, extra?: string, batch: number | string = 'N'): Model {
  const rng = mulberry32(seed);
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('image', DataType.FLOAT, [batch, 1, 8, 8]);
  const w = b.initializer('conv.w', Float32Array.from({ length: 36 }, () => rng.normal() * 0.47), [4, 1, 3, 3]);
  const conv = b.op('Conv', [x, w], { pads: [1, 1, 1, 1] }, { name: 'conv' });
  const bn = b.op('BatchNormalization', [conv, b.initializer('bn.s', new Float32Array(4).fill(1), [4]), b.initializer('bn.b', new Float32Array(4), [4]), b.initializer('bn.mean', new Float32Array(4), [4]), b.initializer('bn.var', new Float32Array(4).fill(1), [4])], {}, { name: 'bn' });
  const pooled = b.op('MaxPool', [b.op('Relu', [bn])], { kernel_shape: [2, 2], strides: [2, 2] });
  const fc = b.op('Gemm', [b.op('Flatten', [pooled]), b.initializer('fc.w', Float32Array.from({ length: 4 * 64 }, () => rng.normal() * 0.125), [4, 64]), b.initializer('fc.b', new Float32Array(4), [4])], { transB: 1 }, { name: 'fc' });
  const out = extra ? b.op(extra, [fc], {}, { name: 'head' }) : fc;
  b.output(out, DataType.FLOAT, [batch, CLASSES]);
  return b.build();
}

const floats = (m: Model, name: string): number[] => Array.from(tensorStorage(m.graph.initializers.get(name)!) as Float32Array);

async function rejects(p: Promise<unknown>, code: string, ...parts: string[]): Promise<LowbitError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof LowbitError, `expected LowbitError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const part of parts) assert.ok(e.message.includes(part), `${JSON.stringify(e.message)} lacks ${JSON.stringify(part)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

const trainSet = quadrants(384, 1);
const valSet = quadrants(128, 2);
const quick: TrainOptions = { epochs: 3, batch: 32, threads: 1, validation: valSet };

describe('train()', () => {
  it('learns the quadrant task with AdamW and returns a plain inference model', async () => {
    const seen: number[] = [];
    const progress: number[] = [];
    const r = await train(cnn(), trainSet, { ...quick, lr: 0.01, onEpoch: (e) => seen.push(e.epoch), onProgress: (e) => progress.push(e.done) });
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(progress.length, 3 * 12);
    assert.equal(r.steps, 36);
    assert.equal(r.samples, 3 * 384);
    const last = r.epochs[2]!;
    assert.ok(last.loss < 0.5 * r.epochs[0]!.loss || last.loss < 0.1, `losses ${r.epochs.map((e) => e.loss.toFixed(3))}`);
    assert.ok(last.valAccuracy! >= 0.95, `val accuracy ${last.valAccuracy}`);
    assert.ok(r.samplesPerSec > 0 && r.time.forwardBackward > 0 && r.time.eval > 0);
    assert.deepEqual(r.params.sort(), ['bn.b', 'bn.s', 'conv.w', 'fc.b', 'fc.w']);
    assert.deepEqual(r.state, ['bn.mean', 'bn.var']);

    // Same inputs, outputs and nodes as the original, BatchNormalization in inference mode.
    const m = r.model;
    assert.deepEqual(m.graph.inputs.map((v) => v.name), ['image']);
    assert.deepEqual(m.graph.outputs.map((v) => v.name), cnn().graph.outputs.map((v) => v.name));
    assert.equal(m.graph.nodes.length, cnn().graph.nodes.length);
    assert.ok(m.graph.nodes.filter((n) => n.opType === 'BatchNormalization').every((n) => n.output.length === 1));
    assert.ok(floats(m, 'bn.mean').some((v) => Math.abs(v) > 1e-3), 'running mean was updated');
    assert.notDeepEqual(floats(m, 'conv.w'), floats(cnn(), 'conv.w'));

    // The trained model alone in ORT reproduces the reported validation accuracy.
    const s = await Session.create(encodeModel(m.toProto()), { threads: 1 });
    try {
      const out = (await s.run({ image: valSet.inputs }))[m.graph.outputs[0]!.name!]!.data as Float32Array;
      let correct = 0;
      for (let n = 0; n < 128; n++) {
        const row = Array.from(out.subarray(n * CLASSES, (n + 1) * CLASSES));
        if (row.indexOf(Math.max(...row)) === valSet.labels[n]) correct++;
      }
      assert.equal(correct / 128, last.valAccuracy);
    } finally {
      await s.release();
    }
  });

  it('learns with SGD + Nesterov momentum and a step schedule; the same seed gives the same weights', async () => {
    const opts: TrainOptions = { ...quick, optimizer: 'sgd', lr: 0.05, nesterov: true, schedule: 'step', stepEpochs: 2, seed: 5 };
    const a = await train(cnn(), trainSet, opts);
    assert.ok(a.epochs[2]!.valAccuracy! >= 0.95, `val accuracy ${a.epochs[2]!.valAccuracy}`);
    assert.ok(Math.abs(a.epochs[2]!.lr - 0.005) < 1e-9, 'step decay after 2 epochs');
    const b = await train(cnn(), trainSet, opts);
    assert.deepEqual(floats(b.model, 'fc.w'), floats(a.model, 'fc.w'));
    const c = await train(cnn(), trainSet, { ...opts, seed: 6 });
    assert.notDeepEqual(floats(c.model, 'fc.w'), floats(a.model, 'fc.w'));
  });

  it('holds out the last samples with valSplit', async () => {
    const r = await train(cnn(), trainSet, { epochs: 1, batch: 32, threads: 1, valSplit: 0.25 });
    assert.equal(r.samples, 288);
    assert.ok(r.epochs[0]!.valLoss! > 0 && r.epochs[0]!.valAccuracy !== undefined);
  });

  it('writes a checkpoint each epoch; a non-finite loss stops training and keeps the last good checkpoint', async () => {
    const ckpt = join(tmp, 'ckpt.onnx');
    const good = await train(cnn(), trainSet, { ...quick, epochs: 1, checkpoint: ckpt });
    assert.equal(good.checkpoint, ckpt);
    const bytes = readFileSync(ckpt);
    const reloaded = new Model((await loadModel(ckpt)).model);
    assert.deepEqual(floats(reloaded, 'fc.w'), floats(good.model, 'fc.w'));
    // Continue from the checkpoint with an absurd learning rate, checkpointing to the same file.
    const err = await rejects(train(reloaded, trainSet, { ...quick, optimizer: 'sgd', lr: 1e6, momentum: 0, schedule: 'constant', checkpoint: ckpt }), 'NON_FINITE', 'epoch 1, step');
    assert.match(err.message, /loss became (NaN|-?Infinity)|weights stopped being finite/);
    assert.ok(readFileSync(ckpt).equals(bytes), 'the checkpoint was not overwritten');
  });

  it('refuses a checkpoint over the input model before training', async () => {
    const input = join(tmp, 'input.onnx');
    await saveModel(cnn().toProto(), input);
    let steps = 0;
    await rejects(train(input, trainSet, { ...quick, epochs: 1, checkpoint: join(tmp, '.', 'input.onnx'), onProgress: () => steps++ }), 'SAME_INPUT_OUTPUT');
    assert.equal(steps, 0);
    await rejects(train(cnn(), trainSet, { ...quick, checkpoint: join(tmp, 'missing', 'c.onnx') }), 'FILE_NOT_FOUND', 'does not exist');
  });

  it('trains a model with a fixed batch size only with that batch (whole batches)', async () => {
    const r = await train(cnn(1, undefined, 32), { inputs: { ...trainSet.inputs, shape: [100, 1, 8, 8], data: trainSet.inputs.data.subarray(0, 6400) }, labels: trainSet.labels.subarray(0, 100) }, { ...quick, epochs: 1, validation: { inputs: { ...valSet.inputs, shape: [40, 1, 8, 8], data: valSet.inputs.data.subarray(0, 2560) }, labels: valSet.labels.subarray(0, 40) } });
    assert.equal(r.samples, 96);
    assert.equal(r.steps, 3);
    await rejects(train(cnn(1, undefined, 32), trainSet, { ...quick, batch: 64 }), 'BAD_OPTION', 'fixed batch size of 32');
  });

  it('names bad data: label count, label range, non-integer labels, input shape, missing labels', async () => {
    const labels = trainSet.labels.slice(0, 100);
    await rejects(train(cnn(), { inputs: trainSet.inputs, labels }, quick), 'DATA_MISMATCH', '100 labels for 384 samples');
    const outOfRange = trainSet.labels.slice();
    outOfRange[7] = 4;
    await rejects(train(cnn(), { inputs: trainSet.inputs, labels: outOfRange }, quick), 'BAD_DATA', 'sample 7', 'label 4', '4 classes');
    await rejects(train(cnn(), { inputs: trainSet.inputs, labels: { dtype: 'float32', shape: [384], data: Float32Array.from(trainSet.labels, (v) => v + 0.5) } }, quick), 'BAD_DATA', 'not an integer');
    const flat: TrainData = { inputs: { dtype: 'float32', shape: [384, 64], data: trainSet.inputs.data }, labels: trainSet.labels };
    await rejects(train(cnn(), flat, quick), 'DATA_MISMATCH', "input 'image'", '[384, 64]', '[N, 1, 8, 8]');
    await rejects(train(cnn(), { inputs: trainSet.inputs }, quick), 'DATA_MISMATCH', 'no labels');
    await rejects(train(cnn(), trainSet, { ...quick, validation: { inputs: valSet.inputs, labels: valSet.labels.slice(1) } }), 'DATA_MISMATCH', 'validation');
    const nan = Float32Array.from(trainSet.inputs.data as Float32Array);
    nan[64 * 9 + 3] = Number.NaN;
    await rejects(train(cnn(), { inputs: { ...trainSet.inputs, data: nan }, labels: trainSet.labels }, quick), 'BAD_DATA', 'sample 9');
  });

  it('rejects unknown and invalid options', async () => {
    await rejects(train(cnn(), trainSet, { ...quick, learningRate: 1 } as TrainOptions), 'BAD_OPTION', "'learningRate'");
    await rejects(train(cnn(), trainSet, { ...quick, lr: -1 }), 'BAD_OPTION', 'lr');
    await rejects(train(cnn(), trainSet, { ...quick, loss: 'distill' }), 'BAD_OPTION', 'teacher');
    await rejects(train(cnn(), trainSet, { ...quick, valSplit: 0.5 }), 'BAD_OPTION', 'either');
  });

  it('names the op and node without a gradient rule', async () => {
    await rejects(train(cnn(1, 'HardSigmoid'), trainSet, quick), 'UNSUPPORTED_MODEL', "'HardSigmoid'", "'head'");
  });

  it('trains only the listed params; a zero lrMultiplier keeps a param fixed', async () => {
    const r = await train(cnn(), trainSet, { ...quick, epochs: 1, params: ['fc.w', 'fc.b', 'conv.w'], lrMultiplier: (p) => (p.name === 'conv.w' ? 0 : 1) });
    assert.deepEqual(r.params, ['fc.w', 'fc.b', 'conv.w']);
    assert.deepEqual(floats(r.model, 'conv.w'), floats(cnn(), 'conv.w'));
    assert.deepEqual(floats(r.model, 'bn.s'), floats(cnn(), 'bn.s'));
    assert.notDeepEqual(floats(r.model, 'fc.w'), floats(cnn(), 'fc.w'));
  });

  it('distills a student from a teacher without labels', async () => {
    const teacher = (await train(cnn(1), trainSet, { ...quick, lr: 0.01 })).model;
    const r = await train(cnn(9), { inputs: trainSet.inputs }, { ...quick, validation: { inputs: valSet.inputs }, loss: 'distill', teacher, temperature: 2, lr: 0.01 });
    assert.ok(r.epochs[2]!.loss < 0.5 * r.epochs[0]!.loss, `losses ${r.epochs.map((e) => e.loss.toFixed(3))}`);
    assert.ok(r.epochs[2]!.valLoss! < r.epochs[0]!.valLoss!);
    assert.ok(r.time.teacher > 0);
    // With labels and alpha < 1, accuracy is reported too.
    const mixed = await train(cnn(9), trainSet, { ...quick, epochs: 1, loss: 'distill', teacher, alpha: 0.5, lr: 0.01 });
    assert.ok(mixed.epochs[0]!.valAccuracy !== undefined);
  });

  it('fits regression targets with mse', async () => {
    // Target: the class index as a one-hot times 3, so the model must learn the same features.
    const targets = (set: typeof trainSet): NdArray => {
      const t = new Float32Array(set.labels.length * CLASSES);
      set.labels.forEach((l, n) => (t[n * CLASSES + l] = 3));
      return { dtype: 'float32', shape: [set.labels.length, CLASSES], data: t };
    };
    const r = await train(cnn(), { inputs: trainSet.inputs, targets: targets(trainSet) }, { ...quick, loss: 'mse', lr: 0.01, validation: { inputs: valSet.inputs, targets: targets(valSet) } });
    assert.ok(r.epochs[2]!.valLoss! < 0.3 * r.epochs[0]!.loss, `val ${r.epochs[2]!.valLoss} vs first ${r.epochs[0]!.loss}`);
    assert.equal(r.epochs[0]!.valAccuracy, undefined);
  });
});
