// fp32 vs dynamic int8 (quantizeDynamic) latency in onnxruntime-node, 2 threads, batch 1 and 32: a 6 x 1024
// MLP, PaddleOCR v4 rec, an LSTM, and a small CNN with Conv forced to ConvInteger (why Conv stays float by default);
// plus weight-quantization throughput. Run: node --import tsx bench/dynamic.ts [--quick]

import { readFileSync } from 'node:fs';
import { ocrRecBatch, realModelPath, mulberry32 } from '../src/data/realistic.js';
import type { NdArray } from '../src/ndarray.js';
import { ModelBuilder } from '../src/onnx/builder.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { Model } from '../src/onnx/ir.js';
import { DataType } from '../src/onnx/proto.js';
import { quantizeDynamic, type QuantizeDynamicOptions } from '../src/passes/quantize-dynamic.js';
import { cosineSimilarity } from '../src/quant/metrics.js';
import { Session } from '../src/runtime/session.js';

const QUICK = process.argv.includes('--quick');
const THREADS = 2;

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}
const arr = (shape: number[], seed: number): NdArray => ({ dtype: 'float32', shape, data: randn(shape.reduce((a, b) => a * b, 1), seed) });

function mlp(d: number, layers: number): Model {
  const b = new ModelBuilder({ opset: 13 });
  let h = b.input('x', DataType.FLOAT, ['N', d]);
  for (let l = 0; l < layers; l++) {
    const w = b.initializer(`W${l}`, randn(d * d, 10 + l, 1 / Math.sqrt(d)), [d, d]);
    h = b.op('Add', [b.op('MatMul', [h, w]), b.initializer(`b${l}`, randn(d, 20 + l, 0.1), [d])]);
    if (l < layers - 1) h = b.op('Relu', [h]);
  }
  b.output(h, DataType.FLOAT);
  return b.build();
}

function cnn(): Model {
  const b = new ModelBuilder({ opset: 13 });
  let h = b.input('x', DataType.FLOAT, ['N', 3, 'H', 'W']);
  const layers: [number, number, number, number][] = [[3, 32, 3, 2], [32, 64, 3, 1], [64, 64, 3, 2], [64, 128, 1, 1], [128, 128, 3, 1], [128, 256, 3, 2]];
  layers.forEach(([ci, co, k, s], i) => {
    const w = b.initializer(`W${i}`, randn(co * ci * k * k, 30 + i, Math.sqrt(2 / (ci * k * k))), [co, ci, k, k]);
    const p = k >> 1;
    h = b.op('Relu', [b.op('Conv', [h, w, b.initializer(`B${i}`, randn(co, 40 + i, 0.05), [co])], { strides: [s, s], pads: [p, p, p, p] })]);
  });
  b.output(b.op('GlobalAveragePool', [h]), DataType.FLOAT);
  return b.build();
}

function lstm(input: number, hidden: number): Model {
  const b = new ModelBuilder({ opset: 14 });
  const x = b.input('x', DataType.FLOAT, ['T', 'N', input]);
  const w = b.initializer('W', randn(4 * hidden * input, 60, 1 / Math.sqrt(input)), [1, 4 * hidden, input]);
  const r = b.initializer('R', randn(4 * hidden * hidden, 61, 1 / Math.sqrt(hidden)), [1, 4 * hidden, hidden]);
  const bias = b.initializer('B', randn(8 * hidden, 62, 0.1), [1, 8 * hidden]);
  b.output(b.op('LSTM', [x, w, r, bias], { hidden_size: hidden }, { outputs: 3 })[0]!, DataType.FLOAT);
  return b.build();
}

/** Median latency (ms) per model, measured in interleaved rounds so machine noise hits all models alike. */
async function timeModels(models: Uint8Array[], feeds: Record<string, NdArray>, rounds: number, per: number): Promise<{ ms: number[]; outs: Float32Array[] }> {
  const sessions = await Promise.all(models.map((m) => Session.create(m, { threads: THREADS })));
  const outs: Float32Array[] = [];
  for (const s of sessions) {
    for (let i = 0; i < 3; i++) await s.run(feeds);
    outs.push(Object.values(await s.run(feeds))[0]!.data as Float32Array);
  }
  const times: number[][] = sessions.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < sessions.length; k++) {
      for (let i = 0; i < per; i++) {
        const t0 = performance.now();
        await sessions[k]!.run(feeds);
        times[k]!.push(performance.now() - t0);
      }
    }
  }
  for (const s of sessions) await s.release();
  const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1]!;
  return { ms: times.map(median), outs };
}

interface Row { model: string; batch: number; fp32: string; int8: string; speedup: string; cosine: string; form: string }
const rows: Row[] = [];

async function compare(label: string, model: Model, opts: QuantizeDynamicOptions, feedsFor: (batch: number) => Record<string, NdArray>, cost: number): Promise<void> {
  const fbytes = encodeModel(model.toProto());
  const { model: q, report } = quantizeDynamic(model, opts);
  const qbytes = encodeModel(q.toProto());
  const forms = [...new Set(report.quantized.map((r) => r.form.replace(/ \(.*\)$/, '')))].join(', ') || 'none';
  for (const batch of [1, 32]) {
    // Fewer runs for slow cases; `cost` ~ ms per batch-1 run.
    const per = Math.max(1, Math.round((QUICK ? 4 : 20) / Math.max(1, cost * (batch === 1 ? 1 : 8))));
    const { ms, outs } = await timeModels([fbytes, qbytes], feedsFor(batch), QUICK ? 4 : 10, per);
    rows.push({
      model: `${label} (${((qbytes.length / fbytes.length) * 100).toFixed(0)}% size)`,
      batch,
      fp32: ms[0]!.toFixed(3),
      int8: ms[1]!.toFixed(3),
      speedup: `${(ms[0]! / ms[1]!).toFixed(2)}x`,
      cosine: cosineSimilarity(outs[0]!, outs[1]!).toFixed(5),
      form: forms,
    });
  }
}

const INT8: QuantizeDynamicOptions = { weightType: 'int8', perChannel: true };
const mlpModel = mlp(1024, 6);
await compare('MLP 6x1024, int8 per channel', mlpModel, INT8, (n) => ({ x: arr([n, 1024], 7) }), 0.2);
await compare('MLP 6x1024, int8 per tensor', mlpModel, { weightType: 'int8', perChannel: false }, (n) => ({ x: arr([n, 1024], 7) }), 0.2);
await compare('MLP 6x1024, uint8 per tensor', mlpModel, { weightType: 'uint8', perChannel: false }, (n) => ({ x: arr([n, 1024], 7) }), 0.2);
await compare('MLP 6x1024, MatMulInteger form', mlpModel, { ...INT8, matmul: 'MatMulInteger' }, (n) => ({ x: arr([n, 1024], 7) }), 0.2);
const recPath = realModelPath('ocrRec');
const rec = new Model(decodeModel(new Uint8Array(readFileSync(recPath))));
await compare('OCR rec v4 1x3x48x320', rec, INT8, (n) => ({ x: ocrRecBatch(n, 101).input }), 8);
await compare('LSTM 256->256, T=50', lstm(256, 256), INT8, (n) => ({ x: arr([50, n, 256], 11) }), 1.5);
const cnnModel = cnn();
await compare('CNN 3x112x112, Conv forced', cnnModel, { ...INT8, conv: 'ConvInteger' }, (n) => ({ x: arr([n, 3, 112, 112], 9) }), 4);

console.log(`\nfp32 vs dynamic int8, onnxruntime-node, ${THREADS} threads, median ms per run (interleaved rounds)\n`);
console.table(rows);

// Weight quantization throughput: float weight bytes quantized per second by quantizeDynamic (best of 3).
const tput: { model: string; 'float MB': string; ms: string; 'MB/s': string }[] = [];
for (const [label, model, mb] of [
  ['MLP 6x1024 (24 MiB of MatMul weights)', mlpModel, (6 * 1024 * 1024 * 4) / 1e6],
  ['OCR rec v4 (MatMul weights only)', rec, 0],
] as [string, Model, number][]) {
  let best = Infinity;
  let weightMb = mb;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    const { model: q, report } = quantizeDynamic(model, INT8);
    best = Math.min(best, performance.now() - t0);
    if (!mb) {
      // bytes of the int8 weights x 4 = the float32 bytes they replaced
      let bytes = 0;
      for (const [name, t] of q.graph.initializers) if (name.endsWith('_quantized') && t.rawData) bytes += t.rawData.length * 4;
      weightMb = bytes / 1e6;
      void report;
    }
  }
  tput.push({ model: label, 'float MB': weightMb.toFixed(1), ms: best.toFixed(1), 'MB/s': (weightMb / (best / 1e3)).toFixed(0) });
}
console.log('\nquantizeDynamic throughput (includes the model copy, type inference and graph rewrite)\n');
console.table(tput);
