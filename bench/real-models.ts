// fp32 vs int8 (dynamic and static QDQ) on the real models shipped in npm packages: file size and
// latency median at batch 1 and 32, 2 threads, runs interleaved float/int8 (pipeline compareLatency).
// Calibration data: lines/pages of real MNIST digits laid out by code (src/data/realistic-ocr.ts).
// Run: node --import tsx bench/real-models.ts [--runs N] [--only cls,rec,det]

import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../src/data/npy.js';
import { ocrClsBatch, ocrDetBatch, ocrRecBatch, realModelPath } from '../src/data/realistic.js';
import type { NdArray } from '../src/ndarray.js';
import { compareLatency } from '../src/pipeline/bench.js';
import { quantize } from '../src/pipeline/quantize.js';
import { formatBytes, formatDb, formatMs, formatRatio } from '../src/report/format.js';
import { renderTable, type Cell } from '../src/report/table.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('runs') ?? 10);
const ONLY = new Set((arg('only') ?? 'cls,rec,det').split(','));
const dir = mkdtempSync(join(tmpdir(), 'lowbit-bench-'));

interface Case {
  key: string;
  name: string;
  model: string;
  calib: () => NdArray;
  /** Input shape per sample for timing (symbolic dims fixed). */
  shapes: Record<string, number>;
}

const CASES: Case[] = [
  { key: 'cls', name: 'PP-OCR cls (depthwise CNN)', model: realModelPath('ocrCls'), calib: () => ocrClsBatch(64, 1).input, shapes: { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 192 } },
  { key: 'rec', name: 'PP-OCRv4 rec (CNN + attention)', model: realModelPath('ocrRec'), calib: () => ocrRecBatch(32, 1).input, shapes: { 'p2o.DynamicDimension.1': 320 } },
  { key: 'det', name: 'PP-OCRv4 det (320x320)', model: realModelPath('ocrDet'), calib: () => ocrDetBatch(16, 1, 320).input, shapes: { 'p2o.DynamicDimension.1': 320, 'p2o.DynamicDimension.2': 320 } },
];

const rows: Cell[][] = [];
for (const c of CASES.filter((x) => ONLY.has(x.key))) {
  const calib = join(dir, `${c.key}.npy`);
  writeNpy(calib, c.calib());
  for (const mode of ['dynamic', 'static'] as const) {
    const out = join(dir, `${c.key}.${mode}.onnx`);
    const r = await quantize({ input: c.model, output: out, mode, calib, threads: 2 });
    const lat: string[] = [];
    for (const batch of [1, 32]) {
      const cmp = await compareLatency(c.model, out, { batch, threads: 2, runs: batch === 1 ? RUNS * 3 : RUNS, warmup: 2, shapes: c.shapes });
      lat.push(formatMs(cmp.float.latencyMs.median), formatMs(cmp.quant.latencyMs.median), formatRatio(cmp.speedup));
    }
    rows.push([
      c.name,
      mode,
      formatBytes(statSync(c.model).size),
      formatBytes(r.sizeBytes.after),
      ...lat,
      r.fidelity.sqnrDb !== undefined ? formatDb(r.fidelity.sqnrDb) : '-',
    ]);
    console.error(`done: ${c.key} ${mode}`);
  }
}
console.log(
  renderTable(
    ['model', 'mode', 'fp32 size', 'int8 size', 'b1 fp32', 'b1 int8', 'b1 speedup', 'b32 fp32', 'b32 int8', 'b32 speedup', 'SQNR'],
    rows,
    { title: `fp32 vs int8, 2 threads, median of ${RUNS * 3} (batch 1) / ${RUNS} (batch 32) interleaved runs`, style: 'markdown' },
  ),
);
