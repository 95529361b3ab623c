// A fixed-size streaming histogram for the histogram calibration methods (percentile, entropy, MSE):
// memory is `numBins` counts whatever the number of samples. Pure.
//
// Bins are aligned on 0: bin j covers [(offset + j)·width, (offset + j + 1)·width), so 0 is always a bin
// edge (a one-sided tensor, e.g. after Relu, starts exactly at an edge, and |x| folds without splitting a
// bin). The first batch that is not all zeros sets width = (hi - lo) / numBins over its range [lo, hi]
// (0 included). When a later batch falls outside the window, the window slides if the whole range seen
// still fits in numBins bins of the current width; otherwise the width grows by the smallest integer
// factor k >= 2 whose k-merged window covers that range. Every new bin is the union of k old bins (or one
// old bin, when sliding), so counts move exactly and nothing is approximated: the result equals a
// histogram built in one pass with the final edges, only the resolution differs. A growth at least
// doubles the width, so the final bins are at most about twice as wide as those of a one-pass histogram
// of the final range with the same bin count. Quantiles read from it are accurate to one final bin.
//
// ONNX Runtime's HistogramCollector instead appends bins of the old width (its memory grows with the
// range seen); pytorch's HistogramObserver re-bins by interpolation (approximate). Exact merging keeps the
// memory fixed and the counts exact.

/** Read-only access to a histogram with bins [(offset + j)·width, (offset + j + 1)·width). */
export interface HistogramView {
  readonly counts: Float64Array;
  /** Bin width; 0 while only zeros were seen (then `counts` is all zero and `zeros` holds them). */
  readonly width: number;
  /** Global index of bin 0 (value 0 is the left edge of global bin 0). */
  readonly offset: number;
  /** Values counted (zeros included). */
  readonly total: number;
  /** Values that were exactly 0 (also counted in the bin holding 0). */
  readonly zeros: number;
  /** Extremes seen (Infinity / -Infinity before any value). */
  readonly min: number;
  readonly max: number;
}

/** Streams float values into `numBins` zero-aligned bins, growing the width by exact integer merges. */
export class StreamingHistogram implements HistogramView {
  readonly numBins: number;
  counts: Float64Array;
  width = 0;
  offset = 0;
  total = 0;
  zeros = 0;
  min = Infinity;
  max = -Infinity;
  /** Times the window moved: slid, or grew by an integer factor. */
  merges = 0;

  /** @param numBins at least 2 (the caller validates user input). */
  constructor(numBins: number) {
    this.numBins = numBins;
    this.counts = new Float64Array(numBins);
  }

  /** The left edge of local bin j (j = numBins gives the right end). */
  edge(j: number): number {
    return (this.offset + j) * this.width;
  }

  /**
   * Adds a batch whose extremes `min`/`max` the caller computed (and checked finite, e.g. batchMinMax).
   * An empty batch changes nothing.
   */
  add(data: Float32Array, min: number, max: number): void {
    const n = data.length;
    if (n === 0) return;
    if (min < this.min) this.min = min;
    if (max > this.max) this.max = max;
    const lo = this.min < 0 ? this.min : 0;
    const hi = this.max > 0 ? this.max : 0;
    if (this.width === 0) {
      if (hi === lo) {
        // all zeros so far: no width yet; they go into the bin of 0 once there is one
        this.total += n;
        this.zeros += n;
        return;
      }
      this.init(lo, hi);
    } else if (!this.covers(lo, hi)) {
      this.grow(lo, hi);
    }
    const counts = this.counts;
    const inv = 1 / this.width;
    const off = this.offset;
    const last = this.numBins - 1;
    let zeros = 0;
    for (let i = 0; i < n; i++) {
      const v = data[i]!;
      // v * inv - off lies in [0, numBins] up to rounding; | 0 truncates, which is floor there
      let j = (v * inv - off) | 0;
      // conditional moves, not branches: zeros and clamped values are common (after Relu, half the values)
      j = j > last ? last : j;
      j = j < 0 ? 0 : j;
      counts[j]!++;
      zeros += +(v === 0);
    }
    this.total += n;
    this.zeros += zeros;
  }

  /** Local bin of value x, clamped to the window. */
  binOf(x: number): number {
    const j = Math.floor(x / this.width) - this.offset;
    return j < 0 ? 0 : j >= this.numBins ? this.numBins - 1 : j;
  }

  private covers(lo: number, hi: number): boolean {
    const w = this.width;
    return Math.floor(lo / w) >= this.offset && Math.ceil(hi / w) - 1 <= this.offset + this.numBins - 1;
  }

  private init(lo: number, hi: number): void {
    const n = this.numBins;
    const bins = (w: number): number => Math.ceil(hi / w) - Math.floor(lo / w);
    // a two-sided range of exactly n widths straddles n + 1 zero-aligned bins unless 0 splits it evenly
    let w = (hi - lo) / n;
    if (bins(w) > n) w = (hi - lo) / (n - 1);
    // floor/ceil rounding can still ask for one bin too many: widen by a hair until the range fits
    while (bins(w) > n) w *= 1 + 2 ** -30;
    this.width = w;
    this.offset = Math.floor(lo / w);
    if (this.zeros > 0) this.counts[this.binOf(0)]! += this.zeros;
  }

  private grow(lo: number, hi: number): void {
    const n = this.numBins;
    const w = this.width;
    const gLo = Math.floor(lo / w);
    const gHi = Math.ceil(hi / w) - 1;
    const fits = (k: number): boolean => Math.floor(gHi / k) - Math.floor(gLo / k) + 1 <= n;
    // k = 1 slides the window (the values seen still fit at this width); k >= 2 merges k bins into one
    let k = Math.max(1, Math.ceil((gHi - gLo + 1) / n));
    while (!fits(k)) k = k < 2 ** 52 ? k + 1 : k * 2;
    const offset = Math.floor(gLo / k);
    const merged = new Float64Array(n);
    const old = this.counts;
    for (let j = 0; j < n; j++) {
      const c = old[j]!;
      if (c === 0) continue;
      let J = Math.floor((this.offset + j) / k) - offset;
      if (J < 0) J = 0;
      else if (J >= n) J = n - 1;
      merged[J]! += c;
    }
    this.counts = merged;
    this.width = w * k;
    this.offset = offset;
    this.merges++;
  }
}

/**
 * The histogram of |x|: bin k covers [k·width, (k+1)·width). Exact, since 0 is a bin edge.
 * `min`/`max` of the result are the smallest/largest |x| bounds (0 and max(|min|, |max|)).
 */
export function foldAbs(h: HistogramView): HistogramView {
  const n = h.counts.length;
  const size = Math.max(h.offset + n, -h.offset, 1);
  const counts = new Float64Array(size);
  for (let j = 0; j < n; j++) {
    const c = h.counts[j]!;
    if (c === 0) continue;
    const g = h.offset + j;
    counts[g >= 0 ? g : -g - 1]! += c;
  }
  const absMax = Math.max(Math.abs(h.min), Math.abs(h.max));
  return { counts, width: h.width, offset: 0, total: h.total, zeros: h.zeros, min: h.total > 0 ? 0 : Infinity, max: h.total > 0 ? absMax : -Infinity };
}

/**
 * The value below which `count` of the histogram's values lie, interpolating linearly inside a bin
 * (values are taken as spread evenly over their bin), clamped to [min, max]. count <= 0 gives min,
 * count >= total gives max.
 */
export function valueAtCount(h: HistogramView, count: number): number {
  if (!(h.total > 0)) return 0;
  if (count <= 0) return h.min;
  if (count >= h.total || h.width === 0) return h.max;
  const counts = h.counts;
  let cum = 0;
  for (let j = 0; j < counts.length; j++) {
    const c = counts[j]!;
    if (c > 0 && cum + c >= count) {
      const x = (h.offset + j + (count - cum) / c) * h.width;
      return Math.min(h.max, Math.max(h.min, x));
    }
    cum += c;
  }
  return h.max;
}
