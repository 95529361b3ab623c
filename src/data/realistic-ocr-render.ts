// Renders REAL handwritten digits (MNIST glyphs) into synthetic text layouts: single text lines and
// multi-line "pages", as 8-bit-quantized gray images. Pure (no node: imports); used by realistic-ocr.ts.

import { LowbitError } from '../errors.js';
import type { Rng } from '../rng.js';

/** Handwritten digits: `images` is count*1*28*28 in [0, 1] with ink = 1 (MNIST convention). */
export interface DigitSource {
  images: Float32Array;
  labels: ArrayLike<number>;
  count: number;
}

/** A gray image, row-major, 0 = black, 1 = white. */
export interface GrayImage {
  width: number;
  height: number;
  data: Float32Array;
}

/** Axis-aligned pixel box, end-exclusive: columns [x0, x1), rows [y0, y1). */
export interface InkBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** One text line placed on a page: its tight ink box and the digits it shows. */
export interface PlacedLine extends InkBox {
  text: string;
}

/** One digit glyph placed at (x, y) with size w x h, sampled from MNIST image `index`. */
interface Glyph {
  index: number;
  /** Ink bounding box of the 28x28 source, end-exclusive. */
  src: InkBox;
  x: number;
  y: number;
  w: number;
  h: number;
}

const SIDE = 28;
/** MNIST pixels above this count as ink when cropping a glyph to its bounding box. */
const INK_THRESHOLD = 0.15;

function checkDigits(digits: DigitSource): void {
  if (!(digits.count > 0) || digits.images.length < digits.count * SIDE * SIDE || digits.labels.length < digits.count) {
    throw new LowbitError(
      'BAD_DATA',
      `digit source has count ${digits.count}, ${digits.images.length} pixels and ${digits.labels.length} labels`,
      'pass count*28*28 pixels and count labels (the MNIST loader in src/data/mnist.ts returns this)',
    );
  }
}

/** Tight ink box of MNIST image k (the whole 28x28 if it has no ink). */
function inkBox(digits: DigitSource, k: number): InkBox {
  const base = k * SIDE * SIDE;
  let x0 = SIDE;
  let y0 = SIDE;
  let x1 = 0;
  let y1 = 0;
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      if (digits.images[base + y * SIDE + x]! > INK_THRESHOLD) {
        if (x < x0) x0 = x;
        if (y < y0) y0 = y;
        if (x + 1 > x1) x1 = x + 1;
        if (y + 1 > y1) y1 = y + 1;
      }
    }
  }
  return x1 > x0 ? { x0, y0, x1, y1 } : { x0: 0, y0: 0, x1: SIDE, y1: SIDE };
}

/** Layout knobs of one line, in pixels. */
export interface LineStyle {
  minDigits: number;
  maxDigits: number;
  /** Ink height of a digit (each digit varies ±10% around it). */
  digitHeight: number;
  /** Horizontal gap between digits: uniform integer in [minGap, maxGap]. */
  minGap: number;
  maxGap: number;
  /** Vertical jitter of each digit's center, ± pixels. */
  jitter: number;
  /** Stop adding digits before the line gets wider than this (at least minDigits are kept). */
  maxWidth: number;
}

/**
 * Lays out one line of random MNIST digits with its top-left ink corner near (0, 0).
 * Returns the glyphs, the digit string, and the line's extent.
 */
function layoutLine(rng: Rng, digits: DigitSource, style: LineStyle): { glyphs: Glyph[]; text: string; width: number; height: number } {
  const want = rng.int(style.minDigits, style.maxDigits);
  const glyphs: Glyph[] = [];
  let text = '';
  let x = 0;
  const mid = Math.round(style.digitHeight * 0.6);
  for (let i = 0; i < want; i++) {
    const index = rng.int(0, digits.count - 1);
    const src = inkBox(digits, index);
    const h = Math.max(4, Math.round(style.digitHeight * rng.uniform(0.9, 1.1)));
    const scale = h / (src.y1 - src.y0);
    const w = Math.max(2, Math.round((src.x1 - src.x0) * scale));
    const gap = i === 0 ? 0 : rng.int(style.minGap, style.maxGap);
    if (i >= style.minDigits && x + gap + w > style.maxWidth) break;
    x += gap;
    const y = mid - Math.round(h / 2) + rng.int(-style.jitter, style.jitter);
    glyphs.push({ index, src, x, y, w, h });
    text += String(digits.labels[index]);
    x += w;
  }
  const top = Math.min(...glyphs.map((g) => g.y));
  for (const g of glyphs) g.y -= top;
  return { glyphs, text, width: x, height: Math.max(...glyphs.map((g) => g.y + g.h)) };
}

/** Bilinear sample of MNIST image k at fractional (sx, sy); 0 outside. */
function sample(digits: DigitSource, k: number, sx: number, sy: number): number {
  const x0 = Math.floor(sx);
  const y0 = Math.floor(sy);
  const fx = sx - x0;
  const fy = sy - y0;
  const base = k * SIDE * SIDE;
  const at = (x: number, y: number): number =>
    x < 0 || y < 0 || x >= SIDE || y >= SIDE ? 0 : digits.images[base + y * SIDE + x]!;
  return (
    (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy
  );
}

/** Draws glyphs into an ink-coverage map (max-combined) at offset (dx, dy). */
function drawGlyphs(alpha: Float32Array, width: number, height: number, digits: DigitSource, glyphs: Glyph[], dx: number, dy: number): void {
  for (const g of glyphs) {
    const sxScale = (g.src.x1 - g.src.x0) / g.w;
    const syScale = (g.src.y1 - g.src.y0) / g.h;
    for (let v = 0; v < g.h; v++) {
      const py = dy + g.y + v;
      if (py < 0 || py >= height) continue;
      const sy = g.src.y0 + (v + 0.5) * syScale - 0.5;
      for (let u = 0; u < g.w; u++) {
        const px = dx + g.x + u;
        if (px < 0 || px >= width) continue;
        const a = sample(digits, g.index, g.src.x0 + (u + 0.5) * sxScale - 0.5, sy);
        const o = py * width + px;
        if (a > alpha[o]!) alpha[o] = a;
      }
    }
  }
}

/** Paper/ink shading knobs. Values are gray levels in [0, 1]. */
interface Shade {
  paper: number;
  ink: number;
  noise: number;
  /** Top-to-bottom brightness change of the paper (a soft lighting gradient). */
  gradient: number;
}

function randomShade(rng: Rng): Shade {
  return {
    paper: rng.uniform(0.82, 0.98),
    ink: rng.uniform(0.02, 0.25),
    noise: rng.uniform(0.01, 0.04),
    gradient: rng.uniform(-0.04, 0.04),
  };
}

/** Turns ink coverage into a gray image: paper + ink, Gaussian noise, clamped and quantized to 8 bits. */
function shade(rng: Rng, alpha: Float32Array, width: number, height: number, s: Shade): GrayImage {
  const data = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const paper = s.paper + s.gradient * (y / Math.max(1, height - 1) - 0.5);
    for (let x = 0; x < width; x++) {
      const o = y * width + x;
      const v = paper + (s.ink - paper) * alpha[o]! + s.noise * rng.normal();
      // Real inputs are 8-bit images: quantize so normalized values are exactly k/255 based.
      data[o] = Math.round(Math.min(1, Math.max(0, v)) * 255) / 255;
    }
  }
  return { width, height, data };
}

/** Options of {@link renderLine}. */
export interface RenderLineOptions {
  /** Image height in pixels (PaddleOCR rec/cls use 48). */
  height?: number;
  minDigits?: number;
  maxDigits?: number;
  /** Stop adding digits before the ink gets wider than this (default: no limit). */
  maxWidth?: number;
}

/**
 * One text line of 4–12 real handwritten digits (random digit height 55–80% of the line, random
 * 1–7 px gaps, ±2 px vertical jitter, 4–12 px side margins), dark ink on light paper with noise.
 * @throws LowbitError('BAD_DATA') for an empty or inconsistent digit source.
 */
export function renderLine(rng: Rng, digits: DigitSource, options: RenderLineOptions = {}): { image: GrayImage; text: string } {
  checkDigits(digits);
  const height = options.height ?? 48;
  const digitHeight = Math.round(height * rng.uniform(0.55, 0.8));
  const { glyphs, text, width: inkW, height: inkH } = layoutLine(rng, digits, {
    minDigits: options.minDigits ?? 4,
    maxDigits: options.maxDigits ?? 12,
    digitHeight,
    minGap: 1,
    maxGap: 7,
    jitter: 2,
    maxWidth: options.maxWidth ?? Number.POSITIVE_INFINITY,
  });
  const left = rng.int(4, 12);
  const width = left + inkW + rng.int(4, 12);
  const top = Math.max(0, Math.round((height - inkH) / 2) + rng.int(-2, 2));
  const alpha = new Float32Array(width * height);
  drawGlyphs(alpha, width, height, digits, glyphs, left, top);
  return { image: shade(rng, alpha, width, height, randomShade(rng)), text };
}

/**
 * A "page": several lines of real handwritten digits at random positions on a width x height canvas,
 * with each line's tight ink box. Lines never overlap (they are stacked top to bottom).
 * @throws LowbitError('BAD_DATA') for an empty or inconsistent digit source.
 */
export function renderPage(rng: Rng, digits: DigitSource, width: number, height: number): { image: GrayImage; lines: PlacedLine[] } {
  checkDigits(digits);
  const alpha = new Float32Array(width * height);
  const lines: PlacedLine[] = [];
  const short = Math.min(width, height);
  const margin = Math.round(short * 0.04);
  let y = margin + rng.int(0, Math.round(short * 0.08));
  for (;;) {
    const digitHeight = Math.max(14, Math.round(short * rng.uniform(0.04, 0.08)));
    if (y + digitHeight * 1.3 > height - margin) break;
    const x = margin + rng.int(0, Math.round(width * 0.3));
    const line = layoutLine(rng, digits, {
      minDigits: 2,
      maxDigits: 12,
      digitHeight,
      minGap: 1,
      maxGap: Math.max(2, Math.round(digitHeight * 0.25)),
      jitter: Math.max(1, Math.round(digitHeight * 0.05)),
      maxWidth: width - margin - x,
    });
    if (line.width > width - margin - x) break;
    drawGlyphs(alpha, width, height, digits, line.glyphs, x, y);
    lines.push({ text: line.text, x0: x, y0: y, x1: x + line.width, y1: y + line.height });
    y += line.height + Math.round(digitHeight * rng.uniform(0.6, 2.5));
  }
  return { image: shade(rng, alpha, width, height, randomShade(rng)), lines };
}

/** The image turned by 180° (what an upside-down text line looks like). */
export function rotate180(img: GrayImage): GrayImage {
  return { width: img.width, height: img.height, data: img.data.slice().reverse() };
}

/** Resizes horizontally to `width` columns (linear interpolation); height is kept. */
export function resizeWidth(img: GrayImage, width: number): GrayImage {
  if (width === img.width) return img;
  const data = new Float32Array(width * img.height);
  const scale = img.width / width;
  for (let x = 0; x < width; x++) {
    const sx = Math.min(img.width - 1, Math.max(0, (x + 0.5) * scale - 0.5));
    const x0 = Math.floor(sx);
    const x1 = Math.min(img.width - 1, x0 + 1);
    const f = sx - x0;
    for (let y = 0; y < img.height; y++) {
      const row = y * img.width;
      data[y * width + x] = img.data[row + x0]! * (1 - f) + img.data[row + x1]! * f;
    }
  }
  return { width, height: img.height, data };
}
