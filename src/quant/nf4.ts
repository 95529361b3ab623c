// 4-bit "bitsandbytes" blockwise quantization (NF4 and FP4) as ONNX Runtime's com.microsoft MatMulBnb4
// reads it (transformers.js calls this dtype `bnb4`). Pure; passes/weight-only-bnb4.ts imports it.
//
// Layout (ORT's matmul_bnb4_quantizer.py and contrib_ops/cpu/quantization/dequantize_blockwise_bnb4.h,
// blockwise_quant_block_bnb4.h): the MatMul weight B [K, N] is transposed to [N, K] and flattened; that
// sequence of N*K values is cut into blocks of `blockSize` (a block may run across rows when K is not a
// multiple of blockSize); each block stores its absolute maximum (float32) and one 4-bit code per value,
// value = LEVELS[code] * absmax. Two codes per byte, the FIRST value in the HIGH nibble.

import { LowbitError } from '../errors.js';

/** Which 4-bit code book: NF4 (QLoRA's normal float) or bitsandbytes' FP4 (e2m1 with bias 3). */
export type Bnb4QuantType = 'nf4' | 'fp4';

/** MatMulBnb4's `quant_type` attribute value per code book (ORT's Bnb_DataType_t: FP4 = 0, NF4 = 1). */
export const BNB4_QUANT_TYPE_ATTR: Readonly<Record<Bnb4QuantType, number>> = { fp4: 0, nf4: 1 };

/** Block sizes ORT's bnb4 kernels are instantiated for (dequantize_blockwise_bnb4.h). */
export const BNB4_BLOCK_SIZES: readonly number[] = [16, 32, 64, 128, 256];

/**
 * The 16 NF4 levels, code i -> NF4_LEVELS[i], sorted ascending, with exact 0 and ±1: the QLoRA normal-float
 * data type (Dettmers et al. 2023, "QLoRA", appendix; bitsandbytes' `get_4bit_type('nf4')`), values as in
 * ORT's `nf4_qaunt_map` (onnxruntime/contrib_ops/cpu/quantization/blockwise_quant_block_bnb4.h).
 */
export const NF4_LEVELS: readonly number[] = Object.freeze([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * The 16 FP4 values by code (sign bit 0b1000, then bitsandbytes' e2m1 with bias 3, divided by its absmax 12):
 * ORT's `fp4_qaunt_map` (same header). Not sorted: code 0b0011 is 1.0, 0b0010 is 2/3.
 */
export const FP4_LEVELS: readonly number[] = Object.freeze([
  0, 5.208333333e-3, 0.66666667, 1, 0.33333333, 0.5, 0.16666667, 0.25,
  -0, -5.208333333e-3, -0.66666667, -1, -0.33333333, -0.5, -0.16666667, -0.25,
]);

const f32 = Math.fround;

// Decision points of ORT's QuantizeOneNF4: the midpoints of consecutive NF4 levels (x above a pivot
// takes the upper level; exactly on it, the lower one).
const NF4_PIVOTS = Float32Array.from({ length: 15 }, (_, i) => (NF4_LEVELS[i]! + NF4_LEVELS[i + 1]!) / 2);
// ORT's QuantizeOneFP4 compares |x| against these literals (midpoints of the sorted magnitudes), giving
// the magnitude codes below in ascending order of value.
const FP4_PIVOTS = Float32Array.from([0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333]);
const FP4_MAG_CODES = [0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011];

/** The NF4 code of x (already divided by the block's absmax), exactly as ORT's QuantizeOneNF4. */
export function nf4Code(x: number): number {
  const v = f32(x);
  let code = 0;
  for (let i = 0; i < 15; i++) if (v > NF4_PIVOTS[i]!) code = i + 1;
  return code;
}

/** The FP4 code of x (already divided by the block's absmax), exactly as ORT's QuantizeOneFP4. */
export function fp4Code(x: number): number {
  const v = f32(x);
  const sign = v < 0 ? 0b1000 : 0;
  const a = Math.abs(v);
  let k = 0;
  for (let i = 0; i < 7; i++) if (a > FP4_PIVOTS[i]!) k = i + 1;
  return sign + FP4_MAG_CODES[k]!;
}

/** A MatMul weight B [K, N] in MatMulBnb4's form. */
export interface Bnb4Quantized {
  quantType: Bnb4QuantType;
  blockSize: number;
  /** Rows of B (reduction axis). */
  K: number;
  /** Columns of B (output features). */
  N: number;
  /** ceil(N*K/2) bytes: codes of B^T [N, K] flattened, two per byte, first value in the high nibble. */
  packed: Uint8Array;
  /** ceil(N*K/blockSize) float32 block maxima. */
  absmax: Float32Array;
}

function checkOptions(K: number, N: number, blockSize: number, quantType: unknown): void {
  if (quantType !== 'nf4' && quantType !== 'fp4') {
    throw new LowbitError('BAD_OPTION', `bnb4 quantType ${JSON.stringify(quantType)} is not supported`, 'use one of: nf4, fp4');
  }
  if (!BNB4_BLOCK_SIZES.includes(blockSize)) {
    throw new LowbitError('BAD_OPTION', `bnb4 block size ${blockSize} is not supported`, `ONNX Runtime's MatMulBnb4 takes one of: ${BNB4_BLOCK_SIZES.join(', ')}`);
  }
  if (!Number.isSafeInteger(K) || !Number.isSafeInteger(N) || K < 1 || N < 1) {
    throw new LowbitError('BAD_OPTION', `bnb4 weight shape [${K}, ${N}] is invalid`, 'K and N must be positive integers');
  }
}

/**
 * Quantizes a MatMul weight `w` ([K, N] row-major float32) to NF4 or FP4 blocks with one float32 absmax per
 * block, bit-identical to ORT's `quantize_matmul_bnb4` (blocks over the flattened transposed weight, see
 * the file header). An all-zero block gets absmax 0 and zero codes.
 * @throws LowbitError BAD_OPTION for an unknown quantType, a block size ORT lacks (16..256, powers of 2) or a
 *   shape that does not match `w`; NON_FINITE when `w` holds NaN or ±Infinity.
 */
export function quantizeBnb4(w: Float32Array, K: number, N: number, opts: { quantType: Bnb4QuantType; blockSize: number }): Bnb4Quantized {
  const { quantType, blockSize } = opts;
  checkOptions(K, N, blockSize, quantType);
  if (w.length !== K * N) {
    throw new LowbitError('BAD_OPTION', `bnb4 weight has ${w.length} values, shape [${K}, ${N}] needs ${K * N}`, 'pass the weight as a row-major [K, N] Float32Array');
  }
  const numel = K * N;
  const blocks = Math.ceil(numel / blockSize);
  const packed = new Uint8Array(Math.ceil(numel / 2));
  const absmax = new Float32Array(blocks);
  const code = quantType === 'nf4' ? nf4Code : fp4Code;
  // B^T flattened: element t = n*K + k is w[k*N + n].
  const at = (t: number): number => w[(t % K) * N + Math.floor(t / K)]!;
  for (let b = 0; b < blocks; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, numel);
    let m = 0;
    for (let t = start; t < end; t++) {
      const v = at(t);
      if (!Number.isFinite(v)) {
        throw new LowbitError('NON_FINITE', `bnb4 weight holds ${v} at row ${t % K}, column ${Math.floor(t / K)}`, 'fix the model weights; NaN or Infinity cannot be quantized');
      }
      m = Math.max(m, Math.abs(v));
    }
    absmax[b] = m;
    const recip = m ? f32(1 / f32(m)) : 0;
    for (let t = start; t < end; t++) {
      const c = code(f32(at(t) * recip));
      packed[t >> 1] |= t & 1 ? c : c << 4;
    }
    // An odd-sized tail: ORT quantizes the missing partner as 0 (code of 0 in the low nibble).
    if (end === numel && numel & 1) packed[numel >> 1] |= code(0);
  }
  return { quantType, blockSize, K, N, packed, absmax };
}

/** The float32 weight [K, N] (row-major) a {@link Bnb4Quantized} stands for, as MatMulBnb4 dequantizes it. */
export function dequantizeBnb4(q: Bnb4Quantized): Float32Array {
  const { K, N, blockSize, packed, absmax } = q;
  const levels = q.quantType === 'nf4' ? NF4_LEVELS : FP4_LEVELS;
  const out = new Float32Array(K * N);
  for (let t = 0; t < K * N; t++) {
    const byte = packed[t >> 1]!;
    const c = t & 1 ? byte & 0x0f : byte >> 4;
    out[(t % K) * N + Math.floor(t / K)] = f32(f32(levels[c]!) * absmax[Math.floor(t / blockSize)]!);
  }
  return out;
}
