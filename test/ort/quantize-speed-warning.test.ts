// quantize() says so when the quantized model is slower than the float one at batch 1: the warning carries
// the ratio, both medians and what to do. The end-to-end case uses a model whose int8 form is several times
// slower (a chain of AveragePools: ORT's QLinearAveragePool is 6-18x slower than its float AveragePool), so
// the verdict does not depend on machine noise; no wall-clock bound is asserted.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { saveModel } from '../../src/io/model-file.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { DataType } from '../../src/onnx/proto.js';
import type { LatencySummary } from '../../src/pipeline/options.js';
import { quantize, speedWarnings, weightOnlySpeedWarnings } from '../../src/pipeline/quantize.js';
import { buildSmallCnn, normalArray } from './quantize-static-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'lowbit-speed-warning-'));

function latency(floatMs: number, quantMs: number): LatencySummary {
  const stats = (m: number) => ({ median: m, p90: m, min: m, mean: m, max: m });
  return { backend: 'cpu', batch: 1, threads: 2, float: { latencyMs: stats(floatMs) }, quant: { latencyMs: stats(quantMs) }, speedup: floatMs / quantMs };
}

describe('speed warning', () => {
  it('names the ratio, both medians, the conditions and a way out when int8 is slower; nothing otherwise', () => {
    const [w, ...more] = speedWarnings(latency(0.5, 0.8));
    assert.deepEqual(more, []);
    assert.match(w!, /slower than the float model at batch 1: 0\.800 ms vs 0\.500 ms \(speedup 0\.63x, 2 threads/);
    assert.match(w!, /keep the float model/);
    assert.match(w!, /--exclude-ops/);
    assert.deepEqual(speedWarnings(latency(0.8, 0.5)), []);
    assert.deepEqual(speedWarnings(latency(0.5, 0.5)), [], 'equal medians are not slower');
    assert.deepEqual(speedWarnings(undefined), []);
    const [size] = speedWarnings(latency(0.5, 0.8), 'size');
    assert.match(size!, /speedup 0\.63x/);
    assert.match(size!, /--optimize-for size quantized every eligible layer/);
    assert.match(size!, /--optimize-for speed, keeps those float/);
    const [web] = speedWarnings({ ...latency(0.5, 0.8), backend: 'wasm', threads: 1 });
    assert.match(web!, /speedup 0\.63x, onnxruntime-web wasm, 1 thread, medians/);
    assert.match(web!, /For speed in the browser keep the float model; for a smaller download at float speed use --mode weight-only --bits 8 --format unpack-on-load/);
  });

  it('quantize() warns on a model whose int8 form is several times slower (measured 0.13-0.16x)', async () => {
    const b = new ModelBuilder({ opset: 13 });
    let h = b.input('x', DataType.FLOAT, ['N', 8, 32, 32]);
    for (let i = 0; i < 6; i++) h = b.op('AveragePool', [h], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: `pool${i}` });
    b.output(h, DataType.FLOAT, ['N', 8, 32, 32]);
    const input = join(dir, 'pools.onnx');
    await saveModel(b.build().toProto(), input);
    const calib = join(dir, 'pools.npy');
    writeNpy(calib, normalArray([10, 8, 32, 32], 3));
    const r = await quantize({ input, output: join(dir, 'pools.int8.onnx'), calib, threads: 2 });
    assert.equal(r.nodes.filter((n) => n.quantized).length, 6, 'every pool became QLinearAveragePool');
    assert.ok(r.latency, 'latency was measured');
    const speed = r.warnings.filter((w) => /slower than the float model/.test(w));
    assert.equal(speed.length, 1, r.warnings.join('\n'));
    assert.match(speed[0]!, new RegExp(`speedup ${r.latency.speedup.toFixed(2)}x`));
    assert.ok(r.latency.speedup < 1);
  });
});

it('weight-only speed warning: slower MatMulNBits says what to change (accuracy_level 0) or when it gains (4)', () => {
  const lat = (f: number, q: number): LatencySummary => ({ backend: 'cpu', batch: 1, threads: 2, float: { latencyMs: { median: f, p90: f, min: f, mean: f, max: f } }, quant: { latencyMs: { median: q, p90: q, min: q, mean: q, max: q } }, speedup: f / q });
  assert.deepEqual(weightOnlySpeedWarnings(lat(3, 1), 4), []);
  const [w0] = weightOnlySpeedWarnings(lat(3, 30), 0);
  assert.match(w0!, /slower than the float model at batch 1: 30\.0 ms vs 3\.00 ms/);
  assert.match(w0!, /use --accuracy-level 4/);
  const [w4] = weightOnlySpeedWarnings(lat(3, 4), 4);
  assert.match(w4!, /one token at a time, large layers/);
  assert.deepEqual(weightOnlySpeedWarnings(undefined, 0), []);
  const [web] = weightOnlySpeedWarnings({ ...lat(5, 80), backend: 'wasm', threads: 1 }, 4);
  assert.match(web!, /onnxruntime-web wasm, 1 thread/);
  assert.match(web!, /no fast MatMulNBits kernel/);
  assert.match(web!, /use --format unpack-on-load/);
});

describe('optimizeFor', () => {
  it('optimizeFor size quantizes the layers the speed policy keeps float, and verifies them', async () => {
    const input = join(dir, 'cnn16.onnx');
    await saveModel(buildSmallCnn(1).toProto(), input);
    const calib = join(dir, 'cnn16.npy');
    writeNpy(calib, normalArray([16, 3, 32, 32], 5));
    const speed = await quantize({ input, output: join(dir, 'cnn16.speed.onnx'), calib, threads: 2 });
    const size = await quantize({ input, output: join(dir, 'cnn16.size.onnx'), calib, threads: 2, optimizeFor: 'size' });
    const byName = (r: typeof speed) => new Map(r.nodes.map((n) => [n.node, n]));
    const [s, z] = [byName(speed), byName(size)];
    for (const node of ['conv1', 'dwconv', 'pwconv']) {
      assert.equal(s.get(node)!.quantized, false, `${node}: speed keeps it float`);
      assert.match(s.get(node)!.detail, /float/);
      assert.equal(z.get(node)!.quantized, true, `${node}: size quantizes it`);
    }
    assert.ok(size.sizeBytes.after < speed.sizeBytes.after, `${size.sizeBytes.after} < ${speed.sizeBytes.after}`);
    assert.ok(size.fidelity.sqnrDb! > 25, `size-mode SQNR ${size.fidelity.sqnrDb}`);
  });

  it('backend wasm: the report times both models in onnxruntime-web (one thread) and keeps depthwise convs float for it', async () => {
    const input = join(dir, 'cnn16.onnx');
    await saveModel(buildSmallCnn(1).toProto(), input);
    const calib = join(dir, 'cnn16w.npy');
    writeNpy(calib, normalArray([16, 3, 32, 32], 5));
    const r = await quantize({ input, output: join(dir, 'cnn16.wasm.onnx'), calib, threads: 2, backend: 'wasm' });
    assert.equal(r.latency?.backend, 'wasm');
    assert.equal(r.latency?.threads, 1);
    const dw = r.nodes.find((n) => n.node === 'dwconv')!;
    assert.equal(dw.quantized, false);
    assert.match(dw.detail, /WebAssembly build has no fast int8 depthwise kernel/);
    // (whether it is slower depends on the machine; the wording of a wasm warning is checked with fixed latencies above)
    assert.ok(r.fidelity.sqnrDb! > 25);
  });
});
