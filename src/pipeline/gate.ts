// The accuracy gate of `lowbit quantize --max-drop X`: when the quantized model loses more than X points on
// the held-out samples, measure how much each quantized layer costs, then keep the most sensitive layers
// float one at a time until the goal is met (or no layer that helps is left: the best model is kept and
// the miss is reported). Trials are rewrites of the same calibrated ranges (no re-calibration), evaluated
// in ONNX Runtime from memory against one float session.
//
// The drop, in percentage points, measured on the held-out samples:
// - with labels (and a classifier output): float top-1 accuracy − quantized top-1 accuracy;
// - else, for classifier-like outputs: 100 − top-1 agreement with the float model, in %;
// - else (maps, regressions, embeddings): the relative RMS output error in %, 100·10^(−SQNR/20), so
//   maxDrop X asks for an output SQNR of at least 20·log10(100/X) dB (X = 1 → 40 dB, 0.3 → 50.5 dB, 3 → 30.5 dB).
//
// Cost, for N quantized (named) nodes: 1 evaluation of the first model, N leave-one-out evaluations (the
// model with that one node float: its sensitivity is the drop it removes), then up to K − 1 evaluations
// while the K nodes that helped are excluded greedily, most helpful first (at equal drop, the one leaving more
// nodes quantized; an exclusion that does not lower the drop is undone). At most 2N evaluations, each one run of both models over the held-out samples; no
// calibration except, rarely, one pass for tensors a new exclusion pattern needs that were never calibrated.

import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import { encodeModel } from '../onnx/encode.js';
import type { Model } from '../onnx/ir.js';
import { Session } from '../runtime/session.js';
import { evaluate, type EvalData, type EvaluateResult } from './evaluate.js';
import type { GateSummary, NodeDecision, ProgressEvent } from './options.js';

/** One quantized variant: the model and what happened to each node. */
export interface GateCandidate {
  model: Model;
  nodes: NodeDecision[];
}

/** Options of {@link runGate}. */
export interface GateOptions {
  /** The goal: the largest accepted drop, percentage points. */
  maxDrop: number;
  /** The float model (path or bytes): the reference of every evaluation. */
  float: string | Uint8Array;
  /** Held-out samples, keyed by model input name. */
  data: EvalData;
  /** One label per sample of `data`: gates on accuracy. */
  labels?: NdArray;
  /**
   * Held-out samples the gate does not choose on: the returned model's drop (and the first model's) are measured on
   * them, so the reported drop is not biased by the choice. Without it, the drop reported is the one chosen on.
   */
  check?: { data: EvalData; labels?: NdArray };
  /** Samples per run. */
  batch: number;
  /** The model quantized with the user's options. */
  base: GateCandidate;
  /** Nodes the user already excluded: kept in every trial. */
  fixed: readonly string[];
  /** Where `rebuild` puts the nodes it is given besides `fixed`: float (default) or 16-bit activations. For messages. */
  fallback?: 'float' | 'int16';
  /** The model quantized with exactly these excluded nodes (fixed ones included), from the same calibration. */
  rebuild(excludeNodes: string[]): Promise<GateCandidate>;
  /** Called once with every leave-one-out exclusion list before those trials (e.g. to calibrate once what they need). */
  prepare?(excludeSets: string[][]): Promise<unknown>;
  threads?: number;
  /** Called after each evaluation with stage 'gate'. */
  onProgress?: (event: ProgressEvent) => void;
}

/** What {@link runGate} returns: the summary, the model to keep, and a warning when the goal was missed. */
export interface GateResult extends GateSummary {
  model: Model;
  nodes: NodeDecision[];
  warnings: string[];
}

/** Slack for float rounding when comparing a drop with the goal. */
const EPS = 1e-9;

/** The output SQNR (dB) that `maxDrop` asks for when the outputs are not classifier-like: 20·log10(100/maxDrop). */
export function sqnrGoalDb(maxDrop: number): number {
  return maxDrop > 0 ? 20 * Math.log10(100 / maxDrop) : Infinity;
}

/**
 * The drop (percentage points) an evaluation shows, and which metric gave it (see the file comment).
 * @throws LowbitError UNSUPPORTED_MODEL when the evaluation has none of accuracy, agreement or SQNR.
 */
export function measureDrop(r: Pick<EvaluateResult, 'accuracy' | 'referenceAccuracy' | 'agreement' | 'sqnrDb'>, metric?: GateSummary['metric']): { metric: GateSummary['metric']; drop: number } {
  const m = metric ?? (r.accuracy !== undefined && r.referenceAccuracy !== undefined ? 'accuracy' : r.agreement !== undefined ? 'agreement' : r.sqnrDb !== undefined ? 'sqnr' : undefined);
  if (m === 'accuracy' && r.accuracy !== undefined && r.referenceAccuracy !== undefined) return { metric: m, drop: (r.referenceAccuracy - r.accuracy) * 100 };
  if (m === 'agreement' && r.agreement !== undefined) return { metric: m, drop: (1 - r.agreement) * 100 };
  if (m === 'sqnr' && r.sqnrDb !== undefined) return { metric: m, drop: Number.isFinite(r.sqnrDb) ? 100 * 10 ** (-r.sqnrDb / 20) : r.sqnrDb > 0 ? 0 : 100 };
  throw new LowbitError('UNSUPPORTED_MODEL', 'the accuracy gate found nothing to measure: no accuracy, top-1 agreement or output SQNR on the held-out samples', 'check that the model has float outputs, or drop --max-drop');
}

const quantizedNames = (nodes: NodeDecision[]): string[] => nodes.filter((n) => n.quantized && n.node !== '').map((n) => n.node);
const pts = (d: number): string => `${d.toFixed(2)} points`;

/**
 * Runs the gate: measures the base model, and when its drop exceeds `maxDrop`, the leave-one-out
 * sensitivity of every quantized node, then excludes the helpful ones greedily until the goal is met. Never
 * returns a model with nothing quantized; unnamed nodes cannot be excluded and are not candidates.
 * @throws LowbitError as evaluate() and `rebuild`; UNSUPPORTED_MODEL as {@link measureDrop}.
 */
export async function runGate(opts: GateOptions): Promise<GateResult> {
  const float = await Session.create(opts.float, opts.threads === undefined ? {} : { threads: opts.threads });
  try {
    let trials = 0;
    const cands = quantizedNames(opts.base.nodes);
    const bound = 1 + 2 * cands.length;
    let metric: GateSummary['metric'] | undefined;
    const measure = async (c: GateCandidate, on: { data: EvalData; labels?: NdArray } = opts): Promise<number> => {
      const r = await evaluate({
        model: encodeModel(c.model.toProto()),
        reference: float,
        data: on.data,
        ...(on.labels ? { labels: on.labels } : {}),
        batch: opts.batch,
        ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      });
      if (on === opts) trials++;
      opts.onProgress?.({ stage: 'gate', done: trials, total: bound });
      const m = measureDrop(r, metric);
      metric = m.metric;
      return m.drop;
    };
    const baseDrop = await measure(opts.base);
    let cur = { cand: opts.base, drop: baseDrop, excluded: [] as string[] };
    const done = async (warnings: string[]): Promise<GateResult> => {
      const r: GateResult = {
        maxDrop: opts.maxDrop,
        achieved: cur.drop <= opts.maxDrop + EPS,
        drop: cur.drop,
        baseDrop,
        metric: metric!,
        excluded: cur.excluded,
        trials,
        model: cur.cand.model,
        nodes: cur.cand.nodes,
        warnings,
      };
      if (!opts.check) return r;
      // The verdict on samples the choice never saw.
      r.selection = { samples: opts.data.count, drop: cur.drop, baseDrop };
      r.checkSamples = opts.check.data.count;
      r.drop = await measure(cur.cand, opts.check);
      r.baseDrop = cur.cand === opts.base ? r.drop : await measure(opts.base, opts.check);
      r.achieved = r.drop <= opts.maxDrop + EPS;
      if (!r.achieved && cur.drop <= opts.maxDrop + EPS) {
        r.warnings.push(
          `accuracy gate: the goal of at most ${pts(opts.maxDrop)} holds on the ${opts.data.count} samples the layers were chosen on (${pts(cur.drop)}) but NOT on the ${opts.check.data.count} held-out samples kept apart (${pts(r.drop)}): ` +
            'the samples are too few or too unlike each other to tell; give more --calib samples, or raise --max-drop',
        );
      }
      return r;
    };
    if (baseDrop <= opts.maxDrop + EPS) return await done([]);

    // Sensitivity: the drop with each quantized node alone kept float.
    await opts.prepare?.(cands.map((c) => [...opts.fixed, c]));
    // Order: lower drop first; at equal drop, the exclusion that leaves more nodes quantized (keeping a Relu float
    // can unquantize its reader too), then graph order.
    type Single = { node: string; drop: number; quantized: number; index: number };
    const order = (a: Single, b: Single): number => a.drop - b.drop || b.quantized - a.quantized || a.index - b.index;
    const single: Single[] = [];
    let bestSingle: { cand: GateCandidate; s: Single } | undefined;
    for (const [index, node] of cands.entries()) {
      const t = await opts.rebuild([...opts.fixed, node]);
      const quantized = quantizedNames(t.nodes).length;
      if (quantized === 0) continue; // the float model is not an answer
      const s: Single = { node, drop: await measure(t), quantized, index };
      single.push(s);
      if (!bestSingle || order(s, bestSingle.s) < 0) bestSingle = { cand: t, s };
    }
    const helpful = single.filter((s) => s.drop < baseDrop).sort(order);

    // Greedy: most helpful first; keep an exclusion only when it lowers the drop.
    let stop = '';
    for (const [i, s] of helpful.entries()) {
      const excluded = [...cur.excluded, s.node];
      let next: { cand: GateCandidate; drop: number };
      if (i === 0) next = { cand: bestSingle!.cand, drop: bestSingle!.s.drop }; // measured already
      else {
        const t = await opts.rebuild([...opts.fixed, ...excluded]);
        if (quantizedNames(t.nodes).length === 0) {
          stop = 'keeping more layers float would leave nothing quantized';
          break;
        }
        next = { cand: t, drop: await measure(t) };
      }
      if (next.drop < cur.drop) cur = { cand: next.cand, drop: next.drop, excluded };
      if (cur.drop <= opts.maxDrop + EPS) return await done([]);
    }
    const what = metric === 'accuracy' ? 'top-1 accuracy drop' : metric === 'agreement' ? '100 − top-1 agreement %' : `relative RMS output error % (goal: output SQNR ≥ ${sqnrGoalDb(opts.maxDrop).toFixed(1)} dB)`;
    const where = opts.fallback === 'int16' ? 'at 16 bits' : 'float';
    const kept = cur.excluded.length ? `${cur.excluded.length} layer${cur.excluded.length > 1 ? 's' : ''} kept ${where} (${cur.excluded.join(', ')})` : `no layer kept ${where} (none that was tried lowered the drop)`;
    return await done([
      `accuracy gate: the goal of at most ${pts(opts.maxDrop)} (${what}) was NOT met: the best model reached ${pts(cur.drop)} (first model: ${pts(baseDrop)}) with ${kept}; ` +
        `${stop || (single.length ? `no other layer lowers the drop (${single.length} of ${cands.length} quantized nodes measured alone)` : `keeping any of the ${cands.length} quantized node${cands.length === 1 ? '' : 's'} float would leave nothing quantized`)}. The best model was saved; raise --max-drop, try another --method, or keep the float model`,
    ]);
  } finally {
    await float.release();
  }
}
