// float32 <-> float16 / bfloat16 conversions, round to nearest even, on bit patterns (NaN payloads kept).
// Pure; imported by passes/ (fp16 conversion), runtime/ and the tensor codecs above quant/.

import { LowbitError } from '../errors.js';

// Bit casts go through one shared scratch cell: no allocation per element.
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * float32 bits -> float16 bits, round to nearest even. Overflow -> ±Infinity, tiny values -> float16
 * subnormals or ±0, NaN -> quiet NaN keeping the sign and the top 9 payload bits.
 */
export function float32BitsToFloat16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x38800000 && abs < 0x47800000) {
    // Fast path, result normal: rebias the exponent (127 -> 15) in place, then round the 13 dropped bits
    // to nearest even without branches. A carry out of the mantissa bumps the exponent, up to 0x7c00 = Infinity.
    const t = abs - 0x38000000;
    return sign | ((t + 0xfff + ((t >>> 13) & 1)) >>> 13);
  }
  const exp = abs >>> 23;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 | (mant >>> 13) : 0x7c00);
  const e = exp - 112; // float16 biased exponent (127 - 15)
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // float16 subnormal (unit 2^-24) or zero; below half the smallest subnormal everything rounds to 0
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rem = m & ((half << 1) - 1);
    let r = m >>> shift;
    if (rem > half || (rem === half && (r & 1) !== 0)) r++;
    return sign | r;
  }
  // a carry out of the mantissa bumps the exponent, up to 0x7c00 = Infinity: exactly right
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) !== 0)) r++;
  return sign | r;
}

/** float16 bits -> float32 bits (exact; NaN payloads kept). */
export function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // subnormal mant * 2^-24: normalise so the leading 1 becomes the implicit bit
  let e = 113;
  do {
    mant <<= 1;
    e--;
  } while ((mant & 0x400) === 0);
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** Rounds a number to float32, then to float16 (nearest even); returns the float16 bit pattern. */
export function float32ToFloat16(v: number): number {
  F32[0] = v;
  return float32BitsToFloat16Bits(U32[0]!);
}

/** float16 bit pattern -> number. */
export function float16ToFloat32(h: number): number {
  U32[0] = float16BitsToFloat32Bits(h);
  return F32[0]!;
}

/** float32 bits -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN, overflow -> ±Infinity. */
export function float32BitsToBfloat16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

/** Rounds a number to float32, then to bfloat16 (nearest even); returns the bfloat16 bit pattern. */
export function float32ToBfloat16(v: number): number {
  F32[0] = v;
  return float32BitsToBfloat16Bits(U32[0]!);
}

/** bfloat16 bit pattern -> number (exact). */
export function bfloat16ToFloat32(h: number): number {
  U32[0] = (h & 0xffff) << 16;
  return F32[0]!;
}

// Int32 (not Uint32) views: bit patterns with the sign bit set stay small integers instead of becoming doubles.
function i32View(a: Float32Array): Int32Array {
  return new Int32Array(a.buffer, a.byteOffset, a.length);
}

function checkOut<T extends { length: number }>(out: T | undefined, n: number, make: (n: number) => T, what: string): T {
  if (out === undefined) return make(n);
  if (out.length !== n) {
    throw new LowbitError('BAD_OPTION', `${what}: out has ${out.length} elements, expected ${n}`, 'pass an out array as long as the input');
  }
  return out;
}

/**
 * Float32Array -> float16 bits (Uint16Array), round to nearest even.
 * @throws LowbitError BAD_OPTION when `out` has the wrong length (same for the other array conversions).
 */
export function float32ArrayToFloat16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length;
  const dst = checkOut(out, n, (k) => new Uint16Array(k), 'float32ArrayToFloat16');
  const bits = i32View(src);
  for (let i = 0; i < n; i++) dst[i] = float32BitsToFloat16Bits(bits[i]!);
  return dst;
}

let F16_TO_F32: Int32Array | undefined;
/** The 65536-entry float16 -> float32 bit table (256 KiB), built on first use. */
function f16Table(): Int32Array {
  if (F16_TO_F32 === undefined) {
    F16_TO_F32 = new Int32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TO_F32[h] = float16BitsToFloat32Bits(h);
  }
  return F16_TO_F32;
}

/** float16 bits (Uint16Array) -> Float32Array (exact; NaN payloads kept bit for bit). */
export function float16ArrayToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  const n = src.length;
  const dst = checkOut(out, n, (k) => new Float32Array(k), 'float16ArrayToFloat32');
  const table = f16Table();
  const bits = i32View(dst);
  for (let i = 0; i < n; i++) bits[i] = table[src[i]!]!;
  return dst;
}

/** Float32Array -> bfloat16 bits (Uint16Array), round to nearest even. */
export function float32ArrayToBfloat16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length;
  const dst = checkOut(out, n, (k) => new Uint16Array(k), 'float32ArrayToBfloat16');
  const bits = i32View(src);
  for (let i = 0; i < n; i++) dst[i] = float32BitsToBfloat16Bits(bits[i]!);
  return dst;
}

/** bfloat16 bits (Uint16Array) -> Float32Array (exact). */
export function bfloat16ArrayToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  const n = src.length;
  const dst = checkOut(out, n, (k) => new Float32Array(k), 'bfloat16ArrayToFloat32');
  const bits = i32View(dst);
  for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
  return dst;
}
