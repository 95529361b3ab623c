// Static int8 in the browser's runtime: float32 vs int8 QDQ in onnxruntime-web's WebAssembly backend (run from
// Node, one thread, as browsers without cross-origin isolation run it), with the speed rules for the native CPU
// backend (what `lowbit quantize` writes by default) and for wasm (`--backend wasm`: every depthwise Conv float).
// Each model's sessions run in blocks, rotated every round; the first round only warms the wasm code up and is
// not counted. Prints p10 / median per run and speedups over float32 (above 1 = int8 faster).
//
// Run: node --import tsx bench/web.ts [--rounds N] [--only NAME] [--batch B]

import { loadMnist, splitMnist } from '../src/data/mnist.js';
import { ocrClsBatch } from '../src/data/realistic-ocr.js';
import { realModelPath } from '../src/data/realistic-models.js';
import { loadModel } from '../src/io/model-file.js';
import type { NdArray } from '../src/ndarray.js';
import { encodeModel } from '../src/onnx/encode.js';
import { Model } from '../src/onnx/ir.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../src/passes/quantize-qdq.js';
import { calibrate } from '../src/pipeline/calibrate.js';
import { renderTable } from '../src/report/table.js';
import { WebSession } from '../src/runtime/web.js';
import { arraySource, buildDenseCnn, buildTransformer, normalArray } from '../test/ort/quantize-static-fixtures.js';

const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const ROUNDS = Number(argValue('rounds') ?? 4);
const ONLY = argValue('only');
const BATCHES = argValue('batch') ? [Number(argValue('batch'))] : [1, 8];

interface Case {
  name: string;
  float: Model;
  input: string;
  calib: NdArray;
  sample: number[];
}

const digits = splitMnist(loadMnist(), 2000);
const digitCalib: NdArray = { dtype: 'float32', shape: [256, 1, 28, 28], data: digits.train.images.subarray(0, 256 * 784) };
const load = async (path: string): Promise<Model> => new Model((await loadModel(path)).model);
const cases: Case[] = [
  { name: 'digit CNN (lowbit train)', float: await load('models/digits-cnn.onnx'), input: 'input', calib: digitCalib, sample: [1, 28, 28] },
  { name: 'digit MobileNet (depthwise)', float: await load('models/digits-mobilenet.onnx'), input: 'input', calib: digitCalib, sample: [1, 28, 28] },
  { name: 'dense CNN 64-256ch 3x32x32', float: buildDenseCnn(1), input: 'x', calib: normalArray([32, 3, 32, 32], 11), sample: [3, 32, 32] },
  { name: 'transformer 2x256, seq 64', float: buildTransformer(1, { hidden: 256, layers: 2 }), input: 'x', calib: normalArray([16, 64, 256], 11), sample: [64, 256] },
  { name: 'PP-OCR cls 3x48x192', float: await load(realModelPath('ocrCls')), input: 'x', calib: ocrClsBatch(64, 1).input, sample: [3, 48, 192] },
].filter((c) => !ONLY || c.name.includes(ONLY));

async function int8(c: Case, target: 'cpu' | 'wasm'): Promise<Uint8Array> {
  const opts: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: true, speedTarget: target };
  const plan = planQdq(c.float, opts);
  const ranges = await calibrate(plan.model, arraySource(c.input, c.calib), { tensors: plan.tensors, batch: 16 });
  return encodeModel(quantizeStatic(plan.model, ranges, opts).model.toProto());
}

const quantile = (v: number[], p: number): number => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(p * (s.length - 1))]!;
};

/** Per model: all timed runs of rounds 2..ROUNDS, each round a block per model (order rotated). */
async function timeWeb(models: Uint8Array[], feeds: Record<string, NdArray>, runs: number): Promise<number[][]> {
  const times: number[][] = models.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let j = 0; j < models.length; j++) {
      const k = (j + r) % models.length;
      const s = await WebSession.create(models[k]!);
      try {
        for (let w = 0; w < 3; w++) await s.run(feeds);
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          await s.run(feeds);
          if (r > 0) times[k]!.push(performance.now() - t0);
        }
      } finally {
        await s.release();
      }
    }
  }
  return times;
}

const fmt = (ms: number): string => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
const rows: string[][] = [];
for (const c of cases) {
  const models = [encodeModel(c.float.toProto()), await int8(c, 'cpu'), await int8(c, 'wasm')];
  for (const batch of BATCHES) {
    const x = normalArray([batch, ...c.sample], 5);
    const t = await timeWeb(models, { [c.input]: x }, batch === 1 ? 40 : 10);
    const p10 = t.map((v) => quantile(v, 0.1));
    const med = t.map((v) => quantile(v, 0.5));
    rows.push([c.name, String(batch), fmt(med[0]!), fmt(med[1]!), fmt(med[2]!), `${(med[0]! / med[1]!).toFixed(2)}x`, `${(med[0]! / med[2]!).toFixed(2)}x`, `${(p10[0]! / p10[1]!).toFixed(2)}x / ${(p10[0]! / p10[2]!).toFixed(2)}x`]);
    console.error(`${c.name} batch ${batch} done`);
  }
}
console.log(`float32 vs static int8 (QDQ) in onnxruntime-web's wasm backend, 1 thread, medians of ${ROUNDS - 1} rounds after a warm-up round`);
console.log(
  renderTable(['model', 'batch', 'fp32', 'int8 cpu rules', 'int8 wasm rules', 'speedup cpu rules', 'speedup wasm rules', 'p10 speedups'], rows),
);
