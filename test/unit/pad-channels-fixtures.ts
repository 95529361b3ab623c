// A MobileNet-style block for the channel-padding tests: 1x1 Conv (16 -> C) -> Relu -> 3x3 depthwise Conv
// (C) -> Relu -> 1x1 Conv (C -> 24), optionally with a squeeze-and-excitation branch and a HardSwish written
// as Add/Clip/Mul/Div, or with an extra reader of the depthwise output.

import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { mulberry32 } from '../../src/rng.js';

export interface MobileBlockOptions {
  channels: number;
  /** Squeeze-and-excitation after the depthwise Relu. */
  se?: boolean;
  /** HardSwish as PaddleOCR exports it (x * Clip(x + 3, 0, 6) / 6, constant 3 per channel). */
  hardSwish?: boolean;
  /** The depthwise output is also a graph output (the group cannot be padded). */
  exposeDepthwise?: boolean;
  /** The depthwise output also feeds a Concat (the group cannot be padded). */
  concat?: boolean;
}

export function buildMobileBlock(opts: MobileBlockOptions): Model {
  const c = opts.channels;
  const rng = mulberry32(c);
  const b = new ModelBuilder({ opset: 13 });
  const w = (name: string, dims: number[]): string => {
    const n = dims.reduce((a, d) => a * d, 1);
    const fan = dims.slice(1).reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * Math.sqrt(2 / fan);
    return b.initializer(name, data, dims);
  };
  const bias = (name: string, n: number): string => {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * 0.1;
    return b.initializer(name, data, [n]);
  };
  const x = b.input('x', DataType.FLOAT, ['N', 16, 12, 12]);
  let h = b.op('Conv', [x, w('expand_w', [c, 16, 1, 1]), bias('expand_b', c)], { kernel_shape: [1, 1] }, { name: 'expand' });
  h = b.op('Relu', [h]);
  h = b.op('Conv', [h, w('dw_w', [c, 1, 3, 3]), bias('dw_b', c)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: c }, { name: 'dw' });
  const dwOut = h;
  if (opts.hardSwish) {
    const three = b.initializer('three', new Float32Array(c).fill(3), [c, 1, 1]);
    const six = b.initializer('six', Float32Array.of(6), []);
    const clipped = b.op('Clip', [b.op('Add', [h, three]), b.initializer('lo', Float32Array.of(0), []), b.initializer('hi', Float32Array.of(6), [])]);
    h = b.op('Div', [b.op('Mul', [h, clipped]), six]);
  } else {
    h = b.op('Relu', [h]);
  }
  if (opts.se) {
    const s = b.op('GlobalAveragePool', [h]);
    const r = b.op('Relu', [b.op('Conv', [s, w('sq_w', [8, c, 1, 1]), bias('sq_b', 8)], { kernel_shape: [1, 1] }, { name: 'squeeze' })]);
    const e = b.op('HardSigmoid', [b.op('Conv', [r, w('ex_w', [c, 8, 1, 1]), bias('ex_b', c)], { kernel_shape: [1, 1] }, { name: 'excite' })], { alpha: 0.2, beta: 0.5 });
    h = b.op('Mul', [h, e]);
  }
  const y = b.op('Conv', [h, w('project_w', [24, c, 1, 1]), bias('project_b', 24)], { kernel_shape: [1, 1] }, { name: 'project' });
  b.output(y, DataType.FLOAT, ['N', 24, 12, 12]);
  if (opts.exposeDepthwise) b.output(dwOut, DataType.FLOAT, ['N', c, 12, 12]);
  if (opts.concat) b.output(b.op('Concat', [dwOut, dwOut], { axis: 1 }), DataType.FLOAT, ['N', 2 * c, 12, 12]);
  return b.build();
}
