// Unit tests: quantization type table, ranges and scale / zero-point computation (src/quant/dtypes, qparams).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { DataType } from '../../src/onnx/proto.js';
import {
  QUANT_TYPES,
  allocQuantArray,
  computeQParams,
  computeQParamsBlocked,
  computeQParamsFromData,
  computeQParamsPerAxis,
  dequantizeLinear,
  minMax,
  quantRange,
  quantType,
  quantizeLinear,
  roundHalfEven,
  type QuantTypeName,
} from '../../src/quant/index.js';

const code = (c: string) => (e: unknown) => e instanceof LowbitError && e.code === c;

test('type table: ONNX codes, full ranges, bits', () => {
  const want: Record<QuantTypeName, [number, number, number, number]> = {
    int8: [DataType.INT8, -128, 127, 8],
    uint8: [DataType.UINT8, 0, 255, 8],
    int16: [DataType.INT16, -32768, 32767, 16],
    uint16: [DataType.UINT16, 0, 65535, 16],
    int4: [DataType.INT4, -8, 7, 4],
    uint4: [DataType.UINT4, 0, 15, 4],
    int32: [DataType.INT32, -2147483648, 2147483647, 32],
  };
  for (const [name, [dt, qmin, qmax, bits]] of Object.entries(want)) {
    const t = QUANT_TYPES[name as QuantTypeName];
    assert.deepEqual([t.dataType, t.qmin, t.qmax, t.bits, t.signed], [dt, qmin, qmax, bits, qmin < 0], name);
    assert.equal(quantType(dt), t);
    assert.equal(quantType(name as QuantTypeName), t);
  }
  assert.throws(() => quantType('int7' as QuantTypeName), code('BAD_OPTION'));
  assert.throws(() => quantType(DataType.FLOAT), code('BAD_OPTION'));
  assert.throws(() => quantType('toString' as QuantTypeName), code('BAD_OPTION'));
});

test('ranges: reduce_range (ORT table), symmetric narrowing, explicit narrow', () => {
  assert.deepEqual(quantRange('int8', { reduceRange: true }), { qmin: -64, qmax: 64 });
  assert.deepEqual(quantRange('uint8', { reduceRange: true }), { qmin: 0, qmax: 127 });
  assert.deepEqual(quantRange('int16', { reduceRange: true }), { qmin: -16384, qmax: 16384 });
  assert.deepEqual(quantRange('uint16', { reduceRange: true }), { qmin: 0, qmax: 32767 });
  assert.deepEqual(quantRange('int4', { reduceRange: true }), { qmin: -4, qmax: 3 });
  assert.deepEqual(quantRange('uint4', { reduceRange: true }), { qmin: 0, qmax: 7 });
  assert.deepEqual(quantRange('int8', { symmetric: true }), { qmin: -127, qmax: 127 });
  assert.deepEqual(quantRange('int8', { symmetric: true, reduceRange: true }), { qmin: -64, qmax: 64 });
  assert.deepEqual(quantRange('int8', { symmetric: true, narrow: false }), { qmin: -128, qmax: 127 });
  assert.deepEqual(quantRange('int8'), { qmin: -128, qmax: 127 });
  assert.deepEqual(quantRange('int16', { symmetric: true }), { qmin: -32767, qmax: 32767 });
  assert.deepEqual(quantRange('uint8', { symmetric: true }), { qmin: 0, qmax: 255 });
  assert.deepEqual(quantRange('uint8', { narrow: true }), { qmin: 0, qmax: 254 });
  assert.deepEqual(quantRange('int4', { symmetric: true }), { qmin: -8, qmax: 7 });
  assert.deepEqual(quantRange('int4', { narrow: true }), { qmin: -7, qmax: 7 });
});

test('allocQuantArray picks the storage type', () => {
  assert.ok(allocQuantArray('int8', 2) instanceof Int8Array);
  assert.ok(allocQuantArray('int4', 2) instanceof Int8Array);
  assert.ok(allocQuantArray('uint4', 2) instanceof Uint8Array);
  assert.ok(allocQuantArray('uint8', 2) instanceof Uint8Array);
  assert.ok(allocQuantArray('int16', 2) instanceof Int16Array);
  assert.ok(allocQuantArray('uint16', 2) instanceof Uint16Array);
  assert.ok(allocQuantArray('int32', 3) instanceof Int32Array);
  assert.equal(allocQuantArray('int32', 3).length, 3);
});

test('roundHalfEven: ties go to the even neighbour', () => {
  const cases: [number, number][] = [
    [0.5, 0], [1.5, 2], [2.5, 2], [-0.5, -0], [-1.5, -2], [-2.5, -2], [0.49999999999999994, 0],
    [3.5000001, 4], [-3.4999, -3], [1e300, 1e300], [2 ** 52 + 1, 2 ** 52 + 1],
  ];
  for (const [v, r] of cases) assert.equal(roundHalfEven(v), r, String(v));
  assert.ok(Object.is(roundHalfEven(-0.4), -0));
  assert.ok(Number.isNaN(roundHalfEven(NaN)));
  assert.equal(roundHalfEven(-Infinity), -Infinity);
});

test('asymmetric uint8 / int8: hand-computed scale and zero point', () => {
  // [-1, 3]: scale 4/255, zero point round(0 + 1/(4/255)) = round(63.75) = 64
  assert.deepEqual(computeQParams(-1, 3, 'uint8'), { scale: Math.fround(4 / 255), zeroPoint: 64 });
  // int8: round(-128 + 63.75) = -64
  assert.deepEqual(computeQParams(-1, 3, 'int8'), { scale: Math.fround(4 / 255), zeroPoint: -64 });
  // the range is extended to include 0
  assert.deepEqual(computeQParams(1, 3, 'uint8'), { scale: Math.fround(3 / 255), zeroPoint: 0 });
  assert.deepEqual(computeQParams(-3, -1, 'uint8'), { scale: Math.fround(3 / 255), zeroPoint: 255 });
  assert.deepEqual(computeQParams(-3, -1, 'int8'), { scale: Math.fround(3 / 255), zeroPoint: 127 });
  // reduce_range uint8 [0,127], [-1, 1]: zero point round(63.5) = 64 (tie -> even)
  assert.deepEqual(computeQParams(-1, 1, 'uint8', { reduceRange: true }), { scale: Math.fround(2 / 127), zeroPoint: 64 });
  // ... and [-1.5, 0.5] gives 1.5 * 127/2 = 95.25 -> 95
  assert.deepEqual(computeQParams(-1.5, 0.5, 'uint8', { reduceRange: true }).zeroPoint, 95);
});

test('symmetric: zero point in the middle, scale from absmax', () => {
  assert.deepEqual(computeQParams(-1, 0.5, 'int8', { symmetric: true }), { scale: Math.fround(2 / 254), zeroPoint: 0 });
  assert.deepEqual(computeQParams(-0.2, 4, 'int8', { symmetric: true }), { scale: Math.fround(8 / 254), zeroPoint: 0 });
  assert.deepEqual(computeQParams(-1, 0.5, 'uint8', { symmetric: true }), { scale: Math.fround(2 / 255), zeroPoint: 128 });
  assert.deepEqual(computeQParams(-1, 0.5, 'uint8', { symmetric: true, narrow: true }), {
    scale: Math.fround(2 / 254),
    zeroPoint: 127,
  });
  assert.equal(computeQParams(-1, 1, 'uint16', { symmetric: true }).zeroPoint, 32768);
  assert.equal(computeQParams(-1, 1, 'int16', { symmetric: true }).scale, Math.fround(2 / 65534));
  assert.deepEqual(computeQParams(-1, 1, 'uint4', { symmetric: true }), { scale: Math.fround(2 / 15), zeroPoint: 8 });
  assert.deepEqual(computeQParams(-1, 1, 'int4', { symmetric: true }), { scale: Math.fround(2 / 15), zeroPoint: 0 });
  assert.deepEqual(computeQParams(-1, 1, 'int8', { symmetric: true, reduceRange: true }), {
    scale: Math.fround(2 / 128),
    zeroPoint: 0,
  });
  assert.ok(Object.is(computeQParams(-1, 1, 'int4', { symmetric: true }).zeroPoint, 0), 'no -0 zero point');
});

test('zero range: scale 1, zero point keeps 0 exact', () => {
  assert.deepEqual(computeQParams(0, 0, 'int8'), { scale: 1, zeroPoint: 0 });
  assert.deepEqual(computeQParams(0, 0, 'uint8'), { scale: 1, zeroPoint: 0 });
  assert.deepEqual(computeQParams(0, 0, 'uint8', { symmetric: true }), { scale: 1, zeroPoint: 128 });
  assert.deepEqual(computeQParams(0, 1e-45, 'int8'), { scale: 1, zeroPoint: 0 }); // below float32 tiny
  assert.deepEqual(computeQParamsFromData(new Float32Array(7), 'uint8'), { scale: 1, zeroPoint: 0, rmin: 0, rmax: 0 });
  // a non-zero constant tensor is not a zero range: [0, c] after extension
  assert.deepEqual(computeQParamsFromData(new Float32Array(5).fill(2), 'uint8'), {
    scale: Math.fround(2 / 255),
    zeroPoint: 0,
    rmin: 2,
    rmax: 2,
  });
});

test('non-finite and inverted ranges throw', () => {
  assert.throws(() => computeQParams(NaN, 1, 'int8'), code('NON_FINITE'));
  assert.throws(() => computeQParams(0, NaN, 'uint8'), code('NON_FINITE'));
  assert.throws(() => computeQParams(-Infinity, 1, 'int8'), code('NON_FINITE'));
  assert.throws(() => computeQParams(2, 1, 'int8'), code('BAD_OPTION'));
  assert.throws(() => computeQParamsFromData(Float32Array.of(1, NaN, 2), 'int8'), code('NON_FINITE'));
  assert.throws(() => computeQParamsFromData(Float32Array.of(NaN, NaN), 'int8'), code('NON_FINITE'));
  assert.throws(() => computeQParamsFromData(Float32Array.of(1, Infinity), 'int8'), code('NON_FINITE'));
  assert.throws(() => minMax(Float32Array.of(-Infinity)), /element 0 .*-Infinity/);
  assert.throws(
    () => computeQParamsPerAxis(Float32Array.of(1, 2, NaN, 4), [2, 2], 0, 'int8'),
    (e: unknown) => e instanceof LowbitError && e.code === 'NON_FINITE' && /element 2/.test(e.message),
  );
  assert.throws(() => computeQParamsPerAxis(Float32Array.of(1, 2, Infinity, 4), [2, 2], 1, 'int8'), code('NON_FINITE'));
  assert.throws(() => computeQParamsBlocked(Float32Array.of(1, NaN), [2], 0, 1, 'int8'), code('NON_FINITE'));
});

test('scales are float32 and every range keeps 0 exact (pseudo-random ranges)', () => {
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  for (let k = 0; k < 2000; k++) {
    const a = rnd() * 10 ** (rnd() * 4);
    const b = rnd() * 10 ** (rnd() * 4);
    for (const t of ['int8', 'uint8', 'int16', 'uint16', 'int4', 'uint4'] as const) {
      for (const symmetric of [false, true]) {
        const rmin = Math.fround(Math.min(a, b));
        const rmax = Math.fround(Math.max(a, b));
        const { scale, zeroPoint } = computeQParams(rmin, rmax, t, { symmetric });
        assert.equal(Math.fround(scale), scale);
        const { qmin, qmax } = quantRange(t, { symmetric });
        assert.ok(zeroPoint >= qmin && zeroPoint <= qmax && Number.isInteger(zeroPoint));
        const q = quantizeLinear(Float32Array.of(0, rmin, rmax), scale, zeroPoint, t);
        assert.equal(q[0], zeroPoint, 'zero maps to the zero point');
        const back = dequantizeLinear(q, scale, zeroPoint);
        assert.equal(back[0], 0);
        assert.ok(Math.abs(back[1]! - rmin) <= scale * 1.0001 && Math.abs(back[2]! - rmax) <= scale * 1.0001);
      }
    }
  }
});

test('per-axis parameters: axis 0, 1 and -1 match per-slice computeQParams', () => {
  const data = Float32Array.of(-1, 2, 0.5, 3, -4, 0.25); // [2, 3]
  const a0 = computeQParamsPerAxis(data, [2, 3], 0, 'uint8');
  assert.ok(a0.zeroPoint instanceof Uint8Array);
  assert.deepEqual([...a0.scale], [computeQParams(-1, 2, 'uint8').scale, computeQParams(-4, 3, 'uint8').scale]);
  assert.deepEqual([...a0.zeroPoint], [computeQParams(-1, 2, 'uint8').zeroPoint, computeQParams(-4, 3, 'uint8').zeroPoint]);
  const a1 = computeQParamsPerAxis(data, [2, 3], 1, 'int8', { symmetric: true });
  assert.ok(a1.zeroPoint instanceof Int8Array);
  assert.deepEqual(
    [...a1.scale],
    [
      computeQParams(-1, 3, 'int8', { symmetric: true }).scale,
      computeQParams(-4, 2, 'int8', { symmetric: true }).scale,
      computeQParams(0.25, 0.5, 'int8', { symmetric: true }).scale,
    ],
  );
  assert.deepEqual([...a1.zeroPoint], [0, 0, 0]);
  const neg = computeQParamsPerAxis(data, [2, 3], -1, 'int8', { symmetric: true });
  assert.deepEqual([...neg.scale], [...a1.scale]);
  // 4-D conv weight [O, I, kh, kw], axis 0
  const w = new Float32Array(2 * 2 * 2 * 2).map((_, i) => (i < 8 ? i - 3 : (i - 8) * 10));
  const pw = computeQParamsPerAxis(w, [2, 2, 2, 2], 0, 'int8', { symmetric: true });
  assert.deepEqual([...pw.scale], [Math.fround(8 / 254), Math.fround(140 / 254)]);
  // all-zero channel
  const z = computeQParamsPerAxis(Float32Array.of(0, 0, 1, -1), [2, 2], 0, 'uint8', { symmetric: true });
  assert.deepEqual([...z.scale, ...z.zeroPoint], [1, Math.fround(2 / 255), 128, 128]);
  assert.throws(() => computeQParamsPerAxis(data, [2, 3], 2, 'int8'), code('BAD_OPTION'));
  assert.throws(() => computeQParamsPerAxis(data, [2, 2], 0, 'int8'), code('DATA_MISMATCH'));
});

test('blocked parameters: shape and values per block, ragged last block', () => {
  const data = Float32Array.of(1, -2, 3, 4, -5, /* row 2 */ 0.5, 0.25, -8, 1, 2); // [2, 5]
  const b = computeQParamsBlocked(data, [2, 5], 1, 2, 'int4', { symmetric: true });
  assert.deepEqual(b.dims, [2, 3]);
  const s = (m: number): number => computeQParams(-m, m, 'int4', { symmetric: true }).scale;
  assert.deepEqual([...b.scale], [s(2), s(4), s(5), s(0.5), s(8), s(2)]);
  assert.ok(b.zeroPoint instanceof Int8Array);
  // blocked along axis 0 (inner > 1): [4, 2] blocks of 3 rows -> [2, 2]
  const c = computeQParamsBlocked(Float32Array.of(1, 2, 3, 4, 5, 6, 7, -80), [4, 2], 0, 3, 'uint8');
  assert.deepEqual(c.dims, [2, 2]);
  assert.deepEqual([...c.scale], [computeQParams(0, 5, 'uint8').scale, computeQParams(0, 6, 'uint8').scale,
    computeQParams(0, 7, 'uint8').scale, computeQParams(-80, 0, 'uint8').scale]);
  assert.deepEqual([...c.zeroPoint], [0, 0, 0, 255]);
  assert.throws(() => computeQParamsBlocked(data, [2, 5], 1, 0, 'int4'), code('BAD_OPTION'));
});
