// fp16 / bf16 conversion (src/passes/float16.ts) run in ONNX Runtime: the fixture CNN and PaddleOCR rec, converted,
// run on the CPU provider with about half the bytes and outputs close to the float32 model's.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ocrRecBatch } from '../../src/data/realistic.js';
import { realModelPath } from '../../src/data/realistic-models.js';
import { loadModel } from '../../src/io/model-file.js';
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { convertFloat16, type Float16Options } from '../../src/passes/float16.js';
import { float16ArrayToFloat32, float32ArrayToFloat16 } from '../../src/quant/float16.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { Session } from '../../src/runtime/session.js';
import { assertFails, lowbit } from '../cli-helpers.js';
import { buildSmallCnn, normalArray } from './quantize-static-fixtures.js';

async function run(model: Model, feeds: Record<string, NdArray>): Promise<NdArray[]> {
  const s = await Session.create(encodeModel(model.toProto()));
  try {
    const out = await s.run(feeds);
    return Object.values(out);
  } finally {
    await s.release();
  }
}

const bytes = (m: Model): number => encodeModel(m.toProto()).length;

async function measure(model: Model, feeds: Record<string, NdArray>, opts: Float16Options): Promise<{ sqnr: number; ratio: number; model: Model; ref: NdArray; out: NdArray }> {
  const r = convertFloat16(model, opts);
  const [ref] = await run(model, feeds);
  const [out] = await run(r.model, feeds);
  assert.equal(out!.dtype, 'float32');
  assert.deepEqual(out!.shape, ref!.shape);
  return { sqnr: sqnrDb(ref!.data as Float32Array, out!.data as Float32Array), ratio: bytes(r.model) / bytes(model), model: r.model, ref: ref!, out: out! };
}

describe('float16 pass in ORT', () => {
  it('fixture CNN: fp16 runs on the CPU provider, half the size, output SQNR high', async () => {
    const m = buildSmallCnn(3, { channels: 32 });
    const x = normalArray([4, 3, 32, 32], 7);
    const r = await measure(m, { x }, { type: 'float16' });
    console.log(`cnn fp16: SQNR ${r.sqnr.toFixed(1)} dB, size ratio ${r.ratio.toFixed(3)}`);
    assert.ok(r.sqnr > 55, `SQNR ${r.sqnr}`);
    assert.ok(r.ratio > 0.45 && r.ratio < 0.56, `ratio ${r.ratio}`);
    // the computation really is float16: the graph input is cast, the Conv weights are FLOAT16
    assert.ok([...r.model.graph.initializers.values()].some((t) => t.dataType === DataType.FLOAT16));
  });

  it('fixture CNN: fp16 with float16 IO types runs on float16 feeds', async () => {
    const m = buildSmallCnn(3, { channels: 32 });
    const x = normalArray([2, 3, 32, 32], 8);
    const r = convertFloat16(m, { keepIoTypes: false });
    const [ref] = await run(m, { x });
    assert.equal(r.model.graph.inputs[0]!.type?.tensorType?.elemType, DataType.FLOAT16);
    assert.equal(r.model.graph.outputs[0]!.type?.tensorType?.elemType, DataType.FLOAT16);
    const [out] = await run(r.model, { x: { dtype: 'float16', shape: x.shape, data: float32ArrayToFloat16(x.data as Float32Array) } });
    assert.equal(out!.dtype, 'float16');
    const outF = float16ArrayToFloat32(out!.data as Uint16Array);
    const s = sqnrDb(ref!.data as Float32Array, outF);
    assert.ok(s > 50, `SQNR ${s}`);
  });

  it('fixture CNN: bf16 weights-only runs on the CPU provider, half the size', async () => {
    const m = buildSmallCnn(3, { channels: 32 });
    const x = normalArray([4, 3, 32, 32], 7);
    const r = await measure(m, { x }, { type: 'bfloat16', weightsOnly: true });
    console.log(`cnn bf16 weights-only: SQNR ${r.sqnr.toFixed(1)} dB, size ratio ${r.ratio.toFixed(3)}`);
    assert.ok(r.sqnr > 40, `SQNR ${r.sqnr}`);
    assert.ok(r.ratio > 0.45 && r.ratio < 0.56, `ratio ${r.ratio}`);
  });

  it('Constant, Cast(to=FLOAT), ConstantOfShape, Resize scales and a blocked Exp: the converted model runs and matches', async () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, [1, 1, 2, 2]);
    const i = b.input('i', DataType.INT64, [1]);
    const k = b.op('Constant', [], { value_float: { kind: 'float', value: 2.5 } });
    const scales = b.initializer('scales', Float32Array.from([1, 1, 2, 2]), [4]);
    const r = b.op('Resize', [b.op('Mul', [x, k]), '', scales], { mode: 'nearest' });
    const z = b.op('ConstantOfShape', [b.initializer('shape', BigInt64Array.from([1n]), [1])], {});
    const sum = b.op('Add', [b.op('Add', [r, b.op('Cast', [i], { to: DataType.FLOAT })]), z]);
    b.output(b.op('Exp', [sum]), DataType.FLOAT);
    const m = b.build();
    const feeds: Record<string, NdArray> = { x: { dtype: 'float32', shape: [1, 1, 2, 2], data: Float32Array.from([0.1, -0.2, 0.3, 0.45]) }, i: { dtype: 'int64', shape: [1], data: BigInt64Array.from([1n]) } };
    const res = await measure(m, feeds, { type: 'float16' });
    assert.equal(res.ref.shape.join(), '1,1,4,4');
    assert.ok(res.sqnr > 55, `SQNR ${res.sqnr}`);
  });

  it('PP-OCR rec: fp16 runs on the CPU provider, half the size, output SQNR high', async () => {
    const m = new Model((await loadModel(realModelPath('ocrRec'))).model);
    const batch = ocrRecBatch(2, 11);
    const r = await measure(m, { x: batch.input }, { type: 'float16' });
    console.log(`ocr rec fp16: SQNR ${r.sqnr.toFixed(1)} dB, size ratio ${r.ratio.toFixed(3)}`);
    assert.ok(r.sqnr > 45, `SQNR ${r.sqnr}`);
    assert.ok(r.ratio > 0.45 && r.ratio < 0.56, `ratio ${r.ratio}`);
  });
});

describe('lowbit quantize --mode fp16 | bf16', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lowbit-fp16-'));
  const input = join(tmp, 'cnn.onnx');
  writeFileSync(input, encodeModel(buildSmallCnn(3, { channels: 32 }).toProto()));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--mode fp16 --json: writes a float16 model about half the size, verified with high SQNR', async () => {
    const out = join(tmp, 'cnn.fp16.onnx');
    const r = await lowbit(['quantize', input, '-o', out, '--mode', 'fp16', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { output: string; sizeBytes: { before: number; after: number }; fidelity: { sqnrDb: number; samples: number }; notes: string[] };
    assert.equal(j.output, out);
    assert.equal(j.sizeBytes.before, statSync(input).size);
    assert.equal(j.sizeBytes.after, statSync(out).size);
    const ratio = j.sizeBytes.after / j.sizeBytes.before;
    assert.ok(ratio > 0.45 && ratio < 0.56, `ratio ${ratio}`);
    assert.ok(j.fidelity.samples > 0);
    assert.ok(j.fidelity.sqnrDb > 55, `SQNR ${j.fidelity.sqnrDb}`);
    assert.match(j.notes[0]!, /^fp16: \d+ nodes compute in float16/);
    const m = new Model((await loadModel(out)).model);
    assert.ok([...m.graph.initializers.values()].every((t) => t.dataType !== DataType.FLOAT || t.dims?.length === 1));
    assert.equal(m.graph.inputs[0]!.type?.tensorType?.elemType, DataType.FLOAT);
  });

  it('--mode fp16 --no-keep-io-types writes float16 inputs and outputs; --mode bf16 stores bfloat16 weights', async () => {
    const out = join(tmp, 'cnn.fp16io.onnx');
    const r = await lowbit(['quantize', input, '-o', out, '--mode', 'fp16', '--no-keep-io-types']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /float16/);
    const m = new Model((await loadModel(out)).model);
    assert.equal(m.graph.inputs[0]!.type?.tensorType?.elemType, DataType.FLOAT16);
    assert.equal(m.graph.outputs[0]!.type?.tensorType?.elemType, DataType.FLOAT16);

    const outB = join(tmp, 'cnn.bf16.onnx');
    const b = await lowbit(['quantize', input, '-o', outB, '--mode', 'bf16', '--json']);
    assert.equal(b.code, 0, b.stderr);
    const j = JSON.parse(b.stdout) as { fidelity: { sqnrDb: number }; notes: string[]; sizeBytes: { before: number; after: number } };
    assert.ok(j.fidelity.sqnrDb > 40, `SQNR ${j.fidelity.sqnrDb}`);
    assert.ok(j.sizeBytes.after / j.sizeBytes.before < 0.56);
    assert.match(j.notes[0]!, /no bfloat16 arithmetic kernels/);
    const mb = new Model((await loadModel(outB)).model);
    assert.ok([...mb.graph.initializers.values()].some((t) => t.dataType === DataType.BFLOAT16));
  });

  it('refuses calibration and quantization options in fp16 / bf16 modes', async () => {
    const out = join(tmp, 'x.onnx');
    assertFails(await lowbit(['quantize', input, '-o', out, '--mode', 'fp16', '--method', 'entropy']), 2, /calibration options \(method\) apply to static mode only/);
    assertFails(await lowbit(['quantize', input, '-o', out, '--mode', 'fp16', '--weight-type', 'int4']), 2, /weightType does not apply to fp16 mode/);
    assertFails(await lowbit(['quantize', input, '-o', out, '--mode', 'bf16', '--no-keep-io-types']), 2, /bf16 mode keeps float32 inputs and outputs/);
    assertFails(await lowbit(['quantize', input, '-o', out, '--keep-io-types']), 2, /keepIoTypes applies to fp16 and bf16 modes only/);
  });
});
