// The trade-off table printed at the end of `lowbit quantize`: size, latency, fidelity, and what
// was (not) quantized. Pure: takes the pipeline's result, returns text.

import { formatBytes, formatDb, formatMs, formatPct, formatRatio } from './format.js';
import { renderTable, type Cell } from './table.js';

/** What the report needs from a quantize run (a subset of the pipeline's result). */
export interface QuantizeReportInput {
  mode: string;
  output: string;
  sizeBytes: { before: number; after: number };
  fidelity: { samples: number; agreement?: number; sqnrDb?: number; cosine?: number; maxAbsError?: number; accuracy?: number; floatAccuracy?: number };
  latency?: { float: { latencyMs: { median: number } }; quant: { latencyMs: { median: number } }; speedup: number; batch: number; threads: number; backend?: 'cpu' | 'wasm' };
  verification: string;
  nodes: { node: string; opType: string; quantized: boolean; detail: string }[];
  warnings: string[];
  gate?: { maxDrop: number; achieved: boolean; drop: number; baseDrop: number; metric: string; excluded: string[]; trials: number; fallback?: string; selection?: { samples: number; drop: number; baseDrop: number }; checkSamples?: number };
  configPath?: string;
  notes?: string[];
}

const GATE_METRIC: Record<string, string> = {
  accuracy: 'top-1 accuracy drop vs float (labels)',
  agreement: '100 − top-1 agreement with float',
  sqnr: 'relative RMS output error, 100·10^(−SQNR/20)',
};

/** The accuracy gate's lines: goal, what it reached, the layers it kept float, and where the config went. */
function gateLines(g: NonNullable<QuantizeReportInput['gate']>, configPath: string | undefined): string {
  const lines = [
    `accuracy gate (--max-drop ${g.maxDrop}): ${g.achieved ? 'met' : 'NOT met'}: ${g.drop.toFixed(2)} points (${GATE_METRIC[g.metric] ?? g.metric}); ` +
      `first model ${g.baseDrop.toFixed(2)} points; ` +
      (g.selection
        ? `measured on ${g.checkSamples} held-out samples the gate did not choose on (it chose on ${g.selection.samples} others, ${g.trials} trials there: ${g.selection.baseDrop.toFixed(2)} -> ${g.selection.drop.toFixed(2)} points)`
        : `${g.trials} trial${g.trials === 1 ? '' : 's'} on the held-out samples`),
    `${g.fallback === 'int16' ? 'kept at 16-bit activations' : 'kept float'} by the gate (most sensitive first): ${g.excluded.length ? g.excluded.join(', ') : 'none'}`,
  ];
  if (configPath !== undefined) lines.push(`config with these exclusions: ${configPath} (rerun with --config ${configPath})`);
  return lines.join('\n');
}

/** Counts of quantized / float nodes per op type, and the distinct reasons nodes stayed float. */
function nodeSummary(nodes: QuantizeReportInput['nodes']): { rows: Cell[][]; reasons: string[] } {
  const byOp = new Map<string, { q: number; f: number }>();
  const reasons = new Map<string, string[]>();
  for (const n of nodes) {
    const e = byOp.get(n.opType) ?? { q: 0, f: 0 };
    if (n.quantized) e.q++;
    else {
      e.f++;
      const list = reasons.get(n.detail) ?? [];
      list.push(n.node);
      reasons.set(n.detail, list);
    }
    byOp.set(n.opType, e);
  }
  const rows = [...byOp].sort((a, b) => b[1].q + b[1].f - (a[1].q + a[1].f)).map(([op, e]) => [op, e.q, e.f]);
  const lines = [...reasons].map(([why, names]) => `${names.length} left float: ${why} (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''})`);
  return { rows, reasons: lines };
}

/** Renders the report; `warnings` are repeated in a loud block at the end. */
export function renderQuantizeReport(r: QuantizeReportInput): string {
  const f = r.fidelity;
  const rows: Cell[][] = [
    ['model size', formatBytes(r.sizeBytes.before), formatBytes(r.sizeBytes.after), formatRatio(r.sizeBytes.before / Math.max(1, r.sizeBytes.after)) + ' smaller'],
  ];
  if (r.latency) {
    rows.push([
      `latency (batch ${r.latency.batch}, ${r.latency.backend === 'wasm' ? 'wasm, ' : ''}${r.latency.threads} thread${r.latency.threads === 1 ? '' : 's'}, median)`,
      formatMs(r.latency.float.latencyMs.median),
      formatMs(r.latency.quant.latencyMs.median),
      r.latency.speedup >= 1 ? `${formatRatio(r.latency.speedup)} faster` : `${formatRatio(1 / r.latency.speedup)} SLOWER`,
    ]);
  }
  if (f.accuracy !== undefined && f.floatAccuracy !== undefined) {
    const drop = (f.floatAccuracy - f.accuracy) * 100;
    rows.push(['top-1 accuracy (labels)', formatPct(f.floatAccuracy, { digits: 2 }), formatPct(f.accuracy, { digits: 2 }), `${drop >= 0 ? '-' : '+'}${Math.abs(drop).toFixed(2)} points`]);
  }
  const parts: string[] = [];
  parts.push(renderTable(['', 'float', ({ dynamic: 'int8 (dynamic)', static: 'int8 (static QDQ)', fp16: 'float16', bf16: 'bfloat16 weights' } as Record<string, string>)[r.mode] ?? r.mode, 'change'], rows, { title: `lowbit quantize → ${r.output}` }));
  const fid: Cell[][] = [];
  if (f.agreement !== undefined) fid.push(['top-1 agreement with float', formatPct(f.agreement, { digits: 2 })]);
  if (f.sqnrDb !== undefined) fid.push(['output SQNR', formatDb(f.sqnrDb)]);
  if (f.cosine !== undefined) fid.push(['output cosine similarity', f.cosine.toFixed(5)]);
  if (f.maxAbsError !== undefined) fid.push(['max abs output error', f.maxAbsError.toPrecision(3)]);
  parts.push(renderTable(['fidelity vs float', 'value'], fid, { title: `fidelity on ${f.samples} samples: ${r.verification}` }));
  const s = nodeSummary(r.nodes);
  if (s.rows.length) parts.push(renderTable(['op', 'quantized', 'float'], s.rows, { title: 'nodes' }));
  if (s.reasons.length) parts.push(s.reasons.join('\n'));
  if (r.gate) parts.push(gateLines(r.gate, r.configPath));
  else if (r.configPath !== undefined) parts.push(`config written: ${r.configPath}`);
  if (r.notes?.length) parts.push(r.notes.join('\n'));
  if (r.warnings.length) {
    parts.push(['!!! WARNING: check the quantized model before using it', ...r.warnings.map((w) => `!!! ${w}`), '!!! try --per-channel, --exclude-ops/--exclude-nodes for sensitive layers, or more representative --calib data'].join('\n'));
  }
  return parts.join('\n\n');
}
