// Image folders as data: pixel operations (bilinear resize with half-pixel centers, shorter-side and
// cover sizes, torchvision center crop, PIL gray, normalization and layouts) against hand-computed
// values; preprocessing options and their defaults from the model input; PNG/JPEG decoding of files
// written here (gray, RGB, RGBA, 16-bit, damaged); folder listing rules; streaming batches.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { DataType } from '../../src/onnx/proto.js';
import { UNNAMED, openModelData, type ModelInput } from '../../src/data/calib-data.js';
import { decodeImage } from '../../src/data/image-decode.js';
import { centerCrop, coverSize, resizeBilinear, shorterSideSize, toGray, toRgb, writeSample, type RasterImage, type TensorFormat } from '../../src/data/image-ops.js';
import { parseImageNumber, parseImageNumbers, parseImageSize, resolveImagePreprocess, type ImageModelInput } from '../../src/data/image-options.js';
import { listImageFiles, loadImage, openImageFolder } from '../../src/data/image-source.js';
import { throwsLowbit } from '../helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'lowbit-image-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const gray = (w: number, h: number, values: number[]): RasterImage => ({ width: w, height: h, channels: 1, data: Float32Array.from(values) });
const close = (got: ArrayLike<number>, want: number[], tol = 1e-5): void => {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= tol, `element ${i}: ${got[i]} vs ${want[i]}`);
};

/** An 8-bit PNG of `channels` 1 (gray), 3 (RGB) or 4 (RGBA), pixels given interleaved. */
function pngBytes(w: number, h: number, channels: 1 | 3 | 4, pixels: number[]): Buffer {
  const png = new PNG({ width: w, height: h });
  for (let i = 0; i < w * h; i++) {
    const px = pixels.slice(i * channels, (i + 1) * channels);
    const [r, g, b] = channels === 1 ? [px[0]!, px[0]!, px[0]!] : [px[0]!, px[1]!, px[2]!];
    png.data.set([r, g, b, channels === 4 ? px[3]! : 255], 4 * i);
  }
  return PNG.sync.write(png, { colorType: channels === 1 ? 0 : channels === 3 ? 2 : 6 });
}

// ---- pixel operations --------------------------------------------------------------------------

test('bilinear 4x4 -> 2x2 with half-pixel centers averages 2x2 blocks', () => {
  const img = gray(4, 4, Array.from({ length: 16 }, (_, i) => i));
  const out = resizeBilinear(img, 2, 2);
  assert.deepEqual([out.height, out.width, out.channels], [2, 2, 1]);
  // source coords (0.5, 2.5): the mean of each 2x2 block
  close(out.data, [2.5, 4.5, 10.5, 12.5]);
});

test('bilinear 4x4 -> 3x3 samples a linear ramp at (d + 0.5) * 4/3 - 0.5', () => {
  const img = gray(4, 4, Array.from({ length: 16 }, (_, i) => i)); // f(y, x) = 4y + x: exact under bilinear
  const s = [1 / 6, 1.5, 17 / 6];
  close(resizeBilinear(img, 3, 3).data, s.flatMap((y) => s.map((x) => 4 * y + x)), 1e-5);
});

test('bilinear 2x2 -> 4x4 clamps at the borders (align_corners=false, like torch and OpenCV)', () => {
  const img = gray(2, 2, [0, 4, 8, 12]);
  const w = [0, 0.25, 0.75, 1]; // weights of the second source pixel at dst 0..3 (src -0.25 clamps to 0)
  close(resizeBilinear(img, 4, 4).data, w.flatMap((wy) => w.map((wx) => 4 * wx + 8 * wy)));
  // non-square, RGB: channels stay apart
  const rgb: RasterImage = { width: 2, height: 1, channels: 3, data: Float32Array.from([0, 10, 100, 4, 20, 200]) };
  close(resizeBilinear(rgb, 1, 4).data, w.flatMap((wx) => [4 * wx, 10 + 10 * wx, 100 + 100 * wx]));
  assert.equal(resizeBilinear(img, 2, 2), img, 'same size: no copy');
  throwsLowbit(() => resizeBilinear(img, 0, 2), 'BAD_OPTION', 'resize size');
});

test('shorter-side and cover sizes follow torchvision Resize(int) (long side floored)', () => {
  assert.deepEqual(shorterSideSize(480, 640, 256), [256, 341]);
  assert.deepEqual(shorterSideSize(640, 480, 256), [341, 256]);
  assert.deepEqual(shorterSideSize(100, 100, 28), [28, 28]);
  assert.deepEqual(coverSize(480, 640, 224, 224), [224, 298]);
  assert.deepEqual(coverSize(100, 100, 20, 40), [40, 40]);
  assert.deepEqual(coverSize(28, 28, 28, 28), [28, 28]);
});

test('center crop offsets are round((H - h) / 2) with ties to even, as torchvision', () => {
  const img5 = gray(5, 5, Array.from({ length: 25 }, (_, i) => i));
  // (5 - 2) / 2 = 1.5 -> 2
  assert.deepEqual([...centerCrop(img5, 2, 2).data], [12, 13, 17, 18]);
  const img4 = gray(4, 4, Array.from({ length: 16 }, (_, i) => i));
  // (4 - 3) / 2 = 0.5 -> 0
  assert.deepEqual([...centerCrop(img4, 3, 3).data], [0, 1, 2, 4, 5, 6, 8, 9, 10]);
  // 4x4 -> 2x2: offset 1
  assert.deepEqual([...centerCrop(img4, 2, 2).data], [5, 6, 9, 10]);
  throwsLowbit(() => centerCrop(img4, 5, 4), 'BAD_OPTION', '5x4', '4x4');
});

test('gray: PIL luma for 8-bit pixels, exact for gray input; rgb repeats a gray channel', () => {
  const rgb: RasterImage = { width: 4, height: 1, channels: 3, data: Float32Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 77, 77, 77]) };
  assert.deepEqual([...toGray(rgb, true).data], [76, 150, 29, 77]); // PIL convert('L') values
  close(toGray(rgb, false).data, [76.245, 149.685, 29.07, 77], 1e-3);
  const g = gray(2, 1, [3, 200]);
  assert.equal(toGray(g, true), g);
  assert.deepEqual([...toRgb(g).data], [3, 3, 3, 200, 200, 200]);
});

test('writeSample: scale, per-channel mean/std, RGB/BGR order, NCHW and NHWC', () => {
  // 1x2 image, pixels (R,G,B) = (10,20,30), (40,50,60)
  const img: RasterImage = { width: 2, height: 1, channels: 3, data: Float32Array.from([10, 20, 30, 40, 50, 60]) };
  const fmt = (over: Partial<TensorFormat>): TensorFormat => ({ layout: 'nchw', channels: 'rgb', dtype: 'float32', scale: 1, mean: [0, 0, 0], std: [1, 1, 1], ...over });
  const dst = new Float32Array(8).fill(-1);
  writeSample(img, fmt({}), dst, 1);
  assert.deepEqual([...dst], [-1, 10, 40, 20, 50, 30, 60, -1]); // offset 1, then R plane, G plane, B plane
  const nhwc = new Float32Array(6);
  writeSample(img, fmt({ layout: 'nhwc', channels: 'bgr' }), nhwc, 0);
  assert.deepEqual([...nhwc], [30, 20, 10, 60, 50, 40]);
  const norm = new Float32Array(6);
  writeSample(img, fmt({ scale: 0.1, mean: [1, 2, 3], std: [1, 2, 4] }), norm, 0);
  // (p * 0.1 - mean[c]) / std[c] per plane
  close(norm, [0, 3, 0, 1.5, 0, 0.75]);
  const bgrNorm = new Float32Array(6);
  writeSample(img, fmt({ channels: 'bgr', scale: 0.1, mean: [3, 2, 1], std: [4, 2, 1] }), bgrNorm, 0);
  close(bgrNorm, [0, 0.75, 0, 1.5, 0, 3]); // mean/std are in the fed (BGR) order
  const u8 = new Uint8Array(2);
  writeSample(gray(2, 1, [12.4, 300]), fmt({ channels: 'gray', dtype: 'uint8', mean: [0], std: [1] }), u8, 0);
  assert.deepEqual([...u8], [12, 255]);
});

// ---- options ------------------------------------------------------------------------------------

const inp = (dims: ImageModelInput['dims'], elemType: number = DataType.FLOAT): ImageModelInput => ({ name: 'x', elemType, dims });

test('defaults come from the model input: layout, channels, size, dtype', () => {
  const r = resolveImagePreprocess({ scale: 1 / 255 }, inp(['N', 3, 224, 224]));
  assert.deepEqual(
    { layout: r.layout, channels: r.channels, h: r.height, w: r.width, resize: r.resize, dtype: r.dtype, mean: r.mean, std: r.std },
    { layout: 'nchw', channels: 'rgb', h: 224, w: 224, resize: { kind: 'cover' }, dtype: 'float32', mean: [0, 0, 0], std: [1, 1, 1] },
  );
  const nhwc = resolveImagePreprocess({ scale: 1, mean: [0.5], resize: 256 }, inp([1, 160, 120, 3]));
  assert.deepEqual([nhwc.layout, nhwc.height, nhwc.width, nhwc.resize, nhwc.mean], ['nhwc', 160, 120, { kind: 'shorter', size: 256 }, [0.5, 0.5, 0.5]]);
  const mnist = resolveImagePreprocess({ scale: 0.00392 }, inp(['N', 1, 28, 28]));
  assert.deepEqual([mnist.layout, mnist.channels, mnist.height], ['nchw', 'gray', 28]);
  const u8 = resolveImagePreprocess(undefined, inp(['N', 64, 64, 3], DataType.UINT8));
  assert.deepEqual([u8.dtype, u8.layout], ['uint8', 'nhwc']);
  const sym = resolveImagePreprocess({ scale: 1, crop: [32, 48], channels: 'bgr' }, inp(['N', 3, 'h', 'w']));
  assert.deepEqual([sym.height, sym.width, sym.channels], [32, 48, 'bgr']);
  const exact = resolveImagePreprocess({ scale: 1, resize: [40, 50] }, inp(['N', 3, 'h', 'w']));
  assert.deepEqual([exact.height, exact.width, exact.resize], [40, 50, { kind: 'exact', height: 40, width: 50 }]);
});

test('what the model leaves open, or contradicts, is an error naming the option', () => {
  throwsLowbit(() => resolveImagePreprocess({ scale: 1 }, inp(['N', 3, 'h', 'w'])), 'BAD_OPTION', 'no fixed height and width');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1 }, inp(['N', 3, 224, 3])), 'BAD_OPTION', 'cannot tell the layout');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, layout: 'nchw' }, inp(['N', 'c', 8, 8])), 'BAD_OPTION', 'how many channels');
  throwsLowbit(() => resolveImagePreprocess({}, inp(['N', 3, 224, 224])), 'BAD_OPTION', 'pixel scale');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, channels: 'gray' }, inp(['N', 3, 8, 8])), 'DATA_MISMATCH', '--channels gray', 'takes 3');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, crop: 32 }, inp(['N', 3, 28, 28])), 'DATA_MISMATCH', '32x32', '28x28');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, mean: [1, 2] }, inp(['N', 3, 8, 8])), 'BAD_OPTION', 'mean has 2 values for 3 channels');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, std: [0] }, inp(['N', 3, 8, 8])), 'BAD_OPTION', 'std');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1 }, inp(['N', 3, 8, 8], DataType.UINT8)), 'BAD_OPTION', 'uint8', 'scale');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1 }, inp(['N', 784])), 'UNSUPPORTED_MODEL', 'rank 2');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1 }, inp(['N', 3, 8, 8], DataType.FLOAT16)), 'UNSUPPORTED_MODEL', 'float32 or uint8');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, resize: 20 }, inp(['N', 3, 28, 28])), 'BAD_OPTION', 'smaller than the crop');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, sizes: 3 } as never, inp(['N', 3, 8, 8])), 'BAD_OPTION', 'unknown image option', 'sizes');
  throwsLowbit(() => resolveImagePreprocess({ scale: -1 }, inp(['N', 3, 8, 8])), 'BAD_OPTION', 'scale');
  throwsLowbit(() => resolveImagePreprocess({ scale: 1, layout: 'chw' as never }, inp(['N', 3, 8, 8])), 'BAD_OPTION', 'layout');
});

test('command-line spellings: N or HxW, numbers and fractions, comma lists', () => {
  assert.equal(parseImageSize('224', '--crop'), 224);
  assert.deepEqual(parseImageSize('256x320', '--resize'), [256, 320]);
  throwsLowbit(() => parseImageSize('0', '--crop'), 'BAD_OPTION', '--crop');
  throwsLowbit(() => parseImageSize('224x', '--crop'), 'BAD_OPTION', '--crop');
  assert.equal(parseImageNumber('1/255', '--scale'), 1 / 255);
  assert.equal(parseImageNumber('0.00392', '--scale'), 0.00392);
  throwsLowbit(() => parseImageNumber('abc', '--scale'), 'BAD_OPTION', '--scale', 'abc');
  assert.deepEqual(parseImageNumbers('0.485,0.456,0.406', '--mean'), [0.485, 0.456, 0.406]);
  throwsLowbit(() => parseImageNumbers('1,,2', '--std'), 'BAD_OPTION', '--std');
});

// ---- decoding ------------------------------------------------------------------------------------

test('PNG decoding: gray gives 1 channel, RGB and RGBA 3 (alpha dropped)', () => {
  const g = decodeImage(pngBytes(2, 2, 1, [0, 50, 100, 255]), 'g.png');
  assert.deepEqual([g.format, g.bitDepth, g.image.channels, [...g.image.data]], ['png', 8, 1, [0, 50, 100, 255]]);
  const rgb = decodeImage(pngBytes(2, 1, 3, [1, 2, 3, 4, 5, 6]), 'c.png');
  assert.deepEqual([rgb.image.channels, rgb.image.width, rgb.image.height, [...rgb.image.data]], [3, 2, 1, [1, 2, 3, 4, 5, 6]]);
  const rgba = decodeImage(pngBytes(1, 1, 4, [9, 8, 7, 0]), 'a.png');
  assert.deepEqual([...rgba.image.data], [9, 8, 7]);
});

test('16-bit PNG keeps its precision on the 0..255 scale', () => {
  const png = new PNG({ width: 2, height: 1, bitDepth: 16 });
  const px = new Uint16Array([0, 257, 65535, 65535, 1000, 30000, 65535, 65535]);
  const bytes = PNG.sync.write(Object.assign(png, { data: Buffer.from(px.buffer) }), { colorType: 6, inputColorType: 6, bitDepth: 16 });
  const d = decodeImage(bytes, 'deep.png');
  assert.equal(d.bitDepth, 16);
  close(d.image.data, [0, 1, 255, 1000 / 257, 30000 / 257, 255], 1e-4);
});

test('JPEG decoding: flat colors come back within JPEG error; format sniffed from bytes', () => {
  const w = 16;
  const h = 8;
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set(i % w < 8 ? [200, 30, 90, 255] : [20, 240, 60, 255], 4 * i);
  const bytes = jpeg.encode({ width: w, height: h, data: rgba }, 100).data;
  const d = decodeImage(bytes, 'x.png'); // wrong extension: the bytes decide
  assert.deepEqual([d.format, d.image.width, d.image.height, d.image.channels], ['jpeg', 16, 8, 3]);
  close(d.image.data.slice(0, 3), [200, 30, 90], 3);
  close(d.image.data.slice(3 * 15, 3 * 16), [20, 240, 60], 3);
});

test('damaged images and other files are errors naming the file', () => {
  const good = pngBytes(4, 4, 1, new Array(16).fill(7));
  throwsLowbit(() => decodeImage(good.subarray(0, 40), 'cut.png'), 'BAD_DATA', 'cut.png', 'damaged');
  const jpg = jpeg.encode({ width: 8, height: 8, data: new Uint8Array(256).fill(128) }, 90).data;
  throwsLowbit(() => decodeImage(jpg.subarray(0, 200), 'cut.jpg'), 'BAD_DATA', 'cut.jpg', 'JPEG');
  throwsLowbit(() => decodeImage(new TextEncoder().encode('hello'), 'notes.png'), 'BAD_DATA', 'notes.png', 'not a PNG or JPEG');
});

// ---- folders and streaming -------------------------------------------------------------------------

test('folder listing: sorted relative paths, subfolders, dotfiles skipped; other files and empty folders are errors', () => {
  const dir = join(tmp, 'listing');
  mkdirSync(join(dir, 'b'), { recursive: true });
  mkdirSync(join(dir, 'a'));
  const px = pngBytes(1, 1, 1, [0]);
  for (const f of ['b/1.png', 'a/2.JPG', 'a/10.jpeg', 'z.png', 'B.png']) writeFileSync(join(dir, f), px);
  writeFileSync(join(dir, '.DS_Store'), 'x');
  assert.deepEqual(listImageFiles(dir), ['B.png', 'a/10.jpeg', 'a/2.JPG', 'b/1.png', 'z.png']);
  writeFileSync(join(dir, 'a', 'labels.txt'), '1\n');
  throwsLowbit(() => listImageFiles(dir), 'BAD_DATA', "'a/labels.txt' is not a .png, .jpg or .jpeg image");
  const empty = join(tmp, 'empty');
  mkdirSync(join(empty, 'sub'), { recursive: true });
  throwsLowbit(() => listImageFiles(empty), 'BAD_DATA', 'no .png, .jpg or .jpeg images');
  throwsLowbit(() => listImageFiles(join(tmp, 'missing')), 'FILE_NOT_FOUND', 'missing');
});

test('streaming: 50 images in batches of 8 give 7 batches with each image in sorted order, decoded lazily', () => {
  const dir = join(tmp, 'fifty');
  mkdirSync(dir);
  // image k: 3x5 gray, pixel (y, x) = k + 10 y + x
  for (let k = 0; k < 50; k++) {
    writeFileSync(join(dir, `img-${String(k).padStart(2, '0')}.png`), pngBytes(5, 3, 1, Array.from({ length: 15 }, (_, i) => k + 10 * Math.floor(i / 5) + (i % 5))));
  }
  const input: ModelInput = { name: 'x', elemType: DataType.FLOAT, dims: ['N', 1, 3, 5] };
  const data = openModelData(dir, [input], { scale: 0.5 });
  assert.equal(data.count, 50);
  const batches = [...data.batches(8)];
  assert.deepEqual(batches.map((b) => b.x!.shape[0]), [8, 8, 8, 8, 8, 8, 2]);
  assert.deepEqual(batches[0]!.x!.shape, [8, 1, 3, 5]);
  const all = batches.flatMap((b) => [...(b.x!.data as Float32Array)]);
  const want = Array.from({ length: 50 }, (_, k) => Array.from({ length: 15 }, (_, i) => (k + 10 * Math.floor(i / 5) + (i % 5)) * 0.5)).flat();
  assert.deepEqual(all, want);
  // Lazy: a file damaged after opening only fails the batch that reads it, naming it.
  writeFileSync(join(dir, 'img-49.png'), 'broken');
  assert.equal([...data.batches(8, { start: 0, end: 48 })].length, 6);
  throwsLowbit(() => [...data.batches(8)], 'BAD_DATA', 'img-49.png');
  // Slices (hold-out splits) keep the order.
  const tail = data.slice(40, 48);
  assert.deepEqual([...(tail.batches(8)[Symbol.iterator]().next().value!.x!.data as Float32Array)].slice(0, 2), [20, 20.5]);
});

test('a folder feeds NHWC RGB models with resize and crop; files and multi-input models are refused', () => {
  const dir = join(tmp, 'rgb');
  mkdirSync(dir);
  // 4x6 RGB: R = x * 10, G = y * 10, B = 100
  const px: number[] = [];
  for (let y = 0; y < 4; y++) for (let x = 0; x < 6; x++) px.push(x * 10, y * 10, 100);
  writeFileSync(join(dir, 'one.png'), pngBytes(6, 4, 3, px));
  const input: ModelInput = { name: 'img', elemType: DataType.FLOAT, dims: [1, 2, 2, 3] };
  const pre = resolveImagePreprocess({ scale: 1, channels: 'bgr', resize: [2, 3] }, input);
  // exact resize 4x6 -> 2x3 (block means: R = 5, 25, 45; G = 5, 25), then crop 2x2 at left = round(0.5) = 0
  const img = loadImage(join(dir, 'one.png'), pre);
  close(img.data, [5, 5, 100, 25, 5, 100, 5, 25, 100, 25, 25, 100]);
  const [batch] = [...openModelData(dir, [input], { scale: 1, channels: 'bgr', resize: [2, 3] }).batches(4)];
  assert.deepEqual(batch!.img!.shape, [1, 2, 2, 3]);
  close(batch!.img!.data as Float32Array, [100, 5, 5, 100, 5, 25, 100, 25, 5, 100, 25, 25]);
  const ds = openImageFolder(dir, pre);
  assert.deepEqual([ds.kind, ds.count, ds.arrays], ['images', 1, [{ dtype: 'float32', shape: [1, 2, 2, 3] }]]);
  assert.deepEqual(Object.keys([...ds.batches(1)][0]!), [UNNAMED]);
  // an image too small for the crop after a shorter-side resize
  const small = resolveImagePreprocess({ scale: 1, resize: 2, crop: [2, 4] }, { ...input, dims: ['N', 'h', 'w', 3] });
  throwsLowbit(() => loadImage(join(dir, 'one.png'), { ...small, resize: { kind: 'exact', height: 2, width: 3 } }), 'BAD_DATA', 'one.png', 'smaller than the crop');
  const two: ModelInput[] = [input, { ...input, name: 'other' }];
  throwsLowbit(() => openModelData(dir, two, { scale: 1 }), 'DATA_MISMATCH', 'image folder', '2 inputs');
  writeFileSync(join(tmp, 'x.npy'), 'not npy');
  throwsLowbit(() => openModelData(join(tmp, 'x.npy'), [input], { scale: 1 }), 'BAD_OPTION', 'image options apply to image folders');
});

test('the pixel operations and options are pure: no node: imports, Buffer or process', () => {
  for (const file of ['image-ops.ts', 'image-options.ts']) {
    const src = readFileSync(new URL(`../../src/data/${file}`, import.meta.url), 'utf8');
    const code = src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
    assert.doesNotMatch(code, /from '(node:|fs|path|os)/, file);
    assert.doesNotMatch(code, /\b(Buffer|process)\b/, file);
    for (const m of code.matchAll(/from '(\.[^']+)'/g)) assert.ok(['../errors.js', '../onnx/proto.js', './image-ops.js'].includes(m[1]!), `${file} imports ${m[1]}`);
  }
});
