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
