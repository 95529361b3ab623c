// Image folders through the command line, on the bundled digit CNN (input [N,1,28,28] in [0, 1]):
// 40 MNIST digits written as gray PNGs quantize to the same model as the same digits in a .npy;
// eval and compare read the folder; bad folders and missing options fail with clear messages.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { loadMnist } from '../../src/data/mnist.js';
import { writeNpy } from '../../src/data/npy.js';
import { assertFails, lowbit } from '../cli-helpers.js';

const MODEL = 'models/digits-cnn.onnx';
const COUNT = 40;
const SCALE = 0.00392;

const tmp = mkdtempSync(join(tmpdir(), 'lowbit-image-ort-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const dir = join(tmp, 'digits');
const npy = join(tmp, 'digits.npy');
const labels = join(tmp, 'labels.npy');

before(() => {
  const m = loadMnist({ limit: COUNT });
  mkdirSync(dir);
  const x = new Float32Array(COUNT * 784);
  for (let k = 0; k < COUNT; k++) {
    const png = new PNG({ width: 28, height: 28 });
    for (let i = 0; i < 784; i++) {
      const p = Math.round(m.images[k * 784 + i]! * 255);
      png.data.set([p, p, p, 255], 4 * i);
      x[k * 784 + i] = p * SCALE; // what the folder reader feeds: pixel * scale, as float32
    }
    // Names sort in sample order; a gray (color type 0) PNG like MNIST's own files.
    writeFileSync(join(dir, `digit-${String(k).padStart(3, '0')}.png`), PNG.sync.write(png, { colorType: 0 }));
  }
  writeNpy(npy, { dtype: 'float32', shape: [COUNT, 1, 28, 28], data: x });
  writeNpy(labels, { dtype: 'int32', shape: [COUNT], data: m.labels });
});

test('quantize --calib DIR gives the model that the same digits as .npy give', async () => {
  const fromDir = join(tmp, 'dir.int8.onnx');
  const fromNpy = join(tmp, 'npy.int8.onnx');
  const [a, b] = await Promise.all([
    lowbit(['quantize', MODEL, '--calib', dir, '--channels', 'gray', '--scale', String(SCALE), '-o', fromDir, '--json']),
    lowbit(['quantize', MODEL, '--calib', npy, '-o', fromNpy, '--json']),
  ]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const fa = JSON.parse(a.stdout).fidelity;
  const fb = JSON.parse(b.stdout).fidelity;
  assert.equal(fa.samples, 8); // 20% of 40 held out
  assert.ok(Math.abs(fa.sqnrDb - fb.sqnrDb) < 1e-6, `${fa.sqnrDb} vs ${fb.sqnrDb}`);
  assert.ok(fa.sqnrDb > 20, `SQNR ${fa.sqnrDb}`);
  assert.equal(fa.agreement, fb.agreement);
  // Same inputs, same calibration: the same scales and weights, byte for byte.
  assert.deepEqual(readFileSync(fromDir), readFileSync(fromNpy));
});

test('eval --data DIR and compare --data DIR read the folder in sorted order', async () => {
  const quant = join(tmp, 'eval.int8.onnx');
  const q = await lowbit(['quantize', MODEL, '--calib', npy, '-o', quant, '--json']);
  assert.equal(q.code, 0, q.stderr);
  const [fromDir, fromNpy, cmp] = await Promise.all([
    lowbit(['eval', quant, '--data', dir, '--scale', '1/255', '--labels', labels, '--reference', MODEL, '--json']),
    lowbit(['eval', quant, '--data', npy, '--labels', labels, '--reference', MODEL, '--json']),
    lowbit(['compare', MODEL, quant, '--data', dir, '--scale', String(SCALE), '--json', '--top', '3']),
  ]);
  assert.equal(fromDir.code, 0, fromDir.stderr);
  assert.equal(fromNpy.code, 0, fromNpy.stderr);
  const d = JSON.parse(fromDir.stdout);
  const n = JSON.parse(fromNpy.stdout);
  assert.equal(d.samples, COUNT);
  // 1/255 vs 0.00392: inputs differ by 0.4%, labels line up only in sorted file order.
  assert.equal(d.accuracy, n.accuracy);
  assert.ok(d.accuracy >= 0.9, `accuracy ${d.accuracy}`);
  assert.ok(d.agreement >= 0.95, `agreement ${d.agreement}`);
  assert.equal(cmp.code, 0, cmp.stderr);
  const c = JSON.parse(cmp.stdout);
  assert.equal(c.samples, COUNT);
  assert.ok(c.output.sqnrDb > 20, `compare SQNR ${c.output.sqnrDb}`);
});

test('image folders fail with messages that name the option or the file', async () => {
  const broken = join(tmp, 'broken');
  mkdirSync(broken);
  writeFileSync(join(broken, 'a.png'), readFileSync(join(dir, 'digit-000.png')));
  writeFileSync(join(broken, 'b.png'), readFileSync(join(dir, 'digit-001.png')).subarray(0, 60));
  const mixed = join(tmp, 'mixed');
  mkdirSync(mixed);
  writeFileSync(join(mixed, 'a.png'), readFileSync(join(dir, 'digit-000.png')));
  writeFileSync(join(mixed, 'readme.txt'), 'digits');
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  const [noScale, corrupt, other, none, rgb, help] = await Promise.all([
    lowbit(['eval', MODEL, '--data', dir]),
    lowbit(['eval', MODEL, '--data', broken, '--scale', '1/255']),
    lowbit(['eval', MODEL, '--data', mixed, '--scale', '1/255']),
    lowbit(['quantize', MODEL, '--calib', empty, '--scale', '1/255', '-o', join(tmp, 'never.onnx')]),
    lowbit(['eval', MODEL, '--data', dir, '--scale', '1/255', '--channels', 'rgb']),
    lowbit(['quantize', '--help']),
  ]);
  assertFails(noScale, 2, /pixel scale[\s\S]*--scale/);
  assertFails(corrupt, 3, /b\.png: damaged or unreadable PNG/);
  assertFails(other, 3, /'readme\.txt' is not a \.png, \.jpg or \.jpeg image/);
  assertFails(none, 3, /no \.png, \.jpg or \.jpeg images/);
  assertFails(rgb, 3, /--channels rgb gives 3 channels.*takes 1/);
  assert.equal(help.code, 0);
  for (const flag of ['--resize', '--crop', '--layout', '--channels', '--scale', '--mean', '--std', 'Image folders']) assert.ok(help.stdout.includes(flag), flag);
});
