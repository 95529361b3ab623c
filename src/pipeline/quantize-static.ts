// Static quantization step of quantize(): plan -> calibrate (streaming) -> QDQ rewrite.

import type { Range } from '../calib/observer.js';
import type { BoundDataSource } from '../data/calib-data.js';
import type { Model } from '../onnx/ir.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../passes/quantize-qdq.js';
import { qdqToQOperator } from '../passes/qdq-to-qoperator.js';
import { calibrate } from './calibrate.js';
import type { ActivationType, NodeDecision, ResolvedQuantizeOptions } from './options.js';

/**
 * Calibration batch size: large enough to keep ORT busy, bounded by a fixed model batch. A moving
 * average runs one sample per batch, so it averages per-sample min/max as ORT does with a one-sample
 * data reader, whatever the batching (a model with a fixed batch dim runs that many instead).
 */
function calibBatch(data: BoundDataSource, perSample: boolean): number {
  return Math.max(1, Math.min(perSample ? 1 : 16, data.count, Number.isFinite(data.maxBatch) ? data.maxBatch : 16));
}

function staticOptions(o: ResolvedQuantizeOptions, excludeNodes: readonly string[], extraOverrides: Readonly<Record<string, ActivationType>> = {}): StaticQuantOptions {
  const overrides = { ...o.activationTypeOverrides, ...extraOverrides };
  return {
    activationType: o.activationType,
    ...(Object.keys(overrides).length ? { activationTypeOverrides: overrides } : {}),
    weightType: o.weightType,
    perChannel: o.perChannel,
    excludeNodes: [...excludeNodes],
    excludeOps: o.excludeOps,
    symmetricActivations: o.symmetricActivations,
    reduceRange: o.reduceRange,
    // 'speed': nodes whose ORT integer kernel is measured slower than the float one stay float
    // (rules/qdq/speed.ts), depthwise groups are padded; 'size': every eligible node is quantized.
    speedPolicy: o.optimizeFor === 'speed',
    speedTarget: o.backend,
  };
}

/**
 * Calibrates, into `ranges`, the tensors the plans for each of `excludeSets` need that `ranges` lacks: one
 * pass over `data` for all of them, none when nothing is missing (`tried`: tensors already calibrated or
 * found not float). Returns how many tensors were calibrated.
 */
async function calibrateMissing(
  model: Model,
  data: BoundDataSource,
  o: ResolvedQuantizeOptions,
  ranges: Map<string, Range>,
  tried: Set<string>,
  excludeSets: readonly (readonly string[])[],
): Promise<number> {
  let planned: Model | undefined;
  const missing = new Set<string>();
  for (const ex of excludeSets) {
    const plan = planQdq(model, staticOptions(o, ex));
    planned ??= plan.model; // preprocessing does not depend on the exclusions: tensor names are the same
    for (const t of plan.tensors) if (!tried.has(t)) missing.add(t);
  }
  if (!planned || missing.size === 0) return 0;
  const total = data.count;
  const found = await calibrate(planned, data, {
    tensors: [...missing],
    batch: calibBatch(data, o.calibration.method === 'minmax' && o.calibration.movingAverage),
    ...o.calibration,
    activationType: o.activationType,
    symmetric: o.symmetricActivations,
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.onProgress ? { onProgress: (p) => o.onProgress!({ stage: 'calibrate', done: p.samples, total }) } : {}),
  });
  for (const [t, r] of found) ranges.set(t, r);
  for (const t of missing) tried.add(t); // tensors that turned out not to be float get no range, and are not retried
  return missing.size;
}

function rewrite(
  model: Model,
  ranges: Map<string, Range>,
  o: ResolvedQuantizeOptions,
  excludeNodes: readonly string[],
  overrides: Readonly<Record<string, ActivationType>> = {},
): { model: Model; nodes: NodeDecision[]; notes: string[] } {
  const r = quantizeStatic(model, ranges, staticOptions(o, excludeNodes, overrides));
  const nodes: NodeDecision[] = r.report.nodes.map((n) => ({
    node: n.name,
    opType: n.opType,
    quantized: n.quantized,
    detail: n.quantized ? (n.kernel ?? 'QDQ') : (n.reason ?? 'left float'),
  }));
  const notes = [...r.report.preprocess, ...r.report.notes];
  if (o.format !== 'qoperator') return { model: r.model, nodes, notes };
  // QOperator form: the units written out as QLinear* ops (passes/qdq-to-qoperator.ts).
  const qop = qdqToQOperator(r.model);
  const converted = Object.entries(qop.report.converted).map(([op, n]) => `${op} ${n}`);
  notes.push(`QOperator format: ${converted.length ? converted.join(', ') : 'no unit converted'}${qop.report.keptQdq.length ? `; kept as QDQ: ${qop.report.keptQdq.join('; ')}` : ''}`);
  return { model: qop.model, nodes, notes };
}

/** A calibrated model that can be rewritten again with other excluded nodes, without calibrating again. */
export interface StaticRequantizer {
  /** The ranges calibrated so far (per tensor name); grows only with tensors never calibrated before. */
  readonly ranges: ReadonlyMap<string, Range>;
  /** Calibrates in one pass whatever the plans for these exclusion lists need and `ranges` lacks (usually nothing). */
  prepare(excludeSets: readonly (readonly string[])[]): Promise<number>;
  /**
   * The QDQ rewrite with these excluded nodes (replacing `excludeNodes`), and these activation types per node
   * (added to `activationTypeOverrides`), from the stored ranges.
   */
  rewrite(excludeNodes: readonly string[], overrides?: Readonly<Record<string, ActivationType>>): Promise<{ model: Model; nodes: NodeDecision[]; notes: string[] }>;
}

/**
 * Calibrates `model` on `data` with the tensors the QDQ planner asks for, then rewrites it. The returned
 * `requantizer` rewrites it again with other exclusions from the same ranges (the accuracy gate's trials).
 * @throws as planQdq, calibrate and quantizeStatic.
 */
export async function quantizeStaticModel(
  model: Model,
  data: BoundDataSource,
  o: ResolvedQuantizeOptions,
): Promise<{ model: Model; nodes: NodeDecision[]; notes: string[]; requantizer: StaticRequantizer }> {
  const ranges = new Map<string, Range>();
  const tried = new Set<string>();
  await calibrateMissing(model, data, o, ranges, tried, [o.excludeNodes]);
  const requantizer: StaticRequantizer = {
    ranges,
    prepare: (sets) => calibrateMissing(model, data, o, ranges, tried, sets),
    rewrite: async (ex, overrides) => {
      await calibrateMissing(model, data, o, ranges, tried, [ex]);
      return rewrite(model, ranges, o, ex, overrides);
    },
  };
  return { ...rewrite(model, ranges, o, o.excludeNodes), requantizer };
}
