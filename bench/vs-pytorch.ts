// lowbit's int8 model in ONNX Runtime vs PyTorch's own int8 version of the same model (issue #4: "at least as fast
// as PyTorch's own int8 version"). The digit models are rebuilt in PyTorch from the ONNX weights by
// bench/pytorch_int8.py (checked against ORT's float outputs), quantized there with FX graph mode (static,
// per-channel weights, onednn: Debian's python3-torch), and both sides are timed with 2 threads at batch 1 and 32.
// Both calibrate on the same 512 training digits and are scored on the same 2,000 held-out digits.
// Needs /usr/bin/python3 with Debian's python3-torch and python3-onnx; without them it says so and exits 0.
// Run: node --import tsx bench/vs-pytorch.ts [--runs N] [--markdown]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist, splitMnist } from '../src/data/mnist.js';
import { writeNpy } from '../src/data/npy.js';
import type { NdArray } from '../src/ndarray.js';
import { compareLatency } from '../src/pipeline/bench.js';
import { evaluate } from '../src/pipeline/evaluate.js';
import { quantize } from '../src/pipeline/quantize.js';
import { Session } from '../src/runtime/session.js';
import { formatMs, formatRatio } from '../src/report/format.js';
import { renderTable, type Cell } from '../src/report/table.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('runs') ?? 20);
const MARKDOWN = process.argv.includes('--markdown');
const THREADS = 2;
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3';
const CALIB = 512;

const probe = spawnSync(PYTHON, ['-c', 'import torch, onnx; print(torch.__version__)'], { encoding: 'utf8' });
if (probe.status !== 0) {
  console.log(`skipped: ${PYTHON} with torch and onnx is needed for this comparison (Debian: apt install python3-torch python3-onnx)`);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'lowbit-vs-pytorch-'));
const mnist = splitMnist(loadMnist(), 2000);
const digits = (images: Float32Array, n: number): NdArray => ({ dtype: 'float32', shape: [n, 1, 28, 28], data: images.subarray(0, n * 784) });
const calib = join(dir, 'calib.npy');
const calibLabels = join(dir, 'calib.labels.npy');
const evalPath = join(dir, 'eval.npy');
const labelsPath = join(dir, 'eval.labels.npy');
writeNpy(calib, digits(mnist.train.images, CALIB));
writeNpy(calibLabels, { dtype: 'int32', shape: [CALIB], data: mnist.train.labels.slice(0, CALIB) });
const evalX = digits(mnist.test.images, mnist.test.count);
writeNpy(evalPath, evalX);
writeNpy(labelsPath, { dtype: 'int32', shape: [mnist.test.count], data: Int32Array.from(mnist.test.labels) });
const evalData = {
  count: evalX.shape[0]!,
  *batches(b: number) {
    for (let i = 0; i < evalX.shape[0]!; i += b) {
      const n = Math.min(b, evalX.shape[0]! - i);
      yield { input: { ...evalX, shape: [n, 1, 28, 28], data: evalX.data.subarray(i * 784, (i + n) * 784) } as NdArray };
    }
  },
};

interface TorchResult {
  torch: string;
  engine: string;
  conversion_max_abs: number;
  accuracy: { fp32: number; int8: number };
  latency: Record<string, { fp32_ms: number; int8_ms: number; speedup: number }>;
}

const pct = (v: number): string => `${(100 * v).toFixed(2)}%`;
const rows: Cell[][] = [];
let torchVersion = '';
try {
  for (const [name, model] of [['digit CNN', 'models/digits-cnn.onnx'], ['digit MobileNet', 'models/digits-mobilenet.onnx']] as const) {
    const out = join(dir, `${name.replace(/\W/g, '')}.int8.onnx`);
    await quantize({ input: model, output: out, mode: 'static', calib, labels: calibLabels, threads: THREADS });
    const e = await evaluate({ model: out, reference: model, data: evalData, batch: 250, threads: THREADS, labels: Int32Array.from(mnist.test.labels) });
    // ORT's float logits: the reference the PyTorch rebuild is checked against.
    const s = await Session.create(model, { threads: THREADS });
    const ref = (await s.run({ input: evalX }))[s.outputNames[0]!]!;
    await s.release();
    const refPath = join(dir, 'ref.npy');
    writeNpy(refPath, ref);
    const py = spawnSync(PYTHON, ['bench/pytorch_int8.py', model, calib, evalPath, labelsPath, refPath, '--threads', String(THREADS), '--runs', String(RUNS)], { encoding: 'utf8' });
    if (py.status !== 0) throw new Error(`bench/pytorch_int8.py failed:\n${py.stderr}`);
    const t = JSON.parse(py.stdout.trim().split('\n').at(-1)!) as TorchResult;
    torchVersion = `${t.torch} (${t.engine})`;
    if (t.conversion_max_abs > 1e-3) throw new Error(`the PyTorch rebuild of ${model} differs from ORT's float outputs by ${t.conversion_max_abs}`);
    for (const batch of [1, 32]) {
      const ort = await compareLatency(model, out, { batch, threads: THREADS, runs: batch === 1 ? RUNS * 3 : RUNS, warmup: 2 });
      const pt = t.latency[String(batch)]!;
      rows.push([
        name,
        String(batch),
        batch === 1 ? `${pct(e.referenceAccuracy!)} → ${pct(e.accuracy!)}` : '〃',
        batch === 1 ? `${pct(t.accuracy.fp32)} → ${pct(t.accuracy.int8)}` : '〃',
        formatMs(ort.float.latencyMs.median),
        formatMs(ort.quant.latencyMs.median),
        formatRatio(ort.speedup),
        formatMs(pt.fp32_ms),
        formatMs(pt.int8_ms),
        formatRatio(pt.speedup),
        formatRatio(pt.int8_ms / ort.quant.latencyMs.median),
      ]);
    }
    console.error(`done: ${name}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(
  renderTable(
    ['model', 'batch', 'lowbit top-1 fp32 → int8', 'PyTorch top-1 fp32 → int8', 'ORT fp32', 'ORT int8 (lowbit)', 'speed-up', 'PyTorch fp32', 'PyTorch int8', 'speed-up', 'lowbit int8 vs PyTorch int8'],
    rows,
    { style: MARKDOWN ? 'markdown' : 'unicode' },
  ),
);
console.log(
  `${THREADS} threads. PyTorch ${torchVersion}: FX graph mode static quantization, default onednn qconfig (per-channel weights), calibrated on the same ` +
    `${CALIB} training digits; lowbit: static QDQ, min-max, per-channel, run by onnxruntime-node. Top-1 on ${mnist.test.count} held-out digits. ` +
    `Last column: PyTorch int8 time / lowbit int8 time (above 1: lowbit's int8 model is faster).`,
);
