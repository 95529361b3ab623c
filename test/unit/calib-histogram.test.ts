// The streaming histogram of the histogram calibration methods: zero-aligned bins, exact re-binning when
// the range grows (counts kept, equal to a one-pass count with the final edges), bounded width, quantiles
// within one bin of the sorted data, |x| folding, zeros, fixed memory.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StreamingHistogram, foldAbs, valueAtCount } from '../../src/calib/histogram.js';
import { batchMinMax } from '../../src/calib/observer.js';
import { mulberry32 } from '../../src/rng.js';

function add(h: StreamingHistogram, d: Float32Array): void {
  const r = batchMinMax('t', d);
  if (r) h.add(d, r.min, r.max);
}

/** Values in [edge j, edge j+1), counted directly in float64 (the last bin also takes its right edge). */
function directCounts(h: StreamingHistogram, values: Float32Array): Float64Array {
  const out = new Float64Array(h.numBins);
  for (const v of values) {
    let j = Math.floor(v / h.width) - h.offset;
    if (j === h.numBins) j--;
    out[j]!++;
  }
  return out;
}

/** Values whose bin could flip with rounding (within 1e-9 of a width from an edge). */
function nearEdges(h: StreamingHistogram, values: Float32Array): number {
  let n = 0;
  for (const v of values) {
    const f = v / h.width;
    if (Math.abs(f - Math.round(f)) < 1e-9 && v !== 0) n++;
  }
  return n;
}

/** Seeded batches whose range grows and shifts: one-sided, then two-sided, rare far values. */
function growingBatches(seed: number, batches: number, size: number): Float32Array[] {
  const rng = mulberry32(seed);
  const out: Float32Array[] = [];
  for (let b = 0; b < batches; b++) {
    const scale = Math.exp(rng.uniform(-2, 3));
    const shift = rng.chance(0.4) ? rng.uniform(-2, 2) * scale : 0;
    const oneSided = b < 3 || rng.chance(0.3);
    const d = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const v = rng.normal() * scale + shift;
      d[i] = oneSided ? Math.abs(v) : v;
    }
    out.push(d);
  }
  return out;
}

const concat = (parts: Float32Array[]): Float32Array => {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

describe('StreamingHistogram', () => {
  it('the first batch sets zero-aligned bins over [min(0, lo), max(0, hi)]', () => {
    const h = new StreamingHistogram(100);
    const d = Float32Array.from({ length: 1000 }, (_, i) => 0.5 + (i * 9.5) / 999);
    add(h, d);
    // one-sided: 0 is the left edge of bin 0, the range [0, 10] fits exactly in 100 bins
    assert.equal(h.offset, 0);
    assert.ok(h.width >= 0.1 && h.width < 0.1 * (1 + 1e-9), `width ${h.width}`);
    assert.deepEqual([...h.counts], [...directCounts(h, d)]);
    assert.equal(h.total, 1000);
    assert.equal(h.merges, 0);

    const g = new StreamingHistogram(64);
    add(g, Float32Array.of(-3, -1.25, 0.7, 5));
    const zeroEdge = -g.offset;
    assert.ok(Number.isInteger(zeroEdge) && zeroEdge > 0 && zeroEdge < 64);
    assert.equal(g.edge(zeroEdge), 0);
    assert.ok(g.edge(0) <= -3 && g.edge(64) >= 5);
  });

  it('re-binning keeps every count and equals a one-pass count with the final edges', () => {
    for (const [seed, bins] of [[1, 64], [2, 100], [3, 2048]] as const) {
      const h = new StreamingHistogram(bins);
      const batches = growingBatches(seed, 40, 300);
      let seen = 0;
      for (const d of batches) {
        add(h, d);
        seen += d.length;
        assert.equal(h.counts.reduce((a, c) => a + c, 0), seen, `seed ${seed}: counts sum to the values seen`);
        assert.equal(h.total, seen);
      }
      assert.ok(h.merges > 2, `seed ${seed}: the range grew (${h.merges} moves)`);
      const all = concat(batches);
      const direct = directCounts(h, all);
      let diff = 0;
      for (let j = 0; j < bins; j++) diff += Math.abs(direct[j]! - h.counts[j]!);
      assert.ok(diff <= 2 * nearEdges(h, all), `seed ${seed}: ${diff} counts differ from the one-pass histogram`);
    }
  });

  it('the final width is at most twice that of a one-pass histogram of the final range', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const bins = [64, 100, 2048][seed % 3]!;
      const h = new StreamingHistogram(bins);
      const batches = growingBatches(seed, 30, 50);
      for (const d of batches) add(h, d);
      const span = Math.max(h.max, 0) - Math.min(h.min, 0);
      assert.ok(h.width <= (2 * span) / (bins - 2), `seed ${seed}: width ${h.width} for span ${span} in ${bins} bins`);
      assert.ok(h.edge(0) <= h.min && h.edge(bins) >= h.max, `seed ${seed}: window covers the values`);
      assert.equal(h.counts.length, bins, 'memory stays numBins counts');
    }
  });

  it('quantiles match the sorted data within one bin', () => {
    const h = new StreamingHistogram(256);
    const batches = growingBatches(7, 25, 400);
    for (const d of batches) add(h, d);
    const sorted = Float64Array.from(concat(batches)).sort();
    for (const q of [0.001, 0.01, 0.25, 0.5, 0.9, 0.999]) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1]!;
      const got = valueAtCount(h, q * h.total);
      assert.ok(Math.abs(got - exact) <= h.width, `q ${q}: ${got} vs ${exact} (bin ${h.width})`);
    }
    assert.equal(valueAtCount(h, h.total), h.max);
    assert.equal(valueAtCount(h, 0), h.min);
  });

  it('foldAbs gives the exact histogram of |x|', () => {
    const h = new StreamingHistogram(128);
    const batches = growingBatches(9, 10, 500);
    for (const d of batches) add(h, d);
    const f = foldAbs(h);
    const direct = new Float64Array(f.counts.length);
    for (const v of concat(batches)) {
      let k = Math.floor(Math.abs(v) / h.width);
      // a negative value on an edge belongs to the bin below it in |x| ((-(k+1)w, -kw] folds to k)
      if (v < 0 && Math.abs(v) / h.width === k) k--;
      direct[Math.min(k, f.counts.length - 1)]!++;
    }
    let diff = 0;
    for (let k = 0; k < direct.length; k++) diff += Math.abs(direct[k]! - f.counts[k]!);
    assert.ok(diff <= 2 * nearEdges(h, concat(batches)), `${diff} counts differ`);
    assert.equal(f.max, Math.max(-h.min, h.max));
  });

  it('counts zeros; all-zero batches wait for a width and land in the bin of 0', () => {
    const h = new StreamingHistogram(64);
    add(h, new Float32Array(10));
    assert.equal(h.width, 0);
    assert.equal(h.total, 10);
    assert.equal(h.zeros, 10);
    add(h, Float32Array.of(0, 1, 2, 3));
    assert.equal(h.zeros, 11);
    assert.equal(h.counts[h.binOf(0)], 11);
    assert.equal(h.counts.reduce((a, c) => a + c, 0), 14);
    // a negative-only tensor: 0 is the right end of the window, zeros go to the last bin
    const n = new StreamingHistogram(64);
    add(n, Float32Array.of(-4, -2, 0, 0));
    assert.equal(n.counts[63], 2);
    assert.equal(n.edge(64), 0);
  });

  it('memory does not grow with the number of batches', () => {
    const h = new StreamingHistogram(512);
    const rng = mulberry32(3);
    const d = new Float32Array(64);
    for (let b = 0; b < 2000; b++) {
      for (let i = 0; i < d.length; i++) d[i] = rng.normal() * (1 + b / 100);
      add(h, d);
    }
    assert.equal(h.counts.length, 512);
    assert.equal(h.total, 2000 * 64);
    assert.deepEqual(Object.keys(h).sort(), ['counts', 'max', 'merges', 'min', 'numBins', 'offset', 'total', 'width', 'zeros']);
  });
});
