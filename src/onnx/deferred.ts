// Deferred tensor data: a TensorProto whose bytes are not in memory but read (from the model's external data file,
// `loadModel(path, { externalData: 'stream' })`) or produced (a pass's converted weight, `deferTensor`) at the moment
// someone reads them, and dropped afterwards. Pure; the file-reading side is src/io/model-file.ts.
//
// Mechanism (chosen so that the IR and the passes need no changes): the source is stored on the TensorProto under a
// symbol key. Object spread (`{ ...t, name }`), rest destructuring and Object.assign copy own enumerable symbol-keyed
// properties, so every copy a pass makes keeps the source, and nothing is read by copying (a getter would be evaluated
// by a spread and materialize the bytes). A WeakMap keyed by the object would lose the association on each copy.
// Precedence: raw_data, then typed *_data fields, then an external location; the deferred source counts only when the
// tensor has none of them, so `{ ...t, rawData: bytes }` simply replaces it. structuredClone and JSON drop symbol keys:
// such a copy has no data at all, and tensorStorage says so (BAD_DATA), never silently wrong values.
// Readers: tensorStorage / tensorBytes (src/onnx/tensor.ts) and the encoder read the bytes then; saveModel writes them
// to external data one tensor at a time.

import { LowbitError } from '../errors.js';
import { DataLocation, type TensorProto } from './proto.js';

/** Where a deferred tensor's bytes come from. `read` is called on every read of the values; nothing is cached. */
export interface DeferredData {
  /** Exact byte length `read()` returns (the tensor's raw_data length). */
  readonly byteLength: number;
  /** Reads or produces the little-endian raw bytes now. May throw LowbitError (EXTERNAL_DATA for a vanished file). */
  read(): Uint8Array;
  /** Absolute path of the file the bytes are read from, when they come from one (saveModel refuses to replace it). */
  readonly file?: string;
}

const DEFERRED: unique symbol = Symbol.for('lowbit.deferredData');

type WithDeferred = TensorProto & { [DEFERRED]?: DeferredData };

const hasTyped = (t: TensorProto): boolean =>
  !!(t.floatData?.length || t.int32Data?.length || t.int64Data?.length || t.doubleData?.length || t.uint64Data?.length || t.stringData?.length);

/** The tensor's deferred source, or undefined (no source, or the tensor holds its data some other way: see the precedence above). */
export function deferredData(t: TensorProto): DeferredData | undefined {
  const d = (t as WithDeferred)[DEFERRED];
  if (!d || t.rawData || t.dataLocation === DataLocation.EXTERNAL || hasTyped(t)) return undefined;
  return d;
}

/**
 * Makes `t` deferred in place: its bytes will come from `source`. raw_data, typed fields and external-data markers are
 * removed. Returns `t`.
 */
export function setDeferred<T extends TensorProto>(t: T, source: DeferredData): T {
  delete t.rawData;
  delete t.floatData;
  delete t.int32Data;
  delete t.int64Data;
  delete t.doubleData;
  delete t.uint64Data;
  delete t.dataLocation;
  t.externalData = [];
  (t as WithDeferred)[DEFERRED] = source;
  return t;
}

/** A shallow copy of `t` without its deferred source (for copies that get their data another way). */
export function withoutDeferred<T extends TensorProto>(t: T): T {
  const { [DEFERRED]: _d, ...rest } = t as T & { [DEFERRED]?: DeferredData };
  return rest as T;
}

/**
 * Reads (or produces) a deferred tensor's bytes now; the caller owns the result and nothing is kept.
 * @throws LowbitError INTERNAL when the tensor is not deferred, BAD_DATA when the source returns the wrong length,
 *   whatever the source throws (EXTERNAL_DATA for a data file that changed or vanished)
 */
export function readDeferred(t: TensorProto): Uint8Array {
  const d = deferredData(t);
  if (!d) throw new LowbitError('INTERNAL', `tensor '${t.name ?? ''}' has no deferred data`, 'check deferredData(t) before reading');
  const bytes = d.read();
  if (bytes.length !== d.byteLength) {
    throw new LowbitError('BAD_DATA', `tensor '${t.name ?? ''}': its deferred data gave ${bytes.length} bytes, ${d.byteLength} expected`, 'the data file changed since the model was loaded, or a pass produced a wrong-sized tensor');
  }
  return bytes;
}
