// Calibration cost per method: the builder CNN of the static tests (x [N, 3, 32, 32], 16 channels; its
// QDQ plan taps every activation it quantizes) calibrated on 100 and on 1,000 seeded synthetic samples,
// streamed (generated batch by batch, never held), batch 16, 2 ORT threads. Each run is its own child
// process, so its peak RSS (VmHWM: bench/timing.ts peakRssBytes) belongs to that run alone; runs are
// interleaved across methods and sample counts, and medians are reported. Peak RSS must not grow with
// the number of samples: every observer keeps a fixed-size state. Peak RSS also holds garbage V8 has not
// collected yet (each batch's tapped tensors), so the table adds the JS heap that survives a full GC,
// sampled after batch 5, every 25 batches and after the last: what calibration actually keeps.
// The moving average calibrates one sample per batch, as quantize() does for it.
// calibrate() forces a full GC after every 16 MiB of taps (CalibrateOptions.gcEveryBytes): ORT's Node
// binding copies each batch's taps into new ArrayBuffers, and V8 alone lets tens of MiB of them pile up,
// more the longer the run. --compare adds rows with that off (interleaved) to show the difference.
// Run: node --import tsx bench/calib.ts [--runs N] [--sizes 100,1000] [--compare] (the children run with --expose-gc)

import { execFileSync } from 'node:child_process';
import type { NdArray } from '../src/ndarray.js';
import { planQdq } from '../src/passes/quantize-qdq.js';
import { calibrate, type CalibrateOptions, type CalibrationData } from '../src/pipeline/calibrate.js';
import { renderTable } from '../src/report/table.js';
import { mulberry32 } from '../src/rng.js';
import { buildSmallCnn } from '../test/ort/quantize-static-fixtures.js';
import { peakRssBytes } from './timing.js';

const BASE: Record<string, Omit<CalibrateOptions, 'tensors'>> = {
  minmax: {},
  'minmax --moving-average': { movingAverage: true, batch: 1 },
  percentile: { method: 'percentile' },
  entropy: { method: 'entropy' },
  mse: { method: 'mse' },
};
/** With --compare: each method again with garbage collection left to V8 (gcEveryBytes: Infinity). */
const NO_GC = ', GC left to V8';
const ALL: Record<string, Omit<CalibrateOptions, 'tensors'>> = {
  ...BASE,
  ...Object.fromEntries(Object.entries(BASE).map(([k, v]) => [k + NO_GC, { ...v, gcEveryBytes: Infinity }])),
};
const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const SIZES = arg('sizes', '100,1000').split(',').map(Number);
const METHODS = process.argv.includes('--compare') ? Object.keys(ALL) : Object.keys(BASE);

/** Seeded N(0, 1) samples generated per batch: nothing is kept across batches. */
function syntheticData(count: number): CalibrationData {
  return {
    count,
    *batches(b: number): Iterable<Record<string, NdArray>> {
      const rng = mulberry32(7);
      for (let s = 0; s < count; s += b) {
        const n = Math.min(b, count - s);
        const data = new Float32Array(n * 3 * 32 * 32);
        for (let i = 0; i < data.length; i++) data[i] = rng.normal();
        yield { x: { dtype: 'float32', shape: [n, 3, 32, 32], data } };
      }
    },
  };
}

interface ChildResult {
  ms: number;
  maxRssMiB: number;
  /** Largest JS heap after a full GC, sampled during the run. */
  keptMiB: number;
  tensors: number;
}

/** One calibration in this process; prints its result as JSON. */
async function child(method: string, samples: number): Promise<void> {
  const plan = planQdq(buildSmallCnn(1), { activationType: 'uint8', weightType: 'int8', perChannel: true });
  const gc = (globalThis as { gc?: () => void }).gc!;
  let kept = 0;
  let gcMs = 0;
  const onProgress = (p: { batches: number; samples: number }): void => {
    if (p.batches !== 5 && p.batches % 25 !== 0 && p.samples !== samples) return;
    const g0 = performance.now();
    gc();
    kept = Math.max(kept, process.memoryUsage().heapUsed);
    gcMs += performance.now() - g0;
  };
  const t0 = performance.now();
  const ranges = await calibrate(plan.model, syntheticData(samples), { tensors: plan.tensors, batch: 16, threads: 2, ...ALL[method], onProgress });
  const ms = performance.now() - t0 - gcMs;
  const result: ChildResult = { ms, maxRssMiB: peakRssBytes() / 2 ** 20, keptMiB: kept / 2 ** 20, tensors: ranges.size };
  process.stdout.write(JSON.stringify(result));
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '3'));
  const results = new Map<string, ChildResult[]>();
  for (let r = 0; r < runs; r++) {
    for (const method of METHODS) {
      for (const samples of SIZES) {
        const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/calib.ts', '--child', method, String(samples)], { encoding: 'utf8' });
        const key = `${method}|${samples}`;
        results.set(key, [...(results.get(key) ?? []), JSON.parse(out) as ChildResult]);
      }
    }
  }
  const rows: string[][] = [];
  for (const method of METHODS) {
    const row = [method, String(results.get(`${method}|${SIZES[0]}`)![0]!.tensors)];
    for (const n of SIZES) {
      const rs = results.get(`${method}|${n}`)!;
      const sec = median(rs.map((x) => x.ms)) / 1000;
      row.push(sec.toFixed(2), (n / sec).toFixed(0), median(rs.map((x) => x.maxRssMiB)).toFixed(0), median(rs.map((x) => x.keptMiB)).toFixed(1));
    }
    const rss = (n: number): number => median(results.get(`${method}|${n}`)!.map((x) => x.maxRssMiB));
    row.push((rss(SIZES[SIZES.length - 1]!) - rss(SIZES[0]!)).toFixed(1));
    rows.push(row);
  }
  console.log(`Calibration of the builder CNN (x [N, 3, 32, 32]), batch 16, 2 ORT threads, streamed synthetic samples; median of ${runs} runs, one child process per run.`);
  console.log('Per sample count: seconds, samples/s, peak RSS MiB, JS heap kept after a full GC MiB; last column: peak RSS growth from the fewest to the most samples.');
  const cols = ['method', 'tensors', ...SIZES.flatMap((n) => [`s @${n}`, `samples/s @${n}`, `RSS @${n}`, `kept @${n}`]), `RSS Δ MiB`];
  console.log(renderTable(cols, rows));
}

const ci = process.argv.indexOf('--child');
if (ci >= 0) await child(process.argv[ci + 1]!, Number(process.argv[ci + 2]));
else await main();
