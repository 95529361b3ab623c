// QOperator vs QDQ latency in ONNX Runtime (CPU, 2 intra-op threads, batch 1 and 32): the same static int8
// model (uint8 activations, int8 per-channel weights, speed policy on as in quantize()) written as QDQ pairs
// and converted to QLinear* ops (src/passes/qdq-to-qoperator.ts), on the dense VGG-style CNN (64-256
// channels) and the PP-OCR text-direction classifier. ORT's QDQ transformer fuses the QDQ model into the
// same kernels the QOperator model names, so the two are expected to match; the format matters for runtimes
// without a QDQ fuser. Also prints the op types ORT runs for each (level 'all').
//
// How it times: both sessions stay loaded and run in interleaved blocks (2 untimed + K timed runs each, the
// order rotated per round), medians over all timed runs (see bench/static.ts for why blocks, not A/B/A/B).
//
// Run: node --import tsx bench/qoperator.ts [--rounds N]

import { ocrClsBatch } from '../src/data/realistic-ocr.js';
import { realModelPath } from '../src/data/realistic-models.js';
import { loadModel } from '../src/io/model-file.js';
import { encodeModel } from '../src/onnx/encode.js';
import { Model } from '../src/onnx/ir.js';
import { qdqToQOperator } from '../src/passes/qdq-to-qoperator.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../src/passes/quantize-qdq.js';
import { calibrate } from '../src/pipeline/calibrate.js';
import { renderTable } from '../src/report/table.js';
import { opTypeCounts, optimizedModel } from '../src/runtime/optimized.js';
import { arraySource, buildDenseCnn, normalArray } from '../test/ort/quantize-static-fixtures.js';
import { timeBlocks } from './timing.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: true };
const THREADS = 2;
const BATCHES = [1, 32] as const;
const i = process.argv.indexOf('--rounds');
const ROUNDS = Number(i >= 0 ? process.argv[i + 1] : 7);



const cases = [
  { name: 'dense CNN 64-256ch 3x32x32', float: buildDenseCnn(1), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'PP-OCR cls 3x48x192', float: new Model((await loadModel(realModelPath('ocrCls'))).model), calib: ocrClsBatch(32, 1).input, sample: [3, 48, 192] },
];

const rows: (string | number)[][] = [];
for (const c of cases) {
  const plan = planQdq(c.float, OPTS);
  const ranges = await calibrate(plan.model, arraySource('x', c.calib), { tensors: plan.tensors, batch: 8 });
  const q = quantizeStatic(plan.model, ranges, OPTS).model;
  const qop = qdqToQOperator(q);
  const models = [encodeModel(q.toProto()), encodeModel(qop.model.toProto())];
  const [a, b] = await Promise.all(models.map(async (m) => opTypeCounts(await optimizedModel(m, { threads: THREADS, level: 'all' }))));
  const same = JSON.stringify([...a!].sort()) === JSON.stringify([...b!].sort());
  const row: (string | number)[] = [c.name];
  for (const batch of BATCHES) {
    const x = normalArray([batch, ...c.sample], 5);
    const t = await timeBlocks(models, x, batch === 1 ? 40 : 4, { rounds: ROUNDS, threads: THREADS });
    const ratios = t.rounds[0]!.map((m, r) => m / t.rounds[1]![r]!);
    row.push(t.median[0]!.toFixed(3), t.median[1]!.toFixed(3), `${(t.median[0]! / t.median[1]!).toFixed(2)}x`, `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`);
    process.stderr.write(`${c.name} batch ${batch} done\n`);
  }
  row.push(same ? 'yes' : 'no', Object.values(qop.report.converted).reduce((s, n) => s + n, 0));
  rows.push(row);
}
console.log(
  renderTable(
    ['model', 'b1 QDQ ms', 'b1 QOp ms', 'b1 QDQ/QOp', 'b1 per round', 'b32 QDQ ms', 'b32 QOp ms', 'b32 QDQ/QOp', 'b32 per round', 'same ORT graph', 'units converted'],
    rows,
    { title: `QOperator vs QDQ (static int8), ONNX Runtime CPU, ${THREADS} intra-op threads, medians of ${ROUNDS} interleaved blocks` },
  ),
);
