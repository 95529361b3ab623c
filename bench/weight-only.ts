// Weight-only quantization and half precision (issue #5): size, output fidelity and latency of each variant
// against the float32 model, side by side, on two models:
//   transformer  a generated decoder-only transformer (src/models/transformer.ts: 6 layers, d 512, 8 heads, ffn 2048,
//                vocab 8192, seq 64, tied embeddings) fed token ids drawn from a Zipf-like distribution with local
//                repeats (calibration and evaluation sequences from different seeds, checked distinct); agreement =
//                top-1 of the next-token logits at every position.
//   rec          the real PaddleOCR v4 recognition model (SVTR attention blocks after a conv backbone) on realistic
//                text lines (src/data/realistic-ocr.ts; calibration seed 1, evaluation seed 7).
// Rows: fp32; fp16; weight-only (MatMulNBits) 8/4/2 bits × rtn/hqq/gptq at block 32, 4-bit rtn at block 128 and with
// accuracy_level 0; 4-bit unpack-on-load (folded to float32 when the session loads); the transformers.js preset's q4 /
// q4f16 (4-bit embeddings too: GatherBlockQuantized).
// Latency: pipeline compareLatency (alternating fp32 / variant blocks, medians, 2 threads, batch 1, one real sample).
// A second table times one variant per graph form on the same transformer built with seq 1 (every MatMul has M = 1:
// the memory-bound decode step), where MatMulNBits should gain most.
// Peak RSS: one child process per model that creates its ONNX Runtime session and runs it once (VmHWM).
// About 10 minutes on the 2-core VM (hqq and gptq take most of it).
// Run: node --import tsx bench/weight-only.ts [--only transformer,rec] [--runs N] [--no-rss] [--no-decode] [--markdown]
//        [--layers 6] [--d 512] [--heads 8] [--ffn 2048] [--vocab 8192] [--seq 64] [--web]
// --web adds, for the decode-shaped transformer, fp32 vs variant in onnxruntime-web's wasm backend (one thread).

import { spawnSync } from 'node:child_process';
import { peakRssBytes } from './timing.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openNpy, writeNpy } from '../src/data/npy.js';
import { ocrRecBatch, realModelPath } from '../src/data/realistic.js';
import { saveModel } from '../src/io/model-file.js';
import { buildTransformer, type TransformerOptions } from '../src/models/transformer.js';
import type { NdArray } from '../src/ndarray.js';
import { bench, compareLatency } from '../src/pipeline/bench.js';
import { evaluate, type EvalData } from '../src/pipeline/evaluate.js';
import type { QuantizeOptions, WeightAlgorithm } from '../src/pipeline/options.js';
import { quantizeTransformersJs } from '../src/pipeline/preset.js';
import { quantize } from '../src/pipeline/quantize.js';
import type { BlockBits } from '../src/quant/blockwise.js';
import { formatBytes, formatDb, formatMs, formatRatio } from '../src/report/format.js';
import { renderTable, type Cell } from '../src/report/table.js';
import { mulberry32 } from '../src/rng.js';
import { Session } from '../src/runtime/session.js';
import { dataSourceFromArrays } from '../src/data/source.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const num = (name: string, dflt: number): number => Number(arg(name) ?? dflt);
const THREADS = 2;


// Child mode: peak RSS of one model's session after one run (the parent reads the JSON line).
if (arg('rss-of') !== undefined) {
  const model = arg('rss-of')!;
  const feed = openNpy(arg('feed')!).readAll();
  if (model !== '-') {
    const s = await Session.create(model, { threads: THREADS });
    await s.run({ [arg('input')!]: feed });
    await s.release();
  }
  process.stdout.write(`${JSON.stringify({ maxRss: peakRssBytes() })}\n`);
  process.exit(0);
}

const RUNS = num('runs', 36);
const ONLY = new Set((arg('only') ?? 'transformer,rec').split(','));
const MARKDOWN = process.argv.includes('--markdown');
const RSS = !process.argv.includes('--no-rss');
/** Also time the decode-shaped variants in onnxruntime-web's wasm backend (one thread): what transformers.js runs in browsers. */
const WEB = process.argv.includes('--web');
const T: TransformerOptions = { layers: num('layers', 6), dModel: num('d', 512), heads: num('heads', 8), ffn: num('ffn', 2048), vocab: num('vocab', 8192), seq: num('seq', 64), seed: 1 };
const CALIB_SEQS = 64;
const EVAL_SEQS = 32;
const dir = mkdtempSync(join(tmpdir(), 'lowbit-weight-only-'));

/** Samples in memory, batched along the first axis. */
const arrays = (input: string, arr: NdArray): EvalData => dataSourceFromArrays({ [input]: arr }, input);

const first = (arr: NdArray): NdArray => ({ dtype: arr.dtype, shape: [1, ...arr.shape.slice(1)], data: arr.data.subarray(0, arr.data.length / arr.shape[0]!) } as NdArray);

/**
 * Token ids int64 [n, seq]: each token a Zipf(1.1) draw over a seeded permutation of the vocabulary (frequent tokens are
 * not the low ids), or, with probability 0.2, a copy of one of the 8 previous tokens (the local repeats of real text).
 */
function tokenIds(n: number, seed: number, seq = T.seq): NdArray {
  const rng = mulberry32(seed);
  const perm = Int32Array.from({ length: T.vocab }, (_, i) => i);
  const p = mulberry32(12345); // one vocabulary order for every split
  for (let i = T.vocab - 1; i > 0; i--) {
    const j = p.int(0, i);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const cdf = new Float64Array(T.vocab);
  let acc = 0;
  for (let r = 0; r < T.vocab; r++) cdf[r] = acc += 1 / Math.pow(r + 1, 1.1);
  const data = new BigInt64Array(n * seq);
  for (let s = 0; s < n; s++) {
    for (let t = 0; t < seq; t++) {
      const i = s * seq + t;
      if (t > 0 && rng.chance(0.2)) {
        data[i] = data[i - rng.int(1, Math.min(8, t))]!;
        continue;
      }
      const u = rng.next() * acc;
      let lo = 0;
      let hi = T.vocab - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid]! < u) lo = mid + 1;
        else hi = mid;
      }
      data[i] = BigInt(perm[lo]!);
    }
  }
  return { dtype: 'int64', shape: [n, seq], data } as NdArray;
}

/** Throws if a row of `b` equals a row of `a` (the evaluation must not see calibration samples). */
function checkDistinct(a: NdArray, b: NdArray): void {
  const row = (x: NdArray, i: number, per: number): string => Array.from(x.data.subarray(i * per, (i + 1) * per) as BigInt64Array, String).join(',');
  const per = a.data.length / a.shape[0]!;
  const seen = new Set(Array.from({ length: a.shape[0]! }, (_, i) => row(a, i, per)));
  for (let i = 0; i < b.shape[0]!; i++) if (seen.has(row(b, i, per))) throw new Error(`evaluation sequence ${i} is also a calibration sequence`);
}

interface Case {
  key: string;
  name: string;
  model: () => Promise<string>;
  input: string;
  calib: NdArray;
  eval: NdArray;
  evalBatch: number;
}

const CASES: Case[] = [
  {
    key: 'transformer',
    name: `transformer ${T.layers}L d${T.dModel}`,
    model: async () => {
      const path = join(dir, 'transformer.onnx');
      await saveModel(buildTransformer(T).toProto(), path);
      return path;
    },
    input: 'input_ids',
    calib: tokenIds(CALIB_SEQS, 1),
    eval: tokenIds(EVAL_SEQS, 2),
    evalBatch: 8,
  },
  { key: 'rec', name: 'PP-OCRv4 rec', model: async () => realModelPath('ocrRec'), input: 'x', calib: ocrRecBatch(32, 1).input, eval: ocrRecBatch(32, 7).input, evalBatch: 8 },
];

interface Variant {
  name: string;
  /** quantize() options besides input/output/threads, or a transformers.js preset dtype. */
  opts?: Omit<QuantizeOptions, 'input' | 'output'>;
  preset?: 'q4' | 'q4f16';
}

const VARIANTS: Variant[] = [
  { name: 'fp16', opts: { mode: 'fp16' } },
  ...([8, 4, 2] as BlockBits[]).flatMap((bits) =>
    (['rtn', 'hqq', 'gptq'] as WeightAlgorithm[]).map((algorithm): Variant => ({ name: `${bits}-bit ${algorithm} b32`, opts: { mode: 'weight-only', bits, blockSize: 32, algorithm } })),
  ),
  { name: '4-bit rtn b128', opts: { mode: 'weight-only', bits: 4, blockSize: 128, algorithm: 'rtn' } },
  { name: '4-bit rtn b32 acc0', opts: { mode: 'weight-only', bits: 4, blockSize: 32, algorithm: 'rtn', accuracyLevel: 0 } },
  { name: '8-bit rtn b32 acc0', opts: { mode: 'weight-only', bits: 8, blockSize: 32, algorithm: 'rtn', accuracyLevel: 0 } },
  { name: '4-bit unpack-on-load b32', opts: { mode: 'weight-only', bits: 4, blockSize: 32, algorithm: 'rtn', format: 'unpack-on-load' } },
  { name: 'tjs q4 (+ 4-bit emb.)', preset: 'q4' },
  { name: 'tjs q4f16', preset: 'q4f16' },
];
/** Variants timed on the decode-shaped transformer (seq 1): one per graph form (hqq and gptq write rtn's graph, other values). */
const DECODE = new Set(['fp16', '8-bit rtn b32', '4-bit rtn b32', '2-bit rtn b32', '4-bit rtn b128', '4-bit rtn b32 acc0', '8-bit rtn b32 acc0', '4-bit unpack-on-load b32', 'tjs q4 (+ 4-bit emb.)', 'tjs q4f16']);
const DECODE_RUNS = 3 * RUNS;

/**
 * Peak RSS of a child process that opens `model` (or nothing, '-') and runs it once on `feed`: the lower of two children
 * (one child's peak varies by tens of MB with V8's heap growth and tsx's compile cache).
 */
function childRss(model: string, feed: string, input: string): number {
  const self = fileURLToPath(import.meta.url);
  const one = (): number => {
    const res = spawnSync(process.execPath, ['--import', 'tsx', self, '--rss-of', model, '--feed', feed, '--input', input], { encoding: 'utf8' });
    const line = res.stdout.split('\n').find((l) => l.startsWith('{'));
    if (res.status !== 0 || !line) throw new Error(`RSS child for ${model} failed (exit ${res.status}):\n${res.stderr}`);
    return (JSON.parse(line) as { maxRss: number }).maxRss;
  };
  return Math.min(one(), one());
}

/** hqq and gptq write the graph rtn writes at the same bits and block size (other values): timed once, on the rtn row. */
const sameGraphAsRtn = (v: Variant): boolean => v.opts?.algorithm === 'hqq' || v.opts?.algorithm === 'gptq';

/** Writes variant `v` of `fp32` (quantize(), or the transformers.js preset into `presetDir`); its path and bytes. */
async function produce(v: Variant, key: string, fp32: string, presetDir: string, calib: string): Promise<{ out: string; bytes: number }> {
  if (v.preset) {
    const r = await quantizeTransformersJs({ input: fp32, outputDir: presetDir, dtypes: [v.preset], web: false, threads: THREADS });
    const pv = r.variants[0]!;
    if (pv.node !== 'ok') throw new Error(`${key} ${v.preset}: ${pv.node}`);
    return { out: pv.output, bytes: pv.bytes };
  }
  const out = join(dir, `${key}.${v.name.replace(/[^\w]+/g, '_')}.onnx`);
  const r = await quantize({ input: fp32, output: out, threads: THREADS, ...v.opts, ...(v.opts?.algorithm === 'gptq' ? { calib } : {}) });
  return { out, bytes: r.sizeBytes.after };
}

const pct = (v: number | undefined): string => (v === undefined ? '-' : `${(100 * v).toFixed(2)}%`);
const sizeOf = (path: string): number => statSync(path).size; // inline models (no external data at these sizes)
const rows: Cell[][] = [];
const decodeRows: Cell[][] = [];
const baselines: string[] = [];
const started = performance.now();
try {
  for (const c of CASES.filter((x) => ONLY.has(x.key))) {
    const fp32 = await c.model();
    const fp32Bytes = sizeOf(fp32);
    if (c.key === 'transformer') checkDistinct(c.calib, c.eval);
    const calib = join(dir, `${c.key}.calib.npy`);
    writeNpy(calib, c.calib);
    const feed = join(dir, `${c.key}.feed.npy`);
    const sample = first(c.eval);
    writeNpy(feed, sample);
    const data = arrays(c.input, c.eval);
    const latOpts = { batch: 1, threads: THREADS, runs: RUNS, warmup: 2, blocks: 6, inputs: { [c.input]: sample } };
    const rss = (model: string): string => (RSS ? formatBytes(childRss(model, feed, c.input)) : '-');
    if (RSS) baselines.push(`${c.key}: ${formatBytes(childRss('-', feed, c.input))}`);
    const b = await bench({ model: fp32, ...latOpts });
    rows.push([c.name, 'fp32', formatBytes(fp32Bytes), '1.00x', '-', '-', formatMs(b.latencyMs.median), '-', '-', rss(fp32)]);
    const presetDir = join(dir, `preset-${c.key}`);
    mkdirSync(presetDir);
    for (const v of VARIANTS) {
      const t0 = performance.now();
      const { out, bytes } = await produce(v, c.key, fp32, presetDir, calib);
      const qs = (performance.now() - t0) / 1000;
      const e = await evaluate({ model: out, reference: fp32, data, batch: c.evalBatch, threads: THREADS });
      let timing: string[];
      if (sameGraphAsRtn(v)) timing = ['〃', '〃', '〃', '〃'];
      else {
        const cmp = await compareLatency(fp32, out, latOpts);
        timing = [formatMs(cmp.float.latencyMs.median), formatMs(cmp.quant.latencyMs.median), formatRatio(cmp.speedup), rss(out)];
      }
      rows.push([c.name, v.name, formatBytes(bytes), formatRatio(fp32Bytes / bytes), e.sqnrDb !== undefined ? formatDb(e.sqnrDb) : '-', pct(e.agreement), ...timing]);
      console.error(`done: ${c.key} ${v.name} (quantize ${qs.toFixed(1)} s, ${basename(out)}, ${((performance.now() - started) / 1000).toFixed(0)} s in all)`);
    }
    if (c.key === 'transformer' && !process.argv.includes('--no-decode')) {
      // Decode-shaped: the same weights with seq 1, so every MatMul has M = 1 (the memory-bound case of token-by-token generation).
      const fp32s1 = join(dir, 'transformer-s1.onnx');
      await saveModel(buildTransformer({ ...T, seq: 1 }).toProto(), fp32s1);
      const s1Dir = join(dir, 'preset-transformer-s1');
      mkdirSync(s1Dir);
      const inputs = { [c.input]: tokenIds(1, 3, 1) };
      for (const v of VARIANTS.filter((x) => DECODE.has(x.name))) {
        const { out } = await produce(v, 'transformer-s1', fp32s1, s1Dir, calib);
        const cmp = await compareLatency(fp32s1, out, { ...latOpts, runs: DECODE_RUNS, inputs });
        const web = WEB ? await compareLatency(fp32s1, out, { batch: 1, backend: 'wasm', runs: DECODE_RUNS, warmup: 5, blocks: 6, inputs }) : undefined;
        decodeRows.push([
          `transformer ${T.layers}L d${T.dModel}, seq 1`,
          v.name,
          formatMs(cmp.float.latencyMs.median),
          formatMs(cmp.quant.latencyMs.median),
          formatRatio(cmp.speedup),
          ...(web ? [formatMs(web.float.latencyMs.median), formatMs(web.quant.latencyMs.median), formatRatio(web.speedup)] : []),
        ]);
        console.error(`done: decode ${v.name} (${((performance.now() - started) / 1000).toFixed(0)} s in all)`);
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(
  renderTable(
    ['model', 'variant', 'size', 'fp32 / size', 'SQNR', 'top-1 agreement', 'b1 fp32', 'b1 variant', 'speed-up', 'peak RSS'],
    rows,
    { style: MARKDOWN ? 'markdown' : 'unicode' },
  ),
);
if (decodeRows.length) {
  console.log('');
  const webHead = WEB ? ['wasm fp32', 'wasm variant', 'wasm speed-up'] : [];
  console.log(renderTable(['model', 'variant', 'b1 fp32', 'b1 variant', 'speed-up', ...webHead], decodeRows, { style: MARKDOWN ? 'markdown' : 'unicode' }));
}
console.log(
  `\nonnxruntime-node, CPU, ${THREADS} threads, batch 1. Transformer: ${T.layers} layers, d ${T.dModel}, ${T.heads} heads, ffn ${T.ffn}, vocab ${T.vocab}, seq ${T.seq} (fixed; ` +
    `every MatMul has M = ${T.seq} rows), tied embeddings, seeded random weights with 2 outlier columns per matrix; token ids Zipf(1.1) over a shuffled vocabulary with 20% ` +
    `local repeats; SQNR and agreement (argmax of the logits at every position) vs fp32 on ${EVAL_SEQS} sequences (seed 2), GPTQ calibrated on ${CALIB_SEQS} other sequences (seed 1; ` +
    `quantize() holds 20% out for its own check). PP-OCRv4 rec: realistic text lines 48×320, evaluation 32 (seed 7), GPTQ calibration 32 (seed 1); agreement = per CTC frame. ` +
    `Weight-only = MatMulNBits (com.microsoft), asymmetric, block 32 unless named; gptq with act-order, damp 0.01; MatMulNBits accuracy_level 4 (int8 activations per block) is lowbit's default; acc0 = accuracy_level 0 (float activations). ` +
    `tjs = lowbit's transformers.js preset (q4: MatMulNBits 4-bit rtn b32 + GatherBlockQuantized 4-bit embeddings; q4f16: q4 with the rest in float16); ` +
    `"4-bit rtn b32" is q4 without the embeddings. Latency: medians of ${RUNS} runs per model in 6 alternating fp32/variant blocks (fresh session per block, 2 warm-up runs), ` +
    `one real evaluation sample, fp32 re-timed beside every variant (the fp32 row: one bench of ${RUNS} runs); 〃 = the graph of the rtn row above ` +
    `(hqq and gptq change values, not the graph), not timed again.` +
    (decodeRows.length ? ` Second table: the same transformer built with seq 1 (M = 1 in every MatMul, a decode step without KV cache), ${DECODE_RUNS} runs per model, one graph form per row (hqq / gptq write the rtn graph with other values)${WEB ? '; wasm columns: onnxruntime-web, WebAssembly backend, one thread, 5 warm-up runs per block' : ''}.` : '') +
    (RSS ? ` Peak RSS: VmHWM of a child process (node + tsx + imports) that creates the session and runs it once, lower of two children; the same process without a session: ${baselines.join(', ')}.` : ''),
);
