// Shared test helpers (not a test file).
import assert from 'node:assert/strict';
import { LowbitError } from '../src/errors.js';
import type { Model } from '../src/onnx/ir.js';

/** Runs `fn`, asserts it throws a LowbitError with `code` whose message contains every part. */
export function throwsLowbit(fn: () => unknown, code: string, ...parts: string[]): LowbitError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof LowbitError, `expected LowbitError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  for (const p of parts) assert.ok(err.message.includes(p), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(p)}`);
  return err;
}

/** Largest |got - reference| relative to the largest |reference| (same lengths asserted). */
export function maxRelError(got: ArrayLike<number>, reference: ArrayLike<number>): number {
  assert.equal(got.length, reference.length, 'arrays of different lengths');
  let d = 0;
  let m = 0;
  for (let i = 0; i < got.length; i++) {
    d = Math.max(d, Math.abs(got[i]! - reference[i]!));
    m = Math.max(m, Math.abs(reference[i]!));
  }
  return d / m;
}

/**
 * Rewrites a lowbit QDQ model to the naming of ORT's Python quantizer: each activation DequantizeLinear
 * writes a new `<t>_DequantizeLinear_Output` that the consumers read, and the producer keeps writing `t`.
 */
export function toOrtNaming(m: Model): Model {
  const g = m.graph;
  for (const dq of [...g.nodes]) {
    const q = dq.opType === 'DequantizeLinear' ? g.producer(dq.input[0]!) : undefined;
    if (!q || q.opType !== 'QuantizeLinear') continue;
    const t = dq.output[0]!;
    if (g.isGraphOutput(t)) continue;
    const producer = g.producer(q.input[0]!);
    if (producer && q.input[0] === `${t}_float`) {
      producer.output[producer.output.indexOf(`${t}_float`)] = t;
      q.input[0] = t;
    }
    const out = `${q.input[0]}_DequantizeLinear_Output`;
    g.replaceAllUses(t, out, { except: q });
    dq.output[0] = out;
    g.touch();
  }
  return m;
}
