// Trains a bundled digit model on the first 8,000 digits of loadMnist() (default seed), random ±2 px shifts,
// label smoothing 0.1, AdamW with a cosine schedule, then writes it and prints its accuracy on the last 2,000
// digits (held out: never trained on; they are also evaluated after every epoch for the log, and no epoch is
// picked by them: the last one is saved).
//   --arch cnn        buildDigitCnn -> models/digits-cnn.onnx, 20 epochs (the demo model)
//   --arch mobilenet  buildDigitMobileNet -> models/digits-mobilenet.onnx, 12 epochs (about 13 s an epoch here)
// Run: node --import tsx scripts/train-digits.ts [--arch cnn|mobilenet] [--out FILE] [--epochs N] [--threads 2]

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadMnist, splitMnist, type MnistSet } from '../src/data/mnist.js';
import { saveModel } from '../src/io/model-file.js';
import { buildDigitCnn, buildDigitMobileNet, DIGIT_CNN_SUMMARY, DIGIT_MOBILENET_SUMMARY } from '../src/models/digits.js';
import type { NdArray } from '../src/ndarray.js';
import { encodeModel } from '../src/onnx/encode.js';
import { train } from '../src/pipeline/train.js';
import { Session } from '../src/runtime/session.js';
import { randomShift } from '../src/train/augment.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const ARCHS = {
  cnn: { name: 'digit CNN', build: buildDigitCnn, summary: DIGIT_CNN_SUMMARY, out: 'models/digits-cnn.onnx', epochs: 20 },
  mobilenet: { name: 'digit MobileNet', build: buildDigitMobileNet, summary: DIGIT_MOBILENET_SUMMARY, out: 'models/digits-mobilenet.onnx', epochs: 12 },
} as const;
const archName = arg('--arch', 'cnn');
if (!Object.hasOwn(ARCHS, archName)) throw new Error(`--arch must be one of ${Object.keys(ARCHS).join(', ')}, got '${archName}'`);
const ARCH = ARCHS[archName as keyof typeof ARCHS];
const OUT = arg('--out', ARCH.out);
const EPOCHS = Number(arg('--epochs', String(ARCH.epochs)));
const THREADS = Number(arg('--threads', '2'));

const images = (s: MnistSet): NdArray => ({ dtype: 'float32', shape: [s.count, 1, 28, 28], data: s.images });
const { train: trainSet, test } = splitMnist(loadMnist(), 2000);
console.log(`${ARCH.name}: ${ARCH.summary}`);
console.log(`training on ${trainSet.count} digits, ${test.count} held out; ${EPOCHS} epochs, batch 64, AdamW lr 3e-3 cosine, label smoothing 0.1, ±2 px shifts, ${THREADS} threads`);

const result = await train(
  ARCH.build({ seed: 1 }),
  { inputs: images(trainSet), labels: trainSet.labels },
  {
    epochs: EPOCHS,
    batch: 64,
    optimizer: 'adamw',
    lr: 3e-3,
    weightDecay: 0.01,
    schedule: 'cosine',
    labelSmoothing: 0.1,
    seed: 0,
    threads: THREADS,
    augment: randomShift(2),
    validation: { inputs: images(test), labels: test.labels },
    onEpoch: (e) =>
      console.log(`epoch ${String(e.epoch).padStart(2)}  loss ${e.loss.toFixed(4)}  train acc ${(100 * e.trainAccuracy!).toFixed(2)}%  held-out acc ${(100 * e.valAccuracy!).toFixed(2)}%  ${(e.ms / 1000).toFixed(1)} s`),
  },
);
mkdirSync(dirname(OUT), { recursive: true });
const saved = await saveModel(result.model.toProto(), OUT);
console.log(`wrote ${saved.path} (${saved.bytes} bytes); ${Math.round(result.samplesPerSec)} training samples/s`);

// Accuracy of the written model, run alone in ORT as any user would.
const session = await Session.create(encodeModel(result.model.toProto()), { threads: THREADS });
try {
  const logits = (await session.run({ input: images(test) }))['logits']!.data as Float32Array;
  let correct = 0;
  for (let n = 0; n < test.count; n++) {
    const row = logits.subarray(n * 10, n * 10 + 10);
    if (row.indexOf(Math.max(...row)) === test.labels[n]) correct++;
  }
  console.log(`held-out accuracy: ${((100 * correct) / test.count).toFixed(2)}% (${correct}/${test.count})`);
} finally {
  await session.release();
}
