// The package entries export the documented API (README "Library") and it works end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as lowbit from '../../src/index.js';
import * as core from '../../src/core.js';

test('lowbit and lowbit/core export the documented functions', () => {
  for (const name of ['quantize', 'evaluate', 'bench', 'compareLatency', 'loadModel', 'saveModel', 'openDataSource', 'Session', 'inspectModel']) {
    assert.equal(typeof (lowbit as Record<string, unknown>)[name], 'function', name);
  }
  for (const name of ['decodeModel', 'encodeModel', 'Model', 'ModelBuilder', 'quantizeLinear', 'dequantizeLinear', 'computeQParams', 'quantizeDynamic', 'quantizeStatic', 'planQdq']) {
    assert.equal(typeof (core as Record<string, unknown>)[name], 'function', name);
  }
});

test('build a model with lowbit/core, quantize it with lowbit', async () => {
  const b = new core.ModelBuilder({ opset: 17 });
  const x = b.input('x', core.DataType.FLOAT, ['N', 8]);
  const w = new Float32Array(8 * 8).map((_, i) => Math.sin(i));
  b.output(b.op('MatMul', [x, b.initializer('w', w, [8, 8])]), core.DataType.FLOAT, ['N', 8]);
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-entry-'));
  const input = join(dir, 'm.onnx');
  await lowbit.saveModel(b.build().toProto(), input);
  const r = await lowbit.quantize({ input, output: join(dir, 'm.int8.onnx'), mode: 'dynamic' });
  assert.equal(r.nodes.filter((n) => n.quantized).length, 1);
  assert.ok(r.fidelity.sqnrDb! > 30, `sqnr ${r.fidelity.sqnrDb}`);
  assert.match(r.verification, /synthetic/);
});
