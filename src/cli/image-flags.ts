// The image-folder flags shared by quantize (--calib DIR), eval and compare (--data DIR):
// --resize --crop --layout --channels --scale --mean --std, parsed into an ImagePreprocess. CLI only.

import { statSync } from 'node:fs';
import { InvalidArgumentError, Option } from 'commander';
import { LowbitError } from '../errors.js';
import { IMAGE_CHANNELS, IMAGE_LAYOUTS, type ImageChannels, type ImageLayout } from '../data/image-ops.js';
import { parseImageNumber, parseImageNumbers, parseImageSize, type ImagePreprocess, type ImageSize } from '../data/image-options.js';

/** What commander hands over for the image flags (already parsed). */
export interface ImageFlags {
  resize?: number | ImageSize;
  crop?: number | ImageSize;
  layout?: ImageLayout;
  channels?: ImageChannels;
  scale?: number;
  mean?: number[];
  std?: number[];
}

/** A LowbitError from a pure parser as commander's invalid-argument error (exit code 2, usage message). */
function parser<T>(parse: (text: string, flag: string) => T, flag: string): (text: string) => T {
  return (text) => {
    try {
      return parse(text, flag);
    } catch (e) {
      if (e instanceof LowbitError) throw new InvalidArgumentError(`${e.message}.`);
      throw e;
    }
  };
}

/** The image options, one fresh set per command (for a data path that is a folder of .png/.jpg images). */
export function imageOptions(): Option[] {
  return [
    new Option('--resize <N|HxW>', 'image folders: resize the shorter side to N (aspect kept), or to exactly HxW; bilinear, half-pixel centers (default: just enough to cover the crop)').argParser(parser(parseImageSize, '--resize')),
    new Option('--crop <N|HxW>', 'image folders: center crop, the size the model gets (default: the model input\'s height x width)').argParser(parser(parseImageSize, '--crop')),
    new Option('--layout <layout>', 'image folders: nchw or nhwc (default: from the model input shape)').choices(IMAGE_LAYOUTS),
    new Option('--channels <order>', 'image folders: rgb, bgr or gray (default: gray for 1 channel, rgb for 3)').choices(IMAGE_CHANNELS),
    new Option('--scale <S>', 'image folders: pixel (0..255) multiplier, e.g. 0.00392 or 1/255 for [0, 1]; required for float inputs').argParser(parser(parseImageNumber, '--scale')),
    new Option('--mean <M,...>', 'image folders: subtracted after --scale, one value or one per channel (e.g. 0.485,0.456,0.406)').argParser(parser(parseImageNumbers, '--mean')),
    new Option('--std <S,...>', 'image folders: divides after --mean, one value or one per channel (e.g. 0.229,0.224,0.225)').argParser(parser(parseImageNumbers, '--std')),
  ];
}

/** The ImagePreprocess of the given flags, or undefined when no image flag was given. */
export function toImagePreprocess(f: ImageFlags): ImagePreprocess | undefined {
  const p: ImagePreprocess = {};
  if (f.resize !== undefined) p.resize = f.resize;
  if (f.crop !== undefined) p.crop = f.crop;
  if (f.layout !== undefined) p.layout = f.layout;
  if (f.channels !== undefined) p.channels = f.channels;
  if (f.scale !== undefined) p.scale = f.scale;
  if (f.mean !== undefined) p.mean = f.mean;
  if (f.std !== undefined) p.std = f.std;
  return Object.keys(p).length ? p : undefined;
}

/**
 * Checks that a data path exists: a file (.npy / .npz) or a folder (images).
 * @returns the path as given
 * @throws LowbitError FILE_NOT_FOUND when it does not exist, or is neither a file nor a folder
 */
export function requireData(path: string, what: string): string {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new LowbitError('FILE_NOT_FOUND', `${what} not found: ${path}`, 'check the path (relative paths start from the current directory)');
  }
  if (!st.isFile() && !st.isDirectory()) throw new LowbitError('FILE_NOT_FOUND', `${what} is not a file or folder: ${path}`, 'pass an .npy / .npz file or a folder of images');
  return path;
}

/** Help text listing the image options' pipeline (appended to --help). */
export const IMAGE_HELP = `
Image folders (DATA is a folder of .png / .jpg / .jpeg files, subfolders included, sorted by path):
  each image is decoded -> gray (--channels gray) -> resized -> center-cropped -> (pixel * scale - mean) / std,
  then laid out as the model input (--layout). Defaults come from the model input shape; what it leaves
  open is an error naming the flag to give. Float inputs need --scale. Other files in the folder are errors.`;
