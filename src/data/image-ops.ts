// Pixel operations for image calibration / evaluation data: bilinear resize, center crop, grayscale,
// and the final scale / mean / std / channel order / layout step that writes model input tensors.
// Pure (no node: imports, no Buffer): images are float HWC rasters on the 0..255 scale.
//
// Semantics (documented so results can be reproduced elsewhere):
// - Bilinear resize uses half-pixel centers without antialiasing (align_corners=false): source
//   coordinate = (dst + 0.5) * in / out - 0.5, clamped at the borders. This is
//   torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False) and
//   OpenCV's INTER_LINEAR. PIL (and torchvision with antialias=True) widens the filter when
//   shrinking, so values differ when downscaling by more than ~2x. Values stay float (no rounding
//   back to 8 bits, which PIL does).
// - Shorter-side resize: torchvision's Resize(int): the long side becomes floor(S * long / short).
// - Center crop: torchvision's CenterCrop: top = round((H - h) / 2) with ties to even (Python round).
// - Grayscale of 8-bit pixels: PIL's convert('L'): (R*19595 + G*38470 + B*7471 + 32768) >> 16
//   (ITU-R 601-2 luma, rounded); of 16-bit pixels: 0.299 R + 0.587 G + 0.114 B, unrounded.

import { LowbitError } from '../errors.js';

/** An image: `height` x `width` pixels, `channels` values each, interleaved (HWC), 0..255 scale. */
export interface RasterImage {
  width: number;
  height: number;
  /** 1 (gray) or 3 (RGB). */
  channels: number;
  data: Float32Array;
}

/** Tensor layouts of an image batch. */
export const IMAGE_LAYOUTS = ['nchw', 'nhwc'] as const;
export type ImageLayout = (typeof IMAGE_LAYOUTS)[number];

/** Channels fed to the model: RGB, BGR (OpenCV / Caffe models) or one gray channel. */
export const IMAGE_CHANNELS = ['rgb', 'bgr', 'gray'] as const;
export type ImageChannels = (typeof IMAGE_CHANNELS)[number];

/** Precomputed source indices and weights of one axis of a bilinear resize. */
interface AxisTaps {
  i0: Int32Array;
  i1: Int32Array;
  w1: Float32Array;
}

function axisTaps(inSize: number, outSize: number): AxisTaps {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w1 = new Float32Array(outSize);
  const ratio = inSize / outSize;
  for (let d = 0; d < outSize; d++) {
    const src = Math.max(0, (d + 0.5) * ratio - 0.5);
    const lo = Math.min(Math.floor(src), inSize - 1);
    i0[d] = lo;
    i1[d] = Math.min(lo + 1, inSize - 1);
    w1[d] = Math.min(src - lo, 1);
  }
  return { i0, i1, w1 };
}

/**
 * Bilinear resize to `outH` x `outW` (half-pixel centers, no antialias; see the file header).
 * Returns the input itself when the size is unchanged.
 * @throws LowbitError('BAD_OPTION') for a non-positive or non-integer size.
 */
export function resizeBilinear(img: RasterImage, outH: number, outW: number): RasterImage {
  checkSize(outH, outW, 'resize');
  if (outH === img.height && outW === img.width) return img;
  const c = img.channels;
  const xs = axisTaps(img.width, outW);
  const ys = axisTaps(img.height, outH);
  // Horizontal pass per needed source row, then a vertical blend of two rows.
  const rowCache = new Map<number, Float32Array>();
  const hRow = (y: number): Float32Array => {
    let row = rowCache.get(y);
    if (row) return row;
    row = new Float32Array(outW * c);
    const base = y * img.width * c;
    for (let x = 0; x < outW; x++) {
      const a = base + xs.i0[x]! * c;
      const b = base + xs.i1[x]! * c;
      const w = xs.w1[x]!;
      for (let k = 0; k < c; k++) row[x * c + k] = img.data[a + k]! * (1 - w) + img.data[b + k]! * w;
    }
    rowCache.set(y, row);
    return row;
  };
  const out = new Float32Array(outH * outW * c);
  for (let y = 0; y < outH; y++) {
    const r0 = hRow(ys.i0[y]!);
    const r1 = hRow(ys.i1[y]!);
    const w = ys.w1[y]!;
    const o = y * outW * c;
    for (let i = 0; i < outW * c; i++) out[o + i] = r0[i]! * (1 - w) + r1[i]! * w;
    // Rows are visited in increasing order: drop those no later output row needs.
    for (const key of rowCache.keys()) if (key < ys.i0[y]!) rowCache.delete(key);
  }
  return { width: outW, height: outH, channels: c, data: out };
}

/** torchvision Resize(size) for an int: the shorter side becomes `size`, the longer floor(size * long / short). */
export function shorterSideSize(height: number, width: number, size: number): [number, number] {
  if (height <= width) return [size, Math.max(size, Math.floor((size * width) / height))];
  return [Math.max(size, Math.floor((size * height) / width)), size];
}

/**
 * The smallest aspect-preserving size that covers `h` x `w` (so a center crop to h x w follows):
 * for a square target this is shorterSideSize.
 */
export function coverSize(height: number, width: number, h: number, w: number): [number, number] {
  if (h / height >= w / width) return [h, Math.max(w, Math.floor((h * width) / height))];
  return [Math.max(h, Math.floor((w * height) / width)), w];
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * The central `h` x `w` window (torchvision CenterCrop offsets). Returns the input itself when
 * the size is unchanged.
 * @throws LowbitError('BAD_OPTION') when the image is smaller than the crop.
 */
export function centerCrop(img: RasterImage, h: number, w: number): RasterImage {
  checkSize(h, w, 'crop');
  if (h === img.height && w === img.width) return img;
  if (h > img.height || w > img.width) {
    throw new LowbitError('BAD_OPTION', `cannot center-crop ${h}x${w} from an image of ${img.height}x${img.width}`, 'resize to at least the crop size first');
  }
  const top = roundHalfEven((img.height - h) / 2);
  const left = roundHalfEven((img.width - w) / 2);
  const c = img.channels;
  const out = new Float32Array(h * w * c);
  for (let y = 0; y < h; y++) {
    const src = ((top + y) * img.width + left) * c;
    out.set(img.data.subarray(src, src + w * c), y * w * c);
  }
  return { width: w, height: h, channels: c, data: out };
}

/**
 * One gray channel from RGB (a gray image is returned as is). `eightBit`: PIL's rounded integer
 * luma (exact for 8-bit sources); otherwise the unrounded float luma.
 */
export function toGray(img: RasterImage, eightBit: boolean): RasterImage {
  if (img.channels === 1) return img;
  const n = img.width * img.height;
  const out = new Float32Array(n);
  const d = img.data;
  for (let i = 0; i < n; i++) {
    const r = d[3 * i]!;
    const g = d[3 * i + 1]!;
    const b = d[3 * i + 2]!;
    out[i] = eightBit ? Math.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536) : 0.299 * r + 0.587 * g + 0.114 * b;
  }
  return { width: img.width, height: img.height, channels: 1, data: out };
}

/** Three equal channels from a gray image (an RGB image is returned as is). */
export function toRgb(img: RasterImage): RasterImage {
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = img.data[i]!;
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** How pixel values become tensor values: (pixel * scale - mean[c]) / std[c]. */
export interface TensorFormat {
  layout: ImageLayout;
  channels: ImageChannels;
  /** float32: scaled and normalized; uint8: pixels rounded and clamped to 0..255 (scale/mean/std unused). */
  dtype: 'float32' | 'uint8';
  scale: number;
  /** One per output channel (in the order fed to the model). */
  mean: readonly number[];
  std: readonly number[];
}

/**
 * Writes one image as a sample of a batch tensor: channel order (RGB/BGR/gray), normalization,
 * layout. `dst` holds the batch; `offset` is the sample's first element.
 * @throws LowbitError('INTERNAL') when the image's channel count does not fit the format.
 */
export function writeSample(img: RasterImage, fmt: TensorFormat, dst: Float32Array | Uint8Array, offset: number): void {
  const c = fmt.channels === 'gray' ? 1 : 3;
  if (img.channels !== c) throw new LowbitError('INTERNAL', `image has ${img.channels} channels, the tensor format wants ${c}`);
  const hw = img.width * img.height;
  const d = img.data;
  const bgr = fmt.channels === 'bgr';
  for (let k = 0; k < c; k++) {
    const src = bgr ? 2 - k : k;
    const scale = fmt.scale;
    const mean = fmt.mean[k]!;
    const std = fmt.std[k]!;
    for (let p = 0; p < hw; p++) {
      const v = d[p * c + src]!;
      const at = offset + (fmt.layout === 'nchw' ? k * hw + p : p * c + k);
      dst[at] = fmt.dtype === 'uint8' ? Math.min(255, Math.max(0, Math.round(v))) : (v * scale - mean) / std;
    }
  }
}

function checkSize(h: number, w: number, what: string): void {
  if (!Number.isSafeInteger(h) || !Number.isSafeInteger(w) || h < 1 || w < 1) {
    throw new LowbitError('BAD_OPTION', `${what} size must be positive integers, got ${h}x${w}`);
  }
}
