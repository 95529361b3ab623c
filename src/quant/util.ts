// Small numeric and shape helpers shared by the quant/ modules (rounding, axis arithmetic).
// Pure; internal to src/quant (index.ts re-exports roundHalfEven only).

import { LowbitError } from '../errors.js';

/** 1.5 * 2^52: adding then subtracting it rounds any |v| < 2^51 to an integer, ties to even (IEEE default). */
export const RHE_MAGIC = 6755399441055744;

/**
 * Rounds to the nearest integer, ties to even (numpy.rint / std::nearbyint): 0.5 -> 0, 1.5 -> 2, -2.5 -> -2.
 * NaN and ±Infinity pass through.
 */
export function roundHalfEven(v: number): number {
  if (!(Math.abs(v) < 2 ** 51)) return v; // huge values are integers already; NaN/Inf pass through
  const r = v + RHE_MAGIC - RHE_MAGIC;
  return r === 0 ? 0 * Math.sign(v) : r; // keep -0 for -0.4 like rint does
}

/**
 * Normalizes a possibly negative axis against a rank.
 * @throws LowbitError BAD_OPTION when the axis is outside [-rank, rank-1].
 */
export function normalizeAxis(axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new LowbitError(
      'BAD_OPTION',
      `axis ${axis} is out of range for a tensor of rank ${rank}`,
      `use an integer axis in [${-rank}, ${rank - 1}]`,
    );
  }
  return axis < 0 ? axis + rank : axis;
}

/** The element count of a shape. */
export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/**
 * Splits a shape at `axis` into (outer, dim, inner) so element (o, d, i) sits at (o * dim + d) * inner + i.
 * @throws LowbitError BAD_OPTION for a bad axis or shape; DATA_MISMATCH when the shape does not match `length`.
 */
export function splitAtAxis(
  dims: readonly number[],
  axis: number,
  length: number,
): { axis: number; outer: number; dim: number; inner: number } {
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) {
      throw new LowbitError('BAD_OPTION', `bad shape [${dims.join(', ')}]`, 'dims must be non-negative integers');
    }
  }
  if (sizeOf(dims) !== length) {
    throw new LowbitError(
      'DATA_MISMATCH',
      `shape [${dims.join(', ')}] has ${sizeOf(dims)} elements but the data has ${length}`,
      'pass the dims of the tensor the data came from',
    );
  }
  const a = normalizeAxis(axis, dims.length);
  let outer = 1;
  for (let k = 0; k < a; k++) outer *= dims[k]!;
  let inner = 1;
  for (let k = a + 1; k < dims.length; k++) inner *= dims[k]!;
  return { axis: a, outer, dim: dims[a]!, inner };
}
