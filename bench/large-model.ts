// Models larger than memory: peak RSS while converting a generated transformer with over 1 GB of float32 weights.
//
//   node --import tsx bench/large-model.ts [--layers 24] [--d 1024] [--heads 16] [--ffn 4096] [--vocab 32000]
//                                          [--seq 128] [--shard-mb 512] [--repeat 1] [--keep]
//
// Steps, each in a child process of its own so its peak RSS (VmHWM: bench/timing.ts peakRssBytes) is its alone:
//   node    baseline: the child process with its imports and nothing else
//   gen     buildTransformer({ deferred: true }) saved with external data: every weight generated, written, dropped
//   stream  loadModel(externalData: 'stream') -> convertFloat16({ defer: true }) -> saveModel(shardSize)
//   eager   loadModel() (all weights read) -> convertFloat16() -> saveModel(shardSize, forceExternal)
//   q4      loadModel(externalData: 'stream') -> quantizeWeightOnly(4 bits, block 32, RTN) -> saveModel(shardSize)
//   q4-def  the same with quantizeWeightOnly({ defer: true }): each weight quantized as it is saved
// The stream and eager outputs are compared byte for byte, and so are the q4 and q4-def outputs. The temp folder is removed at the end (unless --keep).

import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, saveModel } from '../src/io/model-file.js';
import { buildTransformer, transformerSize, type TransformerOptions } from '../src/models/transformer.js';
import { Model } from '../src/onnx/ir.js';
import { convertFloat16 } from '../src/passes/float16.js';
import { quantizeWeightOnly } from '../src/passes/weight-only.js';
import { formatBytes } from '../src/report/format.js';
import { peakRssBytes } from './timing.js';

interface StepResult {
  step: string;
  seconds: number;
  maxRss: number;
  inBytes: number;
  outBytes: number;
  shards: number;
  note?: string;
}

const MiB = 1024 * 1024;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}
const argStr = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
};

const sizeOnDisk = (dir: string): number => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

/** One step, run inside the child process. */
async function runStep(step: string, dir: string, opts: TransformerOptions, shardSize: number): Promise<StepResult> {
  const t0 = performance.now();
  const src = join(dir, 'src', 'model.onnx');
  let r: StepResult;
  if (step === 'idle') {
    r = { step: 'node', seconds: 0, maxRss: 0, inBytes: 0, outBytes: 0, shards: -1, note: 'baseline: node + tsx + these imports, no work' };
  } else if (step === 'gen') {
    mkdirSync(join(dir, 'src'), { recursive: true });
    const saved = await saveModel(buildTransformer({ ...opts, deferred: true }).toProto(), src, { forceExternal: true });
    r = { step, seconds: 0, maxRss: 0, inBytes: 0, outBytes: saved.bytes + (saved.dataBytes ?? 0), shards: saved.dataPaths?.length ?? 0 };
  } else if (step === 'q4' || step === 'q4-def') {
    const defer = step === 'q4-def';
    const loaded = await loadModel(src, { externalData: 'stream' });
    const q = quantizeWeightOnly(new Model(loaded.model), { bits: 4, blockSize: 32, defer });
    const outDir = join(dir, step);
    mkdirSync(outDir, { recursive: true });
    const saved = await saveModel(q.model.toProto(), join(outDir, 'model_q4.onnx'), { shardSize, forceExternal: true });
    r = { step, seconds: 0, maxRss: 0, inBytes: sizeOnDisk(join(dir, 'src')), outBytes: saved.bytes + (saved.dataBytes ?? 0), shards: saved.dataPaths?.length ?? 0, note: `MatMulNBits 4-bit, block 32, RTN: ${q.report.quantized.length} weights (${defer ? 'deferred: each quantized as saved' : 'eager: all outputs held until saved'})` };
  } else {
    const stream = step === 'stream';
    const loaded = await loadModel(src, { externalData: stream ? 'stream' : 'load' });
    const fp16 = convertFloat16(new Model(loaded.model), { defer: stream });
    const outDir = join(dir, step);
    mkdirSync(outDir, { recursive: true });
    const saved = await saveModel(fp16.model.toProto(), join(outDir, 'model_fp16.onnx'), { shardSize, forceExternal: true });
    r = { step, seconds: 0, maxRss: 0, inBytes: sizeOnDisk(join(dir, 'src')), outBytes: saved.bytes + (saved.dataBytes ?? 0), shards: saved.dataPaths?.length ?? 0, note: `${fp16.report.tensors} tensors, ${fp16.report.clamped.length} clamped` };
  }
  r.seconds = (performance.now() - t0) / 1000;
  r.maxRss = peakRssBytes();
  return r;
}

function child(step: string, dir: string): StepResult {
  const self = fileURLToPath(import.meta.url);
  const res = spawnSync(process.execPath, ['--import', 'tsx', self, ...process.argv.slice(2), '--step', step, '--dir', dir], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = res.stdout.split('\n').find((l) => l.startsWith('{'));
  if (res.status !== 0 || !line) throw new Error(`step ${step} failed (exit ${res.status}):\n${res.stderr}`);
  return JSON.parse(line) as StepResult;
}

/** Byte-for-byte comparison of two folders' files with the same names (chunked). */
function sameFolders(a: string, b: string): boolean {
  const files = readdirSync(a).sort();
  if (files.join() !== readdirSync(b).sort().join()) return false;
  const ba = new Uint8Array(16 * MiB);
  const bb = new Uint8Array(16 * MiB);
  for (const f of files) {
    const fa = openSync(join(a, f), 'r');
    const fb = openSync(join(b, f), 'r');
    try {
      for (let pos = 0; ; ) {
        const na = readSync(fa, ba, 0, ba.length, pos);
        const nb = readSync(fb, bb, 0, bb.length, pos);
        if (na !== nb) return false;
        if (na === 0) break;
        for (let i = 0; i < na; i++) if (ba[i] !== bb[i]) return false;
        pos += na;
      }
    } finally {
      closeSync(fa);
      closeSync(fb);
    }
  }
  return true;
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;

async function main(): Promise<void> {
  const opts: TransformerOptions = { layers: arg('layers', 24), dModel: arg('d', 1024), heads: arg('heads', 16), ffn: arg('ffn', 4096), vocab: arg('vocab', 32000), seq: arg('seq', 128), seed: 1 };
  const shardSize = arg('shard-mb', 512) * MiB;
  const step = argStr('step');
  if (step) {
    const r = await runStep(step, argStr('dir')!, opts, shardSize);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const size = transformerSize(opts).bytes;
  const free = (() => {
    const s = statfsSync(tmpdir());
    return s.bavail * s.bsize;
  })();
  console.log(`transformer: ${opts.layers} layers, d=${opts.dModel}, ffn=${opts.ffn}, vocab=${opts.vocab}, seq=${opts.seq}: ${formatBytes(size)} of float32 weights; free in ${tmpdir()}: ${formatBytes(free)}`);
  if (free < size * 2.2) throw new Error(`need about ${formatBytes(size * 2.2)} free in ${tmpdir()} (the model, then two fp16 copies)`);
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-large-'));
  try {
    const rows: StepResult[] = [child('idle', dir), child('gen', dir)];
    const repeat = arg('repeat', 1);
    // Two steps run alternately `repeat` times each; a row per step: time = median, RSS = max.
    const pair = (a: string, b: string): void => {
      const runs: Record<string, StepResult[]> = { [a]: [], [b]: [] };
      for (let i = 0; i < repeat; i++) {
        for (const s of i % 2 ? [b, a] : [a, b]) {
          rm(join(dir, s));
          runs[s]!.push(child(s, dir));
        }
      }
      for (const s of [a, b]) {
        const rs = runs[s]!;
        rows.push({ ...rs[rs.length - 1]!, seconds: median(rs.map((r) => r.seconds)), maxRss: Math.max(...rs.map((r) => r.maxRss)) });
      }
    };
    pair('stream', 'eager');
    const same = sameFolders(join(dir, 'stream'), join(dir, 'eager'));
    rm(join(dir, 'eager'));
    pair('q4', 'q4-def');
    const sameQ4 = sameFolders(join(dir, 'q4'), join(dir, 'q4-def'));
    console.log(`\nnode ${process.version}, one process per step, ${repeat} run(s) each (stream/eager and q4/q4-def interleaved; time = median, RSS = max); shards of ${formatBytes(shardSize)}\n`);
    console.log('step    | model in  | written   | files | time     | MB/s in | peak RSS  | RSS / model | notes');
    console.log('--------|-----------|-----------|-------|----------|---------|-----------|-------------|------');
    for (const r of rows) {
      const mbs = r.inBytes ? (r.inBytes / MiB / r.seconds).toFixed(0) : '-';
      console.log(
        `${r.step.padEnd(7)} | ${(r.inBytes ? formatBytes(r.inBytes) : '-').padEnd(9)} | ${(r.outBytes ? formatBytes(r.outBytes) : '-').padEnd(9)} | ${String(r.shards < 0 ? '-' : r.shards + 1).padEnd(5)} | ${(r.seconds.toFixed(1) + ' s').padEnd(8)} | ${mbs.padEnd(7)} | ${formatBytes(r.maxRss).padEnd(9)} | ${(r.maxRss / size).toFixed(2).padEnd(11)} | ${r.note ?? ''}`,
      );
    }
    const s = rows.find((r) => r.step === 'stream');
    const e = rows.find((r) => r.step === 'eager');
    console.log(`\nstream vs eager: peak RSS ${(e!.maxRss / s!.maxRss).toFixed(1)}x lower, outputs ${same ? 'byte-identical' : 'DIFFERENT'}`);
    const q = rows.find((r) => r.step === 'q4');
    const qd = rows.find((r) => r.step === 'q4-def');
    console.log(`q4-def vs q4: peak RSS ${(q!.maxRss / qd!.maxRss).toFixed(2)}x lower, outputs ${sameQ4 ? 'byte-identical' : 'DIFFERENT'}`);
    if (!same || !sameQ4) process.exitCode = 1;
  } finally {
    if (process.argv.includes('--keep')) console.log(`kept ${dir}`);
    else rm(dir);
  }
}

function rm(p: string): void {
  rmSync(p, { recursive: true, force: true });
}

await main();
