// Shared ORT helper for tests (not a test file): run a model held in memory once.
import type { NdArray } from '../../src/ndarray.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { Session, type OptimizationLevel } from '../../src/runtime/session.js';

/** The first output of `model` on `feeds` (2 threads; ORT's optimization level, default 'all'). */
export async function runFirstOutput(model: Model, feeds: Record<string, NdArray>, optimizationLevel: OptimizationLevel = 'all'): Promise<Float32Array> {
  const s = await Session.create(encodeModel(model.toProto()), { threads: 2, optimizationLevel });
  try {
    return Object.values(await s.run(feeds))[0]!.data as Float32Array;
  } finally {
    await s.release();
  }
}
