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
  return classifierHead(b, features, channels[channels.length - 1]! * side * side, normal);
}

/** Gemm(fanIn -> 10) on `features`, the `logits` output [N, 10], and the built model. */
function classifierHead(b: ModelBuilder, features: string, fanIn: number, normal: (n: number, std: number) => Float32Array): Model {
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

/** The builtin name of the MobileNet-style digit model (trained into models/digits-mobilenet.onnx). */
export const DIGIT_MOBILENET_NAME = 'digits-mobilenet';

export interface DigitMobileNetOptions {
  /** Seed of the weight initialisation (default 1). */
  seed?: number;
}

/** One-line description of the MobileNet-style digit model (for help texts and reports). */
export const DIGIT_MOBILENET_SUMMARY =
  'Conv3x3/2 (64; 28 -> 14) -> [DW3x3-BN-Relu -> PW1x1-BN-Relu] x4 (dw 64/1, 64/2, 128/1, 128/2; pw 64, 128, 128, 256; 14 -> 7 -> 4) -> GlobalAveragePool -> Gemm(10)';

/** The depthwise separable blocks: depthwise width (= input channels), stride, pointwise output channels. */
const MOBILENET_BLOCKS: readonly { dw: number; stride: number; pw: number }[] = [
  { dw: 64, stride: 1, pw: 64 },
  { dw: 64, stride: 2, pw: 128 },
  { dw: 128, stride: 1, pw: 128 },
  { dw: 128, stride: 2, pw: 256 },
];

/**
 * Builds the untrained MobileNet-style digit model: input `input` [N, 1, 28, 28] float32 in [0, 1], output
 * `logits` [N, 10]. A stem Conv3x3 stride 2 (1 -> 64 channels, 28 -> 14) with BatchNorm and Relu, then four
 * depthwise separable blocks (depthwise Conv3x3, group = channels, BatchNorm, Relu, then pointwise Conv1x1,
 * BatchNorm, Relu) with depthwise widths 64, 64, 128, 128 (multiples of 16 and at least 64, so ORT's int8
 * depthwise kernel runs every one of them) and stride 2 in blocks 2 and 4 (14 -> 7 -> 4), then
 * GlobalAveragePool -> Flatten (256) -> Gemm(10): about 65k params. Convs have no bias; conv weights are
 * He-normal (fan-in = input channels per group x kernel area), the Gemm weight normal with std 1/sqrt(fan-in),
 * biases and BatchNormalization shifts 0, scales 1. Trained by scripts/train-digits.ts --arch mobilenet into
 * models/digits-mobilenet.onnx.
 */
export function buildDigitMobileNet(opts: DigitMobileNetOptions = {}): Model {
  const rng = mulberry32(opts.seed ?? 1);
  const b = new ModelBuilder({ opset: 13, name: DIGIT_MOBILENET_NAME });
  const normal = (count: number, std: number): Float32Array => Float32Array.from({ length: count }, () => rng.normal() * std);
  /** Conv (no bias) -> BatchNormalization -> Relu. */
  const convBnRelu = (x: string, name: string, cin: number, cout: number, k: number, stride: number, group: number): string => {
    const fanIn = (cin / group) * k * k;
    const w = b.initializer(`${name}.weight`, normal(cout * fanIn, Math.sqrt(2 / fanIn)), [cout, cin / group, k, k]);
    const p = (k - 1) / 2;
    const conv = b.op('Conv', [x, w], { kernel_shape: [k, k], pads: [p, p, p, p], strides: [stride, stride], group }, { name });
    const bn = b.op(
      'BatchNormalization',
      [
        conv,
        b.initializer(`${name}.bn.scale`, new Float32Array(cout).fill(1), [cout]),
        b.initializer(`${name}.bn.bias`, new Float32Array(cout), [cout]),
        b.initializer(`${name}.bn.running_mean`, new Float32Array(cout), [cout]),
        b.initializer(`${name}.bn.running_var`, new Float32Array(cout).fill(1), [cout]),
      ],
      { epsilon: 1e-5 },
      { name: `${name}.bn` },
    );
    return b.op('Relu', [bn], {}, { name: `${name}.relu` });
  };
  const input = b.input('input', DataType.FLOAT, ['N', 1, 28, 28]);
  let x = convBnRelu(input, 'stem', 1, MOBILENET_BLOCKS[0]!.dw, 3, 2, 1);
  MOBILENET_BLOCKS.forEach((blk, i) => {
    x = convBnRelu(x, `block${i + 1}.dw`, blk.dw, blk.dw, 3, blk.stride, blk.dw);
    x = convBnRelu(x, `block${i + 1}.pw`, blk.dw, blk.pw, 1, 1, 1);
  });
  const pooled = b.op('GlobalAveragePool', [x], {}, { name: 'gap' });
  const features = b.op('Flatten', [pooled], { axis: 1 }, { name: 'flatten' });
  return classifierHead(b, features, MOBILENET_BLOCKS[MOBILENET_BLOCKS.length - 1]!.pw, normal);
}
