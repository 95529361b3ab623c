// Preprocessing options of image-folder data (ImagePreprocess): validation, defaults inferred from
// the model input (layout, channels, size, dtype), and the parsers of their command-line spellings.
// Pure (no node: imports).

import { LowbitError } from '../errors.js';
import { DataType } from '../onnx/proto.js';
import { IMAGE_CHANNELS, IMAGE_LAYOUTS, type ImageChannels, type ImageLayout, type TensorFormat } from './image-ops.js';

/** Height and width, in pixels. */
export type ImageSize = readonly [number, number];

/**
 * How images become model inputs: decode -> (gray) -> resize -> center crop -> scale, mean/std ->
 * channel order, layout. Every field is optional; what is missing is inferred from the model input
 * (an [N,3,224,224] float input gives NCHW, RGB, resize to cover 224x224 then crop 224x224), and
 * what cannot be inferred is an error naming the option to give.
 */
export interface ImagePreprocess {
  /** A number: the shorter side becomes it (aspect kept); [h, w]: exactly that size. Default: the
   * smallest aspect-preserving size that covers the crop. */
  resize?: number | ImageSize;
  /** Center crop, the size the model receives (a number: square). Default: the model input's H x W. */
  crop?: number | ImageSize;
  /** Default: from the model input shape ([N,C,H,W] with C = 1 or 3 -> nchw; [N,H,W,C] -> nhwc). */
  layout?: ImageLayout;
  /** Default: gray for 1 channel, rgb for 3. */
  channels?: ImageChannels;
  /** Multiplies the 0..255 pixels; 1/255 maps them to [0, 1]. Required for float inputs. */
  scale?: number;
  /** Subtracted after scaling, one value for all channels or one per channel (model order). Default 0. */
  mean?: readonly number[];
  /** Divides after the mean, one value or one per channel. Default 1. */
  std?: readonly number[];
}

/** Everything a folder reader needs, no defaults left. */
export interface ResolvedImagePreprocess extends TensorFormat {
  resize: { kind: 'cover' } | { kind: 'shorter'; size: number } | { kind: 'exact'; height: number; width: number };
  /** Final height and width. */
  height: number;
  width: number;
}

/** The model input an image folder feeds (a subset of bind.ts ModelInput). */
export interface ImageModelInput {
  name: string;
  elemType: number;
  dims: readonly (number | string | undefined)[];
}

const KEYS: ReadonlySet<string> = new Set<keyof ImagePreprocess>(['resize', 'crop', 'layout', 'channels', 'scale', 'mean', 'std']);

function bad(message: string, hint?: string): LowbitError {
  return new LowbitError('BAD_OPTION', message, hint);
}

function size(name: string, v: unknown): ImageSize | undefined {
  if (v === undefined) return undefined;
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
  if (ok(v)) return [v, v];
  if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) return [v[0], v[1]];
  throw bad(`image ${name} must be a positive integer or [height, width] (got ${JSON.stringify(v)})`);
}

function numbers(name: string, v: unknown, positive: boolean): number[] | undefined {
  if (v === undefined) return undefined;
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))) return v.slice();
  throw bad(`image ${name} must be a non-empty list of ${positive ? 'positive' : 'finite'} numbers (got ${JSON.stringify(v)})`);
}

/**
 * Checks the option object alone (types, ranges, unknown keys), without a model.
 * @throws LowbitError('BAD_OPTION') naming the option.
 */
export function checkImagePreprocess(p: ImagePreprocess): void {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw bad('image options must be an object');
  const unknown = Object.keys(p).filter((k) => !KEYS.has(k));
  if (unknown.length) throw bad(`unknown image option${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`, `valid image options: ${[...KEYS].join(', ')}`);
  if (typeof p.resize !== 'number') size('resize', p.resize);
  else if (!(Number.isSafeInteger(p.resize) && p.resize > 0)) throw bad(`image resize must be a positive integer or [height, width] (got ${p.resize})`);
  size('crop', p.crop);
  if (p.layout !== undefined && !(IMAGE_LAYOUTS as readonly unknown[]).includes(p.layout)) throw bad(`image layout must be one of ${IMAGE_LAYOUTS.join(', ')} (got ${JSON.stringify(p.layout)})`);
  if (p.channels !== undefined && !(IMAGE_CHANNELS as readonly unknown[]).includes(p.channels)) throw bad(`image channels must be one of ${IMAGE_CHANNELS.join(', ')} (got ${JSON.stringify(p.channels)})`);
  if (p.scale !== undefined && !(typeof p.scale === 'number' && Number.isFinite(p.scale) && p.scale > 0)) throw bad(`image scale must be a positive number (got ${JSON.stringify(p.scale)})`);
  numbers('mean', p.mean, false);
  numbers('std', p.std, true);
}

const fixed = (d: number | string | undefined): d is number => typeof d === 'number' && d > 0;
const fmt = (dims: readonly (number | string | undefined)[]): string => `[${dims.map((d) => (d === undefined ? '?' : String(d))).join(', ')}]`;

/**
 * Fills in the options for one model input (see ImagePreprocess for the defaults).
 * @throws LowbitError('BAD_OPTION') for invalid options, or for what the model shape leaves open
 *   (the message names the option to give); LowbitError('DATA_MISMATCH') when the options
 *   contradict the model input (channels, size); LowbitError('UNSUPPORTED_MODEL') for an input
 *   images cannot feed (not rank 4, not float32 / uint8).
 */
export function resolveImagePreprocess(p: ImagePreprocess | undefined, input: ImageModelInput): ResolvedImagePreprocess {
  const o = p ?? {};
  checkImagePreprocess(o);
  const dims = input.dims;
  const what = `model input '${input.name}' ${fmt(dims)}`;
  if (dims.length !== 4) {
    throw new LowbitError('UNSUPPORTED_MODEL', `image folders feed inputs of rank 4 ([N,C,H,W] or [N,H,W,C]); ${what} has rank ${dims.length}`, 'save the samples as .npy instead, shaped like the model input');
  }
  let dtype: 'float32' | 'uint8';
  if (input.elemType === DataType.FLOAT) dtype = 'float32';
  else if (input.elemType === DataType.UINT8) dtype = 'uint8';
  else throw new LowbitError('UNSUPPORTED_MODEL', `image folders feed float32 or uint8 inputs; ${what} has element type ${input.elemType}`, 'save the samples as .npy instead, in the dtype the model takes');

  const isC = (d: number | string | undefined): boolean => d === 1 || d === 3;
  let layout = o.layout;
  if (layout === undefined) {
    if (isC(dims[1]) && !isC(dims[3])) layout = 'nchw';
    else if (isC(dims[3]) && !isC(dims[1])) layout = 'nhwc';
    else throw bad(`cannot tell the layout of ${what}`, "give the layout: --layout nchw (channels first) or --layout nhwc (image option layout: 'nchw' | 'nhwc')");
  }
  const [cDim, hDim, wDim] = layout === 'nchw' ? [dims[1], dims[2], dims[3]] : [dims[3], dims[1], dims[2]];
  let channels = o.channels;
  if (fixed(cDim) && cDim !== 1 && cDim !== 3) {
    throw new LowbitError('DATA_MISMATCH', `${what} has ${cDim} channels in ${layout} layout; images give 1 (gray) or 3 (RGB/BGR)`, layout === o.layout ? 'check --layout' : 'give --layout if the inferred layout is wrong, or use .npy data');
  }
  if (channels === undefined) {
    if (cDim === 1) channels = 'gray';
    else if (cDim === 3) channels = 'rgb';
    else throw bad(`cannot tell how many channels ${what} takes`, 'give --channels rgb, bgr or gray');
  } else if (fixed(cDim) && (channels === 'gray') !== (cDim === 1)) {
    throw new LowbitError('DATA_MISMATCH', `--channels ${channels} gives ${channels === 'gray' ? 1 : 3} channel${channels === 'gray' ? '' : 's'}, but ${what} takes ${cDim}`, cDim === 1 ? 'use --channels gray' : 'use --channels rgb or bgr');
  }
  const c = channels === 'gray' ? 1 : 3;

  const crop = size('crop', o.crop);
  const exact = typeof o.resize === 'number' ? undefined : size('resize', o.resize);
  let hw: ImageSize;
  if (crop) hw = crop;
  else if (fixed(hDim) && fixed(wDim)) hw = [hDim, wDim];
  else if (exact) hw = exact;
  else throw bad(`${what} has no fixed height and width`, 'give the size the model gets: --crop HxW (or --resize HxW)');
  if ((fixed(hDim) && hDim !== hw[0]) || (fixed(wDim) && wDim !== hw[1])) {
    throw new LowbitError('DATA_MISMATCH', `images would be ${hw[0]}x${hw[1]}, but ${what} takes ${fixed(hDim) ? hDim : '?'}x${fixed(wDim) ? wDim : '?'} (height x width)`, 'give --crop matching the model input (or leave it out)');
  }
  if (exact && (exact[0] < hw[0] || exact[1] < hw[1])) {
    throw bad(`resize ${exact[0]}x${exact[1]} is smaller than the crop ${hw[0]}x${hw[1]}`, 'resize to at least the crop size');
  }
  if (typeof o.resize === 'number' && o.resize < Math.min(hw[0], hw[1])) {
    throw bad(`resize ${o.resize} (shorter side) is smaller than the crop ${hw[0]}x${hw[1]}`, 'resize the shorter side to at least the crop size');
  }

  if (dtype === 'uint8') {
    const given = (['scale', 'mean', 'std'] as const).filter((k) => o[k] !== undefined);
    if (given.length) throw bad(`${what} takes uint8 pixels; ${given.join(', ')} apply to float inputs only`, `drop --${given.join(', --')}`);
  } else if (o.scale === undefined) {
    throw bad(
      `the pixel scale of ${what} is not known`,
      'give --scale: 0.00392 (1/255) maps pixels to [0, 1] (then --mean/--std, e.g. ImageNet 0.485,0.456,0.406 / 0.229,0.224,0.225), 1 keeps 0..255',
    );
  }
  const perChannel = (name: 'mean' | 'std', dflt: number): number[] => {
    const v = o[name];
    if (v === undefined) return new Array<number>(c).fill(dflt);
    if (v.length === 1) return new Array<number>(c).fill(v[0]!);
    if (v.length !== c) throw bad(`image ${name} has ${v.length} values for ${c} channel${c > 1 ? 's' : ''} (${channels})`, `give one value, or one per channel in ${channels} order`);
    return v.slice();
  };
  const resize: ResolvedImagePreprocess['resize'] =
    typeof o.resize === 'number' ? { kind: 'shorter', size: o.resize } : exact ? { kind: 'exact', height: exact[0], width: exact[1] } : { kind: 'cover' };
  return { resize, height: hw[0], width: hw[1], layout, channels, dtype, scale: o.scale ?? 1, mean: perChannel('mean', 0), std: perChannel('std', 1) };
}

/** The [sample] shape of a resolved preprocess ([C,H,W] or [H,W,C]). */
export function imageSampleShape(r: ResolvedImagePreprocess): number[] {
  const c = r.channels === 'gray' ? 1 : 3;
  return r.layout === 'nchw' ? [c, r.height, r.width] : [r.height, r.width, c];
}

// ---- command-line spellings ------------------------------------------------------------------

/**
 * '224' -> 224, '256x320' (height x width) -> [256, 320].
 * @throws LowbitError('BAD_OPTION')
 */
export function parseImageSize(text: string, flag: string): number | ImageSize {
  const m = /^\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?$/.exec(text);
  const h = m ? Number(m[1]) : NaN;
  const w = m?.[2] !== undefined ? Number(m[2]) : undefined;
  if (!m || !(h > 0) || (w !== undefined && !(w > 0))) throw bad(`${flag} expects N or HxW (positive integers), got '${text}'`);
  return w === undefined ? h : [h, w];
}

/**
 * A number or a fraction: '0.00392', '1/255', '1e-2'.
 * @throws LowbitError('BAD_OPTION')
 */
export function parseImageNumber(text: string, flag: string): number {
  const parts = text.split('/');
  const nums = parts.map((s) => (s.trim() === '' ? NaN : Number(s)));
  const v = nums.length === 1 ? nums[0]! : nums.length === 2 ? nums[0]! / nums[1]! : NaN;
  if (!Number.isFinite(v)) throw bad(`${flag} expects a number such as 0.00392 or 1/255, got '${text}'`);
  return v;
}

/**
 * '0.485,0.456,0.406' -> numbers (each may be a fraction).
 * @throws LowbitError('BAD_OPTION')
 */
export function parseImageNumbers(text: string, flag: string): number[] {
  return text.split(',').map((s) => parseImageNumber(s, flag));
}
