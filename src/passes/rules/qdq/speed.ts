// The speed policy of static quantization: node shapes for which ONNX Runtime's integer kernel is measured
// slower than its float kernel, so the node stays float even though it could be quantized. One table,
// one row per op type; qdq-plan.ts reads it and reports every decision in the per-node report. Pure.
//
// Measurements: ORT 1.30 CPU EP on the 2-core AMD EPYC VM (AVX-512 VNNI) of this project; "profile" means
// ORT's per-node profiler at 1 thread (2-thread profiles inflate), "end to end" means block-interleaved
// runs as bench/static.ts does them (p10 of the runs, which machine noise disturbs least). All rows
// together on PP-OCR cls, 1 thread: batch 1 0.84x -> 1.22x, batch 32 1.04x -> 1.32x (p10); 2 threads
// (bench/static.ts medians on the shared VM): batch 1 0.90x -> 1.10x, batch 32 1.19x -> 1.30x.

import { attrInt, attrInts } from '../../../onnx/attributes.js';
import { dimsOf } from '../../../onnx/tensor.js';
import type { NodeProto } from '../../../onnx/proto.js';
import type { RuleContext } from './types.js';

/** A node the speed policy keeps float, and what else must stay float so ORT cannot fuse it anyway. */
export interface SpeedDecision {
  /** Starts with "kept float for speed" and says why (the measurements are in the row's comment). */
  reason: string;
  /**
   * Readers of its output read it float too (they stay float or quantize it themselves). Needed whenever
   * its inputs are quantized: ORT turns DQ -> Conv -> Q into QLinearConv even with float weights, and
   * DQ -> pool -> Q into the QLinear pool.
   */
  floatOutput: boolean;
  /**
   * The nodes computing its input, back to the nearest Conv / MatMul / Gemm, stay float too (ORT's QDQ
   * propagation moves a pair through MaxPool, Reshape and Transpose onto an 8-bit input otherwise).
   */
  floatInputs?: boolean;
}

/**
 * The ONNX Runtime backend the rules are for: 'cpu' (onnxruntime-node, MLAS with AVX-512 VNNI here) or 'wasm'
 * (onnxruntime-web's WebAssembly build, 128-bit SIMD, one thread), whose integer kernels differ.
 */
export type SpeedTarget = 'cpu' | 'wasm';

export interface SpeedContext extends RuleContext {
  readonly target: SpeedTarget;
}

/** One row: a decision to keep the node float, or undefined to quantize it. */
export type SpeedRule = (node: NodeProto, ctx: SpeedContext) => SpeedDecision | undefined;

/** Channels of the image a "stem" Conv reads: RGB, RGBA, gray. */
const STEM_MAX_INPUT_CHANNELS = 4;
/** Widest stem output the float kernel wins on (see below). */
const STEM_MAX_OUTPUT_CHANNELS = 16;
/** Largest stem kernel the float kernel wins on: a 7x7 stem is 2-3x faster in int8. */
const STEM_MAX_KERNEL = 3;

/**
 * Conv on a graph input with at most 4 channels, at most 3x3 and at most 16 filters (a narrow "stem").
 * ORT's QLinearConv has no fast path for 3 input channels (its symmetric kernels need a multiple of 4) and
 * at <= 16 output channels the integer GEMM is mostly packing; the float Conv (NCHWc) is 2.5x faster, and
 * the float stem also saves the QuantizeLinear and NCHW->NHWC Transpose of the input image (the pair moves
 * to the stem's output). The input is float and read by the stem alone, so ORT cannot fuse it.
 * Measured: PP-OCR cls stem 3->8 3x3/2, profile at batch 32: QLinearConv 2.07 ms + Q 0.23 + Transpose 0.22
 * vs Conv 0.80 ms; end to end at batch 1 the model goes from 0.86x to 0.89x (1 thread), 0.83x to 0.92x
 * (2 threads). Counter-example kept in int8: a 3->64 7x7/2 stem (K = 147), 1.75x -> 2.56x when quantized.
 */
export function narrowStem(n: NodeProto, ctx: SpeedContext): SpeedDecision | undefined {
  const x = n.input[0];
  const w = n.input[1] ? ctx.graph.initializers.get(n.input[1]) : undefined;
  if (!x || !w || !ctx.graph.isGraphInput(x) || ctx.graph.initializers.has(x)) return undefined;
  // Another reader would quantize the input for itself, and ORT would then fuse DQ -> Conv -> Q anyway.
  if (ctx.graph.consumers(x).length !== 1) return undefined;
  const dims = dimsOf(w);
  if (dims.length !== 4 || attrInt(n, 'group', 1) !== 1) return undefined;
  const [m, c, kh, kw] = dims as [number, number, number, number];
  const kernel = attrInts(n, 'kernel_shape') ?? [kh, kw];
  if (c > STEM_MAX_INPUT_CHANNELS || m > STEM_MAX_OUTPUT_CHANNELS || kernel.some((k) => k > STEM_MAX_KERNEL)) return undefined;
  return {
    reason: `kept float for speed: a ${c}->${m} channel ${kernel.join('x')} stem on the model input runs faster as a float Conv than as ORT's QLinearConv (the pair moves to its output)`,
    floatOutput: false,
  };
}

/** Ops whose integer kernels ORT wraps in NHWC; a MaxPool between them runs as NhwcMaxPool. */
const NHWC_OPS = new Set(['Conv', 'ConvTranspose']);
/** Compute ops with weights: a float region stops at them (their outputs keep their pairs). */
export const REGION_STOPS: ReadonlySet<string> = new Set(['Conv', 'ConvTranspose', 'MatMul', 'Gemm']);

/** Whether any node downstream of `n` (up to the graph outputs) is a Conv. */
function convDownstream(n: NodeProto, ctx: RuleContext): boolean {
  const seen = new Set<NodeProto>();
  const stack = [...n.output];
  while (stack.length) {
    for (const c of ctx.graph.consumers(stack.pop()!)) {
      if (seen.has(c)) continue;
      seen.add(c);
      if (NHWC_OPS.has(c.opType ?? '')) return true;
      stack.push(...c.output.filter((o) => o));
    }
  }
  return false;
}

/**
 * MaxPool in a head with no Conv after it, whose input is computed by elementwise ops (not straight by a
 * Conv). ORT's transpose optimizer only carries the NHWC layout of its integer convolutions to a MaxPool
 * that sits between convolutions or right behind one; elsewhere the 8-bit MaxPool runs in NCHW, where
 * ORT's uint8 MaxPool is a plain loop, about 10x slower than its float MaxPool (MLAS). The head from the
 * last Conv's output up to the MaxPool stays float with it (the Conv keeps its integer kernel).
 * Measured: PP-OCR cls head (hardswish -> MaxPool 2x2 -> GlobalAveragePool -> MatMul), profile at batch 32:
 * uint8 MaxPool 3.39 ms vs float 0.29 ms; end to end at batch 1, with the stem rule, 0.89x -> 0.91x
 * (1 thread), 0.92x -> 0.96x (2 threads).
 */
function maxPoolHead(n: NodeProto, ctx: SpeedContext): SpeedDecision | undefined {
  const x = n.input[0];
  const producer = x ? ctx.graph.producer(x) : undefined;
  if (!producer || NHWC_OPS.has(producer.opType ?? '')) return undefined;
  // Relu / Clip right after a Conv fold into its QLinearConv: the MaxPool then reads the Conv's output.
  const before = producer.input[0] ? ctx.graph.producer(producer.input[0]) : undefined;
  if ((producer.opType === 'Relu' || producer.opType === 'Clip') && before && NHWC_OPS.has(before.opType ?? '')) return undefined;
  if (convDownstream(n, ctx)) return undefined;
  return {
    reason: "kept float for speed: a MaxPool after the last Conv runs in ORT's NCHW uint8 MaxPool, ~10x slower than the float one",
    floatOutput: true,
    floatInputs: true,
  };
}

/** Depthwise widths from which ORT's int8 kernel is at most ~1.3x slower than the float one (multiples of 16). */
const DEPTHWISE_MIN_CHANNELS = 64;
/** ORT's symmetric int8 depthwise kernel (MlasConvSymDepthwise) needs channels in multiples of 16 on x86. */
const DEPTHWISE_CHANNEL_ALIGN = 16;

/**
 * Depthwise Conv (group = input channels = output channels) with fewer than 64 channels or a channel count
 * that is not a multiple of 16: ORT's int8 kernel is 1.5-5x slower than the float one there. ORT's
 * QLinearConv runs depthwise filters through MlasConvSymDepthwise only when the channels are a multiple of
 * 16 (else a generic kernel plus a separate requantize pass), and on narrow layers even that one trails the
 * float NCHWc depthwise kernel. A float Conv between integer ones costs a DequantizeLinear, a QuantizeLinear
 * and layout changes, and its readers (the activation, the next op) run float with it: only worth it for
 * kernels this much slower, so wider multiples of 16 stay int8 (0.5-1.35x there, depending on the map).
 * Measured, profile at batch 32 (pointwise / depthwise / pointwise chains, 6x96 maps), int8 time vs float:
 * 3x3: 8 ch 4.6x slower, 16 ch 3.7x, 24 ch 4.5x, 32 ch 2.4x, 48 ch 1.9x, 88 ch 1.8x, 200 ch 1.5x; 5x5: 8-48
 * ch 2.2-5x, 88 ch 3.8x, 200 ch 2.1x. Multiples of 16 from 64: 3x3 64 ch 1.2x, 96 ch 0.9x, 128 ch 0.7x, 208
 * ch 1.1x; 5x5 96-208 ch 1.3-1.4x; 12x40 maps at batch 8: 5x5 192-384 ch 0.9-1.1x. PP-OCR cls (11
 * depthwise convs of 8-200 channels, all kept float), profile at batch 32: 12.8 ms int8 vs 2.7 ms float; end
 * to end with the stem and head rules, p10 at batch 1: 0.92x -> 1.13x (1 thread), 0.97x -> 1.11x (2
 * threads); batch 32, 1 thread: 1.10x -> 1.40x. Counter-example: the 64-channel 3x3 depthwise conv of the
 * builder CNN stays int8; kept float (with the 64x64 pointwise Conv reading it) the model fell from 1.28x to
 * 0.72x at batch 1.
 */
/*
 * Channel padding (passes/pad-channels.ts, run before planning when the policy is on) grows 88/104/200-channel
 * groups to 96/112/208 with zero channels, which this rule then quantizes. Per kernel the padded int8
 * depthwise conv is still slower than the float one on PP-OCR cls's thin maps (5x5, batch 32, 1 thread:
 * 88 ch 1.64 ms int8 unpadded -> 1.08 ms padded to 96, float 0.43 ms; 104 -> 112: 1.17 -> 0.61 ms, float
 * 0.23; 200 -> 208: 2.08 -> 1.13 ms, float 0.59), but the whole block then stays int8 in NHWC: no
 * DequantizeLinear / QuantizeLinear / NCHWc reorders, and the HardSwish and SE Muls run in QLinearMul. PP-OCR
 * cls at batch 32, 1 thread, kernel sum per run: 33.5 ms unpadded -> 27.0 ms padded (float 30-38 ms).
 * Narrower groups are not padded: 8-48 channel int8 depthwise convs stay 2-5x slower even at 16-64 channels.
 */
/*
 * wasm: every depthwise Conv stays float, at any width, with its readers. onnxruntime-web's build has no
 * symmetric int8 depthwise kernel (MlasConvSymDepthwise is x86/ARM code), so its QLinearConv runs each group
 * through the generic path: PP-OCR cls's 208-channel 5x5 depthwise conv 5.7 ms int8 vs ~1 ms float (per-node
 * profile, batch 1). Measured in onnxruntime-web 1.30 from Node, 1 thread, p10 of 150 runs after warm-up,
 * speedup over fp32, cpu rules -> these: digit MobileNet batch 1 0.65x -> 0.93x, batch 32 0.63x -> 0.87x;
 * PP-OCR cls batch 1 0.36x -> 0.72x, batch 32 0.36x -> 0.71x. Quantizing the pointwise convs behind the
 * float depthwise ones (a Q after each) was slower (MobileNet batch 1 0.64x): in wasm, 1x1 convs on small
 * maps lose to their Q/DQ pairs. Dense 3x3 convs gain under both rule sets (digit CNN batch 8 1.5-1.8x; at batch 1,
 * 0.3-0.5 ms per run, within run-to-run noise: 0.55-1.7x over several runs). bench/web.ts times these models.
 */
function depthwise(n: NodeProto, ctx: SpeedContext): SpeedDecision | undefined {
  const w = n.input[1] ? ctx.graph.initializers.get(n.input[1]) : undefined;
  const group = attrInt(n, 'group', 1);
  if (!w || group <= 1) return undefined;
  const dims = dimsOf(w);
  if (dims.length !== 4 || dims[0] !== group || dims[1] !== 1) return undefined;
  const kernel = attrInts(n, 'kernel_shape') ?? dims.slice(2);
  if (ctx.target === 'wasm') {
    return {
      reason: `kept float for speed: a ${group}-channel ${kernel.join('x')} depthwise Conv; ONNX Runtime's WebAssembly build has no fast int8 depthwise kernel (the pair moves behind its readers)`,
      floatOutput: true,
    };
  }
  if (group % DEPTHWISE_CHANNEL_ALIGN === 0 && group >= DEPTHWISE_MIN_CHANNELS) return undefined;
  return {
    reason: `kept float for speed: a ${group}-channel ${kernel.join('x')} depthwise Conv is slower in ORT's int8 kernel than in its float one (the pair moves behind its readers)`,
    floatOutput: true,
  };
}

/** Conv rows: a narrow stem, then depthwise filters. */
function conv(n: NodeProto, ctx: SpeedContext): SpeedDecision | undefined {
  return narrowStem(n, ctx) ?? depthwise(n, ctx);
}

/** Speed rules by op type (default ONNX domain). */
export const SPEED_RULES: Readonly<Record<string, SpeedRule>> = Object.freeze({
  Conv: conv,
  MaxPool: maxPoolHead,
});
