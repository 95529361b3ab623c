// The summary table of `lowbit quantize DIR --preset transformers.js`: one row per written variant (file, size and
// ratio to float32, output SQNR against float32, whether it runs in onnxruntime-node and in onnxruntime-web, and its
// time per run there against the float32 model's). Pure.

import type { PresetResult } from '../pipeline/preset.js';
import { DTYPE_DESCRIPTION, DTYPE_HANDLES, WEB_TIMED_RUNS } from '../pipeline/preset-dtypes.js';
import { formatBytes, formatDb, formatMs, formatRatio } from './format.js';
import { renderTable, type Cell } from './table.js';

const fileName = (p: string): string => p.split(/[\\/]/).pop() ?? p;
const skipped = (status: string): boolean => status.startsWith('skipped');
const mark = (status: string): string => (status === 'ok' ? '✓' : skipped(status) ? '-' : '✗');
/** float32 time / variant time: "2.10x faster" or "14.3x SLOWER". */
const speed = (r: number): string => (r >= 1 ? `${formatRatio(r)} faster` : `${formatRatio(1 / r)} SLOWER`);

/** The table, the dtype legend, files skipped as inputs, and a line per variant that failed to run. */
export function renderPresetReport(r: PresetResult): string {
  const rows: Cell[][] = r.variants.map((v) => [
    fileName(v.output),
    v.dtype,
    v.error ? 'not written' : formatBytes(v.bytes),
    v.error ? '-' : formatRatio(v.sourceBytes / v.bytes),
    v.sqnrDb === undefined ? '-' : formatDb(v.sqnrDb),
    mark(v.node),
    mark(v.web),
    v.webMs === undefined ? '-' : formatMs(v.webMs),
    v.webMs === undefined || v.sourceWebMs === undefined ? '-' : speed(v.sourceWebMs / v.webMs),
  ]);
  const out = [renderTable(['file', 'dtype', 'size', 'smaller', 'SQNR vs fp32', 'ort-node', 'ort-web (wasm)', 'wasm time', 'wasm vs fp32'], rows)];
  const sources = [...new Set(r.variants.map((v) => v.source))];
  for (const s of sources) {
    const v = r.variants.find((x) => x.source === s)!;
    const web = r.variants.find((x) => x.source === s && x.sourceWebMs !== undefined)?.sourceWebMs;
    const webError = r.variants.find((x) => x.source === s && x.sourceWebError !== undefined)?.sourceWebError;
    out.push(
      `${fileName(s)}: fp32 ${formatBytes(v.sourceBytes)}${web === undefined ? '' : `, ${formatMs(web)} per run in onnxruntime-web (wasm, 1 thread, median of ${WEB_TIMED_RUNS})`}; ` +
        `SQNR and times on ${r.samples}`,
    );
    if (webError !== undefined) out.push(`not timed: ${fileName(s)} (fp32) in onnxruntime-web: ${webError}`);
  }
  const dtypes = [...new Set(r.variants.map((v) => v.dtype))];
  const unpacked = (bits: number, zero: string): string =>
    `MatMul / Gemm${bits === 8 ? ' / Conv' : ''} weights and embedding tables as ${bits}-bit codes (block 32, ${zero} RTN) that ONNX Runtime unpacks to float32 when the session loads (--format unpack-on-load: the ${bits}-bit download, float32 speed and memory)`;
  const describe = (d: (typeof dtypes)[number]): string => {
    if (r.weightFormat !== 'unpack-on-load') return DTYPE_DESCRIPTION[d];
    if (d === 'q4') return unpacked(4, 'asymmetric');
    if (d === 'q8' || d === 'uint8') return unpacked(8, 'asymmetric');
    if (d === 'int8') return unpacked(8, 'symmetric');
    return DTYPE_DESCRIPTION[d];
  };
  out.push('', ...dtypes.map((d) => `${d}: ${describe(d)}`));
  const notRun = new Map<string, string[]>();
  for (const v of r.variants) {
    if (v.error) {
      out.push(`!!! ${fileName(v.output)} was not written: ${v.error}`);
      continue;
    }
    if (v.quantizedNodes === 0) out.push(`!!! ${fileName(v.output)}: no node was converted (${v.dtype} rewrites ${DTYPE_HANDLES[v.dtype]}; the model has none): the file is the float model`);
    if (v.node !== 'ok' && !skipped(v.node)) out.push(`!!! ${fileName(v.output)} does not run in onnxruntime-node: ${v.node}`);
    if (v.web !== 'ok' && !skipped(v.web)) out.push(`!!! ${fileName(v.output)} does not run in onnxruntime-web: ${v.web}`);
    for (const [where, st] of [['onnxruntime-node', v.node], ['onnxruntime-web', v.web]] as const) {
      if (!st.startsWith('skipped: ')) continue;
      const why = st.slice('skipped: '.length);
      notRun.set(why, [...(notRun.get(why) ?? []), `${fileName(v.output)} (${where})`]);
    }
  }
  for (const [why, which] of notRun) out.push(`not run: ${which.join(', ')}: ${why}`);
  const byReason = new Map<string, string[]>();
  for (const s of r.skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), fileName(s.file)]);
  for (const [reason, files] of byReason) out.push(`skipped ${files.length} file${files.length > 1 ? 's' : ''} (${reason}): ${files.join(', ')}`);
  return out.join('\n');
}
