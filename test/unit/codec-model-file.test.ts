// Unit tests of src/io/model-file.ts in a temp folder: atomic save, external data round trip,
// unsafe locations (../, absolute, symlink escape), missing/short files, same input/output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, loadModelSync, readExternalData, saveModel } from '../../src/io/model-file.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { planExternalData } from '../../src/onnx/external-data.js';
import { AttributeType, DataType, type ModelProto, type TensorProto } from '../../src/onnx/proto.js';
import { makeTensor } from '../../src/onnx/tensor.js';
import { LowbitError } from '../../src/errors.js';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-codec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const weights = (name: string, n: number, seed: number) => makeTensor(name, DataType.FLOAT, [n], new Float32Array(n).map((_, i) => seed + i * 0.5));

function model(initializers: TensorProto[], subgraphInit: TensorProto[] = []): ModelProto {
  const g = (name: string, initializer: TensorProto[], node: ModelProto['graph'] extends infer G ? (G extends { node: infer N } ? N : never) : never = []) => ({
    node, name, initializer, sparseInitializer: [], input: [], output: [], valueInfo: [], quantizationAnnotation: [], metadataProps: [],
  });
  const body = g('body', subgraphInit);
  const ifNode = { input: ['c'], output: ['y'], opType: 'If', attribute: [{ name: 'then_branch', type: AttributeType.GRAPH, g: body, floats: [], ints: [], strings: [], tensors: [], graphs: [], sparseTensors: [], typeProtos: [] }], metadataProps: [] };
  return { irVersion: 9n, opsetImport: [{ domain: '', version: 17n }], metadataProps: [], trainingInfo: [], functions: [], producerName: 'test', graph: g('main', initializers, [ifNode]) };
}

/** A model whose single initializer 'w' is external at `location`. */
function externalModel(location: string, offset = 0, length = 16): ModelProto {
  const t: TensorProto = { dims: [4n], dataType: DataType.FLOAT, name: 'w', dataLocation: 1, externalData: [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }], metadataProps: [] };
  return model([t]);
}

async function rejects(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LowbitError, String(e));
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('save then load inline; the write is atomic and leaves no temp file', async (t) => {
  const dir = tmp(t);
  const m = model([weights('a', 8, 1), weights('b', 3, 2)]);
  const res = await saveModel(m, join(dir, 'model.onnx'));
  assert.equal(res.dataPath, undefined);
  assert.deepEqual(readdirSync(dir), ['model.onnx']);
  assert.deepEqual(readFileSync(join(dir, 'model.onnx')), Buffer.from(encodeModel(m)));
  const loaded = await loadModel(join(dir, 'model.onnx'));
  assert.deepStrictEqual(loaded.model, { ...m, graph: loaded.model.graph });
  assert.deepEqual(loaded.model.graph!.initializer.map((x) => [...x.rawData!]), m.graph!.initializer.map((x) => [...x.rawData!]));
  // raw_data are views of the one file buffer.
  assert.equal(loaded.model.graph!.initializer[0].rawData!.buffer, loaded.bytes.buffer);
  assert.deepEqual(loaded.externalSources, []);
  // Overwriting an existing file works too, still without leftovers.
  await saveModel(model([weights('c', 2, 0)]), join(dir, 'model.onnx'));
  assert.deepEqual(readdirSync(dir), ['model.onnx']);
});

test('forceExternal writes aligned side data, loads back, and leaves the caller model alone', async (t) => {
  const dir = tmp(t);
  const m = model([weights('big1', 1000, 1), weights('small', 2, 5), weights('big2', 600, 3)], [weights('sub_big', 700, 9)]);
  const snapshot = structuredClone(m);
  const res = await saveModel(m, join(dir, 'm.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
  assert.deepStrictEqual(m, snapshot);
  assert.equal(res.externalTensors, 3);
  assert.equal(res.dataPath, join(dir, 'm.onnx.data'));
  assert.deepEqual(readdirSync(dir).sort(), ['m.onnx', 'm.onnx.data']);
  const loaded = await loadModel(join(dir, 'm.onnx'));
  const offsets = loaded.externalSources.map((s) => s.offset);
  assert.deepEqual(offsets, [0, 4096, 8192]);
  assert.deepEqual(loaded.externalSources.map((s) => s.tensorName), ['big1', 'big2', 'sub_big']);
  const byName = new Map<string, TensorProto>();
  const collect = (ts: TensorProto[]) => ts.forEach((x) => byName.set(x.name!, x));
  collect(loaded.model.graph!.initializer);
  collect(loaded.model.graph!.node[0].attribute[0].g!.initializer);
  for (const [name, orig] of [['big1', m.graph!.initializer[0]], ['small', m.graph!.initializer[1]], ['big2', m.graph!.initializer[2]], ['sub_big', m.graph!.node[0].attribute[0].g!.initializer[0]]] as const) {
    const got = byName.get(name)!;
    assert.deepEqual([...got.rawData!], [...orig.rawData!], name);
    assert.equal(got.dataLocation, undefined, `${name} is inline after load`);
    assert.deepEqual(got.externalData, []);
  }
  // Sync loader agrees.
  assert.deepEqual(loadModelSync(join(dir, 'm.onnx')).externalSources, loaded.externalSources);
});

test('lazy load keeps tensors external; readExternalData fetches them; saving them is refused', async (t) => {
  const dir = tmp(t);
  await saveModel(model([weights('w', 1024, 7)]), join(dir, 'm.onnx'), { forceExternal: true, externalDataThreshold: 0, externalDataName: 'weights/w.bin' });
  assert.deepEqual(readdirSync(join(dir, 'weights')), ['w.bin']);
  const lazy = await loadModel(join(dir, 'm.onnx'), { externalData: 'lazy' });
  const w = lazy.model.graph!.initializer[0];
  assert.equal(w.dataLocation, 1);
  assert.equal(w.rawData, undefined);
  const bytes = await readExternalData(lazy.externalSources[0]);
  assert.deepEqual(new Float32Array(bytes.buffer).subarray(0, 2), new Float32Array([7, 7.5]));
  await rejects(saveModel(lazy.model, join(dir, 'copy.onnx')), 'EXTERNAL_DATA', /not loaded/);
});

test('planExternalData moves initializers only when the limit is passed', () => {
  const m = model([weights('a', 300, 0), weights('b', 10, 0)]);
  assert.equal(planExternalData(m, { location: 'x.data', threshold: 100, alignment: 64 }), undefined);
  const plan = planExternalData(m, { location: 'x.data', threshold: 100, alignment: 64, limit: 1000 })!;
  assert.deepEqual(plan.chunks.map((c) => [c.offset, c.bytes.length]), [[0, 1200]]);
  assert.equal(plan.model.graph!.initializer[0].dataLocation, 1);
  assert.equal(plan.model.graph!.initializer[1].dataLocation, undefined);
  assert.throws(() => planExternalData(m, { location: 'x.data', threshold: 100, alignment: 64, limit: 10 }), /still \d+ bytes/);
});

test('unsafe external locations are refused: ../, absolute, symlink escaping the folder', async (t) => {
  const root = tmp(t);
  const dir = join(root, 'model');
  mkdirSync(dir);
  writeFileSync(join(root, 'secret.bin'), new Uint8Array(64));
  writeFileSync(join(dir, 'up.onnx'), encodeModel(externalModel('../secret.bin')));
  await rejects(loadModel(join(dir, 'up.onnx')), 'UNSAFE_PATH', /outside the model folder/);
  writeFileSync(join(dir, 'abs.onnx'), encodeModel(externalModel(join(root, 'secret.bin'))));
  await rejects(loadModel(join(dir, 'abs.onnx')), 'UNSAFE_PATH', /absolute/);
  symlinkSync(join(root, 'secret.bin'), join(dir, 'link.bin'));
  writeFileSync(join(dir, 'link.onnx'), encodeModel(externalModel('link.bin')));
  await rejects(loadModel(join(dir, 'link.onnx')), 'UNSAFE_PATH', /resolves to .* outside the model folder/);
  assert.throws(() => loadModelSync(join(dir, 'link.onnx')), (e: unknown) => e instanceof LowbitError && e.code === 'UNSAFE_PATH');
  // A symlink that stays inside the folder is fine.
  writeFileSync(join(dir, 'real.bin'), new Uint8Array(16));
  symlinkSync(join(dir, 'real.bin'), join(dir, 'inner.bin'));
  writeFileSync(join(dir, 'inner.onnx'), encodeModel(externalModel('inner.bin')));
  assert.equal((await loadModel(join(dir, 'inner.onnx'))).model.graph!.initializer[0].rawData!.length, 16);
});

test('missing or short external data files raise EXTERNAL_DATA', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'missing.onnx'), encodeModel(externalModel('nope.bin')));
  await rejects(loadModel(join(dir, 'missing.onnx')), 'EXTERNAL_DATA', /nope\.bin/);
  writeFileSync(join(dir, 'short.bin'), new Uint8Array(10));
  writeFileSync(join(dir, 'short.onnx'), encodeModel(externalModel('short.bin', 0, 16)));
  await rejects(loadModel(join(dir, 'short.onnx')), 'EXTERNAL_DATA', /has 10 bytes, but tensor 'w' needs bytes 0\.\.16/);
  writeFileSync(join(dir, 'off.onnx'), encodeModel(externalModel('short.bin', 8, 4)));
  await rejects(loadModel(join(dir, 'off.onnx')), 'EXTERNAL_DATA');
});

test('missing model, folders, non-ONNX files and same input/output are clear errors', async (t) => {
  const dir = tmp(t);
  await rejects(loadModel(join(dir, 'none.onnx')), 'FILE_NOT_FOUND', /does not exist/);
  await rejects(loadModel(dir), 'FILE_NOT_FOUND', /is a folder/);
  writeFileSync(join(dir, 'notes.txt'), 'just text\n');
  await rejects(loadModel(join(dir, 'notes.txt')), 'NOT_ONNX');
  const path = join(dir, 'm.onnx');
  await saveModel(model([]), path);
  await rejects(saveModel(model([]), path, { inputPath: path }), 'SAME_INPUT_OUTPUT');
  await rejects(saveModel(model([]), join(dir, '.', 'm.onnx'), { inputPath: path }), 'SAME_INPUT_OUTPUT');
  await rejects(saveModel(model([]), join(dir, 'no-such-dir', 'm.onnx')), 'FILE_NOT_FOUND');
  await rejects(saveModel(model([]), join(dir, 'x.onnx'), { forceExternal: true, externalDataName: '../x.data' }), 'UNSAFE_PATH');
  await rejects(saveModel(model([]), join(dir, 'x.onnx'), { externalDataThreshold: -1 }), 'BAD_OPTION');
  assert.deepEqual(readdirSync(dir).sort(), ['m.onnx', 'notes.txt']);
});
