// The accuracy gate of quantize() (--max-drop): a model with one fragile layer (a logit with a huge
// outlier collapses its int8 output range) gets exactly that layer kept float, from one calibration; the
// bundled digit CNN already passes; an unreachable goal stops with a clear warning and the best model; and
// `lowbit quantize --max-drop --json --save-config` end to end, the saved config reused by --config.

import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist } from '../../src/data/mnist.js';
import { writeNpy } from '../../src/data/npy.js';
import { saveModel } from '../../src/io/model-file.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import { measureDrop, sqnrGoalDb } from '../../src/pipeline/gate.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { renderQuantizeReport } from '../../src/report/quantize-report.js';
import { mulberry32 } from '../../src/rng.js';
import { lowbit, ROOT } from '../cli-helpers.js';
import { throwsLowbit } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'lowbit-gate-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const p = (name: string): string => join(dir, name);

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/**
 * x [N,16] -> Gemm 'fc1' -> Relu 'relu1' -> Gemm 'fc2' -> Relu 'relu2' -> Gemm 'head' -> y [N, outDim]. With
 * `outlier`, the head's last output gets a bias of -4000: float argmax never picks it, but its int8 output
 * range spans ~4000, so a step of ~16 wipes out the other outputs' differences. Excluding 'head' alone fixes it.
 */
async function mlp(name: string, opts: { outlier: boolean; outDim?: number }): Promise<string> {
  const out = opts.outDim ?? 10;
  const b = new ModelBuilder({ opset: 13 });
  const x = b.input('x', DataType.FLOAT, ['N', 16]);
  const h1 = b.op('Relu', [b.op('Gemm', [x, b.initializer('w1', randn(32 * 16, 1, 0.35), [32, 16]), b.initializer('b1', randn(32, 2, 0.1), [32])], { transB: 1 }, { name: 'fc1' })], {}, { name: 'relu1' });
  const h2 = b.op('Relu', [b.op('Gemm', [h1, b.initializer('w2', randn(32 * 32, 3, 0.25), [32, 32]), b.initializer('b2', randn(32, 4, 0.1), [32])], { transB: 1 }, { name: 'fc2' })], {}, { name: 'relu2' });
  const bias = randn(out, 6, 0.1);
  if (opts.outlier) bias[out - 1] = -4000;
  const y = b.op('Gemm', [h2, b.initializer('w3', randn(out * 32, 5, 0.25), [out, 32]), b.initializer('b3', bias, [out])], { transB: 1 }, { name: 'head' });
  b.output(y, DataType.FLOAT, ['N', out]);
  const path = p(`${name}.onnx`);
  await saveModel(b.build().toProto(), path);
  return path;
}

before(async () => {
  writeNpy(p('x.npy'), { dtype: 'float32', shape: [400, 16], data: randn(400 * 16, 11) });
  const m = loadMnist();
  const n = 1280; // 1024 calibration digits, 256 held out (the last of loadMnist()'s order: never trained on)
  const start = m.count - n;
  writeNpy(p('digits.npy'), { dtype: 'float32', shape: [n, 1, 28, 28], data: m.images.subarray(start * 784) });
  writeNpy(p('digit-labels.npy'), { dtype: 'int32', shape: [n], data: m.labels.subarray(start) });
});

describe('accuracy gate: the drop measure', () => {
  it('uses accuracy with labels, else agreement, else the relative RMS error of the SQNR', () => {
    assert.deepEqual(measureDrop({ accuracy: 0.97, referenceAccuracy: 0.99, agreement: 0.5, sqnrDb: 10 }), { metric: 'accuracy', drop: (0.99 - 0.97) * 100 });
    assert.deepEqual(measureDrop({ agreement: 0.95, sqnrDb: 10 }), { metric: 'agreement', drop: (1 - 0.95) * 100 });
    const s = measureDrop({ sqnrDb: 40 });
    assert.equal(s.metric, 'sqnr');
    assert.ok(Math.abs(s.drop - 1) < 1e-12);
    assert.equal(measureDrop({ sqnrDb: Infinity }).drop, 0);
    assert.ok(Math.abs(sqnrGoalDb(1) - 40) < 1e-12);
    assert.ok(Math.abs(sqnrGoalDb(0.3) - 50.457) < 1e-3);
    assert.equal(sqnrGoalDb(0), Infinity);
    throwsLowbit(() => measureDrop({}), 'UNSUPPORTED_MODEL', 'nothing to measure');
  });
});

describe('accuracy gate', { concurrency: 1 }, () => {
  it('keeps exactly the fragile layer float, from one calibration pass', async () => {
    const model = await mlp('fragile', { outlier: true });
    const calibPasses: number[] = [];
    const plain = await quantize({ input: model, output: p('fragile.plain.onnx'), calib: p('x.npy') });
    assert.ok(plain.fidelity.agreement! < 0.6, `the outlier should break the int8 model: agreement ${plain.fidelity.agreement}`);
    const r = await quantize({
      input: model,
      output: p('fragile.int8.onnx'),
      calib: p('x.npy'),
      maxDrop: 5,
      onProgress: (e) => {
        if (e.stage === 'calibrate' && e.done === e.total) calibPasses.push(e.total);
      },
    });
    const g = r.gate!;
    assert.equal(g.metric, 'agreement');
    assert.equal(g.achieved, true);
    // One exclusion that takes the head out of int8: 'head' itself, or 'relu2' (its float output keeps the
    // head float too, and measured on these samples it is as good or better).
    assert.equal(g.excluded.length, 1);
    assert.ok(['head', 'relu2'].includes(g.excluded[0]!), `excluded ${g.excluded}`);
    // Chosen on one half of the held-out samples, judged on the other: together they are the verification's samples.
    const sel = g.selection!;
    assert.equal(sel.samples + g.checkSamples!, r.fidelity.samples);
    const pooled = (a: number, b: number): number => (a * sel.samples + b * g.checkSamples!) / r.fidelity.samples;
    assert.ok(Math.abs(pooled(sel.baseDrop, g.baseDrop) - (1 - plain.fidelity.agreement!) * 100) < 1e-9, `base drop ${g.baseDrop}`);
    assert.ok(g.drop <= 5 && sel.drop <= 5, `drop ${g.drop}`);
    // The final verification measures the kept model on both halves.
    assert.ok(Math.abs(pooled(sel.drop, g.drop) - (1 - r.fidelity.agreement!) * 100) < 1e-9);
    // 1 base + 5 leave-one-out (fc1, relu1, fc2, relu2, head), then the best single one is already measured.
    assert.equal(g.trials, 6);
    // Trials reuse the ranges: one pass, plus one for the tensors only the leave-one-out plans need (e.g. the
    // Gemm output under a Relu that is no longer folded), whatever the number of trials.
    assert.deepEqual(calibPasses, [320, 320]);
    assert.equal(r.nodes.find((n) => n.node === 'head')!.quantized, false);
    assert.ok(r.nodes.filter((n) => n.quantized).map((n) => n.node).includes('fc1'));
    assert.equal(r.warnings.filter((w) => /accuracy gate|agreement/.test(w)).length, 0, r.warnings.join('\n')); // (a speed note may appear)
    // The config written next to the output holds the exclusion and the goal.
    assert.equal(r.configPath, p('fragile.int8.lowbit.json'));
    const cfg = JSON.parse(readFileSync(r.configPath!, 'utf8'));
    assert.deepEqual(cfg.excludeNodes, g.excluded);
    assert.equal(cfg.maxDrop, 5);
    const text = renderQuantizeReport(r);
    assert.match(text, /accuracy gate \(--max-drop 5\): met/);
    assert.match(text, new RegExp(`kept float by the gate \\(most sensitive first\\): ${g.excluded[0]}`));
    assert.match(text, /fragile\.int8\.lowbit\.json/);
  });

  it('passes the digit CNN at --max-drop 0.3 with labels: no exclusion', async () => {
    const r = await quantize({ input: join(ROOT, 'models/digits-cnn.onnx'), output: p('digits.int8.onnx'), calib: p('digits.npy'), labels: p('digit-labels.npy'), maxDrop: 0.3 });
    const g = r.gate!;
    assert.equal(g.metric, 'accuracy');
    assert.equal(g.achieved, true, `drop ${g.drop}`);
    assert.deepEqual(g.excluded, []);
    assert.equal(g.trials, 1);
    assert.equal(r.fidelity.samples, 256);
    assert.ok(r.fidelity.accuracy! > 0.95, `accuracy ${r.fidelity.accuracy}`);
    const sel = g.selection!;
    assert.ok(Math.abs((sel.drop * sel.samples + g.drop * g.checkSamples!) / r.fidelity.samples - (r.fidelity.floatAccuracy! - r.fidelity.accuracy!) * 100) < 1e-9);
    assert.ok(r.nodes.some((n) => n.quantized));
  });

  it('stops with a clear warning when the goal cannot be met, and keeps the best model', async () => {
    // A regression output [N, 1]: no top-1, so the SQNR criterion; 0 points asks for an exact model.
    const model = await mlp('regression', { outlier: false, outDim: 1 });
    const r = await quantize({ input: model, output: p('regression.int8.onnx'), calib: p('x.npy'), maxDrop: 0 });
    const g = r.gate!;
    assert.equal(g.metric, 'sqnr');
    assert.equal(g.achieved, false);
    assert.ok(g.drop > 0 && g.drop <= g.baseDrop, `drop ${g.drop}, base ${g.baseDrop}`);
    // The kept model's error on all held-out samples lies between its errors on the two halves (a mediant).
    const all = 100 * 10 ** (-r.fidelity.sqnrDb! / 20);
    const [lo, hi] = [Math.min(g.drop, g.selection!.drop), Math.max(g.drop, g.selection!.drop)];
    assert.ok(all >= lo - 1e-6 && all <= hi + 1e-6, `the reported fidelity is the kept model: ${all} vs halves ${lo}, ${hi}`);
    assert.ok(r.nodes.some((n) => n.quantized), 'never the float model');
    assert.ok(g.trials >= 6 && g.trials <= 11, `trials ${g.trials}`);
    const w = r.warnings.find((s) => s.startsWith('accuracy gate'));
    assert.ok(w, r.warnings.join('\n'));
    assert.match(w, /goal of at most 0\.00 points .* was NOT met: the best model reached \d+\.\d\d points/);
    assert.match(w, /output SQNR ≥ Infinity dB/);
    assert.ok(existsSync(r.output));
    assert.match(renderQuantizeReport(r), /accuracy gate \(--max-drop 0\): NOT met/);
  });
});

describe('lowbit quantize --max-drop (CLI)', () => {
  it('--json carries the gate; --save-config writes the exclusions; --config reuses them', async () => {
    const model = await mlp('cli-fragile', { outlier: true });
    const r = await lowbit(['quantize', model, '-o', p('cli.int8.onnx'), '--calib', p('x.npy'), '--max-drop', '5', '--save-config', p('chosen.json'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j), ['output', 'sizeBytes', 'fidelity', 'gate', 'configPath']);
    assert.deepEqual(Object.keys(j.gate), ['maxDrop', 'achieved', 'drop', 'baseDrop', 'metric', 'excluded', 'trials', 'selection', 'checkSamples']);
    assert.equal(j.gate.achieved, true);
    assert.equal(j.gate.excluded.length, 1);
    assert.equal(j.configPath, p('chosen.json'));
    assert.equal(existsSync(p('cli.int8.lowbit.json')), false, 'the default path is not used with --save-config');
    const cfg = JSON.parse(readFileSync(p('chosen.json'), 'utf8'));
    assert.deepEqual(cfg.excludeNodes, j.gate.excluded);
    assert.equal(cfg.mode, 'static');

    // The saved config reproduces the choice: the gate passes on its first trial.
    const again = await lowbit(['quantize', model, '-o', p('cli2.int8.onnx'), '--calib', p('x.npy'), '--config', p('chosen.json'), '--json']);
    assert.equal(again.code, 0, again.stderr);
    const j2 = JSON.parse(again.stdout);
    assert.equal(j2.gate.trials, 1);
    assert.deepEqual(j2.gate.excluded, []);
    assert.ok(Math.abs(j2.gate.drop - j.gate.drop) < 1e-9);

    // A flag overrides the config: --exclude-nodes replaces its list, so fc1 is float and the fragile head is
    // back in int8 as the only quantized node. Keeping it float too would leave nothing quantized: the goal is
    // missed, said on stderr, exit code 5, and the model kept.
    const flag = await lowbit(['quantize', model, '-o', p('cli3.int8.onnx'), '--calib', p('x.npy'), '--config', p('chosen.json'), '--exclude-nodes', 'fc1', '--json']);
    assert.equal(flag.code, 5, flag.stderr);
    const j3 = JSON.parse(flag.stdout);
    assert.equal(j3.gate.achieved, false);
    assert.ok(j3.gate.drop > 5, `drop ${j3.gate.drop}`);
    assert.deepEqual(j3.gate.excluded, []);
    assert.match(flag.stderr, /warning: accuracy gate: the goal of at most 5\.00 points .* was NOT met.*keeping any of the 1 quantized node float would leave nothing quantized/);
    assert.deepEqual(JSON.parse(readFileSync(p('cli3.int8.lowbit.json'), 'utf8')).excludeNodes, ['fc1']);
    assert.ok(existsSync(p('cli3.int8.onnx')));

    // Config errors are reported before anything runs.
    writeFileSync(p('typo.json'), JSON.stringify({ maxdrop: 1 }));
    const bad = await lowbit(['quantize', model, '-o', p('cli4.int8.onnx'), '--calib', p('x.npy'), '--config', p('typo.json')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unknown key "maxdrop"/);
    assert.match(bad.stderr, /maxDrop/);
    assert.equal(existsSync(p('cli4.int8.onnx')), false);
  });
});
