// Hot loops of QuantizeLinear / DequantizeLinear over a flat index range [a, b), per granularity.
// Pure; internal to src/quant (quantize.ts drives them chunk by chunk).
//
// Every kernel sees only Float32Array and Int32Array, so its element accesses stay monomorphic (a typed-array
// store that has seen 5 array types goes megamorphic and runs ~10x slower). quantize.ts converts between
// Int32Array chunks and the caller's Int8/Uint8/Int16/Uint16 arrays with TypedArray#set, which is native.
//
// Quantized values live at q[p - shift]; float values at f[p].

import { RHE_MAGIC } from './util.js';

// Quantize: v = fround(x / s), clamped to [qmin - z, qmax - z] before rounding (equivalent since the bounds are
// integers, and it keeps the 2^52 round-half-even trick in range), then + z. NaN fails both comparisons and
// leaves v NaN, which maps to z.

export function quantizeTensor(
  x: Float32Array, a: number, b: number, q: Int32Array, shift: number,
  s: number, z: number, qmin: number, qmax: number,
): void {
  const lo = qmin - z;
  const hi = qmax - z;
  for (let p = a; p < b; p++) {
    let v = Math.fround(x[p]! / s);
    if (v < lo) v = lo;
    else if (v > hi) v = hi;
    v = v + RHE_MAGIC - RHE_MAGIC;
    q[p - shift] = v === v ? v + z : z;
  }
}

export function quantizeAxis(
  x: Float32Array, a: number, b: number, q: Int32Array, shift: number,
  scale: Float32Array, zp: Float64Array, dim: number, inner: number, qmin: number, qmax: number,
): void {
  if (inner === 1) {
    // axis is the last one: the channel changes with every element
    let d = a % dim;
    for (let p = a; p < b; p++) {
      const s = scale[d]!;
      const z = zp[d]!;
      let v = Math.fround(x[p]! / s);
      if (v < qmin - z) v = qmin - z;
      else if (v > qmax - z) v = qmax - z;
      v = v + RHE_MAGIC - RHE_MAGIC;
      q[p - shift] = v === v ? v + z : z;
      if (++d === dim) d = 0;
    }
    return;
  }
  const c = Math.floor(a / inner);
  let d = c % dim;
  let runEnd = (c + 1) * inner;
  let p = a;
  while (p < b) {
    const end = runEnd < b ? runEnd : b;
    const s = scale[d]!;
    const z = zp[d]!;
    const lo = qmin - z;
    const hi = qmax - z;
    for (; p < end; p++) {
      let v = Math.fround(x[p]! / s);
      if (v < lo) v = lo;
      else if (v > hi) v = hi;
      v = v + RHE_MAGIC - RHE_MAGIC;
      q[p - shift] = v === v ? v + z : z;
    }
    runEnd += inner;
    if (++d === dim) d = 0;
  }
}

export function quantizeBlocked(
  x: Float32Array, a: number, b: number, q: Int32Array, shift: number,
  scale: Float32Array, zp: Float64Array, dim: number, inner: number, blockSize: number, qmin: number, qmax: number,
): void {
  const nb = Math.ceil(dim / blockSize);
  const c = Math.floor(a / inner);
  let o = Math.floor(c / dim);
  let d = c - o * dim;
  let i = a - c * inner;
  let p = a;
  if (inner === 1) {
    // blocks run along the last axis: each run of up to blockSize elements shares one scale
    while (p < b) {
      const blk = Math.floor(d / blockSize);
      const k = o * nb + blk;
      const stop = Math.min((blk + 1) * blockSize, dim) - d;
      const end = p + stop < b ? p + stop : b;
      const s = scale[k]!;
      const z = zp[k]!;
      const lo = qmin - z;
      const hi = qmax - z;
      d += end - p;
      for (; p < end; p++) {
        let v = Math.fround(x[p]! / s);
        if (v < lo) v = lo;
        else if (v > hi) v = hi;
        v = v + RHE_MAGIC - RHE_MAGIC;
        q[p - shift] = v === v ? v + z : z;
      }
      if (d === dim) {
        d = 0;
        o++;
      }
    }
    return;
  }
  while (p < b) {
    const base = (o * nb + Math.floor(d / blockSize)) * inner;
    const end = p + inner - i < b ? p + inner - i : b;
    for (; p < end; p++, i++) {
      const s = scale[base + i]!;
      const z = zp[base + i]!;
      let v = Math.fround(x[p]! / s);
      if (v < qmin - z) v = qmin - z;
      else if (v > qmax - z) v = qmax - z;
      v = v + RHE_MAGIC - RHE_MAGIC;
      q[p - shift] = v === v ? v + z : z;
    }
    i = 0;
    if (++d === dim) {
      d = 0;
      o++;
    }
  }
}

// Dequantize: y = fround(q - z) * s, stored to float32 (one rounding of an exact double product).
// fround(q - z) is the identity for 8/16-bit inputs and matches ORT's int32 -> float conversion for int32.

export function dequantizeTensor(
  q: Int32Array, shift: number, a: number, b: number, y: Float32Array, s: number, z: number,
): void {
  for (let p = a; p < b; p++) y[p] = Math.fround(q[p - shift]! - z) * s;
}

export function dequantizeAxis(
  q: Int32Array, shift: number, a: number, b: number, y: Float32Array,
  scale: Float32Array, zp: Float64Array, dim: number, inner: number,
): void {
  if (inner === 1) {
    let d = a % dim;
    for (let p = a; p < b; p++) {
      y[p] = Math.fround(q[p - shift]! - zp[d]!) * scale[d]!;
      if (++d === dim) d = 0;
    }
    return;
  }
  const c = Math.floor(a / inner);
  let d = c % dim;
  let runEnd = (c + 1) * inner;
  let p = a;
  while (p < b) {
    const end = runEnd < b ? runEnd : b;
    const s = scale[d]!;
    const z = zp[d]!;
    for (; p < end; p++) y[p] = Math.fround(q[p - shift]! - z) * s;
    runEnd += inner;
    if (++d === dim) d = 0;
  }
}

export function dequantizeBlocked(
  q: Int32Array, shift: number, a: number, b: number, y: Float32Array,
  scale: Float32Array, zp: Float64Array, dim: number, inner: number, blockSize: number,
): void {
  const nb = Math.ceil(dim / blockSize);
  const c = Math.floor(a / inner);
  let o = Math.floor(c / dim);
  let d = c - o * dim;
  let i = a - c * inner;
  let p = a;
  while (p < b) {
    if (inner === 1) {
      const blk = Math.floor(d / blockSize);
      const k = o * nb + blk;
      const stop = Math.min((blk + 1) * blockSize, dim) - d;
      const end = p + stop < b ? p + stop : b;
      const s = scale[k]!;
      const z = zp[k]!;
      d += end - p;
      for (; p < end; p++) y[p] = Math.fround(q[p - shift]! - z) * s;
    } else {
      const base = (o * nb + Math.floor(d / blockSize)) * inner;
      const end = p + inner - i < b ? p + inner - i : b;
      for (; p < end; p++, i++) y[p] = Math.fround(q[p - shift]! - zp[base + i]!) * scale[base + i]!;
      i = 0;
      d++;
    }
    if (d === dim) {
      d = 0;
      o++;
    }
  }
}
