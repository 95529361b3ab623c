// Runs a session over a stream of batches (evaluation, calibration): batches are stacked along
// axis 0; a model whose batch dim is fixed at 1 gets the samples of a batch one at a time.

import type { NdArray } from '../ndarray.js';
import { concatAxis0, splitAxis0 } from './arrays.js';
import type { Session, ValueMeta } from './session.js';

/** Anything yielding feeds: a DataSource / BoundDataSource `batches(n)` iterable, an array, an async generator. */
export type BatchStream = Iterable<Record<string, NdArray>> | AsyncIterable<Record<string, NdArray>>;

/** One batch and what the model produced for it. */
export interface BatchRun {
  /** 0-based batch number. */
  index: number;
  /** Index of the batch's first sample in the stream. */
  start: number;
  /** Samples in the batch (see {@link batchSizeOf}). */
  size: number;
  feeds: Record<string, NdArray>;
  outputs: Record<string, NdArray>;
}

/**
 * Samples in a feed: axis 0 of the first input (of equal declared and fed rank) whose declared
 * dim 0 is symbolic; else of one declared with a fixed dim 0 of 1 (split by runBatch); else of
 * one whose fixed dim 0 equals the fed one; else 1 (samples fed without a batch axis). Inputs
 * with another leading axis, like Silero's state [2, batch, 64], lose to a symbolic dim 0.
 */
export function batchSizeOf(inputs: readonly ValueMeta[], feeds: Record<string, NdArray>): number {
  const ranked = inputs.filter((m) => {
    const arr = feeds[m.name];
    return arr && arr.shape.length > 0 && m.dims.length === arr.shape.length;
  });
  const rules: ((d0: number | string | undefined, fed: number) => boolean)[] = [
    (d0) => typeof d0 !== 'number',
    (d0) => d0 === 1,
    (d0, fed) => d0 === fed,
  ];
  for (const rule of rules) {
    for (const m of ranked) {
      const fed = feeds[m.name]!.shape[0]!;
      if (rule(m.dims[0], fed)) return fed;
    }
  }
  return 1;
}

/**
 * Inputs declared with a fixed batch dim of 1 that were fed more samples: those are split along
 * axis 0 and run one sample at a time (other inputs are passed to every run unchanged).
 */
function perSampleInputs(inputs: readonly ValueMeta[], feeds: Record<string, NdArray>): string[] {
  return inputs
    .filter((m) => {
      const arr = feeds[m.name];
      return arr && m.dims[0] === 1 && m.dims.length === arr.shape.length && (arr.shape[0] ?? 1) > 1;
    })
    .map((m) => m.name);
}

/**
 * Runs one batch; splits it into single samples when the model's batch dim is fixed at 1, and
 * concatenates the outputs along axis 0 again (0-d outputs are stacked).
 * @throws LowbitError('RUNTIME') as Session.run.
 */
export async function runBatch(session: Session, feeds: Record<string, NdArray>, fetch?: readonly string[]): Promise<Record<string, NdArray>> {
  const split = perSampleInputs(session.inputs, feeds);
  if (split.length === 0) return session.run(feeds, fetch);
  const pieces = new Map(split.map((name) => [name, splitAxis0(feeds[name]!, 1)]));
  const n = pieces.get(split[0]!)!.length;
  const parts: Record<string, NdArray>[] = [];
  for (let i = 0; i < n; i++) {
    const f = { ...feeds };
    for (const [name, list] of pieces) f[name] = list[i] ?? list[list.length - 1]!;
    parts.push(await session.run(f, fetch));
  }
  const out: Record<string, NdArray> = {};
  for (const name of Object.keys(parts[0]!)) out[name] = concatAxis0(parts.map((p) => p[name]!));
  return out;
}

/**
 * Runs `session` on every batch of `batches`, yielding feeds and outputs. Batches are pulled one
 * at a time, so memory holds one batch (plus what the consumer keeps).
 * @throws LowbitError('RUNTIME') naming the model/input when a batch fails; errors of the stream
 *   (e.g. the data layer's NON_FINITE) pass through.
 */
export async function* runBatches(session: Session, batches: BatchStream, opts: { fetch?: readonly string[] } = {}): AsyncGenerator<BatchRun> {
  let index = 0;
  let start = 0;
  for await (const feeds of batches as AsyncIterable<Record<string, NdArray>>) {
    const outputs = await runBatch(session, feeds, opts.fetch);
    const size = batchSizeOf(session.inputs, feeds);
    yield { index, start, size, feeds, outputs };
    index++;
    start += size;
  }
}

/**
 * Callback form of {@link runBatches}: awaits `onBatch` for each batch before pulling the next.
 * @returns batches and samples processed.
 */
export async function runBatched(
  session: Session,
  batches: BatchStream,
  onBatch: (run: BatchRun) => void | Promise<void>,
  opts: { fetch?: readonly string[] } = {},
): Promise<{ batches: number; samples: number }> {
  let count = 0;
  let samples = 0;
  for await (const run of runBatches(session, batches, opts)) {
    await onBatch(run);
    count++;
    samples += run.size;
  }
  return { batches: count, samples };
}
