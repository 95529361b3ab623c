// Unit tests: QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear (src/quant/quantize, kernels).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import {
  QUANT_TYPES,
  allocQuantArray,
  dequantizeLinear,
  dynamicQuantizeLinear,
  quantizeLinear,
  type QuantArray,
  type QuantTypeName,
} from '../../src/quant/index.js';

const code = (c: string) => (e: unknown) => e instanceof LowbitError && e.code === c;
const f32 = (...v: number[]): Float32Array => Float32Array.from(v);

/** Spec-literal reference, written differently from the kernels: explicit tie test, index arithmetic per element. */
function rint(v: number): number {
  const f = Math.floor(v);
  const diff = v - f;
  if (diff < 0.5) return f;
  if (diff > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}
function paramIndex(p: number, dims: number[], axis: number, kind: string, blockSize: number): number {
  if (kind === 'tensor') return 0;
  let inner = 1;
  for (let k = axis + 1; k < dims.length; k++) inner *= dims[k]!;
  const d = Math.floor(p / inner) % dims[axis]!;
  if (kind === 'axis') return d;
  const o = Math.floor(p / (inner * dims[axis]!));
  const nb = Math.ceil(dims[axis]! / blockSize);
  return (o * nb + Math.floor(d / blockSize)) * inner + (p % inner);
}
function refQuantize(x: Float32Array, s: Float32Array, z: ArrayLike<number>, t: QuantTypeName, dims: number[], axis: number, kind: string, B: number): number[] {
  const { qmin, qmax } = QUANT_TYPES[t];
  return Array.from(x, (v, p) => {
    const k = paramIndex(p, dims, axis, kind, B);
    const r = rint(Math.fround(v / s[k]!)) + z[k]!;
    return Math.min(qmax, Math.max(qmin, r));
  });
}
function refDequantize(q: ArrayLike<number>, s: Float32Array, z: ArrayLike<number>, dims: number[], axis: number, kind: string, B: number): number[] {
  return Array.from({ length: q.length }, (_, p) => {
    const k = paramIndex(p, dims, axis, kind, B);
    return Math.fround(Math.fround(q[p]! - z[k]!) * s[k]!);
  });
}

test('ties round half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2', () => {
  const q = quantizeLinear(f32(0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 0.49999997), 1, 0, 'int8');
  assert.deepEqual([...q], [0, 2, 2, 4, 0, -2, -2, 0]);
  const u = quantizeLinear(f32(0.5, 1.5, 2.5, -2.5), 1, 10, 'uint8');
  assert.deepEqual([...u], [10, 12, 12, 8]);
  // x / scale ties with a non-trivial scale: 0.75 / 0.5 = 1.5 -> 2, 1.25 / 0.5 = 2.5 -> 2
  assert.deepEqual([...quantizeLinear(f32(0.75, 1.25), 0.5, 0, 'int8')], [2, 2]);
});

test('x / scale is a float32 division (can differ from float64 at ties)', () => {
  // find x, s where float64 x/s lies just above k + 0.5 (float64 rounding: k + 1) but rounds to exactly
  // k + 0.5 in float32, a tie that goes to the even k
  let found = 0;
  for (let i = 1; i < 200000 && found < 3; i++) {
    const s = Math.fround(1 + i * 4.4e-6);
    const k = (i % 50) * 2;
    const x = Math.fround((k + 0.5) * s);
    const d64 = x / s;
    if (Math.fround(d64) === k + 0.5 && d64 > k + 0.5) {
      found++;
      assert.equal(quantizeLinear(f32(x), s, 0, 'int16')[0], k, `x=${x} s=${s}`);
      assert.equal(rint(d64), k + 1);
    }
  }
  assert.equal(found, 3, 'float32 tie cases found');
});

test('saturation to every type range; ±Infinity saturate, NaN -> zero point', () => {
  const x = f32(1e6, -1e6, Infinity, -Infinity, NaN, 3e38, -3e38);
  const want: Record<QuantTypeName, number[]> = {
    int8: [127, -128, 127, -128, 0, 127, -128],
    uint8: [255, 0, 255, 0, 0, 255, 0],
    int16: [32767, -32768, 32767, -32768, 0, 32767, -32768],
    uint16: [65535, 0, 65535, 0, 0, 65535, 0],
    int4: [7, -8, 7, -8, 0, 7, -8],
    uint4: [15, 0, 15, 0, 0, 15, 0],
    int32: [1e6, -1e6, 2147483647, -2147483648, 0, 2147483647, -2147483648],
  };
  for (const [t, w] of Object.entries(want)) assert.deepEqual([...quantizeLinear(x, 1, 0, t as QuantTypeName)], w, t);
  assert.deepEqual([...quantizeLinear(f32(NaN, 300), 1, 7, 'uint8')], [7, 255]);
  assert.deepEqual([...quantizeLinear(f32(-1000), 0.5, 3, 'uint4')], [0]);
  // saturate=false is ignored for integer targets, as the spec says
  assert.deepEqual([...quantizeLinear(f32(1000), 1, 0, 'int8', { saturate: false })], [127]);
});

test('per-tensor: typed outputs, scale as 1-element tensor, out option', () => {
  const x = f32(0, 1, 2.6, -1.4);
  const q = quantizeLinear(x, f32(0.5), Uint8Array.of(128), 'uint8');
  assert.ok(q instanceof Uint8Array);
  assert.deepEqual([...q], [128, 130, 133, 125]);
  const out = new Int16Array(4);
  assert.equal(quantizeLinear(x, 0.5, 0, 'int16', { out }), out);
  assert.deepEqual([...out], [0, 2, 5, -3]);
  assert.throws(() => quantizeLinear(x, 0.5, 0, 'int8', { out: new Uint8Array(4) }), code('BAD_OPTION'));
  assert.throws(() => quantizeLinear(x, 0.5, 0, 'int8', { out: new Int8Array(3) }), code('BAD_OPTION'));
  assert.deepEqual([...dequantizeLinear(q, 0.5, 128)], [0, 1, 2.5, -1.5]);
  assert.deepEqual([...dequantizeLinear(Int8Array.of(-128, 127), 0.1)], [Math.fround(-12.8), Math.fround(12.7)]);
});

test('per-axis: axis 0, 1, -1 and the ONNX default axis 1', () => {
  const x = f32(1, 2, 3, 4, 5, 6); // [2, 3]
  assert.deepEqual([...quantizeLinear(x, f32(1, 2), [0, 10], 'int8', { dims: [2, 3], axis: 0 })], [1, 2, 3, 12, 12, 13]);
  const s3 = f32(1, 2, 4);
  const byAxis1 = [...quantizeLinear(x, s3, [0, 1, 2], 'int8', { dims: [2, 3], axis: 1 })];
  assert.deepEqual(byAxis1, [1, 2, 3, 4, 3, 4]); // 5/2 = 2.5 -> 2 (+1)
  assert.deepEqual([...quantizeLinear(x, s3, [0, 1, 2], 'int8', { dims: [2, 3], axis: -1 })], byAxis1);
  assert.deepEqual([...quantizeLinear(x, s3, [0, 1, 2], 'int8', { dims: [2, 3] })], byAxis1);
  const deq = dequantizeLinear(Int8Array.of(1, 2, 3, 4, 3, 4), s3, [0, 1, 2], { dims: [2, 3], axis: 1 });
  assert.deepEqual([...deq], [1, 2, 4, 4, 4, 8]);
  // [1, 3, 2, 2]-like conv activation, per channel on axis 1
  const a = new Float32Array(12).map((_, i) => i);
  assert.deepEqual(
    [...quantizeLinear(a, f32(1, 2, 4), undefined, 'uint8', { dims: [1, 3, 2, 2], axis: 1 })],
    [0, 1, 2, 3, 2, 2, 3, 4, 2, 2, 2, 3],
  );
});

test('blocked: along the last axis, along axis 0, ragged last block', () => {
  const x = f32(1, 2, 3, 4, 5, 6, 7, 8); // [2, 4], blocks of 2 along axis 1 -> scale [2, 2]
  const q = quantizeLinear(x, f32(1, 2, 4, 8), [0, 0, 1, 1], 'int8', { dims: [2, 4], axis: 1, blockSize: 2 });
  assert.deepEqual([...q], [1, 2, 2, 2, 2, 3, 2, 2]);
  assert.deepEqual(
    [...dequantizeLinear(q, f32(1, 2, 4, 8), [0, 0, 1, 1], { dims: [2, 4], axis: 1, blockSize: 2 })],
    [1, 2, 4, 4, 4, 8, 8, 8],
  );
  // ragged: [1, 5] with blockSize 2 -> 3 blocks
  const r = quantizeLinear(f32(2, 2, 2, 2, 2), f32(1, 2, 0.5), undefined, 'int8', { dims: [1, 5], axis: 1, blockSize: 2 });
  assert.deepEqual([...r], [2, 2, 1, 1, 4]);
  // along axis 0 with inner > 1: [4, 2], blockSize 3 -> scale [2, 2]
  const c = quantizeLinear(f32(1, 1, 1, 1, 1, 1, 1, 1), f32(1, 0.5, 0.25, 2), undefined, 'int8', {
    dims: [4, 2],
    axis: 0,
    blockSize: 3,
  });
  assert.deepEqual([...c], [1, 2, 1, 2, 1, 2, 4, 0]);
  assert.throws(
    () => quantizeLinear(x, f32(1, 2, 3), undefined, 'int8', { dims: [2, 4], axis: 1, blockSize: 2 }),
    code('DATA_MISMATCH'),
  );
});

test('all granularities x types against the spec-literal reference, across chunk boundaries', () => {
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const shapes: [number[], number, number][] = [
    [[40000], 0, 0],
    [[3, 20011], 0, 0],
    [[3, 20011], 1, 0],
    [[20011, 3], 1, 0],
    [[5, 7, 1171], 1, 0],
    [[5, 7, 1171], -1, 0],
    [[300, 130], 1, 32],
    [[300, 130], 0, 64],
    [[7, 9, 700], 2, 100],
    [[7, 9, 700], 1, 4],
  ];
  const types: QuantTypeName[] = ['int8', 'uint8', 'int16', 'uint16', 'int4', 'uint4', 'int32'];
  for (const [dims, axisIn, B] of shapes) {
    const n = dims.reduce((a, b) => a * b, 1);
    const axis = axisIn < 0 ? axisIn + dims.length : axisIn;
    const x = new Float32Array(n).map(() => (rnd() - 0.5) * 200);
    const perTensor = dims.length === 1;
    const kind = perTensor ? 'tensor' : B > 0 ? 'blocked' : 'axis';
    const np = perTensor ? 1 : B > 0 ? (n / dims[axis]!) * Math.ceil(dims[axis]! / B) : dims[axis]!;
    for (const t of types) {
      const { qmin, qmax } = QUANT_TYPES[t];
      const s = new Float32Array(np).map(() => 0.05 + rnd() * 3);
      const zs = Array.from({ length: np }, () => Math.round(qmin + rnd() * Math.min(qmax - qmin, 1000)));
      const z = allocQuantArray(t, np);
      z.set(zs);
      const opts = perTensor ? {} : { dims, axis: axisIn, blockSize: B };
      const q = quantizeLinear(x, perTensor ? s[0]! : s, perTensor ? zs[0]! : z, t, opts);
      const want = refQuantize(x, s, zs, t, dims, axis, kind, B);
      assert.deepEqual(Array.from(q), want, `${t} ${dims} axis ${axisIn} B ${B}`);
      const y = dequantizeLinear(q as QuantArray, perTensor ? s[0]! : s, perTensor ? zs[0]! : z, opts);
      assert.deepEqual(Array.from(y), refDequantize(q, s, zs, dims, axis, kind, B), `deq ${t} ${dims}`);
    }
  }
});

test('dequantize int32 (bias) rounds the difference like ORT', () => {
  const y = dequantizeLinear(Int32Array.of(2147483647, -2147483648, 16777217), f32(0.5));
  assert.deepEqual([...y], [Math.fround(2147483647) * 0.5, -1073741824, 8388608]);
});

test('argument validation', () => {
  const x = f32(1, 2, 3, 4);
  assert.throws(() => quantizeLinear(x, 0, 0, 'int8'), code('NON_FINITE'));
  assert.throws(() => quantizeLinear(x, NaN, 0, 'int8'), code('NON_FINITE'));
  assert.throws(() => dequantizeLinear(Int8Array.of(1), Infinity), code('NON_FINITE'));
  assert.throws(() => quantizeLinear(x, 1, 300, 'uint8'), code('BAD_OPTION'));
  assert.throws(() => quantizeLinear(x, 1, 1.5, 'int8'), code('BAD_OPTION'));
  assert.throws(() => quantizeLinear(x, 1, 8, 'int4'), code('BAD_OPTION'));
  assert.throws(() => quantizeLinear(x, f32(1, 2), undefined, 'int8'), code('BAD_OPTION')); // needs dims
  assert.throws(() => quantizeLinear(x, f32(1, 2), undefined, 'int8', { dims: [2, 2], axis: 2 }), code('BAD_OPTION'));
  assert.throws(() => quantizeLinear(x, f32(1, 2, 3), undefined, 'int8', { dims: [2, 2], axis: 0 }), code('DATA_MISMATCH'));
  assert.throws(() => quantizeLinear(x, f32(1, 2), [0], 'int8', { dims: [2, 2], axis: 0 }), code('DATA_MISMATCH'));
  assert.throws(() => quantizeLinear(x, f32(1, 2), undefined, 'int8', { dims: [3, 2], axis: 0 }), code('DATA_MISMATCH'));
  assert.throws(() => quantizeLinear(x, f32(1), undefined, 'int8', { blockSize: -1 }), code('BAD_OPTION'));
  assert.throws(() => quantizeLinear(x, new Float32Array(0), undefined, 'int8'), code('BAD_OPTION'));
  assert.deepEqual([...quantizeLinear(new Float32Array(0), 1, 0, 'int8')], []);
  assert.deepEqual([...quantizeLinear(new Float32Array(0), f32(1, 2), 0, 'int8', { dims: [0, 2], axis: 1 })], []);
});

test('dynamicQuantizeLinear: the ONNX example and edge cases', () => {
  const r = dynamicQuantizeLinear(f32(0, 2, -3, -2.5, 1.34, 0.5));
  assert.equal(r.scale, Math.fround(5 / 255));
  assert.equal(r.zeroPoint, 153);
  assert.deepEqual([...r.y], [153, 255, 0, 26, 221, 179]);
  const pos = dynamicQuantizeLinear(f32(1, 2, 3, 4, 5)); // min clamps to 0
  assert.deepEqual([pos.scale, pos.zeroPoint, ...pos.y], [Math.fround(5 / 255), 0, 51, 102, 153, 204, 255]);
  const neg = dynamicQuantizeLinear(f32(-1, -2, -3, -4, -5)); // max clamps to 0
  assert.deepEqual([neg.zeroPoint, ...neg.y], [255, 204, 153, 102, 51, 0]);
  const zero = dynamicQuantizeLinear(new Float32Array(3));
  assert.deepEqual([zero.scale, zero.zeroPoint, ...zero.y], [1, 0, 0, 0, 0]);
  assert.throws(() => dynamicQuantizeLinear(f32(1, NaN)), code('NON_FINITE'));
});
