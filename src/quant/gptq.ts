// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers"): blockwise weight quantization with second-order error compensation from the Hessian of
// the layer's squared output error, H = 2/n · Σ x xᵀ over calibration activations x. Pure; the Hessians
// are collected through ONNX Runtime by pipeline/hessian.ts.
//
// Layout: a MatMul weight B is [K, N] row-major; GPTQ's "columns" (the input features it walks and
// compensates along) are B's rows, so every update below is an AXPY over one contiguous row of N values.
// The algorithm follows the reference `fasterquant` (IST-DASLab/gptq gptq.py; AutoGPTQ): dead inputs,
// damping by a fraction of mean(diag H), the upper Cholesky factor of H⁻¹, one group's scale/zero point
// fixed when the walk enters it (groupsize = blockSize), lazy batch updates. With `actOrder` the features
// are walked by descending diag(H) while groups stay defined on the ORIGINAL order with scale/zero point
// computed from the original weights before the walk (AutoGPTQ's static_groups=True): ONNX Runtime's
// MatMulNBits has no usable g_idx, so the result must remain a plain BlockQuantized.

import { LowbitError } from '../errors.js';
import { blockGrid, checkBlockwiseOptions, kBlocks, roundAway, type BlockBits, type BlockQuantized } from './blockwise.js';

/**
 * Streaming Hessian of a linear layer's inputs: H = 2/n · Σ x xᵀ over the rows x (length K) of the
 * activations seen, in Float64. Memory is O(K²) whatever the number of rows. Only the upper triangle is
 * accumulated, CHUNK rows at a time (a transposed chunk, then dot products of its columns), so each
 * entry of H is read and written once per chunk rather than once per row.
 */
export class HessianAccumulator {
  readonly K: number;
  private readonly sum: Float64Array;
  /** Transposed pending rows: [K][CHUNK]. */
  private readonly pending: Float64Array;
  private pendingRows = 0;
  private rows = 0;
  private static readonly CHUNK = 64;

  /** @throws LowbitError('BAD_OPTION') for a K that is not a positive integer. */
  constructor(K: number) {
    if (!Number.isSafeInteger(K) || K < 1) throw new LowbitError('BAD_OPTION', `Hessian size K must be a positive integer, got ${K}`, 'pass the number of input features of the MatMul');
    this.K = K;
    this.sum = new Float64Array(K * K);
    this.pending = new Float64Array(K * HessianAccumulator.CHUNK);
  }

  /** Rows accumulated so far. */
  get count(): number {
    return this.rows + this.pendingRows;
  }

  /**
   * Adds `rows` rows of activations, row-major [rows, K] (the leading dims of a MatMul input flattened).
   * @throws LowbitError('BAD_DATA') when `x` does not hold rows·K values; LowbitError('NON_FINITE') for NaN/Infinity.
   */
  add(x: Float32Array | Float64Array, rows: number): void {
    const K = this.K;
    if (!Number.isSafeInteger(rows) || rows < 0 || x.length !== rows * K) {
      throw new LowbitError('BAD_DATA', `Hessian input holds ${x.length} values, expected ${rows} rows × K=${K}`, 'pass activations whose last dimension is the MatMul K');
    }
    const C = HessianAccumulator.CHUNK;
    const p = this.pending;
    for (let r = 0; r < rows; r++) {
      const c = this.pendingRows;
      const o = r * K;
      for (let k = 0; k < K; k++) {
        const v = x[o + k]!;
        if (!Number.isFinite(v)) throw new LowbitError('NON_FINITE', `Hessian input row ${this.count} holds ${v} at feature ${k}`, 'check the calibration data and the float model');
        p[k * C + c] = v;
      }
      if (++this.pendingRows === C) this.flush();
    }
  }

  /**
   * Adds a precomputed Gram matrix Σ x xᵀ [K, K] (row-major, symmetric; only the upper triangle is read) of
   * `rows` activation rows, e.g. computed by ONNX Runtime (pipeline/hessian.ts).
   * @throws LowbitError('BAD_DATA') when `g` is not K·K values; LowbitError('NON_FINITE') for NaN/Infinity.
   */
  addGram(g: Float32Array | Float64Array, rows: number): void {
    const K = this.K;
    if (!Number.isSafeInteger(rows) || rows < 0 || g.length !== K * K) {
      throw new LowbitError('BAD_DATA', `Gram matrix holds ${g.length} values for ${rows} rows, expected K² = ${K * K}`, 'pass Σ x xᵀ over the rows, [K, K]');
    }
    const s = this.sum;
    for (let i = 0; i < K; i++) {
      const r = i * K;
      for (let j = i; j < K; j++) {
        const v = g[r + j]!;
        if (!Number.isFinite(v)) throw new LowbitError('NON_FINITE', `Gram matrix holds ${v} at [${i}, ${j}]`, 'check the calibration data and the float model');
        s[r + j] += v;
      }
    }
    this.rows += rows;
  }

  /** Folds the pending rows into the upper triangle of the sum. */
  private flush(): void {
    const n = this.pendingRows;
    if (n === 0) return;
    const K = this.K;
    const C = HessianAccumulator.CHUNK;
    const p = this.pending;
    const s = this.sum;
    // Two rows i and four columns j per pass over the chunk: 6 loads per 8 multiply-adds. Row i+1 also
    // gets column i (a lower-triangle entry, never read).
    let i = 0;
    for (; i + 1 < K; i += 2) {
      const oa = i * C;
      const ob = oa + C;
      const ra = i * K;
      const rb = ra + K;
      let j = i;
      for (; j + 3 < K; j += 4) {
        const o0 = j * C;
        const o1 = o0 + C;
        const o2 = o1 + C;
        const o3 = o2 + C;
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let b0 = 0;
        let b1 = 0;
        let b2 = 0;
        let b3 = 0;
        for (let r = 0; r < n; r++) {
          const xa = p[oa + r]!;
          const xb = p[ob + r]!;
          const x0 = p[o0 + r]!;
          const x1 = p[o1 + r]!;
          const x2 = p[o2 + r]!;
          const x3 = p[o3 + r]!;
          a0 += xa * x0;
          a1 += xa * x1;
          a2 += xa * x2;
          a3 += xa * x3;
          b0 += xb * x0;
          b1 += xb * x1;
          b2 += xb * x2;
          b3 += xb * x3;
        }
        s[ra + j] += a0;
        s[ra + j + 1] += a1;
        s[ra + j + 2] += a2;
        s[ra + j + 3] += a3;
        s[rb + j] += b0;
        s[rb + j + 1] += b1;
        s[rb + j + 2] += b2;
        s[rb + j + 3] += b3;
      }
      for (; j < K; j++) {
        const oj = j * C;
        let a = 0;
        let b = 0;
        for (let r = 0; r < n; r++) {
          const x = p[oj + r]!;
          a += p[oa + r]! * x;
          b += p[ob + r]! * x;
        }
        s[ra + j] += a;
        s[rb + j] += b;
      }
    }
    for (; i < K; i++) {
      const oi = i * C;
      for (let j = i; j < K; j++) {
        const oj = j * C;
        let a = 0;
        for (let r = 0; r < n; r++) a += p[oi + r]! * p[oj + r]!;
        s[i * K + j] += a;
      }
    }
    this.rows += n;
    this.pendingRows = 0;
  }

  /**
   * The Hessian 2/n · Σ x xᵀ (full symmetric [K, K], row-major), as a new array; the accumulator can keep
   * taking rows afterwards.
   * @throws LowbitError('BAD_DATA') when no row was added.
   */
  finish(): Float64Array {
    this.flush();
    if (this.rows === 0) throw new LowbitError('BAD_DATA', 'no activation rows reached the Hessian', 'provide at least one calibration sample');
    const K = this.K;
    const f = 2 / this.rows;
    const h = new Float64Array(K * K);
    for (let i = 0; i < K; i++) {
      for (let j = i; j < K; j++) {
        const v = this.sum[i * K + j]! * f;
        h[i * K + j] = v;
        h[j * K + i] = v;
      }
    }
    return h;
  }
}

/** Options of {@link gptqQuantize}. */
export interface GptqOptions {
  bits: BlockBits;
  /** Rows of B per scale (the GPTQ group size): a power of two in 16..256, as blockwise.ts checks. */
  blockSize: number;
  /** Symmetric grid: zero point 2^(bits-1) (no zero_points input), as blockwise.ts's RTN. */
  symmetric: boolean;
  /** Damping as a fraction of mean(diag H) added to the diagonal (default 0.01, the reference's percdamp). */
  damp?: number;
  /** Walk features by descending diag(H), groups kept on the original order (static groups). Default false. */
  actOrder?: boolean;
  /** Features per lazy batch update (default 128); made a multiple of blockSize. */
  lazyBatch?: number;
}

/** A GPTQ result: the BlockQuantized weight plus how it was obtained. */
export interface GptqQuantized extends BlockQuantized {
  /** The damping fraction finally used (opts.damp, ×10 per retry). */
  damp: number;
  /** Cholesky retries with a larger damping (0 when the first try worked). */
  dampRetries: number;
  /** Inputs with H_ii = 0 (never active): their weight rows were zeroed. */
  deadInputs: number;
  /** GPTQ's proxy loss (the reference's Losses): Σ (w - q)² / (2 d²), d the diagonal of the upper Cholesky factor of H⁻¹. */
  loss: number;
}

/** Rounding as MLAS does it (roundf: halves away from zero), as blockwise.ts's RTN. */


/** In-place lower Cholesky factor of the row-major SPD matrix `a` [K, K]; false when it is not positive definite. */
function choleskyLower(a: Float64Array, K: number): boolean {
  for (let j = 0; j < K; j++) {
    const rj = j * K;
    let d = a[rj + j]!;
    for (let k = 0; k < j; k++) d -= a[rj + k]! * a[rj + k]!;
    if (!(d > 0) || !Number.isFinite(d)) return false;
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    const inv = 1 / ljj;
    // Rows below, four at a time sharing the loads of row j.
    let i = j + 1;
    for (; i + 3 < K; i += 4) {
      const r0 = i * K;
      const r1 = r0 + K;
      const r2 = r1 + K;
      const r3 = r2 + K;
      let s0 = a[r0 + j]!;
      let s1 = a[r1 + j]!;
      let s2 = a[r2 + j]!;
      let s3 = a[r3 + j]!;
      for (let k = 0; k < j; k++) {
        const v = a[rj + k]!;
        s0 -= a[r0 + k]! * v;
        s1 -= a[r1 + k]! * v;
        s2 -= a[r2 + k]! * v;
        s3 -= a[r3 + k]! * v;
      }
      a[r0 + j] = s0 * inv;
      a[r1 + j] = s1 * inv;
      a[r2 + j] = s2 * inv;
      a[r3 + j] = s3 * inv;
    }
    for (; i < K; i++) {
      const ri = i * K;
      let s = a[ri + j]!;
      for (let k = 0; k < j; k++) s -= a[ri + k]! * a[rj + k]!;
      a[ri + j] = s * inv;
    }
  }
  for (let i = 0; i < K; i++) for (let j = i + 1; j < K; j++) a[i * K + j] = 0;
  return true;
}

/** Inverse of a lower-triangular row-major matrix, row by row (X = L⁻¹, lower). */
function invertLower(l: Float64Array, K: number): Float64Array {
  const x = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    const ri = i * K;
    // Row i of L X = I: l_ii x_i = e_i - Σ_{k<i} l_ik x_k. Rows x_k are zero past column k, so four rows
    // k..k+3 can share one pass over columns 0..k+3 (one store per column instead of four).
    let k = 0;
    for (; k + 3 < i; k += 4) {
      const a0 = l[ri + k]!;
      const a1 = l[ri + k + 1]!;
      const a2 = l[ri + k + 2]!;
      const a3 = l[ri + k + 3]!;
      const r0 = k * K;
      const r1 = r0 + K;
      const r2 = r1 + K;
      const r3 = r2 + K;
      for (let c = 0; c <= k + 3; c++) x[ri + c] -= a0 * x[r0 + c]! + a1 * x[r1 + c]! + a2 * x[r2 + c]! + a3 * x[r3 + c]!;
    }
    for (; k < i; k++) {
      const a = l[ri + k]!;
      const rk = k * K;
      for (let c = 0; c <= k; c++) x[ri + c] -= a * x[rk + c]!;
    }
    x[ri + i] += 1;
    const inv = 1 / l[ri + i]!;
    for (let c = 0; c <= i; c++) x[ri + c] *= inv;
  }
  return x;
}

/**
 * The upper Cholesky factor U of (H + λI)⁻¹ (= Uᵀ U), or undefined when H + λI is not positive definite. With J
 * the reversal permutation and J H J = M Mᵀ (lower Cholesky), H = R Rᵀ with R = J M J upper, so
 * H⁻¹ = (R⁻¹)ᵀ R⁻¹ and U = R⁻¹ = J M⁻¹ J: one Cholesky and one triangular inverse instead of the
 * reference's Cholesky, inverse and second Cholesky. For a row-major [K, K] array, J A J is the array reversed.
 */
function upperCholeskyOfInverse(h: Float64Array, K: number, lambda: number): Float64Array | undefined {
  const a = Float64Array.from(h).reverse();
  for (let i = 0; i < K; i++) a[i * K + i] += lambda;
  if (!choleskyLower(a, K)) return undefined;
  const u = invertLower(a, K).reverse();
  for (const v of u) if (!Number.isFinite(v)) return undefined;
  return u;
}

const DAMP_RETRIES = 3;

/**
 * GPTQ-quantizes a MatMul weight B [K, N] (row-major) blockwise along K, given the Hessian H [K, K] of B's
 * input (see {@link HessianAccumulator}). Inputs never active (H_ii = 0) get H_ii = 1 and a zeroed weight
 * row; λ = damp · mean(diag H) is added to the diagonal; when the Cholesky factorization still fails, it is
 * retried with the damping ×10, up to 3 times (reported in `damp` / `dampRetries`). With an identity-like H
 * (uncorrelated inputs) no error is propagated and the codes are round-to-nearest's.
 * @returns codes, scales and zero points as a BlockQuantized (last block padded with the zero point), plus
 *   the damping used and GPTQ's proxy loss.
 * @throws LowbitError('BAD_OPTION') for bad sizes, bits, blockSize (see checkBlockwiseOptions), damp or lazyBatch;
 *   LowbitError('NON_FINITE') for a non-finite weight or Hessian entry, or when H stays indefinite after
 *   every damping retry (hint: raise damp).
 */
export function gptqQuantize(w: Float32Array, K: number, N: number, H: Float64Array, opts: GptqOptions): GptqQuantized {
  const { bits, blockSize, symmetric } = opts;
  const damp0 = opts.damp ?? 0.01;
  const actOrder = opts.actOrder ?? false;
  const lazy0 = opts.lazyBatch ?? 128;
  if (!Number.isSafeInteger(K) || !Number.isSafeInteger(N) || K < 1 || N < 1) throw new LowbitError('BAD_OPTION', `GPTQ weight dims must be positive integers, got K=${K}, N=${N}`, 'pass the MatMul B dims [K, N]');
  if (w.length !== K * N) throw new LowbitError('BAD_OPTION', `GPTQ weight holds ${w.length} values, expected K·N = ${K}·${N}`, 'pass B [K, N] row-major');
  if (H.length !== K * K) throw new LowbitError('BAD_OPTION', `GPTQ Hessian holds ${H.length} values, expected K² = ${K * K}`, 'collect the Hessian of this MatMul input (K features)');
  checkBlockwiseOptions(opts);
  if (!(damp0 > 0) || !Number.isFinite(damp0)) throw new LowbitError('BAD_OPTION', `GPTQ damp must be a positive number, got ${damp0}`, 'use e.g. 0.01 (1% of the mean diagonal)');
  if (!Number.isSafeInteger(lazy0) || lazy0 < 1) throw new LowbitError('BAD_OPTION', `GPTQ lazy batch must be a positive integer, got ${lazy0}`, 'use e.g. 128');
  for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i]!)) throw new LowbitError('NON_FINITE', `GPTQ weight holds ${w[i]} at index ${i}`, 'fix the float model');
  for (let i = 0; i < H.length; i++) if (!Number.isFinite(H[i]!)) throw new LowbitError('NON_FINITE', `GPTQ Hessian holds ${H[i]} at index ${i}`, 'check the calibration data');

  const maxq = (1 << bits) - 1;
  const kB = kBlocks(K, blockSize);
  const padK = kB * blockSize;
  // Working copies: the weight rows (float64) and the Hessian (the caller's stays untouched).
  const W = Float64Array.from(w);
  const h = Float64Array.from(H);
  let deadInputs = 0;
  for (let i = 0; i < K; i++) {
    if (h[i * K + i] === 0) {
      h[i * K + i] = 1;
      W.fill(0, i * N, (i + 1) * N);
      deadInputs++;
    }
  }

  const scales = new Float32Array(N * kB);
  const zeroPoints = new Uint8Array(N * kB);
  // Grid of block g from the current values of its rows (unpermuted W), one per column n.
  const fitGroup = (g: number): void => {
    const r0 = g * blockSize;
    const r1 = Math.min(K, r0 + blockSize);
    for (let n = 0; n < N; n++) {
      let lo = 0;
      let hi = 0;
      let extreme = 0;
      for (let r = r0; r < r1; r++) {
        const v = W[r * N + n]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        if (Math.abs(v) > Math.abs(extreme)) extreme = v;
      }
      const { scale, zeroPoint } = blockGrid(lo, hi, extreme, bits, symmetric);
      scales[n * kB + g] = scale;
      zeroPoints[n * kB + g] = zeroPoint;
    }
  };

  // perm[i]: the original feature processed i-th.
  const perm = new Int32Array(K);
  for (let i = 0; i < K; i++) perm[i] = i;
  if (actOrder) {
    // Static groups: every group's grid from the original (dead-zeroed) weights, before anything moves.
    for (let g = 0; g < kB; g++) fitGroup(g);
    const diag = Float64Array.from({ length: K }, (_, i) => h[i * K + i]!);
    const order = Array.from(perm).sort((a, b) => diag[b]! - diag[a]! || a - b);
    perm.set(order);
    const Wp = new Float64Array(K * N);
    for (let i = 0; i < K; i++) Wp.set(W.subarray(perm[i]! * N, (perm[i]! + 1) * N), i * N);
    W.set(Wp);
    const hp = new Float64Array(K * K);
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) hp[i * K + j] = h[perm[i]! * K + perm[j]!]!;
    h.set(hp);
  }

  let mean = 0;
  for (let i = 0; i < K; i++) mean += h[i * K + i]!;
  mean /= K;
  let U: Float64Array | undefined;
  let damp = damp0;
  let dampRetries = 0;
  for (;;) {
    U = upperCholeskyOfInverse(h, K, damp * mean);
    if (U || dampRetries === DAMP_RETRIES) break;
    damp *= 10;
    dampRetries++;
  }
  if (!U) {
    throw new LowbitError(
      'NON_FINITE',
      `GPTQ: the Hessian (K=${K}) is not positive definite even with damping ${damp} × mean(diag H) (${dampRetries} retries from ${damp0})`,
      'raise damp (e.g. 0.1), or use more / more varied calibration samples; --algorithm rtn needs no Hessian',
    );
  }

  const q = new Uint8Array(N * padK);

  // Lazy batches are whole groups, so a group's grid is always fitted on fully updated rows.
  const lazy = actOrder ? lazy0 : Math.max(blockSize, Math.floor(lazy0 / blockSize) * blockSize);
  const L = Math.min(lazy, K);
  // This batch's scaled errors, row-major [L][N] (for the updates inside the batch) and transposed [N][L].
  const err = new Float64Array(L * N);
  const errT = new Float64Array(N * L);
  // U[i1..i2, j] for every later j, transposed: [K - i2][L].
  const uT = new Float64Array(Math.max(0, K - L) * L);
  const NT = 32;
  let loss = 0;
  for (let i1 = 0; i1 < K; i1 += lazy) {
    const i2 = Math.min(K, i1 + lazy);
    for (let i = i1; i < i2; i++) {
      const orig = perm[i]!;
      const g = Math.floor(orig / blockSize);
      if (!actOrder && orig % blockSize === 0) fitGroup(g);
      const d = U[i * K + i]!;
      const wi = i * N;
      const ei = (i - i1) * N;
      for (let n = 0; n < N; n++) {
        const s = scales[n * kB + g]!;
        const z = zeroPoints[n * kB + g]!;
        const v = W[wi + n]!;
        const c = Math.min(maxq, Math.max(0, roundAway(v / s + z)));
        q[n * padK + orig] = c;
        const e = (v - (c - z) * s) / d;
        err[ei + n] = e;
        errT[n * L + (i - i1)] = e;
        loss += (e * e) / 2;
      }
      // Compensate the rest of this lazy batch now.
      for (let j = i + 1; j < i2; j++) {
        const u = U[i * K + j]!;
        if (u === 0) continue;
        const wj = j * N;
        for (let n = 0; n < N; n++) W[wj + n] -= u * err[ei + n]!;
      }
    }
    // Then every later row at once: W[j, n] -= Σ_i U[i, j] · err[i, n], as dot products over the batch (no
    // stores in the inner loop), four rows j at a time sharing the loads of err.
    const m = i2 - i1;
    for (let i = i1; i < i2; i++) {
      const ui = i * K;
      const c = i - i1;
      for (let j = i2; j < K; j++) uT[(j - i2) * m + c] = U[ui + j]!;
    }
    // Tiles of NT columns keep their errors (NT·m values) in L1 while every later row j passes.
    for (let n0 = 0; n0 < N; n0 += NT) {
      const n1 = Math.min(N, n0 + NT);
      let j = i2;
      for (; j + 3 < K; j += 4) {
        const u0 = (j - i2) * m;
        const u1 = u0 + m;
        const u2 = u1 + m;
        const u3 = u2 + m;
        const w0 = j * N;
        for (let n = n0; n < n1; n++) {
          const e0 = n * L;
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          for (let c = 0; c < m; c++) {
            const e = errT[e0 + c]!;
            s0 += uT[u0 + c]! * e;
            s1 += uT[u1 + c]! * e;
            s2 += uT[u2 + c]! * e;
            s3 += uT[u3 + c]! * e;
          }
          W[w0 + n] -= s0;
          W[w0 + N + n] -= s1;
          W[w0 + 2 * N + n] -= s2;
          W[w0 + 3 * N + n] -= s3;
        }
      }
      for (; j < K; j++) {
        const u0 = (j - i2) * m;
        const w0 = j * N;
        for (let n = n0; n < n1; n++) {
          const e0 = n * L;
          let s0 = 0;
          for (let c = 0; c < m; c++) s0 += uT[u0 + c]! * errT[e0 + c]!;
          W[w0 + n] -= s0;
        }
      }
    }
  }
  // Pad rows of the last block hold the zero point (dequantize to 0), once every grid is known.
  if (padK > K) for (let n = 0; n < N; n++) for (let r = K; r < padK; r++) q[n * padK + r] = zeroPoints[n * kB + Math.floor(r / blockSize)]!;
  return { bits, blockSize, K, N, symmetric, q, scales, zeroPoints, damp, dampRetries, deadInputs, loss };
}
