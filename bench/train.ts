// Training throughput of the digit CNN (src/models/digits.ts): forward + backward in ONNX Runtime plus the
// TypeScript optimizer, batch 64, 2 threads, on MNIST digits. Compares train() (with and without per-epoch
// validation and shift augmentation) against the bare training-graph session (ORT alone, no optimizer or
// data work), interleaved, medians; prints where train()'s time goes and, with --profile, ORT's kernel
// time per op type.
// Run: node --import tsx bench/train.ts [--reps 5] [--samples 2048] [--profile] [--reference SAMPLES_PER_SEC]
// (--reference prints the ratio against a throughput measured elsewhere, e.g. another framework.)

import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist } from '../src/data/mnist.js';
import { buildDigitCnn } from '../src/models/digits.js';
import type { NdArray } from '../src/ndarray.js';
import { encodeModel } from '../src/onnx/encode.js';
import { train, type TrainResult } from '../src/pipeline/train.js';
import { formatMs, formatPct } from '../src/report/format.js';
import { renderTable } from '../src/report/table.js';
import { Session } from '../src/runtime/session.js';
import { randomShift } from '../src/train/augment.js';
import { buildTrainable } from '../src/train/trainable.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const REPS = arg('--reps', 5);
const SAMPLES = arg('--samples', 2048);
const REFERENCE = arg('--reference', 0);
const PROFILE = process.argv.includes('--profile');
const BATCH = 64;
const THREADS = 2;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const mnist = loadMnist({ limit: SAMPLES + 1000 });
const images = (start: number, count: number): NdArray => ({ dtype: 'float32', shape: [count, 1, 28, 28], data: mnist.images.subarray(start * 784, (start + count) * 784) });
const data = { inputs: images(0, SAMPLES), labels: mnist.labels.subarray(0, SAMPLES) };
const validation = { inputs: images(SAMPLES, 1000), labels: mnist.labels.subarray(SAMPLES, SAMPLES + 1000) };

/** One epoch of train(); returns the result. */
async function runTrain(full: boolean): Promise<TrainResult> {
  return train(buildDigitCnn({ seed: 1 }), data, {
    epochs: 1,
    batch: BATCH,
    threads: THREADS,
    optimizer: 'adamw',
    lr: 3e-3,
    ...(full ? { validation, augment: randomShift(2) } : {}),
  });
}

/** The training graph alone in one session, same feeds every step: ORT's forward + backward floor, samples/s. */
async function runBare(steps: number, profilePrefix?: string): Promise<number> {
  const t = buildTrainable(buildDigitCnn({ seed: 1 }), { loss: { kind: 'cross-entropy' } });
  const s = await Session.create(encodeModel(t.train.toProto()), { threads: THREADS, ...(profilePrefix ? { profilePrefix } : {}) });
  try {
    const target = new Float32Array(BATCH * 10);
    for (let i = 0; i < BATCH; i++) target[i * 10 + mnist.labels[i]!] = 1;
    const feeds: Record<string, NdArray> = { input: images(0, BATCH), [t.targets.target!]: { dtype: 'float32', shape: [BATCH, 10], data: target } };
    for (const p of [...t.params, ...t.state]) feeds[p.name] = { dtype: 'float32', shape: [...p.dims], data: p.data };
    const fetch = [t.loss, ...t.state.map((x) => x.update), ...t.gradients];
    for (let i = 0; i < 3; i++) await s.run(feeds, fetch);
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await s.run(feeds, fetch);
    return (steps * BATCH * 1000) / (performance.now() - t0);
  } finally {
    await s.release();
  }
}

const steps = Math.ceil(SAMPLES / BATCH);
console.log(`digit CNN training, batch ${BATCH}, ${THREADS} threads, ${SAMPLES} MNIST digits per epoch (${steps} steps), AdamW, ${REPS} interleaved reps, medians`);
await runTrain(false); // warm-up (module loading, first session)
const rates = { plain: [] as number[], full: [] as number[], bare: [] as number[] };
let last: TrainResult | undefined;
for (let r = 0; r < REPS; r++) {
  last = await runTrain(false);
  rates.plain.push(last.samplesPerSec);
  rates.full.push((await runTrain(true)).samplesPerSec);
  rates.bare.push(await runBare(steps));
}
const bare = median(rates.bare);
const rows: (string | number)[][] = [
  ['ORT session alone (forward + backward)', Math.round(bare), formatMs((BATCH * 1000) / bare), '1.00x'],
  ['train(): + optimizer, batches', Math.round(median(rates.plain)), formatMs((BATCH * 1000) / median(rates.plain)), `${(median(rates.plain) / bare).toFixed(2)}x`],
  ['train(): + validation session, shift augmentation', Math.round(median(rates.full)), formatMs((BATCH * 1000) / median(rates.full)), `${(median(rates.full) / bare).toFixed(2)}x`],
];
if (REFERENCE > 0) rows.push(['reference (--reference)', Math.round(REFERENCE), formatMs((BATCH * 1000) / REFERENCE), `${(REFERENCE / bare).toFixed(2)}x`]);
console.log(renderTable(['variant', 'samples/s', 'per step', 'vs ORT alone'], rows));
if (REFERENCE > 0) console.log(`train() / reference: ${(median(rates.plain) / REFERENCE).toFixed(2)}x`);

const t = last!.time;
const trainMs = t.forwardBackward + t.optimizer + t.data + t.teacher;
console.log(`\nwhere train()'s training time goes (last plain rep, ${last!.steps} steps):`);
console.log(
  renderTable(
    ['part', 'total', 'per step', 'share'],
    (
      [
        ['ORT forward + backward', t.forwardBackward],
        ['optimizer (AdamW, TypeScript)', t.optimizer],
        ['data: shuffle, gather, one-hot', t.data],
      ] as const
    ).map(([name, ms]) => [name, formatMs(ms), formatMs(ms / last!.steps), formatPct(ms / trainMs, { digits: 1 })]),
  ),
);

if (PROFILE) {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-train-prof-'));
  try {
    const profSteps = 40;
    await runBare(profSteps, join(dir, 'prof'));
    const file = readdirSync(dir).find((f) => f.endsWith('.json'))!;
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
    const byOp = new Map<string, number>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const op = e.args?.op_name ?? '?';
      const grad = e.name.includes('/grad') ? ' (backward)' : '';
      byOp.set(op + grad, (byOp.get(op + grad) ?? 0) + e.dur);
    }
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    const runs = profSteps + 3;
    console.log(`\nORT kernel time per step by op type (profiled, ${formatMs(total / 1000 / runs)} per step):`);
    console.log(
      renderTable(
        ['op', 'per step', 'share'],
        [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([op, us]) => [op, formatMs(us / 1000 / runs), formatPct(us / total, { digits: 1 })]),
      ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
