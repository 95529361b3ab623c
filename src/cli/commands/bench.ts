// `lowbit bench MODEL [--backend cpu|wasm] [--batch N] [--threads T] [--runs R]`: latency and memory of a model in ONNX
// Runtime on random inputs, via pipeline/bench.ts (loaded lazily). CLI only.

import { InvalidArgumentError, type Command } from 'commander';
import type { NdArray } from '../../ndarray.js';
import { formatBytes, formatCount, formatMs } from '../../report/format.js';
import { renderTable } from '../../report/table.js';
import { batchOption, choiceOption, explainModelErrors, jsonOption, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';

interface BenchFlags {
  backend?: 'cpu' | 'wasm';
  data?: string;
  dim?: Record<string, number>;
  batch?: number;
  threads?: number;
  runs?: number;
  json?: boolean;
}

/** The --json object. */
export interface BenchJson {
  backend: 'cpu' | 'wasm';
  sizeBytes: number;
  batch: number;
  threads: number;
  latencyMs: { median: number; p90: number };
  peakRssBytes: number;
}

/** The human table of a benchmark. */
export function renderBench(model: string, r: BenchJson): string {
  const perSecond = r.latencyMs.median > 0 ? (r.batch * 1000) / r.latencyMs.median : Number.NaN;
  return renderTable(
    ['metric', 'value'],
    [
      ['backend', r.backend === 'wasm' ? 'onnxruntime-web (wasm)' : 'onnxruntime-node (cpu)'],
      ['model size', formatBytes(r.sizeBytes)],
      ['batch', formatCount(r.batch)],
      ['threads', formatCount(r.threads)],
      ['latency, median', formatMs(r.latencyMs.median)],
      ['latency, p90', formatMs(r.latencyMs.p90)],
      ['throughput', `${formatCount(perSecond)} samples/s`],
      ['peak RSS', formatBytes(r.peakRssBytes)],
    ],
    { title: `Benchmark of ${model}` },
  );
}

/** Parses `--dim NAME=SIZE` into the accumulated map. */
function dimOption(value: string, previous: Record<string, number>): Record<string, number> {
  const m = /^([^=]+)=(\d+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`expected NAME=SIZE, e.g. sequence=512 (got '${value}')`);
  return { ...previous, [m[1]!]: Number(m[2]) };
}

/** The first `batch` samples of a data file, bound to the model's inputs (names, dtypes, shapes checked). */
async function firstSamples(model: string, data: string, batch: number): Promise<Record<string, NdArray>> {
  const [{ loadModel }, { Model }, { modelInputs }, { bindToModelInputs, openDataSource }] = await Promise.all([
    import('../../io/model-file.js'),
    import('../../onnx/ir.js'),
    import('../../pipeline/quantize.js'),
    import('../../data/calib-data.js'),
  ]);
  const bound = bindToModelInputs(openDataSource(data), modelInputs(new Model((await loadModel(model)).model)));
  for (const b of bound.batches(batch)) return b;
  throw new InvalidArgumentError(`'${data}' holds no samples`);
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure inference latency and peak memory in ONNX Runtime, native (cpu) or WebAssembly (wasm) (random inputs)')
    .argument('<MODEL>', 'ONNX model file')
    .addOption(choiceOption('--backend <name>', "'cpu' (onnxruntime-node, default) or 'wasm' (onnxruntime-web's WebAssembly backend, one thread, as browsers run it; needs the onnxruntime-web package)", ['cpu', 'wasm'] as const))
    .addOption(batchOption('samples per run (default: 1)'))
    .addOption(threadsOption())
    .option('--runs <R>', 'timed runs after 3 warm-up runs (default: 20)', positiveInt)
    .option('--data <DATA>', 'feed the first samples of this .npy/.npz instead of random inputs (for models with control inputs, e.g. a sample rate)')
    .option('--dim <NAME=SIZE>', 'size of a symbolic input dim for random inputs (repeatable; default 128, batch axis = --batch)', dimOption, {})
    .addOption(jsonOption())
    .action(async (model: string, flags: BenchFlags) => {
      requireFile(model, 'model');
      if (flags.data !== undefined) requireFile(flags.data, 'data');
      const progress = stageProgress(!flags.json);
      const { bench } = await import('../../pipeline/bench.js');
      let result: BenchJson;
      try {
        const inputs = flags.data === undefined ? undefined : await firstSamples(model, flags.data, flags.batch ?? 1);
        const r = await explainModelErrors([model], () => bench({
          model,
          ...(flags.backend === undefined ? {} : { backend: flags.backend }),
          ...(inputs ? { inputs } : {}),
          ...(flags.dim && Object.keys(flags.dim).length ? { shapes: flags.dim } : {}),
          ...(flags.batch === undefined ? {} : { batch: flags.batch }),
          ...(flags.threads === undefined ? {} : { threads: flags.threads }),
          ...(flags.runs === undefined ? {} : { runs: flags.runs }),
          onProgress: progress.onProgress,
        }));
        result = { backend: flags.backend ?? 'cpu', sizeBytes: r.sizeBytes, batch: r.batch, threads: r.threads, latencyMs: { median: r.latencyMs.median, p90: r.latencyMs.p90 }, peakRssBytes: r.peakRssBytes };
      } finally {
        progress.stop();
      }
      if (flags.json) printJson(result);
      else printText(renderBench(model, result));
    });
}
