// A decoder-only transformer (GPT-style, pre-LayerNorm) built with the IR builder from standard ONNX ops (opset 17),
// with seeded random weights at realistic scales: for structure, memory and weight-only quantization tests and
// benchmarks at real sizes (a 24-layer d=1024 model has 1.4 GB of float32 weights). With `deferred` every weight
// matrix is a deferred tensor, generated when it is read or saved, so such a model is written without holding it.
// Pure.

import { LowbitError } from '../errors.js';
import { floatAttr } from '../onnx/attributes.js';
import { ModelBuilder } from '../onnx/builder.js';
import type { Model } from '../onnx/ir.js';
import { DataType, type TensorProto } from '../onnx/proto.js';
import { deferTensor, makeTensor } from '../onnx/tensor.js';
import { mulberry32 } from '../rng.js';

export interface TransformerOptions {
  /** Decoder blocks. */
  layers: number;
  /** Hidden size (a multiple of `heads`). */
  dModel: number;
  /** Attention heads. */
  heads: number;
  /** Inner size of the feed-forward block (typically 4 × dModel). */
  ffn: number;
  /** Vocabulary size: rows of the token embedding, columns of the logits. */
  vocab: number;
  /** Sequence length: the positional table's rows, and the model's fixed sequence dim. */
  seq: number;
  /** Seed of the weights (default 1): the same seed gives the same bytes everywhere. */
  seed?: number;
  /** The LM head reads the token embedding's transpose, stored as its own initializer (as exporters write tied weights). Default true. */
  tiedEmbeddings?: boolean;
  /** Weight matrices and embeddings as deferred tensors, generated on each read or save (src/onnx/deferred.ts). Default false. */
  deferred?: boolean;
}

/** Standard deviation of the weights (GPT-2's initialisation). */
const STD = 0.02;
/** Output columns per weight matrix scaled up, and by how much: the few large-magnitude channels trained LLMs have. */
const OUTLIER_COLUMNS = 2;
const OUTLIER_SCALE = 12;

/** Float32 parameter count and bytes of the weights `buildTransformer` makes (LayerNorms, biases, mask and scalar constants included; `tiedEmbeddings` still stores the LM head). */
export function transformerSize(o: Pick<TransformerOptions, 'layers' | 'dModel' | 'ffn' | 'vocab' | 'seq'> & { tiedEmbeddings?: boolean }): { params: number; bytes: number } {
  const d = o.dModel;
  const perLayer = 4 * d * d + 4 * d + 2 * d * o.ffn + o.ffn + d + 4 * d;
  const params = o.vocab * d * 2 + o.seq * d + o.layers * perLayer + 2 * d + o.seq * o.seq + 4; // + 4 scalar constants
  return { params, bytes: params * 4 };
}

function check(o: TransformerOptions): void {
  for (const k of ['layers', 'dModel', 'heads', 'ffn', 'vocab', 'seq'] as const) {
    const v = o[k];
    if (!Number.isSafeInteger(v) || v < 1) throw new LowbitError('BAD_OPTION', `transformer option ${k} must be a positive integer, got ${v}`, 'e.g. { layers: 2, dModel: 128, heads: 4, ffn: 512, vocab: 1000, seq: 16 }');
  }
  if (o.dModel % o.heads !== 0) throw new LowbitError('BAD_OPTION', `dModel ${o.dModel} is not a multiple of heads ${o.heads}`, 'pick heads dividing dModel, e.g. dModel 512 with 8 heads');
}

/** Values of one weight: normal(0, std) with OUTLIER_COLUMNS columns (last dim) scaled; seeded per tensor, so generation order does not matter. */
function weightValues(seed: number, index: number, dims: readonly number[], std: number, outliers: boolean): Float32Array {
  const rng = mulberry32((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
  const n = dims.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  const cols = dims[dims.length - 1]!;
  if (outliers && cols > OUTLIER_COLUMNS) {
    for (let k = 0; k < OUTLIER_COLUMNS; k++) {
      const c = rng.int(0, cols - 1);
      for (let r = c; r < n; r += cols) out[r] *= OUTLIER_SCALE;
    }
  }
  return out;
}

/** [rows, cols] -> [cols, rows]. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

/**
 * Builds a decoder-only transformer: input `input_ids` int64 [batch, seq], output `logits` float32 [batch, seq,
 * vocab]. Token Gather embedding + learned positional table; per layer: LayerNormalization, Q/K/V MatMul + bias,
 * heads by Reshape/Transpose, scaled MatMul scores + causal mask, Softmax, MatMul with V, output projection,
 * residual; LayerNormalization, FFN MatMul + bias → Gelu (the Erf form exporters write at opset 17) → MatMul + bias,
 * residual; final LayerNormalization and the LM-head MatMul (with `tiedEmbeddings`, the embedding's transpose as
 * its own initializer). Weights normal(0, 0.02) with two outlier columns (×12) per matrix; LayerNorm scales near 1.
 * Initializer names follow exporters' style (`layers.0.attn.q_proj.weight`, ...).
 * @throws LowbitError BAD_OPTION for non-positive sizes or dModel not a multiple of heads
 */
export function buildTransformer(opts: TransformerOptions): Model {
  check(opts);
  const { layers, dModel: d, heads, ffn, vocab, seq } = opts;
  const seed = opts.seed ?? 1;
  const tied = opts.tiedEmbeddings ?? true;
  const dh = d / heads;
  const b = new ModelBuilder({ opset: 17, name: 'transformer' });
  const big: TensorProto[] = [];
  let index = 0;
  /** A weight matrix (set after build, deferred or not); returns its name. */
  const weight = (name: string, dims: number[], produce: () => Float32Array): string => {
    big.push(opts.deferred ? deferTensor(name, DataType.FLOAT, dims, produce) : makeTensor(name, DataType.FLOAT, dims, produce()));
    return name;
  };
  const matrix = (name: string, dims: number[], outliers = true): string => {
    const i = index++;
    return weight(name, dims, () => weightValues(seed, i, dims, STD, outliers));
  };
  const small = (name: string, n: number, mean: number, std: number): string => {
    const v = weightValues(seed, index++, [n], std, false);
    if (mean) for (let i = 0; i < n; i++) v[i]! += mean;
    return b.initializer(name, v, [n]);
  };
  const i64 = (name: string, values: number[]): string => b.initializer(name, BigInt64Array.from(values.map(BigInt)), [values.length]);
  const scalar = (name: string, v: number): string => b.initializer(name, Float32Array.of(v), []);
  const layerNorm = (x: string, prefix: string): string =>
    b.op('LayerNormalization', [x, small(`${prefix}.weight`, d, 1, 0.05), small(`${prefix}.bias`, d, 0, 0.01)], { axis: -1, epsilon: floatAttr(1e-5) }, { name: prefix });
  const linear = (x: string, prefix: string, din: number, dout: number): string => {
    const mm = b.op('MatMul', [x, matrix(`${prefix}.weight`, [din, dout])], {}, { name: `${prefix}/MatMul` });
    return b.op('Add', [mm, small(`${prefix}.bias`, dout, 0, STD)], {}, { name: `${prefix}/Add` });
  };

  const ids = b.input('input_ids', DataType.INT64, ['batch', seq]);
  const embIndex = index++;
  const embed = weight('embed_tokens.weight', [vocab, d], () => weightValues(seed, embIndex, [vocab, d], STD, false));
  const tok = b.op('Gather', [embed, ids], { axis: 0 }, { name: 'embed_tokens' });
  let x = b.op('Add', [tok, matrix('embed_positions.weight', [seq, d], false)], {}, { name: 'embed_positions' });

  const headsShape = i64('shape_heads', [0, 0, heads, dh]);
  const mergeShape = i64('shape_merge', [0, 0, d]);
  const scale = scalar('attn_scale', 1 / Math.sqrt(dh));
  const maskValues = new Float32Array(seq * seq);
  for (let r = 0; r < seq; r++) for (let c = r + 1; c < seq; c++) maskValues[r * seq + c] = -1e4;
  const mask = b.initializer('causal_mask', maskValues, [seq, seq]);
  const half = scalar('gelu_half', 0.5);
  const one = scalar('gelu_one', 1);
  const sqrt2 = scalar('gelu_sqrt2', Math.SQRT2);

  for (let l = 0; l < layers; l++) {
    const p = `layers.${l}`;
    const h = layerNorm(x, `${p}.ln_1`);
    const split = (v: string, perm: number[], what: string): string =>
      b.op('Transpose', [b.op('Reshape', [v, headsShape], {}, { name: `${p}.attn/${what}_reshape` })], { perm }, { name: `${p}.attn/${what}_transpose` });
    const q = split(linear(h, `${p}.attn.q_proj`, d, d), [0, 2, 1, 3], 'q');
    const k = split(linear(h, `${p}.attn.k_proj`, d, d), [0, 2, 3, 1], 'k');
    const v = split(linear(h, `${p}.attn.v_proj`, d, d), [0, 2, 1, 3], 'v');
    const scores = b.op('Mul', [b.op('MatMul', [q, k], {}, { name: `${p}.attn/qk` }), scale], {}, { name: `${p}.attn/scale` });
    const probs = b.op('Softmax', [b.op('Add', [scores, mask], {}, { name: `${p}.attn/mask` })], { axis: -1 }, { name: `${p}.attn/softmax` });
    const ctx = b.op('MatMul', [probs, v], {}, { name: `${p}.attn/pv` });
    const merged = b.op('Reshape', [b.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }, { name: `${p}.attn/merge_transpose` }), mergeShape], {}, { name: `${p}.attn/merge_reshape` });
    x = b.op('Add', [x, linear(merged, `${p}.attn.o_proj`, d, d)], {}, { name: `${p}.attn/residual` });
    const h2 = layerNorm(x, `${p}.ln_2`);
    const up = linear(h2, `${p}.mlp.fc_in`, d, ffn);
    const erf = b.op('Erf', [b.op('Div', [up, sqrt2], {}, { name: `${p}.mlp/gelu_div` })], {}, { name: `${p}.mlp/gelu_erf` });
    const gelu = b.op('Mul', [b.op('Mul', [up, b.op('Add', [erf, one], {}, { name: `${p}.mlp/gelu_add` })], {}, { name: `${p}.mlp/gelu_mul` }), half], {}, { name: `${p}.mlp/gelu` });
    x = b.op('Add', [x, linear(gelu, `${p}.mlp.fc_out`, ffn, d)], {}, { name: `${p}.mlp/residual` });
  }
  const final = layerNorm(x, 'ln_f');
  const head = tied
    ? weight('lm_head.weight', [d, vocab], () => transpose(weightValues(seed, embIndex, [vocab, d], STD, false), vocab, d))
    : matrix('lm_head.weight', [d, vocab]);
  const logits = b.op('MatMul', [final, head], {}, { name: 'lm_head' });
  b.output(logits, DataType.FLOAT, ['batch', seq, vocab]);
  const model = b.build();
  const g = model.graph;
  for (const t of big) g.setInitializer(t);
  // Name the output `logits` (the builder names values after their node).
  g.producer(logits)!.output[0] = 'logits';
  g.outputs[0]!.name = 'logits';
  g.touch();
  return model;
}
