// Quantization error metrics (MSE, SQNR, cosine similarity, max abs error), one-shot and streaming.
// Pure, float64 accumulation; imported by calib/, passes/, pipeline/ and report/.

import { LowbitError } from '../errors.js';

/** Anything indexable by number (typed arrays, plain arrays). */
export type Numeric = ArrayLike<number>;

/** All four metrics at once, plus the element count they cover. */
export interface ErrorSummary {
  count: number;
  /** Mean of (ref - test)^2; 0 for no elements. */
  mse: number;
  /** 10*log10(sum ref^2 / sum (ref - test)^2): +Infinity when the noise is 0, -Infinity when the signal is 0 but not the noise. */
  sqnrDb: number;
  /** dot / (|ref| |test|); 1 when both are all-zero (identical), 0 when exactly one is. */
  cosine: number;
  /** max |ref - test|; 0 for no elements. */
  maxAbsError: number;
}

/**
 * Streaming accumulator: feed (reference, test) batches with `add`, read the metrics with `summary`.
 * NaN anywhere (in either input) makes every metric NaN: a NaN output is an error, not a small one.
 */
export class ErrorStats {
  private n = 0;
  private noise = 0; // sum (r - t)^2
  private signal = 0; // sum r^2
  private testPower = 0; // sum t^2
  private dot = 0; // sum r * t
  private maxAbs = 0;
  private sawNaN = false;

  /**
   * Adds one batch.
   * @throws LowbitError DATA_MISMATCH when the two batches differ in length.
   */
  add(reference: Numeric, test: Numeric): this {
    const len = reference.length;
    if (test.length !== len) {
      throw new LowbitError(
        'DATA_MISMATCH',
        `cannot compare ${len} reference values with ${test.length} test values`,
        'compare outputs of the same shape',
      );
    }
    let noise = 0;
    let signal = 0;
    let testPower = 0;
    let dot = 0;
    let maxAbs = this.maxAbs;
    for (let i = 0; i < len; i++) {
      const r = reference[i]!;
      const t = test[i]!;
      const d = r - t;
      noise += d * d;
      signal += r * r;
      testPower += t * t;
      dot += r * t;
      const a = d < 0 ? -d : d;
      if (a > maxAbs) maxAbs = a;
    }
    // NaN never wins the max comparison, but it poisons the sums; an infinite error makes inf - inf = NaN too.
    if (noise !== noise || signal !== signal || testPower !== testPower) this.sawNaN = true;
    this.n += len;
    this.noise += noise;
    this.signal += signal;
    this.testPower += testPower;
    this.dot += dot;
    this.maxAbs = maxAbs;
    return this;
  }

  /** Folds another accumulator into this one (e.g. from parallel workers). */
  merge(other: ErrorStats): this {
    this.n += other.n;
    this.noise += other.noise;
    this.signal += other.signal;
    this.testPower += other.testPower;
    this.dot += other.dot;
    this.maxAbs = Math.max(this.maxAbs, other.maxAbs);
    this.sawNaN ||= other.sawNaN;
    return this;
  }

  /** Number of element pairs seen so far. */
  get count(): number {
    return this.n;
  }

  /** The metrics over everything added so far. */
  summary(): ErrorSummary {
    if (this.sawNaN) return { count: this.n, mse: NaN, sqnrDb: NaN, cosine: NaN, maxAbsError: NaN };
    return {
      count: this.n,
      mse: this.n === 0 ? 0 : this.noise / this.n,
      sqnrDb: sqnrFrom(this.signal, this.noise),
      cosine: cosineFrom(this.dot, this.signal, this.testPower),
      maxAbsError: this.maxAbs,
    };
  }
}

function sqnrFrom(signal: number, noise: number): number {
  if (noise === 0) return Infinity;
  if (signal === 0) return -Infinity;
  return 10 * Math.log10(signal / noise);
}

function cosineFrom(dot: number, a2: number, b2: number): number {
  if (a2 === 0 && b2 === 0) return 1;
  if (a2 === 0 || b2 === 0) return 0;
  const c = dot / (Math.sqrt(a2) * Math.sqrt(b2));
  return c > 1 ? 1 : c < -1 ? -1 : c; // rounding can step just outside [-1, 1]
}

/**
 * Mean squared error of `test` against `reference`.
 * @throws LowbitError DATA_MISMATCH on a length mismatch (all four one-shot metrics).
 */
export function mse(reference: Numeric, test: Numeric): number {
  return new ErrorStats().add(reference, test).summary().mse;
}

/** Signal-to-quantization-noise ratio in dB (see ErrorSummary.sqnrDb for the edge cases). */
export function sqnrDb(reference: Numeric, test: Numeric): number {
  return new ErrorStats().add(reference, test).summary().sqnrDb;
}

/** Cosine similarity (see ErrorSummary.cosine for the zero-vector convention). */
export function cosineSimilarity(reference: Numeric, test: Numeric): number {
  return new ErrorStats().add(reference, test).summary().cosine;
}

/** Largest absolute elementwise difference. */
export function maxAbsError(reference: Numeric, test: Numeric): number {
  return new ErrorStats().add(reference, test).summary().maxAbsError;
}

/** All four metrics in one pass. */
export function errorSummary(reference: Numeric, test: Numeric): ErrorSummary {
  return new ErrorStats().add(reference, test).summary();
}
