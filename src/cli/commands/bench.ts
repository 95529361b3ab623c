// `lowbit bench MODEL [--batch N] [--threads T] [--runs R]`: latency and memory of a model in ONNX
// Runtime on random inputs, via pipeline/bench.ts (loaded lazily). CLI only.

import type { Command } from 'commander';
import { formatBytes, formatCount, formatMs } from '../../report/format.js';
import { renderTable } from '../../report/table.js';
import { batchOption, explainModelErrors, jsonOption, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';

interface BenchFlags {
  batch?: number;
  threads?: number;
  runs?: number;
  json?: boolean;
}

/** The --json object. */
export interface BenchJson {
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

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure inference latency and peak memory in ONNX Runtime (random inputs)')
    .argument('<MODEL>', 'ONNX model file')
    .addOption(batchOption('samples per run (default: 1)'))
    .addOption(threadsOption())
    .option('--runs <R>', 'timed runs after 3 warm-up runs (default: 20)', positiveInt)
    .addOption(jsonOption())
    .action(async (model: string, flags: BenchFlags) => {
      requireFile(model, 'model');
      const progress = stageProgress(!flags.json);
      const { bench } = await import('../../pipeline/bench.js');
      let result: BenchJson;
      try {
        const r = await explainModelErrors([model], () => bench({
          model,
          ...(flags.batch === undefined ? {} : { batch: flags.batch }),
          ...(flags.threads === undefined ? {} : { threads: flags.threads }),
          ...(flags.runs === undefined ? {} : { runs: flags.runs }),
          onProgress: progress.onProgress,
        }));
        result = { sizeBytes: r.sizeBytes, batch: r.batch, threads: r.threads, latencyMs: { median: r.latencyMs.median, p90: r.latencyMs.p90 }, peakRssBytes: r.peakRssBytes };
      } finally {
        progress.stop();
      }
      if (flags.json) printJson(result);
      else printText(renderBench(model, result));
    });
}
