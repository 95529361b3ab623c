// Static int8 (QDQ, per-channel weights, speed policy on) with each calibration method, on the bundled digit
// models and the real PaddleOCR models: one table (issue #4). Digits: top-1 on the 2,000 held-out MNIST digits
// (never trained on), float vs int8, calibrated on 512 training digits. OCR: output SQNR and top-1 agreement of
// int8 vs float on realistic inputs (lines/pages of real MNIST digits laid out by code, src/data/realistic-ocr.ts)
// from a different seed than the calibration batch. Latency is measured once per model (float vs the min-max
// int8 model, pipeline compareLatency: alternating blocks, medians, 2 threads, batch 1 and 32): the method only
// changes scales and zero points, not the graph ORT runs.
// quantize() calibrates on the first 80% of each calibration batch (it holds out 20% for its own verification).
// Run: node --import tsx bench/methods.ts [--runs N] [--only digits-cnn,digits-mobilenet,cls,rec,det] [--markdown]

import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist, splitMnist, type MnistSet } from '../src/data/mnist.js';
import { writeNpy } from '../src/data/npy.js';
import { ocrClsBatch, ocrDetBatch, ocrRecBatch, realModelPath } from '../src/data/realistic.js';
import type { NdArray } from '../src/ndarray.js';
import { compareLatency } from '../src/pipeline/bench.js';
import { evaluate, type EvalData } from '../src/pipeline/evaluate.js';
import { CALIB_METHODS } from '../src/pipeline/options.js';
import { quantize } from '../src/pipeline/quantize.js';
import { formatBytes, formatDb, formatMs, formatRatio } from '../src/report/format.js';
import { renderTable, type Cell } from '../src/report/table.js';
import { dataSourceFromArrays } from '../src/data/source.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('runs') ?? 10);
const ONLY = new Set((arg('only') ?? 'digits-cnn,digits-mobilenet,cls,rec,det').split(','));
const MARKDOWN = process.argv.includes('--markdown');
const THREADS = 2;
const dir = mkdtempSync(join(tmpdir(), 'lowbit-methods-'));

/** Samples in memory, batched along the first axis. */
const arrays = (input: string, arr: NdArray): EvalData => dataSourceFromArrays({ [input]: arr }, input);

interface Case {
  key: string;
  name: string;
  model: string;
  input: string;
  calib: () => NdArray;
  /** Labels of the calibration samples (classifiers with ground truth). */
  calibLabels?: () => NdArray;
  /** Evaluation samples, never used for calibration, and their labels when there is ground truth. */
  evalSet: () => { inputs: NdArray; labels?: Int32Array };
  evalBatch: number;
  /** Symbolic dims fixed for timing. */
  shapes?: Record<string, number>;
}

const digits = (s: MnistSet, n = s.count): NdArray => ({ dtype: 'float32', shape: [n, 1, 28, 28], data: s.images.subarray(0, n * 784) });
const mnist = splitMnist(loadMnist(), 2000);
const CALIB_DIGITS = 512;
const digitCase = (key: string, name: string, model: string): Case => ({
  key,
  name,
  model,
  input: 'input',
  calib: () => digits(mnist.train, CALIB_DIGITS),
  calibLabels: () => ({ dtype: 'int32', shape: [CALIB_DIGITS], data: mnist.train.labels.slice(0, CALIB_DIGITS) }),
  evalSet: () => ({ inputs: digits(mnist.test), labels: Int32Array.from(mnist.test.labels) }),
  evalBatch: 250,
});

const CASES: Case[] = [
  digitCase('digits-cnn', 'digit CNN', 'models/digits-cnn.onnx'),
  digitCase('digits-mobilenet', 'digit MobileNet', 'models/digits-mobilenet.onnx'),
  {
    key: 'cls', name: 'PP-OCR cls', model: realModelPath('ocrCls'), input: 'x', calib: () => ocrClsBatch(64, 1).input,
    evalSet: () => ({ inputs: ocrClsBatch(128, 7).input }), evalBatch: 32, shapes: { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 192 },
  },
  {
    key: 'rec', name: 'PP-OCRv4 rec', model: realModelPath('ocrRec'), input: 'x', calib: () => ocrRecBatch(32, 1).input,
    evalSet: () => ({ inputs: ocrRecBatch(32, 7).input }), evalBatch: 8, shapes: { 'p2o.DynamicDimension.1': 320 },
  },
  {
    key: 'det', name: 'PP-OCRv4 det 320', model: realModelPath('ocrDet'), input: 'x', calib: () => ocrDetBatch(16, 1, 320).input,
    evalSet: () => ({ inputs: ocrDetBatch(8, 7, 320).input }), evalBatch: 4, shapes: { 'p2o.DynamicDimension.1': 320, 'p2o.DynamicDimension.2': 320 },
  },
];

const pct = (v: number | undefined): string => (v === undefined ? '-' : `${(100 * v).toFixed(2)}%`);
const rows: Cell[][] = [];
for (const c of CASES.filter((x) => ONLY.has(x.key))) {
  const calib = join(dir, `${c.key}.npy`);
  writeNpy(calib, c.calib());
  let labels: string | undefined;
  if (c.calibLabels) writeNpy((labels = join(dir, `${c.key}.labels.npy`)), c.calibLabels());
  const ev = c.evalSet();
  const data = arrays(c.input, ev.inputs);
  let latency: string[] | undefined;
  for (const method of CALIB_METHODS) {
    const out = join(dir, `${c.key}.${method}.onnx`);
    const r = await quantize({ input: c.model, output: out, mode: 'static', calib, method, threads: THREADS, ...(labels ? { labels } : {}) });
    const e = await evaluate({ model: out, reference: c.model, data, batch: c.evalBatch, threads: THREADS, ...(ev.labels ? { labels: ev.labels } : {}) });
    if (!latency) {
      latency = [];
      for (const batch of [1, 32]) {
        const cmp = await compareLatency(c.model, out, { batch, threads: THREADS, runs: batch === 1 ? RUNS * 3 : RUNS, warmup: 2, ...(c.shapes ? { shapes: c.shapes } : {}) });
        latency.push(formatMs(cmp.float.latencyMs.median), formatMs(cmp.quant.latencyMs.median), formatRatio(cmp.speedup));
      }
    } else latency = latency.map(() => '〃');
    rows.push([
      c.name,
      method,
      ev.labels ? `${pct(e.referenceAccuracy)} → ${pct(e.accuracy)}` : '-',
      e.sqnrDb !== undefined ? formatDb(e.sqnrDb) : '-',
      pct(e.agreement),
      `${formatBytes(statSync(c.model).size)} → ${formatBytes(r.sizeBytes.after)}`,
      ...latency,
    ]);
    console.error(`done: ${c.key} ${method} (${e.samples} eval samples)`);
  }
}

console.log(
  renderTable(
    ['model', 'method', 'top-1 fp32 → int8', 'SQNR', 'agreement', 'size fp32 → int8', 'b1 fp32', 'b1 int8', 'b1 speed-up', 'b32 fp32', 'b32 int8', 'b32 speed-up'],
    rows,
    { style: MARKDOWN ? 'markdown' : 'unicode' },
  ),
);
console.log(
  `static int8 QDQ (uint8 activations, per-channel int8 weights, speed policy on), ${THREADS} threads. Digits: calibration batch = the first ${CALIB_DIGITS} training digits, ` +
    `top-1 on the ${mnist.test.count} held-out digits. OCR: calibration batch of realistic inputs (seed 1; cls 64, rec 32, det 16), SQNR/agreement vs float on another batch (seed 7; cls 128, rec 32, det 8; det has no ` +
    `classifier output, so no agreement). quantize() calibrates on the first 80% of a batch. Latency: medians of alternating float/int8 blocks, ${RUNS * 3} runs at batch 1 and ${RUNS} at batch 32, ` +
    `measured once per model (float vs the minmax model; 〃 = same graph, the method only changes scales).`,
);
