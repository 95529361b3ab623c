// The per-layer table of `lowbit compare`: quantized activations worst first (local and accumulated
// SQNR, ranges, clipping), the model output as the last row, then the weights worst first. Pure: takes
// the pipeline's result, returns text.

import { formatCount, formatDb, formatPct } from './format.js';
import { renderTable, type Cell } from './table.js';

/** What the report needs from a compare run (a subset of pipeline/compare.ts's CompareResult). */
export interface CompareReportInput {
  samples: number;
  output: { sqnrDb: number; cosine: number; agreement?: number };
  layers: readonly {
    tensor: string;
    node: string;
    opType: string;
    localSqnrDb: number;
    accumulatedSqnrDb: number;
    cosine: number;
    floatRange: readonly [number, number];
    quantRange: readonly [number, number];
    clippedFraction: number;
  }[];
  weights: readonly {
    name: string;
    node: string;
    opType: string;
    qtype: string;
    sqnrDb: number;
    worstChannel: number | null;
    worstChannelSqnrDb: number | null;
  }[];
  notes: readonly string[];
}

/** Options of {@link renderCompareReport}. */
export interface CompareReportOptions {
  /** Rows per table (default 20). */
  top?: number;
  /** Names for the title. */
  float?: string;
  quant?: string;
}

/** Three significant digits, no exponent for ordinary magnitudes: 7.6182 -> '7.62', -0.0351 -> '-0.0351'. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-4) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

const range = (r: readonly [number, number]): string => `[${formatValue(r[0])}, ${formatValue(r[1])}]`;

/** A share that is never shown as 0 when it is not: 0 -> '0%', 5e-7 -> '<0.01%'. */
function share(f: number): string {
  if (f === 0) return '0%';
  if (f > 0 && f < 0.0001) return '<0.01%';
  return formatPct(f, { digits: 2 });
}

const where = (node: string, opType: string): string => (node ? `${node} (${opType})` : opType);

/** Renders the layer table (top rows, then the model output row), the weight table and the notes. */
export function renderCompareReport(r: CompareReportInput, opts: CompareReportOptions = {}): string {
  const top = opts.top ?? 20;
  const parts: string[] = [];
  const layers = r.layers.slice(0, top);
  const rows: Cell[][] = layers.map((l, i) => [
    i + 1,
    l.tensor,
    where(l.node, l.opType),
    formatDb(l.localSqnrDb),
    formatDb(l.accumulatedSqnrDb),
    l.cosine.toFixed(4),
    range(l.floatRange),
    range(l.quantRange),
    share(l.clippedFraction),
  ]);
  const o = r.output;
  rows.push(['', 'model output', o.agreement === undefined ? '' : `top-1 agreement ${formatPct(o.agreement, { digits: 1 })}`, '', formatDb(o.sqnrDb), o.cosine.toFixed(4), '', '', '']);
  const pair = opts.quant && opts.float ? `${opts.quant} vs ${opts.float}, ` : '';
  const shown = r.layers.length > layers.length ? `worst ${layers.length} of ${r.layers.length}` : `all ${r.layers.length}`;
  parts.push(
    renderTable(
      ['#', 'tensor', 'node (op)', 'local SQNR', 'accumulated', 'cosine', 'float range', 'quant range', 'clipped'],
      rows,
      { title: `lowbit compare: ${pair}${formatCount(r.samples)} samples. Quantized activations, ${shown}, by local SQNR` },
    ),
  );
  parts.push(
    [
      'local SQNR: float tensor vs the same tensor quantized and dequantized with the model\'s scale/zero point (the error this tensor adds alone)',
      'accumulated: float tensor vs the quantized model\'s tensor, both models fed the same inputs (all error up to here); cosine likewise',
      'clipped: share of float values outside the quant range (saturated)',
    ].join('\n'),
  );
  if (r.weights.length) {
    const w = r.weights.slice(0, top);
    const wrows: Cell[][] = w.map((x, i) => [
      i + 1,
      x.name,
      where(x.node, x.opType),
      x.qtype,
      formatDb(x.sqnrDb),
      x.worstChannel ?? '-',
      x.worstChannelSqnrDb === null ? '-' : formatDb(x.worstChannelSqnrDb),
    ]);
    const wshown = r.weights.length > w.length ? `worst ${w.length} of ${r.weights.length}` : `all ${r.weights.length}`;
    parts.push(renderTable(['#', 'weight', 'node (op)', 'type', 'SQNR', 'worst channel', 'its SQNR'], wrows, { title: `Quantized weights, ${wshown}, by SQNR (float weight vs dequantized)` }));
  }
  if (r.notes.length) {
    const lines = r.notes.slice(0, 5).map((n) => `note: ${n}`);
    if (r.notes.length > 5) lines.push(`note: ... and ${r.notes.length - 5} more (see --json)`);
    parts.push(lines.join('\n'));
  }
  return parts.join('\n\n');
}
