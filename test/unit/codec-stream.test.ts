// Models larger than memory: tensors streamed from external data on each read (loadModel 'stream'), deferred
// tensors produced when saved (deferTensor, convertFloat16 defer), and external data written tensor by tensor into
// shards (saveModel shardSize): naming, size bound, round trips, path safety, no overwriting of streamed files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LowbitError } from '../../src/errors.js';
import { loadModel, loadModelSync, saveModel } from '../../src/io/model-file.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { decodeModel } from '../../src/onnx/decode.js';
import { deferredData } from '../../src/onnx/deferred.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { externalDataInfo, forEachTensor, isExternal, shardLocation, toExternal } from '../../src/onnx/external-data.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType, type ModelProto, type TensorProto } from '../../src/onnx/proto.js';
import { deferTensor, tensorByteLength, tensorBytes, tensorStorage } from '../../src/onnx/tensor.js';
import { convertFloat16 } from '../../src/passes/float16.js';
import { mulberry32 } from '../../src/rng.js';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-stream-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const values = (n: number, seed: number): Float32Array => {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
};

/** x -> MatMul chain over `count` weights of [k, k] (k*k*4 bytes each), plus one small bias. */
function chain(count: number, k: number, seed = 1): Model {
  const b = new ModelBuilder({ opset: 17 });
  let x = b.input('x', DataType.FLOAT, [1, k]);
  for (let i = 0; i < count; i++) x = b.op('MatMul', [x, b.initializer(`w${i}`, values(k * k, seed + i), [k, k])]);
  x = b.op('Add', [x, b.initializer('bias', values(k, 99), [k])]);
  b.output(x, DataType.FLOAT);
  return b.build();
}

const inits = (m: ModelProto): Map<string, TensorProto> => {
  const out = new Map<string, TensorProto>();
  forEachTensor(m, (t, role) => role === 'initializer' && out.set(t.name ?? '', t));
  return out;
};

function assertSameValues(a: ModelProto, b: ModelProto): void {
  const ia = inits(a);
  const ib = inits(b);
  assert.deepEqual([...ia.keys()].sort(), [...ib.keys()].sort());
  for (const [name, t] of ia) assert.deepEqual(tensorBytes(ib.get(name)!), tensorBytes(t), name);
}

test("stream load: tensors stay on disk and are read at each use, never kept", async (t) => {
  const dir = tmp(t);
  const m = chain(3, 64);
  const saved = await saveModel(m.toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
  assert.equal(saved.externalTensors, 3);
  const loaded = await loadModel(saved.path, { externalData: 'stream' });
  assert.equal(loaded.externalSources.length, 3);
  const w0 = inits(loaded.model).get('w0')!;
  assert.equal(w0.rawData, undefined, 'no bytes in memory');
  assert.equal(isExternal(w0), false);
  assert.equal(deferredData(w0)?.byteLength, 64 * 64 * 4);
  assert.equal(tensorByteLength(w0), 64 * 64 * 4);
  assert.deepEqual(tensorStorage(w0), values(64 * 64, 1));
  assert.equal(w0.rawData, undefined, 'reading did not keep the bytes');
  assert.notEqual(tensorStorage(w0), tensorStorage(w0), 'each read is a fresh array');
  // Change the file under it: the next read sees the new bytes (it reads the file at that moment).
  const src = loaded.externalSources.find((s) => s.tensorName === 'w0')!;
  const fd = openSync(src.file, 'r+');
  writeSync(fd, new Uint8Array(Float32Array.of(42).buffer), 0, 4, src.offset);
  closeSync(fd);
  assert.equal((tensorStorage(w0) as Float32Array)[0], 42);
  // Copies made by passes (object spread) keep the source, and encoding reads it.
  const copy = { ...w0, name: 'renamed' };
  assert.equal((tensorStorage(copy) as Float32Array)[0], 42);
  const decoded = decodeModel(encodeModel(loaded.model));
  assert.equal((tensorStorage(inits(decoded).get('w0')!) as Float32Array)[0], 42);
  // A copy that gets its own bytes no longer reads the file; toExternal drops the source.
  assert.equal(tensorStorage({ ...w0, rawData: new Uint8Array(64 * 64 * 4) })[0], 0);
  assert.equal(deferredData(toExternal(w0, { location: 'x.bin', offset: 0 })), undefined);
  // The sync loader streams the same way.
  const sync = loadModelSync(saved.path, { externalData: 'stream' });
  assert.equal(inits(sync.model).get('w1')!.rawData, undefined);
  assert.deepEqual(tensorStorage(inits(sync.model).get('w1')!), values(64 * 64, 2));
});

test('stream load: a data file removed or truncated later gives EXTERNAL_DATA when read', async (t) => {
  const dir = tmp(t);
  const saved = await saveModel(chain(2, 32).toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
  const loaded = await loadModel(saved.path, { externalData: 'stream' });
  rmSync(saved.dataPath!);
  assert.throws(() => tensorStorage(inits(loaded.model).get('w1')!), (e: unknown) => e instanceof LowbitError && e.code === 'EXTERNAL_DATA');
});

test('shards: transformers.js naming, each file within shardSize, values round trip (load and stream)', async (t) => {
  const dir = tmp(t);
  const m = chain(6, 128); // 6 x 64 KiB
  const shardSize = 150 * 1024;
  const saved = await saveModel(m.toProto(), join(dir, 'model.onnx'), { shardSize, forceExternal: true, externalDataThreshold: 1024, alignment: 4096 });
  assert.deepEqual(saved.dataPaths, ['model.onnx_data', 'model.onnx_data_1', 'model.onnx_data_2'].map((f) => join(dir, f)));
  assert.equal(saved.externalTensors, 6);
  const sizes = saved.dataPaths!.map((p) => statSync(p).size);
  for (const s of sizes) assert.ok(s <= shardSize, `shard of ${s} bytes over ${shardSize}`);
  assert.equal(saved.dataBytes, sizes.reduce((a, b) => a + b, 0));
  assert.deepEqual(readdirSync(dir).sort(), ['model.onnx', 'model.onnx_data', 'model.onnx_data_1', 'model.onnx_data_2']);
  const loaded = await loadModel(saved.path);
  const locations = new Set<string>();
  forEachTensor(decodeModel(new Uint8Array(readFileSync(saved.path))), (x) => {
    if (isExternal(x)) {
      const info = externalDataInfo(x);
      locations.add(info.location);
      assert.equal(info.offset % 4096, 0, 'aligned');
    }
  });
  assert.deepEqual([...locations].sort(), ['model.onnx_data', 'model.onnx_data_1', 'model.onnx_data_2']);
  assertSameValues(loaded.model, m.toProto());
  // Streamed in, re-sharded out into another folder, tensor by tensor.
  const dir2 = tmp(t);
  const streamed = await loadModel(saved.path, { externalData: 'stream' });
  let progress = 0;
  const again = await saveModel(streamed.model, join(dir2, 'copy.onnx'), { shardSize: 70 * 1024, externalDataThreshold: 1024, onProgress: (done) => (progress = done) });
  assert.equal(again.dataPaths!.length, 6);
  assert.equal(progress, 6 * 128 * 128 * 4);
  assertSameValues((await loadModel(again.path)).model, m.toProto());
  assert.equal(shardLocation('m.onnx_data', 0), 'm.onnx_data');
  assert.equal(shardLocation('m.onnx_data', 2), 'm.onnx_data_2');
});

test('shards: a tensor larger than shardSize gets a file of its own; a custom externalDataName is the base', async (t) => {
  const dir = tmp(t);
  const saved = await saveModel(chain(3, 128).toProto(), join(dir, 'model.onnx'), { shardSize: 1000, forceExternal: true, externalDataThreshold: 1024, externalDataName: 'w/weights.bin' });
  assert.deepEqual(saved.dataPaths, ['w/weights.bin', 'w/weights.bin_1', 'w/weights.bin_2'].map((f) => join(dir, f)));
  for (const p of saved.dataPaths!) assert.equal(statSync(p).size, 128 * 128 * 4);
  assertSameValues((await loadModel(saved.path)).model, chain(3, 128).toProto());
});

test('shards: unsafe names and bad sizes are refused, nothing written', async (t) => {
  const dir = tmp(t);
  const m = chain(2, 64).toProto();
  const code = (c: string) => (e: unknown) => e instanceof LowbitError && e.code === c;
  await assert.rejects(saveModel(m, join(dir, 'model.onnx'), { shardSize: 1024, externalDataName: '../escape.bin', forceExternal: true }), code('UNSAFE_PATH'));
  await assert.rejects(saveModel(m, join(dir, 'model.onnx'), { shardSize: 0 }), code('BAD_OPTION'));
  await assert.rejects(saveModel(m, join(dir, 'model.onnx'), { shardSize: 1.5 }), code('BAD_OPTION'));
  assert.deepEqual(readdirSync(dir), []);
  // A model whose second shard's location escapes the folder is refused when loaded (stream too).
  const saved = await saveModel(m, join(dir, 'model.onnx'), { shardSize: 20000, forceExternal: true, externalDataThreshold: 1024 });
  const proto = decodeModel(new Uint8Array(readFileSync(saved.path)));
  forEachTensor(proto, (x) => {
    for (const e of x.externalData) if (e.key === 'location' && e.value === 'model.onnx_data_1') e.value = '../model.onnx_data_1';
  });
  const evil = join(dir, 'evil.onnx');
  writeFileSync(evil, encodeModel(proto));
  await assert.rejects(loadModel(evil, { externalData: 'stream' }), code('UNSAFE_PATH'));
});

test('saving over a data file that streamed tensors are read from is refused', async (t) => {
  const dir = tmp(t);
  const saved = await saveModel(chain(2, 64).toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
  const loaded = await loadModel(saved.path, { externalData: 'stream' });
  const before = readFileSync(saved.dataPath!);
  await assert.rejects(saveModel(loaded.model, join(dir, 'other.onnx'), { externalDataName: 'model.onnx.data', externalDataThreshold: 1024 }), (e: unknown) => e instanceof LowbitError && e.code === 'SAME_INPUT_OUTPUT');
  assert.deepEqual(readFileSync(saved.dataPath!), before);
  assert.equal(statSync(join(dir, 'other.onnx'), { throwIfNoEntry: false }), undefined);
});

test('deferred tensors: produced once per save, written to external data, inline when small', async (t) => {
  const dir = tmp(t);
  let produced = 0;
  const big = deferTensor('big', DataType.FLOAT, [256, 64], () => {
    produced++;
    return values(256 * 64, 7);
  });
  const small = deferTensor('small', DataType.FLOAT, [4], () => Float32Array.of(1, 2, 3, 4));
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, [1, 256]);
  b.output(b.op('Add', [b.op('MatMul', [x, 'big']), 'small']), DataType.FLOAT);
  const m = b.build();
  m.graph.setInitializer(big);
  m.graph.setInitializer(small);
  assert.equal(produced, 0, 'nothing produced by building');
  const saved = await saveModel(m.toProto(), join(dir, 'model.onnx'), { externalDataThreshold: 1024, forceExternal: true });
  assert.equal(produced, 1, 'produced exactly once by saving');
  assert.equal(saved.externalTensors, 1, 'deferred tensors of the threshold size or more go external');
  assert.equal(statSync(saved.dataPath!).size, 256 * 64 * 4);
  const back = inits((await loadModel(saved.path)).model);
  assert.deepEqual(tensorStorage(back.get('big')!), values(256 * 64, 7));
  assert.deepEqual(tensorStorage(back.get('small')!), Float32Array.of(1, 2, 3, 4));
  // By default a few produced (not streamed) bytes are written inline: the encoder produces them.
  const inline = await saveModel(m.toProto(), join(dir, 'inline.onnx'));
  assert.equal(inline.dataPath, undefined);
  assert.deepEqual(tensorStorage(inits((await loadModel(inline.path)).model).get('big')!), values(256 * 64, 7));
  // A producer giving the wrong size is an error naming the tensor.
  const bad = deferTensor('bad', DataType.FLOAT, [3], () => new Float32Array(2));
  assert.throws(() => tensorStorage(bad), /bad/);
});

/** Model whose weights include values beyond float16's range (clamped with a warning) and tiny ones (flushed). */
function clampModel(): Model {
  const b = new ModelBuilder({ opset: 17 });
  let x = b.input('x', DataType.FLOAT, [1, 128]);
  for (let i = 0; i < 3; i++) {
    const w = values(128 * 128, 10 + i);
    if (i !== 1) {
      w[5] = 1e6;
      w[9] = -7e4;
    }
    w[11] = 1e-9;
    x = b.op('MatMul', [x, b.initializer(`w${i}`, w, [128, 128])]);
  }
  b.output(x, DataType.FLOAT);
  return b.build();
}

test('convertFloat16 defer: the same files as without, clamping warnings complete after the save', async (t) => {
  for (const weightsOnly of [false, true]) {
    const dirA = tmp(t);
    const dirB = tmp(t);
    const eager = convertFloat16(clampModel(), { weightsOnly });
    const lazy = convertFloat16(clampModel(), { weightsOnly, defer: true });
    assert.equal(lazy.report.clamped.length, 0, 'nothing produced yet');
    assert.equal(lazy.report.tensors, eager.report.tensors);
    assert.equal(lazy.report.bytesAfter, eager.report.bytesAfter);
    const opts = { forceExternal: true, externalDataThreshold: 1024 };
    const a = await saveModel(eager.model.toProto(), join(dirA, 'model.onnx'), opts);
    const b = await saveModel(lazy.model.toProto(), join(dirB, 'model.onnx'), opts);
    assert.deepEqual(readFileSync(b.path), readFileSync(a.path), 'model files identical');
    assert.deepEqual(readFileSync(b.dataPath!), readFileSync(a.dataPath!), 'data files identical');
    assert.deepEqual(lazy.report.clamped.map((c) => c.tensor).sort(), ['w0', 'w2']);
    assert.deepEqual([...lazy.report.warnings].sort(), [...eager.report.warnings].sort());
    assert.equal(lazy.report.flushedToZero, eager.report.flushedToZero);
    assert.ok(eager.report.flushedToZero >= 3);
    // Reading again does not double the report.
    await saveModel(lazy.model.toProto(), join(dirB, 'again.onnx'), opts);
    assert.equal(lazy.report.clamped.length, 2);
  }
});

test('convertFloat16 defer over a streamed model writes the converted weights without loading them', async (t) => {
  const dir = tmp(t);
  const src = await saveModel(clampModel().toProto(), join(dir, 'model.onnx'), { forceExternal: true, externalDataThreshold: 1024 });
  const streamed = await loadModel(src.path, { externalData: 'stream' });
  const r = convertFloat16(new Model(streamed.model), { defer: true });
  for (const x of inits(r.model.toProto()).values()) assert.equal(x.rawData === undefined || x.rawData.length < 1024, true);
  const out = await saveModel(r.model.toProto(), join(dir, 'fp16.onnx'), { shardSize: 40000, externalDataThreshold: 1024 });
  assert.equal(out.dataPaths!.length, 3);
  assert.equal(r.report.clamped.length, 2);
  const eager = convertFloat16(clampModel());
  assertSameValues((await loadModel(out.path)).model, eager.model.toProto());
});
