// The MobileNet-style digit model (models/digits-mobilenet.onnx, written by scripts/train-digits.ts --arch mobilenet) on
// the 2,000 held-out MNIST digits in ORT, and static per-channel int8 of it (issue #4: within 0.5 points top-1).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist, splitMnist } from '../../src/data/mnist.js';
import { writeNpy } from '../../src/data/npy.js';
import { buildDigitMobileNet } from '../../src/models/digits.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { checkBundledDigitModel, digitAccuracy, digitImages } from './digits-helpers.js';

const MODEL = new URL('../../models/digits-mobilenet.onnx', import.meta.url).pathname;
/** Held-out top-1 of the shipped model as trained (scripts/train-digits.ts --arch mobilenet, 12 epochs: 98.30%), minus a 0.3-point margin. */
const MIN_ACCURACY = 0.98;
const { train: trainSet, test } = splitMnist(loadMnist(), 2000);


describe('digit MobileNet', () => {
  it('buildDigitMobileNet: depthwise separable blocks whose depthwise widths are multiples of 16 and >= 64', () => {
    const m = buildDigitMobileNet({ seed: 3 });
    const g = m.graph;
    const dw = g.nodes.filter((n) => n.opType === 'Conv' && n.attribute.some((a) => a.name === 'group' && Number(a.i) > 1));
    assert.equal(dw.length, 4);
    for (const n of dw) {
      const groups = Number(n.attribute.find((a) => a.name === 'group')!.i);
      const w = g.initializer(n.input[1]!)!;
      assert.deepEqual(w.dims.map(Number), [groups, 1, 3, 3], n.name);
      assert.ok(groups % 16 === 0 && groups >= 64, `${n.name}: ${groups} channels`);
    }
    assert.deepEqual(g.nodes.map((n) => n.opType).filter((t) => t === 'GlobalAveragePool' || t === 'Gemm'), ['GlobalAveragePool', 'Gemm']);
    assert.deepEqual(g.outputs.map((v) => v.name), ['logits']);
  });

  it(`models/digits-mobilenet.onnx reaches >= ${(100 * MIN_ACCURACY).toFixed(1)}% on the 2,000 held-out digits`, async (t) => {
    const acc = await checkBundledDigitModel(MODEL, 'node --import tsx scripts/train-digits.ts --arch mobilenet', test, MIN_ACCURACY);
    t.diagnostic(`held-out accuracy ${(100 * acc).toFixed(2)}%`);
  });

  it('static per-channel int8 stays within 0.5 points top-1 of float on the held-out digits, depthwise convs in int8', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'lowbit-mobilenet-'));
    const n = 512;
    const calib = join(dir, 'calib.npy');
    const labels = join(dir, 'labels.npy');
    writeNpy(calib, digitImages(trainSet, n));
    writeNpy(labels, { dtype: 'int32', shape: [n], data: trainSet.labels.slice(0, n) });
    const out = join(dir, 'int8.onnx');
    const r = await quantize({ input: MODEL, output: out, mode: 'static', calib, labels, perChannel: true, threads: 2 });
    const dwConvs = r.nodes.filter((d) => d.opType === 'Conv' && /\.dw$/.test(d.node));
    assert.equal(dwConvs.length, 4, JSON.stringify(r.nodes.map((d) => d.node)));
    assert.ok(dwConvs.every((d) => d.quantized), JSON.stringify(dwConvs));
    const fp = await digitAccuracy(MODEL, test);
    const q = await digitAccuracy(out, test);
    t.diagnostic(`held-out top-1 float ${(100 * fp).toFixed(2)}%, int8 ${(100 * q).toFixed(2)}% (${r.sizeBytes.before} -> ${r.sizeBytes.after} bytes)`);
    assert.ok(r.fidelity.accuracy !== undefined && r.fidelity.floatAccuracy !== undefined, 'quantize() reports accuracy with labels');
    assert.ok(Math.abs(fp - q) <= 0.005, `float ${fp}, int8 ${q}`);
  });
});
