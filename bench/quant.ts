// Throughput of the quant/ kernels on ~64 MB of float32 data. Run: node --import tsx bench/quant.ts
// MB/s counts float32 bytes (4 per element) on the float side of each conversion; best of 5 runs.

import {
  computeQParamsFromData,
  computeQParamsPerAxis,
  dequantizeLinear,
  dynamicQuantizeLinear,
  float16ArrayToFloat32,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  quantizeLinear,
  type QuantTypeName,
} from '../src/quant/index.js';

const ROWS = 4096;
const COLS = 4096;
const N = ROWS * COLS; // 16 Mi floats = 64 MiB
const dims = [ROWS, COLS];

// Deterministic pseudo-normal data (xorshift + sum of uniforms), no Math.random.
function makeData(n: number): Float32Array {
  const a = new Float32Array(n);
  let s = 0x9e3779b9 | 0;
  const u = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  for (let i = 0; i < n; i++) a[i] = (u() + u() + u() - 1.5) * 2;
  return a;
}

function best(fn: () => void, runs = 5): number {
  let t = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

const x = makeData(N);
const rows: { case: string; ms: string; 'MB/s': string }[] = [];
const report = (name: string, ms: number, bytes = N * 4): void => {
  rows.push({ case: name, ms: ms.toFixed(1), 'MB/s': ((bytes / 1e6) / (ms / 1e3)).toFixed(0) });
};

// Warm every kernel with every output type first so the measured call sites are as polymorphic as in real use.
const types: QuantTypeName[] = ['int8', 'uint8', 'int16', 'uint16', 'int4', 'uint4', 'int32'];
const small = x.subarray(0, 1 << 14);
for (const t of types) {
  const p = computeQParamsFromData(small, t);
  const q = quantizeLinear(small, p.scale, p.zeroPoint, t);
  dequantizeLinear(q, p.scale, p.zeroPoint);
  const pc = computeQParamsPerAxis(small, [128, 128], 1, t, { symmetric: true });
  const qc = quantizeLinear(small, pc.scale, pc.zeroPoint, t, { dims: [128, 128], axis: 1 });
  dequantizeLinear(qc, pc.scale, pc.zeroPoint, { dims: [128, 128], axis: 1 });
}

const pt = computeQParamsFromData(x, 'int8', { symmetric: true });
const q8 = new Int8Array(N);
const q8u = new Uint8Array(N);
const pu = computeQParamsFromData(x, 'uint8');
report('computeQParamsFromData (per-tensor)', best(() => computeQParamsFromData(x, 'int8')));
report('quantizeLinear int8 per-tensor', best(() => quantizeLinear(x, pt.scale, pt.zeroPoint, 'int8', { out: q8 })));
report('quantizeLinear uint8 per-tensor', best(() => quantizeLinear(x, pu.scale, pu.zeroPoint, 'uint8', { out: q8u })));
report('dynamicQuantizeLinear', best(() => dynamicQuantizeLinear(x)));
for (const axis of [0, 1]) {
  const pc = computeQParamsPerAxis(x, dims, axis, 'int8', { symmetric: true });
  report(`computeQParamsPerAxis axis=${axis}`, best(() => computeQParamsPerAxis(x, dims, axis, 'int8', { symmetric: true })));
  report(
    `quantizeLinear int8 per-channel axis=${axis}`,
    best(() => quantizeLinear(x, pc.scale, pc.zeroPoint, 'int8', { dims, axis, out: q8 })),
  );
}
const y = new Float32Array(N);
report('dequantizeLinear int8 per-tensor', best(() => dequantizeLinear(q8, pt.scale, pt.zeroPoint, { out: y })));
for (const axis of [0, 1]) {
  const pc = computeQParamsPerAxis(x, dims, axis, 'int8', { symmetric: true });
  report(
    `dequantizeLinear int8 per-channel axis=${axis}`,
    best(() => dequantizeLinear(q8, pc.scale, pc.zeroPoint, { dims, axis, out: y })),
  );
}
const blk = computeQParamsPerAxis(x, [N / 32, 32], 0, 'int4', { symmetric: true });
const q4 = new Int8Array(N);
report(
  'quantizeLinear int4 blocked (32, last axis)',
  best(() => quantizeLinear(x, blk.scale, blk.zeroPoint, 'int4', { dims: [N / 32, 32], axis: 1, blockSize: 32, out: q4 })),
);
const h = new Uint16Array(N);
report('float32ArrayToFloat16', best(() => float32ArrayToFloat16(x, h)));
report('float16ArrayToFloat32', best(() => float16ArrayToFloat32(h, y)));
report('float32ArrayToBfloat16', best(() => float32ArrayToBfloat16(x, h)));

console.log(`lowbit quant bench: ${N} float32 elements (${(N * 4) / 2 ** 20} MiB), node ${process.version}`);
console.table(rows);
