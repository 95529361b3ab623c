// Image folders as calibration / evaluation data: a DataSource that lists the PNG/JPEG files of a
// folder (and its subfolders) in a fixed order and decodes one image at a time while batches
// stream, so memory does not grow with the number of images. Also `openModelData`, which opens any
// data path (image folder, .npy, .npz) for a model. Node-side adapter; re-exported by calib-data.ts.
//
// Folder rules: files are taken from the folder and its subfolders (ImageNet-style class folders
// work), sorted by their relative path ('/'-separated, code-unit order: the same on every machine
// and locale). Names starting with '.' (.DS_Store, .git) are skipped. Any other file that is not
// .png/.jpg/.jpeg is an error naming it (nothing is skipped silently). A damaged image is an error
// naming the file when its batch is read.

import { readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LowbitError } from '../errors.js';
import { bindToModelInputs, type BoundDataSource, type ModelInput } from './bind.js';
import { shapeSize, type NdArray } from './dtype.js';
import { decodeImage, IMAGE_EXTENSIONS } from './image-decode.js';
import { centerCrop, coverSize, resizeBilinear, shorterSideSize, toGray, toRgb, writeSample, type RasterImage } from './image-ops.js';
import { imageSampleShape, resolveImagePreprocess, type ImagePreprocess, type ResolvedImagePreprocess } from './image-options.js';
import { RAW_BATCHES, UNNAMED, checkFinite, checkSlice, iterateBatches, openDataSource, type ArrayInfo, type DataSource } from './source.js';

const isImageName = (name: string): boolean => IMAGE_EXTENSIONS.some((e) => name.toLowerCase().endsWith(e));

/** True when `path` is a directory (following symlinks); false when it is anything else or missing. */
export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The image files of a folder and its subfolders, as paths relative to it, sorted.
 * @throws LowbitError('FILE_NOT_FOUND') when `dir` is not a folder; LowbitError('BAD_DATA') naming
 *   the first file that is not .png/.jpg/.jpeg, or when there is no image at all.
 */
export function listImageFiles(dir: string): string[] {
  if (!isDirectory(dir)) throw new LowbitError('FILE_NOT_FOUND', `image folder not found: ${dir}`, 'pass a folder of .png / .jpg images');
  const found: string[] = [];
  const others: string[] = [];
  const seen = new Set<string>();
  const walk = (rel: string): void => {
    const abs = rel === '' ? dir : join(dir, rel);
    const real = realpathSync(abs);
    if (seen.has(real)) return; // a symlink back up the tree
    seen.add(real);
    for (const entry of readdirSync(abs, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
      const isDir = entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(join(abs, entry.name)));
      if (isDir) walk(child);
      else if (isImageName(entry.name)) found.push(child);
      else others.push(child);
    }
  };
  walk('');
  others.sort(byCodeUnits);
  if (others.length) {
    throw new LowbitError(
      'BAD_DATA',
      `${dir}: '${others[0]}' is not a .png, .jpg or .jpeg image${others.length > 1 ? ` (nor are ${others.length - 1} other file${others.length > 2 ? 's' : ''})` : ''}`,
      'image folders hold images only: move other files (labels, notes) out of the folder',
    );
  }
  if (found.length === 0) throw new LowbitError('BAD_DATA', `${dir}: no .png, .jpg or .jpeg images in this folder or its subfolders`, 'put the calibration images in the folder');
  return found.sort(byCodeUnits);
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Decodes one image file and applies the preprocessing up to (not including) normalization:
 * channels, resize, center crop. Returns a float HWC raster with 1 or 3 channels.
 * @throws LowbitError('BAD_DATA') naming the file when it cannot be read or decoded, or when it is
 *   too small for the crop after resizing.
 */
export function loadImage(path: string, pre: ResolvedImagePreprocess): RasterImage {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new LowbitError('BAD_DATA', `${path}: cannot read (${e instanceof Error ? e.message : String(e)})`, 'check that the file still exists and is readable', { cause: e });
  }
  const decoded = decodeImage(bytes, path);
  let img = pre.channels === 'gray' ? toGray(decoded.image, decoded.bitDepth <= 8) : toRgb(decoded.image);
  const r = pre.resize;
  const [h, w] =
    r.kind === 'exact' ? [r.height, r.width] : r.kind === 'shorter' ? shorterSideSize(img.height, img.width, r.size) : coverSize(img.height, img.width, pre.height, pre.width);
  img = resizeBilinear(img, h, w);
  if (img.height < pre.height || img.width < pre.width) {
    throw new LowbitError(
      'BAD_DATA',
      `${path}: ${decoded.image.height}x${decoded.image.width} resized to ${img.height}x${img.width} is smaller than the crop ${pre.height}x${pre.width}`,
      'resize to a larger size (--resize), or crop less (--crop)',
    );
  }
  return centerCrop(img, pre.height, pre.width);
}

/**
 * A folder of PNG/JPEG images as a DataSource: one unnamed array of `count` samples shaped
 * [C,H,W] (nchw) or [H,W,C] (nhwc), in `pre.dtype`. Images are decoded when their batch is read.
 * @throws as listImageFiles; batches throw LowbitError('BAD_DATA') naming a damaged file.
 */
export function openImageFolder(dir: string, pre: ResolvedImagePreprocess): DataSource {
  const files = listImageFiles(dir);
  const sample = imageSampleShape(pre);
  const per = shapeSize(sample);
  const arrays: ArrayInfo[] = [{ dtype: pre.dtype, shape: [files.length, ...sample] }];
  const read = (absStart: number, n: number): NdArray => {
    const data = pre.dtype === 'uint8' ? new Uint8Array(n * per) : new Float32Array(n * per);
    for (let i = 0; i < n; i++) writeSample(loadImage(join(dir, files[absStart + i]!), pre), pre, data, i * per);
    return { dtype: pre.dtype, shape: [n, ...sample], data };
  };
  const view = (offset: number, count: number): DataSource => ({
    path: dir,
    kind: 'images',
    count,
    arrays,
    batches: (batchSize, range) =>
      iterateBatches({ path: dir, offset, count, batchSize, range, dropPartial: false }, (s, n) => ({ [UNNAMED]: checkFinite(read(s, n), dir, 'the images', s) })),
    [RAW_BATCHES]: (batchSize, range) =>
      iterateBatches({ path: dir, offset, count, batchSize, range, dropPartial: false }, (s, n) => ({ start: s, batch: { [UNNAMED]: read(s, n) } })),
    slice: (start, end) => {
      checkSlice(start, end, count, dir);
      return view(offset + start, end - start);
    },
  });
  return view(0, files.length);
}

/**
 * Opens data for a model: a folder of images (preprocessed as `image` says, defaults from the
 * model input), or a .npy / .npz file; bound to the model inputs.
 * @throws LowbitError('BAD_OPTION') for image options with a file, or invalid image options;
 *   LowbitError('DATA_MISMATCH') for an image folder and a model with several inputs; and what
 *   openDataSource, openImageFolder, resolveImagePreprocess and bindToModelInputs throw.
 */
export function openModelData(path: string, inputs: readonly ModelInput[], image?: ImagePreprocess): BoundDataSource {
  if (!isDirectory(path)) {
    if (image !== undefined) {
      throw new LowbitError('BAD_OPTION', `image options apply to image folders, but ${path} is a file`, 'pass a folder of .png / .jpg images, or drop the image options for .npy / .npz data');
    }
    return bindToModelInputs(openDataSource(path), inputs);
  }
  if (inputs.length !== 1) {
    throw new LowbitError('DATA_MISMATCH', `${path} is an image folder, but the model has ${inputs.length} inputs (${inputs.map((i) => `'${i.name}'`).join(', ')})`, 'image folders feed models with one image input; use an .npz with one array per input');
  }
  return bindToModelInputs(openImageFolder(path, resolveImagePreprocess(image, inputs[0]!)), inputs);
}
