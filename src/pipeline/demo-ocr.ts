// `lowbit demo ocr-cls`: quantize the bundled PaddleOCR text-direction classifier (a real depthwise CNN)
// dynamically and statically, then compare float vs int8 on labelled text-line images.
// The images are lines of real handwritten MNIST digits laid out by code (src/data/realistic-ocr.ts);
// the label is whether the line was turned 180° — exactly what this model predicts.

import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../data/npy.js';
import { ocrClsBatch, realModelPath } from '../data/realistic.js';
import { bindToModelInputs, openDataSource } from '../data/calib-data.js';
import { formatBytes, formatDb, formatMs, formatPct, formatRatio } from '../report/format.js';
import { renderTable, type Cell } from '../report/table.js';
import { compareLatency } from './bench.js';
import { evaluate } from './evaluate.js';
import { loadModel } from '../io/model-file.js';
import { Model } from '../onnx/ir.js';
import { modelInputs, quantize } from './quantize.js';

export interface DemoOptions {
  threads?: number;
  /** Folder for the models and data written (default: a new temp folder). */
  outDir?: string;
  /** Calibration / evaluation sample counts (defaults 128 / 128). */
  calibSamples?: number;
  evalSamples?: number;
}

export interface DemoVariant {
  name: string;
  path: string;
  sizeBytes: number;
  accuracy: number;
  agreement?: number;
  sqnrDb?: number;
  latencyMs: { batch1: number; batch32: number };
  speedup?: { batch1: number; batch32: number };
}

export interface DemoResult {
  model: string;
  outDir: string;
  samples: number;
  variants: DemoVariant[];
  table: string;
}

/** Runs the demo end to end; every number in the table is measured in this run. */
export async function runOcrDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const threads = options.threads ?? 2;
  const outDir = options.outDir ?? mkdtempSync(join(tmpdir(), 'lowbit-demo-'));
  const floatPath = realModelPath('ocrCls');
  const calib = ocrClsBatch(options.calibSamples ?? 128, 1);
  const held = ocrClsBatch(options.evalSamples ?? 128, 2);
  const calibPath = join(outDir, 'calib.npy');
  const evalPath = join(outDir, 'eval.npy');
  writeNpy(calibPath, calib.input);
  writeNpy(evalPath, held.input);
  const labels = Int32Array.from(held.rotated, (r) => (r ? 1 : 0));

  const dynamicPath = join(outDir, 'cls.int8-dynamic.onnx');
  const staticPath = join(outDir, 'cls.int8-static.onnx');
  await quantize({ input: floatPath, output: dynamicPath, mode: 'dynamic', calib: calibPath, threads });
  await quantize({ input: floatPath, output: staticPath, mode: 'static', calib: calibPath, threads });

  const variants: DemoVariant[] = [];
  const models: [string, string][] = [
    ['float32', floatPath],
    ['int8 dynamic', dynamicPath],
    ['int8 static (QDQ)', staticPath],
  ];
  const inputs = modelInputs(new Model((await loadModel(floatPath)).model));
  for (const [name, path] of models) {
    const data = bindToModelInputs(openDataSource(evalPath), inputs);
    const r = await evaluate({ model: path, reference: floatPath, data, labels, batch: 32, threads });
    const b1 = await compareLatency(floatPath, path, { batch: 1, threads, runs: 30, warmup: 5 });
    const b32 = await compareLatency(floatPath, path, { batch: 32, threads, runs: 10, warmup: 2 });
    const v: DemoVariant = {
      name,
      path,
      sizeBytes: statSync(path).size,
      accuracy: r.accuracy ?? NaN,
      latencyMs: { batch1: b1.quant.latencyMs.median, batch32: b32.quant.latencyMs.median },
    };
    if (path !== floatPath) {
      if (r.agreement !== undefined) v.agreement = r.agreement;
      if (r.sqnrDb !== undefined) v.sqnrDb = r.sqnrDb;
      v.speedup = { batch1: b1.speedup, batch32: b32.speedup };
    }
    variants.push(v);
  }
  const rows: Cell[][] = variants.map((v) => [
    v.name,
    formatBytes(v.sizeBytes),
    formatMs(v.latencyMs.batch1),
    v.speedup ? formatRatio(v.speedup.batch1) : '1.00x',
    formatMs(v.latencyMs.batch32),
    v.speedup ? formatRatio(v.speedup.batch32) : '1.00x',
    formatPct(v.accuracy, { digits: 1 }),
    v.agreement !== undefined ? formatPct(v.agreement, { digits: 1 }) : '-',
    v.sqnrDb !== undefined ? formatDb(v.sqnrDb) : '-',
  ]);
  const table = [
    renderTable(
      ['model', 'size', 'batch 1', 'speedup', 'batch 32', 'speedup', 'accuracy', 'agrees w/ float', 'SQNR'],
      rows,
      { title: `PaddleOCR text-direction classifier (ch_ppocr_mobile_v2.0_cls), ${threads} threads, ${held.rotated.length} held-out lines` },
    ),
    'accuracy: predicting whether a line of real handwritten digits (MNIST) was turned 180°; the line layout is synthetic.',
    `models and data written to ${outDir}`,
  ].join('\n');
  return { model: floatPath, outDir, samples: held.rotated.length, variants, table };
}
