// A small CNN for 28x28 digits (MNIST): the untrained model that `lowbit train digits-cnn` and
// scripts/train-digits.ts start from. Built with ModelBuilder at opset 13; weights He-initialised from a
// seeded PRNG, so the same seed gives the same bytes everywhere. Pure.

import { LowbitError } from '../errors.js';
import type { Model } from '../onnx/ir.js';
import { ModelBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/proto.js';
import { mulberry32 } from '../rng.js';

/** The builtin name the CLI accepts in place of a model file. */
export const DIGIT_CNN_NAME = 'digits-cnn';

export interface DigitCnnOptions {
  /** Seed of the weight initialisation (default 1). */
  seed?: number;
  /** Output channels of the conv blocks, one block each, 1 to 3 blocks (default [16, 32, 64]). */
  channels?: readonly number[];
}

/** One-line description of the architecture (for help texts and reports). */
export const DIGIT_CNN_SUMMARY = '[Conv3x3-BN-Relu-MaxPool2] x3 (16, 32, 64 channels; 28 -> 14 -> 7 -> 3) -> Flatten (576) -> Gemm(10)';

/**
 * Builds the untrained digit CNN: input `input` [N, 1, 28, 28] float32 in [0, 1], output `logits` [N, 10].
 * Three blocks Conv3x3(pad 1)-BatchNorm-Relu-MaxPool2 with 16, 32 and 64 channels (28 -> 14 -> 7 -> 3), then
 * Flatten (64x3x3 = 576) -> Gemm(10): about 29k params. Convs have no bias (BatchNormalization follows);
 * conv weights are He-normal, the Gemm weight normal with std 1/sqrt(fan-in), biases and BatchNormalization
 * shifts 0, scales 1. Trained by scripts/train-digits.ts into models/digits-cnn.onnx.
 * @throws LowbitError BAD_OPTION for a block count outside 1..3 or channel counts that are not positive integers
 */
export function buildDigitCnn(opts: DigitCnnOptions = {}): Model {
  const channels = opts.channels ?? [16, 32, 64];
  if (channels.length < 1 || channels.length > 3) throw new LowbitError('BAD_OPTION', `the digit CNN has 1 to 3 conv blocks, got ${channels.length}`, 'use e.g. [16, 32, 64]');
  for (const c of channels) {
    if (!Number.isSafeInteger(c) || c < 1) throw new LowbitError('BAD_OPTION', `channel counts must be positive integers, got ${c}`, 'use e.g. [16, 32, 64]');
  }
  const rng = mulberry32(opts.seed ?? 1);
  const b = new ModelBuilder({ opset: 13, name: 'digits-cnn' });
  const normal = (count: number, std: number): Float32Array => Float32Array.from({ length: count }, () => rng.normal() * std);
  const block = (x: string, cin: number, cout: number, i: number): string => {
    const w = b.initializer(`conv${i}.weight`, normal(cout * cin * 9, Math.sqrt(2 / (cin * 9))), [cout, cin, 3, 3]);
    const conv = b.op('Conv', [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name: `conv${i}` });
    const bn = b.op(
      'BatchNormalization',
      [
        conv,
        b.initializer(`bn${i}.scale`, new Float32Array(cout).fill(1), [cout]),
        b.initializer(`bn${i}.bias`, new Float32Array(cout), [cout]),
        b.initializer(`bn${i}.running_mean`, new Float32Array(cout), [cout]),
        b.initializer(`bn${i}.running_var`, new Float32Array(cout).fill(1), [cout]),
      ],
      { epsilon: 1e-5 },
      { name: `bn${i}` },
    );
    const relu = b.op('Relu', [bn], {}, { name: `relu${i}` });
    return b.op('MaxPool', [relu], { kernel_shape: [2, 2], strides: [2, 2] }, { name: `pool${i}` });
  };
  const input = b.input('input', DataType.FLOAT, ['N', 1, 28, 28]);
  let x = input;
  let side = 28;
  channels.forEach((c, i) => {
    x = block(x, i === 0 ? 1 : channels[i - 1]!, c, i + 1);
    side = Math.floor(side / 2);
  });
  const features = b.op('Flatten', [x], { axis: 1 }, { name: 'flatten' });
  const fanIn = channels[channels.length - 1]! * side * side;
  const fcW = b.initializer('fc.weight', normal(10 * fanIn, Math.sqrt(1 / fanIn)), [10, fanIn]);
  const fcB = b.initializer('fc.bias', new Float32Array(10), [10]);
  const logits = b.op('Gemm', [features, fcW, fcB], { transB: 1 }, { name: 'fc' });
  b.output(logits, DataType.FLOAT, ['N', 10]);
  const model = b.build();
  // Name the output `logits` (the builder names values after their node).
  const g = model.graph;
  g.producer(logits)!.output[0] = 'logits';
  g.outputs[0]!.name = 'logits';
  g.touch();
  return model;
}
