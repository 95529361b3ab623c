// `lowbit demo` (the README's main command): the bundled digit CNN (models/digits-cnn.onnx, trained by
// lowbit itself: scripts/train-digits.ts) quantized with PTQ and QAT at int8 and at 4-bit weights, and
// the trade-off table: size, latency and accuracy on 2,000 held-out MNIST digits. Every number is
// measured in the run. When the model file is missing (e.g. a package without it), it is trained first.

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMnist, splitMnist } from '../data/mnist.js';
import { saveModel } from '../io/model-file.js';
import { buildDigitCnn } from '../models/digits.js';
import type { NdArray } from '../ndarray.js';
import { formatBytes, formatMs, formatPct, formatRatio } from '../report/format.js';
import { renderTable, type Cell } from '../report/table.js';
import { randomShift } from '../train/augment.js';
import type { ProgressEvent } from './options.js';
import { qat, type QatRow } from './qat.js';
import { train } from './train.js';

/** Held-out digits: the last 2,000 of loadMnist()'s fixed order (never trained on, by the model or by QAT). */
export const DEMO_TEST_DIGITS = 2000;

export interface DemoOptions {
  threads?: number;
  /** Folder for the models written (default: a new temp folder). */
  outDir?: string;
  /** QAT fine-tuning epochs per variant (default 3). */
  epochs?: number;
  /** The float model (default: the bundled models/digits-cnn.onnx; trained first when missing). */
  model?: string;
  onProgress?: (event: ProgressEvent) => void;
  /** Called with a line of what the demo is doing (the CLI prints it to stderr). */
  onStep?: (line: string) => void;
}

export interface DemoVariant extends QatRow {
  path?: string;
}

export interface DemoResult {
  model: string;
  outDir: string;
  /** Held-out digits every row is evaluated on. */
  samples: number;
  variants: DemoVariant[];
  table: string;
}

/** models/digits-cnn.onnx beside the package (src/ and dist/ are both one level below the root). */
export function bundledDigitModel(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'digits-cnn.onnx');
}

const images = (data: Float32Array, count: number): NdArray => ({ dtype: 'float32', shape: [count, 1, 28, 28], data });

/** Trains the digit CNN as scripts/train-digits.ts does (fewer epochs) when no model file exists. */
async function trainDigits(path: string, threads: number, step: (s: string) => void): Promise<void> {
  step(`${path} not found: training the digit CNN first (about a minute)`);
  const { train: set, test } = splitMnist(loadMnist(), DEMO_TEST_DIGITS);
  const r = await train(
    buildDigitCnn({ seed: 1 }),
    { inputs: images(set.images, set.count), labels: set.labels },
    { epochs: 8, batch: 64, optimizer: 'adamw', lr: 3e-3, weightDecay: 0.01, labelSmoothing: 0.1, threads, augment: randomShift(2), validation: { inputs: images(test.images, test.count), labels: test.labels } },
  );
  await saveModel(r.model.toProto(), path);
}

/** Runs the demo end to end; every number in the table is measured in this run. */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const threads = options.threads ?? 2;
  const outDir = options.outDir ?? mkdtempSync(join(tmpdir(), 'lowbit-demo-'));
  const step = options.onStep ?? (() => {});
  let model = options.model ?? bundledDigitModel();
  if (!existsSync(model)) {
    model = join(outDir, 'digits-cnn.onnx');
    await trainDigits(model, threads, step);
  }
  const mnist = loadMnist();
  const data = images(mnist.images, mnist.count);
  const valSplit = DEMO_TEST_DIGITS / mnist.count;
  const configs: { bits: 8 | 4; perChannel: boolean; tag: string }[] = [
    { bits: 8, perChannel: true, tag: 'int8' },
    { bits: 4, perChannel: true, tag: 'int4w' },
    { bits: 4, perChannel: false, tag: 'int4w-per-tensor' },
  ];
  const variants: DemoVariant[] = [];
  for (const c of configs) {
    step(`QAT ${c.tag}: calibrate, fine-tune ${options.epochs ?? 3} epochs on ${mnist.count - DEMO_TEST_DIGITS} digits, export, evaluate`);
    const output = join(outDir, `digits-cnn.qat-${c.tag}.onnx`);
    const r = await qat({
      input: model,
      output,
      data,
      labels: mnist.labels,
      valSplit,
      bits: c.bits,
      perChannel: c.perChannel,
      epochs: options.epochs ?? 3,
      lr: 3e-4,
      augment: randomShift(2),
      threads,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    const suffix = c.perChannel ? '' : ', per tensor';
    for (const row of r.rows) {
      if (row.name === 'float32') {
        if (variants.length === 0) variants.push({ ...row, path: model });
        continue;
      }
      variants.push({ ...row, name: `${row.name}${suffix}`, ...(row.name.startsWith('QAT') ? { path: output } : {}) });
    }
  }
  const floatAcc = variants[0]!.accuracy ?? NaN;
  const rows: Cell[][] = variants.map((v) => [
    v.name,
    formatBytes(v.sizeBytes),
    v.latencyMs ? formatMs(v.latencyMs.batch1) : '-',
    v.speedup ? formatRatio(v.speedup.batch1) : '1.00x',
    v.latencyMs ? formatMs(v.latencyMs.batch32) : '-',
    v.speedup ? formatRatio(v.speedup.batch32) : '1.00x',
    v.accuracy !== undefined ? formatPct(v.accuracy, { digits: 2 }) : '-',
    v.accuracy !== undefined && v.name !== 'float32' ? formatPct(v.accuracy - floatAcc, { digits: 2, signed: true }) : '-',
    v.agreement !== undefined ? formatPct(v.agreement, { digits: 1 }) : '-',
  ]);
  const table = [
    renderTable(['model', 'size', 'batch 1', 'speedup', 'batch 32', 'speedup', 'accuracy', 'vs float', 'agrees w/ float'], rows, {
      title: `digit CNN (models/digits-cnn.onnx, trained by lowbit), ${threads} threads, ${DEMO_TEST_DIGITS} held-out MNIST digits`,
    }),
    'PTQ: calibrated on 512 training digits, no training. QAT: the same starting point, fine-tuned with fake quantization (weights, biases and scales learned).',
    'int8: integer kernels (QLinearConv...). int4w: 4-bit weights, uint8 activations; ONNX Runtime has no 4-bit conv kernel, so those convs run as DequantizeLinear + float Conv: smaller, not faster.',
    `models written to ${outDir}`,
  ].join('\n');
  return { model, outDir, samples: DEMO_TEST_DIGITS, variants, table };
}
