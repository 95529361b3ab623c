// Data-loading bench: streams a large .npy and a stored .npz in batches and reports throughput and
// peak RSS growth (should stay near one batch, not the file size). Run: node --import tsx bench/data.ts [MB]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../src/data/npy.js';
import { writeNpz } from '../src/data/npz.js';
import { bindToModelInputs, openDataSource } from '../src/data/calib-data.js';
import { formatBytes, formatMs } from '../src/report/format.js';
import { renderTable } from '../src/report/table.js';

const mb = Number(process.argv[2] ?? 256);
const features = 1024;
const rows = Math.max(1, Math.floor((mb * 1e6) / (features * 4)));
const dir = mkdtempSync(join(tmpdir(), 'lowbit-bench-data-'));

try {
  const data = new Float32Array(rows * features);
  for (let i = 0; i < data.length; i++) data[i] = (i % 977) / 977;
  const arr = { dtype: 'float32' as const, shape: [rows, features], data };
  const npy = join(dir, 'x.npy');
  const npz = join(dir, 'x.npz');
  writeNpy(npy, arr);
  writeNpz(npz, { x: arr });
  const results: (string | number)[][] = [];
  for (const [label, path] of [['npy', npy], ['npz (stored)', npz]] as const) {
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const t0 = performance.now();
    const ds = bindToModelInputs(openDataSource(path), [{ name: 'x', elemType: 1, dims: ['N', features] }]);
    let sum = 0;
    for (const b of ds.batches(256)) {
      const d = b.x!.data as Float32Array;
      sum += d[0]!;
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    const ms = performance.now() - t0;
    results.push([label, formatBytes(rows * features * 4), formatMs(ms), `${formatBytes((rows * features * 4) / (ms / 1000))}/s`, formatBytes(peak - rss0), sum.toFixed(0)]);
  }
  console.log(renderTable(['file', 'size', 'time', 'throughput', 'peak RSS growth', 'checksum'], results, { title: `streaming ${rows} x ${features} float32 in batches of 256 (NaN check included)` }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
