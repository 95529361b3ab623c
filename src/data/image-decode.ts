// PNG and JPEG decoding to float rasters (pngjs, jpeg-js: pure JavaScript, no native build).
// Node-side adapter (the decoders use Buffer / zlib).
//
// - The format is sniffed from the bytes (PNG signature, JPEG SOI marker), not the file name.
// - Gray PNGs (with or without alpha) give 1 channel; everything else 3 (RGB). Alpha is dropped
//   (not composited), as PIL's convert('RGB') does. Palette PNGs are expanded.
// - 16-bit PNGs keep their precision: values are v * 255 / 65535 (floats on the 0..255 scale);
//   1/2/4-bit gray PNGs are scaled to 0..255 the same way.
// - JPEG: baseline and progressive (jpeg-js), gray JPEGs come as RGB with equal channels; EXIF
//   orientation is ignored (pixels are used as stored).

import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { LowbitError } from '../errors.js';
import type { RasterImage } from './image-ops.js';

/** A decoded image and whether its samples are 8-bit integers (for PIL's rounded gray formula). */
export interface DecodedImage {
  image: RasterImage;
  format: 'png' | 'jpeg';
  /** Bits per sample of the file (8 for JPEG). */
  bitDepth: number;
}

/** File name extensions read from image folders (case-insensitive). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

/** 'png' | 'jpeg' from the first bytes, else undefined. */
export function sniffImage(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/**
 * Decodes a PNG or JPEG held in memory.
 * @param name the file, for messages.
 * @throws LowbitError('BAD_DATA') naming the file when it is neither format, or is damaged.
 */
export function decodeImage(bytes: Uint8Array, name: string): DecodedImage {
  const format = sniffImage(bytes);
  if (!format) {
    throw new LowbitError('BAD_DATA', `${name}: not a PNG or JPEG image`, 'image folders hold .png / .jpg / .jpeg files only; convert or remove this file');
  }
  try {
    return format === 'png' ? decodePng(bytes) : decodeJpeg(bytes);
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    const why = e instanceof Error ? e.message : String(e);
    throw new LowbitError('BAD_DATA', `${name}: damaged or unreadable ${format === 'png' ? 'PNG' : 'JPEG'} (${why})`, 'the file may be truncated; re-export it or remove it from the folder', { cause: e });
  }
}

function decodePng(bytes: Uint8Array): DecodedImage {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const png = PNG.sync.read(buf, { skipRescale: true });
  const { width, height, depth } = png;
  const rgba = png.data as unknown as ArrayLike<number>; // Buffer (<= 8 bits) or Uint16Array (16 bits)
  // Palette entries are already 8-bit colors; other sub-8-bit and 16-bit samples are rescaled here.
  const mul = png.palette || depth === 8 ? 1 : 255 / (2 ** depth - 1);
  const channels = png.color ? 3 : 1;
  const n = width * height;
  const data = new Float32Array(n * channels);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < channels; k++) data[i * channels + k] = rgba[4 * i + k]! * mul;
  }
  return { image: { width, height, channels, data }, format: 'png', bitDepth: png.palette ? 8 : depth };
}

function decodeJpeg(bytes: Uint8Array): DecodedImage {
  const d = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false });
  const n = d.width * d.height;
  if (d.data.length !== n * 3) throw new Error(`decoder returned ${d.data.length} values for ${d.width}x${d.height} pixels`);
  return { image: { width: d.width, height: d.height, channels: 3, data: Float32Array.from(d.data) }, format: 'jpeg', bitDepth: 8 };
}
