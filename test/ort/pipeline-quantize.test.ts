// quantize() end to end: bad input gets typed errors and loses nothing; every real npm model
// quantizes dynamically and statically, runs in ORT, and its fidelity is measured on realistic inputs.
// Realistic inputs: OCR images are lines/pages of REAL handwritten MNIST digits in a synthetic layout;
// the VAD audio is SYNTHESIZED speech (espeak-ng fixture), run frame by frame with its LSTM state.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { writeNpz } from '../../src/data/npz.js';
import { ocrClsBatch, ocrDetBatch, ocrRecBatch, readWav, realModelPath, runVad } from '../../src/data/realistic.js';
import { LowbitError } from '../../src/errors.js';
import { saveModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { Session } from '../../src/runtime/session.js';

const dir = mkdtempSync(join(tmpdir(), 'lowbit-pipeline-'));
const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = (): number => ((s = (s * 1664525 + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** A small MLP classifier [N,16] -> [N,4], optionally with a NaN weight or a constant branch. */
async function mlp(name: string, opts: { nanWeight?: boolean; opset?: number } = {}): Promise<string> {
  const b = new ModelBuilder({ opset: opts.opset ?? 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 16]);
  const w1 = randn(16 * 32, 1);
  if (opts.nanWeight) w1[5] = NaN;
  const h = b.op('Relu', [b.op('MatMul', [x, b.initializer('w1', w1, [16, 32])])]);
  const zero = b.op('Mul', [h, b.initializer('zero', new Float32Array([0]), [])]); // constant (range 0) activation
  const y = b.op('MatMul', [b.op('Add', [h, zero]), b.initializer('w2', randn(32 * 4, 2), [32, 4])]);
  b.output(b.op('Softmax', [y], { axis: -1 }), DataType.FLOAT, ['N', 4]);
  const path = join(dir, `${name}.onnx`);
  await saveModel(b.build().toProto(), path);
  return path;
}

const npy = (name: string, arr: NdArray): string => {
  const p = join(dir, name);
  writeNpy(p, arr);
  return p;
};
const f32 = (shape: number[], seed = 3): NdArray => ({ dtype: 'float32', shape, data: randn(shape.reduce((a, b) => a * b, 1), seed) });

async function rejects(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `not a LowbitError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

describe('quantize(): bad input', () => {
  let model: string;
  before(async () => {
    model = await mlp('mlp');
  });

  it('refuses -o equal to the input and leaves it untouched', async () => {
    const h = sha(model);
    await rejects(quantize({ input: model, output: model }), 'SAME_INPUT_OUTPUT', /is the input model/);
    assert.equal(sha(model), h);
  });

  it('refuses static mode without data, unknown options and bad enum values', async () => {
    await rejects(quantize({ input: model, output: join(dir, 'o.onnx'), mode: 'static' }), 'BAD_OPTION', /calibration data/);
    await rejects(quantize({ input: model, output: join(dir, 'o.onnx'), perchannel: true } as never), 'BAD_OPTION', /unknown quantize option: perchannel/);
    await rejects(quantize({ input: model, output: join(dir, 'o.onnx'), weightType: 'int3' as never }), 'BAD_OPTION', /int8, uint8/);
  });

  it('names the mismatch when calibration data does not fit the model', async () => {
    const out = join(dir, 'mismatch.onnx');
    await rejects(quantize({ input: model, output: out, calib: npy('shape.npy', f32([8, 15])) }), 'DATA_MISMATCH', /15|16/);
    const ints: NdArray = { dtype: 'int32', shape: [8, 16], data: new Int32Array(128) };
    await rejects(quantize({ input: model, output: out, calib: npy('dtype.npy', ints) }), 'DATA_MISMATCH', /int32|float/);
    const npz = join(dir, 'names.npz');
    writeNpz(npz, { y: f32([8, 16]) });
    await rejects(quantize({ input: model, output: out, calib: npz }), 'DATA_MISMATCH', /'x'|x/);
    assert.ok(!existsSync(out), 'no output written');
  });

  it('names the sample with NaN in calibration data, the tensor with NaN weights', async () => {
    const bad = f32([8, 16]);
    bad.data[3 * 16 + 2] = NaN;
    await rejects(quantize({ input: model, output: join(dir, 'nan.onnx'), calib: npy('nan.npy', bad) }), 'NON_FINITE', /sample 3|index 3|3/);
    const nanModel = await mlp('nan-weight', { nanWeight: true });
    await rejects(quantize({ input: nanModel, output: join(dir, 'nanw.onnx'), mode: 'dynamic' }), 'NON_FINITE', /w1/);
  });

  it('refuses a model opset it cannot handle, a non-ONNX file and a truncated model', async () => {
    const future = await mlp('future', { opset: 99 });
    await rejects(quantize({ input: future, output: join(dir, 'f.onnx') }), 'UNSUPPORTED_OPSET', /opset 99/);
    const text = join(dir, 'notes.onnx');
    writeFileSync(text, '{"this": "is json"}');
    await rejects(quantize({ input: text, output: join(dir, 't.onnx') }), 'NOT_ONNX', /./);
    const cut = join(dir, 'cut.onnx');
    const bytes = readFileSync(model);
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await assert.rejects(quantize({ input: cut, output: join(dir, 'c.onnx') }), (e: unknown) => e instanceof LowbitError && ['TRUNCATED', 'NOT_ONNX'].includes(e.code));
    await rejects(quantize({ input: join(dir, 'missing.onnx'), output: join(dir, 'm.onnx') }), 'FILE_NOT_FOUND', /missing\.onnx/);
  });

  it('labels add float vs int8 accuracy on the held-out samples; a label count mismatch is refused', async () => {
    const data = f32([40, 16], 7);
    const calib = npy('labelled.npy', data);
    // Labels = the float model's own predictions, so float accuracy is exactly 1 and int8 accuracy = agreement.
    const s = await Session.create(model);
    const probs = (await s.run({ x: data }))[s.outputNames[0]!]!.data as Float32Array;
    await s.release();
    const labels = new Int32Array(40).map((_, i) => {
      const row = probs.subarray(4 * i, 4 * i + 4);
      return row.indexOf(Math.max(...row));
    });
    const labelsPath = npy('labels.npy', { dtype: 'int32', shape: [40], data: labels });
    const r = await quantize({ input: model, output: join(dir, 'labelled.onnx'), calib, labels: labelsPath });
    assert.equal(r.fidelity.floatAccuracy, 1);
    assert.equal(r.fidelity.accuracy, r.fidelity.agreement);
    const short = npy('short-labels.npy', { dtype: 'int32', shape: [39], data: labels.subarray(0, 39) });
    await rejects(quantize({ input: model, output: join(dir, 'l2.onnx'), calib, labels: short }), 'DATA_MISMATCH', /39 labels.*40 samples/);
    await rejects(quantize({ input: model, output: join(dir, 'l3.onnx'), labels: labelsPath }), 'BAD_OPTION', /labels/);
  });

  it('a constant (range 0) activation quantizes without NaN, and no temp file is left behind', async () => {
    const out = join(dir, 'const-static.onnx');
    const r = await quantize({ input: model, output: out, calib: npy('ok.npy', f32([40, 16])) });
    assert.ok(Number.isFinite(r.fidelity.sqnrDb!) && r.fidelity.sqnrDb! > 20, `sqnr ${r.fidelity.sqnrDb}`);
    assert.equal(r.fidelity.samples, 8); // 20% of 40 held out
    assert.ok(r.fidelity.agreement! >= 0.875);
    // No fidelity warning; a speed warning may come (this tiny MLP runs at 0.9-1.0x in int8 at batch 1).
    assert.deepEqual(r.warnings.filter((w) => !/slower than the float model/.test(w)), []);
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.tmp')));
  });
});

/** Silero VAD legacy calibration data: every frame's feeds (audio, sr, LSTM state) from a float run. */
async function vadCalib(): Promise<string> {
  const wav = readWav('test/fixtures/audio/speech-16k.wav');
  const s = await Session.create(realModelPath('vadLegacy'));
  const run = await runVad(wav.samples, 'legacy', (f) => s.run(f), { collectFeeds: true });
  await s.release();
  const feeds = run.feeds!;
  const stack = (k: string): NdArray => {
    const parts = feeds.map((f) => f[k]!);
    const n = parts[0]!.data.length;
    const first = parts[0]!;
    const data = new (first.data.constructor as new (n: number) => Float32Array)(n * parts.length);
    parts.forEach((p, i) => data.set(p.data as Float32Array, i * n));
    const shape = k === 'input' ? [parts.length, ...first.shape.slice(1)] : [parts.length, ...first.shape];
    return { dtype: first.dtype, shape, data };
  };
  const p = join(dir, 'vad.npz');
  writeNpz(p, { input: stack('input'), sr: stack('sr'), h: stack('h'), c: stack('c') });
  return p;
}

interface RealCase {
  name: string;
  model: () => string;
  calib: () => Promise<string>;
  /** Measured on ORT 1.30 x86 (the comment per row); bounds leave a margin. */
  dynamic: { minSqnrDb: number; quantized: number };
  static: { minSqnrDb: number; minCosine: number; maxSizeRatio: number } | { nothing: true };
}

const CASES: RealCase[] = [
  {
    // dynamic: 59.6 dB (only the classifier MatMul); static: 21.9 dB, cosine 0.9968, 579 kB -> 303 kB. The 8
    // held-out lines include a near tie (float 0.548 / 0.452) that int8 noise flips: with the speed policy's
    // float depthwise convs it lands at 0.396 (with every Conv int8 it stayed at 0.549, 34.8 dB). Over 64
    // other lines the policy's model is the closer one: 23.6-23.8 dB vs 21.8-22.5 dB.
    name: 'PP-OCR text-direction classifier',
    model: () => realModelPath('ocrCls'),
    calib: async () => npy('cls.npy', ocrClsBatch(40, 1).input),
    dynamic: { minSqnrDb: 45, quantized: 1 },
    static: { minSqnrDb: 18, minCosine: 0.995, maxSizeRatio: 0.6 },
  },
  {
    // dynamic: 27.7 dB; static: 10.3 dB (minmax on a transformer: flagged), 10.8 MB -> 3.1 MB
    name: 'PP-OCRv4 recognition',
    model: () => realModelPath('ocrRec'),
    calib: async () => npy('rec.npy', ocrRecBatch(24, 1).input),
    dynamic: { minSqnrDb: 22, quantized: 9 },
    static: { minSqnrDb: 7, minCosine: 0.9, maxSizeRatio: 0.35 },
  },
  {
    // dynamic: all Conv, nothing to do; static: 12.0 dB, 4.7 MB -> 1.5 MB
    name: 'PP-OCRv4 detection (320x320 pages)',
    model: () => realModelPath('ocrDet'),
    calib: async () => npy('det.npy', ocrDetBatch(10, 1, 320).input),
    dynamic: { minSqnrDb: Infinity, quantized: 0 },
    static: { minSqnrDb: 8, minCosine: 0.93, maxSizeRatio: 0.35 },
  },
  {
    // dynamic: 56.0 dB (8 LSTMs inside If bodies); static: every op is inside If bodies, quantized there
    // (passes/qdq-subgraph.ts): 51 nodes of the 16 kHz branch (18 QLinearConv after ORT's fusions), the 8 kHz
    // branch never runs on 16 kHz speech and stays float; 21.3 dB, cosine 0.9968, 1.81 MB -> 1.58 MB.
    name: 'silero VAD (legacy)',
    model: () => realModelPath('vadLegacy'),
    calib: vadCalib,
    dynamic: { minSqnrDb: 40, quantized: 8 },
    static: { minSqnrDb: 17, minCosine: 0.99, maxSizeRatio: 0.92 },
  },
];

for (const c of CASES) {
  describe(`quantize(): ${c.name}`, () => {
    let calib: string;
    before(async () => {
      calib = await c.calib();
    });

    it('dynamic: runs in ORT, fidelity measured on realistic inputs', async () => {
      const out = join(dir, `${c.name.replace(/\W+/g, '_')}.dyn.onnx`);
      const r = await quantize({ input: c.model(), output: out, mode: 'dynamic', calib, threads: 2 });
      assert.equal(r.nodes.filter((n) => n.quantized).length, c.dynamic.quantized);
      assert.ok(r.fidelity.samples > 0);
      assert.ok((r.fidelity.sqnrDb ?? -Infinity) >= c.dynamic.minSqnrDb, `SQNR ${r.fidelity.sqnrDb}`);
      if (c.dynamic.quantized === 0) assert.match(r.warnings.join('\n'), /nothing was quantized/);
      else assert.ok(r.sizeBytes.after < r.sizeBytes.before);
    });

    it('static: runs in ORT, fidelity measured on held-out realistic inputs', async () => {
      const out = join(dir, `${c.name.replace(/\W+/g, '_')}.static.onnx`);
      const r = await quantize({ input: c.model(), output: out, mode: 'static', calib, threads: 2 });
      if ('nothing' in c.static) {
        assert.match(r.warnings.join('\n'), /nothing was quantized.*If\/Loop\/Scan/);
        return;
      }
      assert.doesNotMatch(r.warnings.join('\n'), /nothing was quantized/);
      assert.ok(r.fidelity.samples > 0);
      assert.ok((r.fidelity.sqnrDb ?? -Infinity) >= c.static.minSqnrDb, `SQNR ${r.fidelity.sqnrDb}`);
      assert.ok((r.fidelity.cosine ?? 0) >= c.static.minCosine, `cosine ${r.fidelity.cosine}`);
      assert.ok(r.sizeBytes.after / r.sizeBytes.before <= c.static.maxSizeRatio, `size ${r.sizeBytes.after}/${r.sizeBytes.before}`);
      const session = await Session.create(out, { threads: 2 });
      await session.release();
    });
  });
}
