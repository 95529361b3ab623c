// Static quantization step of quantize(): plan -> calibrate (streaming) -> QDQ rewrite.

import type { BoundDataSource } from '../data/calib-data.js';
import type { Model } from '../onnx/ir.js';
import { planQdq, quantizeStatic } from '../passes/quantize-qdq.js';
import { calibrate } from './calibrate.js';
import type { NodeDecision, ResolvedQuantizeOptions } from './options.js';

/**
 * Calibration batch size: large enough to keep ORT busy, bounded by a fixed model batch. A moving
 * average runs one sample per batch, so it averages per-sample min/max as ORT does with a one-sample
 * data reader, whatever the batching (a model with a fixed batch dim runs that many instead).
 */
function calibBatch(data: BoundDataSource, perSample: boolean): number {
  return Math.max(1, Math.min(perSample ? 1 : 16, data.count, Number.isFinite(data.maxBatch) ? data.maxBatch : 16));
}

/**
 * Calibrates `model` on `data` with the tensors the QDQ planner asks for, then rewrites it.
 * @throws as planQdq, calibrate and quantizeStatic.
 */
export async function quantizeStaticModel(
  model: Model,
  data: BoundDataSource,
  o: ResolvedQuantizeOptions,
): Promise<{ model: Model; nodes: NodeDecision[]; notes: string[] }> {
  const opts = {
    activationType: o.activationType,
    weightType: o.weightType,
    perChannel: o.perChannel,
    excludeNodes: o.excludeNodes,
    excludeOps: o.excludeOps,
    // Nodes whose ORT integer kernel is measured slower than the float one stay float (rules/qdq/speed.ts).
    speedPolicy: true,
  };
  const plan = planQdq(model, opts);
  const total = data.count;
  const ranges = await calibrate(plan.model, data, {
    tensors: plan.tensors,
    batch: calibBatch(data, o.calibration.method === 'minmax' && o.calibration.movingAverage),
    ...o.calibration,
    activationType: o.activationType,
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.onProgress ? { onProgress: (p) => o.onProgress!({ stage: 'calibrate', done: p.samples, total }) } : {}),
  });
  const r = quantizeStatic(model, ranges, opts);
  const nodes: NodeDecision[] = r.report.nodes.map((n) => ({
    node: n.name,
    opType: n.opType,
    quantized: n.quantized,
    detail: n.quantized ? (n.kernel ?? 'QDQ') : (n.reason ?? 'left float'),
  }));
  return { model: r.model, nodes, notes: [...r.report.preprocess, ...r.report.notes] };
}
