// Gradient rules that finite differences cannot check: fake quantization (QuantizeLinear ->
// DequantizeLinear: straight-through estimator for x, LSQ for a learned scale) and training-mode
// Dropout. Each is compared with a reference formula computed here in float64.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTrainingGraph } from '../../src/grad/engine.js';
import type { AttrValue } from '../../src/onnx/attributes.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { packInt4 } from '../../src/onnx/tensor.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';

async function runModel(model: Model, feeds: Record<string, NdArray>): Promise<Record<string, NdArray>> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 1 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

const roundHalfEven = (v: number): number => {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

interface FakeQuantCase {
  name: string;
  dims: number[];
  /** Scale values (one = per tensor, else per channel along `axis`). */
  scale: number[];
  zeroPoint?: { values: number[]; type: 'int8' | 'uint8' | 'int4' | 'uint4' };
  /** Integer type when there is no zero point. */
  type?: 'int8' | 'uint8';
  axis?: number;
  lsq?: boolean;
}

const RANGE = { int8: [-128, 127], uint8: [0, 255], int4: [-8, 7], uint4: [0, 15] } as const;

/** Reference: dx = R inside the clipping range (STE); ds = sum R * ((q - zp) - (inside ? x / s : 0)) (LSQ). */
function reference(c: FakeQuantCase, x: Float32Array, r: Float32Array): { dx: number[]; ds: number[] } {
  const type = c.zeroPoint?.type ?? c.type ?? 'uint8';
  const [qmin, qmax] = RANGE[type];
  const channels = c.scale.length;
  const axis = c.axis ?? 1;
  const inner = c.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const dx: number[] = [];
  const ds = new Array<number>(channels).fill(0);
  for (let i = 0; i < x.length; i++) {
    const ch = channels === 1 ? 0 : Math.floor(i / inner) % channels;
    const s = c.scale[ch]!;
    const zp = c.zeroPoint?.values[channels === 1 ? 0 : ch] ?? 0;
    const q = Math.min(qmax, Math.max(qmin, roundHalfEven(x[i]! / s) + zp));
    const inside = x[i]! >= s * (qmin - zp) && x[i]! <= s * (qmax - zp);
    dx.push(inside ? r[i]! : 0);
    ds[ch]! += r[i]! * (q - zp - (inside ? x[i]! / s : 0));
  }
  if (c.lsq) {
    const n = x.length / channels;
    for (let k = 0; k < channels; k++) ds[k]! /= Math.sqrt(n * qmax);
  }
  return { dx, ds };
}

const FAKE_QUANT_CASES: FakeQuantCase[] = [
  { name: 'int8 per tensor with zero point', dims: [4, 8], scale: [0.02], zeroPoint: { values: [3], type: 'int8' } },
  { name: 'uint8 per tensor with zero point', dims: [3, 10], scale: [0.01], zeroPoint: { values: [128], type: 'uint8' } },
  { name: 'uint8 per tensor without zero point (the default type)', dims: [2, 12], scale: [0.008] },
  { name: 'int8 per channel (axis 0, weights)', dims: [3, 2, 2, 2], scale: [0.01, 0.02, 0.005], zeroPoint: { values: [0, 0, 0], type: 'int8' }, axis: 0 },
  { name: 'int8 per tensor with the LSQ gradient scale', dims: [4, 8], scale: [0.02], zeroPoint: { values: [-2], type: 'int8' }, lsq: true },
  // 4-bit types (opset 21): the clipping range comes from the zero point's type, [-8, 7] / [0, 15].
  { name: 'int4 per channel (axis 0, opset 21 weights)', dims: [3, 2, 2, 2], scale: [0.1, 0.2, 0.05], zeroPoint: { values: [0, 0, 0], type: 'int4' }, axis: 0 },
  { name: 'int4 per tensor with the LSQ gradient scale', dims: [4, 8], scale: [0.3], zeroPoint: { values: [-1], type: 'int4' }, lsq: true },
  { name: 'uint4 per tensor with zero point', dims: [3, 10], scale: [0.2], zeroPoint: { values: [8], type: 'uint4' } },
];

const ZP_DATA = {
  int8: (v: number[]) => ({ data: Int8Array.from(v), type: DataType.INT8 }),
  uint8: (v: number[]) => ({ data: Uint8Array.from(v), type: DataType.UINT8 }),
  int4: (v: number[]) => ({ data: packInt4(v), type: DataType.INT4 }),
  uint4: (v: number[]) => ({ data: packInt4(v), type: DataType.UINT4 }),
} as const;

describe('fake quantization: STE for x, LSQ for the scale', () => {
  for (const c of FAKE_QUANT_CASES) {
    it(c.name, async () => {
      const rng = mulberry32(5);
      const count = c.dims.reduce((a, b) => a * b, 1);
      // Wide enough that some values clip on both sides.
      const four = c.zeroPoint?.type === 'int4' || c.zeroPoint?.type === 'uint4';
      const x = Float32Array.from({ length: count }, () => rng.uniform(-3, 3) * (c.scale[0]! * (four ? 4 : 60)));
      const r = Float32Array.from({ length: count }, () => rng.normal());
      const b = new ModelBuilder({ opset: four ? 21 : 17 });
      const xs = b.initializer('x', x, c.dims);
      const perAxis = c.scale.length > 1;
      const s = b.initializer('s', Float32Array.from(c.scale), perAxis ? [c.scale.length] : []);
      const ins = [xs, s];
      if (c.zeroPoint) {
        const zp = ZP_DATA[c.zeroPoint.type](c.zeroPoint.values);
        ins.push(b.initializer('zp', zp.data, perAxis ? [c.scale.length] : [], zp.type));
      }
      const attrs: Record<string, AttrValue> = perAxis ? { axis: c.axis ?? 1 } : {};
      const y = b.op('DequantizeLinear', [b.op('QuantizeLinear', ins, attrs), ...ins.slice(1)], attrs);
      const loss = b.op('ReduceSum', [b.op('Mul', [y, b.initializer('R', r, c.dims)])], { keepdims: 0 });
      b.output(loss, DataType.FLOAT, []);
      const train = buildTrainingGraph(b.build(), { loss, params: ['x', 's'], lsqGradScale: c.lsq ?? false });
      const out = await runModel(train.model, {
        x: { dtype: 'float32', shape: c.dims, data: x },
        s: { dtype: 'float32', shape: perAxis ? [c.scale.length] : [], data: Float32Array.from(c.scale) },
      });
      const ref = reference(c, x, r);
      const dx = out[train.gradients.get('x')!]!;
      const ds = out[train.gradients.get('s')!]!;
      assert.deepEqual(ds.shape, perAxis ? [c.scale.length] : []);
      // dx = (dy * s) / s: R inside the clipping range up to one rounding, exactly 0 outside.
      (dx.data as Float32Array).forEach((v, i) => assert.ok(ref.dx[i] === 0 ? v === 0 : Math.abs(v - ref.dx[i]!) <= 1e-6 * Math.abs(ref.dx[i]!), `dx[${i}] ${v} vs ${ref.dx[i]}`));
      assert.ok(ref.dx.some((v) => v === 0) && ref.dx.some((v) => v !== 0), 'the case clips some values and passes others');
      (ds.data as Float32Array).forEach((v, k) => assert.ok(Math.abs(v - ref.ds[k]!) <= 1e-4 * (1 + Math.abs(ref.ds[k]!)), `ds[${k}] ${v} vs ${ref.ds[k]}`));
    });
  }
});

describe('training-mode Dropout', () => {
  it('passes dY through the kept elements, scaled by 1 / (1 - ratio)', async () => {
    const n = 64;
    const x = Float32Array.from({ length: n }, (_, i) => 1 + i);
    const b = new ModelBuilder({ opset: 17 });
    const xs = b.initializer('x', x, [n]);
    const ratio = b.initializer('ratio', Float32Array.of(0.25), []);
    const training = b.initializer('training', Uint8Array.of(1), [], DataType.BOOL);
    const [y, mask] = b.op('Dropout', [xs, ratio, training], { seed: 7 }, { outputs: 2 }) as [string, string];
    const loss = b.op('ReduceSum', [y], { keepdims: 0 });
    b.output(y, DataType.FLOAT);
    b.output(mask, DataType.BOOL);
    b.output(loss, DataType.FLOAT, []);
    const train = buildTrainingGraph(b.build(), { loss, params: ['x'] });
    const out = await runModel(train.model, { x: { dtype: 'float32', shape: [n], data: x } });
    const m = out[mask]!.data as Uint8Array;
    const dx = out[train.gradients.get('x')!]!.data as Float32Array;
    assert.ok(m.some((v) => v === 0) && m.some((v) => v === 1));
    m.forEach((kept, i) => assert.ok(Math.abs(dx[i]! - (kept ? 1 / 0.75 : 0)) < 1e-6, `element ${i}`));
  });
});
