// Models and data for the static-quantization tests and bench/static.ts: a small builder-made CNN that
// exercises every rule family, seeded random inputs, and a calibration source over arrays.

import { mulberry32 } from '../../src/rng.js';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import type { CalibrationData } from '../../src/pipeline/calibrate.js';

/** Standard-normal float32 data, seeded. */
export function normalArray(shape: number[], seed: number, scale = 1): NdArray {
  const rng = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.normal() * scale;
  return { dtype: 'float32', shape, data };
}

/** Batches of one input from a [samples, ...] array (copies, as a data source would). */
export function arraySource(input: string, arr: NdArray): CalibrationData & { count: number } {
  const per = arr.data.length / arr.shape[0]!;
  return {
    count: arr.shape[0]!,
    *batches(b: number) {
      for (let s = 0; s < arr.shape[0]!; s += b) {
        const n = Math.min(b, arr.shape[0]! - s);
        const data = (arr.data as Float32Array).slice(s * per, (s + n) * per);
        yield { [input]: { dtype: 'float32', shape: [n, ...arr.shape.slice(1)], data } as NdArray };
      }
    },
  };
}

/**
 * A small CNN on x [N, 3, 32, 32] -> probs [N, 10]: Conv+Relu, depthwise Conv+Clip(0,6), pointwise Conv,
 * residual Add+Relu, Mul by a constant, MaxPool, two Conv branches into Concat, AveragePool, strided
 * Conv+Relu, GlobalAveragePool, Flatten, Reshape, Gemm (transB=1) classifier, Softmax. He-initialized.
 */
export function buildSmallCnn(seed = 1, opts: { channels?: number } = {}): Model {
  const c = opts.channels ?? 16;
  const rng = mulberry32(seed);
  const b = new ModelBuilder({ opset: 13 });
  const weight = (name: string, dims: number[], fanIn: number): string => {
    const n = dims.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    const s = Math.sqrt(2 / fanIn);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * s;
    return b.initializer(name, data, dims);
  };
  const bias = (name: string, n: number): string => {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * 0.1;
    return b.initializer(name, data, [n]);
  };
  const conv = (x: string, cin: number, cout: number, k: number, name: string, extra: Record<string, number | number[]> = {}): string => {
    const group = typeof extra.group === 'number' ? extra.group : 1;
    const w = weight(`${name}_W`, [cout, cin / group, k, k], (cin / group) * k * k);
    return b.op('Conv', [x, w, bias(`${name}_B`, cout)], { kernel_shape: [k, k], pads: [k >> 1, k >> 1, k >> 1, k >> 1], ...extra }, { name });
  };
  const x = b.input('x', DataType.FLOAT, ['N', 3, 32, 32]);
  const c1 = b.op('Relu', [conv(x, 3, c, 3, 'conv1')], {}, { name: 'relu1' });
  const lo = b.initializer('clip_min', Float32Array.of(0), []);
  const hi = b.initializer('clip_max', Float32Array.of(6), []);
  const dw = b.op('Clip', [conv(c1, c, c, 3, 'dwconv', { group: c }), lo, hi], {}, { name: 'clip_dw' });
  const pw = conv(dw, c, c, 1, 'pwconv');
  const res = b.op('Relu', [b.op('Add', [pw, c1], {}, { name: 'residual' })], {}, { name: 'relu_res' });
  const scaled = b.op('Mul', [res, b.initializer('mul_k', Float32Array.from({ length: c }, (_, i) => 0.5 + i / c), [1, c, 1, 1])], {}, { name: 'scale' });
  const pool = b.op('MaxPool', [scaled], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'maxpool' });
  const ba = b.op('Relu', [conv(pool, c, c / 2, 1, 'branch_a')], {}, { name: 'relu_a' });
  const bb = b.op('Relu', [conv(pool, c, c / 2, 3, 'branch_b')], {}, { name: 'relu_b' });
  const cat = b.op('Concat', [ba, bb], { axis: 1 }, { name: 'concat' });
  const avg = b.op('AveragePool', [cat], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'avgpool' });
  const c3 = b.op('Relu', [conv(avg, c, 2 * c, 3, 'conv3', { strides: [2, 2] })], {}, { name: 'relu3' });
  const gap = b.op('GlobalAveragePool', [c3], {}, { name: 'gap' });
  const flat = b.op('Flatten', [gap], { axis: 1 }, { name: 'flatten' });
  const shaped = b.op('Reshape', [flat, b.initializer('fc_shape', BigInt64Array.of(-1n, BigInt(2 * c)), [2])], {}, { name: 'reshape' });
  const logits = b.op('Gemm', [shaped, weight('fc_W', [10, 2 * c], 2 * c), bias('fc_B', 10)], { transB: 1 }, { name: 'fc' });
  const probs = b.op('Softmax', [logits], { axis: -1 }, { name: 'softmax' });
  b.output(probs, DataType.FLOAT, ['N', 10]);
  return b.build();
}

/** Seeded He-style weights and small biases for the builder models below. */
function weightMaker(b: ModelBuilder, seed: number) {
  const rng = mulberry32(seed);
  const fill = (n: number, s: number): Float32Array => {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * s;
    return data;
  };
  return {
    weight: (name: string, dims: number[], fanIn: number, gain = 2): string => b.initializer(name, fill(dims.reduce((a, d) => a * d, 1), Math.sqrt(gain / fanIn)), dims),
    bias: (name: string, n: number): string => b.initializer(name, fill(n, 0.1), [n]),
  };
}

/**
 * A VGG-style dense CNN on x [N, 3, 32, 32] -> probs [N, 10]: two 3x3 Conv+Relu at `channels`, MaxPool,
 * two at 2x`channels`, MaxPool, one at 4x`channels`, GlobalAveragePool, Flatten, Gemm, Softmax.
 */
export function buildDenseCnn(seed = 1, opts: { channels?: number } = {}): Model {
  const c = opts.channels ?? 64;
  const b = new ModelBuilder({ opset: 13 });
  const { weight, bias } = weightMaker(b, seed);
  let layer = 0;
  const convRelu = (x: string, cin: number, cout: number): string => {
    const name = `conv${++layer}`;
    const y = b.op('Conv', [x, weight(`${name}_W`, [cout, cin, 3, 3], cin * 9), bias(`${name}_B`, cout)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name });
    return b.op('Relu', [y], {}, { name: `relu${layer}` });
  };
  const pool = (x: string, name: string): string => b.op('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2] }, { name });
  const x = b.input('x', DataType.FLOAT, ['N', 3, 32, 32]);
  let h = convRelu(convRelu(x, 3, c), c, c);
  h = pool(h, 'pool1');
  h = convRelu(convRelu(h, c, 2 * c), 2 * c, 2 * c);
  h = pool(h, 'pool2');
  h = convRelu(h, 2 * c, 4 * c);
  const flat = b.op('Flatten', [b.op('GlobalAveragePool', [h], {}, { name: 'gap' })], { axis: 1 }, { name: 'flatten' });
  const logits = b.op('Gemm', [flat, weight('fc_W', [10, 4 * c], 4 * c, 1), bias('fc_B', 10)], { transB: 1 }, { name: 'fc' });
  b.output(b.op('Softmax', [logits], { axis: -1 }, { name: 'softmax' }), DataType.FLOAT, ['N', 10]);
  return b.build();
}

/**
 * A MatMul-heavy transformer-style encoder on x [N, seq, hidden] -> [N, seq, hidden]: `layers` blocks of
 * multi-head self-attention (MatMul + bias Add for q/k/v/out, Reshape/Transpose to heads, MatMul q·kᵀ,
 * Mul by 1/sqrt(head dim), Softmax, MatMul by v) and a Relu MLP (hidden -> 4 x hidden -> hidden), each
 * with a residual Add. No normalization layers (weights are scaled so activations stay bounded).
 */
export function buildTransformer(seed = 1, opts: { hidden?: number; seq?: number; heads?: number; layers?: number } = {}): Model {
  const d = opts.hidden ?? 512;
  const seq = opts.seq ?? 64;
  const heads = opts.heads ?? 8;
  const hd = d / heads;
  const b = new ModelBuilder({ opset: 13 });
  const { weight, bias } = weightMaker(b, seed);
  const linear = (x: string, cin: number, cout: number, name: string, gain = 1): string =>
    b.op('Add', [b.op('MatMul', [x, weight(`${name}_W`, [cin, cout], cin, gain)], {}, { name }), bias(`${name}_B`, cout)], {}, { name: `${name}_bias` });
  const toHeads = b.initializer('heads_shape', BigInt64Array.of(0n, 0n, BigInt(heads), BigInt(hd)), [4]);
  const fromHeads = b.initializer('model_shape', BigInt64Array.of(0n, 0n, BigInt(d)), [3]);
  const invSqrt = b.initializer('inv_sqrt_hd', Float32Array.of(1 / Math.sqrt(hd)), []);
  let h = b.input('x', DataType.FLOAT, ['N', seq, d]);
  for (let l = 0; l < (opts.layers ?? 4); l++) {
    const p = `l${l}`;
    const split = (name: string, perm: number[]): string =>
      b.op('Transpose', [b.op('Reshape', [linear(h, d, d, `${p}_${name}`), toHeads], {}, { name: `${p}_${name}_heads` })], { perm }, { name: `${p}_${name}_t` });
    const q = split('q', [0, 2, 1, 3]);
    const kT = split('k', [0, 2, 3, 1]);
    const v = split('v', [0, 2, 1, 3]);
    const scores = b.op('Mul', [b.op('MatMul', [q, kT], {}, { name: `${p}_qk` }), invSqrt], {}, { name: `${p}_scale` });
    const probs = b.op('Softmax', [scores], { axis: -1 }, { name: `${p}_softmax` });
    const ctx = b.op('Transpose', [b.op('MatMul', [probs, v], {}, { name: `${p}_pv` })], { perm: [0, 2, 1, 3] }, { name: `${p}_ctx_t` });
    const attn = linear(b.op('Reshape', [ctx, fromHeads], {}, { name: `${p}_ctx` }), d, d, `${p}_o`);
    h = b.op('Add', [h, attn], {}, { name: `${p}_res1` });
    const mlp = linear(b.op('Relu', [linear(h, d, 4 * d, `${p}_fc1`, 2)], {}, { name: `${p}_relu` }), 4 * d, d, `${p}_fc2`);
    h = b.op('Add', [h, mlp], {}, { name: `${p}_res2` });
  }
  b.output(h, DataType.FLOAT, ['N', seq, d]);
  return b.build();
}
