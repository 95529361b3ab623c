// Unit tests of the realistic OCR inputs (src/data/realistic-ocr*.ts): determinism, shapes, normalization,
// layout facts, CTC decoding. No ORT here (see test/ort/realistic.test.ts for the models' verdicts).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  OCR_DET_MEAN,
  OCR_DET_STD,
  clsPredictsRotated,
  ctcGreedyDecode,
  loadOcrDictionary,
  mulberry32,
  ocrClsBatch,
  ocrDetBatch,
  ocrRecBatch,
  realModelPath,
  type DigitSource,
} from '../../src/data/realistic.js';
import { isLowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';

const bytes = (a: NdArray): Buffer => Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength);
const code = (c: string) => (e: unknown) => isLowbitError(e) && e.code === c;

/** Distance of x from the nearest integer. */
const offGrid = (x: number): number => Math.abs(x - Math.round(x));

/** 10 synthetic "digits": a filled rectangle whose width grows with the label (label = index). */
function blockDigits(): DigitSource {
  const images = new Float32Array(10 * 784);
  for (let d = 0; d < 10; d++) {
    for (let y = 4; y < 24; y++) for (let x = 10; x < 12 + d; x++) images[d * 784 + y * 28 + x] = 1;
  }
  return { images, labels: Int32Array.from({ length: 10 }, (_, i) => i), count: 10 };
}

describe('mulberry32', () => {
  it('is deterministic, uniform in [0, 1), and its normals are standard', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 20000 }, () => a.next());
    assert.deepEqual(Array.from({ length: 20000 }, () => b.next()), xs);
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
    assert.notEqual(mulberry32(43).next(), xs[0]);
    const r = mulberry32(7);
    const ns = Array.from({ length: 20000 }, () => r.normal());
    const m = ns.reduce((s, x) => s + x, 0) / ns.length;
    const v = ns.reduce((s, x) => s + (x - m) ** 2, 0) / ns.length;
    assert.ok(Math.abs(m) < 0.03 && Math.abs(v - 1) < 0.05, `normal mean ${m} var ${v}`);
    const ints = Array.from({ length: 1000 }, () => r.int(3, 5));
    assert.deepEqual([...new Set(ints)].sort(), [3, 4, 5]);
  });
});

describe('ocrRecBatch', () => {
  const batch = ocrRecBatch(6, 11);

  it('is deterministic: same seed, same bytes; another seed, other bytes', () => {
    assert.ok(bytes(ocrRecBatch(6, 11).input).equals(bytes(batch.input)));
    assert.deepEqual(ocrRecBatch(6, 11).texts, batch.texts);
    assert.ok(!bytes(ocrRecBatch(6, 12).input).equals(bytes(batch.input)));
  });

  it('has shape [n, 3, 48, 320], gray 8-bit pixels normalized as (x/255 - 0.5)/0.5, zero padding', () => {
    assert.equal(batch.input.dtype, 'float32');
    assert.deepEqual(batch.input.shape, [6, 3, 48, 320]);
    const d = batch.input.data as Float32Array;
    const plane = 48 * 320;
    for (let i = 0; i < 6; i++) {
      const w = batch.widths[i]!;
      assert.ok(w >= 40 && w <= 320, `width ${w}`);
      let dark = 0;
      for (let y = 0; y < 48; y++) {
        for (let x = 0; x < 320; x++) {
          const o = y * 320 + x;
          const v = d[i * 3 * plane + o]!;
          assert.ok(v >= -1 && v <= 1);
          assert.equal(d[(i * 3 + 1) * plane + o], v); // R = G = B
          assert.equal(d[(i * 3 + 2) * plane + o], v);
          if (x >= w) assert.equal(v, 0, `padding at ${x}`);
          else assert.ok(offGrid(v * 127.5 + 127.5) < 1e-3, 'not an 8-bit level');
          if (x < w && v < -0.4) dark++;
        }
      }
      // Dark ink on light paper: some ink, mostly paper.
      assert.ok(dark > 50 && dark < 0.5 * 48 * w, `ink pixels ${dark}`);
    }
  });

  it('labels each line with 4–12 digits', () => {
    const many = ocrRecBatch(40, 3);
    for (const t of many.texts) assert.match(t, /^[0-9]{4,12}$/);
    const lengths = new Set(many.texts.map((t) => t.length));
    assert.ok(lengths.size >= 5, `lengths ${[...lengths]}`);
  });

  it('takes the text from the digit source labels', () => {
    const b = ocrRecBatch(5, 1, { digits: blockDigits() });
    for (const t of b.texts) assert.match(t, /^[0-9]+$/);
    assert.deepEqual(b.input.shape, [5, 3, 48, 320]);
  });

  it('rejects bad sizes and digit sources', () => {
    assert.throws(() => ocrRecBatch(0, 1), code('BAD_OPTION'));
    assert.throws(() => ocrRecBatch(1, 1, { width: 10 }), code('BAD_OPTION'));
    assert.throws(() => ocrRecBatch(1, 1, { digits: { images: new Float32Array(10), labels: [1], count: 1 } }), code('BAD_DATA'));
  });
});

describe('ocrClsBatch', () => {
  const b = ocrClsBatch(8, 5);

  it('has shape [n, 3, 48, 192] and alternates upright / 180°-rotated copies of the same line', () => {
    assert.deepEqual(b.input.shape, [8, 3, 48, 192]);
    assert.deepEqual(b.rotated, [false, true, false, true, false, true, false, true]);
    assert.ok(bytes(ocrClsBatch(8, 5).input).equals(bytes(b.input)));
    const d = b.input.data as Float32Array;
    const plane = 48 * 192;
    for (let k = 0; k < 8; k += 2) {
      assert.equal(b.texts[k], b.texts[k + 1]);
      const w = b.widths[k]!;
      assert.equal(b.widths[k + 1], w);
      assert.ok(w <= 192);
      let maxDiff = 0;
      for (let y = 0; y < 48; y++) {
        for (let x = 0; x < w; x++) {
          const up = d[k * 3 * plane + y * 192 + x]!;
          const down = d[(k + 1) * 3 * plane + (47 - y) * 192 + (w - 1 - x)]!;
          maxDiff = Math.max(maxDiff, Math.abs(up - down));
        }
        for (let x = w; x < 192; x++) assert.equal(d[(k + 1) * 3 * plane + y * 192 + x], 0);
      }
      // Identical up to one 8-bit level (squeezed lines are resampled after the turn).
      assert.ok(maxDiff <= 1 / 127.5 + 1e-6, `pair ${k}: max diff ${maxDiff}`);
    }
  });

  it('handles an odd n (last sample upright)', () => {
    const odd = ocrClsBatch(3, 5);
    assert.deepEqual(odd.rotated, [false, true, false]);
    assert.deepEqual(odd.input.shape, [3, 3, 48, 192]);
  });
});

describe('ocrDetBatch', () => {
  const b = ocrDetBatch(2, 9, 320);

  it('is deterministic and ImageNet-normalized per channel from 8-bit gray pixels', () => {
    assert.deepEqual(b.input.shape, [2, 3, 320, 320]);
    assert.ok(bytes(ocrDetBatch(2, 9, 320).input).equals(bytes(b.input)));
    const d = b.input.data as Float32Array;
    const plane = 320 * 320;
    for (let k = 0; k < plane; k += 97) {
      const x0 = (d[k]! * OCR_DET_STD[0] + OCR_DET_MEAN[0]) * 255;
      assert.ok(offGrid(x0) < 1e-3 && x0 > -0.5 && x0 < 255.5, `pixel ${x0}`);
      for (let c = 1; c < 3; c++) {
        const xc = (d[c * plane + k]! * OCR_DET_STD[c]! + OCR_DET_MEAN[c]!) * 255;
        assert.ok(Math.abs(xc - x0) < 1e-3, 'channels differ: image is not gray');
      }
    }
  });

  it('places 2+ non-overlapping digit lines inside the canvas, darker inside the ink boxes', () => {
    const d = b.input.data as Float32Array;
    for (let i = 0; i < 2; i++) {
      const lines = b.lines[i]!;
      assert.ok(lines.length >= 2, `${lines.length} lines`);
      const inside = new Uint8Array(320 * 320);
      for (const l of lines) {
        assert.match(l.text, /^[0-9]{2,12}$/);
        assert.ok(l.x0 >= 0 && l.y0 >= 0 && l.x1 <= 320 && l.y1 <= 320 && l.x1 > l.x0 && l.y1 > l.y0);
        for (let y = l.y0; y < l.y1; y++) for (let x = l.x0; x < l.x1; x++) {
          assert.equal(inside[y * 320 + x], 0, 'lines overlap');
          inside[y * 320 + x] = 1;
        }
      }
      let si = 0, ni = 0, so = 0, no = 0;
      for (let k = 0; k < 320 * 320; k++) {
        const v = d[i * 3 * 320 * 320 + k]!;
        if (inside[k]) { si += v; ni++; } else { so += v; no++; }
      }
      assert.ok(so / no - si / ni > 0.5, `inside ${si / ni} vs outside ${so / no}`);
    }
  });

  it('rejects sizes that are not multiples of 32', () => {
    assert.throws(() => ocrDetBatch(1, 1, 300), code('BAD_OPTION'));
    assert.throws(() => ocrDetBatch(1, 1, 96), code('BAD_OPTION'));
  });
});

describe('OCR output decoding', () => {
  it('loads the 6625-class rec dictionary: blank, ppocr_keys_v1.txt lines, space', () => {
    const dict = loadOcrDictionary();
    assert.equal(dict.length, 6625);
    assert.equal(dict[0], '');
    assert.equal(dict[6624], ' ');
    for (const c of '0123456789') assert.equal(dict.filter((x) => x === c).length, 1, c);
    assert.equal(dict.indexOf('0'), 26); // line 26 (1-based) of ppocr_keys_v1.txt
    assert.throws(() => loadOcrDictionary('/nonexistent/keys.txt'), code('FILE_NOT_FOUND'));
    assert.match(realModelPath('ocrRec'), /ch_PP-OCRv4_rec_infer\.onnx$/);
  });

  it('CTC-greedy-decodes: argmax, collapse repeats, drop blanks', () => {
    const dict = ['', 'a', 'b', ' '];
    const steps = [0, 1, 1, 0, 1, 2, 2, 3, 0];
    const data = new Float32Array(2 * steps.length * 4).fill(0.1);
    steps.forEach((s, t) => (data[t * 4 + s] = 0.7));
    for (let t = 0; t < steps.length; t++) data[(steps.length + t) * 4] = 0.7; // second sample: all blank
    const out = ctcGreedyDecode({ dtype: 'float32', shape: [2, steps.length, 4], data }, dict);
    assert.equal(out[0]!.text, 'aab ');
    assert.ok(Math.abs(out[0]!.confidence - 0.7) < 1e-6);
    assert.deepEqual(out[1], { text: '', confidence: 0 });
    assert.throws(() => ctcGreedyDecode({ dtype: 'float32', shape: [1, 2, 5], data: new Float32Array(10) }, dict), code('DATA_MISMATCH'));
  });

  it('reads cls outputs as rotated when class 1 (180°) wins', () => {
    const out: NdArray = { dtype: 'float32', shape: [3, 2], data: Float32Array.of(0.9, 0.1, 0.2, 0.8, 0.6, 0.4) };
    assert.deepEqual(clsPredictsRotated(out), [false, true, false]);
    assert.throws(() => clsPredictsRotated({ dtype: 'float32', shape: [2, 3], data: new Float32Array(6) }), code('DATA_MISMATCH'));
  });
});
