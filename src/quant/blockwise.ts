// Blockwise weight quantization (weight-only): a MatMul weight B [K, N] quantized along K in blocks of
// `blockSize`, one scale (and zero point) per block and output column, as ONNX Runtime's MatMulNBits and
// the standard blocked DequantizeLinear (opset 21) read it. Pure; passes/ and pipeline/ import it.

import { LowbitError } from '../errors.js';

/** Bits per code of a blockwise-quantized weight. */
export type BlockBits = 2 | 4 | 8;

/**
 * A blockwise-quantized MatMul weight B [K, N], column-major by block: for output column n and block b,
 * the codes of rows b*blockSize .. b*blockSize+blockSize-1 (the last block padded with the zero point).
 * Dequantized value: (q - zeroPoint) * scale. Codes and zero points are unsigned, 0 .. 2^bits - 1
 * (symmetric: zero point 2^(bits-1), as MatMulNBits assumes when zero_points is absent).
 */
export interface BlockQuantized {
  bits: BlockBits;
  blockSize: number;
  /** Rows of B (the reduction axis). */
  K: number;
  /** Columns of B (output features). */
  N: number;
  symmetric: boolean;
  /** Codes, one per byte (unpacked): [N][kBlocks * blockSize], kBlocks = ceil(K / blockSize). */
  q: Uint8Array;
  /** [N * kBlocks], n-major. */
  scales: Float32Array;
  /** [N * kBlocks], n-major, unpacked. */
  zeroPoints: Uint8Array;
}

/** Blocks per column: ceil(K / blockSize). */
export function kBlocks(K: number, blockSize: number): number {
  return Math.ceil(K / blockSize);
}

/** How a weight is cut into blocks and coded. */
export interface BlockwiseOptions {
  bits: BlockBits;
  /** Rows of B per block: a power of two in 16..256. */
  blockSize: number;
  /** Zero point fixed at 2^(bits-1) (MatMulNBits' default, no zero_points input) instead of one per block. */
  symmetric: boolean;
}

/** Bit widths blockwise quantization writes. */
export const BLOCK_BITS: readonly BlockBits[] = [2, 4, 8];
/** Smallest and largest block size (powers of two in between), as ONNX Runtime's MatMulNBits accepts them. */
export const MIN_BLOCK_SIZE = 16;
export const MAX_BLOCK_SIZE = 256;

/**
 * Checks bits and blockSize.
 * @throws LowbitError BAD_OPTION when bits is not 2, 4 or 8, or blockSize is not a power of two in 16..256
 */
export function checkBlockwiseOptions(o: { bits: unknown; blockSize: unknown }): void {
  if (!(BLOCK_BITS as readonly unknown[]).includes(o.bits)) {
    throw new LowbitError('BAD_OPTION', `bits must be 2, 4 or 8 (got ${JSON.stringify(o.bits)})`, 'pass --bits 4 (the usual weight-only setting), 8 or 2');
  }
  const b = o.blockSize;
  if (typeof b !== 'number' || !Number.isInteger(b) || b < MIN_BLOCK_SIZE || b > MAX_BLOCK_SIZE || (b & (b - 1)) !== 0) {
    throw new LowbitError('BAD_OPTION', `blockSize must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE} (got ${JSON.stringify(b)})`, 'pass --block-size 32 (the default), 16, 64, 128 or 256');
  }
}

function checkShape(w: ArrayLike<number>, K: number, N: number): void {
  if (!(Number.isInteger(K) && K > 0 && Number.isInteger(N) && N > 0) || w.length !== K * N) {
    throw new LowbitError('BAD_DATA', `a blockwise weight of shape [${K}, ${N}] needs ${K * N} values, got ${w.length}`, 'pass the MatMul weight B as row-major [K, N] data');
  }
}

/** Rounding as MLAS does it (roundf: halves away from zero). */
export const roundAway = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));

/**
 * One block's scale and zero point from its range (RTN's grid, shared by GPTQ): see {@link quantizeBlockwiseRtn}.
 * `lo` / `hi` are the block's extremes widened to include 0, `extreme` its value of largest magnitude. An all-zero
 * block gets scale 1 (its codes equal the zero point and dequantize to exactly 0).
 */
export function blockGrid(lo: number, hi: number, extreme: number, bits: number, symmetric: boolean): { scale: number; zeroPoint: number } {
  const qmax = (1 << bits) - 1;
  let scale: number;
  let zeroPoint: number;
  if (symmetric) {
    zeroPoint = 1 << (bits - 1);
    scale = Math.fround(-extreme / zeroPoint);
  } else {
    scale = Math.fround((hi - lo) / qmax);
    zeroPoint = scale === 0 ? 0 : Math.min(qmax, Math.max(0, roundAway(-lo / scale)));
  }
  return { scale: scale === 0 ? 1 : scale, zeroPoint };
}

/**
 * Round-to-nearest blockwise quantization of a MatMul weight B [K, N] (row-major), blocks along K, with
 * ONNX Runtime's formulas (MLAS q4_common.h `range2scalezp` / `range2scale`, used by quantize_matmul_4bits and
 * the Python MatMulNBitsQuantizer):
 * - asymmetric: the block's range widened to include 0, [min(0, lo), max(0, hi)]; scale = (max - min) / (2^bits - 1);
 *   zero point = round(-min / scale), clamped to 0 .. 2^bits - 1;
 * - symmetric: zero point 2^(bits-1); scale = -v / 2^(bits-1) where v is the block's value of largest magnitude,
 *   so v itself becomes code 0 (the longer half of the code range) — the scale is negative when v is positive;
 * - codes q = clamp(round(x / scale + zeroPoint), 0, 2^bits - 1).
 * An all-zero block gets scale 1 and codes equal to the zero point, so it dequantizes to exactly 0. The padding
 * rows of the last block (K not a multiple of blockSize) hold the zero point.
 * @throws LowbitError BAD_OPTION for bad bits / blockSize; BAD_DATA when w is not K*N values; NON_FINITE for NaN/Infinity
 */
export function quantizeBlockwiseRtn(w: Float32Array, K: number, N: number, o: BlockwiseOptions): BlockQuantized {
  checkBlockwiseOptions(o);
  checkShape(w, K, N);
  const { bits, blockSize, symmetric } = o;
  const nb = kBlocks(K, blockSize);
  const qmax = (1 << bits) - 1;
  const padded = nb * blockSize;
  const q = new Uint8Array(N * padded);
  const scales = new Float32Array(N * nb);
  const zeroPoints = new Uint8Array(N * nb);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      let extreme = 0;
      for (let k = k0; k < k1; k++) {
        const v = w[k * N + n]!;
        if (!Number.isFinite(v)) throw new LowbitError('NON_FINITE', `weight value at [${k}, ${n}] is ${v}`, 'the model holds NaN or Infinity weights; fix or retrain it before quantizing');
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        if (Math.abs(v) > Math.abs(extreme)) extreme = v;
      }
      const { scale, zeroPoint: zp } = blockGrid(lo, hi, extreme, bits, symmetric);
      const i = n * nb + b;
      scales[i] = scale;
      zeroPoints[i] = zp;
      const base = n * padded;
      for (let k = k0; k < k0 + blockSize; k++) {
        q[base + k] = k < k1 ? Math.min(qmax, Math.max(0, roundAway(w[k * N + n]! / scale + zp))) : zp;
      }
    }
  }
  return { bits, blockSize, K, N, symmetric, q, scales, zeroPoints };
}

/**
 * The float weight a {@link BlockQuantized} stands for, [K, N] row-major: (q - zeroPoint) * scale, padding
 * rows dropped. The reference the packed forms are tested against.
 */
export function dequantizeBlockwise(b: BlockQuantized): Float32Array {
  const nb = kBlocks(b.K, b.blockSize);
  const padded = nb * b.blockSize;
  const out = new Float32Array(b.K * b.N);
  for (let n = 0; n < b.N; n++) {
    for (let k = 0; k < b.K; k++) {
      const i = n * nb + Math.floor(k / b.blockSize);
      out[k * b.N + n] = Math.fround((b.q[n * padded + k]! - b.zeroPoints[i]!) * b.scales[i]!);
    }
  }
  return out;
}

/** Packs `count` codes of `bits` bits each, first code in the lowest bits of each byte. */
export function packBits(codes: ArrayLike<number>, bits: BlockBits, count = codes.length): Uint8Array {
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(Math.ceil(count / per));
  for (let i = 0; i < count; i++) out[(i / per) | 0]! |= (codes[i]! & mask) << ((i % per) * bits);
  return out;
}

/** Unpacks `count` codes of `bits` bits (inverse of {@link packBits}). */
export function unpackBits(bytes: Uint8Array, bits: BlockBits, count: number): Uint8Array {
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (bytes[(i / per) | 0]! >> ((i % per) * bits)) & mask;
  return out;
}

/** The tensors of a com.microsoft MatMulNBits node (inputs B, scales, zero_points), in ONNX Runtime's layout. */
export interface MatMulNBitsTensors {
  /** [N, kBlocks, blockSize * bits / 8]: each block's codes packed low bits first along K. */
  B: Uint8Array;
  /** [N * kBlocks], n-major. */
  scales: Float32Array;
  /** Asymmetric only: [N * ceil(kBlocks * bits / 8)], each column's zero points packed low bits first, every column starting on a whole byte. */
  zeroPoints?: Uint8Array;
}

/**
 * Packs a blockwise weight for MatMulNBits (ONNX Runtime contrib op, com.microsoft): codes [N, kBlocks, blob]
 * with blob = blockSize * bits / 8, scales [N * kBlocks], and for asymmetric weights uint8 zero points packed
 * per column (symmetric weights leave zero_points out: the kernel's default is 2^(bits-1)).
 */
export function packMatMulNBits(b: BlockQuantized): MatMulNBitsTensors {
  const nb = kBlocks(b.K, b.blockSize);
  const B = packBits(b.q, b.bits); // [N][nb * blockSize] codes are already [N, nb, blockSize] in order
  const out: MatMulNBitsTensors = { B, scales: b.scales.slice() };
  if (!b.symmetric) {
    const perCol = Math.ceil((nb * b.bits) / 8);
    const zp = new Uint8Array(b.N * perCol);
    for (let n = 0; n < b.N; n++) zp.set(packBits(b.zeroPoints.subarray(n * nb, (n + 1) * nb), b.bits), n * perCol);
    out.zeroPoints = zp;
  }
  return out;
}

/** The tensors of the standard blocked form: DequantizeLinear(x [K, N], scale [kBlocks, N], zero point [kBlocks, N], axis 0, block_size). */
export interface BlockedDequantizeTensors {
  /** Signed (symmetric: code - 2^(bits-1), zero point 0, left out) or unsigned (asymmetric) codes, [K, N] row-major, unpacked. */
  x: Int8Array | Uint8Array;
  /** [kBlocks, N] row-major. */
  scale: Float32Array;
  /** Asymmetric only: [kBlocks, N] row-major, unpacked. */
  zeroPoint?: Uint8Array;
  signed: boolean;
}

/**
 * Re-lays a blockwise weight for the standard ONNX blocked DequantizeLinear (opset 21: axis 0, block_size):
 * the codes as [K, N] (padding rows dropped), scales and zero points as [kBlocks, N]. Symmetric weights become
 * signed codes with an implicit zero point 0 (int4 / int8), asymmetric ones unsigned codes with their zero
 * points (uint4 / uint8). The values are the same as {@link dequantizeBlockwise}'s.
 */
export function toBlockedDequantize(b: BlockQuantized): BlockedDequantizeTensors {
  const nb = kBlocks(b.K, b.blockSize);
  const padded = nb * b.blockSize;
  const mid = 1 << (b.bits - 1);
  const x = b.symmetric ? new Int8Array(b.K * b.N) : new Uint8Array(b.K * b.N);
  for (let n = 0; n < b.N; n++) for (let k = 0; k < b.K; k++) x[k * b.N + n] = b.q[n * padded + k]! - (b.symmetric ? mid : 0);
  const scale = new Float32Array(nb * b.N);
  const zeroPoint = new Uint8Array(nb * b.N);
  for (let n = 0; n < b.N; n++) {
    for (let j = 0; j < nb; j++) {
      scale[j * b.N + n] = b.scales[n * nb + j]!;
      zeroPoint[j * b.N + n] = b.zeroPoints[n * nb + j]!;
    }
  }
  return b.symmetric ? { x, scale, signed: true } : { x, scale, zeroPoint, signed: false };
}
