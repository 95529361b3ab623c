// The model as ONNX Runtime executes it: its graph after ORT's optimizations (fusions such as
// QuantizeLinear/DequantizeLinear pairs around Conv into QLinearConv), read from ORT's dump.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LowbitError } from '../errors.js';
import { decodeModel } from '../onnx/decode.js';
import type { ModelProto } from '../onnx/proto.js';
import { Session, type OptimizationLevel } from './session.js';

export interface OptimizedOptions {
  threads?: number;
  /**
   * Default 'extended': all of ORT's portable fusions (QDQ -> QLinear*, Conv+activation, ...).
   * 'all' adds layout rewrites for this CPU (NCHWc Conv, NHWC QLinearConv in com.microsoft), which
   * ORT itself warns are hardware specific.
   */
  level?: OptimizationLevel;
}

/**
 * Loads `model` in ORT with a model dump (a temporary file, removed afterwards) and decodes it.
 * @throws LowbitError('RUNTIME') when ORT rejects the model; LowbitError('INTERNAL') when ORT
 *   wrote no dump.
 */
export async function optimizedModel(model: Uint8Array | string, opts: OptimizedOptions = {}): Promise<ModelProto> {
  const dir = await mkdtemp(join(tmpdir(), 'lowbit-opt-'));
  const file = join(dir, 'optimized.onnx');
  try {
    const s = await Session.create(model, { threads: opts.threads ?? 1, optimizationLevel: opts.level ?? 'extended', optimizedModelPath: file });
    await s.release();
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch (e) {
      throw new LowbitError('INTERNAL', `ONNX Runtime wrote no optimized model to ${file}`, undefined, { cause: e });
    }
    return decodeModel(bytes);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Op type counts of the main graph after ORT's optimizations. Keys are the op type for the
 * default ONNX domain ('QLinearConv', 'Conv') and `domain:opType` otherwise
 * ('com.microsoft:QLinearAdd', 'com.microsoft:FusedConv').
 * @throws as {@link optimizedModel}.
 */
export async function optimizedOpTypes(model: Uint8Array | string, threads = 1, opts: Omit<OptimizedOptions, 'threads'> = {}): Promise<Map<string, number>> {
  const m = await optimizedModel(model, { ...opts, threads });
  return opTypeCounts(m);
}

/** Op type counts of a model's main graph, keyed as {@link optimizedOpTypes}. */
export function opTypeCounts(m: ModelProto): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of m.graph?.node ?? []) {
    const d = n.domain ?? '';
    const key = d === '' || d === 'ai.onnx' ? (n.opType ?? '') : `${d}:${n.opType ?? ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
