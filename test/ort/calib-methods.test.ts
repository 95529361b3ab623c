// Calibration methods end to end in ONNX Runtime, on a builder-made MatMul -> Relu -> MatMul model whose
// calibration data holds one spike: the spike inflates every min-max range (input, hidden, output), so
// percentile, entropy and MSE (at their defaults) each give a higher output SQNR against the float model
// on clean held-out inputs than min-max; so does the moving average. Then the same through quantize()
// and the `lowbit quantize` flags (per-method options, and the errors for misplaced ones).

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { LowbitError } from '../../src/errors.js';
import { saveModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate, type CalibrateOptions } from '../../src/pipeline/calibrate.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { arraySource, normalArray } from './quantize-static-fixtures.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };

/** x [N, tokens, 64] -> MatMul 64x64 -> Relu -> MatMul 64x64 -> y; weights N(0, 1/64). */
function buildMlp(tokens: number): Model {
  const rng = mulberry32(5);
  const b = new ModelBuilder({ opset: 13 });
  const w = (name: string): string => b.initializer(name, Float32Array.from({ length: 64 * 64 }, () => rng.normal() / 8), [64, 64]);
  const x = b.input('x', DataType.FLOAT, ['N', tokens, 64]);
  const h = b.op('Relu', [b.op('MatMul', [x, w('W1')], {}, { name: 'mm1' })], {}, { name: 'relu1' });
  b.output(b.op('MatMul', [h, w('W2')], {}, { name: 'mm2' }), DataType.FLOAT, ['N', tokens, 64]);
  return b.build();
}

/** N(0, 1) samples [count, tokens, 64] with one element of sample `spikeAt` set to `spike`. */
function spiky(count: number, tokens: number, seed: number, spikeAt: number, spike: number): NdArray {
  const a = normalArray([count, tokens, 64], seed);
  (a.data as Float32Array)[spikeAt * tokens * 64 + 500 * 64 + 3] = spike;
  return a;
}

async function runModel(model: Model, x: NdArray): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2 });
  try {
    return Object.values(await s.run({ x }))[0]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('calibration methods on activations with a rare spike', () => {
  const model = buildMlp(1024);
  // 128 calibration samples, 8.4M values per tensor; one spike of 40 (the values are ~N(0, 1))
  const calib = spiky(128, 1024, 21, 37, 40);
  const heldOut = normalArray([16, 1024, 64], 22);
  const plan = planQdq(model, OPTS);
  const sqnr = new Map<string, number>();

  const cases: Array<[string, Omit<CalibrateOptions, 'tensors'>]> = [
    ['minmax', {}],
    ['minmax --moving-average', { movingAverage: true, batch: 1 }],
    ['percentile', { method: 'percentile' }],
    ['entropy', { method: 'entropy' }],
    ['mse', { method: 'mse' }],
  ];
  for (const [label, opts] of cases) {
    it(`${label}: calibrate, quantize, run in ORT`, async (t) => {
      const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 16, ...opts });
      assert.deepEqual([...ranges.keys()].sort(), [...plan.tensors].sort());
      const q = quantizeStatic(plan.model, ranges, OPTS).model;
      const db = sqnrDb(await runModel(model, heldOut), await runModel(q, heldOut));
      sqnr.set(label, db);
      t.diagnostic(`${label}: output SQNR ${db.toFixed(2)} dB; ranges ${[...ranges].map(([k, r]) => `${k} [${r.min.toFixed(2)}, ${r.max.toFixed(2)}]`).join(', ')}`);
      if (label === 'minmax') assert.ok(ranges.get('x')!.max === 40, 'the spike sets the min-max range of x');
      else assert.ok(ranges.get('x')!.max < 8, `${label} clips the spike: x max ${ranges.get('x')!.max}`);
    });
  }

  it('percentile, entropy, MSE and the moving average each beat min-max by more than 5 dB', () => {
    const base = sqnr.get('minmax')!;
    assert.ok(base > 15 && base < 30, `min-max SQNR ${base}`);
    for (const label of ['percentile', 'entropy', 'mse', 'minmax --moving-average']) {
      assert.ok(sqnr.get(label)! > base + 5, `${label}: ${sqnr.get(label)} dB vs min-max ${base} dB`);
    }
  });
});

describe('quantize() and `lowbit quantize` with the calibration options', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-calib-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const modelPath = join(dir, 'mlp.onnx');
  const dataPath = join(dir, 'x.npy');
  // 40 samples: the last 8 are held out (clean), the spike sits in sample 3
  const ready = (async () => {
    await saveModel(buildMlp(512).toProto(), modelPath);
    writeNpy(dataPath, spiky(40, 512, 31, 3, 40));
  })();

  it('quantize(): every method verifies on the held-out samples; the clipping ones beat min-max', async (t) => {
    await ready;
    const db = new Map<string, number>();
    for (const [label, extra] of [
      ['minmax', {}],
      ['percentile 99.99', { method: 'percentile', percentile: 99.99, numBins: 1024 }],
      ['entropy', { method: 'entropy' }],
      ['mse', { method: 'mse' }],
      ['moving average 0.1', { movingAverage: true, averagingConstant: 0.1 }],
    ] as const) {
      const r = await quantize({ input: modelPath, output: join(dir, 'q.onnx'), calib: dataPath, threads: 2, ...extra });
      assert.equal(r.fidelity.samples, 8);
      db.set(label, r.fidelity.sqnrDb!);
    }
    t.diagnostic(`quantize() held-out SQNR: ${[...db].map(([k, v]) => `${k} ${v.toFixed(2)} dB`).join(', ')}`);
    for (const label of ['percentile 99.99', 'entropy', 'mse', 'moving average 0.1']) {
      assert.ok(db.get(label)! > db.get('minmax')! + 3, `${label}: ${db.get(label)} dB vs min-max ${db.get('minmax')} dB`);
    }
    await assert.rejects(quantize({ input: modelPath, output: join(dir, 'q.onnx'), calib: dataPath, method: 'mse', percentile: 99 }), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && /percentile \(--percentile\) is an option of the percentile method, not of mse/.test(e.message));
    await assert.rejects(quantize({ input: modelPath, output: join(dir, 'q.onnx'), numBins: 512 }), (e: unknown) => e instanceof LowbitError && /static mode only/.test(e.message));
  });

  const lowbit = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, LOWBIT_DEBUG: '' } }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });

  it('lowbit quantize --method entropy --num-bins 2048 runs; misplaced options exit 2 naming the option', async () => {
    await ready;
    const out = join(dir, 'cli.onnx');
    const ok = await lowbit(['quantize', modelPath, '-o', out, '--calib', dataPath, '--method', 'entropy', '--num-bins', '2048', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    const fidelity = JSON.parse(ok.stdout).fidelity as { samples: number; sqnrDb: number };
    assert.equal(fidelity.samples, 8);
    assert.ok(fidelity.sqnrDb > 25, `entropy SQNR ${fidelity.sqnrDb}`);
    const fails = async (args: string[], message: RegExp): Promise<void> => {
      const r = await lowbit(['quantize', modelPath, '-o', out, '--calib', dataPath, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    };
    await fails(['--method', 'entropy', '--percentile', '99'], /percentile \(--percentile\) is an option of the percentile method, not of entropy/);
    await fails(['--num-bins', '512'], /numBins \(--num-bins\) is an option of the percentile, entropy, mse methods, not of minmax/);
    await fails(['--averaging-constant', '0.1'], /needs movingAverage \(--moving-average\)/);
    await fails(['--method', 'percentile', '--percentile', '101'], /percentile must be a number in \(0, 100\]/);
    await fails(['--method', 'kl'], /Allowed choices are minmax, percentile, entropy, mse/);
  });
});
