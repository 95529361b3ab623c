// A session that also returns chosen intermediate values ("taps") of the main graph, per batch.
// Node outputs come from ORT (the model is rewritten by passes/taps.ts); graph inputs are taken
// from the feeds and initializers read from the model, so no copy of them travels through ORT.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LowbitError } from '../errors.js';
import { loadModel } from '../io/model-file.js';
import type { NdArray } from '../ndarray.js';
import { decodeModel } from '../onnx/decode.js';
import { encodeModel } from '../onnx/encode.js';
import { Model } from '../onnx/ir.js';
import type { ModelProto, TensorProto } from '../onnx/proto.js';
import { dataTypeName, tensorStorage } from '../onnx/tensor.js';
import { addTaps } from '../passes/taps.js';
import { dtypeOfElemType } from './arrays.js';
import { batchSizeOf, runBatch, type BatchStream } from './batching.js';
import { Session, type SessionOptions } from './session.js';

/** A model as bytes, a file path, a decoded ModelProto or an IR Model. */
export type ModelRef = Uint8Array | string | ModelProto | Model;

/**
 * Decodes a model reference. Paths go through io/'s loadModel, so external data is read.
 * @throws LowbitError as loadModel / decodeModel (FILE_NOT_FOUND, NOT_ONNX, TRUNCATED, ...)
 */
export async function modelProtoOf(model: ModelRef): Promise<{ proto: ModelProto; label: string }> {
  if (model instanceof Model) return { proto: model.toProto(), label: 'model' };
  if (typeof model === 'string') return { proto: (await loadModel(model)).model, label: model };
  if (model instanceof Uint8Array) return { proto: decodeModel(model), label: `model (${model.byteLength} bytes)` };
  return { proto: model, label: 'model' };
}

/** An initializer as an NdArray over the model's bytes (no copy when aligned). */
function initializerArray(t: TensorProto, label: string): NdArray {
  const dtype = dtypeOfElemType(t.dataType);
  if (!dtype) {
    throw new LowbitError('UNSUPPORTED_MODEL', `${label}: cannot tap initializer '${t.name}' of type ${dataTypeName(t.dataType)}`, 'tap only numeric tensors lowbit can hold (float16/32/64, int8..int64, bool)');
  }
  return { dtype, shape: t.dims.map((d) => Number(d)), data: tensorStorage(t) };
}

/** Outputs of the original model and the tapped values of one run. */
export interface TappedRun {
  outputs: Record<string, NdArray>;
  taps: Record<string, NdArray>;
}

/** Where each tap's value comes from. */
type TapSource = { kind: 'ort' } | { kind: 'feed' } | { kind: 'const'; value: NdArray };

export class TappedSession {
  /** The session over the tapped model (its outputs: the original ones, then the ORT-served taps). */
  readonly session: Session;
  readonly taps: readonly string[];
  /** The original model's outputs. */
  readonly outputNames: readonly string[];
  private readonly sources: Map<string, TapSource>;

  private constructor(session: Session, taps: string[], outputNames: string[], sources: Map<string, TapSource>) {
    this.session = session;
    this.taps = taps;
    this.outputNames = outputNames;
    this.sources = sources;
  }

  /**
   * Creates a session returning `taps` too. Repeated names are kept once.
   * @throws LowbitError('BAD_OPTION') naming a tap not in the main graph; LowbitError('RUNTIME')
   *   when ORT rejects the tapped model; errors of modelProtoOf.
   */
  static async create(model: ModelRef, taps: readonly string[], opts: SessionOptions = {}): Promise<TappedSession> {
    const { proto, label } = await modelProtoOf(model);
    const graph = proto.graph!;
    const inputs = new Set(graph.input.map((v) => v.name ?? ''));
    const inits = new Map(graph.initializer.map((t) => [t.name ?? '', t]));
    const unique = [...new Set(taps)];
    const sources = new Map<string, TapSource>();
    const viaOrt: string[] = [];
    const name = opts.label ?? label;
    for (const tap of unique) {
      const init = inits.get(tap);
      // An initializer also listed as an input (IR < 4 style) is not an input for ORT's Node binding:
      // it neither lists it nor uses a feed for it, so the stored value is what the model computes with.
      if (init) {
        sources.set(tap, { kind: 'const', value: initializerArray(init, name) });
      } else if (inputs.has(tap)) {
        sources.set(tap, { kind: 'feed' });
      } else {
        sources.set(tap, { kind: 'ort' });
        viaOrt.push(tap);
      }
    }
    // addTaps validates every name (including the ones served here) and adds the node outputs.
    addTaps(proto, unique.filter((t) => !viaOrt.includes(t)));
    const tapped = addTaps(proto, viaOrt);
    const session = await Session.create(encodeModel(tapped), { ...opts, label: `${name} (tapped)` });
    return new TappedSession(session, unique, graph.output.map((o) => o.name ?? ''), sources);
  }

  /**
   * Runs one batch. `outputs: false` skips fetching the original outputs that are not tapped.
   * @throws LowbitError('RUNTIME') as Session.run (also for a tap ORT returns as a non-tensor).
   */
  async run(feeds: Record<string, NdArray>, opts: { outputs?: boolean } = {}): Promise<TappedRun> {
    const wantOutputs = opts.outputs !== false;
    const fetch = new Set<string>(wantOutputs ? this.outputNames : []);
    for (const [tap, src] of this.sources) if (src.kind === 'ort') fetch.add(tap);
    const got = fetch.size ? await runBatch(this.session, feeds, [...fetch]) : {};
    const outputs: Record<string, NdArray> = {};
    if (wantOutputs) for (const o of this.outputNames) outputs[o] = got[o]!;
    const taps: Record<string, NdArray> = {};
    for (const [tap, src] of this.sources) {
      if (src.kind === 'ort') taps[tap] = got[tap]!;
      else if (src.kind === 'const') taps[tap] = src.value;
      else {
        const v = feeds[tap];
        if (!v) throw new LowbitError('RUNTIME', `${this.session.label}: input '${tap}' is tapped but missing from the feeds`, 'feed every model input');
        taps[tap] = v;
      }
    }
    return { outputs, taps };
  }

  /** Where a tap's value comes from: ORT, the feeds, or the model's initializers. */
  tapSource(tap: string): 'ort' | 'feed' | 'const' | undefined {
    return this.sources.get(tap)?.kind;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

type GcFunction = (options?: { type?: 'major' | 'minor' }) => void;
let v8Gc: GcFunction | undefined;

/**
 * A full garbage collection, which frees the ArrayBuffers of batches already dropped (a young-generation
 * one alone leaves their freeing to a background sweeper and to later collections, and peak RSS still
 * creeps). Uses `globalThis.gc` under `node --expose-gc`, else V8's gc fetched once the way jest's leak
 * detector does it (the flag is turned off again right away, so no global `gc` appears).
 */
function collectGarbage(): void {
  if (!v8Gc) {
    const exposed = (globalThis as { gc?: GcFunction }).gc;
    if (exposed) v8Gc = exposed;
    else {
      setFlagsFromString('--expose-gc');
      v8Gc = runInNewContext('gc') as GcFunction;
      setFlagsFromString('--no-expose-gc');
    }
  }
  v8Gc({ type: 'major' });
}

/** Options of {@link runWithTaps}. */
export interface RunWithTapsOptions extends SessionOptions {
  /** Fetch the original outputs too (default true). */
  outputs?: boolean;
  /**
   * Bounds the memory held by used batches: a full garbage collection runs whenever this many bytes of
   * values returned by ORT (taps and outputs) have gone through `onBatch` since the last one, after the
   * batch has been dropped. ONNX Runtime's Node binding copies every fetched value into a new ArrayBuffer
   * on every run (also into pre-allocated fetches), and V8 frees those only at a collection of its own
   * choosing, so without this peak RSS creeps up with the number of batches. Default: off.
   */
  gcEveryBytes?: number;
}

/**
 * Runs a tapped model over a batch stream, calling `onBatch` with each batch's taps (and outputs);
 * the session is released at the end, also on error.
 * @returns batches and samples processed.
 * @throws as TappedSession.create / run.
 */
export async function runWithTaps(
  model: ModelRef,
  taps: readonly string[],
  batches: BatchStream,
  onBatch: (run: TappedRun & { index: number; start: number; size: number; feeds: Record<string, NdArray> }) => void | Promise<void>,
  opts: RunWithTapsOptions = {},
): Promise<{ batches: number; samples: number }> {
  const ts = await TappedSession.create(model, taps, opts);
  // One batch in its own frame, so that nothing of it is reachable when the collector runs.
  const step = async (feeds: Record<string, NdArray>, index: number, start: number): Promise<{ size: number; bytes: number }> => {
    const r = await ts.run(feeds, { outputs: opts.outputs ?? true });
    const size = batchSizeOf(ts.session.inputs, feeds);
    const fromOrt = new Set<ArrayBufferLike>(Object.values(r.outputs).map((v) => v.data.buffer));
    for (const [name, v] of Object.entries(r.taps)) if (ts.tapSource(name) === 'ort') fromOrt.add(v.data.buffer);
    let bytes = 0;
    for (const b of fromOrt) bytes += b.byteLength;
    await onBatch({ ...r, index, start, size, feeds });
    return { size, bytes };
  };
  try {
    let count = 0;
    let start = 0;
    let pending = 0;
    for await (const feeds of batches as AsyncIterable<Record<string, NdArray>>) {
      const { size, bytes } = await step(feeds, count, start);
      count++;
      start += size;
      pending += bytes;
      if (opts.gcEveryBytes !== undefined && opts.gcEveryBytes !== Infinity && pending >= opts.gcEveryBytes) {
        pending = 0;
        collectGarbage();
      }
    }
    return { batches: count, samples: start };
  } finally {
    await ts.release();
  }
}
