// Unit tests: float32 <-> float16 / bfloat16 conversions (src/quant/float16), exhaustive where feasible.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import {
  bfloat16ArrayToFloat32,
  bfloat16ToFloat32,
  float16ArrayToFloat32,
  float16BitsToFloat32Bits,
  float16ToFloat32,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  float32BitsToBfloat16Bits,
  float32BitsToFloat16Bits,
  float32ToBfloat16,
  float32ToFloat16,
} from '../../src/quant/index.js';

const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
const bitsOf = (v: number): number => ((F[0] = v), U[0]!);
const fromBits = (b: number): number => ((U[0] = b >>> 0), F[0]!);

/** Independent float16 value decoder: sign * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024. */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

/** Reference float -> nearest float16 value (ties to even), by exact arithmetic on doubles. */
function refHalf(v: number): number {
  if (Number.isNaN(v)) return NaN;
  const a = Math.abs(v);
  if (a >= 65520) return Math.sign(v) * Infinity; // 65504 + half an ulp (16), tie rounds to the odd-free 2^16
  let e = a === 0 ? -14 : Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  if (e < -14) e = -14;
  const ulp = 2 ** (e - 10);
  const q = a / ulp; // exact: power-of-two division
  const f = Math.floor(q);
  const r = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return (v < 0 || Object.is(v, -0) ? -1 : 1) * r * ulp;
}

test('float16 -> float32 -> float16 is the identity for all 65536 patterns (NaN stays NaN)', () => {
  let nans = 0;
  for (let h = 0; h < 65536; h++) {
    const f = float16ToFloat32(h);
    const want = halfValue(h);
    if (Number.isNaN(want)) {
      nans++;
      assert.ok(Number.isNaN(f), `0x${h.toString(16)} must decode to NaN`);
      const back = float32ToFloat16(f);
      assert.equal(back & 0x7c00, 0x7c00, 'NaN re-encodes as NaN');
      assert.notEqual(back & 0x3ff, 0);
      // on bits, payloads survive except that the quiet bit is forced
      assert.equal(float32BitsToFloat16Bits(float16BitsToFloat32Bits(h)), h | 0x200);
    } else {
      assert.ok(Object.is(f, want), `0x${h.toString(16)} decodes to ${want}, got ${f}`);
      assert.equal(float32ToFloat16(f), h);
    }
  }
  assert.equal(nans, 2046);
});

test('float32 -> float16 rounds to nearest even at every rounding boundary', () => {
  // For each pair of neighbouring finite halves, the exact midpoint (a float32) and its float32 neighbours.
  const probe = (v: number): void => {
    const got = float32ToFloat16(v);
    const want = refHalf(v);
    assert.ok(Object.is(halfValue(got), want), `${v} (0x${bitsOf(v).toString(16)}): got ${halfValue(got)}, want ${want}`);
  };
  for (let h = 0; h < 0x7c00; h++) {
    for (const sign of [0, 0x8000]) {
      const a = halfValue(h | sign);
      const b = halfValue((h + 1) | sign);
      const mid = (a + b) / 2;
      assert.equal(Math.fround(mid), mid);
      const m = bitsOf(mid);
      probe(a);
      probe(mid);
      probe(fromBits(m + 1));
      probe(fromBits(m - 1));
    }
  }
});

test('float32 -> float16 on pseudo-random float32 bit patterns and known values', () => {
  let s = 0x12345678;
  for (let k = 0; k < 300000; k++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const v = fromBits(s);
    const got = float32ToFloat16(v);
    if (Number.isNaN(v)) assert.ok(Number.isNaN(halfValue(got)));
    else assert.ok(Object.is(halfValue(got), refHalf(v)), `${v}`);
  }
  const known: [number, number][] = [
    [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e10, 0x7c00], [-1e10, 0xfc00],
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], [Math.fround(2 ** -25 * 1.0000001), 0x0001], [3 * 2 ** -25, 0x0002],
    [2 ** -14, 0x0400], [1 / 3, 0x3555], [0.1, 0x2e66], [-0, 0x8000], [Infinity, 0x7c00], [1e-30, 0],
  ];
  for (const [v, h] of known) assert.equal(float32ToFloat16(v), h, String(v));
  assert.equal(float32ToFloat16(NaN) & 0x7e00, 0x7e00);
  // Newer Node ships Math.f16round: agree with it where present.
  const f16round = (Math as { f16round?: (x: number) => number }).f16round;
  if (typeof f16round === 'function') {
    for (let h = 0; h < 0x7c00; h += 7) assert.equal(float16ToFloat32(float32ToFloat16(halfValue(h) * 1.0001)), f16round(Math.fround(halfValue(h) * 1.0001)));
  }
});

test('array conversions match the scalar ones; NaN payloads survive bit for bit', () => {
  const src = new Float32Array(5000).map((_, i) => (i - 2500) * 0.37 * 1.7 ** ((i % 60) - 30));
  src[0] = NaN;
  src[1] = -Infinity;
  src[2] = -0;
  const h = float32ArrayToFloat16(src);
  for (let i = 0; i < src.length; i++) assert.equal(h[i], float32ToFloat16(src[i]!), `index ${i}`);
  const back = float16ArrayToFloat32(h);
  for (let i = 0; i < src.length; i++) assert.ok(Object.is(back[i], float16ToFloat32(h[i]!)) || Number.isNaN(back[i]!));
  const nanHalves = Uint16Array.of(0x7c01, 0xfe55, 0x7fff);
  const wide = new Uint32Array(float16ArrayToFloat32(nanHalves).buffer);
  assert.deepEqual([...wide], [0x7f802000, 0xffcaa000, 0x7fffe000]);
  const out = new Uint16Array(5000);
  assert.equal(float32ArrayToFloat16(src, out), out);
  assert.throws(() => float32ArrayToFloat16(src, new Uint16Array(3)), (e: unknown) => e instanceof LowbitError);
  // subarray views with a byte offset
  const view = src.subarray(100, 200);
  assert.deepEqual([...float32ArrayToFloat16(view)], [...h.subarray(100, 200)]);
  assert.deepEqual([...float16ArrayToFloat32(h.subarray(10, 20))], [...back.subarray(10, 20)]);
});

test('bfloat16: round to nearest even, overflow to Infinity, NaN stays NaN', () => {
  assert.equal(float32BitsToBfloat16Bits(0x3f808000), 0x3f80); // tie, even stays
  assert.equal(float32BitsToBfloat16Bits(0x3f818000), 0x3f82); // tie, odd rounds up
  assert.equal(float32BitsToBfloat16Bits(0x3f808001), 0x3f81);
  assert.equal(float32BitsToBfloat16Bits(0x3f807fff), 0x3f80);
  assert.equal(float32BitsToBfloat16Bits(0x7f7fffff), 0x7f80); // max float -> Infinity
  assert.equal(float32BitsToBfloat16Bits(0xff7fffff), 0xff80);
  assert.equal(float32BitsToBfloat16Bits(0x7f800001) & 0x7fc0, 0x7fc0); // signalling NaN -> quiet NaN
  assert.equal(float32BitsToBfloat16Bits(0xffc00000), 0xffc0);
  assert.equal(float32ToBfloat16(1), 0x3f80);
  assert.equal(float32ToBfloat16(-0), 0x8000);
  assert.equal(bfloat16ToFloat32(0x4049), 3.140625);
  for (let h = 0; h < 65536; h++) {
    const f = bfloat16ToFloat32(h);
    if (Number.isNaN(f)) assert.ok(Number.isNaN(bfloat16ToFloat32(float32ToBfloat16(f))));
    else assert.equal(float32ToBfloat16(f), h);
  }
  // against a reference on pseudo-random patterns: nearest of the two bfloat16 neighbours, ties to even
  let s = 0x2468ace;
  for (let k = 0; k < 200000; k++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const x = s >>> 0;
    const v = fromBits(x);
    if (Number.isNaN(v)) continue;
    const lo = x >>> 16; // truncation: the neighbour towards zero
    const a = bfloat16ToFloat32(lo);
    // the neighbour past the largest finite value is Infinity: IEEE rounds as if it were 2^128
    const b = (lo & 0x7fff) === 0x7f7f ? Math.sign(a) * 2 ** 128 : bfloat16ToFloat32(lo + 1);
    const da = Math.abs(v - a);
    const db = Math.abs(b - v);
    const want = v === a || da < db || (da === db && lo % 2 === 0) ? lo : lo + 1;
    assert.equal(float32BitsToBfloat16Bits(x), want, `0x${x.toString(16)}`);
  }
  const arr = Float32Array.of(1, -2.5, 3.3, NaN);
  const bf = float32ArrayToBfloat16(arr);
  assert.deepEqual([...bf.subarray(0, 3)], [0x3f80, 0xc020, float32ToBfloat16(3.3)]);
  const wide = bfloat16ArrayToFloat32(bf);
  assert.deepEqual([...wide.subarray(0, 3)], [1, -2.5, bfloat16ToFloat32(float32ToBfloat16(3.3))]);
  assert.ok(Number.isNaN(wide[3]!));
});
