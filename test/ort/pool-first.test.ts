// MaxPool moved before the activation behind a float stem (src/passes/pool-first.ts): exact in ORT, applied only
// where the producer stays float, and what static quantization of the digit CNN makes of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { poolBeforeActivation } from '../../src/passes/pool-first.js';
import { Session } from '../../src/runtime/session.js';
import { mulberry32 } from '../../src/rng.js';

/** x[N,1,12,12] -> Conv 1->8 3x3 ('stem') -> act -> MaxPool 2x2 (pads, ceil) -> Conv 8->16 -> y; `extraReader` also outputs the activation. */
function stemModel(act: 'Relu' | 'Clip' | 'LeakyRelu', opts: { extraReader?: boolean } = {}): Model {
  const rng = mulberry32(3);
  const b = new ModelBuilder({ opset: 13 });
  const w = (name: string, dims: number[]): string => b.initializer(name, Float32Array.from({ length: dims.reduce((a, d) => a * d, 1) }, () => rng.normal() * 0.5), dims);
  const x = b.input('x', DataType.FLOAT, ['N', 1, 12, 12]);
  const c = b.op('Conv', [x, w('w1', [8, 1, 3, 3]), w('b1', [8])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: 'stem' });
  const inputs = act === 'Clip' ? [c, b.initializer('lo', Float32Array.of(-0.5), []), b.initializer('hi', Float32Array.of(1.5), [])] : [c];
  const a = b.op(act, inputs, act === 'LeakyRelu' ? { alpha: 0.1 } : undefined, { name: 'act' });
  const p = b.op('MaxPool', [a], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }, { name: 'pool' });
  const y = b.op('Conv', [p, w('w2', [16, 8, 3, 3]), w('b2', [16])], { kernel_shape: [3, 3] }, { name: 'conv2' });
  b.output(y, DataType.FLOAT, ['N', 16, 4, 4]);
  if (opts.extraReader) b.output(a, DataType.FLOAT, ['N', 8, 12, 12]);
  return b.build();
}

async function run(m: Model, x: Float32Array): Promise<Float32Array> {
  const s = await Session.create(encodeModel(m.toProto()));
  try {
    const out = await s.run({ x: { dtype: 'float32', shape: [2, 1, 12, 12], data: x } });
    return out[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

const stem = (n: { opType?: string; name?: string }): boolean => n.name === 'stem';

for (const act of ['Relu', 'Clip', 'LeakyRelu'] as const) {
  test(`${act} -> MaxPool behind the float stem becomes MaxPool -> ${act}, with the same outputs in ORT`, async () => {
    const m = stemModel(act);
    const r = poolBeforeActivation(m, stem);
    assert.deepEqual(r.swaps, [{ activation: 'act', pool: 'pool' }]);
    const ops = r.model.graph.nodes.map((n) => n.opType);
    assert.deepEqual(ops, ['Conv', 'MaxPool', act, 'Conv']);
    // The pooled name is kept: it is now the activation's output; the unpooled activation tensor is gone.
    const poolOut = m.graph.nodes.find((n) => n.name === 'pool')!.output[0]!;
    assert.equal(r.model.graph.producer(poolOut)?.opType, act);
    assert.equal(m.graph.nodes.map((n) => n.opType).join(), `Conv,${act},MaxPool,Conv`, 'the input model is not modified');
    const rng = mulberry32(9);
    const x = Float32Array.from({ length: 2 * 144 }, () => rng.normal());
    assert.deepEqual(await run(r.model, x), await run(m, x));
  });
}

test('no swap when the activation has another reader, or its producer is not a float stem', () => {
  assert.deepEqual(poolBeforeActivation(stemModel('Relu', { extraReader: true }), stem).swaps, []);
  assert.deepEqual(poolBeforeActivation(stemModel('Relu'), () => false).swaps, []);
});
