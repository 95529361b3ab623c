// Gradient check harness (not a test file): builds a one-op model, loss = sum(output * R) with a fixed
// random R, builds the training graph, runs it in ORT and compares every param's analytic gradient with
// central finite differences. The loss of each perturbed run is summed in float64 here, so only the op's
// own float32 rounding reaches the numeric gradient.

import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { DataType } from '../../src/onnx/proto.js';
import { buildTrainingGraph } from '../../src/grad/engine.js';
import type { GradTable } from '../../src/grad/types.js';
import { mulberry32, type Rng } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';

/** How a param's values are drawn: away from kinks and poles where an op needs it. */
export type Gen = 'normal' | 'positive' | 'away' | 'grid' | ((rng: Rng, i: number) => number);

export interface ParamSpec {
  dims: number[];
  gen?: Gen;
  /** A float initializer that is not differentiated (e.g. running statistics). */
  frozen?: boolean;
}

export interface GradCase {
  name: string;
  opset?: number;
  /** Builds the op; `p` declares a param (an initializer) and returns its name. Returns the output(s) the loss reads. */
  build: (b: ModelBuilder, p: (name: string, spec: ParamSpec) => string) => string | string[];
  /** Feeds for graph inputs the case declares (dynamic-shape cases). */
  feeds?: Record<string, NdArray>;
  /** Finite-difference step (default 1e-2). */
  eps?: number;
}

export interface CheckResult {
  /** max over checked elements of |g - fd| / (|g| + |fd| + FLOOR) per param. */
  worst: Map<string, number>;
  max: number;
  /** max |g - fd| and max |fd| over every checked element. */
  maxAbs: number;
  maxGrad: number;
  runs: number;
  /** Every checked element: analytic and numeric gradient. */
  elements: { param: string; g: number; fd: number }[];
}

/** Relative-error floor: gradients below ~1e-3 are compared absolutely. */
export const FLOOR = 1e-3;
/** The documented tolerance of the check. */
export const TOLERANCE = 2e-2;
/** Elements checked per param (all when fewer). */
const MAX_ELEMENTS = 24;

function values(spec: ParamSpec, rng: Rng): Float32Array {
  const n = spec.dims.reduce((a, b) => a * b, 1);
  const gen = spec.gen ?? 'normal';
  if (gen === 'grid') {
    // Distinct values 0.05 apart, shuffled: no ties within a pooling window, far apart compared with eps.
    const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.05);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [v[i], v[j]] = [v[j]!, v[i]!];
    }
    return Float32Array.from(v);
  }
  return Float32Array.from({ length: n }, (_, i) => {
    if (typeof gen === 'function') return gen(rng, i);
    if (gen === 'positive') return rng.uniform(0.5, 2);
    if (gen === 'away') return (rng.chance(0.5) ? -1 : 1) * rng.uniform(0.2, 1.5);
    return rng.normal();
  });
}

interface Built {
  builder: ModelBuilder;
  params: Map<string, { data: Float32Array; dims: number[] }>;
  outputs: string[];
}

function buildCase(c: GradCase): Built {
  const builder = new ModelBuilder({ opset: c.opset ?? 17 });
  const rng = mulberry32(1234);
  const params = new Map<string, { data: Float32Array; dims: number[] }>();
  const p = (name: string, spec: ParamSpec): string => {
    const data = values(spec, rng);
    const unique = builder.initializer(name, data, spec.dims);
    if (!spec.frozen) params.set(unique, { data, dims: spec.dims });
    return unique;
  };
  const out = c.build(builder, p);
  return { builder, params, outputs: Array.isArray(out) ? out : [out] };
}

async function withSession<T>(bytes: Uint8Array, f: (s: Session) => Promise<T>): Promise<T> {
  const s = await Session.create(bytes, { threads: 1 });
  try {
    return await f(s);
  } finally {
    await s.release();
  }
}

const f32 = (data: Float32Array, shape: number[]): NdArray => ({ dtype: 'float32', shape, data });

/** Runs the check of one case (optionally with a replaced rule table). */
export async function gradCheck(c: GradCase, rules?: GradTable): Promise<CheckResult> {
  // 1. Output shapes, from a run of the bare op.
  const probe = buildCase(c);
  for (const o of probe.outputs) probe.builder.output(o, DataType.FLOAT);
  const shapes = await withSession(encodeModel(probe.builder.build().toProto()), async (s) => {
    const r = await s.run(c.feeds ?? {});
    return probe.outputs.map((o) => r[o]!.shape);
  });

  // 2. The same op with loss = sum_i ReduceSum(y_i * R_i), and its training graph.
  const { builder: b, params, outputs } = buildCase(c);
  const rng = mulberry32(99);
  const weights = shapes.map((shape) => Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => rng.normal()));
  const terms = outputs.map((y, i) => b.op('ReduceSum', [b.op('Mul', [y, b.initializer('R', weights[i]!, shapes[i]!)])], { keepdims: 0 }));
  const loss = terms.length === 1 ? terms[0]! : b.op('Sum', terms);
  for (const o of outputs) b.output(o, DataType.FLOAT);
  b.output(loss, DataType.FLOAT, []);
  const train = buildTrainingGraph(b.build(), { loss, params: [...params.keys()], ...(rules ? { rules } : {}) });

  return withSession(encodeModel(train.model.toProto()), async (s) => {
    const feeds: Record<string, NdArray> = { ...c.feeds };
    for (const [name, { data, dims }] of params) feeds[name] = f32(data, dims);
    const analytic = await s.run(feeds, [...train.gradients.values()]);
    const lossOf = async (name: string, data: Float32Array): Promise<number> => {
      const r = await s.run({ ...feeds, [name]: f32(data, params.get(name)!.dims) }, outputs);
      let sum = 0;
      outputs.forEach((o, i) => {
        const y = r[o]!.data as Float32Array;
        for (let k = 0; k < y.length; k++) sum += y[k]! * weights[i]![k]!;
      });
      return sum;
    };
    const eps = c.eps ?? 1e-2;
    const worst = new Map<string, number>();
    let runs = 0;
    let maxAbs = 0;
    let maxGrad = 0;
    const elements: CheckResult['elements'] = [];
    for (const [name, { data }] of params) {
      const g = analytic[train.gradients.get(name)!]!.data as Float32Array;
      const stride = Math.max(1, Math.floor(data.length / MAX_ELEMENTS));
      let w = 0;
      for (let k = 0; k < data.length; k += stride) {
        const plus = data.slice();
        const minus = data.slice();
        plus[k] = data[k]! + eps;
        minus[k] = data[k]! - eps;
        const fd = ((await lossOf(name, plus)) - (await lossOf(name, minus))) / (plus[k]! - minus[k]!);
        runs += 2;
        w = Math.max(w, Math.abs(g[k]! - fd) / (Math.abs(g[k]!) + Math.abs(fd) + FLOOR));
        maxAbs = Math.max(maxAbs, Math.abs(g[k]! - fd));
        maxGrad = Math.max(maxGrad, Math.abs(fd));
        elements.push({ param: name, g: g[k]!, fd });
      }
      worst.set(name, w);
    }
    return { worst, max: Math.max(0, ...worst.values()), maxAbs, maxGrad, runs, elements };
  });
}
