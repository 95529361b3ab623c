// The trainer's Conv rule (weight gradient as one Gemm over input slices) against src/grad's rule in ORT, on
// convolutions with padding (symmetric, asymmetric, SAME), strides, dilations, non-square and 1x1 kernels;
// and the cases that fall back to the default rule (groups, columns too large).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTrainingGraph } from '../../src/grad/engine.js';
import { GRAD_RULES } from '../../src/grad/rules/index.js';
import type { GradTable } from '../../src/grad/types.js';
import type { AttrValue } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { TRAIN_RULES } from '../../src/train/rules.js';

interface ConvCase {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  attrs: Record<string, AttrValue>;
}

/** loss = sum(Conv(x, w, b) * R); x, w and b are params. */
function convModel(k: ConvCase): Model {
  const rng = mulberry32(7);
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal());
  const b = new ModelBuilder({ opset: 13 });
  const size = (d: number[]): number => d.reduce((a, c) => a * c, 1);
  const x = b.initializer('x', rand(size(k.x)), k.x);
  const w = b.initializer('w', rand(size(k.w)), k.w);
  const bias = b.initializer('b', rand(k.w[0]), [k.w[0]]);
  const y = b.op('Conv', [x, w, bias], k.attrs, { name: 'conv' });
  // R broadcasts over the batch and spatial axes, so its shape need not be known here.
  const r = b.initializer('r', rand(k.w[0]), [1, k.w[0], 1, 1]);
  const loss = b.op('ReduceSum', [b.op('Mul', [b.op('Mul', [y, y]), r])], { keepdims: 0 });
  b.output(loss, DataType.FLOAT, []);
  return b.build();
}

async function gradients(model: Model, rules: GradTable): Promise<{ grads: Float32Array[]; ops: string[] }> {
  const t = buildTrainingGraph(model, { loss: model.graph.outputs[0]!.name!, params: ['x', 'w', 'b'], rules });
  const s = await Session.create(encodeModel(t.model.toProto()), { threads: 1 });
  try {
    const feeds = Object.fromEntries(['x', 'w', 'b'].map((p) => {
      const init = model.graph.initializers.get(p)!;
      const dims = init.dims.map(Number);
      return [p, { dtype: 'float32' as const, shape: dims, data: new Float32Array(init.rawData!.buffer.slice(init.rawData!.byteOffset, init.rawData!.byteOffset + init.rawData!.byteLength)) }];
    }));
    const out = await s.run(feeds, ['x', 'w', 'b'].map((p) => t.gradients.get(p)!));
    return { grads: ['x', 'w', 'b'].map((p) => out[t.gradients.get(p)!]!.data as Float32Array), ops: t.model.graph.nodes.filter((n) => n.name?.startsWith('conv/grad')).map((n) => n.opType ?? '') };
  } finally {
    await s.release();
  }
}

const CASES: ConvCase[] = [
  { name: '3x3, pad 1 (the digit CNN)', x: [4, 3, 8, 8], w: [5, 3, 3, 3], attrs: { pads: [1, 1, 1, 1] } },
  { name: '3x3, stride 2, asymmetric pads', x: [2, 3, 9, 7], w: [4, 3, 3, 3], attrs: { strides: [2, 2], pads: [0, 1, 1, 0] } },
  { name: '3x2 kernel, dilation 2, stride (1, 2)', x: [2, 2, 10, 9], w: [3, 2, 3, 2], attrs: { dilations: [2, 2], strides: [1, 2] } },
  { name: '1x1, stride 2', x: [3, 4, 6, 6], w: [6, 4, 1, 1], attrs: { strides: [2, 2] } },
  { name: '3x3, SAME_UPPER, stride 2', x: [2, 3, 7, 8], w: [4, 3, 3, 3], attrs: { auto_pad: 'SAME_UPPER', strides: [2, 2] } },
];

describe('the trainer Conv rule (Gemm weight gradient)', () => {
  for (const k of CASES) {
    it(`matches GRAD_RULES.Conv: ${k.name}`, async () => {
      const m = convModel(k);
      const ref = await gradients(m, GRAD_RULES);
      const fast = await gradients(m, TRAIN_RULES);
      assert.ok(fast.ops.includes('Gemm') && !ref.ops.includes('Gemm'), `fast ${fast.ops.join(',')}`);
      fast.grads.forEach((g, i) => {
        const r = ref.grads[i]!;
        assert.equal(g.length, r.length);
        const scale = Math.max(...Array.from(r, Math.abs));
        for (let j = 0; j < r.length; j++) assert.ok(Math.abs(g[j]! - r[j]!) <= 1e-5 * scale + 1e-6, `${['dx', 'dw', 'db'][i]}[${j}] ${g[j]} vs ${r[j]}`);
      });
    });
  }

  it('falls back to the default rule for grouped convs and for too many columns', async () => {
    const grouped = await gradients(convModel({ name: 'g', x: [2, 4, 6, 6], w: [4, 2, 3, 3], attrs: { group: 2, pads: [1, 1, 1, 1] } }), TRAIN_RULES);
    assert.ok(!grouped.ops.includes('Gemm'));
    // 9 kernel positions x 64 channels x 32 x 32 outputs > MAX_COLUMNS_PER_SAMPLE.
    const big = convModel({ name: 'big', x: [1, 64, 32, 32], w: [2, 64, 3, 3], attrs: { pads: [1, 1, 1, 1] } });
    const t = buildTrainingGraph(big, { loss: big.graph.outputs[0]!.name!, params: ['w'], rules: TRAIN_RULES });
    assert.ok(!t.model.graph.nodes.some((n) => n.name?.startsWith('conv/grad') && n.opType === 'Gemm'));
  });
});
