// fp32 vs static int8 (QDQ, uint8 activations / int8 per-channel weights) latency in ONNX Runtime, 2 intra-op
// threads, batch 1 and 32: the builder CNN (16 and 64 channels), a dense VGG-style 3x3 CNN (64-256 channels),
// a MatMul-heavy transformer encoder (4 layers, hidden 512, seq 64) and the PP-OCR text-direction classifier
// (depthwise, MobileNetV3-style with SE blocks). Calibration inputs are synthetic (seeded normal noise for the
// builder models; MNIST digits rendered as text lines for the classifier).
//
// How it times: all sessions stay loaded and run in interleaved BLOCKS (float: 2 untimed + K timed runs,
// then int8: the same, then the next round, model order rotated per round), and the medians over all timed
// runs are compared. Run-by-run interleaving (A, B, A, B) is not used: ORT's worker threads spin for a while
// after each run, so on a 2-core machine the other session's spinning threads steal the cores and inflate
// both models unevenly (measured on PP-OCR cls, batch 32: 48 / 50 ms interleaved run by run vs 17 / 22 ms
// run alone or in blocks). The per-round speedups show the noise of this shared machine.
//
// Run: node --import tsx bench/static.ts [--rounds N] [--policy] [--pad] [--only NAME]
//   --policy  adds int8 without the speed policy (rules/qdq/speed.ts) as a third interleaved model.
//   --pad     adds int8 without depthwise channel padding (passes/pad-channels.ts) as another interleaved model.

import { ocrClsBatch } from '../src/data/realistic-ocr.js';
import { realModelPath } from '../src/data/realistic-models.js';
import { loadModel } from '../src/io/model-file.js';
import type { NdArray } from '../src/ndarray.js';
import { encodeModel } from '../src/onnx/encode.js';
import { Model } from '../src/onnx/ir.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../src/passes/quantize-qdq.js';
import { calibrate } from '../src/pipeline/calibrate.js';
import { renderTable } from '../src/report/table.js';
import { opTypeCounts, optimizedModel } from '../src/runtime/optimized.js';
import { arraySource, buildDenseCnn, buildSmallCnn, buildTransformer, normalArray } from '../test/ort/quantize-static-fixtures.js';
import { median, timeBlocks } from './timing.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const THREADS = 2;
const BATCHES = [1, 32] as const;
const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const ROUNDS = Number(argValue('rounds') ?? 7);
const WITH_POLICY_OFF = process.argv.includes('--policy');
const WITH_PAD_OFF = process.argv.includes('--pad');
const ONLY = argValue('only');

interface Case {
  name: string;
  float: Model;
  calib: NdArray;
  sample: number[];
}

async function quantized(c: Case, speedPolicy: boolean, padChannels = true): Promise<{ bytes: Uint8Array; keptFloat: number }> {
  const opts = { ...OPTS, speedPolicy, padChannels };
  const plan = planQdq(c.float, opts);
  const ranges = await calibrate(plan.model, arraySource('x', c.calib), { tensors: plan.tensors, batch: 8 });
  const r = quantizeStatic(plan.model, ranges, opts);
  return { bytes: encodeModel(r.model.toProto()), keptFloat: r.report.nodes.filter((n) => /^kept float for speed/.test(n.reason ?? '')).length };
}



const cls = new Model((await loadModel(realModelPath('ocrCls'))).model);
const cases: Case[] = [
  { name: 'CNN 16ch 3x32x32', float: buildSmallCnn(1), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'CNN 64ch 3x32x32', float: buildSmallCnn(1, { channels: 64 }), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'dense CNN 64-256ch 3x32x32', float: buildDenseCnn(1), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'transformer 4x512, seq 64', float: buildTransformer(1), calib: normalArray([32, 64, 512], 11), sample: [64, 512] },
  { name: 'PP-OCR cls 3x48x192', float: cls, calib: ocrClsBatch(32, 1).input, sample: [3, 48, 192] },
].filter((c) => !ONLY || c.name.includes(ONLY));

const FLOAT_COMPUTE = ['Conv', 'MatMul', 'Gemm', 'com.microsoft:FusedConv', 'com.microsoft:FusedMatMul', 'com.microsoft:FusedGemm', 'com.microsoft.nchwc:Conv'];
const fmtRange = (v: number[]): string => `${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)}`;
const rows: (string | number)[][] = [];
const policyRows: (string | number)[][] = [];
const padRows: (string | number)[][] = [];
for (const c of cases) {
  const f = encodeModel(c.float.toProto());
  const q = await quantized(c, true);
  const models = [f, q.bytes];
  const off = WITH_POLICY_OFF ? await quantized(c, false) : undefined;
  if (off) models.push(off.bytes);
  const unpadded = WITH_PAD_OFF ? await quantized(c, true, false) : undefined;
  if (unpadded) models.push(unpadded.bytes);
  const ops = opTypeCounts(await optimizedModel(q.bytes, { threads: THREADS, level: 'all' }));
  const floatCompute = FLOAT_COMPUTE.reduce((n, op) => n + (ops.get(op) ?? 0), 0);
  const row: (string | number)[] = [c.name];
  const prow: (string | number)[] = [c.name];
  const padRow: (string | number)[] = [c.name];
  for (const batch of BATCHES) {
    const x = normalArray([batch, ...c.sample], 5);
    const t = await timeBlocks(models, x, batch === 1 ? 40 : 4, { rounds: ROUNDS, threads: THREADS });
    const speedups = t.rounds[0]!.map((fm, r) => fm / t.rounds[1]![r]!);
    row.push(t.median[0]!.toFixed(3), t.median[1]!.toFixed(3), `${(t.median[0]! / t.median[1]!).toFixed(2)}x`, fmtRange(speedups));
    if (off) prow.push(`${(t.median[0]! / t.median[2]!).toFixed(2)}x`, `${(t.median[0]! / t.median[1]!).toFixed(2)}x`);
    if (unpadded) {
      const u = t.median.length - 1;
      const padGain = t.rounds[u]!.map((um, r) => um / t.rounds[1]![r]!);
      padRow.push(t.median[u]!.toFixed(3), `${(t.median[0]! / t.median[u]!).toFixed(2)}x`, `${(t.median[0]! / t.median[1]!).toFixed(2)}x`, fmtRange(padGain));
    }
    process.stderr.write(`${c.name} batch ${batch} done\n`);
  }
  row.push(floatCompute, q.keptFloat);
  rows.push(row);
  if (off) policyRows.push([...prow, q.keptFloat]);
  if (unpadded) padRows.push([...padRow, q.keptFloat, unpadded.keptFloat]);
}
console.log(
  renderTable(
    ['model', 'b1 fp32 ms', 'b1 int8 ms', 'b1 speedup', 'b1 per round', 'b32 fp32 ms', 'b32 int8 ms', 'b32 speedup', 'b32 per round', 'float Conv/MatMul/Gemm left', 'kept float (speed)'],
    rows,
    { title: `static int8 (QDQ) vs fp32, ONNX Runtime CPU, ${THREADS} intra-op threads, medians of ${ROUNDS} interleaved blocks` },
  ),
);
if (policyRows.length) {
  console.log(
    renderTable(['model', 'b1 without policy', 'b1 with policy', 'b32 without policy', 'b32 with policy', 'nodes kept float'], policyRows, {
      title: 'speedup over fp32 with and without the speed policy (rules/qdq/speed.ts), same interleaved runs',
    }),
  );
}
if (padRows.length) {
  console.log(
    renderTable(
      ['model', 'b1 int8 unpadded ms', 'b1 unpadded', 'b1 padded', 'b1 unpadded/padded per round', 'b32 int8 unpadded ms', 'b32 unpadded', 'b32 padded', 'b32 unpadded/padded per round', 'kept float padded', 'kept float unpadded'],
      padRows,
      { title: 'speedup over fp32 with and without depthwise channel padding (passes/pad-channels.ts), same interleaved runs' },
    ),
  );
}
