// Loss subgraphs run in ORT against the same formulas computed in TypeScript (float64): cross-entropy
// (with label smoothing), mean squared error, distillation at a temperature (with and without the
// cross-entropy mix), and the gradient that flows through a loss to a param.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NdArray } from '../../src/ndarray.js';
import type { Model } from '../../src/onnx/ir.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { attachLoss, oneHotTargets, type LossSpec } from '../../src/train/loss.js';
import { buildTrainable } from '../../src/train/trainable.js';

const N = 5;
const C = 4;
const rng = mulberry32(11);
const x = Float32Array.from({ length: N * C }, () => 3 * rng.normal());
const teacher = Float32Array.from({ length: N * C }, () => 3 * rng.normal());
const labels = [0, 3, 1, 1, 2];
const w0 = Float32Array.from({ length: C }, () => 0.5 + rng.next());

/** logits = x * w (w [C], a param). */
function model(): Model {
  const b = new ModelBuilder({ opset: 13 });
  const input = b.input('x', DataType.FLOAT, ['N', C]);
  b.output(b.op('Mul', [input, b.initializer('w', w0.slice(), [C])]), DataType.FLOAT, ['N', C]);
  return b.build();
}

const arr = (data: Float32Array, shape: number[]): NdArray => ({ dtype: 'float32', shape, data });
const logits = (): number[][] => Array.from({ length: N }, (_, n) => Array.from({ length: C }, (_, c) => x[n * C + c]! * w0[c]!));
const logSoftmax = (row: number[], t = 1): number[] => {
  const s = row.map((v) => v / t);
  const m = Math.max(...s);
  const lse = m + Math.log(s.reduce((a, v) => a + Math.exp(v - m), 0));
  return s.map((v) => v - lse);
};
const ce = (y: number[][], smoothing = 0): number =>
  -y.reduce((sum, row, n) => sum + logSoftmax(row).reduce((a, lp, c) => a + lp * ((c === labels[n] ? 1 - smoothing : 0) + smoothing / C), 0), 0) / N;

async function lossValue(spec: LossSpec, feeds: (t: { target?: string; teacher?: string }) => Record<string, NdArray>): Promise<number> {
  const g = attachLoss(model(), spec);
  const s = await Session.create(encodeModel(g.model.toProto()), { threads: 1 });
  try {
    const out = await s.run({ x: arr(x, [N, C]), ...feeds(g.targets) }, [g.loss]);
    assert.deepEqual(out[g.loss]!.shape, []);
    return (out[g.loss]!.data as Float32Array)[0]!;
  } finally {
    await s.release();
  }
}

const oneHot = (): NdArray => arr(oneHotTargets(labels, C), [N, C]);
const near = (a: number, b: number, tol = 1e-5): void => assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${a} vs ${b}`);

describe('loss graphs in ORT', () => {
  it('cross-entropy: -mean log softmax at the label', async () => {
    near(await lossValue({ kind: 'cross-entropy' }, (t) => ({ [t.target!]: oneHot() })), ce(logits()));
  });

  it('cross-entropy with label smoothing', async () => {
    const v = await lossValue({ kind: 'cross-entropy', labelSmoothing: 0.2 }, (t) => ({ [t.target!]: oneHot() }));
    near(v, ce(logits(), 0.2));
    assert.ok(Math.abs(v - ce(logits())) > 1e-3, 'smoothing changes the value');
  });

  it('mse: mean squared difference over every element', async () => {
    const target = Float32Array.from({ length: N * C }, (_, i) => Math.sin(i));
    const y = logits().flat();
    const ref = y.reduce((s, v, i) => s + (v - target[i]!) ** 2, 0) / (N * C);
    near(await lossValue({ kind: 'mse' }, (t) => ({ [t.target!]: arr(target, [N, C]) })), ref);
  });

  it('distillation: T^2 * mean KL(softmax(teacher/T) || softmax(student/T)), mixed with cross-entropy by alpha', async () => {
    const T = 2;
    const y = logits();
    const kl = y.reduce((sum, row, n) => {
      const lp = logSoftmax(Array.from(teacher.subarray(n * C, (n + 1) * C)), T);
      const lq = logSoftmax(row, T);
      return sum + lp.reduce((a, l, c) => a + Math.exp(l) * (l - lq[c]!), 0);
    }, 0) / N;
    const pure = await lossValue({ kind: 'distill', temperature: T }, (t) => ({ [t.teacher!]: arr(teacher, [N, C]) }));
    near(pure, T * T * kl);
    assert.ok(pure > 0);
    const mixed = await lossValue({ kind: 'distill', temperature: T, alpha: 0.3 }, (t) => ({ [t.teacher!]: arr(teacher, [N, C]), [t.target!]: oneHot() }));
    near(mixed, 0.3 * T * T * kl + 0.7 * ce(y));
    // A student equal to the teacher has zero KL.
    const same = await lossValue({ kind: 'distill', temperature: 3 }, (t) => ({ [t.teacher!]: arr(Float32Array.from(y.flat()), [N, C]) }));
    near(same, 0, 1e-5);
  });

  it('differentiates through the loss: dCE/dw = sum_n x (softmax - onehot) / N', async () => {
    const t = buildTrainable(model(), { loss: { kind: 'cross-entropy' } });
    assert.deepEqual(t.params.map((p) => p.name), ['w']);
    const s = await Session.create(encodeModel(t.train.toProto()), { threads: 1 });
    try {
      const out = await s.run({ x: arr(x, [N, C]), [t.targets.target!]: oneHot(), w: arr(t.params[0]!.data, [C]) }, [t.gradients[0]!]);
      const g = out[t.gradients[0]!]!.data as Float32Array;
      const y = logits();
      const ref = Array.from({ length: C }, (_, c) =>
        y.reduce((sum, row, n) => sum + (x[n * C + c]! * (Math.exp(logSoftmax(row)[c]!) - (labels[n] === c ? 1 : 0))) / N, 0),
      );
      for (let c = 0; c < C; c++) near(g[c]!, ref[c]!, 1e-4);
    } finally {
      await s.release();
    }
  });
});
