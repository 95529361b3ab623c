// Dynamically quantized builder-made models (MLP, Gemm variants, forced ConvInteger, LSTM) run in
// onnxruntime-node and match their float originals. Inputs: seeded random normal (synthetic).
// Bounds sit below the values measured on these seeds (onnxruntime-node 1.30 CPU, see comments).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { floatAttr } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { decodeModel, decodeTensor } from '../../src/onnx/decode.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { DataType } from '../../src/onnx/proto.js';
import type { NdArray } from '../../src/ndarray.js';
import { mulberry32 } from '../../src/data/realistic.js';
import { cosineSimilarity, sqnrDb } from '../../src/quant/metrics.js';
import { Session } from '../../src/runtime/session.js';
import { quantizeDynamic, type QuantizeDynamicOptions } from '../../src/passes/quantize-dynamic.js';

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}
const arr = (shape: number[], seed: number, scale = 1): NdArray => ({ dtype: 'float32', shape, data: randn(shape.reduce((a, b) => a * b, 1), seed, scale) });

/** Runs float and quantized models on the same feeds; returns cosine / SQNR per output plus the sizes. */
async function compare(model: Model, opts: QuantizeDynamicOptions, feeds: Record<string, NdArray>) {
  const fbytes = encodeModel(model.toProto());
  const { model: qm, report } = quantizeDynamic(model, opts);
  const qbytes = encodeModel(qm.toProto());
  const [sf, sq] = [await Session.create(fbytes), await Session.create(qbytes)];
  const [of, oq] = [await sf.run(feeds), await sq.run(feeds)];
  await sf.release();
  await sq.release();
  const out = Object.keys(of).map((k) => {
    const r = of[k]!.data as Float32Array;
    const t = oq[k]!.data as Float32Array;
    assert.deepEqual(oq[k]!.shape, of[k]!.shape);
    return { name: k, cos: cosineSimilarity(r, t), sqnr: sqnrDb(r, t) };
  });
  const ratio = qbytes.length / fbytes.length;
  const fmt = out.map((o) => `${o.name} cos ${o.cos.toFixed(5)} SQNR ${o.sqnr.toFixed(1)} dB`).join('; ');
  console.log(`${JSON.stringify(opts)}: ${fmt}; size ratio ${ratio.toFixed(3)}`);
  return { out, report, ratio };
}

/** x [N, D] -> (MatMul + Add + Relu) x layers -> y */
function mlp(d: number, layers: number): Model {
  const b = new ModelBuilder({ opset: 13 });
  let h = b.input('x', DataType.FLOAT, ['N', d]);
  for (let l = 0; l < layers; l++) {
    const w = b.initializer(`W${l}`, randn(d * d, 10 + l, 1 / Math.sqrt(d)), [d, d]);
    const bias = b.initializer(`b${l}`, randn(d, 20 + l, 0.1), [d]);
    h = b.op('Add', [b.op('MatMul', [h, w]), bias]);
    if (l < layers - 1) h = b.op('Relu', [h]);
  }
  b.output(h, DataType.FLOAT, ['N', d]);
  return b.build();
}

describe('dynamic quantization in ORT: MLP', () => {
  const cases: [string, QuantizeDynamicOptions][] = [
    ['int8 per channel', { weightType: 'int8', perChannel: true }],
    ['int8 per tensor', { weightType: 'int8', perChannel: false }],
    ['uint8 per tensor', { weightType: 'uint8', perChannel: false }],
    ['int8 per channel, MatMulInteger form', { weightType: 'int8', perChannel: true, matmul: 'MatMulInteger' }],
    ['int8 per channel, reduceRange', { weightType: 'int8', perChannel: true, reduceRange: true }],
  ];
  for (const [label, opts] of cases) {
    it(`${label}: 4 x 256 MLP at batch 1 and 16 matches float`, async () => {
      for (const n of [1, 16]) {
        const { out, report, ratio } = await compare(mlp(256, 4), opts, { x: arr([n, 256], 7 + n) });
        assert.equal(report.quantized.length, 4);
        // Measured: cos 0.9996-0.9999, SQNR 33.5-37.2 dB (reduceRange 31-32 dB); size ratio 0.25-0.26.
        assert.ok(out[0]!.cos > 0.999, `${label} batch ${n}: cosine ${out[0]!.cos}`);
        assert.ok(out[0]!.sqnr > 25, `${label} batch ${n}: SQNR ${out[0]!.sqnr}`);
        assert.ok(ratio < 0.3, `size ratio ${ratio}`);
      }
    });
  }
});

describe('dynamic quantization in ORT: Gemm variants', () => {
  type CSpec = 'none' | [number, number] | [number] | 'input';
  const variants: [string, Record<string, number | ReturnType<typeof floatAttr>>, CSpec][] = [
    ['plain with C [N]', {}, [64]],
    ['transB=1, alpha=0.5, no C', { transB: 1, alpha: 0.5 }, 'none'],
    ['transB=1, beta=2, C [1, N]', { transB: 1, beta: floatAttr(2) }, [1, 64]],
    ['alpha=1.5, beta=0.25, C [M, N]', { alpha: 1.5, beta: 0.25 }, [8, 64]],
    ['beta=0.5, C an input', { beta: 0.5 }, 'input'],
    ['beta=0 ignores C', { beta: floatAttr(0) }, [64]],
  ];
  for (const [label, attrs, c] of variants) {
    it(label, async () => {
      const b = new ModelBuilder({ opset: 13 });
      const a = b.input('a', DataType.FLOAT, [8, 128]);
      const transB = attrs.transB === 1;
      const w = b.initializer('W', randn(128 * 64, 3, 0.1), transB ? [64, 128] : [128, 64]);
      const inputs = [a, w];
      const feeds: Record<string, NdArray> = { a: arr([8, 128], 4) };
      if (c === 'input') {
        inputs.push(b.input('c', DataType.FLOAT, [8, 64]));
        feeds.c = arr([8, 64], 5);
      } else if (c !== 'none') inputs.push(b.initializer('C', randn(c.reduce((p, d) => p * d, 1), 6), c));
      b.output(b.op('Gemm', inputs, attrs), DataType.FLOAT, [8, 64]);
      const { out, report } = await compare(b.build(), { weightType: 'int8', perChannel: true }, feeds);
      assert.equal(report.quantized.length, 1, JSON.stringify(report));
      // Measured: cos >= 0.99995, SQNR 40-46.5 dB.
      assert.ok(out[0]!.cos > 0.999, `cosine ${out[0]!.cos}`);
      assert.ok(out[0]!.sqnr > 30, `SQNR ${out[0]!.sqnr}`);
    });
  }
});

describe('dynamic quantization in ORT: Conv (forced) and LSTM', () => {
  it('a small CNN with conv: ConvInteger (int8 per channel, and uint8 per tensor) matches float', async () => {
    const b = new ModelBuilder({ opset: 13 });
    let h = b.input('x', DataType.FLOAT, ['N', 3, 16, 16]);
    // [out channels, in channels per group, kernel, group]
    const shapes: [number, number, number, number][] = [[8, 3, 3, 1], [16, 4, 3, 2], [16, 1, 3, 16]];
    shapes.forEach(([co, ci, k, group], i) => {
      const w = b.initializer(`W${i}`, randn(co * ci * k * k, 30 + i, Math.sqrt(2 / (ci * k * k))), [co, ci, k, k]);
      const bias = b.initializer(`B${i}`, randn(co, 40 + i, 0.1), [co]);
      h = b.op('Relu', [b.op('Conv', [h, w, bias], { pads: [1, 1, 1, 1], group })]);
    });
    b.output(h, DataType.FLOAT);
    const model = b.build();
    for (const opts of [
      { weightType: 'int8', perChannel: true, conv: 'ConvInteger' },
      { weightType: 'uint8', perChannel: false, conv: 'ConvInteger' },
    ] as QuantizeDynamicOptions[]) {
      const { out, report } = await compare(model, opts, { x: arr([2, 3, 16, 16], 8) });
      assert.equal(report.quantized.length, 3);
      // Measured: cos 0.9998-0.9999, SQNR 34.3-36.2 dB.
      assert.ok(out[0]!.cos > 0.999, `${opts.weightType}: cosine ${out[0]!.cos}`);
      assert.ok(out[0]!.sqnr > 25, `${opts.weightType}: SQNR ${out[0]!.sqnr}`);
    }
  });

  it('a bidirectional LSTM becomes DynamicQuantizeLSTM and matches float (per channel and per direction)', async () => {
    const b = new ModelBuilder({ opset: 14 });
    const x = b.input('x', DataType.FLOAT, [10, 2, 16]);
    const hs = 32;
    const w = b.initializer('W', randn(2 * 4 * hs * 16, 50, 0.25), [2, 4 * hs, 16]);
    const r = b.initializer('R', randn(2 * 4 * hs * hs, 51, 0.15), [2, 4 * hs, hs]);
    const bias = b.initializer('B', randn(2 * 8 * hs, 52, 0.1), [2, 8 * hs]);
    const outs = b.op('LSTM', [x, w, r, bias], { hidden_size: hs, direction: 'bidirectional' }, { outputs: 3 });
    for (const o of outs) b.output(o, DataType.FLOAT);
    for (const perChannel of [true, false]) {
      const { out, report, ratio } = await compare(b.build(), { weightType: 'int8', perChannel }, { x: arr([10, 2, 16], 9) });
      assert.equal(report.quantized[0]!.form, 'DynamicQuantizeLSTM');
      // Measured: cos >= 0.9999, SQNR 37.5-39.3 dB on Y, Y_h, Y_c; size ratio 0.29-0.34.
      for (const o of out) {
        assert.ok(o.cos > 0.999, `${o.name} perChannel=${perChannel}: cosine ${o.cos}`);
        assert.ok(o.sqnr > 25, `${o.name} perChannel=${perChannel}: SQNR ${o.sqnr}`);
      }
      assert.ok(ratio < 0.4, `size ratio ${ratio}`);
    }
  });
});

const TESTDATA = '/usr/share/libonnx-testdata/data/pytorch-converted';
const present = existsSync(TESTDATA);
const skip = present || process.env.CI ? false : 'libonnx-testdata is not installed (apt install libonnx-testdata)';

describe('dynamic quantization in ORT: old PyTorch exports (libonnx-testdata, IR 3, opset 6)', { skip }, () => {
  for (const [name, form] of [
    ['test_Linear', 'DynamicQuantizeMatMul (+bias) (Gemm: transB folded)'],
    ['test_Linear_no_bias', 'DynamicQuantizeMatMul (Transpose folded)'],
  ] as const) {
    it(`${name}: quantized as ${form}, matches the reference output`, async () => {
      assert.ok(present, `${TESTDATA} is missing; CI must install libonnx-testdata`);
      const dir = `${TESTDATA}/${name}`;
      const { model, report } = quantizeDynamic(new Model(decodeModel(new Uint8Array(readFileSync(`${dir}/model.onnx`)))), { weightType: 'int8', perChannel: true });
      assert.deepEqual(report.quantized.map((q) => q.form), [form]);
      const x = decodeTensor(new Uint8Array(readFileSync(`${dir}/test_data_set_0/input_0.pb`)));
      const y = decodeTensor(new Uint8Array(readFileSync(`${dir}/test_data_set_0/output_0.pb`)));
      const s = await Session.create(encodeModel(model.toProto()));
      const out = await s.run({ [s.inputNames[0]!]: { dtype: 'float32', shape: dimsOf(x), data: tensorStorage(x) as Float32Array } });
      await s.release();
      const got = Object.values(out)[0]!;
      assert.deepEqual(got.shape, dimsOf(y));
      // Measured: cosine 0.99997-0.99998 against the float reference output.
      const cos = cosineSimilarity(tensorStorage(y) as Float32Array, got.data as Float32Array);
      assert.ok(cos > 0.999, `cosine ${cos}`);
    });
  }
});
