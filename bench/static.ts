// fp32 vs static int8 (QDQ, uint8 activations / int8 per-channel weights) latency in ONNX Runtime:
// the builder CNN (test size: 16 channels; bench size: 64 channels), a dense VGG-style 3x3 CNN (64-256
// channels), a MatMul-heavy transformer encoder (4 layers, hidden 512, seq 64) and the PP-OCR direction
// classifier (depthwise, MobileNetV3-style), at batch 1 and 32, 2 threads. Float and int8 runs are interleaved (pipeline/bench.ts compareLatency) so
// machine noise hits both alike; medians are reported, plus process CPU time per run at 1 thread, which
// other processes on a shared machine disturb less. Calibration inputs are synthetic (seeded normal noise
// for the builder models; MNIST digits rendered as text lines for the classifier).
// Run: node --import tsx bench/static.ts [--runs N]

import { ocrClsBatch } from '../src/data/realistic-ocr.js';
import { realModelPath } from '../src/data/realistic-models.js';
import { loadModel } from '../src/io/model-file.js';
import type { NdArray } from '../src/ndarray.js';
import { encodeModel } from '../src/onnx/encode.js';
import { Model } from '../src/onnx/ir.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../src/passes/quantize-qdq.js';
import { compareLatency } from '../src/pipeline/bench.js';
import { calibrate } from '../src/pipeline/calibrate.js';
import { renderTable } from '../src/report/table.js';
import { opTypeCounts, optimizedModel } from '../src/runtime/optimized.js';
import { Session } from '../src/runtime/session.js';
import { arraySource, buildDenseCnn, buildSmallCnn, buildTransformer, normalArray } from '../test/ort/quantize-static-fixtures.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const RUNS = arg('runs', 0);

interface Case {
  name: string;
  float: Model;
  calib: NdArray;
  sample: number[];
}

async function quantized(c: Case): Promise<Uint8Array> {
  const plan = planQdq(c.float, OPTS);
  const ranges = await calibrate(plan.model, arraySource('x', c.calib), { tensors: plan.tensors, batch: 8 });
  return encodeModel(quantizeStatic(plan.model, ranges, OPTS).model.toProto());
}

/** Median process CPU time (ms) of one run at 1 thread, float and quant interleaved. */
async function cpuTimes(a: Uint8Array, b: Uint8Array, x: NdArray, runs: number): Promise<[number, number]> {
  const sessions = [await Session.create(a, { threads: 1 }), await Session.create(b, { threads: 1 })];
  const times: number[][] = [[], []];
  try {
    for (let r = 0; r < runs + 3; r++) {
      for (let i = 0; i < 2; i++) {
        const c0 = process.cpuUsage();
        await sessions[i]!.run({ x });
        const c1 = process.cpuUsage(c0);
        if (r >= 3) times[i]!.push((c1.user + c1.system) / 1000);
      }
    }
  } finally {
    for (const s of sessions) await s.release();
  }
  const med = (v: number[]) => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)]!;
  return [med(times[0]!), med(times[1]!)];
}

const cls = new Model((await loadModel(realModelPath('ocrCls'))).model);
const cases: Case[] = [
  { name: 'CNN 16ch 3x32x32', float: buildSmallCnn(1), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'CNN 64ch 3x32x32', float: buildSmallCnn(1, { channels: 64 }), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'dense CNN 64-256ch 3x32x32', float: buildDenseCnn(1), calib: normalArray([64, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'transformer 4x512, seq 64', float: buildTransformer(1), calib: normalArray([32, 64, 512], 11), sample: [64, 512] },
  { name: 'PP-OCR cls 3x48x192', float: cls, calib: ocrClsBatch(32, 1).input, sample: [3, 48, 192] },
];

const rows: (string | number)[][] = [];
for (const c of cases) {
  const f = encodeModel(c.float.toProto());
  const q = await quantized(c);
  const ops = opTypeCounts(await optimizedModel(q, { threads: 2 }));
  const floatCompute = ['Conv', 'MatMul', 'Gemm', 'com.microsoft:FusedConv', 'com.microsoft:FusedMatMul'].reduce((n, op) => n + (ops.get(op) ?? 0), 0);
  for (const batch of [1, 32]) {
    const runs = RUNS || (batch === 1 ? 200 : 30);
    const r = await compareLatency(f, q, { threads: 2, runs, warmup: 5, shapes: { x: [batch, ...c.sample] } });
    const [cf, cq] = await cpuTimes(f, q, normalArray([batch, ...c.sample], 5), Math.max(10, Math.round(runs / 2)));
    rows.push([
      c.name,
      batch,
      r.float.latencyMs.median.toFixed(3),
      r.quant.latencyMs.median.toFixed(3),
      `${r.speedup.toFixed(2)}x`,
      `${(cf / cq).toFixed(2)}x`,
      floatCompute,
    ]);
    process.stderr.write(`${c.name} batch ${batch} done\n`);
  }
}
console.log(
  renderTable(['model', 'batch', 'fp32 median ms', 'int8 median ms', 'speedup (2 thr)', 'speedup (CPU time, 1 thr)', 'float Conv/MatMul/Gemm left'], rows, {
    title: 'static int8 (QDQ) vs fp32, ONNX Runtime CPU, 2 intra-op threads unless noted',
  }),
);
